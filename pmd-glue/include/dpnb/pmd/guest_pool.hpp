// The guest-buffer mempool: what a NIC RX queue allocates from when the NIC is to write
// frames straight into a guest's posted RX buffers (docs/datapath.md, "Constraints").
//
// A DPDK mempool with its own ops ("dpnb_guest") whose objects are mbuf headers without a
// data room of their own. The lcore that owns the queue takes headers from the pool's free
// list and keeps them (one per post slot of its zero-copy pipeline, for as long as the queue
// is attached); for each post it binds its slot's header to the buffer (a guest page it
// mapped or found in the translation table, or a daemon "bounce" buffer for copy mode) and
// pushes it on a FIFO in the order of the guest's RX requests; the PMD's
// allocations (rte_pktmbuf_alloc, rte_mempool_get_bulk in its refill) pop that FIFO, so
// the device receives the buffers in request order. Nothing else is handed out:
//   * while the queue starts (set_start_mode(true)), an allocation the FIFO cannot satisfy
//     gets daemon-owned placeholder buffers (PMDs fill their ring at set-up and start);
//   * afterwards an empty FIFO is back-pressure (-ENOBUFS: the PMD leaves the frame in the
//     NIC or drops it and counts rx_nombuf), as when a descriptor ring runs dry.
// A header that comes back (freed) while still bound to a guest buffer, without the lcore
// having taken it as a received frame, is put on the `returned` list: the lcore answers its
// request without data (a PMD dropping a frame, or releasing its ring at queue stop).
//
// The pool has no cache (cache_size 0), so every allocation reaches the ops in order and
// frees from any thread go straight to enqueue. Its state is not locked: the owning lcore
// and the PMD calls it makes use it, the control thread only while no lcore polls the
// queue (before attach, after a detach was acknowledged). The one exception is the FIFO of
// posted buffers, which is single-producer single-consumer safe: a net_ring port's peer
// that plays the NIC (PortConfig::rx_peer_fills_pool) allocates from its own thread, and
// takes nothing else from the pool.
#pragma once

#include <rte_mbuf.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "dpnb/util/result.hpp"

namespace dpnb::pmd {

// What a header's buffer is.
enum class GuestBufKind : std::uint8_t {
    none,        // not attached (free header)
    placeholder, // daemon buffer handed out while the queue starts
    guest,       // a guest page (mapped, or from the translation table)
    bounce,      // a daemon buffer whose frame is grant-copied to the guest afterwards
};

// Lives in each header's private area (after struct rte_mbuf).
struct GuestBufInfo {
    std::uint32_t post = 0; // the owner's tag of the post the buffer answers (guest, bounce)
    GuestBufKind kind = GuestBufKind::none;
    bool bound = false;          // attached and handed to the FIFO (or the PMD)
    std::byte* buffer = nullptr; // start of the buffer (in a guest page or a daemon buffer)
};

struct GuestPoolConfig {
    std::string name;            // unique, at most 24 characters
    unsigned headers = 1024;     // mbuf headers
    unsigned placeholders = 0;   // daemon buffers for the start phase (>= the PMD's ring)
    unsigned bounce_buffers = 0; // daemon buffers for copy mode and translation misses
    int socket = -1;             // NUMA socket, -1 for any
};

struct GuestPoolCounts {
    unsigned headers = 0;
    unsigned headers_free = 0;
    unsigned ready = 0;    // in the FIFO (not yet taken by the PMD)
    unsigned returned = 0; // freed by the PMD while bound; the lcore collects them
    unsigned placeholders = 0;
    unsigned placeholders_free = 0;
    unsigned bounce = 0;
    unsigned bounce_free = 0;
    std::uint64_t placeholders_handed = 0; // over the pool's life
};

class GuestBufferPool {
public:
    // A buffer is at most one page: the PMD sees data room kBufferSize, headroom
    // RTE_PKTMBUF_HEADROOM, so a frame of up to kBufferSize - headroom bytes fits (less in a
    // sub-page buffer, whose header says its own buf_len).
    static constexpr std::uint16_t kBufferSize = 4096;

