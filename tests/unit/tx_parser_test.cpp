// TX parser (dpnb/netif/tx_parser.hpp): well-formed packets of every shape, each drop and
// fatal reason with its boundary, the limits, the reason table, and the response writers
// (Linux make_tx_response order). hostile_frontend_test.cpp plays the attacker.
#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/tx_parser.hpp"
#include "netif_test_ring.hpp"

namespace nf = dpnb::netif;
using nf::TxError;
using nf::TxVerdict;
using nf::test::gso_extra;
using nf::test::hash_extra;
using nf::test::mcast_extra;
using nf::test::raw_extra;
using nf::test::TxPair;
using nf::test::txreq;

namespace {

struct Parsed {
    nf::TxParseResult r;
    nf::TxPacket pkt;
};

Parsed parse(TxPair& p, const nf::TxLimits& limits = {}) {
    const auto w = p.back.poll_requests();
    EXPECT_FALSE(w.overflow);
    Parsed out;
    out.r = nf::parse_tx_packet(p.back, w.cons, w.prod, limits, out.pkt);
    return out;
}

// Posts one data packet: `lens` are each data slot's own length (the first slot's first);
// ids are first_id, first_id + 1, ...; extras follow the first slot, chained with MORE.
void post_packet(TxPair& p, std::uint16_t first_id, const std::vector<std::uint32_t>& lens,
                 std::uint16_t first_flags = 0, std::vector<nf::ExtraInfo> extras = {}) {
    std::uint32_t total = 0;
    for (auto l : lens)
        total += l;
    std::uint16_t flags = first_flags;
    if (lens.size() > 1) flags |= nf::txf::kMoreData;
    if (!extras.empty()) flags |= nf::txf::kExtraInfo;
    ASSERT_TRUE(p.front.put_request(txreq(first_id, static_cast<std::uint16_t>(total), flags)));
    for (std::size_t i = 0; i < extras.size(); ++i) {
        nf::ExtraInfo e = extras[i];
        if (i + 1 < extras.size()) e.flags |= nf::extra::kFlagMore;
        ASSERT_TRUE(p.front.put_extra(e));
    }
    for (std::size_t i = 1; i < lens.size(); ++i) {
        const std::uint16_t f = i + 1 < lens.size() ? nf::txf::kMoreData : 0;
        // Vary the offsets where the slot still fits in its page.
        const std::uint32_t offset = lens[i] + (i % 8) * 16 <= nf::kPageSize ? (i % 8) * 16 : 0;
        ASSERT_TRUE(p.front.put_request(txreq(static_cast<std::uint16_t>(first_id + i),
                                              static_cast<std::uint16_t>(lens[i]), f,
                                              static_cast<std::uint16_t>(offset))));
    }
    p.front.push_requests();
}

// --- well-formed packets ---------------------------------------------------------------------

TEST(TxParser, EmptyRing) {
    TxPair p;
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::empty);
    EXPECT_EQ(r.r.slots, 0U);
}

TEST(TxParser, SingleSlotPacket) {
    TxPair p;
    ASSERT_TRUE(p.front.put_request(txreq(5, 1514, nf::txf::kDataValidated, 128, 777)));
    p.front.push_requests();
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::packet);
    EXPECT_EQ(r.r.error, TxError::none);
    EXPECT_EQ(r.r.slots, 1U);
    EXPECT_EQ(r.pkt.ring_slots, 1U);
    EXPECT_EQ(r.pkt.first_idx, 0U);
    EXPECT_EQ(r.pkt.total_len, 1514U);
    EXPECT_EQ(r.pkt.nr_slots, 1);
    EXPECT_EQ(r.pkt.nr_extras, 0);
    EXPECT_EQ(r.pkt.first_id(), 5);
    EXPECT_EQ(r.pkt.slots[0].gref, 777U);
    EXPECT_EQ(r.pkt.slots[0].offset, 128);
    EXPECT_EQ(r.pkt.slots[0].len, 1514);
    EXPECT_FALSE(r.pkt.offload.csum_blank);
    EXPECT_TRUE(r.pkt.offload.data_validated);
    EXPECT_FALSE(r.pkt.is_gso());
    EXPECT_EQ(r.pkt.mcast.op, nf::McastOp::none);
}

