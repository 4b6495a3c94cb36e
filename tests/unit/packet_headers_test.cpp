// frame_headers_len (packet_headers.hpp): how many bytes of a guest frame are headers, the
// length the TX path keeps in its private copy (XSA-423). Real layouts (VLAN tags, IPv4
// options, TCP options, IPv6 extension and fragment headers, ARP), every prefix of each
// (the answer given the bytes seen so far is never below the truth, and exact once they
// are all there), and hostile lengths (an extension chain longer than the frame, a TCP data
// offset below 5, tags stacked past two).
#include <array>
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/packet_headers.hpp"

namespace nf = dpnb::netif;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes ether(std::uint16_t type, unsigned vlan_tags = 0) {
    Bytes f(12, 0x02);
    for (unsigned i = 0; i < vlan_tags; ++i) {
        f.push_back(0x81);
        f.push_back(0x00);
        f.push_back(0x00);
        f.push_back(static_cast<std::uint8_t>(i + 1));
    }
    f.push_back(static_cast<std::uint8_t>(type >> 8));
    f.push_back(static_cast<std::uint8_t>(type));
    return f;
}

void ipv4(Bytes& f, std::uint8_t proto, unsigned options_words = 0, std::uint16_t frag = 0) {
    const std::size_t at = f.size();
    f.resize(at + 20 + options_words * 4, 0);
    f[at] = static_cast<std::uint8_t>(0x45 + options_words);
    f[at + 6] = static_cast<std::uint8_t>(frag >> 8);
    f[at + 7] = static_cast<std::uint8_t>(frag);
    f[at + 8] = 64;
    f[at + 9] = proto;
}

void ipv6(Bytes& f, std::uint8_t next) {
    const std::size_t at = f.size();
    f.resize(at + 40, 0);
    f[at] = 0x60;
    f[at + 6] = next;
}

void ext(Bytes& f, std::uint8_t next, std::uint8_t len8) { // hop-by-hop, routing, dest. options
    const std::size_t at = f.size();
    f.resize(at + (len8 + 1U) * 8U, 0);
    f[at] = next;
    f[at + 1] = len8;
}

void tcp(Bytes& f, unsigned doff) {
    const std::size_t at = f.size();
    f.resize(at + std::max(doff, 5U) * 4, 0);
    f[at + 12] = static_cast<std::uint8_t>(doff << 4);
}

void payload(Bytes& f, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        f.push_back(static_cast<std::uint8_t>(i * 7));
}

struct Layout {
    const char* name;
    Bytes frame;
    std::uint32_t headers;
};

std::vector<Layout> layouts() {
    std::vector<Layout> v;
    {
        Bytes f = ether(0x0800);
        ipv4(f, 6);
        tcp(f, 5);
        payload(f, 100);
        v.push_back({"ipv4 tcp", f, 54});
    }
    {
        Bytes f = ether(0x0800, 2);
        ipv4(f, 6, 10); // 40 bytes of options
        tcp(f, 15);     // 40 bytes of options
        payload(f, 10);
        v.push_back({"qinq ipv4+options tcp+options", f, 22 + 60 + 60});
    }
    {
        Bytes f = ether(0x0800);
        ipv4(f, 17);
        f.resize(f.size() + 8, 0);
        payload(f, 20);
        v.push_back({"ipv4 udp", f, 42});
    }
    {
        Bytes f = ether(0x0800);
        ipv4(f, 1);
        f.resize(f.size() + 8, 0);
        payload(f, 56);
        v.push_back({"ipv4 icmp", f, 42});
    }
    {
        Bytes f = ether(0x0800);
        ipv4(f, 6, 0, 0x0010); // a later fragment: its data is not a TCP header
        payload(f, 60);
        v.push_back({"ipv4 later fragment", f, 34});
    }
    {
        Bytes f = ether(0x0800);
        ipv4(f, 6, 0, 0x2000); // the first fragment (MF): the TCP header is there
        tcp(f, 8);
        payload(f, 60);
        v.push_back({"ipv4 first fragment", f, 34 + 32});
    }
    {
        Bytes f = ether(0x0800);
        ipv4(f, 47); // GRE: the backend reads no further
        payload(f, 60);
        v.push_back({"ipv4 other protocol", f, 34});
    }
    {
        Bytes f = ether(0x86DD);
        ipv6(f, 0);
        ext(f, 43, 1);
        ext(f, 60, 0);
        ext(f, 6, 2);
        tcp(f, 10);
        payload(f, 30);
        v.push_back({"ipv6 three extension headers tcp", f, 54 + 16 + 8 + 24 + 40});
    }
    {
        Bytes f = ether(0x86DD, 1);
        ipv6(f, 44);
        f.insert(f.end(), {17, 0, 0, 1, 0, 0, 0, 7}); // fragment header, offset 0, M
        f.resize(f.size() + 8, 0);
        payload(f, 30);
        v.push_back({"ipv6 first fragment udp", f, 18 + 40 + 8 + 8});
    }
    {
        Bytes f = ether(0x86DD);
        ipv6(f, 44);
        f.insert(f.end(), {17, 0, 0, 0x18, 0, 0, 0, 7}); // offset 3: a later fragment
        payload(f, 30);
        v.push_back({"ipv6 later fragment", f, 14 + 40 + 8});
    }
    {
        Bytes f = ether(0x86DD);
        ipv6(f, 58);
        f.resize(f.size() + 8, 0);
        payload(f, 30);
        v.push_back({"icmpv6", f, 62});
    }
    {
        Bytes f = ether(0x0806);
        f.resize(f.size() + 28, 0x11);
        v.push_back({"arp", f, 42});
    }
    {
        Bytes f = ether(0x88B5, 1);
        payload(f, 40);
        v.push_back({"other ethertype behind a tag", f, 18});
    }
    return v;
}

