// Ring views (dpnb/netif/ring.hpp): attach checks, index arithmetic and wrap-around at 2^32,
// the notification hold-off protocol (req_event / rsp_event, final checks), producer
// overflow detection, copy-once semantics, and a frontend and a backend exchanging many
// requests and responses from two threads with event-channel-like wake-ups.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/ring.hpp"
#include "netif_test_ring.hpp"

namespace nf = dpnb::netif;
using nf::test::RxPair;
using nf::test::TxPair;
using nf::test::txreq;

namespace {

TEST(Ring, GeometryIsOnePageOf256Entries) {
    EXPECT_EQ(nf::TxBackRing::kSize, 256U);
    EXPECT_EQ(nf::RxBackRing::kSize, 256U);
    EXPECT_EQ(nf::TxFrontRing::kSize, 256U);
    EXPECT_EQ(sizeof(nf::SharedRingHeader) + 256 * nf::kTxEntrySize, 64U + 3072U);
    EXPECT_LE(sizeof(nf::SharedRingHeader) + 256 * nf::kTxEntrySize, nf::kPageSize);
    EXPECT_LE(sizeof(nf::SharedRingHeader) + 256 * nf::kRxEntrySize, nf::kPageSize);
}

TEST(Ring, AttachRejectsNullAndMisalignedPages) {
    auto page = nf::test::make_page();
    EXPECT_FALSE(nf::TxBackRing::attach(nullptr).has_value());
    EXPECT_FALSE(nf::TxBackRing::attach_at(nullptr, 0).has_value());
    EXPECT_FALSE(nf::TxFrontRing::init(nullptr).has_value());
    auto* misaligned = static_cast<std::byte*>(page->data()) + 4;
    auto r = nf::TxBackRing::attach(misaligned);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, dpnb::Errc::invalid_argument);
    EXPECT_FALSE(nf::RxFrontRing::attach_at(misaligned, 0).has_value());
    EXPECT_TRUE(nf::TxBackRing::attach(page->data()).has_value());
    EXPECT_FALSE(nf::TxBackRing().attached());
}

TEST(Ring, FrontInitWritesTheSharedRingInitState) {
    auto page = nf::test::make_page();
    std::memset(page->data(), 0xAB, nf::kPageSize);
    auto f = nf::TxFrontRing::init(page->data());
    ASSERT_TRUE(f.has_value());
    const auto& h = page->header();
    EXPECT_EQ(h.req_prod, 0U);
    EXPECT_EQ(h.rsp_prod, 0U);
    EXPECT_EQ(h.req_event, 1U);
    EXPECT_EQ(h.rsp_event, 1U);
    for (auto b : h.pad)
        EXPECT_EQ(b, 0);
    EXPECT_EQ(f->free_requests(), 256U);
}

TEST(Ring, BackAttachStartsAtSharedRspProd) {
    auto page = nf::test::make_page();
    auto& h = page->header();
    h.rsp_prod = 1000;
    h.req_prod = 1010;
    auto b = nf::TxBackRing::attach(page->data());
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->req_cons(), 1000U);
    EXPECT_EQ(b->rsp_prod_pvt(), 1000U);
    const auto w = b->poll_requests();
    EXPECT_FALSE(w.overflow);
    EXPECT_EQ(w.available, 10U);
}

TEST(Ring, BackAttachRejectsImpossibleIndices) {
    auto page = nf::test::make_page();
    auto& h = page->header();
    h.rsp_prod = 5;
    h.req_prod = 5 + 257;
    auto r = nf::TxBackRing::attach(page->data());
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, dpnb::Errc::protocol);
    h.req_prod = 4; // behind rsp_prod
    EXPECT_FALSE(nf::TxBackRing::attach(page->data()).has_value());
    h.req_prod = 5 + 256; // a full ring is fine
    EXPECT_TRUE(nf::TxBackRing::attach(page->data()).has_value());
}

TEST(Ring, AttachAtUsesGivenIndexWithoutTouchingThePage) {
    auto page = nf::test::make_page();
    auto& h = page->header();
    h.req_prod = 77;
    h.rsp_prod = 3;
    auto b = nf::RxBackRing::attach_at(page->data(), 70);
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->req_cons(), 70U);
    EXPECT_EQ(b->rsp_prod_pvt(), 70U);
    EXPECT_EQ(b->poll_requests().available, 7U);
    EXPECT_EQ(h.rsp_prod, 3U);
}

