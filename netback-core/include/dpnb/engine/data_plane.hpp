// The contract between the control plane and the data plane.
//
// The control plane (daemon/control: xenstore, one xenbus state machine per vif) decides
// WHEN a vif is connected and with WHAT configuration; the data plane (pmd-glue's Engine:
// DPDK lcores, rings, grants) moves its packets. This interface is all the control plane
// knows of the data plane, so that it is tested against a fake and the Engine is tested
// without xenstore. Pure C++: no DPDK, no Xen library.
//
// Threading: every method is called from the control-plane thread only. attach() returns
// once the owning lcore runs the vif; detach() returns once no lcore touches it any more and
// every grant and port of the vif is released (the control plane may then tell the
// frontend Closed). The data plane reports what it decides on its own (a vif disabled by a
// fatal protocol error, a mode fallback) through events(): an fd the control plane polls.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/netif/features.hpp"
#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/wire.hpp"
#include "dpnb/netif/xs_value.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::engine {

// How frames reach the guest's RX buffers (docs/architecture.md, "RX modes").
enum class RxMode : std::uint8_t {
    copy,  // NIC writes daemon buffers; one batched grant copy per burst (Linux netback)
    map,   // the guest buffer is mapped per burst and the NIC writes into it
    reuse, // translation-table lookup, no per-packet hypercall
};
const char* to_string(RxMode mode) noexcept;
Result<RxMode> parse_rx_mode(std::string_view text);

struct VifId {
    netif::DomId dom = 0;
    std::uint32_t handle = 0;
    auto operator<=>(const VifId&) const = default;
};
std::string to_string(const VifId& id); // "vif<dom>.<handle>", as Linux names the netdev

// Everything the data plane needs to run one vif. Immutable once attached.
struct VifSpec {
    VifId id;
    netif::MacAddress mac;                 // the guest's MAC: steering, anti-spoofing
    RxMode rx_mode = RxMode::copy;         // requested; the data plane may fall back (events)
    std::string port;                      // the uplink port's configured name
    std::optional<std::uint16_t> rx_queue; // a dedicated NIC RX queue, if the operator chose one
    netif::FrontendConfig frontend;        // rings, event channels, negotiated features
    std::optional<netif::RateLimit> rate;  // toolstack's "rate" (credit-based, as netback)
    // The toolstack's "ip": the IPv4 addresses the guest may send from, enforced when
    // EngineOptions::ip_anti_spoofing is on (netif/ip_filter.hpp); empty: not filtered.
    std::vector<netif::Ipv4Address> ip;
    // Re-attach after a daemon restart: take over rings that already carried traffic, at
    // their shared indices (docs/xenbus.md, "daemon restart").
    bool resume = false;
};

enum class VifRunState : std::uint8_t {
    running,
    disabled, // a fatal protocol error: the data plane stopped serving it; detach() it
};

