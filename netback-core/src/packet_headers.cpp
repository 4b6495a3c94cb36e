// The Ethernet/IP header walker (packet_headers.hpp).
#include "dpnb/netif/packet_headers.hpp"

namespace dpnb::netif {

namespace {

constexpr std::uint32_t kEthLen = 14;
constexpr std::uint32_t kVlanTagLen = 4;
constexpr std::uint32_t kIpv4MinLen = 20;
constexpr std::uint32_t kIpv6Len = 40;
constexpr std::uint8_t kIpv6HopByHop = 0;
constexpr std::uint8_t kIpv6Routing = 43;
constexpr std::uint8_t kIpv6Fragment = 44;
constexpr std::uint8_t kIpv6DestOptions = 60;
constexpr int kMaxVlanTags = 2;
constexpr int kMaxIpv6ExtHeaders = 8;

} // namespace

IpHeaderError parse_ip_headers(const std::uint8_t* d, std::uint32_t avail,
                               IpHeaders& out) noexcept {
    out = IpHeaders{};
    if (d == nullptr || avail < kEthLen) return IpHeaderError::truncated;
    std::uint32_t l2 = kEthLen;
    std::uint16_t type = load_be16(d + 12);
    for (int tags = 0; (type == kEtherTypeVlan || type == kEtherTypeQinq) && tags < kMaxVlanTags;
         ++tags) {
        if (avail < l2 + kVlanTagLen) return IpHeaderError::truncated;
        type = load_be16(d + l2 + 2);
        l2 += kVlanTagLen;
    }
    std::uint32_t l3 = 0;
    if (type == kEtherTypeIpv4) {
        if (avail < l2 + kIpv4MinLen) return IpHeaderError::truncated;
        const std::uint8_t* ip = d + l2;
        if ((ip[0] >> 4) != 4) return IpHeaderError::bad_ip;
        l3 = (ip[0] & 0x0FU) * 4U;
        if (l3 < kIpv4MinLen) return IpHeaderError::bad_ip;
        if (avail < l2 + l3) return IpHeaderError::truncated;
        out.version = 4;
        out.proto = ip[9];
        out.fragment = (load_be16(ip + 6) & 0x3FFFU) != 0; // MF or an offset
    } else if (type == kEtherTypeIpv6) {
        if (avail < l2 + kIpv6Len) return IpHeaderError::truncated;
        const std::uint8_t* ip = d + l2;
        if ((ip[0] >> 4) != 6) return IpHeaderError::bad_ip;
        l3 = kIpv6Len;
        std::uint8_t next = ip[6];
        for (int n = 0; n < kMaxIpv6ExtHeaders &&
                        (next == kIpv6HopByHop || next == kIpv6Routing || next == kIpv6DestOptions);
             ++n) {
            if (avail < l2 + l3 + 2) return IpHeaderError::truncated;
            const std::uint8_t* ext = d + l2 + l3;
            next = ext[0];
            l3 += (ext[1] + 1U) * 8U;
        }
        // The extension headers' lengths are the guest's: the last one must end in the bytes.
        if (avail < l2 + l3) return IpHeaderError::truncated;
        out.version = 6;
        out.proto = next;
        out.fragment = next == kIpv6Fragment;
    } else {
        return IpHeaderError::not_ip;
    }
    out.l2_len = static_cast<std::uint16_t>(l2);
    out.l3_len = static_cast<std::uint16_t>(l3);
    return IpHeaderError::none;
}

} // namespace dpnb::netif
