// One worker lcore's poll loop and everything it owns: its guest queues, the NIC RX queues it
// polls (dedicated queues of its guests, shared queues it demultiplexes), its hypervisor
// handles (a grant table, an event-channel handle whose fd it sleeps on), its TX queue on
// every port (TX queue id = lcore index), its mbuf pools, its command ring and its inbox.
//
// The control thread talks to it only through commands (a single-producer ring): attach
// and detach a queue, steer a MAC on a shared queue, set a mode, a rate or a hash
// configuration, pause a port, stop. Another lcore hands it frames through its inbox
// (multi-producer): frames its demux found for a guest queue this lcore owns.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <unordered_map>
#include <vector>

#include "dp_common.hpp"
#include "dpnb/hv/event_channel.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/hypervisor.hpp"
#include "guest_queue.hpp"

struct rte_mempool;
struct rte_ring;

namespace dpnb::engine::detail {

class EngineCore;

struct Command {
    enum class Kind : std::uint8_t {
        attach,       // queues: start serving (binds event channels)
        detach,       // queues: stop serving; acknowledged once TX buffers are back
        release_nic,  // queues: the NIC queue released its buffers: finish the detach
        steer_add,    // demux: frames to `mac` on port `port_index` go to queue `key`
        steer_remove, // demux: forget `key` on port `port_index`
        set_mode,     // queues: RX mode for new buffers (view for reuse)
        set_rate,     // queues: credit-based TX rate limit
        set_hash,     // queues: the vif's hash configuration (control ring)
        port_pause,   // stop touching port `port_index` (RX and TX)
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
    DPNB_LCORE_COUNTERS(DPNB_X)
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
    struct Target {
        std::uint32_t key;
        unsigned lcore;
    };
    struct Demux {
        std::uint16_t port_index = 0;
        std::unordered_map<std::uint64_t, Target> unicast;
        std::vector<Target> all; // broadcast and multicast go to each
    };
    // A frame of this round's copy batch: which queue, which slots, which segments.
    struct CopyFrame {
        GuestQueue* q;
        rte_mbuf* m;          // freed after the copy (nullptr for bounce slots)
        std::uint32_t first;  // ring index of the first slot
        std::uint32_t nslots; // request slots the frame took
        std::uint32_t seg_begin, seg_end;
        netif::RxFrame meta;
        std::uint16_t nchunks;
        std::array<netif::RxChunk, netif::kRxMaxDataSlots> chunks;
    };

    // --- loop stages ------------------------------------------------------------------------
    bool do_commands();
    void handle(Command* cmd);
    void attach_queue(Command* cmd);
    bool try_finish_detach(Command* cmd);
    void release_nic(Command* cmd);
    void finish_queue(GuestQueue* q);
    bool do_events();
    bool do_tx_completions(GuestQueue* q);
    bool do_guest_tx(GuestQueue* q);
    bool do_nic_rx(NicRx& nic);
    bool do_inbox();
    bool do_rx_post(GuestQueue* q);
    bool do_rx_deliver();
    void sleep_when_idle();

    // --- RX helpers (rx_path.cpp) -----------------------------------------------------------
    void demux(Demux& d, rte_mbuf** frames, unsigned n);
    void route(const Target& t, rte_mbuf* m);
    void queue_frame(GuestQueue* q, rte_mbuf* m);
    void complete_zero_copy(GuestQueue* q, rte_mbuf* m);
    void collect_returned(GuestQueue* q);
    bool stage_copy_frame(GuestQueue* q, rte_mbuf* m);
    void stage_bounce(GuestQueue* q, std::uint32_t idx, rte_mbuf* m);
    void finish_copies();
    void group_filled(GuestQueue* q, std::int16_t g);
    void answer_rx(GuestQueue* q);
    void release_rx_slot(GuestQueue* q, RxSlot& s);
    void release_rx_round(GuestQueue* q, netif::RingIdx first, netif::RingIdx end);
    void bad_rx_request(GuestQueue* q, const netif::RxRequest& req);
    void drop_posted(GuestQueue* q);
    Demux* demux_for(std::uint16_t port_index);

    // --- TX helpers (tx_path.cpp) -----------------------------------------------------------
    void tx_build(GuestQueue* q, unsigned n);
    bool tx_map(GuestQueue* q, unsigned n, std::int16_t& group);
    void tx_chain(GuestQueue* q, TxWork& t, std::int16_t group);
    void tx_stage(std::uint16_t port_index, rte_mbuf* m);
    std::int16_t mcast_update(GuestQueue* q, const netif::TxMcast& m);
    void tx_release_group(GuestQueue* q, std::int16_t g);
    void tx_flush(std::uint16_t port_index, std::uint16_t port_id);
    void tx_cleanup_held();

public:
    // Called (from any thread) when a PMD frees a TX external buffer.
    static void tx_buffer_released(void* addr, void* opaque);

    // Disables a queue's vif on a fatal error (the control plane detaches it).
    void disable(GuestQueue* q, const char* what, const std::string& detail);
    void report_fallback(GuestQueue* q, RxMode mode, const std::string& why);
    void notify_rx(GuestQueue* q);
    void notify_tx(GuestQueue* q);

private:
    EngineCore& engine_;
    unsigned index_;
    unsigned lcore_id_;
    std::unique_ptr<hv::GrantTable> gt_;
    std::unique_ptr<hv::EventChannels> ev_;
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

    std::vector<GuestQueue*> queues_;
    std::atomic<unsigned> queue_count_{0};
    std::atomic<unsigned> nic_queue_count_{0}; // nic_rx_.size(), for stats()
    std::unordered_map<std::uint32_t, GuestQueue*> by_key_;
    std::unordered_map<hv::EvtchnPort, GuestQueue*> by_port_;
    std::vector<NicRx> nic_rx_;
    std::vector<Demux> demux_;
    std::vector<Command*> detaching_;
    std::vector<bool> port_paused_;

    // Per-round scratch (no allocation on the data path: sized at init).
    std::vector<hv::GrantCopySegment> segs_;
    std::vector<CopyFrame> copy_frames_;
    std::vector<GuestQueue*> rx_touched_;
    std::vector<hv::GrantMapRequest> map_reqs_;
    std::vector<std::int16_t> map_status_;
    std::vector<TxWork> tx_work_;
    std::vector<hv::GrantCopySegment> tx_segs_;
    // TX staging per port: mbufs to send with rte_eth_tx_burst.
    std::vector<std::vector<rte_mbuf*>> tx_stage_;
    std::vector<std::uint16_t> tx_stage_ports_;

    LcoreCounters counters_;
    StageClock clock_;
    // The loop thread's CPU-time clock, published when run() starts: stats() reads what the
    // thread has spent on a CPU (user and system) without the loop timing itself.
    clockid_t cpu_clock_{};
    std::atomic<bool> cpu_clock_set_{false};

    friend class EngineCore;
};

} // namespace dpnb::engine::detail
