// Strict parsers for the xenstore values a guest or the toolstack writes for a vif, and
// formatters for the values dpnetback writes. Everything under a guest's folder is hostile:
// these parsers accept exactly what Xen's own writers produce (Linux netfront's "%u", libxl's
// "%d" and "%02x:...") and reject the rest with a message that names the key and quotes the
// value (truncated, non-printable bytes escaped), never with a crash.
//
// Numbers: unsigned decimal, ASCII digits only; no sign, no spaces, no "0x", no trailing
// bytes, no overflow, not empty. Leading zeros are rejected ("0" itself is fine): no Xen
// writer produces them, other parsers read them as octal, and in paths they would let two
// spellings ("vif/5" and "vif/05") name different nodes for the same device.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/netif/wire.hpp"
#include "dpnb/netif/xenbus_state.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::netif {

using EvtchnPort = std::uint32_t; // evtchn_port_t

// Domain ids at or above DOMID_FIRST_RESERVED (0x7FF0) are special (DOMID_SELF, ...).
inline constexpr DomId kDomIdFirstReserved = 0x7FF0;
// Port 0 is never a usable channel; the FIFO ABI has 2^17 ports (the 2-level ABI fewer).
inline constexpr EvtchnPort kMaxEvtchnPort = (1U << 17) - 1;
// INVALID_GRANT_REF: what Linux netfront keeps in an unused slot; never a real ring.
inline constexpr GrantRef kGrantRefInvalid = 0xFFFFFFFFU;
// libxl's devid is an int; a vif handle is never negative.
inline constexpr std::uint32_t kMaxVifHandle = 0x7FFFFFFF;
// Upper bound on queues a backend may offer (multi-queue-max-queues). Linux uses the
// number of CPUs; 64 keeps queue-N names and per-vif tables small.
inline constexpr unsigned kMaxQueuesLimit = 64;
// Values longer than this are shown truncated in error messages.
inline constexpr std::size_t kQuoteLimit = 64;

// `value` in double quotes for a message: at most `limit` bytes of it, '"' and '\' and
// non-printable bytes escaped (\xNN), "..." appended when cut.
std::string quote(std::string_view value, std::size_t limit = kQuoteLimit);

// --- scalars ------------------------------------------------------------------------------
// `what` names the value in the error message (normally its xenstore key).

Result<std::uint64_t> parse_unsigned(std::string_view text, std::uint64_t min, std::uint64_t max,
                                     std::string_view what);
// "0" or "1", as Xen's writers write booleans.
Result<bool> parse_bool(std::string_view text, std::string_view what);
// 0 .. 0xFFFFFFFE (0xFFFFFFFF is INVALID_GRANT_REF).
Result<GrantRef> parse_grant_ref(std::string_view text, std::string_view what);
// 1 .. kMaxEvtchnPort.
Result<EvtchnPort> parse_evtchn_port(std::string_view text, std::string_view what);
// "0" .. "8".
Result<XenbusState> parse_xenbus_state(std::string_view text, std::string_view what);
// 0 .. 0x7FEF.
Result<DomId> parse_domid(std::string_view text, std::string_view what);
// 0 .. kMaxVifHandle.
Result<std::uint32_t> parse_vif_handle(std::string_view text, std::string_view what);

// --- addresses ------------------------------------------------------------------------------

struct MacAddress {
    std::array<std::uint8_t, 6> bytes{};

    bool is_multicast() const noexcept { return (bytes[0] & 0x01) != 0; } // includes broadcast
    bool is_zero() const noexcept;
    bool operator==(const MacAddress&) const = default;
};

// "xx:xx:xx:xx:xx:xx": six pairs of hex digits (either case) separated by ':'.
Result<MacAddress> parse_mac(std::string_view text, std::string_view what);
// parse_mac() plus what a vif's own address must be: not multicast or broadcast, not zero.
Result<MacAddress> parse_vif_mac(std::string_view text, std::string_view what);

struct Ipv4Address {
    std::array<std::uint8_t, 4> bytes{};
    bool operator==(const Ipv4Address&) const = default;
};

// Dotted quad, each part 0..255 in decimal without leading zeros.
Result<Ipv4Address> parse_ipv4(std::string_view text, std::string_view what);
// The toolstack's "ip" key: addresses separated by runs of spaces (libxl writes the vif's
// ip= setting verbatim and the vif scripts split it like the shell); at least one address.
Result<std::vector<Ipv4Address>> parse_ipv4_list(std::string_view text, std::string_view what);

// The toolstack's "rate" key: "<bytes>,<usec>", a credit of bytes per interval.
struct RateLimit {
    std::uint64_t bytes = 0;
    std::uint32_t usec = 0;
    bool operator==(const RateLimit&) const = default;
};
Result<RateLimit> parse_rate(std::string_view text, std::string_view what);

// --- names and paths ----------------------------------------------------------------------

// "queue-N" (netif.h multi-queue layout), N < kMaxQueuesLimit, no leading zeros.
Result<unsigned> parse_queue_name(std::string_view name);
std::string queue_name(unsigned index);

// /local/domain/<domid>/device/vif/<handle>
struct FrontendPath {
    DomId domid = 0;
    std::uint32_t handle = 0;
    bool operator==(const FrontendPath&) const = default;
};
Result<FrontendPath> parse_frontend_path(std::string_view path);
std::string format_frontend_path(const FrontendPath& p);

// /local/domain/<backend>/backend/vif/<frontend>/<handle>
struct BackendPath {
    DomId backend = 0;
    DomId frontend = 0;
    std::uint32_t handle = 0;
    bool operator==(const BackendPath&) const = default;
};
Result<BackendPath> parse_backend_path(std::string_view path);
std::string format_backend_path(const BackendPath& p);

// A node at or below a vif's backend folder, as a watch event names it: the vif and the
// path below its folder ("" for the folder itself, "state", "hotplug-status", ...). `key`
// points into the string given to parse_backend_node().
struct BackendNode {
    BackendPath vif;
    std::string_view key;
};
Result<BackendNode> parse_backend_node(std::string_view path);

// Where Linux's xenbus_dev_fatal() reports a backend's errors: the node "error" below
// /local/domain/<backend>/error/backend/vif/<frontend>/<handle>.
std::string format_backend_error_path(const BackendPath& p);

// --- formatters for what dpnetback writes -------------------------------------------------

std::string format_unsigned(std::uint64_t value);
std::string format_bool(bool value);
std::string format_xenbus_state(XenbusState s);
std::string format_mac(const MacAddress& mac); // lower case, as libxl writes it
std::string format_ipv4(const Ipv4Address& ip);

} // namespace dpnb::netif
