// The Engine: dpnetback's data plane over DPDK, the implementation of DataPlane
// (docs/datapath.md). One poll loop per worker lcore owns a set of guest queues (their TX and
// RX rings, their dedicated NIC RX queue) and moves frames between guests and ports:
//   * guest TX: parse (netback-core), copy the first bytes into a daemon mbuf (anti-spoofing
//     on a copy the guest cannot change), map the rest and attach it as external buffers;
//     the TX response goes out when the PMD frees the mbuf;
//   * RX on a dedicated queue whose PMD writes buffers in order: the guest's own posted
//     buffers (mapped, or found in the translation table) are the NIC's buffers (zero copy);
//   * RX on the shared queue or a PMD that copies: software demux by MAC, batched grant copy.
// Every burst is committed with one batched grant operation, one producer publish and at
// most one notification per ring; idle lcores sleep on their event channels, RX interrupts
// and a command eventfd.
//
// Threading: create(), the DataPlane methods and shutdown() are called from one control
// thread (the thread that initialised EAL, which is DPDK's main lcore). This header is free
// of DPDK so that the control plane and benchmarks need not include it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dpnb/engine/data_plane.hpp"
#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/hv/persistent_grant_table.hpp"
#include "dpnb/netif/tx_parser.hpp"
#include "dpnb/pmd/cpu_placement.hpp"
#include "dpnb/pmd/eal.hpp"
#include "dpnb/pmd/port.hpp"

namespace dpnb::engine {

struct EngineOptions {
    pmd::EalOptions eal;
    std::vector<pmd::PortConfig> ports;

    unsigned burst = 32;    // frames or packets per burst (1..64)
    unsigned zc_depth = 64; // RX requests posted ahead to a zero-copy NIC queue
    // Map mode: RX buffers mapped per grant-map call. A group is unmapped when its last
    // buffer is filled, so with more than 1 a filled buffer can wait for later frames
    // (docs/datapath.md, "map mode"); 1 keeps latency, larger values batch hypercalls.
    unsigned map_batch = 1;
    // Reuse mode: what to do with a posted buffer that is not in the translation table.
    RxMode reuse_miss = RxMode::map; // map or copy

    // Static grants (docs/protocol.md): the persistent-grant table of a vif whose frontend
    // registers its RX buffers over the control ring.
    hv::PersistentGrantLimits static_grants;

    // TX
    std::uint16_t tx_copy_len = 128; // bytes grant-copied into the header mbuf (Linux: 128)
    // The rest of each TX slot up to this many bytes is grant-copied into a daemon mbuf (in
    // the header's batched copy); larger pieces are grant-mapped and sent zero copy. A
    // userspace backend maps through gntdev (an ioctl, an mmap and, at unmap, a TLB flush
    // per call), which costs more than Xen copying a page: 4096 copies every slot, 0 maps.
    std::uint16_t tx_copy_slot_max = 4096;
    bool anti_spoofing = true; // the source MAC must be the vif's
    // IPv4 sources and ARP senders must be among the vif's toolstack "ip" addresses (vifs
    // without the key are not filtered): Xen's vif scripts' iptables rules, in the backend.
    bool ip_anti_spoofing = false;
    netif::TxLimits tx_limits; // max_frame_len is derived from the port MTU when 0
    // A data grant the guest revoked or never granted (map or copy fails with bad_gntref,
    // permission_denied, ...) disables the vif; otherwise the packet is answered in error.
    bool fatal_bad_grants = true;

    // A guest queue with frames for it and no RX buffer posted for this long is stalled
    // (Linux netback's carrier off, XSA-392): its frames are dropped at once, before any
    // staging, until it posts again. 0: never (Linux's default is 60 s).
    std::chrono::milliseconds rx_stall_timeout{60000};

    // Mbufs
    unsigned rx_mbufs_per_port = 4096; // daemon RX mbufs per port (copy queues)
    unsigned tx_mbufs_per_lcore = 4096;

    // Idle: polls without work before the lcore arms its sources and sleeps; how long it
    // sleeps at most when every source can wake it, and when some cannot (a PMD without RX
    // interrupts, a frontend without feature-rx-notify, TX buffers held by a PMD).
    unsigned idle_polls = 256;
    std::chrono::milliseconds max_sleep{100};
    std::chrono::microseconds poll_sleep{500};