TEST(TxParser, MultiSlotPacketFirstLenIsTotalMinusRest) {
    TxPair p;
    post_packet(p, 10, {100, 4096, 2000, 1}, nf::txf::kCsumBlank);
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::packet);
    EXPECT_EQ(r.r.slots, 4U);
    ASSERT_EQ(r.pkt.nr_slots, 4);
    EXPECT_EQ(r.pkt.total_len, 6197U);
    const std::array<std::uint16_t, 4> lens{100, 4096, 2000, 1};
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(r.pkt.slots[i].len, lens[i]) << i;
        EXPECT_EQ(r.pkt.slots[i].id, 10 + i) << i;
        EXPECT_EQ(r.pkt.slots[i].gref, 1010U + i) << i;
    }
    EXPECT_EQ(r.pkt.slots[2].offset, 32);
    EXPECT_TRUE(r.pkt.offload.csum_blank);
}

TEST(TxParser, ZeroLengthLaterSlotsAreAccepted) {
    // Linux answers empty later slots with OKAY and maps nothing for them; so may the engine.
    TxPair p;
    post_packet(p, 0, {60, 0, 40});
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::packet);
    EXPECT_EQ(r.pkt.slots[1].len, 0);
    EXPECT_EQ(r.pkt.slots[2].len, 40);
}

TEST(TxParser, GsoExtra) {
    TxPair p;
    post_packet(p, 1, {1000, 3000}, nf::txf::kCsumBlank, {gso_extra(nf::gso::kTcpV6, 1440)});
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::packet);
    EXPECT_EQ(r.r.slots, 3U);
    EXPECT_EQ(r.pkt.ring_slots, 3U);
    EXPECT_EQ(r.pkt.nr_extras, 1);
    EXPECT_EQ(r.pkt.nr_slots, 2);
    EXPECT_TRUE(r.pkt.is_gso());
    EXPECT_EQ(r.pkt.offload.gso_type, nf::gso::kTcpV6);
    EXPECT_EQ(r.pkt.offload.gso_size, 1440);
    EXPECT_EQ(r.pkt.slots[1].id, 2); // data ids skip nothing: the extra has no id
}

TEST(TxParser, GsoAndHashExtrasChained) {
    TxPair p;
    post_packet(
        p, 1, {1514}, 0,
        {gso_extra(nf::gso::kTcpV4, 1460), hash_extra(nf::hash_type::kIpv4Tcp, 0xA1B2C3D4)});
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::packet);
    EXPECT_EQ(r.pkt.nr_extras, 2);
    EXPECT_EQ(r.r.slots, 3U);
    EXPECT_EQ(r.pkt.offload.gso_type, nf::gso::kTcpV4);
    EXPECT_TRUE(r.pkt.offload.has_hash);
    EXPECT_EQ(r.pkt.offload.hash_type, nf::hash_type::kIpv4Tcp);
    EXPECT_EQ(r.pkt.offload.hash_algorithm, 1);
    EXPECT_EQ(r.pkt.offload.hash_value, 0xA1B2C3D4U);
}

TEST(TxParser, McastAddIsAControlRequest) {
    TxPair p;
    const std::array<std::uint8_t, 6> mac{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
    ASSERT_TRUE(p.front.put_request(txreq(9, 0, nf::txf::kExtraInfo)));
    ASSERT_TRUE(p.front.put_extra(mcast_extra(true, mac)));
    p.front.push_requests();
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::control);
    EXPECT_EQ(r.r.slots, 2U);
    EXPECT_EQ(r.pkt.mcast.op, nf::McastOp::add);
    EXPECT_EQ(r.pkt.mcast.mac, mac);
    EXPECT_EQ(r.pkt.first_id(), 9);
    EXPECT_EQ(r.pkt.nr_extras, 1);
}

TEST(TxParser, McastDelIsAControlRequest) {
    TxPair p;
    const std::array<std::uint8_t, 6> mac{0x33, 0x33, 0, 0, 0, 1};
    // The first slot's size, offset and gref mean nothing for a control request.
    ASSERT_TRUE(p.front.put_request(txreq(3, 0xFFFF, nf::txf::kExtraInfo, 0xFFFF)));
    ASSERT_TRUE(p.front.put_extra(mcast_extra(false, mac)));
    p.front.push_requests();
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::control);
    EXPECT_EQ(r.pkt.mcast.op, nf::McastOp::del);
    EXPECT_EQ(r.pkt.mcast.mac, mac);
}

