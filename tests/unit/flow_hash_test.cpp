// The flow hash of the netif control ring (flow_hash.hpp): Toeplitz against Microsoft's RSS
// verification suite (the key and the IPv4/IPv6 tables of "Verifying the RSS Hash
// Calculation"), flow keys from real frame layouts (VLAN tags, IPv4 options, IPv6 extension
// headers, fragments, truncated headers), queue selection and the hash extra-info slot.
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/packet_headers.hpp"

namespace nf = dpnb::netif;

namespace {

constexpr std::array<std::uint8_t, 40> kMsKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

struct V4Case {
    std::array<std::uint8_t, 4> dst;
    std::uint16_t dport;
    std::array<std::uint8_t, 4> src;
    std::uint16_t sport;
    std::uint32_t ip_only, with_tcp;
};

// Destination, source, IPv4 only, IPv4 with TCP: the suite's table as published.
const V4Case kV4[] = {
    {{161, 142, 100, 80}, 1766, {66, 9, 149, 187}, 2794, 0x323e8fc2, 0x51ccc178},
    {{65, 69, 140, 83}, 4739, {199, 92, 111, 2}, 14230, 0xd718262a, 0xc626b0ea},
    {{12, 22, 207, 184}, 38024, {24, 19, 198, 95}, 12898, 0xd2d0a5de, 0x5c2b394a},
    {{209, 142, 163, 6}, 2217, {38, 27, 205, 30}, 48228, 0x82989176, 0xafc7327f},
    {{202, 188, 127, 2}, 1303, {153, 39, 163, 191}, 44251, 0x5d1809c5, 0x10e828a2},
};

using V6Addr = std::array<std::uint8_t, 16>;
struct V6Case {
    V6Addr dst;
    std::uint16_t dport;
    V6Addr src;
    std::uint16_t sport;
    std::uint32_t ip_only, with_tcp;
};

const V6Case kV6[] = {
    // 3ffe:2501:200:3::1 (1766) <- 3ffe:2501:200:1fff::7 (2794)
    {{0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0x01},
     1766,
     {0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x07},
     2794,
     0x2cc18cd5,
     0x40207d3d},
    // ff02::1 (4739) <- 3ffe:501:8::260:97ff:fe40:efab (14230)
    {{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01},
     4739,
     {0x3f, 0xfe, 0x05, 0x01, 0x00, 0x08, 0, 0, 0x02, 0x60, 0x97, 0xff, 0xfe, 0x40, 0xef, 0xab},
     14230,
     0x0f0c461c,
     0xdde51bbf},
    // fe80::200:f8ff:fe21:67cf (38024) <- 3ffe:1900:4545:3:200:f8ff:fe21:67cf (44251)
    {{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0xf8, 0xff, 0xfe, 0x21, 0x67, 0xcf},
     38024,
     {0x3f, 0xfe, 0x19, 0x00, 0x45, 0x45, 0x00, 0x03, 0x02, 0x00, 0xf8, 0xff, 0xfe, 0x21, 0x67,
      0xcf},
     44251,
     0x4b61e985,
     0x02d1feef},
};

void put16(std::vector<std::uint8_t>& f, std::size_t at, std::uint16_t v) {
    f[at] = static_cast<std::uint8_t>(v >> 8);
    f[at + 1] = static_cast<std::uint8_t>(v);
}

// An Ethernet frame: `vlans` 802.1Q tags, then the IP packet.
std::vector<std::uint8_t> ether(std::uint16_t type, const std::vector<std::uint8_t>& ip,
                                unsigned vlans = 0) {
    std::vector<std::uint8_t> f(12, 0x02);
    for (unsigned i = 0; i < vlans; ++i) {
        f.push_back(0x81);
        f.push_back(0x00);
        f.push_back(0x00);
        f.push_back(static_cast<std::uint8_t>(10 + i));
    }
    f.push_back(static_cast<std::uint8_t>(type >> 8));
    f.push_back(static_cast<std::uint8_t>(type));
    f.insert(f.end(), ip.begin(), ip.end());
    return f;
}

// IPv4 (header of `ihl` words) carrying `proto` with the two ports, `frag` in the
// flags/offset field.
std::vector<std::uint8_t> ipv4(const V4Case& c, std::uint8_t proto, unsigned ihl = 5,
                               std::uint16_t frag = 0, std::size_t l4_bytes = 20) {
    std::vector<std::uint8_t> p(ihl * 4 + l4_bytes, 0);
    p[0] = static_cast<std::uint8_t>(0x40 | ihl);
    put16(p, 6, frag);
    p[8] = 64;
    p[9] = proto;
    std::memcpy(&p[12], c.src.data(), 4);
    std::memcpy(&p[16], c.dst.data(), 4);
    if (l4_bytes >= 4) {
        put16(p, ihl * 4, c.sport);
        put16(p, ihl * 4 + 2, c.dport);
    }
    return p;
}

// IPv6 with `ext` extension headers (hop-by-hop, 8 bytes each) before `proto`.
std::vector<std::uint8_t> ipv6(const V6Case& c, std::uint8_t proto, unsigned ext = 0,
                               std::size_t l4_bytes = 20, std::uint8_t ext_type = 0) {
    std::vector<std::uint8_t> p(40 + ext * 8 + l4_bytes, 0);
    p[0] = 0x60;
    p[6] = ext != 0 ? ext_type : proto;
    p[7] = 64;
    std::memcpy(&p[8], c.src.data(), 16);
    std::memcpy(&p[24], c.dst.data(), 16);
    for (unsigned i = 0; i < ext; ++i) {
        p[40 + i * 8] = i + 1 < ext ? ext_type : proto;
        p[40 + i * 8 + 1] = 0; // 8 bytes
    }
    const std::size_t l4 = 40 + ext * 8;
    if (l4_bytes >= 4) {
        put16(p, l4, c.sport);
        put16(p, l4 + 2, c.dport);
    }
    return p;
}

nf::HashConfig ms_config(std::uint32_t flags) {
    nf::HashConfig c;
    c.algorithm = nf::hash_alg::kToeplitz;
    c.flags = flags;
    c.key = kMsKey;
    return c;
}

} // namespace

