// RX response builder (dpnb/netif/rx_builder.hpp): planning (requests a frame needs),
// layout over posted buffers, single and multi-slot responses, checksum flags, GSO extra
// placement and negotiation, error responses, and the engine-input checks.
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/rx_builder.hpp"
#include "netif_test_ring.hpp"

namespace nf = dpnb::netif;
using nf::RxBuildError;
using nf::RxChunk;
using nf::RxEntry;
using nf::RxFrame;

namespace {

const nf::RxFeatures kNoGso{};
const nf::RxFeatures kGso{true, true};

RxFrame frame(std::uint32_t len) {
    RxFrame f;
    f.len = len;
    return f;
}

RxFrame gso_frame(std::uint32_t len, std::uint8_t type = nf::gso::kTcpV4,
                  std::uint16_t mss = 1448) {
    RxFrame f;
    f.len = len;
    f.csum_blank = true;
    f.gso_type = type;
    f.gso_size = mss;
    return f;
}

// --- planning -----------------------------------------------------------------------------

TEST(RxPlan, DataSlotsFollowTheBufferGeometry) {
    const nf::RxBufferGeometry page{0, 4096};
    EXPECT_EQ(nf::plan_rx_frame(frame(1), page, kNoGso).requests, 1U);
    EXPECT_EQ(nf::plan_rx_frame(frame(1514), page, kNoGso).requests, 1U);
    EXPECT_EQ(nf::plan_rx_frame(frame(4096), page, kNoGso).requests, 1U);
    EXPECT_EQ(nf::plan_rx_frame(frame(4097), page, kNoGso).requests, 2U);
    EXPECT_EQ(nf::plan_rx_frame(frame(65535), page, kNoGso).requests, 16U);
    // XDP headroom style: data starts at 256, 3840 bytes per buffer.
    const nf::RxBufferGeometry headroom{256, 3840};
    EXPECT_EQ(nf::plan_rx_frame(frame(3840), headroom, kNoGso).requests, 1U);
    EXPECT_EQ(nf::plan_rx_frame(frame(3841), headroom, kNoGso).requests, 2U);
    // Zero-copy with 2 KiB buffers.
    const nf::RxBufferGeometry half{128, 2048};
    const auto p = nf::plan_rx_frame(frame(9000), half, kNoGso);
    EXPECT_EQ(p.error, RxBuildError::none);
    EXPECT_EQ(p.data_slots, 5U);
    EXPECT_FALSE(p.gso_extra);
    EXPECT_EQ(p.requests, 5U);
}

TEST(RxPlan, GsoTakesOneMoreRequestWhenNegotiated) {
    const nf::RxBufferGeometry page{0, 4096};
    auto p = nf::plan_rx_frame(gso_frame(65000), page, kGso);
    EXPECT_EQ(p.error, RxBuildError::none);
    EXPECT_EQ(p.data_slots, 16U);
    EXPECT_TRUE(p.gso_extra);
    EXPECT_EQ(p.requests, 17U);
    p = nf::plan_rx_frame(gso_frame(65000, nf::gso::kTcpV6), page, nf::RxFeatures{true, false});
    EXPECT_EQ(p.error, RxBuildError::gso_not_negotiated);
    EXPECT_EQ(p.requests, 0U);
    p = nf::plan_rx_frame(gso_frame(65000, nf::gso::kTcpV4), page, nf::RxFeatures{true, false});
    EXPECT_EQ(p.requests, 17U);
    EXPECT_EQ(nf::plan_rx_frame(gso_frame(65000), page, kNoGso).error,
              RxBuildError::gso_not_negotiated);
    EXPECT_EQ(nf::plan_rx_frame(gso_frame(65000, 3), page, kGso).error, RxBuildError::bad_gso);
    EXPECT_EQ(nf::plan_rx_frame(gso_frame(65000, 1, 0), page, kGso).error, RxBuildError::bad_gso);
}

TEST(RxPlan, RejectsWhatCannotBeDelivered) {
    EXPECT_EQ(nf::plan_rx_frame(frame(0), {0, 4096}, kNoGso).error, RxBuildError::empty_frame);
    EXPECT_EQ(nf::plan_rx_frame(frame(100), {0, 0}, kNoGso).error, RxBuildError::bad_geometry);
    EXPECT_EQ(nf::plan_rx_frame(frame(100), {1, 4096}, kNoGso).error, RxBuildError::bad_geometry);
    EXPECT_EQ(nf::plan_rx_frame(frame(100), {4096, 1}, kNoGso).error, RxBuildError::bad_geometry);
    // More data slots than a frontend must accept (18): netfront would drop the packet.
    EXPECT_EQ(nf::plan_rx_frame(frame(19), {0, 1}, kNoGso).error, RxBuildError::too_many_slots);
    EXPECT_EQ(nf::plan_rx_frame(frame(18), {0, 1}, kNoGso).requests, 18U);
    EXPECT_EQ(nf::plan_rx_frame(gso_frame(18), {0, 1}, kGso).requests, 19U);
    EXPECT_EQ(nf::plan_rx_frame(gso_frame(65535), {0, 2048}, kGso).error,
              RxBuildError::too_many_slots);
    EXPECT_EQ(nf::plan_rx_frame(frame(0xFFFFFFFFU), {0, 4096}, kNoGso).error,
              RxBuildError::too_many_slots);
}

TEST(RxLayout, SplitsAFrameOverBuffers) {
    std::array<RxChunk, 8> out{};
    ASSERT_EQ(nf::rx_layout(9000, {64, 4000}, out), 3U);
    EXPECT_EQ(out[0].offset, 64);
    EXPECT_EQ(out[0].len, 4000);
    EXPECT_EQ(out[1].len, 4000);
    EXPECT_EQ(out[2].len, 1000);
    EXPECT_EQ(out[2].offset, 64);
    EXPECT_EQ(nf::rx_layout(4000, {0, 4000}, out), 1U);
    EXPECT_EQ(out[0].len, 4000);
    EXPECT_EQ(nf::rx_layout(9000, {0, 1000}, out), 0U); // needs 9 chunks
    EXPECT_EQ(nf::rx_layout(0, {0, 4096}, out), 0U);
    EXPECT_EQ(nf::rx_layout(10, {4000, 200}, out), 0U);
}

// --- responses ------------------------------------------------------------------------------

// --- sub-page RX buffers (feature-rx-buffer-offset) ------------------------------------------

TEST(RxBufferLayout, WholePagesIgnoreThePadField) {
    const nf::RxBufferLayout pages{};
    const auto b = nf::rx_request_buffer(pages, 0xBEEF); // Linux netfront leaves pad as is
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->offset, 0);
    EXPECT_EQ(b->size, 4096);
    const nf::RxBufferLayout xdp{false, 4096, 256};
    EXPECT_EQ(nf::rx_uniform_geometry(xdp).offset, 256);
    EXPECT_EQ(nf::rx_uniform_geometry(xdp).size, 4096 - 256);
    EXPECT_EQ(nf::rx_request_buffer(xdp, 0xBEEF)->offset, 256);
}