TEST(TxParser, ConsecutivePacketsAcrossTheRingWrap) {
    TxPair p(0xFFFFFF00U);
    nf::TxLimits limits;
    std::uint16_t id = 0;
    std::uint32_t parsed = 0;
    for (int round = 0; round < 40; ++round) {
        // Fill: packets of 1..5 slots, every third with a GSO extra.
        for (int k = 0; k < 8; ++k) {
            std::vector<std::uint32_t> lens(1 + (round + k) % 5, 100);
            std::vector<nf::ExtraInfo> extras;
            if ((round + k) % 3 == 0) extras.push_back(gso_extra(nf::gso::kTcpV4, 1000));
            post_packet(p, id, lens, 0, extras);
            id = static_cast<std::uint16_t>(id + lens.size());
        }
        for (;;) {
            const auto w = p.back.poll_requests();
            ASSERT_FALSE(w.overflow);
            nf::TxPacket pkt;
            const auto res = nf::parse_tx_packet(p.back, w.cons, w.prod, limits, pkt);
            if (res.verdict == TxVerdict::empty) break;
            ASSERT_EQ(res.verdict, TxVerdict::packet) << nf::to_string(res.error);
            EXPECT_EQ(pkt.first_idx, w.cons);
            p.back.consume(res.slots);
            ASSERT_TRUE(nf::put_tx_responses(p.back, pkt, nf::rsp::kOkay));
            ++parsed;
        }
        p.back.push_responses();
        const auto rw = p.front.poll_responses();
        p.front.consume_responses(rw.available);
        EXPECT_EQ(p.front.free_requests(), 256U);
    }
    EXPECT_EQ(parsed, 320U);
    EXPECT_LT(p.back.req_cons(), 0xFFFFFF00U); // wrapped
}

// --- slot counts ----------------------------------------------------------------------------

TEST(TxParserSlots, EighteenSlotsAreAccepted) {
    TxPair p;
    post_packet(p, 0, std::vector<std::uint32_t>(18, 100));
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::packet);
    EXPECT_EQ(r.pkt.nr_slots, 18);
}

TEST(TxParserSlots, NineteenAndTwentySlotsAreDropped) {
    for (unsigned n : {19U, 20U}) {
        TxPair p;
        post_packet(p, 0, std::vector<std::uint32_t>(n, 100));
        const Parsed r = parse(p);
        EXPECT_EQ(r.r.verdict, TxVerdict::drop) << n;
        EXPECT_EQ(r.r.error, TxError::too_many_slots) << n;
        EXPECT_EQ(r.r.slots, n) << n; // every slot consumed, to be answered
        EXPECT_EQ(r.pkt.nr_slots, n) << n;
        for (unsigned i = 0; i < n; ++i)
            EXPECT_EQ(r.pkt.slots[i].id, i);
    }
}

TEST(TxParserSlots, TwentyOneSlotsAreFatal) {
    TxPair p;
    post_packet(p, 0, std::vector<std::uint32_t>(21, 100));
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::fatal);
    EXPECT_EQ(r.r.error, TxError::too_many_slots_fatal);
}

TEST(TxParserSlots, LimitsAreConfigurable) {
    nf::TxLimits limits;
    limits.max_slots = 20;
    limits.fatal_slots = 24;
    for (unsigned n : {20U, 21U, 24U, 25U}) {
        TxPair p;
        post_packet(p, 0, std::vector<std::uint32_t>(n, 100));
        const Parsed r = parse(p, limits);
        const TxVerdict expect =
            n <= 20 ? TxVerdict::packet : (n <= 24 ? TxVerdict::drop : TxVerdict::fatal);
        EXPECT_EQ(r.r.verdict, expect) << n;
    }
}

TEST(TxParserSlots, ExtrasDoNotCountAsDataSlots) {
    TxPair p;
    post_packet(p, 0, std::vector<std::uint32_t>(18, 100), 0,
                {gso_extra(nf::gso::kTcpV4, 1000), hash_extra(nf::hash_type::kIpv4, 1)});
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::packet);
    EXPECT_EQ(r.r.slots, 20U);
}

TEST(TxParserSlots, ParserClampsFatalSlotsToCapacity) {
    nf::TxLimits limits;
    limits.max_slots = 1000;
    limits.fatal_slots = 1000;
    TxPair p;
    post_packet(p, 0, std::vector<std::uint32_t>(nf::kTxMaxSlots + 1, 10));
    const Parsed r = parse(p, limits);
    EXPECT_EQ(r.r.verdict, TxVerdict::fatal);
    EXPECT_EQ(r.r.error, TxError::too_many_slots_fatal);
}

