// A hostile frontend against the TX parser: impossible producer indices, slot-count and size
// games, page overruns, chains that run off the published requests or around the ring,
// unknown and duplicate extras, bad GSO, and a frontend that rewrites requests after the
// backend read them (no double fetch: every slot is copied once and only the copy is used).
// Ends with a seeded random sweep of ring contents checking the parser's invariants.
// Then the control ring: every hash and static-grant message with hostile sizes, offsets,
// queues, algorithms, flags and copied bytes (the XSA-270 edge among them), each answered
// INVALID_PARAMETER with its reason counted and the vif's state untouched, and a random sweep
// of requests checking the handler's bounds.
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/ctrl_handler.hpp"
#include "dpnb/netif/tx_parser.hpp"
#include "netif_test_ring.hpp"

namespace nf = dpnb::netif;
using nf::RingIdx;
using nf::TxError;
using nf::TxVerdict;
using nf::test::gso_extra;
using nf::test::hash_extra;
using nf::test::raw_extra;
using nf::test::RingPage;
using nf::test::txreq;

namespace {

constexpr std::uint16_t kMore = nf::txf::kMoreData;
constexpr std::uint16_t kExtra = nf::txf::kExtraInfo;

// A ring page written slot by slot, with req_prod set by hand, as an attacker would.
struct HostileRing {
    std::unique_ptr<RingPage> page = nf::test::make_page();
    RingIdx next = 0;