TEST(RxBufferLayout, HalfPagesSitWhereTheRequestSays) {
    const nf::RxBufferLayout half{true, 2048, 0};
    EXPECT_EQ(nf::rx_request_buffer(half, 0)->offset, 0);
    EXPECT_EQ(nf::rx_request_buffer(half, 2048)->offset, 2048);
    EXPECT_EQ(nf::rx_request_buffer(half, 2048)->size, 2048);
    EXPECT_EQ(nf::rx_request_buffer(half, 100)->offset, 100); // any offset that stays inside
    const nf::RxBufferLayout half_xdp{true, 2048, 64};
    EXPECT_EQ(nf::rx_request_buffer(half_xdp, 2048)->offset, 2048 + 64);
    EXPECT_EQ(nf::rx_request_buffer(half_xdp, 2048)->size, 2048 - 64);
    // A frame is planned against the shared size: 1514 bytes fit one half page, 3000 need two.
    RxFrame f;
    f.len = 3000;
    EXPECT_EQ(nf::plan_rx_frame(f, nf::rx_uniform_geometry(half), {}).data_slots, 2U);
}

TEST(RxBufferLayout, OffsetsThatLeaveThePageAreRefused) {
    const nf::RxBufferLayout half{true, 2048, 0};
    EXPECT_FALSE(nf::rx_request_buffer(half, 2049).has_value());
    EXPECT_FALSE(nf::rx_request_buffer(half, 4096).has_value());
    EXPECT_FALSE(nf::rx_request_buffer(half, 0xFFFF).has_value());
    // A layout with no room left refuses every request and plans nothing.
    const nf::RxBufferLayout full_headroom{true, 1024, 1024};
    EXPECT_FALSE(nf::rx_request_buffer(full_headroom, 0).has_value());
    RxFrame f;
    f.len = 60;
    EXPECT_EQ(nf::plan_rx_frame(f, nf::rx_uniform_geometry(full_headroom), {}).error,
              RxBuildError::bad_geometry);
    EXPECT_FALSE(nf::rx_request_buffer(nf::RxBufferLayout{true, 0, 0}, 0).has_value());
    EXPECT_FALSE(nf::rx_request_buffer(nf::RxBufferLayout{false, 5000, 0}, 0).has_value());
}

