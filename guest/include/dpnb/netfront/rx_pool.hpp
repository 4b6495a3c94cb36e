// The guest's pool of RX buffers, with grant reuse (Ram et al., VEE 2009, sections 4 and 6.3).
//
// Buffers are full pages (4096 bytes) or half pages (2048 bytes, two per page). Pages join the
// pool on demand and leave it when it is larger than its target:
//   * copy mode: a page is just memory; the queue grants each buffer when it posts it and
//     ends the grant when the backend answers (Linux netfront's way);
//   * reuse mode: a page is granted to the backend once, when it joins, and its buffers are
//     posted with that grant. A PageRegistrar makes the page reachable without any grant
//     operation: the I/O translation table (iott_add) with the simulated hypervisor, or the
//     backend's persistent-grant table through the netif control ring's static-grant
//     messages on stock Xen (docs/protocol.md). Until a page is registered (or if the
//     registration is refused) the backend serves its buffers with a grant copy.
//     Taking a buffer from a registered page is a reuse *hit*; needing a new page (grant +
//     registration) is a *miss*. A page leaves by removing its registration, which is
//     refused while the backend counts one of its buffers in flight: the page then stays
//     "retiring" and the removal is retried; its access is ended and its memory freed only
//     once the registration is gone and all its buffers are back.
//
// The pool also plays the guest's network stack: a received frame's buffers are "held" for a
// while (a FIFO of `hold_depth` frames) before they come back, which is what makes the pool
// larger than the ring and makes reuse non-trivial.
//
// Not thread-safe: one Netfront drives it from one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/netfront/counters.hpp"

namespace dpnb::netfront {

using BufferId = std::uint32_t;
inline constexpr BufferId kNoBuffer = 0xFFFFFFFFU;

// Most RX ring slots one frame may occupy (data and extra info): Linux netfront accepts
// XEN_NETIF_NR_SLOTS_MIN data slots (+1 for a small first slot) plus extras.
inline constexpr std::size_t kMaxFrameSlots = 24;

// How pool pages become reachable by the backend without a grant operation per packet.
// Operations complete at once (a hypercall) or later (a control-ring message).
class PageRegistrar {
public:
    enum class Outcome : std::uint8_t {
        done,    // registered / removed
        pending, // the answer comes through collect()
        busy,    // remove only: a buffer of the page is in flight; retry later
        failed,  // add: not registered (the page is served by grant copy); remove: not
                 // registered any more
    };
    struct Completion {
        hv::GrantRef ref;
        bool add;
        Outcome outcome; // done, busy or failed
    };
    virtual ~PageRegistrar() = default;
    virtual Outcome add(hv::GrantRef ref) = 0;
    virtual Outcome remove(hv::GrantRef ref) = 0;
    // Appends the answers to operations that returned `pending`.
    virtual void collect(std::vector<Completion>& out) = 0;
};

// The translation-table hypercalls of the GuestHypervisor (the simulated hypervisor's IOTT).
class IottRegistrar final : public PageRegistrar {
public:
    IottRegistrar(hv::GuestHypervisor& hv, hv::DomId backend) : hv_(hv), backend_(backend) {}
    Outcome add(hv::GrantRef ref) override;
    Outcome remove(hv::GrantRef ref) override;
    void collect(std::vector<Completion>&) override {}

private:
    hv::GuestHypervisor& hv_;
    hv::DomId backend_;
};

struct RxPoolConfig {
    hv::DomId backend = hv::kDom0;
    bool reuse = false;               // register pages in the translation table
    std::uint16_t buffer_size = 4096; // 4096 (full pages) or 2048 (half pages)
    std::uint32_t target_pages = 0;   // shrink when above; 0: never shrink on its own
    std::uint32_t hold_depth = 0;     // received frames the "stack" keeps
};

struct RxBuffer {
    std::byte* page = nullptr; // start of the page holding the buffer
    std::uint16_t offset = 0;  // buffer start within the page
    std::uint16_t size = 0;    // bytes
    std::uint32_t page_index = 0;
    hv::GrantRef post_gref = hv::kGrantRefInvalid; // the queue's per-post grant, if any
    bool out = false;                              // posted or held (not in the free list)
};

struct PoolStats {
    std::uint32_t pages = 0; // active + retiring
    std::uint32_t active_pages = 0;
    std::uint32_t retiring_pages = 0; // leaving: removal refused, or buffers still out
    std::uint32_t registered_pages = 0;
    std::uint32_t target_pages = 0;
    std::uint32_t buffers_free = 0;
    std::uint32_t buffers_out = 0; // posted on a ring or held by the stack
    std::uint32_t held_frames = 0;
};

class RxBufferPool {
public:
    RxBufferPool(hv::GuestHypervisor& hv, const RxPoolConfig& config, Counters& counters);
    // Releases what can be released; pages whose entries or grants are still in use are
    // leaked (logged), never freed under the backend.
    ~RxBufferPool();
    RxBufferPool(const RxBufferPool&) = delete;
    RxBufferPool& operator=(const RxBufferPool&) = delete;

