// Feature negotiation for one vif, both directions, without xenstore:
//  * backend_feature_entries(): the (key, value) pairs the backend writes to its folder before
//    InitWait, in a stable order (Linux netback's order, then dpnetback's own key);
//  * parse_frontend_config(): what the frontend wrote, read through a KeyReader, validated
//    and checked against what the backend offered, into a FrontendConfig;
//  * parse_toolstack_config(): what the toolstack wrote into the backend folder.
//
// Rules (docs/xenbus.md has the full key tables):
//  * every value present is parsed strictly (xs_value.hpp), optional or not;
//  * asking for something the backend did not offer (split event channels, more queues than
//    multi-queue-max-queues, a control ring, XDP headroom, multicast control, static grants, RX
//    buffer offsets) is an error, Errc::unsupported;
//  * missing required keys and inconsistent layouts are Errc::protocol;
//  * the result is a function of the reader's answers only: keys are read in a fixed order
//    and the first problem is reported, naming the key and quoting the value.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/netif/wire.hpp"
#include "dpnb/netif/xs_value.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::netif {

// xenstore key names, relative to the vif's backend or frontend folder.
namespace key {
// backend -> frontend (backend folder)
inline constexpr std::string_view kFeatureSg = "feature-sg";
inline constexpr std::string_view kFeatureGsoTcpv4 = "feature-gso-tcpv4";
inline constexpr std::string_view kFeatureGsoTcpv6 = "feature-gso-tcpv6";
inline constexpr std::string_view kFeatureIpv6CsumOffload = "feature-ipv6-csum-offload";
inline constexpr std::string_view kFeatureRxCopy = "feature-rx-copy";
inline constexpr std::string_view kFeatureXdpHeadroom = "feature-xdp-headroom";
inline constexpr std::string_view kFeatureRxFlip = "feature-rx-flip";
inline constexpr std::string_view kFeatureMulticastControl = "feature-multicast-control";
inline constexpr std::string_view kFeatureDynamicMulticastControl =
    "feature-dynamic-multicast-control";
inline constexpr std::string_view kFeatureSplitEventChannels = "feature-split-event-channels";
inline constexpr std::string_view kMultiQueueMaxQueues = "multi-queue-max-queues";
inline constexpr std::string_view kFeatureCtrlRing = "feature-ctrl-ring";
// dpnetback's own: persistent (static) grants over the control ring (docs/architecture.md).
// The same key in the frontend folder is the frontend's request.
inline constexpr std::string_view kFeatureStaticGrants = "feature-static-grants";
// dpnetback's own: sub-page RX buffers (docs/netfront.md). The backend offers it; a frontend
// that writes it too puts each RX buffer's offset in the request's `pad` field and the
// buffers' size in rx-buffer-size.
inline constexpr std::string_view kFeatureRxBufferOffset = "feature-rx-buffer-offset";

// frontend -> backend (frontend folder)
inline constexpr std::string_view kMultiQueueNumQueues = "multi-queue-num-queues";
inline constexpr std::string_view kTxRingRef = "tx-ring-ref";
inline constexpr std::string_view kRxRingRef = "rx-ring-ref";
inline constexpr std::string_view kEventChannel = "event-channel";
inline constexpr std::string_view kEventChannelTx = "event-channel-tx";
inline constexpr std::string_view kEventChannelRx = "event-channel-rx";
inline constexpr std::string_view kRequestRxCopy = "request-rx-copy";
inline constexpr std::string_view kFeatureRxNotify = "feature-rx-notify";
inline constexpr std::string_view kFeatureNoCsumOffload = "feature-no-csum-offload";
inline constexpr std::string_view kRequestMulticastControl = "request-multicast-control";
inline constexpr std::string_view kMtu = "mtu";
inline constexpr std::string_view kXdpHeadroom = "xdp-headroom";
inline constexpr std::string_view kCtrlRingRef = "ctrl-ring-ref";
inline constexpr std::string_view kEventChannelCtrl = "event-channel-ctrl";
inline constexpr std::string_view kRxBufferSize = "rx-buffer-size";
// (feature-sg, feature-gso-tcpv4/v6, feature-ipv6-csum-offload, feature-static-grants: as
// above, with the frontend's meaning.)

// toolstack -> backend (backend folder)
inline constexpr std::string_view kFrontend = "frontend";
inline constexpr std::string_view kFrontendId = "frontend-id";
inline constexpr std::string_view kHandle = "handle";
inline constexpr std::string_view kMac = "mac";
inline constexpr std::string_view kOnline = "online";
inline constexpr std::string_view kRate = "rate";
inline constexpr std::string_view kIp = "ip";
inline constexpr std::string_view kHotplugStatus = "hotplug-status";

// both folders
inline constexpr std::string_view kState = "state";
} // namespace key

// XEN_NETIF_MAX_XDP_HEADROOM (Linux's io/netif.h; not in Xen 4.17's copy).
inline constexpr std::uint16_t kMaxXdpHeadroom = 0x7FFF;
inline constexpr std::uint32_t kMinMtu = 68; // IPv4's minimum
inline constexpr std::uint32_t kMaxMtu = 65535;
// rx-buffer-size: a buffer must hold at least a minimum-size Ethernet frame's worth of
// data per slot; 512 keeps a 1514-byte frame within 3 slots.
inline constexpr std::uint32_t kMinRxBufferSize = 512;