TEST(RxBufferLayout, OneCheckPerLayoutGivesEveryRequestsVerdict) {
    // What zero-copy posts bind (start) and what copies write (buffer) come from one check.
    for (const nf::RxBufferLayout layout :
         {nf::RxBufferLayout{}, nf::RxBufferLayout{false, 4096, 256},
          nf::RxBufferLayout{true, 2048, 0}, nf::RxBufferLayout{true, 2048, 64},
          nf::RxBufferLayout{true, 1024, 1024}, nf::RxBufferLayout{true, 0, 0},
          nf::RxBufferLayout{false, 5000, 0}}) {
        const nf::RxRequestCheck check(layout);
        EXPECT_EQ(check.layout_ok(), nf::rx_uniform_geometry(layout).size != 0);
        for (std::uint32_t pad = 0; pad <= 0xFFFF; pad += 7) {
            const auto p = static_cast<std::uint16_t>(pad);
            const auto start = check.start(p);
            const auto buffer = check.buffer(p);
            const std::uint32_t at = layout.request_offsets ? pad : 0U;
            const bool fits = check.layout_ok() && at + layout.buffer_size <= 4096;
            ASSERT_EQ(start.has_value(), fits) << pad;
            ASSERT_EQ(buffer.has_value(), fits) << pad;
            if (!fits) continue;
            EXPECT_EQ(*start, at);
            EXPECT_EQ(buffer->offset, at + layout.headroom);
            EXPECT_EQ(buffer->size, layout.buffer_size - layout.headroom);
        }
    }
}

TEST(RxBuild, SingleSlotFrame) {
    std::array<RxEntry, 4> out{};
    const std::array<std::uint16_t, 1> ids{17};
    const std::array<RxChunk, 1> chunks{{{0, 1514}}};
    const auto r = nf::build_rx_responses(frame(1514), ids, chunks, kNoGso, out);
    ASSERT_EQ(r.error, RxBuildError::none);
    ASSERT_EQ(r.entries, 1U);
    EXPECT_EQ(out[0].kind, RxEntry::Kind::response);
    EXPECT_EQ(out[0].rsp.id, 17);
    EXPECT_EQ(out[0].rsp.offset, 0);
    EXPECT_EQ(out[0].rsp.status, 1514);
    EXPECT_EQ(out[0].rsp.flags, 0);
}

TEST(RxBuild, ChecksumFlagsAsLinuxSetsThem) {
    std::array<RxEntry, 1> out{};
    const std::array<std::uint16_t, 1> ids{1};
    const std::array<RxChunk, 1> chunks{{{0, 60}}};
    RxFrame f = frame(60);
    f.data_validated = true;
    ASSERT_EQ(nf::build_rx_responses(f, ids, chunks, kNoGso, out).entries, 1U);
    EXPECT_EQ(out[0].rsp.flags, nf::rxf::kDataValidated);
    // Partial checksum: blank and validated together (Linux CHECKSUM_PARTIAL).
    f.data_validated = false;
    f.csum_blank = true;
    ASSERT_EQ(nf::build_rx_responses(f, ids, chunks, kNoGso, out).entries, 1U);
    EXPECT_EQ(out[0].rsp.flags, nf::rxf::kCsumBlank | nf::rxf::kDataValidated);
    f.data_validated = true;
    ASSERT_EQ(nf::build_rx_responses(f, ids, chunks, kNoGso, out).entries, 1U);
    EXPECT_EQ(out[0].rsp.flags, nf::rxf::kCsumBlank | nf::rxf::kDataValidated);
}