    const RxPoolConfig& config() const noexcept { return config_; }
    bool reuse() const noexcept { return config_.reuse; }

    // Reuse mode: who registers pages (null: nobody; pages are then served by grant copy).
    // Pages that join the pool later are registered through it.
    void set_registrar(PageRegistrar* registrar) { registrar_ = registrar; }
    // The backend dropped every registration (the control ring's table ends with the
    // connection): pages are unregistered, answers still pending are ignored.
    void forget_registrations();

    // A buffer to post: a free buffer of a pool page, else one of a new page. Counts the
    // post (hit, miss, or unregistered in reuse mode). Errors: memory or grants exhausted.
    Result<BufferId> take();
    RxBuffer& buffer(BufferId id) { return buffers_[id]; }
    const RxBuffer& buffer(BufferId id) const { return buffers_[id]; }
    // Reuse mode: the page's grant, which every buffer of the page is posted with. Copy
    // mode: invalid (the queue grants the buffer per post).
    hv::GrantRef page_gref(BufferId id) const;
    // Whether the buffer's page is registered (posting it is a hit).
    bool registered(BufferId id) const;

    // A buffer comes back (answered in error, never used, or released by the stack).
    void give_back(BufferId id);
    // The stack takes a received frame's buffers; the oldest held frame beyond hold_depth
    // comes back.
    void hold(std::span<const BufferId> ids);
    // Every held buffer comes back (disconnect).
    void drop_held();

    // Shrinks to the target (pages whose buffers are all free) and retries refused
    // removals. Cheap when there is nothing to do; call it after every poll.
    void maintain();
    // Changes the target. Lowering it below the pages in use also retires pages whose
    // buffers are out: they are not posted again, and their removal is tried at once (and
    // refused while the backend has one of their buffers in flight).
    void set_target_pages(std::uint32_t pages);
    // Retires every page (disconnect). Every buffer must be back. Pages whose registrations
    // cannot be removed yet, or whose grants the backend still holds, stay retiring;
    // maintain() retries them.
    void release_all();

    PoolStats stats() const;

private:
    enum class PageState : std::uint8_t { unused, active, retiring };
    enum class Reg : std::uint8_t { none, adding, registered, removing };
    struct Page {
        std::byte* mem = nullptr;
        hv::GrantRef gref = hv::kGrantRefInvalid; // reuse mode: the page's grant
        PageState state = PageState::unused;
        Reg reg = Reg::none;
        bool fresh = false;   // no buffer of it posted yet: its first post is the miss
        std::uint8_t out = 0; // buffers posted or held
    };

    std::uint32_t per_page() const noexcept { return kPageSizeBytes / config_.buffer_size; }
    Result<std::uint32_t> add_page();
    void retire(std::uint32_t page);
    void apply_add(Page& p, PageRegistrar::Outcome o);
    void request_removal(Page& p);
    void try_finish(std::uint32_t page);
    void drop_free_buffers_of(std::uint32_t page);
    std::uint32_t active_pages() const noexcept { return active_; }

    static constexpr std::uint32_t kPageSizeBytes = 4096;

    hv::GuestHypervisor& hv_;
    RxPoolConfig config_;
    Counters& counters_;
    PageRegistrar* registrar_ = nullptr;
    std::vector<PageRegistrar::Completion> completions_;
    std::unordered_map<hv::GrantRef, std::uint32_t> page_of_gref_;
    std::vector<Page> pages_;
    std::vector<std::uint32_t> unused_pages_; // indices of PageState::unused slots
    std::vector<RxBuffer> buffers_;           // per_page() per page slot
    std::vector<BufferId> free_;              // free buffers of active pages (LIFO)
    std::vector<std::uint32_t> retiring_;     // pages leaving the pool
    std::uint32_t active_ = 0;
    std::uint32_t idle_pages_ = 0; // active pages with every buffer free
    struct HeldFrame {
        std::uint8_t count = 0;
        BufferId ids[kMaxFrameSlots];
    };
    std::deque<HeldFrame> held_;
};

} // namespace dpnb::netfront
