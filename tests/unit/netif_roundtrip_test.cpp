// Round trips through a FrontRing/BackRing pair, with the frontend behaving like Linux
// netfront: TX packets (multi-slot, GSO, hash, multicast control) parsed and answered by the
// backend and garbage-collected by the frontend; RX frames planned, laid out and answered by
// the backend and reassembled by the frontend (extras, more_data chains, error slots).
#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/rx_builder.hpp"
#include "dpnb/netif/tx_parser.hpp"
#include "netif_test_ring.hpp"

namespace nf = dpnb::netif;
using nf::test::gso_extra;
using nf::test::txreq;

namespace {

struct TxSpec {
    std::vector<std::uint16_t> lens; // each data slot's own length
    bool gso = false;
    bool hash = false;
    bool mcast = false; // a control request instead (lens ignored)
};

TEST(NetifRoundTrip, TxPacketsAreParsedAndEverySlotIsAnsweredOnce) {
    nf::test::TxPair p(0xFFFFFF80U);
    const std::vector<TxSpec> specs = {
        {{60}},
        {{1514}, false, true},
        {{54, 4096, 4096, 4096, 2000}, true},
        {{}, false, false, true},
        {{200, 0, 300}},
        {std::vector<std::uint16_t>(18, 100)},
        {{1000, 1000}, true, true},
    };
    std::uint16_t next_id = 0;
    std::set<std::uint16_t> outstanding;
    std::map<std::uint16_t, int> answered;
    std::size_t spec_i = 0;
    std::uint32_t packets = 0;
    std::uint32_t controls = 0;

    for (int round = 0; round < 200; ++round) {
        // Frontend: post packets while there is room for the largest one (20 slots).
        while (p.front.free_requests() >= 21) {
            const TxSpec& s = specs[spec_i++ % specs.size()];
            const std::uint16_t first_id = next_id++;
            outstanding.insert(first_id);
            if (s.mcast) {
                ASSERT_TRUE(p.front.put_request(txreq(first_id, 0, nf::txf::kExtraInfo)));
                ASSERT_TRUE(p.front.put_extra(nf::test::mcast_extra(true, {1, 0, 0x5e, 0, 0, 1})));
                continue;
            }
            std::uint32_t total = 0;
            for (auto l : s.lens)
                total += l;
            std::uint16_t flags = nf::txf::kCsumBlank;
            if (s.lens.size() > 1) flags |= nf::txf::kMoreData;
            if (s.gso || s.hash) flags |= nf::txf::kExtraInfo;
            ASSERT_TRUE(
                p.front.put_request(txreq(first_id, static_cast<std::uint16_t>(total), flags)));
            if (s.gso) {
                ASSERT_TRUE(p.front.put_extra(gso_extra(nf::gso::kTcpV4, 1448, s.hash)));
            }
            if (s.hash) {
                ASSERT_TRUE(p.front.put_extra(nf::test::hash_extra(nf::hash_type::kIpv4Tcp, 7)));
            }
            for (std::size_t i = 1; i < s.lens.size(); ++i) {
                const std::uint16_t id = next_id++;
                outstanding.insert(id);
                ASSERT_TRUE(p.front.put_request(
                    txreq(id, s.lens[i], i + 1 < s.lens.size() ? nf::txf::kMoreData : 0)));
            }
        }
        p.front.push_requests();

        // Backend: parse everything, answer (data slots OKAY, control ERROR to vary).
        for (;;) {
            const auto w = p.back.poll_requests();
            ASSERT_FALSE(w.overflow);
            nf::TxPacket pkt;
            const auto r = nf::parse_tx_packet(p.back, w.cons, w.prod, nf::TxLimits{}, pkt);
            if (r.verdict == nf::TxVerdict::empty) break;
            ASSERT_TRUE(r.verdict == nf::TxVerdict::packet || r.verdict == nf::TxVerdict::control)
                << nf::to_string(r.error);
            p.back.consume(r.slots);
            if (r.verdict == nf::TxVerdict::control) {
                ++controls;
                ASSERT_TRUE(nf::put_tx_responses(p.back, pkt, nf::rsp::kError));
                continue;
            }
            ++packets;
            // Answer slots in reverse, as buffers might be released.
            for (unsigned i = pkt.nr_slots; i-- > 0;)
                ASSERT_TRUE(nf::put_tx_slot_response(p.back, pkt, i, nf::rsp::kOkay));
        }
        p.back.push_responses();

        // Frontend: xennet_tx_buf_gc.
        const auto rw = p.front.poll_responses();
        ASSERT_FALSE(rw.overflow);
        for (std::uint32_t i = 0; i < rw.available; ++i) {
            const nf::TxResponse rsp = p.front.copy_response(rw.cons + i);
            if (rsp.status == nf::rsp::kNull) continue;
            ASSERT_TRUE(outstanding.count(rsp.id)) << "unknown or repeated id " << rsp.id;
            outstanding.erase(rsp.id);
            ++answered[rsp.id];
        }
        p.front.consume_responses(rw.available);
        ASSERT_TRUE(outstanding.empty());
        ASSERT_EQ(p.front.free_requests(), 256U);
    }
    EXPECT_GT(packets, 1000U);
    EXPECT_GT(controls, 100U);
    for (const auto& [id, n] : answered)
        EXPECT_EQ(n, 1) << id;
}

// What netfront's xennet_get_extras + xennet_get_responses make of one RX packet.
struct RxReceived {
    bool error = false;
    std::uint32_t len = 0;
    std::uint32_t slots = 0;
    std::uint16_t first_flags = 0;
    std::uint8_t gso_type = 0;
    std::uint16_t gso_size = 0;
    std::vector<std::uint16_t> ids;
};

RxReceived receive_one(nf::RxFrontRing& front, std::uint32_t& cons, std::uint32_t prod) {
    RxReceived out;
    nf::RxResponse rsp = front.copy_response(cons);
    out.first_flags = rsp.flags;
    out.ids.push_back(rsp.id);
    ++cons;
    ++out.slots;
    if (rsp.flags & nf::rxf::kExtraInfo) {
        for (;;) {
            EXPECT_NE(cons, prod) << "extra missing";
            const nf::ExtraInfo e = front.copy_extra(cons++);
            ++out.slots;
            if (e.type == nf::extra::kGso) {
                out.gso_type = e.u.gso.type;
                out.gso_size = e.u.gso.size;
            }
            if (!(e.flags & nf::extra::kFlagMore)) break;
        }
    }
    for (;;) {
        if (rsp.status < 0 || rsp.offset + rsp.status > static_cast<int>(nf::kPageSize))
            out.error = true;
        else
            out.len += static_cast<std::uint32_t>(rsp.status);
        if (!(rsp.flags & nf::rxf::kMoreData)) break;
        EXPECT_NE(cons, prod) << "more_data past rsp_prod";
        rsp = front.copy_response(cons++);
        out.ids.push_back(rsp.id);
        ++out.slots;
    }
    return out;
}

TEST(NetifRoundTrip, RxFramesAreReassembledByTheFrontend) {
    nf::test::RxPair p(0xFFFFFF00U);
    const nf::RxFeatures features{true, true};
    const nf::RxBufferGeometry geometry{0, 4096};
    std::uint16_t next_id = 0;
    auto post_all = [&] {
        while (p.front.free_requests() > 0)
            ASSERT_TRUE(p.front.put_request(
                nf::RxRequest{static_cast<std::uint16_t>(next_id++ % 256), 0, 7}));
        p.front.push_requests();
    };
    post_all();

    struct Sent {
        nf::RxFrame frame;
        bool error;
    };
    const std::vector<std::uint32_t> sizes = {60, 1514, 4096, 4097, 9000, 65535, 20000, 61};
    std::vector<Sent> sent;
    std::size_t received = 0;
    for (int round = 0; round < 100; ++round) {
        // Backend: deliver frames while enough requests are posted.
        for (std::size_t k = 0;; ++k) {
            nf::RxFrame f;
            f.len = sizes[(round + k) % sizes.size()];
            if (f.len > 9000) {
                f.gso_type = (k % 2) ? nf::gso::kTcpV4 : nf::gso::kTcpV6;
                f.gso_size = 1448;
                f.csum_blank = true;
            }
            const nf::RxPlan plan = nf::plan_rx_frame(f, geometry, features);
            ASSERT_EQ(plan.error, nf::RxBuildError::none);
            const auto w = p.back.poll_requests();
            ASSERT_FALSE(w.overflow);
            if (w.available < plan.requests) break;
            std::array<std::uint16_t, 32> ids{};
            for (std::uint32_t i = 0; i < plan.requests; ++i)
                ids[i] = p.back.copy_request(w.cons + i).id;
            p.back.consume(plan.requests);
            std::array<nf::RxChunk, 32> chunks{};
            ASSERT_EQ(nf::rx_layout(f.len, geometry, chunks), plan.data_slots);
            std::array<nf::RxEntry, 32> entries{};
            const bool fail = (round + k) % 7 == 3; // a failed copy now and then
            nf::RxBuildResult r;
            if (fail)
                r = nf::build_rx_error_responses({ids.data(), plan.requests}, nf::rsp::kError,
                                                 entries);
            else
                r = nf::build_rx_responses(f, {ids.data(), plan.requests},
                                           {chunks.data(), plan.data_slots}, features, entries);
            ASSERT_EQ(r.error, nf::RxBuildError::none);
            ASSERT_EQ(r.entries, plan.requests);
            ASSERT_TRUE(nf::put_rx_entries(p.back, {entries.data(), r.entries}));
            if (fail) {
                for (std::uint32_t i = 0; i < plan.requests; ++i)
                    sent.push_back({f, true}); // each slot comes back as its own failed packet
            } else {
                sent.push_back({f, false});
            }
        }
        p.back.push_responses();

        // Frontend: reassemble, then repost every buffer.
        const auto rw = p.front.poll_responses();
        ASSERT_FALSE(rw.overflow);
        std::uint32_t cons = rw.cons;
        while (cons != rw.prod) {
            ASSERT_LT(received, sent.size());
            const Sent& s = sent[received++];
            const RxReceived got = receive_one(p.front, cons, rw.prod);
            EXPECT_EQ(got.error, s.error);
            if (s.error) {
                EXPECT_EQ(got.slots, 1U);
                continue;
            }
            EXPECT_EQ(got.len, s.frame.len);
            EXPECT_EQ(got.gso_type, s.frame.gso_type);
            EXPECT_EQ(got.gso_size, s.frame.gso_size);
            EXPECT_EQ(got.first_flags & nf::rxf::kCsumBlank,
                      s.frame.csum_blank ? nf::rxf::kCsumBlank : 0);
        }
        p.front.consume_responses(rw.available);
        post_all();
    }
    EXPECT_EQ(received, sent.size());
    EXPECT_GT(received, 500U);
}

} // namespace
