// One worker lcore's poll loop and everything it owns: its guest queues, the NIC RX queues it
// polls (dedicated queues of its guests, shared queues it demultiplexes), its hypervisor
// handles (a grant table, an event-channel handle whose fd it sleeps on), its TX queue on
// every port (TX queue id = lcore index), its mbuf pools, its command ring and its inbox.
//
// The control thread talks to it only through commands (a single-producer ring): attach
// and detach a queue, steer a MAC on a shared queue, set a mode, a rate or a hash
// configuration, learn or forget a guest on a port for guest-to-guest delivery, pause a
// port, stop. Another lcore hands it frames through its inbox (multi-producer): frames its
// demux found for a guest queue this lcore owns, and frames one of its guests sent to one of
// this lcore's guests on the same port.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dp_common.hpp"
#include "dpnb/hv/event_channel.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/pmd/cpu_placement.hpp"
#include "guest_queue.hpp"

struct rte_mempool;
struct rte_ring;

namespace dpnb::engine::detail {

class EngineCore;

// The queue of `q`'s vif a frame goes to (rx_path.cpp); `hash` gets the frontend's hash of
// it when the frontend asked for hashes.
GuestQueue* pick_queue(GuestQueue* q, const rte_mbuf* m,
                       std::optional<netif::FlowHash>& hash) noexcept;

struct Command {
    enum class Kind : std::uint8_t {
        attach,       // queues: start serving (binds event channels)
        detach,       // queues: stop serving; acknowledged once TX buffers are back
        release_nic,  // queues: the NIC queue released its buffers: finish the detach
        steer_add,    // demux: frames to `mac` on port `port_index` go to queue `key`
        steer_remove, // demux: forget `key` on port `port_index`
        local_add,    // guest-to-guest: frames from guests on `port_index` to `mac` go to `key`
        local_remove, // guest-to-guest: forget `key` on port `port_index`
        set_mode,     // queues: RX mode for new buffers (view for reuse)
        set_rate,     // queues: credit-based TX rate limit
        set_hash,     // queues: the vif's hash configuration (control ring)
        set_mcast_control, // queues (one is enough): the vif's multicast filter on or off
        port_pause,        // stop touching port `port_index` (RX and TX)
        port_resume,
        stop, // leave the loop
    };
    Kind kind = Kind::stop;
    std::vector<GuestQueue*> queues;
    std::uint16_t port_index = 0;
    netif::MacAddress mac;
    std::uint32_t key = 0;
    unsigned target_lcore = 0;
    RxMode mode = RxMode::copy;
    hv::TranslationTableView view;
    bool have_view = false;
    std::optional<netif::RateLimit> rate;
    netif::HashConfig hash;
    bool flag = false;             // set_mcast_control
    netif::RxFeatures rx_features; // local_add: the GSO kinds the receiving frontend takes

    // Written by the lcore before `done`.
    Status result;
    bool nic_held = false; // detach: guest buffers still in a NIC queue
    std::atomic<bool> done{false};
};

// What a demux hands to another lcore.
struct InboxItem {
    rte_mbuf* m;
    std::uint32_t key;
    std::uint32_t pad;
};
static_assert(sizeof(InboxItem) == 16);

// Written by the lcore only (bump), read by stats() (read_counter).
struct LcoreCounters {
#define DPNB_X(name, help) std::uint64_t name = 0;
    DPNB_LCORE_LOOP_COUNTERS(DPNB_X)
#undef DPNB_X
};

class Lcore {
public:
    Lcore(EngineCore& engine, unsigned index, unsigned lcore_id);
    ~Lcore();
    Lcore(const Lcore&) = delete;
    Lcore& operator=(const Lcore&) = delete;

    // Control thread, before launch.
    Status init(hv::BackendHypervisor& hv, unsigned tx_mbufs);
    void add_demux(std::uint16_t port_index, std::uint16_t port_id, std::uint16_t queue,
                   int intr_fd, bool intr_level);

    // The loop; runs on the lcore until a stop command.
    int run();

    // Control thread: queue a command and wake the loop.
    bool post(Command* cmd);
    // Any thread: wake the loop if it sleeps.
    void wake() noexcept;
    bool sleeping() const noexcept { return sleeping_.load(std::memory_order_seq_cst); }

    unsigned index() const noexcept { return index_; }
    unsigned lcore_id() const noexcept { return lcore_id_; }
    // The CPUs the lcore's thread may run on (its EAL cpuset), set by init().
    const pmd::CpuSet& cpus() const noexcept { return cpus_; }
    rte_ring* inbox() const noexcept { return inbox_; }
    hv::GrantTable& grants() noexcept { return *gt_; }