    HostileRing& req(const nf::TxRequest& r) {
        page->write_tx_request(next++, r);
        return *this;
    }
    HostileRing& ext(const nf::ExtraInfo& e) {
        page->write_tx_extra(next++, e);
        return *this;
    }
    // A packet of `n` data slots of `len` bytes each (the first slot's size is the total).
    HostileRing& chain(unsigned n, std::uint16_t len = 100) {
        req(txreq(0, static_cast<std::uint16_t>(n * len), n > 1 ? kMore : 0));
        for (unsigned i = 1; i < n; ++i)
            req(txreq(static_cast<std::uint16_t>(i), len, i + 1 < n ? kMore : 0));
        return *this;
    }
    void publish(RingIdx prod) { page->header().req_prod = prod; }
    void publish() { publish(next); }
};

struct Case {
    const char* name;
    std::function<void(HostileRing&)> build;
    TxVerdict verdict;
    TxError error;
    std::uint32_t slots; // checked for drop verdicts (what must be consumed and answered)
    bool poll_overflow = false;
};

const std::vector<Case>& cases() {
    static const std::vector<Case> table = {
        {"producer_index_overflow",
         [](HostileRing& h) {
             h.chain(1);
             h.publish(257);
         },
         TxVerdict::fatal, TxError::ring_overflow, 0, true},
        {"producer_index_far_ahead",
         [](HostileRing& h) {
             h.chain(1);
             h.publish(0x80000000U);
         },
         TxVerdict::fatal, TxError::ring_overflow, 0, true},
        {"slot_count_drop_range_19", [](HostileRing& h) { h.chain(19).publish(); }, TxVerdict::drop,
         TxError::too_many_slots, 19},
        {"slot_count_drop_range_20", [](HostileRing& h) { h.chain(20).publish(); }, TxVerdict::drop,
         TxError::too_many_slots, 20},
        {"slot_count_fatal_range_21", [](HostileRing& h) { h.chain(21).publish(); },
         TxVerdict::fatal, TxError::too_many_slots_fatal, 0},
        {"size_mismatch_first_smaller_than_chain",
         [](HostileRing& h) {
             h.req(txreq(0, 100, kMore)).req(txreq(1, 60, kMore)).req(txreq(2, 60, 0)).publish();
         },
         TxVerdict::drop, TxError::slot_size_overflow, 3},
        {"size_mismatch_single_huge_later_slot",
         [](HostileRing& h) { h.req(txreq(0, 14, kMore)).req(txreq(1, 4096, 0)).publish(); },
         TxVerdict::drop, TxError::slot_size_overflow, 2},
        {"offset_plus_size_over_page_first",
         [](HostileRing& h) { h.req(txreq(0, 100, 0, 4000)).publish(); }, TxVerdict::fatal,
         TxError::slot_crosses_page, 0},
        {"offset_plus_size_over_page_later",
         [](HostileRing& h) {
             h.req(txreq(0, 200, kMore)).req(txreq(1, 100, 0, 0xFFFF)).publish();
         },
         TxVerdict::fatal, TxError::slot_crosses_page, 0},
        {"offset_plus_size_over_page_while_dropping",
         [](HostileRing& h) {
             // Already a drop (size overflow); the page overrun still kills the vif.
             h.req(txreq(0, 14, kMore)).req(txreq(1, 100, kMore)).req(txreq(2, 4096, 0, 1));
             h.publish();
         },
         TxVerdict::fatal, TxError::slot_crosses_page, 0},
        {"zero_length_first_slot",
         [](HostileRing& h) { h.req(txreq(0, 500, kMore)).req(txreq(1, 500, 0)).publish(); },
         TxVerdict::drop, TxError::short_first_slot, 2},
        {"chain_longer_than_the_ring",
         [](HostileRing& h) {
             for (unsigned i = 0; i < 256; ++i)
                 h.req(txreq(static_cast<std::uint16_t>(i), 100, kMore));
             h.publish();
         },
         TxVerdict::fatal, TxError::too_many_slots_fatal, 0},
        {"extra_chain_around_the_ring",
         [](HostileRing& h) {
             h.req(txreq(0, 100, kExtra));
             while (h.next < 256)
                 h.ext(hash_extra(0, h.next, true));
             h.publish();
         },
         TxVerdict::fatal, TxError::extra_past_producer, 0},
        {"unknown_extra_type_0",
         [](HostileRing& h) { h.req(txreq(0, 100, kExtra)).ext(raw_extra(0, 0)).publish(); },
         TxVerdict::fatal, TxError::bad_extra_type, 0},
        {"unknown_extra_type_max",
         [](HostileRing& h) {
             h.req(txreq(0, 100, kExtra)).ext(raw_extra(nf::extra::kTypeMax, 0)).publish();
         },
         TxVerdict::fatal, TxError::bad_extra_type, 0},
        {"unknown_extra_type_after_good_one",
         [](HostileRing& h) {
             h.req(txreq(0, 100, kExtra)).ext(gso_extra(1, 1000, true)).ext(raw_extra(77, 0));
             h.publish();
         },
         TxVerdict::fatal, TxError::bad_extra_type, 0},
        {"duplicate_extra",
         [](HostileRing& h) {
             h.req(txreq(0, 100, kExtra)).ext(gso_extra(1, 1000, true)).ext(gso_extra(2, 1000));
             h.publish();
         },
         TxVerdict::drop, TxError::duplicate_extra, 3},
        {"bad_gso_size_zero",
         [](HostileRing& h) { h.req(txreq(0, 100, kExtra)).ext(gso_extra(1, 0)).publish(); },
         TxVerdict::fatal, TxError::bad_gso_size, 0},
        {"bad_gso_type",
         [](HostileRing& h) { h.req(txreq(0, 100, kExtra)).ext(gso_extra(9, 1000)).publish(); },
         TxVerdict::fatal, TxError::bad_gso_type, 0},
        {"more_data_on_last_published_request",
         [](HostileRing& h) { h.req(txreq(0, 200, kMore)).req(txreq(1, 100, kMore)).publish(); },
         TxVerdict::fatal, TxError::chain_past_producer, 0},
        {"more_data_on_the_only_request",
         [](HostileRing& h) { h.req(txreq(0, 200, kMore)).publish(); }, TxVerdict::fatal,
         TxError::chain_past_producer, 0},
        {"more_data_beyond_producer_with_stale_slots_behind_it",
         [](HostileRing& h) {
             // Slots past req_prod hold a well-formed tail; the parser must not look at them.
             h.req(txreq(0, 200, kMore)).req(txreq(1, 100, 0));
             h.publish(1);
         },
         TxVerdict::fatal, TxError::chain_past_producer, 0},
        {"extra_info_on_last_published_request",
         [](HostileRing& h) { h.req(txreq(0, 100, kExtra)).publish(); }, TxVerdict::fatal,
         TxError::extra_past_producer, 0},
        {"extra_more_on_last_published_request",
         [](HostileRing& h) {
             h.req(txreq(0, 100, kExtra)).ext(gso_extra(1, 1000, true)).publish();
         },
         TxVerdict::fatal, TxError::extra_past_producer, 0},
        {"extras_then_more_data_past_producer",
         [](HostileRing& h) {
             h.req(txreq(0, 100, kExtra | kMore)).ext(gso_extra(1, 1000)).publish();
         },
         TxVerdict::fatal, TxError::chain_past_producer, 0},
    };
    return table;
}

TEST(HostileTxFrontend, Table) {
    for (const Case& c : cases()) {
        SCOPED_TRACE(c.name);
        HostileRing h;
        c.build(h);
        auto back = nf::TxBackRing::attach_at(h.page->data(), 0);
        ASSERT_TRUE(back.has_value());
        const auto w = back->poll_requests();
        EXPECT_EQ(w.overflow, c.poll_overflow);
        nf::TxPacket pkt;
        // The parser repeats the overflow check, so even an engine that skipped it is safe.
        const auto r = nf::parse_tx_packet(*back, w.cons, w.prod, nf::TxLimits{}, pkt);
        EXPECT_EQ(r.verdict, c.verdict) << nf::to_string(r.verdict);
        EXPECT_EQ(r.error, c.error) << nf::to_string(r.error);
        EXPECT_EQ(
            nf::classify(r.error),
            c.verdict == TxVerdict::fatal
                ? nf::TxErrorClass::fatal
                : (c.verdict == TxVerdict::drop ? nf::TxErrorClass::drop : nf::TxErrorClass::none));
        if (c.verdict == TxVerdict::drop) {
            EXPECT_EQ(r.slots, c.slots);
            EXPECT_EQ(pkt.ring_slots, c.slots);
            // Answer every slot: the ring comes out balanced.
            back->consume(r.slots);
            EXPECT_TRUE(nf::put_tx_responses(*back, pkt, nf::rsp::kError));
            EXPECT_EQ(back->unanswered(), 0U);
        }
        EXPECT_LE(r.slots, w.overflow ? 0U : w.available);
    }
}

TEST(HostileTxFrontend, ProducerMovedBehindConsumer) {
    HostileRing h;
    h.chain(2).chain(1).publish();
    auto back = nf::TxBackRing::attach_at(h.page->data(), 0);
    ASSERT_TRUE(back.has_value());
    auto w = back->poll_requests();
    nf::TxPacket pkt;
    auto r = nf::parse_tx_packet(*back, w.cons, w.prod, {}, pkt);
    ASSERT_EQ(r.verdict, TxVerdict::packet);
    back->consume(r.slots);
    h.publish(1); // req_prod goes backwards
    w = back->poll_requests();
    EXPECT_TRUE(w.overflow);
    r = nf::parse_tx_packet(*back, w.cons, w.prod, {}, pkt);
    EXPECT_EQ(r.verdict, TxVerdict::fatal);
    EXPECT_EQ(r.error, TxError::ring_overflow);
}

// --- no double fetch --------------------------------------------------------------------------

TEST(HostileTxFrontend, RequestRewrittenAfterItWasRead) {
    nf::test::TxPair p;
    ASSERT_TRUE(p.front.put_request(txreq(11, 1000, kMore | kExtra, 0, 500)));
    ASSERT_TRUE(p.front.put_extra(gso_extra(nf::gso::kTcpV4, 1448)));
    ASSERT_TRUE(p.front.put_request(txreq(12, 400, 0, 64, 501)));
    p.front.push_requests();
    const auto w = p.back.poll_requests();
    nf::TxPacket pkt;
    const auto r = nf::parse_tx_packet(p.back, w.cons, w.prod, {}, pkt);
    ASSERT_EQ(r.verdict, TxVerdict::packet);
    // The frontend now rewrites every slot: new ids, sizes, a page overrun, a bad extra.
    p.page->write_tx_request(0, txreq(99, 0xFFFF, kMore | kExtra, 0xFFFF, 1));
    p.page->write_tx_extra(1, raw_extra(0, 0xFF));
    p.page->write_tx_request(2, txreq(98, 0xFFFF, kMore, 0xFFFF, 2));
    // What the backend acts on is the copy.
    EXPECT_EQ(pkt.first_id(), 11);
    EXPECT_EQ(pkt.slots[0].gref, 500U);
    EXPECT_EQ(pkt.slots[0].len, 600);
    EXPECT_EQ(pkt.slots[1].id, 12);
    EXPECT_EQ(pkt.slots[1].gref, 501U);
    EXPECT_EQ(pkt.slots[1].offset, 64);
    EXPECT_EQ(pkt.slots[1].len, 400);
    EXPECT_EQ(pkt.offload.gso_size, 1448);
    // Responses echo the copied ids, not what the slots hold now.
    p.back.consume(r.slots);
    ASSERT_TRUE(nf::put_tx_responses(p.back, pkt, nf::rsp::kOkay));
    p.back.push_responses();
    EXPECT_EQ(p.front.copy_response(0).id, 11);
    EXPECT_EQ(p.front.copy_response(1).status, nf::rsp::kNull);
    EXPECT_EQ(p.front.copy_response(2).id, 12);
}

// A slot source over a real ring that records every read and, when `race` is set, makes the
// frontend rewrite the slot with hostile content right after each read. A parser that read a
// slot twice would see the rewrite; one that reads each slot once gives the same answer as
// on an untouched ring.
class RacingSource {
public:
    RacingSource(const nf::TxBackRing& ring, RingPage& page, bool race)
        : ring_(ring), page_(page), race_(race) {}