// --- sizes ------------------------------------------------------------------------------------

TEST(TxParserSizes, LaterSlotLargerThanWhatIsLeftIsDropped) {
    // A 70000-byte frame: the 16-bit first size wrapped to 4464.
    TxPair p;
    ASSERT_TRUE(
        p.front.put_request(txreq(0, static_cast<std::uint16_t>(70000), nf::txf::kMoreData)));
    ASSERT_TRUE(p.front.put_request(txreq(1, 4096, nf::txf::kMoreData)));
    ASSERT_TRUE(p.front.put_request(txreq(2, 4096, 0)));
    p.front.push_requests();
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::drop);
    EXPECT_EQ(r.r.error, TxError::slot_size_overflow);
    EXPECT_EQ(r.r.slots, 3U);
    EXPECT_EQ(r.pkt.nr_slots, 3);
    EXPECT_EQ(r.pkt.slots[0].len, 0); // undefined for this packet
}

TEST(TxParserSizes, LaterSlotsExactlyFillingTheTotalAreFine) {
    TxPair p;
    ASSERT_TRUE(p.front.put_request(txreq(0, 4000, nf::txf::kMoreData)));
    ASSERT_TRUE(p.front.put_request(txreq(1, 4000, 0)));
    p.front.push_requests();
    const Parsed r = parse(p);
    // Size bookkeeping is fine (first slot is 0 bytes), but the first slot is too short.
    EXPECT_EQ(r.r.verdict, TxVerdict::drop);
    EXPECT_EQ(r.r.error, TxError::short_first_slot);
}

TEST(TxParserSizes, Runts) {
    for (std::uint16_t size : {0, 1, 13}) {
        TxPair p;
        ASSERT_TRUE(p.front.put_request(txreq(0, size)));
        p.front.push_requests();
        const Parsed r = parse(p);
        EXPECT_EQ(r.r.verdict, TxVerdict::drop) << size;
        EXPECT_EQ(r.r.error, TxError::runt) << size;
        EXPECT_EQ(r.r.slots, 1U);
    }
    TxPair p;
    ASSERT_TRUE(p.front.put_request(txreq(0, 14)));
    p.front.push_requests();
    EXPECT_EQ(parse(p).r.verdict, TxVerdict::packet);
}

TEST(TxParserSizes, FirstSlotMustHoldTheEthernetHeader) {
    for (std::uint32_t first : {0U, 1U, 13U, 14U}) {
        TxPair p;
        post_packet(p, 0, {first, 1000});
        const Parsed r = parse(p);
        if (first < 14) {
            EXPECT_EQ(r.r.verdict, TxVerdict::drop) << first;
            EXPECT_EQ(r.r.error, TxError::short_first_slot) << first;
            EXPECT_EQ(r.r.slots, 2U);
        } else {
            EXPECT_EQ(r.r.verdict, TxVerdict::packet) << first;
        }
    }
}

TEST(TxParserSizes, MaxPacketLen) {
    nf::TxLimits limits;
    limits.max_packet_len = 9018;
    for (std::uint32_t total : {9018U, 9019U}) {
        TxPair p;
        post_packet(p, 0, {4000, 4096, total - 8096});
        const Parsed r = parse(p, limits);
        EXPECT_EQ(r.r.verdict, total <= 9018 ? TxVerdict::packet : TxVerdict::drop) << total;
        if (total > 9018) {
            EXPECT_EQ(r.r.error, TxError::too_long);
        }
    }
}

