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
constexpr std::uint32_t kIpv6FragmentLen = 8;
constexpr std::uint32_t kArpIpv4Len = 28;
constexpr std::uint32_t kTcpMinLen = 20;
constexpr std::uint32_t kUdpLen = 8;
constexpr std::uint32_t kIcmpLen = 8;

} // namespace

bool parse_l2_header(const std::uint8_t* d, std::uint32_t avail, L2Header& out) noexcept {
    out = L2Header{kEthLen, 0};
    if (d == nullptr || avail < kEthLen) return false;
    std::uint32_t l2 = kEthLen;
    std::uint16_t type = load_be16(d + 12);
    for (int tags = 0; (type == kEtherTypeVlan || type == kEtherTypeQinq) && tags < kMaxVlanTags;
         ++tags) {
        if (avail < l2 + kVlanTagLen) {
            out.len = static_cast<std::uint16_t>(l2 + kVlanTagLen);
            return false;
        }
        type = load_be16(d + l2 + 2);
        l2 += kVlanTagLen;
    }
    out.len = static_cast<std::uint16_t>(l2);
    out.type = type;
    return true;
}

IpHeaderError parse_ip_headers(const std::uint8_t* d, std::uint32_t avail,
                               IpHeaders& out) noexcept {
    out = IpHeaders{};
    L2Header eth;
    if (!parse_l2_header(d, avail, eth)) return IpHeaderError::truncated;
    const std::uint32_t l2 = eth.len;
    const std::uint16_t type = eth.type;
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

std::uint32_t frame_headers_len(const std::uint8_t* d, std::uint32_t avail) noexcept {
    // Ethernet and tags first: their length does not depend on what parse_ip_headers says.
    L2Header eth;
    if (!parse_l2_header(d, avail, eth)) return eth.len;
    const std::uint32_t l2 = eth.len;
    if (eth.type == kEtherTypeArp) return l2 + kArpIpv4Len;
    if (eth.type != kEtherTypeIpv4 && eth.type != kEtherTypeIpv6) return l2;
    IpHeaders ip;
    switch (parse_ip_headers(d, avail, ip)) {
    case IpHeaderError::none:
        break;
    case IpHeaderError::truncated:
        return avail + 1; // the IP headers run past the bytes given: how far is not known
    case IpHeaderError::not_ip:
    case IpHeaderError::bad_ip:
        // The fixed IP header, whatever it says: an answer that needs no byte beyond it.
        return l2 + (eth.type == kEtherTypeIpv4 ? kIpv4MinLen : kIpv6Len);
    }
    std::uint32_t end = ip.l4_offset();
    if (ip.version == 4 && (load_be16(d + ip.l2_len + 6) & 0x1FFFU) != 0)
        return end; // a later fragment: no L4 header
    std::uint8_t proto = ip.proto;
    if (ip.version == 6 && ip.fragment) {
        end += kIpv6FragmentLen;
        if (avail < end) return end;
        const std::uint8_t* frag = d + end - kIpv6FragmentLen;
        if ((load_be16(frag + 2) & 0xFFF8U) != 0) return end; // a later fragment
        proto = frag[0];
    }
    switch (proto) {
    case kIpProtoTcp: {
        if (avail < end + 13) return end + kTcpMinLen;
        const std::uint32_t doff = (d[end + 12] >> 4) * 4U;
        return end + (doff < kTcpMinLen ? kTcpMinLen : doff);
    }
    case kIpProtoUdp:
        return end + kUdpLen;
    case kIpProtoIcmp:
    case kIpProtoIcmpv6:
        return end + kIcmpLen;
    default:
        return end;
    }
}

} // namespace dpnb::netif