    // Control thread, any time (relaxed reads of single-writer counters).
    LcoreStats stats() const;
    unsigned queue_count() const noexcept { return queue_count_.load(std::memory_order_relaxed); }
    // After the loop stopped: mbufs of this lcore's pools not back.
    std::uint64_t missing_mbufs() const;
    std::uint64_t mapped_grants() const { return gt_ ? gt_->mapped_pages() : 0; }

private:
    struct NicRx {
        std::uint16_t port_index = 0;
        std::uint16_t port_id = 0;
        std::uint16_t queue = 0;
        GuestQueue* q = nullptr; // dedicated; nullptr for a shared (demux) queue
        int intr_fd = -1;
        bool intr_armed = false;
        // pmd::RxInterrupt::level (net_tap): the fd is readable while frames wait, and the
        // lcore listens to it only when a wake would find frames it can take: not while
        // the guest pool is empty, and not after a wake whose burst found nothing (net_tap
        // reads no frame until its next SIGIO): then it polls until a burst succeeds.
        bool intr_level = false;
        bool listening = true;   // in epfd_ with EPOLLIN
        bool woke = false;       // its fd was among the last sleep's events
        bool woke_empty = false; // and the burst after that wake found nothing
        // pmd::DriverCaps::burst_within_ready on a zero-copy queue: ask the PMD for at most
        // as many frames as the guest pool can replace (do_nic_rx).
        bool burst_within_ready = false;
    };
    void listen_nic(NicRx& n, bool on);
    // Where the demux sends a frame: a guest queue of this lcore, or another lcore's inbox.
    struct Target {
        GuestQueue* local; // the queue when it lives on this lcore, else nullptr
        std::uint32_t key;
        unsigned lcore;
    };
    struct Demux {
        std::uint16_t port_index = 0;
        std::unordered_map<std::uint64_t, Target> unicast; // destination MAC (6 bytes) -> target
        std::vector<Target> all;                           // broadcast and multicast go to each
    };
    // The guests of one port as its senders on this lcore see them (tx_local.cpp).
    struct LocalTarget {
        Target to;
        std::uint64_t mac = 0;      // 6 bytes, as the unicast table's key
        netif::RxFeatures features; // GSO kinds its frontend takes
    };
    struct LocalPort {
        std::unordered_map<std::uint64_t, LocalTarget> unicast; // destination MAC -> guest
        std::vector<LocalTarget> all; // broadcast and multicast go to each but the sender
    };
    // A frame of the round's grant copy: which queue and requests, which segments.
    struct CopyFrame {
        GuestQueue* q;
        netif::RingIdx first;  // ring index of its first request
        std::uint32_t len;     // bytes
        std::uint32_t seg_end; // its segments end here (they start where the previous ended)
        std::uint8_t nslots;   // requests it took
        bool bounce;           // a zero-copy bounce buffer (counted as received already)
        bool local;            // from a guest on the same port (local_rx_* counters)
        TxWork* from;          // copied from that packet's grants (tx_onecopy), or nullptr
    };
    // What staging a frame into a queue's requests came to.
    enum class Staged : std::uint8_t { ok, no_buffer, too_long, bad_request };
    // TX: the burst's slot copies (tx_add_copies).
    struct TxCopies {
        std::uint32_t copy_max = 0; // rests up to this many bytes are copied
        bool maps = false;          // the port takes mapped pages (else no copy mbuf: drop)
        std::uint32_t count = 0;    // copy mbufs at tx_copy_mbufs_
        std::uint32_t next = 0;     // the next one free
        std::uint32_t nsegs = 0;    // segments at tx_segs_
    };

    // --- loop stages ------------------------------------------------------------------------
    bool do_commands();
    void handle(Command* cmd);
    void attach_queue(Command* cmd);
    Result<hv::EvtchnPort> bind_placed(GuestQueue* q, hv::EvtchnPort remote, unsigned which);
    bool try_finish_detach(Command* cmd);
    void release_nic(Command* cmd);
    void finish_queue(GuestQueue* q);
    void do_events();
    bool do_tx_completions(GuestQueue* q);
    bool do_guest_tx(GuestQueue* q);
    bool do_nic_rx(NicRx& nic);
    void receive_nic_burst(NicRx& nic, rte_mbuf** pkts, std::uint16_t n);
    bool do_inbox();
    bool do_rx_round();
    void sleep_when_idle();

