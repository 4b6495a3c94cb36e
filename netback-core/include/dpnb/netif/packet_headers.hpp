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

// A big-endian 16-bit field of a header.
inline std::uint16_t load_be16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

} // namespace dpnb::netif