TEST(Ring, RequestsFlowFrontToBack) {
    TxPair p;
    EXPECT_EQ(p.back.poll_requests().available, 0U);
    for (std::uint16_t i = 0; i < 3; ++i)
        ASSERT_TRUE(p.front.put_request(txreq(i, 100 + i, 0, 8 * i)));
    // Not yet published.
    EXPECT_EQ(p.back.poll_requests().available, 0U);
    EXPECT_TRUE(p.front.push_requests()); // req_event was 1: notify
    const auto w = p.back.poll_requests();
    EXPECT_EQ(w.cons, 0U);
    EXPECT_EQ(w.prod, 3U);
    EXPECT_EQ(w.available, 3U);
    for (std::uint16_t i = 0; i < 3; ++i) {
        const nf::TxRequest r = p.back.copy_request(w.cons + i);
        EXPECT_EQ(r.id, i);
        EXPECT_EQ(r.size, 100 + i);
        EXPECT_EQ(r.offset, 8 * i);
        EXPECT_EQ(r.gref, 1000U + i);
    }
    p.back.consume(3);
    EXPECT_EQ(p.back.req_cons(), 3U);
    EXPECT_EQ(p.back.unanswered(), 3U);
    EXPECT_EQ(p.back.poll_requests().available, 0U);
}

TEST(Ring, ResponsesFlowBackToFront) {
    TxPair p;
    for (std::uint16_t i = 0; i < 4; ++i)
        ASSERT_TRUE(p.front.put_request(txreq(i, 60)));
    p.front.push_requests();
    p.back.consume(p.back.poll_requests().available);
    for (std::uint16_t i = 0; i < 4; ++i)
        ASSERT_TRUE(p.back.put_response(
            nf::TxResponse{static_cast<std::uint16_t>(10 + i), nf::rsp::kOkay}));
    EXPECT_EQ(p.front.poll_responses().available, 0U); // not pushed yet
    EXPECT_TRUE(p.back.push_responses());              // rsp_event was 1
    const auto w = p.front.poll_responses();
    ASSERT_FALSE(w.overflow);
    ASSERT_EQ(w.available, 4U);
    for (std::uint16_t i = 0; i < 4; ++i)
        EXPECT_EQ(p.front.copy_response(w.cons + i).id, 10 + i);
    p.front.consume_responses(4);
    EXPECT_EQ(p.front.free_requests(), 256U);
}

TEST(Ring, PutResponseRefusesWhenNothingIsUnanswered) {
    TxPair p;
    EXPECT_FALSE(p.back.put_response(nf::TxResponse{1, nf::rsp::kOkay}));
    ASSERT_TRUE(p.front.put_request(txreq(1, 60)));
    p.front.push_requests();
    p.back.consume(1);
    EXPECT_TRUE(p.back.put_response(nf::TxResponse{1, nf::rsp::kOkay}));
    EXPECT_FALSE(p.back.put_response(nf::TxResponse{1, nf::rsp::kOkay}));
    EXPECT_EQ(p.back.rsp_prod_pvt(), 1U);
}