TEST(RxBuild, MultiSlotFrame) {
    std::array<RxEntry, 4> out{};
    const std::array<std::uint16_t, 3> ids{5, 6, 7};
    const std::array<RxChunk, 3> chunks{{{0, 4096}, {0, 4096}, {128, 808}}};
    RxFrame f = frame(9000);
    f.data_validated = true;
    const auto r = nf::build_rx_responses(f, ids, chunks, kNoGso, out);
    ASSERT_EQ(r.error, RxBuildError::none);
    ASSERT_EQ(r.entries, 3U);
    EXPECT_EQ(out[0].rsp.flags, nf::rxf::kDataValidated | nf::rxf::kMoreData);
    EXPECT_EQ(out[1].rsp.flags, nf::rxf::kMoreData); // checksum flags only on the first
    EXPECT_EQ(out[2].rsp.flags, 0);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(out[i].kind, RxEntry::Kind::response);
        EXPECT_EQ(out[i].rsp.id, ids[i]);
        EXPECT_EQ(out[i].rsp.offset, chunks[i].offset);
        EXPECT_EQ(out[i].rsp.status, chunks[i].len);
    }
}

TEST(RxBuild, GsoExtraGoesRightAfterTheFirstDataSlot) {
    std::array<RxEntry, 8> out{};
    const std::array<std::uint16_t, 4> ids{10, 11, 12, 13};
    const std::array<RxChunk, 3> chunks{{{0, 4096}, {0, 4096}, {0, 1808}}};
    const auto r =
        nf::build_rx_responses(gso_frame(10000, nf::gso::kTcpV6, 1440), ids, chunks, kGso, out);
    ASSERT_EQ(r.error, RxBuildError::none);
    ASSERT_EQ(r.entries, 4U);
    EXPECT_EQ(out[0].kind, RxEntry::Kind::response);
    EXPECT_EQ(out[0].rsp.id, 10);
    EXPECT_EQ(out[0].rsp.flags, nf::rxf::kCsumBlank | nf::rxf::kDataValidated |
                                    nf::rxf::kExtraInfo | nf::rxf::kMoreData);
    EXPECT_EQ(out[0].rsp.status, 4096);
    ASSERT_EQ(out[1].kind, RxEntry::Kind::extra);
    EXPECT_EQ(out[1].extra.type, nf::extra::kGso);
    EXPECT_EQ(out[1].extra.flags, 0);
    EXPECT_EQ(out[1].extra.u.gso.type, nf::gso::kTcpV6);
    EXPECT_EQ(out[1].extra.u.gso.size, 1440);
    EXPECT_EQ(out[1].extra.u.gso.pad, 0);
    EXPECT_EQ(out[1].extra.u.gso.features, 0);
    // Request 11 carried the extra: data chunk 1 goes with request 12, chunk 2 with 13.
    EXPECT_EQ(out[2].rsp.id, 12);
    EXPECT_EQ(out[2].rsp.flags, nf::rxf::kMoreData);
    EXPECT_EQ(out[3].rsp.id, 13);
    EXPECT_EQ(out[3].rsp.flags, 0);
    EXPECT_EQ(out[3].rsp.status, 1808);
}

TEST(RxBuild, GsoSingleChunkFrame) {
    std::array<RxEntry, 2> out{};
    const std::array<std::uint16_t, 2> ids{1, 2};
    const std::array<RxChunk, 1> chunks{{{0, 3000}}};
    const auto r = nf::build_rx_responses(gso_frame(3000), ids, chunks, kGso, out);
    ASSERT_EQ(r.entries, 2U);
    EXPECT_EQ(out[0].rsp.flags & nf::rxf::kMoreData, 0);
    EXPECT_NE(out[0].rsp.flags & nf::rxf::kExtraInfo, 0);
    EXPECT_EQ(out[1].kind, RxEntry::Kind::extra);
}

TEST(RxBuild, GsoFrameRefusedWhenNotNegotiated) {
    std::array<RxEntry, 4> out{};
    const std::array<std::uint16_t, 2> ids{1, 2};
    const std::array<RxChunk, 1> chunks{{{0, 3000}}};
    EXPECT_EQ(nf::build_rx_responses(gso_frame(3000), ids, chunks, kNoGso, out).error,
              RxBuildError::gso_not_negotiated);
    EXPECT_EQ(nf::build_rx_responses(gso_frame(3000, 7), ids, chunks, kGso, out).error,
              RxBuildError::bad_gso);
}