    nf::TxRequest copy_request(RingIdx idx) const {
        const nf::TxRequest r = ring_.copy_request(idx);
        after_read(idx);
        return r;
    }
    nf::ExtraInfo copy_extra(RingIdx idx) const {
        const nf::ExtraInfo e = ring_.copy_extra(idx);
        after_read(idx);
        return e;
    }
    const std::map<RingIdx, int>& reads() const { return reads_; }

private:
    void after_read(RingIdx idx) const {
        ++reads_[idx];
        if (race_)
            page_.write_tx_request(idx, nf::TxRequest{0xFFFFFFFFU, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF});
    }

    const nf::TxBackRing& ring_;
    RingPage& page_;
    bool race_;
    mutable std::map<RingIdx, int> reads_;
};
static_assert(nf::TxSlotSource<RacingSource>);

void expect_same_packet(const nf::TxPacket& a, const nf::TxPacket& b, std::uint32_t nr_slots) {
    EXPECT_EQ(a.total_len, b.total_len);
    EXPECT_EQ(a.nr_slots, b.nr_slots);
    EXPECT_EQ(a.nr_extras, b.nr_extras);
    EXPECT_EQ(a.ring_slots, b.ring_slots);
    EXPECT_EQ(a.offload.gso_type, b.offload.gso_type);
    EXPECT_EQ(a.offload.gso_size, b.offload.gso_size);
    EXPECT_EQ(a.offload.hash_value, b.offload.hash_value);
    EXPECT_EQ(a.mcast.op, b.mcast.op);
    for (std::uint32_t i = 0; i < nr_slots && i < nf::kTxMaxSlots; ++i) {
        EXPECT_EQ(a.slots[i].id, b.slots[i].id) << i;
        EXPECT_EQ(a.slots[i].gref, b.slots[i].gref) << i;
        EXPECT_EQ(a.slots[i].offset, b.slots[i].offset) << i;
        EXPECT_EQ(a.slots[i].len, b.slots[i].len) << i;
    }
}

TEST(HostileTxFrontend, EverySlotIsReadExactlyOnceEvenWhileTheFrontendRaces) {
    // Every case of the table plus a few good packets.
    std::vector<std::function<void(HostileRing&)>> builds;
    for (const Case& c : cases())
        builds.push_back(c.build);
    builds.push_back([](HostileRing& h) {
        h.req(txreq(0, 3000, kMore | kExtra))
            .ext(gso_extra(1, 1400, true))
            .ext(hash_extra(1, 0x12345678))
            .req(txreq(1, 1000, kMore))
            .req(txreq(2, 1000, 0))
            .publish();
    });
    builds.push_back([](HostileRing& h) { h.chain(18).publish(); });
    builds.push_back([](HostileRing& h) {
        h.req(txreq(0, 0, kExtra))
            .ext(nf::test::mcast_extra(true, {1, 0, 0x5e, 0, 0, 9}))
            .publish();
    });
    for (std::size_t k = 0; k < builds.size(); ++k) {
        SCOPED_TRACE(k);
        HostileRing clean;
        builds[k](clean);
        HostileRing racy;
        std::memcpy(racy.page->data(), clean.page->data(), nf::kPageSize);
        auto clean_ring = nf::TxBackRing::attach_at(clean.page->data(), 0);
        auto racy_ring = nf::TxBackRing::attach_at(racy.page->data(), 0);
        ASSERT_TRUE(clean_ring.has_value() && racy_ring.has_value());
        const auto w = clean_ring->poll_requests();

        RacingSource reference(*clean_ring, *clean.page, false);
        RacingSource racing(*racy_ring, *racy.page, true);
        nf::TxPacket a;
        nf::TxPacket b;
        const auto ra = nf::parse_tx_packet(reference, w.cons, w.prod, {}, a);
        const auto rb = nf::parse_tx_packet(racing, w.cons, w.prod, {}, b);
        EXPECT_EQ(ra.verdict, rb.verdict);
        EXPECT_EQ(ra.error, rb.error);
        EXPECT_EQ(ra.slots, rb.slots);
        if (ra.verdict != TxVerdict::fatal && ra.verdict != TxVerdict::empty)
            expect_same_packet(a, b, a.nr_slots);
        for (const auto& [idx, n] : racing.reads()) {
            EXPECT_EQ(n, 1) << "slot " << idx << " read " << n << " times";
            EXPECT_LT(idx - w.cons, w.overflow ? 0U : w.available) << "read past req_prod";
        }
        // The parser reads exactly the slots it reports (for the non-fatal verdicts).
        if (ra.verdict != TxVerdict::fatal) {
            EXPECT_EQ(racing.reads().size(), ra.slots);
        }
    }
}

// --- random sweep -------------------------------------------------------------------------------

// Ring contents biased towards the interesting values (flags, small sizes, page edges).
nf::TxRequest random_slot(std::mt19937& rng) {
    auto pick = [&](std::initializer_list<std::uint32_t> v) {
        return *(v.begin() + rng() % v.size());
    };
    nf::TxRequest r{};
    r.gref = rng();
    r.offset = static_cast<std::uint16_t>(rng() % 4 == 0 ? rng() : pick({0, 64, 2048, 4000, 4095}));
    r.flags = static_cast<std::uint16_t>(rng() % 8 == 0 ? rng() : rng() % 16);
    r.id = static_cast<std::uint16_t>(rng());
    r.size = static_cast<std::uint16_t>(rng() % 4 == 0 ? rng() : pick({0, 13, 14, 60, 1514, 4096}));
    if (rng() % 5 == 0) { // make it a plausible extra
        nf::ExtraInfo e{};
        e.type = static_cast<std::uint8_t>(rng() % 6);
        e.flags = static_cast<std::uint8_t>(rng() % 3 == 0 ? 1 : 0);
        e.u.gso.size = static_cast<std::uint16_t>(rng() % 3 == 0 ? 0 : 1448);
        e.u.gso.type = static_cast<std::uint8_t>(rng() % 4);
        std::memcpy(&r, &e, sizeof(e));
    }
    return r;
}

TEST(HostileTxFrontend, RandomRingsAlwaysGetAConsistentVerdict) {
    std::mt19937 rng(20260211);
    for (int iter = 0; iter < 3000; ++iter) {
        HostileRing h;
        const RingIdx start = rng() % 3 == 0 ? 0xFFFFFFF0U + rng() % 32 : rng() % 512;
        h.next = start;
        const std::uint32_t n = rng() % 64;
        for (std::uint32_t i = 0; i < n; ++i)
            h.req(random_slot(rng));
        h.publish(rng() % 50 == 0 ? start + 300 : start + n);
        nf::TxLimits limits;
        limits.max_slots = 18 + rng() % 4;
        limits.fatal_slots = limits.max_slots + rng() % 4;
        limits.max_frame_len = rng() % 2 ? 1518 : 0;

        auto back = nf::TxBackRing::attach_at(h.page->data(), start);
        ASSERT_TRUE(back.has_value());
        for (int guard = 0; guard < 300; ++guard) {
            const auto w = back->poll_requests();
            RacingSource src(*back, *h.page, false);
            nf::TxPacket pkt;
            const auto r = nf::parse_tx_packet(src, w.cons, w.prod, limits, pkt);
            for (const auto& [idx, reads] : src.reads()) {
                ASSERT_EQ(reads, 1);
                ASSERT_LT(idx - w.cons, w.available);
            }
            if (r.verdict == TxVerdict::empty || r.verdict == TxVerdict::fatal) {
                ASSERT_EQ(nf::classify(r.error), r.verdict == TxVerdict::fatal
                                                     ? nf::TxErrorClass::fatal
                                                     : nf::TxErrorClass::none);
                if (w.overflow) {
                    ASSERT_EQ(r.error, TxError::ring_overflow);
                }
                break;
            }
            ASSERT_GE(r.slots, 1U);
            ASSERT_LE(r.slots, w.available);
            ASSERT_EQ(pkt.ring_slots, r.slots);
            ASSERT_EQ(r.slots, 1U + pkt.nr_extras + pkt.nr_slots - 1U);
            ASSERT_LE(pkt.nr_slots, limits.fatal_slots);
            ASSERT_EQ(nf::classify(r.error), r.verdict == TxVerdict::drop ? nf::TxErrorClass::drop
                                                                          : nf::TxErrorClass::none);
            if (r.verdict == TxVerdict::packet) {
                ASSERT_LE(pkt.nr_slots, limits.max_slots);
                ASSERT_GE(pkt.slots[0].len, nf::kEthHeaderLen);
                std::uint32_t sum = 0;
                for (unsigned i = 0; i < pkt.nr_slots; ++i) {
                    ASSERT_LE(pkt.slots[i].offset + pkt.slots[i].len, nf::kPageSize);
                    sum += pkt.slots[i].len;
                }
                ASSERT_EQ(sum, pkt.total_len);
            }
            back->consume(r.slots);
            ASSERT_TRUE(nf::put_tx_responses(*back, pkt, nf::rsp::kError));
        }
        EXPECT_EQ(back->unanswered(), 0U);
    }
}

} // namespace