// Responses written out of order at their own requests' indices go out in ring order, and
// only as far as complete_responses() declared them done (Linux netfront reads the slot of
// each request it posted).
TEST(RingAnswerAt, ResponsesLandInTheirRequestsSlotsAndPublishInRingOrder) {
    RxPair p(0xFFFFFFFDU); // the indices cross the 2^32 wrap
    for (std::uint16_t i = 0; i < 4; ++i)
        ASSERT_TRUE(p.front.put_request(nf::RxRequest{static_cast<std::uint16_t>(20 + i), 0, i}));
    p.front.push_requests();
    const auto w = p.back.poll_requests();
    ASSERT_EQ(w.available, 4U);
    p.back.consume(4);
    for (std::uint32_t k : {2U, 0U, 3U})
        ASSERT_TRUE(p.back.put_response_at(
            w.cons + k, nf::RxResponse{static_cast<std::uint16_t>(20 + k), 0, 0, 60}));
    EXPECT_EQ(p.back.rsp_prod_pvt(), w.cons); // written, not answered yet
    ASSERT_TRUE(p.back.complete_responses(1));
    EXPECT_TRUE(p.back.push_responses());
    auto rw = p.front.poll_responses();
    ASSERT_EQ(rw.available, 1U);
    EXPECT_EQ(p.front.copy_response(rw.cons).id, 20);
    p.front.consume_responses(1);

    // The missing one, a patched status on a written one, then the rest at once.
    ASSERT_TRUE(p.back.put_response_at(w.cons + 1, nf::RxResponse{21, 0, nf::rxf::kMoreData, 100}));
    ASSERT_TRUE(p.back.put_response_at(w.cons + 3, nf::RxResponse{23, 0, 0, nf::rsp::kError}));
    ASSERT_TRUE(p.back.complete_responses(3));
    p.back.push_responses();
    rw = p.front.poll_responses();
    ASSERT_EQ(rw.available, 3U);
    EXPECT_EQ(p.front.copy_response(rw.cons).id, 21);
    EXPECT_EQ(p.front.copy_response(rw.cons).status, 100);
    EXPECT_EQ(p.front.copy_response(rw.cons + 1).id, 22);
    EXPECT_EQ(p.front.copy_response(rw.cons + 2).id, 23);
    EXPECT_EQ(p.front.copy_response(rw.cons + 2).status, nf::rsp::kError);
}

TEST(RingAnswerAt, OnlyConsumedUnansweredIndicesAreWritten) {
    RxPair p;
    for (std::uint16_t i = 0; i < 3; ++i)
        ASSERT_TRUE(p.front.put_request(nf::RxRequest{i, 0, i}));
    p.front.push_requests();
    // Nothing consumed: no slot may be written, nothing completed.
    EXPECT_FALSE(p.back.put_response_at(0, nf::RxResponse{0, 0, 0, 1}));
    EXPECT_FALSE(p.back.complete_responses(1));
    p.back.consume(2);
    EXPECT_TRUE(p.back.put_response_at(0, nf::RxResponse{0, 0, 0, 1}));
    EXPECT_TRUE(p.back.put_extra_at(1, nf::test::gso_extra(nf::gso::kTcpV4, 1448)));
    EXPECT_FALSE(p.back.put_response_at(2, nf::RxResponse{2, 0, 0, 1})); // not consumed
    EXPECT_FALSE(p.back.complete_responses(3));
    ASSERT_TRUE(p.back.complete_responses(2));
    // Answered: an index behind rsp_prod_pvt is refused, as is one a ring ahead.
    EXPECT_FALSE(p.back.put_response_at(0, nf::RxResponse{0, 0, 0, 1}));
    EXPECT_FALSE(p.back.put_extra_at(1, nf::test::gso_extra(nf::gso::kTcpV4, 1448)));
    EXPECT_FALSE(p.back.put_response_at(0xFFFFFFFFU, nf::RxResponse{0, 0, 0, 1}));
    EXPECT_EQ(p.back.rsp_prod_pvt(), 2U);
    EXPECT_EQ(p.back.unanswered(), 0U);
}

TEST(Ring, PutRequestRefusesWhenFull) {
    RxPair p;
    for (std::uint32_t i = 0; i < 256; ++i)
        ASSERT_TRUE(p.front.put_request(nf::RxRequest{static_cast<std::uint16_t>(i), 0, i}));
    EXPECT_EQ(p.front.free_requests(), 0U);
    EXPECT_FALSE(p.front.put_request(nf::RxRequest{999, 0, 1}));
    p.front.push_requests();
    const auto w = p.back.poll_requests();
    EXPECT_FALSE(w.overflow);
    EXPECT_EQ(w.available, 256U);
}

// --- notification hold-off ------------------------------------------------------------------