TEST(RxBuild, InputChecks) {
    std::array<RxEntry, 4> out{};
    const std::array<std::uint16_t, 2> two{1, 2};
    const std::array<std::uint16_t, 1> one{1};
    const std::array<RxChunk, 2> chunks{{{0, 100}, {0, 100}}};
    EXPECT_EQ(nf::build_rx_responses(frame(200), one, chunks, kNoGso, out).error,
              RxBuildError::request_mismatch);
    EXPECT_EQ(nf::build_rx_responses(frame(201), two, chunks, kNoGso, out).error,
              RxBuildError::chunk_mismatch);
    EXPECT_EQ(nf::build_rx_responses(frame(0), two, chunks, kNoGso, out).error,
              RxBuildError::empty_frame);
    EXPECT_EQ(nf::build_rx_responses(frame(200), {}, {}, kNoGso, out).error,
              RxBuildError::chunk_mismatch);
    std::array<RxEntry, 1> small{};
    EXPECT_EQ(nf::build_rx_responses(frame(200), two, chunks, kNoGso, small).error,
              RxBuildError::output_too_small);
    const std::array<RxChunk, 2> empty_chunk{{{0, 200}, {0, 0}}};
    EXPECT_EQ(nf::build_rx_responses(frame(200), two, empty_chunk, kNoGso, out).error,
              RxBuildError::chunk_mismatch);
    const std::array<RxChunk, 2> crossing{{{4000, 100}, {0, 100}}};
    EXPECT_EQ(nf::build_rx_responses(frame(200), two, crossing, kNoGso, out).error,
              RxBuildError::chunk_mismatch);
    std::vector<RxChunk> many(19, RxChunk{0, 1});
    std::vector<std::uint16_t> many_ids(19, 0);
    std::vector<RxEntry> many_out(19);
    EXPECT_EQ(nf::build_rx_responses(frame(19), many_ids, many, kNoGso, many_out).error,
              RxBuildError::too_many_slots);
    many.pop_back();
    many_ids.pop_back();
    EXPECT_EQ(nf::build_rx_responses(frame(18), many_ids, many, kNoGso, many_out).entries, 18U);
}

TEST(RxBuild, ErrorResponses) {
    std::array<RxEntry, 4> out{};
    const std::array<std::uint16_t, 3> ids{3, 4, 5};
    auto r = nf::build_rx_error_responses(ids, nf::rsp::kError, out);
    ASSERT_EQ(r.error, RxBuildError::none);
    ASSERT_EQ(r.entries, 3U);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(out[i].kind, RxEntry::Kind::response);
        EXPECT_EQ(out[i].rsp.id, ids[i]);
        EXPECT_EQ(out[i].rsp.status, nf::rsp::kError);
        EXPECT_EQ(out[i].rsp.flags, 0); // each a one-slot packet: no more_data, no extra
        EXPECT_EQ(out[i].rsp.offset, 0);
    }
    r = nf::build_rx_error_responses(ids, nf::rsp::kDropped, out);
    EXPECT_EQ(out[2].rsp.status, nf::rsp::kDropped);
    EXPECT_EQ(nf::build_rx_error_responses(ids, nf::rsp::kOkay, out).error,
              RxBuildError::bad_status);
    EXPECT_EQ(nf::build_rx_error_responses(ids, 100, out).error, RxBuildError::bad_status);
    std::array<RxEntry, 2> small{};
    EXPECT_EQ(nf::build_rx_error_responses(ids, nf::rsp::kError, small).error,
              RxBuildError::output_too_small);
}

TEST(RxBuild, ErrorNamesAreDistinct) {
    EXPECT_STREQ(nf::to_string(RxBuildError::gso_not_negotiated), "gso_not_negotiated");
    EXPECT_STREQ(nf::to_string(RxBuildError::none), "none");
    EXPECT_STRNE(nf::to_string(RxBuildError::bad_gso), nf::to_string(RxBuildError::bad_status));
}

// --- one entry at a time ---------------------------------------------------------------------