// What this backend offers a frontend. rx-copy is always offered and rx-flip never is.
struct BackendCapabilities {
    bool sg = true;                        // feature-sg: accepts multi-slot TX packets
    bool gso_tcpv4 = true;                 // feature-gso-tcpv4: accepts TCPv4 GSO from the guest
    bool gso_tcpv6 = true;                 // feature-gso-tcpv6
    bool ipv6_csum_offload = true;         // feature-ipv6-csum-offload
    bool multicast_control = true;         // feature-multicast-control
    bool dynamic_multicast_control = true; // feature-dynamic-multicast-control
    bool split_event_channels = true;      // feature-split-event-channels
    unsigned max_queues = 1;               // multi-queue-max-queues, 1..kMaxQueuesLimit
    bool ctrl_ring = true;                 // feature-ctrl-ring (Linux netback always offers it)
    bool xdp_headroom = false;             // feature-xdp-headroom
    bool static_grants = false;            // feature-static-grants (needs ctrl_ring)
    bool rx_buffer_offset = true;          // feature-rx-buffer-offset (dpnetback's own)

    bool operator==(const BackendCapabilities&) const = default;
};

// max_queues in range, dynamic multicast control only with multicast control, static grants
// only with a control ring.
Status validate(const BackendCapabilities& caps);

struct XsEntry {
    std::string key;
    std::string value;
    bool operator==(const XsEntry&) const = default;
};

// Every feature key with "1" or "0" (a disabled feature is written as "0", not left out, so
// that a value left by an earlier daemon with other settings is overwritten), and
// multi-queue-max-queues. Errors only if `caps` is not valid.
Result<std::vector<XsEntry>> backend_feature_entries(const BackendCapabilities& caps);

// Reads one key relative to a folder. Answers the value, nullopt when the key does not
// exist, or an error when the store could not be read (parsing stops with that error).
// A daemon reads all keys of one parse inside one xenstore transaction.
using KeyReader = std::function<Result<std::optional<std::string>>(std::string_view key)>;

// A reader over a fixed map (tests, fuzzing, tools).
KeyReader map_reader(std::map<std::string, std::string, std::less<>> keys);

struct QueueConfig {
    GrantRef tx_ring_ref = 0;
    GrantRef rx_ring_ref = 0;
    EvtchnPort tx_evtchn = 0;
    EvtchnPort rx_evtchn = 0; // == tx_evtchn unless split
    bool split_event_channels = false;

    bool operator==(const QueueConfig&) const = default;
};

struct CtrlRingConfig {
    GrantRef ring_ref = 0;
    EvtchnPort evtchn = 0;
    bool operator==(const CtrlRingConfig&) const = default;
};

struct FrontendConfig {
    // multi-queue-num-queues (1 when absent); keys at top level for one queue, under
    // queue-N/ for several.
    std::vector<QueueConfig> queues;
    // feature-rx-notify: the frontend kicks the backend when it posts RX requests. Without
    // it (pre-2006 frontends) the backend must poll for RX requests instead of waiting for
    // a kick, as Linux netback does since it stopped requiring the key.
    bool rx_notify = false;
    bool sg = false;                  // feature-sg: the frontend takes multi-slot RX packets
    bool gso_tcpv4 = false;           // feature-gso-tcpv4: it takes TCPv4 GSO packets on RX
    bool gso_tcpv6 = false;           // feature-gso-tcpv6
    bool csum_offload = true;         // !feature-no-csum-offload: IPv4 partial checksums are fine
    bool ipv6_csum_offload = false;   // feature-ipv6-csum-offload
    bool multicast_control = false;   // request-multicast-control, sampled now
    std::optional<std::uint32_t> mtu; // toolstack's mtu in the frontend folder
    std::uint16_t xdp_headroom = 0;   // bytes before the frame in the first RX slot
    std::optional<CtrlRingConfig> ctrl_ring;
    bool static_grants = false; // feature-static-grants: frontend registers RX buffers
    // feature-rx-buffer-offset: each RX request's `pad` is its buffer's offset in the page,
    // and every buffer holds rx_buffer_size bytes. Without it: whole pages.
    bool rx_buffer_offset = false;
    std::uint16_t rx_buffer_size = static_cast<std::uint16_t>(kPageSize);

    bool operator==(const FrontendConfig&) const = default;
};

Result<FrontendConfig> parse_frontend_config(const KeyReader& frontend,
                                             const BackendCapabilities& offered);

// Re-sampled on a watch when dynamic multicast control was offered.
Result<bool> read_multicast_control(const KeyReader& frontend, const BackendCapabilities& offered);
// Re-read when the frontend goes Reconfiguring (xenbus_state.hpp: reconfigure_data_path).
Result<std::uint16_t> read_xdp_headroom(const KeyReader& frontend,
                                        const BackendCapabilities& offered);

// What the toolstack (libxl) wrote into the vif's backend folder.
struct ToolstackConfig {
    FrontendPath frontend;         // "frontend", checked against frontend-id and handle
    DomId frontend_id = 0;         // "frontend-id"
    std::uint32_t handle = 0;      // "handle"
    MacAddress mac;                // "mac": the guest's address (steering, filters)
    bool online = false;           // "online" (absent: 0, as Linux reads it)
    std::optional<RateLimit> rate; // "rate"
    std::vector<Ipv4Address> ip;   // "ip" (empty when absent)

    bool operator==(const ToolstackConfig&) const = default;
};

// `self` is the vif's backend path: its frontend domid and handle must agree with the keys.
Result<ToolstackConfig> parse_toolstack_config(const KeyReader& backend, const BackendPath& self);

enum class HotplugStatus : std::uint8_t { pending, connected, failed };
// "hotplug-status": absent or "" (libxl writes "" at creation) -> pending, "connected",
// "error" -> failed; anything else is an
// error.
Result<HotplugStatus> parse_hotplug_status(const std::optional<std::string>& value);

} // namespace dpnb::netif
