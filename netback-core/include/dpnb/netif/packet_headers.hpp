// Where the IP headers of an Ethernet frame end and what follows them: the one header walker
// the engine's TX offloads (pmd-glue offload.cpp) and the RX flow hash (flow_hash.hpp) share.
// Pure code over bytes the caller owns (a private copy, never guest memory the guest could
// change under the walk); every length is checked against `avail` before it is used.
#pragma once

#include <cstdint>

namespace dpnb::netif {

inline constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr std::uint16_t kEtherTypeIpv6 = 0x86DD;
inline constexpr std::uint16_t kEtherTypeVlan = 0x8100; // 802.1Q
inline constexpr std::uint16_t kEtherTypeQinq = 0x88A8; // 802.1ad
inline constexpr std::uint8_t kIpProtoTcp = 6;
inline constexpr std::uint8_t kIpProtoUdp = 17;

// The Ethernet header and up to two VLAN tags (802.1Q, 802.1ad): their length and the
// ethertype after them.
struct L2Header {
    std::uint16_t len = 0;
    std::uint16_t type = 0;
};
// False when they run past `avail`; `out.len` is then the length known to be needed.
bool parse_l2_header(const std::uint8_t* data, std::uint32_t avail, L2Header& out) noexcept;

struct IpHeaders {
    std::uint16_t l2_len = 0; // Ethernet header plus up to two VLAN tags
    std::uint16_t l3_len = 0; // IPv4 header with options, or IPv6 header plus extension headers
    std::uint8_t version = 0; // 4 or 6
    std::uint8_t proto = 0;   // the protocol after the IP headers (IPPROTO_*)
    // IPv4 with MF or a fragment offset, or IPv6 with a fragment header (the walk stops
    // there: proto is then 44). A fragment's L4 header is absent or incomplete.
    bool fragment = false;
    std::uint16_t l4_offset() const noexcept { return static_cast<std::uint16_t>(l2_len + l3_len); }
};

enum class IpHeaderError : std::uint8_t {
    none,
    truncated, // the headers run past the bytes given
    not_ip,    // neither IPv4 nor IPv6
    bad_ip,    // an IPv4 header length below 20, or the version nibble disagrees
};

// Walks the Ethernet header, at most two VLAN tags, and the IPv4 header or the IPv6 header
// with its hop-by-hop, routing and destination-options headers (at most 8 of them).
IpHeaderError parse_ip_headers(const std::uint8_t* data, std::uint32_t avail,
                               IpHeaders& out) noexcept;

inline constexpr std::uint16_t kEtherTypeArp = 0x0806;
inline constexpr std::uint8_t kIpProtoIcmp = 1;
inline constexpr std::uint8_t kIpProtoIcmpv6 = 58;

// How many bytes at the start of a frame are headers, as the backend's checks and a NIC read
// them: Ethernet and up to two VLAN tags; for IPv4 and IPv6 the IP headers (IPv6 extension
// headers and a fragment header included) and the TCP header with its options, the UDP
// header or the ICMP/ICMPv6 header (none for a non-first fragment or another protocol);
// for ARP its 28-byte IPv4 body. A malformed IP header counts as the fixed IP header (20 or
// 40 bytes) and nothing after it. The result is at most `avail` when the headers end within
// the `avail` bytes given, and then the same with only those bytes; more than `avail` (at
// least what the walk knows it needs) when they do not.
// XSA-423: a guest's headers must all sit in the backend's private copy.
std::uint32_t frame_headers_len(const std::uint8_t* data, std::uint32_t avail) noexcept;

// A big-endian 16-bit field of a header.
inline std::uint16_t load_be16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

} // namespace dpnb::netif
