// IP anti-spoofing for guest TX (ip_filter.hpp).
#include "dpnb/netif/ip_filter.hpp"

#include <algorithm>
#include <cstring>

#include "dpnb/netif/packet_headers.hpp"

namespace dpnb::netif {

namespace {

constexpr std::uint32_t kArpLen = 28; // Ethernet/IPv4 ARP
constexpr std::uint16_t kDhcpClientPort = 68;
constexpr std::uint16_t kDhcpServerPort = 67;

bool listed(const std::uint8_t* addr, std::span<const Ipv4Address> allowed) noexcept {
    return std::any_of(allowed.begin(), allowed.end(), [&](const Ipv4Address& a) {
        return std::memcmp(a.bytes.data(), addr, a.bytes.size()) == 0;
    });
}

} // namespace

IpSourceVerdict check_ip_source(const std::uint8_t* d, std::uint32_t avail,
                                std::span<const Ipv4Address> allowed) noexcept {
    L2Header eth;
    if (!parse_l2_header(d, avail, eth)) return IpSourceVerdict::malformed;
    if (eth.type == kEtherTypeArp) {
        if (avail < eth.len + kArpLen) return IpSourceVerdict::malformed;
        const std::uint8_t* arp = d + eth.len;
        // Hardware Ethernet (1), protocol IPv4, address lengths 6 and 4: anything else cannot
        // be checked against IPv4 addresses.
        if (load_be16(arp) != 1 || load_be16(arp + 2) != kEtherTypeIpv4 || arp[4] != 6 ||
            arp[5] != 4)
            return IpSourceVerdict::malformed;
        const std::uint8_t* spa = arp + 14;
        static constexpr std::uint8_t kAny[4] = {0, 0, 0, 0};
        if (std::memcmp(spa, kAny, 4) == 0 || listed(spa, allowed)) return IpSourceVerdict::allowed;
        return IpSourceVerdict::spoofed;
    }
    if (eth.type != kEtherTypeIpv4) return IpSourceVerdict::allowed;
    IpHeaders ip;
    if (parse_ip_headers(d, avail, ip) != IpHeaderError::none || ip.version != 4)
        return IpSourceVerdict::malformed;
    const std::uint8_t* ip4 = d + ip.l2_len;
    if (listed(ip4 + 12, allowed)) return IpSourceVerdict::allowed;
    // DHCP from a guest without an address yet: UDP 68 -> 67, first fragment or whole.
    const bool later_fragment = (load_be16(ip4 + 6) & 0x1FFFU) != 0;
    const std::uint32_t l4 = ip.l4_offset();
    if (ip.proto == kIpProtoUdp && !later_fragment && avail >= l4 + 4 &&
        load_be16(d + l4) == kDhcpClientPort && load_be16(d + l4 + 2) == kDhcpServerPort)
        return IpSourceVerdict::allowed;
    return IpSourceVerdict::spoofed;
}

} // namespace dpnb::netif