TEST(Toeplitz, MicrosoftIpv4VectorsOverRawInput) {
    for (const V4Case& c : kV4) {
        std::vector<std::uint8_t> in(c.src.begin(), c.src.end());
        in.insert(in.end(), c.dst.begin(), c.dst.end());
        EXPECT_EQ(nf::toeplitz_hash(kMsKey, in), c.ip_only);
        in.push_back(static_cast<std::uint8_t>(c.sport >> 8));
        in.push_back(static_cast<std::uint8_t>(c.sport));
        in.push_back(static_cast<std::uint8_t>(c.dport >> 8));
        in.push_back(static_cast<std::uint8_t>(c.dport));
        EXPECT_EQ(nf::toeplitz_hash(kMsKey, in), c.with_tcp);
    }
}

TEST(Toeplitz, MicrosoftIpv4VectorsFromFrames) {
    for (const V4Case& c : kV4) {
        const auto tcp = ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoTcp));
        const auto udp = ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoUdp));
        auto h = nf::flow_hash(ms_config(nf::hash_flag::kAll), tcp);
        ASSERT_TRUE(h);
        EXPECT_EQ(h->value, c.with_tcp);
        EXPECT_EQ(h->type, nf::hash_type::kIpv4Tcp);
        // UDP has no hash type of its own: addresses only.
        h = nf::flow_hash(ms_config(nf::hash_flag::kAll), udp);
        ASSERT_TRUE(h);
        EXPECT_EQ(h->value, c.ip_only);
        EXPECT_EQ(h->type, nf::hash_type::kIpv4);
        // TCP with only the IPv4 type enabled hashes the addresses.
        h = nf::flow_hash(ms_config(nf::hash_flag::kIpv4), tcp);
        ASSERT_TRUE(h);
        EXPECT_EQ(h->value, c.ip_only);
        // Only IPv4+TCP enabled: UDP gets no hash.
        EXPECT_FALSE(nf::flow_hash(ms_config(nf::hash_flag::kIpv4Tcp), udp));
        // Behind two VLAN tags and with IPv4 options, the same.
        const auto tagged = ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoTcp, 7), 2);
        h = nf::flow_hash(ms_config(nf::hash_flag::kAll), tagged);
        ASSERT_TRUE(h);
        EXPECT_EQ(h->value, c.with_tcp);
    }
}