TEST(FrameHeadersLen, RealLayouts) {
    for (const Layout& l : layouts()) {
        SCOPED_TRACE(l.name);
        EXPECT_EQ(nf::frame_headers_len(l.frame.data(), static_cast<std::uint32_t>(l.frame.size())),
                  l.headers);
    }
}

// Given only the first n bytes: never claims the headers end within n bytes when they do
// not, and exact once they are all there. This is what lets the TX path drop a packet whose
// headers it did not copy whole.
TEST(FrameHeadersLen, EveryPrefix) {
    for (const Layout& l : layouts()) {
        SCOPED_TRACE(l.name);
        for (std::uint32_t n = 0; n <= l.frame.size(); ++n) {
            const std::uint32_t got = nf::frame_headers_len(l.frame.data(), n);
            if (n >= l.headers)
                EXPECT_EQ(got, l.headers) << "with " << n << " bytes";
            else
                EXPECT_GT(got, n) << "with " << n << " bytes";
        }
    }
}

TEST(FrameHeadersLen, HostileLengths) {
    {
        // An extension header claiming 2 KiB in a 120-byte frame.
        Bytes f = ether(0x86DD);
        ipv6(f, 0);
        ext(f, 6, 0);
        f[54 + 1] = 255;
        payload(f, 60);
        EXPECT_GT(nf::frame_headers_len(f.data(), static_cast<std::uint32_t>(f.size())), f.size());
    }
    {
        // Nine chained extension headers: the walk stops at eight, before any L4 header.
        Bytes f = ether(0x86DD);
        ipv6(f, 0);
        for (int i = 0; i < 9; ++i)
            ext(f, i == 8 ? 6 : 60, 0);
        tcp(f, 5);
        EXPECT_EQ(nf::frame_headers_len(f.data(), static_cast<std::uint32_t>(f.size())),
                  14U + 40 + 8 * 8);
    }
    {
        // A TCP data offset below 5: the 20 bytes a TCP header always has.
        Bytes f = ether(0x0800);
        ipv4(f, 6);
        tcp(f, 2);
        EXPECT_EQ(nf::frame_headers_len(f.data(), static_cast<std::uint32_t>(f.size())), 54U);
    }
    {
        // An IPv4 header length below 20, and a version that disagrees: the fixed IPv4
        // header and no more, given exactly those bytes too (found by fuzz_frame_headers).
        Bytes f = ether(0x0800);
        ipv4(f, 6);
        f[14] = 0x43;
        tcp(f, 5);
        EXPECT_EQ(nf::frame_headers_len(f.data(), static_cast<std::uint32_t>(f.size())), 34U);
        EXPECT_EQ(nf::frame_headers_len(f.data(), 34), 34U);
        f[14] = 0x65;
        EXPECT_EQ(nf::frame_headers_len(f.data(), static_cast<std::uint32_t>(f.size())), 34U);
        EXPECT_EQ(nf::frame_headers_len(f.data(), 34), 34U);
    }
    {
        // Three stacked tags: the third is read as the ethertype (not IP), as the walk does.
        Bytes f = ether(0x0800, 3);
        ipv4(f, 6);
        EXPECT_EQ(nf::frame_headers_len(f.data(), static_cast<std::uint32_t>(f.size())), 22U);
    }
    EXPECT_EQ(nf::frame_headers_len(nullptr, 0), 14U);
}

} // namespace