    static Result<std::unique_ptr<GuestBufferPool>> create(const GuestPoolConfig& config);
    // Frees the mempool. Every header must be back (counts() tells); leaks are logged.
    ~GuestBufferPool();
    GuestBufferPool(const GuestBufferPool&) = delete;
    GuestBufferPool& operator=(const GuestBufferPool&) = delete;

    rte_mempool* mempool() const noexcept { return mp_; }
    const std::string& name() const noexcept { return config_.name; }

    // Start phase on/off (control thread, while no lcore uses the pool).
    void set_start_mode(bool on) noexcept { start_mode_ = on; }

    // --- the owning lcore (inline: the data path calls these per buffer) -------------------
    // A header for the owner to keep (bound and pushed again for each buffer it posts), or
    // null; recycle() gives it back.
    rte_mbuf* take_header() noexcept { return static_cast<rte_mbuf*>(free_.pop()); }
    // Binds `m` to `buffer` (`buffer_len` bytes: a page, or less for a frontend's sub-page
    // buffers) for the post the owner tags `post` (the lcore: its post sequence) and appends
    // it to the FIFO. The frame lands RTE_PKTMBUF_HEADROOM bytes in. False (nothing changed)
    // when the FIFO is full.
    bool push_ready(rte_mbuf* m, std::byte* buffer, GuestBufKind kind, std::uint32_t post,
                    std::uint16_t buffer_len = kBufferSize) noexcept {
        if (ready_.size() == ready_.capacity()) return false;
        bind(m, buffer, kind, post, buffer_len);
        return ready_.push(m);
    }
    // A burst's worth at once: binds `m` as push_ready does, without appending it yet.
    void bind(rte_mbuf* m, std::byte* buffer, GuestBufKind kind, std::uint32_t post,
              std::uint16_t buffer_len = kBufferSize) noexcept {
        attach(m, buffer, buffer_len);
        GuestBufInfo& i = info(m);
        i.kind = kind;
        i.bound = true;
        i.post = post;
    }
    // Appends bound headers to the FIFO in order, published together (one release store).
    // False (nothing changed) when the FIFO has no room for all of them.
    bool push_ready(std::span<rte_mbuf* const> bound) noexcept {
        return ready_.push(reinterpret_cast<void* const*>(bound.data()),
                           static_cast<unsigned>(bound.size()));
    }
    // Takes back the oldest header the PMD has not taken yet (detach), still bound.
    rte_mbuf* pop_ready() noexcept { return static_cast<rte_mbuf*>(ready_.pop()); }
    unsigned ready() const noexcept { return ready_.size(); }
    // Headers the PMD freed while bound, oldest first; still bound (the owner keeps them).
    rte_mbuf* pop_returned() noexcept { return static_cast<rte_mbuf*>(returned_.pop()); }
    // A header the owner took is finished with (the queue leaves): unbind it and put it back
    // on the free list. Never call rte_pktmbuf_free on a bound header. The buffer fields
    // stay as they were: nothing reads a free header, and attach() writes every field a PMD
    // reads before the header is handed out again. A header the owner keeps stays bound
    // between its posts: a PMD freeing it then puts it on the returned list, never on the
    // free list.
    void recycle(rte_mbuf* m) noexcept {
        rte_mbuf_refcnt_set(m, 1);
        info(m) = GuestBufInfo{};
        (void)free_.push(m);
    }

    // A free bounce buffer, or nullptr. The free list was filled to its capacity when the
    // pool was created; a buffer given back never needs more room than that.
    std::byte* take_bounce() noexcept {
        if (bounce_free_.empty()) return nullptr;
        std::byte* b = bounce_free_.back();
        bounce_free_.pop_back();
        return b;
    }
    void give_bounce(std::byte* buf) noexcept { bounce_free_.push_back(buf); }

    GuestPoolCounts counts() const noexcept;

    static GuestBufInfo& info(rte_mbuf* m) noexcept {
        return *static_cast<GuestBufInfo*>(rte_mbuf_to_priv(m));
    }