TEST(Toeplitz, MicrosoftIpv6VectorsFromFrames) {
    for (const V6Case& c : kV6) {
        std::vector<std::uint8_t> in(c.src.begin(), c.src.end());
        in.insert(in.end(), c.dst.begin(), c.dst.end());
        EXPECT_EQ(nf::toeplitz_hash(kMsKey, in), c.ip_only);
        const auto tcp = ether(nf::kEtherTypeIpv6, ipv6(c, nf::kIpProtoTcp));
        auto h = nf::flow_hash(ms_config(nf::hash_flag::kAll), tcp);
        ASSERT_TRUE(h);
        EXPECT_EQ(h->value, c.with_tcp);
        EXPECT_EQ(h->type, nf::hash_type::kIpv6Tcp);
        h = nf::flow_hash(ms_config(nf::hash_flag::kIpv6), tcp);
        ASSERT_TRUE(h);
        EXPECT_EQ(h->value, c.ip_only);
        EXPECT_EQ(h->type, nf::hash_type::kIpv6);
        // Hop-by-hop and destination options before TCP are walked over.
        for (std::uint8_t ext_type : {0, 60}) {
            const auto ext = ether(nf::kEtherTypeIpv6, ipv6(c, nf::kIpProtoTcp, 3, 20, ext_type));
            h = nf::flow_hash(ms_config(nf::hash_flag::kAll), ext);
            ASSERT_TRUE(h);
            EXPECT_EQ(h->value, c.with_tcp);
        }
        // No IPv6 type enabled: nothing.
        EXPECT_FALSE(nf::flow_hash(ms_config(nf::hash_flag::kIpv4 | nf::hash_flag::kIpv4Tcp), tcp));
    }
}

TEST(FlowKey, FragmentsAndShortTcpHeadersHashTheAddresses) {
    const V4Case& c = kV4[0];
    for (std::uint16_t frag : {std::uint16_t{0x2000}, std::uint16_t{0x0010}}) { // MF; an offset
        const auto f = ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoTcp, 5, frag));
        auto h = nf::flow_hash(ms_config(nf::hash_flag::kAll), f);
        ASSERT_TRUE(h);
        EXPECT_EQ(h->value, c.ip_only);
        EXPECT_EQ(h->type, nf::hash_type::kIpv4);
        EXPECT_FALSE(nf::flow_hash(ms_config(nf::hash_flag::kIpv4Tcp), f));
    }
    // Three bytes of TCP header: no ports.
    const auto short_tcp = ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoTcp, 5, 0, 3));
    auto h = nf::flow_hash(ms_config(nf::hash_flag::kAll), short_tcp);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->value, c.ip_only);
    // An IPv6 fragment header: the addresses.
    const auto frag6 = ether(nf::kEtherTypeIpv6, ipv6(kV6[0], nf::kIpProtoTcp, 1, 20, 44));
    h = nf::flow_hash(ms_config(nf::hash_flag::kAll), frag6);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->value, kV6[0].ip_only);
}

TEST(FlowKey, MalformedOrForeignFramesGetNoHash) {
    const auto cfg = ms_config(nf::hash_flag::kAll);
    auto good = ether(nf::kEtherTypeIpv4, ipv4(kV4[1], nf::kIpProtoTcp));
    ASSERT_TRUE(nf::flow_hash(cfg, good));
    // Every truncation of the IP header.
    for (std::size_t n = 0; n < 14 + 20; ++n)
        EXPECT_FALSE(nf::flow_hash(cfg, std::span(good.data(), n))) << n;
    auto bad_ihl = good;
    bad_ihl[14] = 0x44; // IHL 4 words
    EXPECT_FALSE(nf::flow_hash(cfg, bad_ihl));
    auto long_ihl = ether(nf::kEtherTypeIpv4, ipv4(kV4[1], nf::kIpProtoTcp, 15, 0, 0));
    long_ihl.resize(long_ihl.size() - 1); // options run past the frame
    EXPECT_FALSE(nf::flow_hash(cfg, long_ihl));
    auto v6_in_v4 = good;
    v6_in_v4[14] = 0x65;
    EXPECT_FALSE(nf::flow_hash(cfg, v6_in_v4));
    EXPECT_FALSE(nf::flow_hash(cfg, ether(0x0806, std::vector<std::uint8_t>(28, 0)))); // ARP
    // IPv6 extension header whose length runs past the frame.
    auto ext = ether(nf::kEtherTypeIpv6, ipv6(kV6[0], nf::kIpProtoTcp, 1, 0));
    ext[14 + 40 + 1] = 200;
    EXPECT_FALSE(nf::flow_hash(cfg, ext));
    // Hashing off, or no type enabled.
    nf::HashConfig off = cfg;
    off.algorithm = nf::hash_alg::kNone;
    EXPECT_FALSE(nf::flow_hash(off, good));
    EXPECT_FALSE(nf::flow_hash(ms_config(0), good));
}