// A packet of one slot with nothing chained (the parser's short path) gets every check a
// longer one gets, with the same reasons in the same order.
TEST(TxParserSizes, OneSlotPacketsGetEveryCheck) {
    nf::TxLimits limits;
    limits.max_packet_len = 3000;
    limits.max_frame_len = 1518;
    struct Case {
        std::uint16_t size, offset;
        nf::TxVerdict verdict;
        TxError error;
    };
    for (const Case c : {Case{1518, 0, TxVerdict::packet, TxError::none},
                         Case{1519, 0, TxVerdict::drop, TxError::frame_too_long},
                         Case{3001, 0, TxVerdict::drop, TxError::too_long},
                         Case{13, 0, TxVerdict::drop, TxError::runt},
                         Case{1518, 2579, TxVerdict::fatal, TxError::slot_crosses_page},
                         Case{3001, 1096, TxVerdict::fatal, TxError::slot_crosses_page}}) {
        TxPair p;
        ASSERT_TRUE(p.front.put_request(txreq(7, c.size, nf::txf::kCsumBlank, c.offset)));
        p.front.push_requests();
        const Parsed r = parse(p, limits);
        EXPECT_EQ(r.r.verdict, c.verdict) << c.size << " at " << c.offset;
        EXPECT_EQ(r.r.error, c.error) << c.size << " at " << c.offset;
        EXPECT_EQ(r.r.slots, 1U);
        if (c.verdict == TxVerdict::fatal) continue;
        EXPECT_EQ(r.pkt.nr_slots, 1U);
        EXPECT_EQ(r.pkt.nr_extras, 0U);
        EXPECT_EQ(r.pkt.ring_slots, 1U);
        EXPECT_EQ(r.pkt.total_len, c.size);
        EXPECT_EQ(r.pkt.slots[0].len, c.size);
        EXPECT_EQ(r.pkt.slots[0].offset, c.offset);
        EXPECT_EQ(r.pkt.slots[0].id, 7U);
        EXPECT_TRUE(r.pkt.offload.csum_blank);
        EXPECT_FALSE(r.pkt.is_gso());
        EXPECT_EQ(r.pkt.mcast.op, nf::McastOp::none);
    }
}

TEST(TxParserSizes, MaxFrameLenAppliesToNonGsoOnly) {
    nf::TxLimits limits;
    limits.max_frame_len = nf::tx_max_frame_len_for_mtu(1500);
    EXPECT_EQ(limits.max_frame_len, 1518U);
    {
        TxPair p;
        post_packet(p, 0, {1518});
        EXPECT_EQ(parse(p, limits).r.verdict, TxVerdict::packet);
    }
    {
        TxPair p;
        post_packet(p, 0, {1000, 519});
        const Parsed r = parse(p, limits);
        EXPECT_EQ(r.r.verdict, TxVerdict::drop);
        EXPECT_EQ(r.r.error, TxError::frame_too_long);
    }
    {
        TxPair p;
        post_packet(p, 0, {1000, 4096, 4096}, nf::txf::kCsumBlank,
                    {gso_extra(nf::gso::kTcpV4, 1448)});
        EXPECT_EQ(parse(p, limits).r.verdict, TxVerdict::packet);
    }
}

// --- extras -----------------------------------------------------------------------------------

TEST(TxParserExtras, DuplicateExtraIsDroppedWithEverySlotConsumed) {
    TxPair p;
    post_packet(
        p, 0, {1000, 1000}, 0,
        {gso_extra(nf::gso::kTcpV4, 1000), hash_extra(0, 1), gso_extra(nf::gso::kTcpV4, 500)});
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::drop);
    EXPECT_EQ(r.r.error, TxError::duplicate_extra);
    EXPECT_EQ(r.r.slots, 5U);
    EXPECT_EQ(r.pkt.nr_extras, 3);
    EXPECT_EQ(r.pkt.nr_slots, 2);
    EXPECT_EQ(r.pkt.offload.gso_size, 1000); // the first one is kept
}

TEST(TxParserExtras, UnknownHashTypeIsDropped) {
    TxPair p;
    post_packet(p, 0, {1000}, 0, {hash_extra(nf::hash_type::kMax, 1)});
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::drop);
    EXPECT_EQ(r.r.error, TxError::bad_hash_type);
    EXPECT_EQ(r.r.slots, 2U);
}

TEST(TxParserExtras, McastWithDataIsDroppedWhole) {
    TxPair p;
    const std::array<std::uint8_t, 6> mac{1, 2, 3, 4, 5, 6};
    post_packet(p, 4, {60, 100, 100}, 0, {mcast_extra(true, mac)});
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::drop);
    EXPECT_EQ(r.r.error, TxError::mcast_with_data);
    EXPECT_EQ(r.r.slots, 4U);
    EXPECT_EQ(r.pkt.nr_slots, 3);
}

TEST(TxParserExtras, McastAddAndDelTogetherAreDropped) {
    TxPair p;
    const std::array<std::uint8_t, 6> mac{1, 2, 3, 4, 5, 6};
    ASSERT_TRUE(p.front.put_request(txreq(0, 0, nf::txf::kExtraInfo)));
    ASSERT_TRUE(p.front.put_extra(mcast_extra(true, mac, true)));
    ASSERT_TRUE(p.front.put_extra(mcast_extra(false, mac)));
    p.front.push_requests();
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::drop);
    EXPECT_EQ(r.r.error, TxError::mcast_conflict);
    EXPECT_EQ(r.r.slots, 3U);
}