TEST(RingNotify, FrontendNotifiesOnlyWhenBackendAskedForIt) {
    TxPair p;
    ASSERT_TRUE(p.front.put_request(txreq(0, 60)));
    EXPECT_TRUE(p.front.push_requests()); // req_event = 1 is in (0, 1]
    ASSERT_TRUE(p.front.put_request(txreq(1, 60)));
    EXPECT_FALSE(p.front.push_requests()); // req_event = 1 is not in (1, 2]
    // The backend drains and goes idle: it asks to be told about request 3 (req_cons + 1).
    p.back.consume(p.back.poll_requests().available);
    EXPECT_FALSE(p.back.final_check_for_requests());
    EXPECT_EQ(p.page->header().req_event, 3U);
    ASSERT_TRUE(p.front.put_request(txreq(2, 60)));
    ASSERT_TRUE(p.front.put_request(txreq(3, 60)));
    EXPECT_TRUE(p.front.push_requests()); // 3 is in (2, 4]
    ASSERT_TRUE(p.front.put_request(txreq(4, 60)));
    EXPECT_FALSE(p.front.push_requests());
    // An empty push never notifies.
    EXPECT_FALSE(p.front.push_requests());
}

TEST(RingNotify, FinalCheckSeesWorkWithoutArmingTheEvent) {
    TxPair p;
    p.page->header().req_event = 12345;
    ASSERT_TRUE(p.front.put_request(txreq(0, 60)));
    p.front.push_requests();
    EXPECT_TRUE(p.back.final_check_for_requests());
    EXPECT_EQ(p.page->header().req_event, 12345U); // untouched: there was work
}

TEST(RingNotify, FinalCheckForSeveralRequestsArmsAtProducerPlusOne) {
    RxPair p;
    ASSERT_TRUE(p.front.put_request(nf::RxRequest{0, 0, 1}));
    p.front.push_requests();
    // Linux RX waits for a packet's worth of requests: 3 here, 1 posted.
    EXPECT_FALSE(p.back.final_check_for_requests(3));
    EXPECT_EQ(p.page->header().req_event, 2U);
    ASSERT_TRUE(p.front.put_request(nf::RxRequest{1, 0, 2}));
    EXPECT_TRUE(p.front.push_requests()); // the backend hears about each new request
    EXPECT_FALSE(p.back.final_check_for_requests(3));
    ASSERT_TRUE(p.front.put_request(nf::RxRequest{2, 0, 3}));
    EXPECT_TRUE(p.front.push_requests());
    EXPECT_TRUE(p.back.final_check_for_requests(3));
}

TEST(RingNotify, BackendNotifiesOnlyWhenFrontendAskedForIt) {
    TxPair p;
    for (std::uint16_t i = 0; i < 5; ++i)
        ASSERT_TRUE(p.front.put_request(txreq(i, 60)));
    p.front.push_requests();
    p.back.consume(5);
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{0, 0}));
    EXPECT_TRUE(p.back.push_responses()); // rsp_event = 1 in (0, 1]
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{1, 0}));
    EXPECT_FALSE(p.back.push_responses());
    // The frontend drains and asks for the next one.
    const auto w = p.front.poll_responses();
    EXPECT_EQ(w.available, 2U);
    p.front.consume_responses(w.available);
    EXPECT_FALSE(p.front.final_check_for_responses());
    EXPECT_EQ(p.page->header().rsp_event, 3U);
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{2, 0}));
    EXPECT_TRUE(p.back.push_responses());
    // Netfront-style batching: rsp_event set further ahead holds notifications off.
    p.page->header().rsp_event = 5;
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{3, 0}));
    EXPECT_FALSE(p.back.push_responses()); // 5 not in (3, 4]
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{4, 0}));
    EXPECT_TRUE(p.back.push_responses()); // 5 in (4, 5]
}

TEST(RingNotify, PushUsesOwnRecordNotTheSharedProducer) {
    TxPair p;
    for (std::uint16_t i = 0; i < 3; ++i)
        ASSERT_TRUE(p.front.put_request(txreq(i, 60)));
    p.front.push_requests();
    p.back.consume(3);
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{0, 0}));
    p.back.push_responses();
    // A hostile frontend scribbles over rsp_prod to suppress or force notifications.
    p.page->header().rsp_prod = 0x7fffffff;
    p.page->header().rsp_event = 3;
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{1, 0}));
    ASSERT_TRUE(p.back.put_response(nf::TxResponse{2, 0}));
    EXPECT_TRUE(p.back.push_responses()); // 3 in (1, 3], judged from our own old index 1
    EXPECT_EQ(p.page->header().rsp_prod, 3U);
}