    // Placement (docs/datapath.md, "Interrupts and vhost workers"). An idle lcore sleeps on
    // its event channels; Linux gives each newly bound channel's IRQ to the next CPU in turn,
    // so a guest's notification would run on another CPU and wake the lcore with an IPI
    // (through the hypervisor on Xen). With place_interrupts the lcore moves the IRQ of each
    // channel it binds to its own CPUs. With place_vhost_workers vhost-net's workers of a
    // virtio_user port (which move its frames to and from the kernel's tap) go to the CPUs
    // of the lcores that poll the port. Off: the kernel's and the scheduler's choice.
    bool place_interrupts = true;
    bool place_vhost_workers = true;

    std::chrono::milliseconds command_timeout{10000}; // lcore acknowledgements
    std::chrono::milliseconds drain_timeout{10000};   // in-flight TX at detach
};

// Validates options without touching DPDK (ranges, names, groups, steering).
Status validate(const EngineOptions& options);

// Per-stage TSC cycles of one poll loop (all zero unless built with DPNB_STAGE_TIMING).
#define DPNB_STAGES(X)                                                                             \
    X(commands, "control commands")                                                                \
    X(tx_completions, "TX buffers released by PMDs: unmap and answer")                             \
    X(guest_tx, "guest TX rings: parse, copy headers, map, transmit")                              \
    X(nic_rx, "NIC RX queues: receive, complete zero-copy buffers, demux")                         \
    X(rx_deliver, "RX: grant copy, responses, publish")                                            \
    X(rx_post, "RX: post guest buffers to zero-copy NIC queues")                                   \
    X(sleep, "idle: arming and sleeping")

enum class Stage : std::uint8_t {
#define DPNB_X(name, help) name,
    DPNB_STAGES(DPNB_X)
#undef DPNB_X
        count
};
const char* to_string(Stage s) noexcept;

struct StageTime {
    std::uint64_t cycles = 0;
    std::uint64_t calls = 0;
};

// Counters of one lcore; names and help come from one table (lcore_counter_table()). The
// loop counts the first list itself; the kernel counts the second for the loop's thread, and
// stats() reads it (/proc/self/task/TID/io). Together they say what the lcore costs in
// system calls per packet (docs/operations.md, "System calls per packet"): each hypervisor
// call below is one ioctl on Xen (a grant map or unmap also an mmap or munmap), whatever the
// size of its batch.
#define DPNB_LCORE_LOOP_COUNTERS(X)                                                                \
    X(busy_polls, "poll-loop iterations that found work")                                          \
    X(idle_polls, "poll-loop iterations that found none")                                          \
    X(sleeps, "times the lcore slept on its event channels, interrupts and command fd")            \
    X(inbox_frames, "frames handed to the lcore by another lcore's demultiplexing")                \
    X(inbox_drops, "frames for another lcore's guest dropped: that lcore's inbox was full")        \
    X(tx_nic_drops, "packets a port's TX queue did not take (full), or sent to a paused port")     \
    X(grant_copy_calls, "grant-copy calls into the hypervisor, a batch of segments each")          \
    X(grant_map_calls, "grant-map calls into the hypervisor, a batch of grants each")              \
    X(grant_unmap_calls, "grant-unmap calls into the hypervisor, a mapped batch each")             \
    X(dma_map_calls, "IOMMU map calls for a port behind vfio with an IOMMU, a run of "             \
                     "grant-mapped pages each (RX map mode, TX slots)")                            \
    X(dma_unmap_calls, "IOMMU unmap calls, a mapped run each")                                     \
    X(dma_map_failures, "IOMMU maps refused: RX buffers bounced (copied), TX packets dropped")     \
    X(dma_unmap_failures, "IOMMU unmaps refused: the pages stay grant-mapped and the vif is "      \
                          "disabled")                                                              \
    X(notify_calls, "event-channel notifications the lcore sent to guests")                        \
    X(irq_placement_failures, "event channels whose IRQ the lcore could not move to its CPUs "     \
                              "(none or several new IRQs of its handle's name, or the write "      \
                              "refused): the guest is served, its wake-ups may cross CPUs")
#define DPNB_LCORE_THREAD_COUNTERS(X)                                                              \
    X(read_syscalls, "read-family system calls of the lcore's thread (the kernel's syscr): "       \
                     "PMD reads (net_tap's readv per frame), event-channel and wake-up reads")     \
    X(write_syscalls, "write-family system calls of the lcore's thread (the kernel's syscw): "     \
                      "PMD writes (net_tap's writev per frame, a vhost-net kick), "                \
                      "event-channel unmasks")
#define DPNB_LCORE_COUNTERS(X) DPNB_LCORE_LOOP_COUNTERS(X) DPNB_LCORE_THREAD_COUNTERS(X)

struct LcoreStats {
    unsigned lcore = 0;
    std::string cpus;        // the CPUs the lcore's thread may run on ("1", "2-3")
    unsigned queues = 0;     // guest queues owned
    unsigned nic_queues = 0; // NIC RX queues polled (dedicated and shared)
#define DPNB_X(name, help) std::uint64_t name = 0;
    DPNB_LCORE_COUNTERS(DPNB_X)
#undef DPNB_X
    std::uint64_t tsc_hz = 0;
    // CPU time of the lcore's thread (user and system: the PMD's and the hypervisor
    // interface's system calls included, its sleeps and the time it waits for a CPU not).
    std::uint64_t cpu_ns = 0;
    bool stage_timing = false;
    std::vector<StageTime> stages; // Stage order
};

struct PortStatus {
    std::string name;
    std::string driver;
    std::uint16_t port_id = 0;
    pmd::Steering steering = pmd::Steering::shared;
    bool zero_copy = false;
    std::string copy_reason;
    // What the DMA policy (dpnb/pmd/dma_policy.hpp) made of the port's device here, and why.
    pmd::DmaInputs dma_inputs;
    pmd::DmaVerdict dma = pmd::DmaVerdict::refused;
    std::string dma_reason;
    bool flow_rules = false;
    std::uint16_t rx_queues = 0;
    std::uint32_t mtu = 0;
    // The offloads configured (DPDK's names: "TCP_LRO", "TCP_TSO", ...).
    std::vector<std::string> rx_offloads;
    std::vector<std::string> tx_offloads;
    std::vector<std::optional<VifId>> queue_owner; // dedicated queues; [0] of shared ports empty
    // The mempool each RX queue allocates from, by name (rte_mempool_lookup): a guest-buffer
    // pool on a zero-copy queue, which a net_ring peer playing the NIC takes buffers from
    // (pmd::PortConfig::rx_peer_fills_pool).
    std::vector<std::string> rx_pools;
    // vhost-net's worker threads of a virtio_user port over /dev/vhost-net (none for other
    // PMDs), the CPUs they were given ("" when not placed) and the placements that failed.
    std::vector<int> vhost_workers;
    std::string vhost_cpus;
    std::uint64_t vhost_placement_failures = 0;
    pmd::Port::Stats stats;
};

std::span<const CounterInfo> lcore_counter_table() noexcept; // declaration order
// Value of the i-th counter of lcore_counter_table().
std::uint64_t counter_value(const LcoreStats& s, std::size_t i) noexcept;

// What shutdown() found still held.
struct LeakReport {
    std::uint64_t mapped_grants = 0; // over every grant-table handle of the engine
    std::uint64_t mbufs_missing = 0; // daemon mbufs not back in their pools
    std::uint64_t guest_headers_missing = 0;
    std::vector<std::string> details;
    bool clean() const noexcept {
        return mapped_grants == 0 && mbufs_missing == 0 && guest_headers_missing == 0;
    }
};

class Engine final : public DataPlane {
public:
    // Initialises EAL (once per process), opens and starts every port, opens the per-lcore
    // hypervisor handles and launches the poll loops. `dma` tells the domain type and each
    // port's device for the DMA policy: a port it refuses fails create(), one it keeps from
    // guest pages copies. `placement` moves IRQs and vhost workers (EngineOptions::place_*):
    // the system's when null. `iommu` DMA-maps guest pages for ports whose device is behind
    // an IOMMU (pmd::DmaRule::dma_map): DPDK's vfio container when null.
    static Result<std::unique_ptr<Engine>>
    create(const EngineOptions& options, hv::BackendHypervisor& hv,
           const pmd::DmaProbe& dma = pmd::system_dma_probe(),
           pmd::CpuPlacement* placement = nullptr, hv::DmaMapper* iommu = nullptr);
    // shutdown() if not done.
    ~Engine() override;
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    Status attach(const VifSpec& spec) override;
    Status detach(const VifId& id) override;
    Status set_rx_mode(const VifId& id, RxMode mode) override;
    Status set_rate(const VifId& id, std::optional<netif::RateLimit> rate) override;
    Status set_mcast_control(const VifId& id, bool on) override;
    std::vector<VifStatus> list() const override;
    Result<VifStatus> status(const VifId& id) const override;
    int events_fd() const override;
    std::optional<DataPlaneEvent> next_event() override;

    // Detaches every vif, stops the lcores, closes the ports and checks that every grant
    // and mbuf came back. Errc::busy (with the report in the message) when something leaked.
    Status shutdown();
    // The report of the last shutdown(), or of the current state.
    LeakReport leaks() const;

    std::vector<LcoreStats> lcore_stats() const;
    std::vector<PortStatus> ports() const;

    class Impl;

private:
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace dpnb::engine