// Counters of one vif, summed over its queues; names and help come from one table.
#define DPNB_VIF_COUNTERS(X)                                                                       \
    X(rx_packets, "frames delivered to the guest")                                                 \
    X(rx_bytes, "bytes delivered to the guest")                                                    \
    X(tx_packets, "frames sent by the guest")                                                      \
    X(tx_bytes, "bytes sent by the guest")                                                         \
    X(rx_drop_no_buffer, "frames for the guest dropped: no RX buffer posted")                      \
    X(rx_drop_placeholder, "frames that landed in a start-up placeholder buffer")                  \
    X(rx_drop_error, "frames for the guest dropped: grant or NIC error")                           \
    X(rx_bad_request, "RX requests naming a buffer beyond its page (the vif is disabled)")         \
    X(rx_drop_stalled, "frames for the guest dropped unstaged: its queue is stalled")              \
    X(rx_stalls, "times a queue of the vif stalled: frames and no RX buffer for rx_stall_timeout") \
    X(tx_drop_protocol, "guest packets dropped by the TX parser (see tx_error_*)")                 \
    X(tx_drop_spoofed, "guest packets dropped: source MAC is not the vif's")                       \
    X(tx_drop_ip_spoofed, "guest packets dropped: IPv4 source or ARP sender not in the vif's ip")  \
    X(tx_drop_error, "guest packets dropped: grant or NIC error")                                  \
    X(tx_drop_headers, "guest packets dropped: headers longer than engine.tx_copy_len (XSA-423)")  \
    X(grant_copy_ops, "grant copy segments")                                                       \
    X(grant_map_ops, "grants mapped")                                                              \
    X(grant_unmap_ops, "grants unmapped")                                                          \
    X(grant_batches, "batched grant hypercalls")                                                   \
    X(iott_hits, "RX buffers found in the translation table")                                      \
    X(iott_misses, "RX buffers not in the translation table (mapped or copied instead)")           \
    X(daemon_copies, "frames the daemon copied with the CPU or grant copy")                        \
    X(notify_sent, "event-channel notifications sent to the guest")                                \
    X(notify_received, "event-channel notifications received from the guest")                      \
    X(rx_out_of_order, "zero-copy RX buffers a PMD filled out of order (the queue then copies)")   \
    X(rx_post_overwrite, "zero-copy RX posts refused: their slot held a live post (the vif is "    \
                         "disabled)")                                                              \
    X(rx_gso_segmented, "GSO frames (a port's large receives) segmented for a frontend without "   \
                        "GSO of their kind or feature-sg")                                         \
    X(local_tx_packets, "frames the guest sent to guests on its port, delivered without the wire") \
    X(local_tx_bytes, "bytes the guest sent to guests on its port, delivered without the wire")    \
    X(local_rx_packets, "frames delivered to the guest from guests on its port")                   \
    X(local_rx_bytes, "bytes delivered to the guest from guests on its port")                      \
    X(local_rx_drops, "frames from guests on its port dropped for the guest (counted in "          \
                      "rx_drop_*)")                                                                \
    X(rx_lro, "frames the port aggregated (LRO) delivered to the guest whole")                     \
    X(tx_tso, "guest GSO packets handed to the port whole, for it to segment (TSO)")

struct VifCounters {
#define DPNB_X(name, help) std::uint64_t name = 0;
    DPNB_VIF_COUNTERS(DPNB_X)
#undef DPNB_X
};

struct CounterInfo {
    const char* name;
    const char* help;
};

// A counter table built from one X-macro list (DPNB_VIF_COUNTERS, DPNB_LCORE_COUNTERS): each
// entry's name and help, and the field of Stats it reads, so the names and the values
// cannot drift apart. In a source file: `using CounterStats = S;` then
// `make_counter_table<S>({LIST(DPNB_COUNTER_FIELD)})`.
template <class Stats>
struct CounterField {
    CounterInfo info;
    std::uint64_t Stats::*field;
};
#define DPNB_COUNTER_FIELD(name, help) {{#name, help}, &CounterStats::name},

template <class Stats, std::size_t N>
struct CounterTable {
    std::array<CounterInfo, N> info{};
    std::array<std::uint64_t Stats::*, N> field{};
    // 0 past the end, as a reader of a newer table's index would want.
    std::uint64_t value(const Stats& s, std::size_t i) const noexcept {
        return i < N ? s.*field[i] : 0;
    }
};

template <class Stats, std::size_t N>
constexpr CounterTable<Stats, N> make_counter_table(const CounterField<Stats> (&fields)[N]) {
    CounterTable<Stats, N> t;
    for (std::size_t i = 0; i < N; ++i) {
        t.info[i] = fields[i].info;
        t.field[i] = fields[i].field;
    }
    return t;
}
std::span<const CounterInfo> vif_counter_table() noexcept; // declaration order
// Value of the i-th counter of vif_counter_table().
std::uint64_t counter_value(const VifCounters& c, std::size_t i) noexcept;

// Where the driver domain's kernel delivers one queue's event channels: the IRQ of each
// bound port (TX then RX; one with a shared channel; none known on the simulator), the CPUs
// they were given ("" when not placed) and what placing them came to: "placed", "off",
// "no_irq", "not_found", "ambiguous", "failed" (docs/datapath.md, "Interrupts and vhost
// workers").
struct QueueIrqs {
    std::vector<unsigned> irqs;
    std::string cpus;
    std::string placement;
};