// --- wrap-around --------------------------------------------------------------------------------

TEST(RingWrap, IndicesWrapAt2To32) {
    const nf::RingIdx start = 0xFFFFFFF0U;
    TxPair p(start);
    EXPECT_EQ(p.back.req_cons(), start);
    std::uint16_t next_id = 0;
    std::uint16_t expect_id = 0;
    // 10 rounds of 30 requests: crosses 2^32 and the ring's own wrap several times.
    for (int round = 0; round < 10; ++round) {
        for (int i = 0; i < 30; ++i) {
            ASSERT_TRUE(p.front.put_request(txreq(next_id, 60)));
            ++next_id;
        }
        const bool notify = p.front.push_requests();
        EXPECT_EQ(notify, round == 0) << round; // the backend never re-armed req_event
        const auto w = p.back.poll_requests();
        ASSERT_FALSE(w.overflow) << round;
        ASSERT_EQ(w.available, 30U) << round;
        p.back.consume(w.available);
        for (std::uint32_t i = 0; i < w.available; ++i) {
            EXPECT_EQ(p.back.copy_request(w.cons + i).id, expect_id);
            ASSERT_TRUE(p.back.put_response(nf::TxResponse{expect_id, 0}));
            ++expect_id;
        }
        p.back.push_responses();
        const auto rw = p.front.poll_responses();
        ASSERT_FALSE(rw.overflow);
        ASSERT_EQ(rw.available, 30U);
        for (std::uint32_t i = 0; i < rw.available; ++i)
            EXPECT_EQ(p.front.copy_response(rw.cons + i).id,
                      static_cast<std::uint16_t>(expect_id - 30 + i));
        p.front.consume_responses(rw.available);
        EXPECT_EQ(p.front.free_requests(), 256U);
    }
    EXPECT_EQ(p.back.req_cons(), start + 300U); // wrapped
    EXPECT_LT(p.back.req_cons(), start);
}

TEST(RingWrap, NotifyTestAcrossTheWrap) {
    const nf::RingIdx start = 0xFFFFFFFEU;
    TxPair p(start);
    // req_event = start + 1 = 0xFFFFFFFF: pushing 4 requests (to 2) includes it.
    for (std::uint16_t i = 0; i < 4; ++i)
        ASSERT_TRUE(p.front.put_request(txreq(i, 60)));
    EXPECT_TRUE(p.front.push_requests());
    EXPECT_EQ(p.page->header().req_prod, 2U);
    p.back.consume(4);
    EXPECT_FALSE(p.back.final_check_for_requests());
    EXPECT_EQ(p.page->header().req_event, 3U);
    ASSERT_TRUE(p.front.put_request(txreq(4, 60)));
    EXPECT_TRUE(p.front.push_requests());
}

// --- overflow
// -------------------------------------------------------------------------------------

TEST(RingOverflow, ProducerMoreThanARingAheadIsReported) {
    TxPair p;
    auto& h = p.page->header();
    h.req_prod = 256;
    auto w = p.back.poll_requests();
    EXPECT_FALSE(w.overflow);
    EXPECT_EQ(w.available, 256U);
    h.req_prod = 257;
    w = p.back.poll_requests();
    EXPECT_TRUE(w.overflow);
    EXPECT_EQ(w.available, 0U);
    EXPECT_TRUE(p.back.final_check_for_requests()); // "look now": there is a fatal to report
    h.req_prod = 0xFFFFFFFFU;                       // far ahead, or behind: either way impossible
    EXPECT_TRUE(p.back.poll_requests().overflow);
}

TEST(RingOverflow, UnansweredRequestsCountAgainstTheRing) {
    TxPair p;
    auto& h = p.page->header();
    h.req_prod = 100;
    p.back.consume(100); // 100 consumed, none answered yet
    h.req_prod = 100 + 156;
    auto w = p.back.poll_requests();
    EXPECT_FALSE(w.overflow);
    EXPECT_EQ(w.available, 156U);
    h.req_prod = 100 + 157; // would overwrite a request whose response slot is still ours
    EXPECT_TRUE(p.back.poll_requests().overflow);
    // Answering frees room.
    p.back.consume(156);
    for (int i = 0; i < 10; ++i)
        ASSERT_TRUE(p.back.put_response(nf::TxResponse{0, 0}));
    h.req_prod = 266;
    w = p.back.poll_requests();
    EXPECT_FALSE(w.overflow);
    EXPECT_EQ(w.available, 10U);
}