TEST(RxEntry, DataResponsesCarryFlagsByPosition) {
    RxFrame f = frame(5000);
    f.data_validated = true;
    const nf::RxResponse only = nf::rx_data_response(frame(60), false, 0, 1, 7, {0, 60});
    EXPECT_EQ(only.id, 7);
    EXPECT_EQ(only.offset, 0);
    EXPECT_EQ(only.flags, 0);
    EXPECT_EQ(only.status, 60);
    const nf::RxResponse first = nf::rx_data_response(f, false, 0, 2, 1, {128, 3968});
    EXPECT_EQ(first.flags, nf::rxf::kDataValidated | nf::rxf::kMoreData);
    EXPECT_EQ(first.offset, 128);
    EXPECT_EQ(first.status, 3968);
    const nf::RxResponse last = nf::rx_data_response(f, false, 1, 2, 2, {128, 1032});
    EXPECT_EQ(last.flags, 0); // checksum flags only on the first
    const nf::RxResponse gso = nf::rx_data_response(gso_frame(3000), true, 0, 1, 3, {0, 3000});
    EXPECT_EQ(gso.flags, nf::rxf::kCsumBlank | nf::rxf::kDataValidated | nf::rxf::kExtraInfo);
    const nf::ExtraInfo e = nf::rx_gso_extra(gso_frame(3000, nf::gso::kTcpV6, 1220));
    EXPECT_EQ(e.type, nf::extra::kGso);
    EXPECT_EQ(e.flags, 0);
    EXPECT_EQ(e.u.gso.type, nf::gso::kTcpV6);
    EXPECT_EQ(e.u.gso.size, 1220);
    const nf::RxResponse err = nf::rx_error_response(9, nf::rsp::kError);
    EXPECT_EQ(err.id, 9);
    EXPECT_EQ(err.offset, 0);
    EXPECT_EQ(err.flags, 0);
    EXPECT_EQ(err.status, nf::rsp::kError);
}

// The entries written one at a time are those build_rx_responses gives for the whole frame.
TEST(RxEntry, OneAtATimeMatchesTheWholeFrame) {
    const RxFrame f = gso_frame(9000);
    const std::array<std::uint16_t, 4> ids = {5, 6, 7, 8};
    std::array<RxChunk, 3> chunks{};
    ASSERT_EQ(nf::rx_layout(9000, {0, 4096}, chunks), 3U);
    std::array<RxEntry, 4> whole{};
    ASSERT_EQ(nf::build_rx_responses(f, ids, chunks, kGso, whole).entries, 4U);
    for (std::uint32_t c = 0; c < 3; ++c) {
        const std::uint32_t k = c == 0 ? 0 : c + 1;
        const nf::RxResponse r = nf::rx_data_response(f, true, c, 3, ids[k], chunks[c]);
        EXPECT_EQ(std::memcmp(&r, &whole[k].rsp, sizeof(r)), 0) << c;
    }
    const nf::ExtraInfo e = nf::rx_gso_extra(f);
    EXPECT_EQ(std::memcmp(&e, &whole[1].extra, sizeof(e)), 0);
}

