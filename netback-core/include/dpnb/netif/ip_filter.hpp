// IP anti-spoofing for guest TX (docs/operations.md, "IP anti-spoofing"): the toolstack's
// "ip" key lists the IPv4 addresses a vif may send from, as Xen's vif scripts enforce it with
// iptables (vif-common.sh, handle_iptable): an IPv4 packet must come from a listed address,
// except DHCP requests (UDP 68 -> 67, from any address: the guest has none yet); an ARP
// packet's sender address must be listed, or 0.0.0.0 (RFC 5227's probe, which claims none).
// Other frames (IPv6 among them: the key holds IPv4 addresses only) pass.
// Pure code over the daemon's private copy of the headers (never guest memory).
#pragma once

#include <cstdint>
#include <span>

#include "dpnb/netif/xs_value.hpp"

namespace dpnb::netif {

enum class IpSourceVerdict : std::uint8_t {
    allowed,
    spoofed,   // an IPv4 source or ARP sender address not in the list
    malformed, // IPv4 or ARP whose addresses cannot be read in the bytes given: dropped too
};

// `data`: the first `avail` bytes of the frame (its headers whole: frame_headers_len).
IpSourceVerdict check_ip_source(const std::uint8_t* data, std::uint32_t avail,
                                std::span<const Ipv4Address> allowed) noexcept;

} // namespace dpnb::netif