    // --- RX (rx_path.cpp): receive, demultiplex, publish ------------------------------------
    void demux(Demux& d, rte_mbuf** frames, unsigned n);
    void route(const Target& t, rte_mbuf* m);
    void queue_frame(GuestQueue* q, rte_mbuf* m);
    void rx_watch_stall(GuestQueue* q, bool has_buffers);
    bool rx_stall_over(GuestQueue* q);
    void touch(GuestQueue* q) noexcept;
    void publish_rx(GuestQueue* q);
    GuestQueue* queue_by_key(std::uint32_t key) const noexcept;
    Demux* demux_for(std::uint16_t port_index);
    void bad_rx_request(GuestQueue* q, const netif::RxRequest& req);

    // --- the copy pipeline (rx_copy.cpp) ----------------------------------------------------
    bool copy_stage_queue(GuestQueue* q);
    void copy_keep(GuestQueue* q, std::uint32_t first, std::uint32_t n);
    std::uint32_t copy_stage_run(GuestQueue* q, netif::RequestWindow& w, std::uint32_t n);
    bool copy_stage_one(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w);
    void copy_stage_common(GuestQueue* q, rte_mbuf* m, netif::RingIdx idx,
                           const netif::RxRequest& req, std::uint16_t offset, std::uint16_t len,
                           bool local);
    bool copy_stage_frame(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w,
                          const std::optional<netif::FlowHash>& hash);
    void copy_stage_segments(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w,
                             const std::optional<netif::FlowHash>& hash, std::uint16_t mss);
    template <class Source>
    Staged copy_stage_plan(GuestQueue* q, const netif::RxFrame& meta, const netif::RxPlan& plan,
                           netif::RequestWindow& w, Source& src, std::uint32_t pieces, bool local,
                           TxWork* from);
    bool copy_stage_grants(GuestQueue* q, TxWork& t, hv::DomId from_dom,
                           const netif::RxFrame& meta);
    netif::RequestWindow copy_poll(GuestQueue* q);
    std::pair<std::int16_t, std::int16_t> copy_probe(const hv::GrantCopySegment& bad);
    void copy_add_bounce(GuestQueue* q, netif::RingIdx idx, netif::GrantRef gref,
                         const std::byte* src, std::uint16_t offset, std::uint16_t len);
    void copy_count_batch(GuestQueue* q) noexcept;
    void copy_free(rte_mbuf* m);
    void copy_drop(GuestQueue* q, rte_mbuf* m, std::uint64_t& reason);
    void copy_drop(GuestQueue* q, rte_mbuf* m);
    void copy_flush();
    void copy_failed(const CopyFrame& f, const hv::GrantCopySegment& bad);

    // --- the zero-copy pipeline (rx_zero_copy.cpp) ------------------------------------------
    bool zc_post(GuestQueue* q);
    // Buffers a zero-copy queue keeps posted to its NIC queue (EngineOptions::zc_depth).
    unsigned zc_post_depth() const noexcept;
    void zc_map_posted(GuestQueue* q, std::uint32_t nmap);
    void zc_receive(GuestQueue* q, rte_mbuf** frames, unsigned n);
    void zc_receive_unposted(GuestQueue* q, rte_mbuf* m);
    void zc_filled_out_of_order(GuestQueue* q);
    void zc_post_done(GuestQueue* q, ZcPost& p);
    void zc_group_filled(GuestQueue* q, std::int16_t g);
    void zc_release(GuestQueue* q, ZcPost& p);
    void zc_release_round(GuestQueue* q, std::uint32_t first, std::uint32_t end);
    void zc_post_overwrite(GuestQueue* q, std::uint32_t seq);
    std::uint32_t zc_answerable(GuestQueue* q);
    void zc_collect_returned(GuestQueue* q);
    void zc_drop_posted(GuestQueue* q);
    void zc_finish(GuestQueue* q);

