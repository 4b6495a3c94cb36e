// IP anti-spoofing (ip_filter.hpp): the rules of Xen's vif scripts (vif-common.sh,
// handle_iptable) for IPv4 sources, plus ARP senders, over frames a hostile guest writes:
// listed and unlisted sources, DHCP from 0.0.0.0 and look-alikes of it, ARP probes and
// replies, VLAN-tagged frames, truncated and malformed headers, IPv6 and other ethertypes.
#include <array>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/ip_filter.hpp"

namespace nf = dpnb::netif;
using V = nf::IpSourceVerdict;

namespace {

using Bytes = std::vector<std::uint8_t>;
using Ip = std::array<std::uint8_t, 4>;

const std::vector<nf::Ipv4Address> kAllowed = {{{10, 0, 0, 2}}, {{192, 168, 7, 9}}};

Bytes ether(std::uint16_t type, bool vlan = false) {
    Bytes f(12, 0x02);
    if (vlan) f.insert(f.end(), {0x81, 0x00, 0x00, 0x05});
    f.push_back(static_cast<std::uint8_t>(type >> 8));
    f.push_back(static_cast<std::uint8_t>(type));
    return f;
}

Bytes ipv4(Ip src, std::uint8_t proto, std::uint16_t sport = 1000, std::uint16_t dport = 2000,
           bool vlan = false, std::uint16_t frag = 0) {
    Bytes f = ether(0x0800, vlan);
    const std::size_t at = f.size();
    f.resize(at + 20 + 8, 0);
    f[at] = 0x45;
    f[at + 6] = static_cast<std::uint8_t>(frag >> 8);
    f[at + 7] = static_cast<std::uint8_t>(frag);
    f[at + 9] = proto;
    std::copy(src.begin(), src.end(), f.begin() + static_cast<std::ptrdiff_t>(at + 12));
    f[at + 16] = 10;
    f[at + 19] = 1;
    f[at + 20] = static_cast<std::uint8_t>(sport >> 8);
    f[at + 21] = static_cast<std::uint8_t>(sport);
    f[at + 22] = static_cast<std::uint8_t>(dport >> 8);
    f[at + 23] = static_cast<std::uint8_t>(dport);
    return f;
}

Bytes arp(Ip sender, std::uint16_t op = 1, std::uint8_t plen = 4) {
    Bytes f = ether(0x0806);
    f.insert(f.end(), {0, 1, 0x08, 0x00, 6, plen, 0, static_cast<std::uint8_t>(op)});
    f.insert(f.end(), 6, 0x02);                      // sender MAC
    f.insert(f.end(), sender.begin(), sender.end()); // sender IP
    f.insert(f.end(), 6, 0);                         // target MAC
    f.insert(f.end(), {10, 0, 0, 1});                // target IP
    return f;
}

struct Case {
    const char* name;
    Bytes frame;
    V want;
};

std::vector<Case> cases() {
    Bytes ipv6 = ether(0x86DD);
    ipv6.resize(ipv6.size() + 48, 0);
    ipv6[14] = 0x60;
    Bytes bad_ihl = ipv4({10, 0, 0, 2}, 6);
    bad_ihl[14] = 0x44;
    Bytes short_ip = ipv4({10, 0, 0, 2}, 6);
    short_ip.resize(14 + 16);
    Bytes short_arp = arp({10, 0, 0, 2});
    short_arp.resize(14 + 20);
    Bytes ipv4_in_arp_type = ipv4({10, 0, 0, 2}, 6);
    ipv4_in_arp_type[12] = 0x08;
    ipv4_in_arp_type[13] = 0x06;
    return {
        {"listed source", ipv4({10, 0, 0, 2}, 6), V::allowed},
        {"second listed source", ipv4({192, 168, 7, 9}, 17), V::allowed},
        {"unlisted source", ipv4({10, 0, 0, 3}, 6), V::spoofed},
        {"another guest's address", ipv4({192, 168, 7, 8}, 1), V::spoofed},
        {"unlisted source behind a VLAN tag", ipv4({10, 0, 0, 3}, 6, 1, 2, true), V::spoofed},
        {"listed source behind a VLAN tag", ipv4({10, 0, 0, 2}, 6, 1, 2, true), V::allowed},
        {"DHCP request from 0.0.0.0", ipv4({0, 0, 0, 0}, 17, 68, 67), V::allowed},
        {"DHCP request from an unlisted address", ipv4({10, 9, 9, 9}, 17, 68, 67), V::allowed},
        {"UDP 67 -> 68 (a DHCP server's reply)", ipv4({0, 0, 0, 0}, 17, 67, 68), V::spoofed},
        {"TCP 68 -> 67", ipv4({0, 0, 0, 0}, 6, 68, 67), V::spoofed},
        {"UDP 68 -> 67 in a later fragment", ipv4({0, 0, 0, 0}, 17, 68, 67, false, 0x0003),
         V::spoofed},
        {"unlisted source in a later fragment", ipv4({10, 0, 0, 3}, 6, 1, 2, false, 0x0010),
         V::spoofed},
        {"malformed IPv4 header length", bad_ihl, V::malformed},
        {"IPv4 header cut short", short_ip, V::malformed},
        {"ARP request from a listed sender", arp({10, 0, 0, 2}), V::allowed},
        {"ARP reply from an unlisted sender", arp({10, 0, 0, 1}, 2), V::spoofed},
        {"ARP probe (sender 0.0.0.0)", arp({0, 0, 0, 0}), V::allowed},
        {"ARP with 16-byte protocol addresses", arp({10, 0, 0, 2}, 1, 16), V::malformed},
        {"ARP cut short", short_arp, V::malformed},
        {"IPv4 bytes under the ARP ethertype", ipv4_in_arp_type, V::malformed},
        {"IPv6 (the key lists IPv4 only)", ipv6, V::allowed},
        {"another ethertype", ether(0x88B5), V::allowed},
        {"shorter than an Ethernet header", Bytes(10, 0), V::malformed},
    };
}

TEST(IpSource, HostileFrames) {
    for (const Case& c : cases()) {
        SCOPED_TRACE(c.name);
        EXPECT_EQ(nf::check_ip_source(c.frame.data(), static_cast<std::uint32_t>(c.frame.size()),
                                      kAllowed),
                  c.want);
    }
}

// Only the bytes given are read: every prefix of a spoofed frame is refused (spoofed or
// malformed), never allowed.
TEST(IpSource, PrefixesOfASpoofedFrameAreNeverAllowed) {
    for (const Bytes& f : {ipv4({10, 0, 0, 3}, 6, 1, 2, true), arp({10, 0, 0, 1})}) {
        for (std::uint32_t n = 0; n <= f.size(); ++n)
            EXPECT_NE(nf::check_ip_source(f.data(), n, kAllowed), V::allowed) << n << " bytes";
    }
}

} // namespace