TEST(TxParserExtras, McastWithGsoIsStillControl) {
    TxPair p;
    const std::array<std::uint8_t, 6> mac{1, 0, 0x5e, 0, 0, 1};
    ASSERT_TRUE(p.front.put_request(txreq(0, 0, nf::txf::kExtraInfo)));
    ASSERT_TRUE(p.front.put_extra(gso_extra(nf::gso::kTcpV4, 1000, true)));
    ASSERT_TRUE(p.front.put_extra(mcast_extra(true, mac)));
    p.front.push_requests();
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::control);
    EXPECT_EQ(r.r.slots, 3U);
}

TEST(TxParserExtras, FatalExtras) {
    struct Case {
        nf::ExtraInfo extra;
        TxError error;
    };
    const Case cases[] = {
        {raw_extra(nf::extra::kNone, 0), TxError::bad_extra_type},
        {raw_extra(nf::extra::kTypeMax, 0), TxError::bad_extra_type},
        {raw_extra(0xFF, 0), TxError::bad_extra_type},
        {gso_extra(nf::gso::kTcpV4, 0), TxError::bad_gso_size},
        {gso_extra(nf::gso::kNone, 1000), TxError::bad_gso_type},
        {gso_extra(3, 1000), TxError::bad_gso_type},
    };
    for (const Case& c : cases) {
        TxPair p;
        post_packet(p, 0, {1000}, 0, {c.extra});
        const Parsed r = parse(p);
        EXPECT_EQ(r.r.verdict, TxVerdict::fatal) << nf::to_string(c.error);
        EXPECT_EQ(r.r.error, c.error);
    }
}

TEST(TxParserExtras, FatalBeatsAnEarlierDrop) {
    // A duplicate (drop) followed by a bad type (fatal): the vif dies.
    TxPair p;
    post_packet(p, 0, {1000}, 0, {hash_extra(0, 1), hash_extra(0, 2), raw_extra(9, 0)});
    const Parsed r = parse(p);
    EXPECT_EQ(r.r.verdict, TxVerdict::fatal);
    EXPECT_EQ(r.r.error, TxError::bad_extra_type);
}

TEST(TxParserExtras, FirstDropReasonIsReported) {
    nf::TxLimits limits;
    limits.max_frame_len = 1518;
    TxPair p;
    // Duplicate extra, then 19 slots, then too long: the duplicate is reported.
    post_packet(p, 0, std::vector<std::uint32_t>(19, 100), 0, {hash_extra(0, 1), hash_extra(0, 1)});
    const Parsed r = parse(p, limits);
    EXPECT_EQ(r.r.verdict, TxVerdict::drop);
    EXPECT_EQ(r.r.error, TxError::duplicate_extra);
    EXPECT_EQ(r.r.slots, 21U);
}

// --- page bounds --------------------------------------------------------------------------------

TEST(TxParserPage, SlotsMustStayInTheirPage) {
    {
        TxPair p; // first slot: offset 2048 + 2048 bytes ends exactly at the page end
        ASSERT_TRUE(p.front.put_request(txreq(0, 2048, 0, 2048)));
        p.front.push_requests();
        EXPECT_EQ(parse(p).r.verdict, TxVerdict::packet);
    }
    {
        TxPair p;
        ASSERT_TRUE(p.front.put_request(txreq(0, 2049, 0, 2048)));
        p.front.push_requests();
        const Parsed r = parse(p);
        EXPECT_EQ(r.r.verdict, TxVerdict::fatal);
        EXPECT_EQ(r.r.error, TxError::slot_crosses_page);
    }
    {
        TxPair p; // a later slot crossing
        ASSERT_TRUE(p.front.put_request(txreq(0, 1100, nf::txf::kMoreData)));
        ASSERT_TRUE(p.front.put_request(txreq(1, 1000, 0, 3097)));
        p.front.push_requests();
        const Parsed r = parse(p);
        EXPECT_EQ(r.r.verdict, TxVerdict::fatal);
        EXPECT_EQ(r.r.error, TxError::slot_crosses_page);
    }
    {
        TxPair p; // a single slot larger than a page
        ASSERT_TRUE(p.front.put_request(txreq(0, 9000)));
        p.front.push_requests();
        EXPECT_EQ(parse(p).r.error, TxError::slot_crosses_page);
    }
}

// --- responses ----------------------------------------------------------------------------------