struct VifStatus {
    VifId id;
    VifRunState state = VifRunState::running;
    RxMode rx_mode = RxMode::copy; // in effect (may differ from the requested one)
    std::string rx_mode_reason;    // why, when it differs
    std::string port;
    std::optional<std::uint16_t> rx_queue; // dedicated NIC queue, nullopt when shared
    unsigned lcore = 0;
    unsigned queues = 0;
    // Queues stalled now: frames for them and no RX buffer posted for rx_stall_timeout; their
    // frames are dropped until the guest posts again (Linux: carrier off).
    unsigned stalled_queues = 0;
    // Frames (and their bytes) kept for the guest after the last round because it had no RX
    // buffer for them, over its queues: at most 256 frames and 512 KiB a queue, none while
    // stalled (docs/datapath.md, "RX").
    std::uint64_t rx_backlog_frames = 0;
    std::uint64_t rx_backlog_bytes = 0;
    std::string disabled_reason; // when state == disabled
    // Static grants (docs/protocol.md): whether the vif has a control ring, and the RX
    // buffers its frontend has registered over it.
    bool control_ring = false;
    std::uint32_t static_grants = 0;
    // Behind an IOMMU (a zero-copy queue of a port whose pages are DMA-mapped), the
    // registered pages' IOMMU maps (at ADD) and unmaps (at DEL and at disconnect), made on
    // the control thread, and those refused; absent where the pages are not DMA-mapped.
    struct StaticGrantIommu {
        std::uint64_t maps = 0, unmaps = 0, map_failures = 0, unmap_failures = 0;
    };
    std::optional<StaticGrantIommu> static_grant_iommu;
    // The control ring's messages: answered, NOT_SUPPORTED, INVALID_PARAMETER, the refusals
    // by reason (netif::ctrl::ctrl_error_table() order), and the hash configuration the
    // frontend set, as the vif's queues hold it (algorithm NONE without a control ring).
    std::uint64_t ctrl_requests = 0;
    std::uint64_t ctrl_not_supported = 0;
    std::uint64_t ctrl_invalid = 0;
    std::vector<std::uint64_t> ctrl_errors;
    netif::HashConfig hash;
    VifCounters counters;
    // TX parser failures by reason (netif::tx_error_table() order).
    std::vector<std::uint64_t> tx_errors;
    std::vector<QueueIrqs> queue_irqs; // queue order; empty where the data plane has none
};

// What the data plane tells the control plane on its own.
struct DataPlaneEvent {
    enum class Kind : std::uint8_t {
        vif_disabled,  // fatal protocol error: walk the vif to Closing, then detach()
        mode_fallback, // the requested RX mode could not be kept; `detail` says why
    };
    Kind kind;
    VifId vif;
    std::string detail;
};

class DataPlane {
public:
    virtual ~DataPlane() = default;

    // Maps the vif's rings, binds its event channels, picks its lcore and NIC queue, and
    // starts serving it. Errors: Errc::exists (attached), Errc::not_found (no such port),
    // Errc::busy (no queue left for a dedicated request), Errc::protocol (a ring grant or
    // port the frontend gave is bad: the control plane answers with Closing).
    virtual Status attach(const VifSpec& spec) = 0;
    // Stops serving the vif and releases every grant, mapping and port. Frames in flight
    // are completed or answered first. Errc::not_found if not attached.
    virtual Status detach(const VifId& id) = 0;
    virtual Status set_rx_mode(const VifId& id, RxMode mode) = 0;
    virtual Status set_rate(const VifId& id, std::optional<netif::RateLimit> rate) = 0;
    // The frontend's request-multicast-control, watched after connect (as Linux): whether
    // the vif's multicast list filters the multicast frames it receives.
    virtual Status set_mcast_control(const VifId& id, bool on) = 0;

    virtual std::vector<VifStatus> list() const = 0;
    virtual Result<VifStatus> status(const VifId& id) const = 0;

    // Readable when events are queued.
    virtual int events_fd() const = 0;
    virtual std::optional<DataPlaneEvent> next_event() = 0;
};

} // namespace dpnb::engine