TEST(RingOverflow, ProducerBehindConsumerIsReported) {
    TxPair p;
    auto& h = p.page->header();
    h.req_prod = 50;
    p.back.consume(50);
    for (int i = 0; i < 40; ++i)
        ASSERT_TRUE(p.back.put_response(nf::TxResponse{0, 0}));
    // req_prod moved backwards by 5: prod - rsp_prod_pvt looks small, prod - cons wraps.
    h.req_prod = 45;
    EXPECT_TRUE(p.back.poll_requests().overflow);
}

// The poll loop skips a ring whose has_unconsumed_requests() is false: it must be false
// exactly where poll_requests() finds neither requests nor an overflow to report, for any
// req_prod a frontend can write, at every backend state (some requests unanswered, indices
// about to wrap).
TEST(RingOverflow, QuickCheckAgreesWithPollRequests) {
    for (const std::uint32_t start : {0U, 0xFFFFFF00U, 0xFFFFFFF0U}) {
        for (const std::uint32_t unanswered : {0U, 1U, 100U, 256U}) {
            TxPair p(start);
            auto& h = p.page->header();
            // A backend that took every request up to start + 256 and answered all but
            // `unanswered` of them.
            h.req_prod = start + 256;
            p.back.consume(256);
            for (std::uint32_t i = 0; i < 256 - unanswered; ++i)
                ASSERT_TRUE(p.back.put_response(nf::TxResponse{0, 0}));
            const std::uint32_t cons = p.back.req_cons();
            for (std::uint32_t d = 0; d < 600; ++d) {
                for (const std::uint32_t prod : {cons + d, cons - d, cons + 0x80000000U + d}) {
                    h.req_prod = prod;
                    const nf::RequestWindow w = p.back.poll_requests();
                    ASSERT_EQ(p.back.has_unconsumed_requests(), w.available != 0 || w.overflow)
                        << "start " << start << ", unanswered " << unanswered << ", req_prod "
                        << prod;
                }
            }
        }
    }
}

TEST(RingOverflow, FrontDetectsBackendProducingTooMuch) {
    TxPair p;
    for (std::uint16_t i = 0; i < 3; ++i)
        ASSERT_TRUE(p.front.put_request(txreq(i, 60)));
    p.front.push_requests();
    auto& h = p.page->header();
    h.rsp_prod = 3;
    EXPECT_FALSE(p.front.poll_responses().overflow);
    h.rsp_prod = 4; // more responses than requests
    EXPECT_TRUE(p.front.poll_responses().overflow);
    h.rsp_prod = 300;
    EXPECT_TRUE(p.front.poll_responses().overflow);
    EXPECT_TRUE(p.front.final_check_for_responses());
}

// --- copy once
// ------------------------------------------------------------------------------------

TEST(RingCopy, CopiesAreImmuneToLaterWrites) {
    TxPair p;
    ASSERT_TRUE(p.front.put_request(txreq(7, 1500, nf::txf::kCsumBlank, 64, 4242)));
    p.front.push_requests();
    const nf::TxRequest copy = p.back.copy_request(0);
    p.page->write_tx_request(0, txreq(9, 9, nf::txf::kMoreData, 4095, 1));
    EXPECT_EQ(copy.id, 7);
    EXPECT_EQ(copy.size, 1500);
    EXPECT_EQ(copy.offset, 64);
    EXPECT_EQ(copy.flags, nf::txf::kCsumBlank);
    EXPECT_EQ(copy.gref, 4242U);
}