// --- the control ring -----------------------------------------------------------------------

namespace {

namespace ctrl = nf::ctrl;
using ctrl::CtrlError;

struct CtrlCase {
    const char* name;
    ctrl::Request req;
    std::vector<std::uint32_t> copied; // what the grant copy brings (words), if it is asked
    bool copy_fails = false;
    CtrlError error; // expected reason (status INVALID_PARAMETER)
};

// A 4-queue vif with static grants whose frontend configured Toeplitz hashing, a key and an
// 8-entry table; each case then sends one hostile message.
ctrl::Handler configured_vif() {
    ctrl::Handler h(ctrl::HandlerConfig{4, true, 1024});
    auto simple = [&](std::uint16_t type, std::uint32_t d0) {
        EXPECT_EQ(h.begin(ctrl::Request{1, type, {d0, 0, 0}}).rsp.status, ctrl::kStatusSuccess);
    };
    simple(ctrl::kTypeSetHashAlgorithm, nf::hash_alg::kToeplitz);
    simple(ctrl::kTypeSetHashFlags, nf::hash_flag::kAll);
    simple(ctrl::kTypeSetHashMappingSize, 8);
    const ctrl::Plan p = h.begin(ctrl::Request{2, ctrl::kTypeSetHashMapping, {9, 8, 0}});
    std::uint32_t table[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    EXPECT_EQ(h.finish_hash(p, true, std::as_bytes(std::span(table))).rsp.status,
              ctrl::kStatusSuccess);
    return h;
}

const std::vector<CtrlCase>& ctrl_cases() {
    using R = ctrl::Request;
    static const std::vector<CtrlCase> table = {
        {"algorithm_2",
         R{1, ctrl::kTypeSetHashAlgorithm, {2, 0, 0}},
         {},
         false,
         CtrlError::bad_hash_algorithm},
        {"algorithm_max",
         R{1, ctrl::kTypeSetHashAlgorithm, {0xFFFFFFFF, 0, 0}},
         {},
         false,
         CtrlError::bad_hash_algorithm},
        {"flags_bit_4",
         R{1, ctrl::kTypeSetHashFlags, {0x10, 0, 0}},
         {},
         false,
         CtrlError::bad_hash_flags},
        {"flags_all_bits",
         R{1, ctrl::kTypeSetHashFlags, {0xFFFFFFFF, 0, 0}},
         {},
         false,
         CtrlError::bad_hash_flags},
        {"key_41_octets",
         R{1, ctrl::kTypeSetHashKey, {5, 41, 0}},
         {},
         false,
         CtrlError::hash_key_too_long},
        {"key_page_sized",
         R{1, ctrl::kTypeSetHashKey, {5, 4096, 0}},
         {},
         false,
         CtrlError::hash_key_too_long},
        {"key_size_wraps_16_bits",
         R{1, ctrl::kTypeSetHashKey, {5, 0x10008, 0}},
         {},
         false,
         CtrlError::hash_key_too_long},
        {"key_never_granted",
         R{1, ctrl::kTypeSetHashKey, {0x7FFF0, 40, 0}},
         {},
         true,
         CtrlError::hash_key_unreadable},
        {"mapping_size_129",
         R{1, ctrl::kTypeSetHashMappingSize, {129, 0, 0}},
         {},
         false,
         CtrlError::mapping_size_too_big},
        {"mapping_size_max",
         R{1, ctrl::kTypeSetHashMappingSize, {0xFFFFFFFF, 0, 0}},
         {},
         false,
         CtrlError::mapping_size_too_big},
        {"mapping_one_past_the_end",
         R{1, ctrl::kTypeSetHashMapping, {9, 1, 8}},
         {},
         false,
         CtrlError::mapping_out_of_range},
        {"mapping_spills_over_the_end",
         R{1, ctrl::kTypeSetHashMapping, {9, 2, 7}},
         {},
         false,
         CtrlError::mapping_out_of_range},
        {"mapping_longer_than_the_table",
         R{1, ctrl::kTypeSetHashMapping, {9, 9, 0}},
         {},
         false,
         CtrlError::mapping_out_of_range},
        {"mapping_xsa270_offset_wraps",
         R{1, ctrl::kTypeSetHashMapping, {9, 2, 0xFFFFFFFF}},
         {},
         false,
         CtrlError::mapping_out_of_range},
        {"mapping_xsa270_length_wraps",
         R{1, ctrl::kTypeSetHashMapping, {9, 0xFFFFFFFF, 1}},
         {},
         false,
         CtrlError::mapping_out_of_range},
        {"mapping_xsa270_sum_is_zero",
         R{1, ctrl::kTypeSetHashMapping, {9, 0x80000000, 0x80000000}},
         {},
         false,
         CtrlError::mapping_out_of_range},
        {"mapping_page_of_entries",
         R{1, ctrl::kTypeSetHashMapping, {9, 1024, 0}},
         {},
         false,
         CtrlError::mapping_out_of_range},
        {"mapping_queue_4_of_4",
         R{1, ctrl::kTypeSetHashMapping, {9, 2, 6}},
         {0, 4},
         false,
         CtrlError::mapping_bad_queue},
        {"mapping_queue_max",
         R{1, ctrl::kTypeSetHashMapping, {9, 1, 0}},
         {0xFFFFFFFF},
         false,
         CtrlError::mapping_bad_queue},
        {"mapping_never_granted",
         R{1, ctrl::kTypeSetHashMapping, {0x7FFF0, 8, 0}},
         {},
         true,
         CtrlError::mapping_unreadable},
        {"gref_size_bad_queue",
         R{1, ctrl::kTypeGetGrefMappingSize, {4, 0, 0}},
         {},
         false,
         CtrlError::bad_queue},
        {"gref_add_bad_queue",
         R{1, ctrl::kTypeAddGrefMapping, {0xFFFFFFFF, 9, 1}},
         {},
         false,
         CtrlError::bad_queue},
        {"gref_add_no_entries",
         R{1, ctrl::kTypeAddGrefMapping, {0, 9, 0}},
         {},
         false,
         CtrlError::bad_gref_count},
        {"gref_add_513_entries",
         R{1, ctrl::kTypeAddGrefMapping, {0, 9, 513}},
         {},
         false,
         CtrlError::bad_gref_count},
        {"gref_del_count_max",
         R{1, ctrl::kTypeDelGrefMapping, {0, 9, 0xFFFFFFFF}},
         {},
         false,
         CtrlError::bad_gref_count},
    };
    return table;
}

} // namespace

TEST(HostileCtrlFrontend, EveryBadValueIsRefusedCountedAndChangesNothing) {
    for (const CtrlCase& c : ctrl_cases()) {
        SCOPED_TRACE(c.name);
        ctrl::Handler h = configured_vif();
        const nf::HashConfig before = h.hash();
        const std::uint64_t version = h.hash_version();
        const ctrl::Plan p = h.begin(c.req);
        ctrl::Response rsp = p.rsp;
        if (p.step == ctrl::Step::copy_key || p.step == ctrl::Step::copy_mapping) {
            ASSERT_LE(p.copy.offset + p.copy.len, nf::kPageSize);
            std::vector<std::uint32_t> words = c.copied;
            words.resize((p.copy.len + 3) / 4);
            const ctrl::Answer a = h.finish_hash(
                p, !c.copy_fails,
                std::span(reinterpret_cast<const std::byte*>(words.data()), p.copy.len));
            rsp = a.rsp;
            EXPECT_EQ(a.error, c.error);
        } else {
            ASSERT_EQ(p.step, ctrl::Step::answer) << "a hostile message got as far as a copy";
            EXPECT_EQ(p.error, c.error);
        }
        EXPECT_EQ(rsp.id, c.req.id);
        EXPECT_EQ(rsp.type, c.req.type);
        EXPECT_EQ(rsp.status, ctrl::kStatusInvalidParameter);
        EXPECT_EQ(rsp.data, 0u);
        EXPECT_EQ(h.counters().errors[static_cast<std::size_t>(c.error) - 1], 1u)
            << ctrl::to_string(c.error);
        EXPECT_EQ(h.hash(), before);
        EXPECT_EQ(h.hash_version(), version);
        // The vif keeps answering.
        const ctrl::Plan next = h.begin(ctrl::Request{2, ctrl::kTypeGetHashMappingSize, {}});
        EXPECT_EQ(next.rsp.status, ctrl::kStatusSuccess);
    }
}

TEST(HostileCtrlFrontend, RandomRequestsKeepTheStateWithinItsBounds) {
    std::mt19937 mt(20261207);
    auto rng = [&]() -> std::uint32_t { return static_cast<std::uint32_t>(mt()); };
    auto pick = [&](std::initializer_list<std::uint32_t> v) {
        return *(v.begin() + rng() % v.size());
    };
    for (int vif = 0; vif < 40; ++vif) {
        const std::uint32_t queues = 1 + rng() % 8;
        ctrl::Handler h(ctrl::HandlerConfig{queues, rng() % 2 == 0, 1024});
        for (int i = 0; i < 400; ++i) {
            ctrl::Request r{static_cast<std::uint16_t>(rng()),
                            static_cast<std::uint16_t>(rng() % 12),
                            {pick({0, 1, 2, 7, 8, 40, 128, 129, 0xFFFFFFFF, rng()}),
                             pick({0, 1, 4, 8, 40, 41, 127, 128, 0x80000000, rng()}),
                             pick({0, 1, 7, 120, 127, 128, 0xFFFFFFFF, rng()})}};
            const ctrl::Plan p = h.begin(r);
            ctrl::Response rsp = p.rsp;
            if (p.step == ctrl::Step::copy_key || p.step == ctrl::Step::copy_mapping) {
                ASSERT_GT(p.copy.len, 0u);
                ASSERT_LE(p.copy.len, p.step == ctrl::Step::copy_key ? nf::kMaxHashKeySize
                                                                     : 4 * nf::kMaxHashMappingSize);
                std::array<std::uint32_t, nf::kMaxHashMappingSize> bytes{};
                for (auto& w : bytes)
                    w = rng() % 3 == 0 ? rng() : rng() % (queues + 1);
                rsp = h.finish_hash(p, rng() % 10 != 0,
                                    std::as_bytes(std::span(bytes)).first(p.copy.len))
                          .rsp;
            } else if (p.step == ctrl::Step::add_grefs || p.step == ctrl::Step::del_grefs) {
                ASSERT_GE(p.entries, 1u);
                ASSERT_LE(p.entries, ctrl::kMaxGrefsPerMessage);
                ASSERT_EQ(p.copy.len, p.entries * sizeof(ctrl::Gref));
                rsp =
                    h.finish_grefs(p, rng() % 2 ? CtrlError::none : CtrlError::gref_refused, rng())
                        .rsp;
            }
            ASSERT_EQ(rsp.id, r.id);
            ASSERT_LE(rsp.status, ctrl::kStatusInvalidParameter);
            const nf::HashConfig& s = h.hash();
            ASSERT_TRUE(s.algorithm == nf::hash_alg::kNone ||
                        s.algorithm == nf::hash_alg::kToeplitz);
            ASSERT_EQ(s.flags & ~nf::hash_flag::kAll, 0u);
            ASSERT_LE(s.mapping_size, nf::kMaxHashMappingSize);
            for (std::uint32_t k = 0; k < nf::kMaxHashMappingSize; ++k)
                ASSERT_TRUE(k < s.mapping_size ? s.mapping[k] < queues : s.mapping[k] == 0) << k;
        }
        const ctrl::CtrlCounters& c = h.counters();
        std::uint64_t by_reason = 0;
        for (std::uint64_t e : c.errors)
            by_reason += e;
        EXPECT_EQ(by_reason, c.invalid);
        EXPECT_EQ(c.requests, 400u);
    }
}