TEST(TxResponses, RingOrderIsFirstThenNullsThenLaterSlots) {
    TxPair p;
    post_packet(p, 20, {100, 200, 300}, 0, {gso_extra(nf::gso::kTcpV4, 1000), hash_extra(0, 5)});
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::packet);
    p.back.consume(r.r.slots);
    ASSERT_TRUE(nf::put_tx_responses(p.back, r.pkt, nf::rsp::kOkay));
    EXPECT_EQ(p.back.rsp_prod_pvt(), 5U);
    EXPECT_TRUE(p.back.push_responses());
    const auto w = p.front.poll_responses();
    ASSERT_EQ(w.available, 5U);
    const std::array<std::pair<std::uint16_t, std::int16_t>, 5> expect{{{20, nf::rsp::kOkay},
                                                                        {0, nf::rsp::kNull},
                                                                        {0, nf::rsp::kNull},
                                                                        {21, nf::rsp::kOkay},
                                                                        {22, nf::rsp::kOkay}}};
    for (std::uint32_t i = 0; i < 5; ++i) {
        const nf::TxResponse rsp = p.front.copy_response(i);
        EXPECT_EQ(rsp.status, expect[i].second) << i;
        if (rsp.status != nf::rsp::kNull) {
            EXPECT_EQ(rsp.id, expect[i].first) << i;
        }
    }
}

TEST(TxResponses, DroppedPacketAnswersEverySlotWithError) {
    TxPair p;
    post_packet(p, 0, std::vector<std::uint32_t>(19, 100), 0, {gso_extra(nf::gso::kTcpV4, 1000)});
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::drop);
    p.back.consume(r.r.slots);
    ASSERT_TRUE(nf::put_tx_responses(p.back, r.pkt, nf::rsp::kError));
    EXPECT_EQ(p.back.rsp_prod_pvt(), r.r.slots);
    EXPECT_EQ(p.back.unanswered(), 0U);
    p.back.push_responses();
    std::set<std::uint16_t> ids;
    for (std::uint32_t i = 0; i < r.r.slots; ++i) {
        const nf::TxResponse rsp = p.front.copy_response(i);
        if (i == 1) {
            EXPECT_EQ(rsp.status, nf::rsp::kNull);
            continue;
        }
        EXPECT_EQ(rsp.status, nf::rsp::kError) << i;
        ids.insert(rsp.id);
    }
    EXPECT_EQ(ids.size(), 19U);
}

TEST(TxResponses, ControlRequestAnsweredWithNullForItsExtra) {
    TxPair p;
    ASSERT_TRUE(p.front.put_request(txreq(42, 0, nf::txf::kExtraInfo)));
    ASSERT_TRUE(p.front.put_extra(mcast_extra(true, {1, 0, 0x5e, 0, 0, 1})));
    p.front.push_requests();
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::control);
    p.back.consume(r.r.slots);
    ASSERT_TRUE(nf::put_tx_responses(p.back, r.pkt, nf::rsp::kError)); // filter full
    p.back.push_responses();
    EXPECT_EQ(p.front.copy_response(0).id, 42);
    EXPECT_EQ(p.front.copy_response(0).status, nf::rsp::kError);
    EXPECT_EQ(p.front.copy_response(1).status, nf::rsp::kNull);
}

TEST(TxResponses, PerSlotAnswersInReleaseOrder) {
    TxPair p;
    post_packet(p, 7, {100, 200, 300}, 0, {gso_extra(nf::gso::kTcpV4, 1000)});
    const Parsed r = parse(p);
    ASSERT_EQ(r.r.verdict, TxVerdict::packet);
    p.back.consume(r.r.slots);
    // Buffers released out of order: slot 2, slot 0 (with its extra), slot 1 (grant failed).
    ASSERT_TRUE(nf::put_tx_slot_response(p.back, r.pkt, 2, nf::rsp::kOkay));
    ASSERT_TRUE(nf::put_tx_slot_response(p.back, r.pkt, 0, nf::rsp::kOkay));
    ASSERT_TRUE(nf::put_tx_slot_response(p.back, r.pkt, 1, nf::rsp::kError));
    EXPECT_FALSE(nf::put_tx_slot_response(p.back, r.pkt, 3, nf::rsp::kOkay)); // no such slot
    EXPECT_FALSE(nf::put_tx_slot_response(p.back, r.pkt, 1, nf::rsp::kOkay)); // all answered
    p.back.push_responses();
    ASSERT_EQ(p.front.poll_responses().available, 4U);
    EXPECT_EQ(p.front.copy_response(0).id, 9);
    EXPECT_EQ(p.front.copy_response(1).id, 7);
    EXPECT_EQ(p.front.copy_response(2).status, nf::rsp::kNull);
    EXPECT_EQ(p.front.copy_response(3).id, 8);
    EXPECT_EQ(p.front.copy_response(3).status, nf::rsp::kError);
}