// With no algorithm set, the 5-tuple under Microsoft's key: TCP and UDP ports count, so both
// give the suite's with-ports value; a fragment and a frame that is not IP hash as expected.
TEST(FlowHash, DefaultHashIsTheFiveTupleUnderTheRssKey) {
    for (const V4Case& c : kV4) {
        EXPECT_EQ(nf::default_flow_hash(ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoTcp))),
                  c.with_tcp);
        EXPECT_EQ(nf::default_flow_hash(ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoUdp))),
                  c.with_tcp);
        EXPECT_EQ(nf::default_flow_hash(ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoTcp), 1)),
                  c.with_tcp);
        EXPECT_EQ(nf::default_flow_hash(ether(nf::kEtherTypeIpv4, ipv4(c, nf::kIpProtoIcmp))),
                  c.ip_only);
    }
    for (const V6Case& c : kV6)
        EXPECT_EQ(nf::default_flow_hash(ether(nf::kEtherTypeIpv6, ipv6(c, nf::kIpProtoTcp))),
                  c.with_tcp);
    EXPECT_EQ(nf::default_flow_hash(ether(0x0806, std::vector<std::uint8_t>(28, 0))), 0u);
    EXPECT_EQ(nf::default_flow_hash({}), 0u);
}

TEST(FlowHash, QueueSelectionStaysBelowTheQueueCount) {
    nf::HashConfig c = ms_config(nf::hash_flag::kAll);
    EXPECT_EQ(nf::hash_queue(c, 7, 4), 3u); // no mapping: modular
    EXPECT_EQ(nf::hash_queue(c, 7, 1), 0u);
    c.mapping_size = 4;
    c.mapping = {};
    c.mapping[0] = 2;
    c.mapping[1] = 1;
    c.mapping[2] = 0;
    c.mapping[3] = 3;
    EXPECT_EQ(nf::hash_queue(c, 5, 4), 1u); // 5 % 4 = 1 -> mapping[1]
    EXPECT_EQ(nf::hash_queue(c, 8, 4), 2u);
    // A configuration that was never validated cannot select a queue that does not exist.
    c.mapping[3] = 77;
    EXPECT_LT(nf::hash_queue(c, 3, 4), 4u);
    c.mapping_size = 1000;
    EXPECT_LT(nf::hash_queue(c, 0xFFFFFFFFu, 4), 4u);
    EXPECT_EQ(nf::hash_queue(c, 5, 0), 0u);
}

TEST(FlowHash, ExtraInfoCarriesTypeAlgorithmAndLittleEndianValue) {
    const nf::ExtraInfo e = nf::hash_extra(nf::FlowHash{0x51ccc178, nf::hash_type::kIpv4Tcp});
    EXPECT_EQ(e.type, nf::extra::kHash);
    EXPECT_EQ(e.flags, 0);
    EXPECT_EQ(e.u.hash.type, nf::hash_type::kIpv4Tcp);
    EXPECT_EQ(e.u.hash.algorithm, nf::hash_alg::kToeplitz);
    std::uint32_t v = 0;
    std::memcpy(&v, e.u.hash.value, 4);
    EXPECT_EQ(v, 0x51ccc178u);
}

TEST(Toeplitz, ShortKeysReadAsZeroPadded) {
    const std::uint8_t data[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    std::array<std::uint8_t, 40> padded{};
    std::memcpy(padded.data(), kMsKey.data(), 10);
    EXPECT_EQ(nf::toeplitz_hash(std::span(kMsKey.data(), 10), data),
              nf::toeplitz_hash(padded, data));
    EXPECT_EQ(nf::toeplitz_hash({}, data), 0u);
    EXPECT_EQ(nf::toeplitz_hash(kMsKey, {}), 0u);
}