    // --- TX helpers (tx_path.cpp) -----------------------------------------------------------
    void tx_build(GuestQueue* q, unsigned n);
    bool tx_build_whole(GuestQueue* q, unsigned n);
    bool tx_check(GuestQueue* q, TxWork& t);
    void tx_send(GuestQueue* q, TxWork& t, rte_mbuf* head);
    bool tx_headers_whole(GuestQueue* q, TxWork& t);
    bool tx_ip_source_ok(GuestQueue* q, TxWork& t);
    bool tx_map(GuestQueue* q, unsigned n, std::int16_t& group);
    void tx_chain(GuestQueue* q, TxWork& t, std::int16_t group);
    void tx_add_copies(GuestQueue* q, TxWork& t, TxCopies& c);
    void tx_copy(GuestQueue* q, std::uint32_t nsegs);
    bool tx_copies_ok(GuestQueue* q, TxWork& t, bool headers);
    bool tx_onecopy_burst(GuestQueue* q, unsigned n);
    void tx_stage(std::uint16_t port_index, rte_mbuf* m);
    void tx_stage_bulk(std::uint16_t port_index, rte_mbuf* const* ms, unsigned n);
    using TxSegments = std::array<rte_mbuf*, 64>; // what software segmentation may make
    unsigned tx_segment(GuestQueue* q, const TxWork& t, rte_mbuf* head, bool csum_offload,
                        TxSegments& segs);
    std::int16_t mcast_update(GuestQueue* q, const netif::TxMcast& m);
    void tx_release_group(GuestQueue* q, std::int16_t g);
    void tx_flush(std::uint16_t port_index);
    void tx_flush_all();
    struct TxStage;
    void tx_prepare(std::uint16_t port_id, std::uint16_t txq, TxStage& st);
    void tx_drop_staged(std::span<rte_mbuf* const> ms);
    void tx_cleanup_held();

    // --- guest-to-guest delivery (tx_local.cpp) ---------------------------------------------
    bool tx_local(GuestQueue* q, TxWork& t, rte_mbuf* head);
    void tx_local_flood(GuestQueue* q, TxWork& t, rte_mbuf* head, const LocalPort& lp);
    const LocalTarget* tx_local_unicast(const GuestQueue* q, const rte_mbuf* head) const;
    bool tx_onecopy(GuestQueue* q, TxWork& t);
    void local_deliver(const Target& to, rte_mbuf* m);
    bool is_local(const rte_mbuf* m) const noexcept { return (m->ol_flags & local_flag_) != 0; }
    void local_add(Command* cmd);
    void local_remove(Command* cmd);

public:
    // Called (from any thread) when a PMD frees a TX external buffer.
    static void tx_buffer_released(void* addr, void* opaque);

    // Disables a queue's vif on a fatal error (the control plane detaches it).
    void disable(GuestQueue* q, const char* what, const char* detail = "");
    void report_fallback(GuestQueue* q, RxMode mode, const char* why);
    void notify_rx(GuestQueue* q);
    void notify_tx(GuestQueue* q);
    // The loop's calls into the grant table, each counted (grant_*_calls): the figures of
    // system calls per packet (one ioctl each on Xen).
    Status grant_copy(std::span<hv::GrantCopySegment> segs) {
        bump(counters_.grant_copy_calls);
        return gt_->copy(segs);
    }
    hv::GrantMapping grant_map(std::span<const hv::GrantMapRequest> reqs,
                               std::span<std::int16_t> status) {
        bump(counters_.grant_map_calls);
        return gt_->map(reqs, status);
    }
    Status grant_unmap(hv::GrantMapping& mapping) {
        bump(counters_.grant_unmap_calls);
        return gt_->unmap(mapping);
    }
    // A run of grant-mapped pages into the IOMMU of the port that gets them (PortState::dma),
    // with one call, before any buffer of it reaches the PMD. False when refused (counted,
    // logged per vif): the caller undoes the grant map and falls back.
    bool dma_map_run(GuestQueue* q, hv::DmaMapper* dma, const hv::GrantMapping& m);
    // A run's grants unmapped, out of the IOMMU first when it is mapped there (`dma` is then
    // cleared). When the IOMMU refuses, the grants stay mapped (the device may still reach the
    // pages) and the error is returned.
    Status unmap_run(GuestQueue* q, hv::DmaMapper*& dma, hv::GrantMapping& m);

private:
    EngineCore& engine_;
    unsigned index_;
    unsigned lcore_id_;
    std::unique_ptr<hv::GrantTable> gt_;
    std::unique_ptr<hv::EventChannels> ev_;
    // EngineOptions::place_interrupts: the IRQ name of ev_'s ports (nullopt: off, or no
    // kernel IRQs), the lcore's CPUs, a limit on the log lines of failed placements.
    std::optional<std::string> irq_action_;
    pmd::CpuSet cpus_;
    LogLimiter placement_log_;
    int epfd_ = -1;
    bool use_epoll_wait_ = false; // epoll_pwait2 answered ENOSYS (sleep_when_idle)
    int wakefd_ = -1;
    rte_ring* cmds_ = nullptr;
    rte_ring* inbox_ = nullptr;
    rte_mempool* hdr_pool_ = nullptr;  // TX: copied headers, software segments
    rte_mempool* ext_pool_ = nullptr;  // TX: headers attached to mapped guest pages
    rte_mempool* copy_pool_ = nullptr; // TX: slots grant-copied whole (tx_copy_slot_max)
    std::atomic<bool> sleeping_{false};
    bool stop_ = false;
    std::uint64_t stall_tsc_ = 0; // EngineOptions::rx_stall_timeout in TSC cycles (0: off)