TEST(RingCopy, TxExtraOverlaysARequestSlot) {
    TxPair p;
    nf::ExtraInfo e{};
    e.type = nf::extra::kGso;
    e.flags = nf::extra::kFlagMore;
    e.u.gso.size = 1448;
    e.u.gso.type = nf::gso::kTcpV4;
    e.u.gso.features = 0x55;
    ASSERT_TRUE(p.front.put_extra(e));
    p.front.push_requests();
    const nf::ExtraInfo c = p.back.copy_extra(0);
    EXPECT_EQ(c.type, nf::extra::kGso);
    EXPECT_EQ(c.flags, nf::extra::kFlagMore);
    EXPECT_EQ(c.u.gso.size, 1448);
    EXPECT_EQ(c.u.gso.type, nf::gso::kTcpV4);
    EXPECT_EQ(c.u.gso.features, 0x55);
    // The slot's last 4 bytes (a request's id and size) are zeroed by put_extra.
    const nf::TxRequest as_req = p.back.copy_request(0);
    EXPECT_EQ(as_req.id, 0);
    EXPECT_EQ(as_req.size, 0);
}

TEST(RingCopy, RxExtraOverlaysAResponseSlot) {
    RxPair p;
    ASSERT_TRUE(p.front.put_request(nf::RxRequest{3, 0, 77}));
    ASSERT_TRUE(p.front.put_request(nf::RxRequest{4, 0, 78}));
    p.front.push_requests();
    const auto w = p.back.poll_requests();
    EXPECT_EQ(p.back.copy_request(w.cons).gref, 77U);
    EXPECT_EQ(p.back.copy_request(w.cons + 1).id, 4);
    p.back.consume(2);
    ASSERT_TRUE(p.back.put_response(nf::RxResponse{3, 0, nf::rxf::kExtraInfo, 60}));
    nf::ExtraInfo e{};
    e.type = nf::extra::kGso;
    e.u.gso.size = 1400;
    e.u.gso.type = nf::gso::kTcpV6;
    ASSERT_TRUE(p.back.put_extra(e));
    p.back.push_responses();
    const auto rw = p.front.poll_responses();
    ASSERT_EQ(rw.available, 2U);
    const nf::RxResponse r = p.front.copy_response(rw.cons);
    EXPECT_EQ(r.id, 3);
    EXPECT_EQ(r.status, 60);
    EXPECT_EQ(r.flags, nf::rxf::kExtraInfo);
    const nf::ExtraInfo x = p.front.copy_extra(rw.cons + 1);
    EXPECT_EQ(x.type, nf::extra::kGso);
    EXPECT_EQ(x.u.gso.size, 1400);
    EXPECT_EQ(x.u.gso.type, nf::gso::kTcpV6);
}

// --- two threads --------------------------------------------------------------------------------

// An event channel as the ring protocol sees it: a pending flag set by notify and cleared
// by the waiter. A lost wake-up shows up as a wait that times out, which fails the test.
class EventChannel {
public:
    void notify() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            pending_ = true;
        }
        cv_.notify_one();
    }
    // Generous timeout: this only bounds a hang, it does not measure anything.
    bool wait() {
        std::unique_lock<std::mutex> lock(mu_);
        if (!pending_) ++slept_;
        const bool woke = cv_.wait_for(lock, std::chrono::seconds(60), [&] { return pending_; });
        pending_ = false;
        return woke;
    }
    // How often a waiter found nothing pending and had to be woken (for the test log only).
    unsigned slept() {
        std::lock_guard<std::mutex> lock(mu_);
        return slept_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool pending_ = false;
    unsigned slept_ = 0;
};

