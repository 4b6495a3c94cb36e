// RX response building in Linux netback's layout (see rx_builder.hpp for the slot table).
// The engine passes what it knows about a frame and the requests it used; this file decides
// flags, status, offsets and where the GSO extra goes, and checks the engine's inputs.
#include "dpnb/netif/rx_builder.hpp"

namespace dpnb::netif {

namespace {

bool geometry_ok(RxBufferGeometry g) noexcept {
    return g.size != 0 && static_cast<std::uint32_t>(g.offset) + g.size <= kPageSize;
}

// Buffers a frame of `len` bytes fills; 64-bit so that no length can wrap.
std::uint64_t chunks_for(std::uint32_t len, RxBufferGeometry g) noexcept {
    return (static_cast<std::uint64_t>(len) + g.size - 1U) / g.size;
}

// Whether the frame carries a GSO extra, or why it cannot be delivered.
RxBuildError check_gso(const RxFrame& frame, const RxFeatures& features, bool& gso_extra) noexcept {
    gso_extra = false;
    if (frame.gso_type == gso::kNone) return RxBuildError::none;
    if ((frame.gso_type != gso::kTcpV4 && frame.gso_type != gso::kTcpV6) || frame.gso_size == 0)
        return RxBuildError::bad_gso;
    const bool negotiated = frame.gso_type == gso::kTcpV4 ? features.gso_tcpv4 : features.gso_tcpv6;
    if (!negotiated) return RxBuildError::gso_not_negotiated;
    gso_extra = true;
    return RxBuildError::none;
}

RxEntry response_entry(const RxResponse& rsp) noexcept {
    RxEntry e;
    e.kind = RxEntry::Kind::response;
    e.rsp = rsp;
    return e;
}

} // namespace

const char* to_string(RxBuildError error) noexcept {
    switch (error) {
    case RxBuildError::none:
        return "none";
    case RxBuildError::empty_frame:
        return "empty_frame";
    case RxBuildError::bad_geometry:
        return "bad_geometry";
    case RxBuildError::bad_gso:
        return "bad_gso";
    case RxBuildError::gso_not_negotiated:
        return "gso_not_negotiated";
    case RxBuildError::too_many_slots:
        return "too_many_slots";
    case RxBuildError::request_mismatch:
        return "request_mismatch";
    case RxBuildError::chunk_mismatch:
        return "chunk_mismatch";
    case RxBuildError::output_too_small:
        return "output_too_small";
    case RxBuildError::bad_status:
        return "bad_status";
    }
    return "unknown";
}

RxPlan plan_rx_frame(const RxFrame& frame, RxBufferGeometry geometry,
                     const RxFeatures& features) noexcept {
    RxPlan plan;
    if (frame.len == 0) {
        plan.error = RxBuildError::empty_frame;
        return plan;
    }
    if (!geometry_ok(geometry)) {
        plan.error = RxBuildError::bad_geometry;
        return plan;
    }
    bool gso_extra = false;
    if (const RxBuildError e = check_gso(frame, features, gso_extra); e != RxBuildError::none) {
        plan.error = e;
        return plan;
    }
    const std::uint64_t data_slots = chunks_for(frame.len, geometry);
    if (data_slots > kRxMaxDataSlots) {
        plan.error = RxBuildError::too_many_slots;
        return plan;
    }
    plan.data_slots = static_cast<std::uint32_t>(data_slots);
    plan.gso_extra = gso_extra;
    plan.hash_extra = frame.hash.has_value();
    plan.requests = plan.data_slots + plan.extras();
    return plan;
}

std::uint32_t rx_layout(std::uint32_t len, RxBufferGeometry geometry,
                        std::span<RxChunk> out) noexcept {
    if (len == 0 || !geometry_ok(geometry)) return 0;
    const std::uint64_t chunks = chunks_for(len, geometry);
    if (chunks > out.size()) return 0;
    const auto n = static_cast<std::uint32_t>(chunks);
    std::uint32_t left = len;
    for (std::uint32_t i = 0; i < n; ++i) {
        const std::uint32_t take = left < geometry.size ? left : geometry.size;
        out[i] = RxChunk{geometry.offset, static_cast<std::uint16_t>(take)};
        left -= take;
    }
    return n;
}

RxBuildResult build_rx_responses(const RxFrame& frame, std::span<const std::uint16_t> req_ids,
                                 std::span<const RxChunk> chunks, const RxFeatures& features,
                                 std::span<RxEntry> out) noexcept {
    if (frame.len == 0) return {RxBuildError::empty_frame, 0};
    bool gso_extra = false;
    if (const RxBuildError e = check_gso(frame, features, gso_extra); e != RxBuildError::none)
        return {e, 0};
    if (chunks.empty()) return {RxBuildError::chunk_mismatch, 0};
    if (chunks.size() > kRxMaxDataSlots) return {RxBuildError::too_many_slots, 0};
    const std::size_t extras = (gso_extra ? 1U : 0U) + (frame.hash ? 1U : 0U);
    const std::size_t entries = chunks.size() + extras;
    if (req_ids.size() != entries) return {RxBuildError::request_mismatch, 0};
    if (out.size() < entries) return {RxBuildError::output_too_small, 0};

    std::uint64_t sum = 0;
    for (const RxChunk& c : chunks) {
        if (c.len == 0 || static_cast<std::uint32_t>(c.offset) + c.len > kPageSize)
            return {RxBuildError::chunk_mismatch, 0};
        sum += c.len;
    }
    if (sum != frame.len) return {RxBuildError::chunk_mismatch, 0};

    const auto n = static_cast<std::uint32_t>(chunks.size());
    std::size_t k = 0;
    out[k++] = response_entry(rx_data_response(frame, extras != 0, 0, n, req_ids[0], chunks[0]));
    // The extras go right after the first data slot, each in a request of its own.
    if (gso_extra) {
        out[k].kind = RxEntry::Kind::extra;
        out[k++].extra = rx_gso_extra(frame);
    }
    if (frame.hash) {
        out[k].kind = RxEntry::Kind::extra;
        out[k++].extra = rx_hash_extra(frame);
    }
    for (std::uint32_t i = 1; i < n; ++i) {
        out[k] = response_entry(rx_data_response(frame, extras != 0, i, n, req_ids[k], chunks[i]));
        ++k;
    }
    return {RxBuildError::none, static_cast<std::uint32_t>(k)};
}

RxBuildResult build_rx_error_responses(std::span<const std::uint16_t> req_ids, std::int16_t status,
                                       std::span<RxEntry> out) noexcept {
    if (status >= 0) return {RxBuildError::bad_status, 0};
    if (out.size() < req_ids.size()) return {RxBuildError::output_too_small, 0};
    for (std::size_t i = 0; i < req_ids.size(); ++i)
        out[i] = response_entry(rx_error_response(req_ids[i], status));
    return {RxBuildError::none, static_cast<std::uint32_t>(req_ids.size())};
}

bool put_rx_entries(RxBackRing& ring, std::span<const RxEntry> entries) noexcept {
    if (ring.unanswered() < entries.size()) return false;
    bool ok = true;
    for (const RxEntry& e : entries) {
        if (e.kind == RxEntry::Kind::extra)
            ok = ring.put_extra(e.extra) && ok;
        else
            ok = ring.put_response(e.rsp) && ok;
    }
    return ok; // always true after the check above
}

} // namespace dpnb::netif