    std::vector<GuestQueue*> queues_;
    std::atomic<unsigned> queue_count_{0};
    std::atomic<unsigned> nic_queue_count_{0};        // nic_rx_.size(), for stats()
    std::array<GuestQueue*, kMaxQueueKeys> by_key_{}; // by queue_key_slot(key)
    std::unordered_map<hv::EvtchnPort, GuestQueue*> by_port_;
    std::vector<NicRx> nic_rx_;
    std::vector<Demux> demux_;
    std::vector<LocalPort> local_; // by engine port index: its guests (local delivery)
    // The mbuf flag that marks a frame from a guest on the same port (EngineCore::local_flag).
    std::uint64_t local_flag_ = 0;
    std::vector<Command*> detaching_;
    std::vector<std::uint8_t> port_paused_; // by port index; bytes: one load per test

    // --- per-round scratch: fixed capacities (no allocation on the data path) ---------------
    // Queues with RX work this round (each once: GuestQueue::rx_touched).
    std::array<GuestQueue*, kMaxQueueKeys> touched_{};
    std::uint32_t n_touched_ = 0;
    // The round's grant copy into guests. A frame takes at most kRxMaxDataSlots chunks, each
    // split where its mbuf chain splits; the batch is flushed early when the next frame
    // would not fit.
    static constexpr std::uint32_t kCopySegs = 1024;
    static constexpr std::uint32_t kCopyFrames = 256;
    static constexpr std::uint32_t kCopyFree = 512; // mbufs freed in bulk after the copy
    static_assert(kCopySegs >= 4 * netif::kRxMaxDataSlots && kCopyFrames >= kMaxBurst &&
                  kCopyFree >= 2 * kMaxBurst);
    std::array<hv::GrantCopySegment, kCopySegs> segs_{};
    std::uint32_t n_segs_ = 0;
    std::array<CopyFrame, kCopyFrames> copy_frames_{};
    std::uint32_t n_copy_frames_ = 0;
    std::array<rte_mbuf*, kCopyFree> copy_free_{};
    std::uint32_t n_copy_free_ = 0;
    std::uint32_t copy_batch_ = 1; // sequence number of the open batch
    // Grant maps: a zero-copy post maps at most a burst; a TX burst maps at most every slot
    // of every packet.
    static constexpr std::uint32_t kMapReqs = kMaxBurst * netif::kTxMaxSlots;
    std::array<hv::GrantMapRequest, kMapReqs> map_reqs_{};
    std::array<std::int16_t, kMapReqs> map_status_{};
    std::array<netif::RingIdx, kMaxBurst> map_idx_{}; // RX: the ring index of each map request
    // TX: a burst's packets, its grant copy (a header per packet and every slot copied
    // whole: at most 1 + kTxMaxSlots segments a packet) and its copy mbufs.
    static_assert(std::tuple_size_v<decltype(netif::TxPacket::slots)> == netif::kTxMaxSlots);
    static constexpr std::uint32_t kTxSegs = kMaxBurst * (1 + netif::kTxMaxSlots);
    std::array<TxWork, kMaxBurst> tx_work_{};
    std::array<hv::GrantCopySegment, kTxSegs> tx_segs_{};
    std::array<rte_mbuf*, kMaxBurst * netif::kTxMaxSlots> tx_copy_mbufs_{};
    // TX staging per port (sized at init, one per port): mbufs for rte_eth_tx_burst, sent
    // once per loop iteration or when full.
    struct TxStage {
        std::array<rte_mbuf*, 2 * kMaxBurst> m{};
        std::uint32_t n = 0;
        bool listed = false; // in tx_stage_ports_
    };
    std::vector<TxStage> tx_stage_;
    std::vector<std::uint16_t> tx_stage_ports_; // ports with staged packets (one slot a port)
    std::uint32_t n_tx_stage_ports_ = 0;

    LcoreCounters counters_;
    StageClock clock_;
    // The loop thread's CPU-time clock, published when run() starts: stats() reads what the
    // thread has spent on a CPU (user and system) without the loop timing itself.
    clockid_t cpu_clock_{};
    std::atomic<bool> cpu_clock_set_{false};
    // The loop thread's id, published when run() starts: stats() reads the kernel's count of
    // its system calls (DPNB_LCORE_THREAD_COUNTERS).
    std::atomic<pid_t> tid_{0};

    friend class EngineCore;
};

} // namespace dpnb::engine::detail