template <class Proto, class MakeReq, class CheckReq, class MakeRsp, class CheckRsp>
void exchange(nf::RingIdx start, std::uint32_t total, MakeReq make_req, CheckReq check_req,
              MakeRsp make_rsp, CheckRsp check_rsp) {
    nf::test::RingPair<Proto> p(start);
    EventChannel to_back;
    EventChannel to_front;
    std::atomic<bool> failed{false};
    std::string back_error;

    std::thread back([&] {
        std::uint32_t seen = 0;
        while (seen < total && !failed.load()) {
            const auto w = p.back.poll_requests();
            if (w.overflow) {
                back_error = "overflow at " + std::to_string(seen);
                failed = true;
                break;
            }
            if (w.available == 0) {
                if (p.back.final_check_for_requests()) continue;
                if (!to_back.wait()) {
                    back_error = "backend lost a wake-up at " + std::to_string(seen);
                    failed = true;
                }
                continue;
            }
            for (std::uint32_t i = 0; i < w.available; ++i) {
                const auto req = p.back.copy_request(w.cons + i);
                if (!check_req(req, seen)) {
                    back_error = "bad request " + std::to_string(seen);
                    failed = true;
                }
                p.back.consume(1);
                if (!p.back.put_response(make_rsp(req))) {
                    back_error = "put_response refused";
                    failed = true;
                }
                ++seen;
            }
            if (p.back.push_responses()) to_front.notify();
        }
    });

    std::uint32_t sent = 0;
    std::uint32_t answered = 0;
    std::string front_error;
    while (answered < total && !failed.load() && front_error.empty()) {
        bool progress = false;
        while (sent < total && p.front.free_requests() > 0) {
            if (!p.front.put_request(make_req(sent))) {
                front_error = "put_request refused";
                break;
            }
            ++sent;
            progress = true;
            if (sent % 37 == 0) // publish in uneven batches
                break;
        }
        if (progress && p.front.push_requests()) to_back.notify();
        const auto w = p.front.poll_responses();
        if (w.overflow) {
            front_error = "response overflow at " + std::to_string(answered);
            break;
        }
        for (std::uint32_t i = 0; i < w.available; ++i) {
            if (!check_rsp(p.front.copy_response(w.cons + i), answered))
                front_error = "bad response " + std::to_string(answered);
            ++answered;
        }
        p.front.consume_responses(w.available);
        if (w.available != 0 || progress) continue;
        if (p.front.final_check_for_responses()) continue;
        if (!to_front.wait())
            front_error = "frontend lost a wake-up at " + std::to_string(answered);
    }
    failed = failed.load() || answered != total;
    to_back.notify(); // let the backend see `failed` if it is waiting
    back.join();
    ::testing::Test::RecordProperty("backend_slept", static_cast<int>(to_back.slept()));
    ::testing::Test::RecordProperty("frontend_slept", static_cast<int>(to_front.slept()));
    EXPECT_EQ(back_error, "");
    EXPECT_EQ(front_error, "");
    EXPECT_EQ(answered, total);
    EXPECT_EQ(p.back.req_cons(), start + total);
    EXPECT_EQ(p.back.rsp_prod_pvt(), start + total);
}

TEST(RingThreads, TxExchangeAcrossTwoThreads) {
    // Starts just below 2^32 so the run also crosses the index wrap.
    exchange<nf::TxRingProto>(
        0xFFFFF000U, 200000,
        [](std::uint32_t n) {
            return nf::TxRequest{n, static_cast<std::uint16_t>(n % 4096),
                                 static_cast<std::uint16_t>(n % 16), static_cast<std::uint16_t>(n),
                                 static_cast<std::uint16_t>(n >> 16)};
        },
        [](const nf::TxRequest& r, std::uint32_t n) {
            return r.gref == n && r.id == static_cast<std::uint16_t>(n) && r.offset == n % 4096 &&
                   r.flags == n % 16 && r.size == (n >> 16);
        },
        [](const nf::TxRequest& r) {
            return nf::TxResponse{r.id, static_cast<std::int16_t>(r.id % 3 == 0 ? -1 : 0)};
        },
        [](const nf::TxResponse& r, std::uint32_t n) {
            return r.id == static_cast<std::uint16_t>(n) &&
                   r.status == (static_cast<std::uint16_t>(n) % 3 == 0 ? -1 : 0);
        });
}

TEST(RingThreads, RxExchangeAcrossTwoThreads) {
    exchange<nf::RxRingProto>(
        0, 200000,
        [](std::uint32_t n) {
            return nf::RxRequest{static_cast<std::uint16_t>(n), 0, n * 7};
        },
        [](const nf::RxRequest& r, std::uint32_t n) {
            return r.id == static_cast<std::uint16_t>(n) && r.gref == n * 7;
        },
        [](const nf::RxRequest& r) {
            return nf::RxResponse{r.id, static_cast<std::uint16_t>(r.gref % 4096),
                                  static_cast<std::uint16_t>(r.gref % 8),
                                  static_cast<std::int16_t>(r.id % 1500)};
        },
        [](const nf::RxResponse& r, std::uint32_t n) {
            const auto id = static_cast<std::uint16_t>(n);
            return r.id == id && r.offset == (n * 7) % 4096 && r.flags == (n * 7) % 8 &&
                   r.status == id % 1500;
        });
}

} // namespace