    // mempool ops (called by DPDK through the "dpnb_guest" ops table).
    int ops_dequeue(void** objs, unsigned n) noexcept;
    void ops_enqueue(void* const* objs, unsigned n) noexcept;
    unsigned ops_count() const noexcept;

private:
    // A fixed-capacity FIFO of pointers (capacity a power of two). A shared one has one
    // thread that pushes and one that pops, not necessarily the same: the lcore posts buffers
    // that a net_ring peer playing the NIC may take on its own thread
    // (PortConfig::rx_peer_fills_pool). Its indices are published with release and read
    // with acquire, which costs no fence on x86; the others are the lcore's alone.
    template <bool Shared>
    class Fifo {
        using Index = std::conditional_t<Shared, std::atomic<unsigned>, unsigned>;
        static unsigned load(const Index& i) noexcept {
            if constexpr (Shared)
                return i.load(std::memory_order_acquire);
            else
                return i;
        }
        static void store(Index& i, unsigned v) noexcept {
            if constexpr (Shared)
                i.store(v, std::memory_order_release);
            else
                i = v;
        }

    public:
        void init(unsigned capacity) {
            const unsigned cap = std::bit_ceil(capacity < 2 ? 2U : capacity);
            slots_.assign(cap, nullptr);
            mask_ = cap - 1;
            store(head_, 0);
            store(tail_, 0);
        }
        bool push(void* p) noexcept { return push(&p, 1); }
        // All `n` or nothing, visible to the consumer together.
        bool push(void* const* p, unsigned n) noexcept {
            const unsigned t = load(tail_);
            if (slots_.size() - (t - load(head_)) < n) return false;
            for (unsigned k = 0; k < n; ++k)
                slots_[(t + k) & mask_] = p[k];
            store(tail_, t + n);
            return true;
        }
        void* pop() noexcept {
            const unsigned h = load(head_);
            if (h == load(tail_)) return nullptr;
            void* p = slots_[h & mask_];
            store(head_, h + 1);
            return p;
        }
        unsigned size() const noexcept { return load(tail_) - load(head_); }
        unsigned capacity() const noexcept { return static_cast<unsigned>(slots_.size()); }

    private:
        std::vector<void*> slots_;
        Index head_{0}, tail_{0};
        unsigned mask_ = 0;
    };

    explicit GuestBufferPool(const GuestPoolConfig& c) : config_(c) {}
    Status init();
    void attach(rte_mbuf* m, std::byte* buffer, std::uint16_t len) noexcept {
        m->buf_addr = buffer;
        // With IOVA as VA (no hugepages, or an IOMMU) the device address is the address.
        m->buf_iova =
            iova_is_va_ ? reinterpret_cast<rte_iova_t>(buffer) : rte_mem_virt2iova(buffer);
        m->buf_len = len;
        m->data_off = RTE_PKTMBUF_HEADROOM;
        m->data_len = 0;
        m->pkt_len = 0;
        m->next = nullptr;
        m->nb_segs = 1;
        m->ol_flags = 0;
        info(m).buffer = buffer;
    }
    void detach(rte_mbuf* m) noexcept {
        m->buf_addr = nullptr;
        m->buf_iova = 0;
        m->buf_len = 0;
        m->data_off = 0;
        m->data_len = 0;
        m->pkt_len = 0;
        m->next = nullptr;
        m->nb_segs = 1;
        m->ol_flags = 0;
        rte_mbuf_refcnt_set(m, 1);
        info(m) = GuestBufInfo{};
    }

    GuestPoolConfig config_;
    rte_mempool* mp_ = nullptr;
    std::byte* daemon_mem_ = nullptr; // placeholders then bounce buffers, page-aligned
    std::size_t daemon_bytes_ = 0;
    bool start_mode_ = true;
    bool populating_ = false;
    bool iova_is_va_ = false; // rte_eal_iova_mode() == RTE_IOVA_VA
    Fifo<false> free_, returned_;
    Fifo<true> ready_;
    std::vector<std::byte*> placeholders_free_;
    std::vector<std::byte*> bounce_free_;
    std::uint64_t placeholders_handed_ = 0;
};

} // namespace dpnb::pmd