TEST(TxResponses, RefusesWithoutEnoughConsumedRequests) {
    TxPair p;
    post_packet(p, 0, {100, 100}, 0, {gso_extra(nf::gso::kTcpV4, 1000)});
    const Parsed r = parse(p);
    p.back.consume(r.r.slots - 1);
    EXPECT_FALSE(nf::put_tx_responses(p.back, r.pkt, nf::rsp::kOkay));
    EXPECT_EQ(p.back.rsp_prod_pvt(), 0U); // nothing written
    p.back.consume(1);
    EXPECT_TRUE(nf::put_tx_responses(p.back, r.pkt, nf::rsp::kOkay));
    // An inconsistent description is refused too.
    nf::TxPacket bad = r.pkt;
    bad.nr_slots = 0;
    EXPECT_FALSE(nf::put_tx_responses(p.back, bad, nf::rsp::kOkay));
}

// --- the reason table and limits ---------------------------------------------------------------

TEST(TxErrors, TableIsCompleteAndConsistent) {
    const auto table = nf::tx_error_table();
    ASSERT_FALSE(table.empty());
    std::set<std::string> names;
    for (std::size_t i = 0; i < table.size(); ++i) {
        const auto& e = table[i];
        EXPECT_EQ(static_cast<std::size_t>(e.error), i + 1);
        EXPECT_NE(e.cls, nf::TxErrorClass::none);
        EXPECT_EQ(std::string(nf::to_string(e.error)), e.name);
        EXPECT_EQ(nf::classify(e.error), e.cls);
        EXPECT_EQ(std::string(nf::help(e.error)), e.help);
        EXPECT_EQ(std::string(e.name).rfind("tx_", 0), 0U) << e.name;
        EXPECT_GT(std::string(e.help).size(), 10U);
        EXPECT_TRUE(names.insert(e.name).second) << "duplicate " << e.name;
    }
    EXPECT_STREQ(nf::to_string(TxError::none), "none");
    EXPECT_EQ(nf::classify(TxError::none), nf::TxErrorClass::none);
    EXPECT_EQ(nf::classify(TxError::too_many_slots), nf::TxErrorClass::drop);
    EXPECT_EQ(nf::classify(TxError::ring_overflow), nf::TxErrorClass::fatal);
    EXPECT_STREQ(nf::to_string(TxError::too_many_slots), "tx_slot_overflow");
    EXPECT_STREQ(nf::to_string(static_cast<TxError>(200)), "none");
    EXPECT_STREQ(nf::to_string(nf::TxErrorClass::fatal), "fatal");
    EXPECT_STREQ(nf::to_string(TxVerdict::control), "control");
}

TEST(TxLimits, Validation) {
    EXPECT_TRUE(nf::validate(nf::TxLimits{}).has_value());
    nf::TxLimits l;
    l.max_slots = 17;
    EXPECT_FALSE(nf::validate(l).has_value());
    l = {};
    l.fatal_slots = 17;
    EXPECT_FALSE(nf::validate(l).has_value());
    l = {};
    l.max_slots = 30;
    l.fatal_slots = 29;
    EXPECT_FALSE(nf::validate(l).has_value());
    l = {};
    l.fatal_slots = nf::kTxMaxSlots + 1;
    EXPECT_FALSE(nf::validate(l).has_value());
    l = {};
    l.fatal_slots = nf::kTxMaxSlots;
    EXPECT_TRUE(nf::validate(l).has_value());
    l = {};
    l.max_packet_len = 13;
    EXPECT_FALSE(nf::validate(l).has_value());
    l.max_packet_len = 65536;
    EXPECT_FALSE(nf::validate(l).has_value());
    l = {};
    l.max_frame_len = 1518;
    EXPECT_TRUE(nf::validate(l).has_value());
    l.max_frame_len = 65536;
    EXPECT_FALSE(nf::validate(l).has_value());
    l.max_frame_len = 10;
    EXPECT_FALSE(nf::validate(l).has_value());
}

} // namespace