// A frame with a hash (the frontend asked for hashes): the hash extra after the GSO extra,
// GSO flagged MORE, the hash extra last; without GSO the hash extra alone. Each takes a
// request of its own, planned before anything is consumed.
TEST(RxEntry, HashExtraFollowsTheGsoExtra) {
    RxFrame f = gso_frame(9000);
    f.hash = nf::FlowHash{0xA1B2C3D4, nf::hash_type::kIpv4Tcp};
    const nf::RxPlan plan = nf::plan_rx_frame(f, {0, 4096}, kGso);
    EXPECT_TRUE(plan.gso_extra);
    EXPECT_TRUE(plan.hash_extra);
    EXPECT_EQ(plan.extras(), 2U);
    EXPECT_EQ(plan.requests, 5U);
    const std::array<std::uint16_t, 5> ids = {5, 6, 7, 8, 9};
    std::array<RxChunk, 3> chunks{};
    ASSERT_EQ(nf::rx_layout(9000, {0, 4096}, chunks), 3U);
    std::array<RxEntry, 5> out{};
    ASSERT_EQ(nf::build_rx_responses(f, ids, chunks, kGso, out).entries, 5U);
    EXPECT_NE(out[0].rsp.flags & nf::rxf::kExtraInfo, 0);
    ASSERT_EQ(out[1].kind, RxEntry::Kind::extra);
    EXPECT_EQ(out[1].extra.type, nf::extra::kGso);
    EXPECT_EQ(out[1].extra.flags, nf::extra::kFlagMore);
    ASSERT_EQ(out[2].kind, RxEntry::Kind::extra);
    EXPECT_EQ(out[2].extra.type, nf::extra::kHash);
    EXPECT_EQ(out[2].extra.flags, 0);
    EXPECT_EQ(out[2].extra.u.hash.type, nf::hash_type::kIpv4Tcp);
    EXPECT_EQ(out[2].extra.u.hash.value[0], 0xD4);
    EXPECT_EQ(out[3].rsp.id, 8);
    EXPECT_EQ(out[4].rsp.flags, 0);
    const nf::ExtraInfo one_by_one = nf::rx_hash_extra(f);
    EXPECT_EQ(std::memcmp(&one_by_one, &out[2].extra, sizeof(one_by_one)), 0);

    RxFrame plain = frame(1000);
    plain.hash = nf::FlowHash{7, nf::hash_type::kIpv6};
    const nf::RxPlan p2 = nf::plan_rx_frame(plain, {0, 4096}, kNoGso);
    EXPECT_FALSE(p2.gso_extra);
    EXPECT_EQ(p2.requests, 2U);
    const std::array<std::uint16_t, 2> ids2 = {1, 2};
    const std::array<RxChunk, 1> one = {RxChunk{0, 1000}};
    std::array<RxEntry, 2> out2{};
    ASSERT_EQ(nf::build_rx_responses(plain, ids2, one, kNoGso, out2).entries, 2U);
    EXPECT_EQ(out2[0].rsp.flags, nf::rxf::kExtraInfo);
    EXPECT_EQ(out2[1].extra.type, nf::extra::kHash);
    EXPECT_EQ(out2[1].extra.flags, 0);
    EXPECT_EQ(nf::build_rx_responses(plain, std::span(ids2.data(), 1), one, kNoGso, out2).error,
              RxBuildError::request_mismatch);
}

// --- onto the ring
// --------------------------------------------------------------------------------

TEST(RxBuild, EntriesLandInTheSlotsOfTheirRequests) {
    nf::test::RxPair p(0xFFFFFFFEU); // crosses the 2^32 wrap as well
    for (std::uint16_t i = 0; i < 4; ++i)
        ASSERT_TRUE(p.front.put_request(nf::RxRequest{static_cast<std::uint16_t>(40 + i), 0,
                                                      static_cast<nf::GrantRef>(900 + i)}));
    p.front.push_requests();
    const auto w = p.back.poll_requests();
    ASSERT_EQ(w.available, 4U);
    const nf::RxPlan plan = nf::plan_rx_frame(gso_frame(9000), {0, 4096}, kGso);
    ASSERT_EQ(plan.requests, 4U);
    std::array<std::uint16_t, 4> ids{};
    for (std::uint32_t i = 0; i < plan.requests; ++i)
        ids[i] = p.back.copy_request(w.cons + i).id;
    p.back.consume(plan.requests);
    std::array<RxChunk, 3> chunks{};
    ASSERT_EQ(nf::rx_layout(9000, {0, 4096}, chunks), 3U);
    std::array<RxEntry, 4> entries{};
    const auto r = nf::build_rx_responses(gso_frame(9000), ids, chunks, kGso, entries);
    ASSERT_EQ(r.entries, 4U);
    ASSERT_TRUE(nf::put_rx_entries(p.back, entries));
    EXPECT_FALSE(nf::put_rx_entries(p.back, entries)); // nothing left to answer
    EXPECT_TRUE(p.back.push_responses());

    // Read back as netfront does: the response in each request's own slot.
    const auto rw = p.front.poll_responses();
    ASSERT_EQ(rw.available, 4U);
    const nf::RxResponse first = p.front.copy_response(rw.cons);
    EXPECT_EQ(first.id, 40);
    EXPECT_EQ(first.status, 4096);
    EXPECT_NE(first.flags & nf::rxf::kExtraInfo, 0);
    const nf::ExtraInfo gso = p.front.copy_extra(rw.cons + 1);
    EXPECT_EQ(gso.type, nf::extra::kGso);
    EXPECT_EQ(gso.u.gso.size, 1448);
    EXPECT_EQ(p.front.copy_response(rw.cons + 2).id, 42);
    EXPECT_EQ(p.front.copy_response(rw.cons + 3).id, 43);
    EXPECT_EQ(p.front.copy_response(rw.cons + 3).status, 9000 - 2 * 4096);
}

} // namespace
