// The guest-receive response builder: how a frame that landed in a guest's posted RX buffers
// is described back to the frontend on the RX ring, in Linux netback's layout (xenvif_rx_skb,
// xenvif_rx_data_slot, xenvif_rx_extra_slot):
//
//   ring slot   request used    entry written
//   k           req_ids[0]      response: first chunk; flags csum/validated, extra_info, more_data
//   k+1         req_ids[1]      GSO extra-info (only for a GSO frame the frontend negotiated)
//   then        next request    hash extra-info (only when the frontend asked for hashes)
//   then..      the rest        responses: later chunks; more_data on all but the last
//
// The extras follow the first data slot in type order (GSO, then hash), each with
// XEN_NETIF_EXTRA_FLAG_MORE but the last, as Linux's xenvif_rx_extra_slot writes them.
//
// Each entry lands in the ring slot of the request it answers (netfront relies on it: an
// extra-info slot carries no id). Also here: how many requests a frame needs before the
// engine commits to it, how to split a frame over posted buffers, and error responses for
// a frame that could not be delivered. Pure functions over caller-provided arrays.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/wire.hpp"

namespace dpnb::netif {

// Data slots one RX packet may use. XEN_NETIF_NR_SLOTS_MIN is all a frontend must accept,
// and Linux netfront drops a packet with more ("Too many slots" in xennet_get_responses).
// Page-sized buffers fit a 64 KiB frame in 16; smaller zero-copy buffers limit the frame.
inline constexpr std::uint32_t kRxMaxDataSlots = kLegacyMaxSlots;

// What the engine knows about a received frame.
struct RxFrame {
    std::uint32_t len = 0;              // bytes
    bool csum_blank = false;            // checksum field not filled in (Linux CHECKSUM_PARTIAL)
    bool data_validated = false;        // checksum verified (Linux CHECKSUM_UNNECESSARY)
    std::uint8_t gso_type = gso::kNone; // gso::kTcpV4 / kTcpV6 for a GSO frame
    std::uint16_t gso_size = 0;         // MSS of a GSO frame
    // The frontend's hash of the frame (it enabled hashing over the control ring, and the
    // frame is of a type it asked for): a hash extra-info slot follows.
    std::optional<FlowHash> hash{};
};

// What the frontend negotiated (feature-gso-tcpv4 / feature-gso-tcpv6 in its xenstore area).
struct RxFeatures {
    bool gso_tcpv4 = false;
    bool gso_tcpv6 = false;
};

// Where the data of each posted buffer starts and how many bytes one buffer takes from there.
// Copy mode: offset 0 (or the XDP headroom), size 4096 - offset. Zero-copy modes: the buffer
// geometry the NIC queue was given. offset + size must stay within the page.
struct RxBufferGeometry {
    std::uint16_t offset = 0;
    std::uint16_t size = static_cast<std::uint16_t>(kPageSize);
};

// How the frontend lays out its RX buffers. Linux netfront posts whole pages; with
// dpnetback's sub-page extension (feature-rx-buffer-offset, docs/netfront.md) each request's
// `pad` field is its buffer's offset in the page and every buffer holds `buffer_size` bytes,
// so a page can carry two half-page buffers (the paper's section 6.3). The XDP headroom is
// left free at the start of every buffer.
struct RxBufferLayout {
    bool request_offsets = false;
    std::uint16_t buffer_size = static_cast<std::uint16_t>(kPageSize);
    std::uint16_t headroom = 0;
};

// The geometry every buffer of a layout shares apart from where it sits in its page: plan
// frames (plan_rx_frame, rx_layout) with it. bad_geometry follows when the headroom leaves
// no room.
constexpr RxBufferGeometry rx_uniform_geometry(RxBufferLayout layout) noexcept {
    if (layout.buffer_size == 0 || layout.buffer_size > kPageSize ||
        layout.headroom >= layout.buffer_size)
        return RxBufferGeometry{0, 0};
    return RxBufferGeometry{layout.headroom,
                            static_cast<std::uint16_t>(layout.buffer_size - layout.headroom)};
}

// The checks of one layout's RX requests (rx_request_buffer's verdicts), with the layout's part
// done once when it is built: build one per post or round, then ask it per request. `start`
// is where a request's buffer starts in its page (zero-copy binds the NIC buffer there),
// `buffer` where its data goes and how much of it; both nullopt when the request's offset
// puts the buffer beyond the page or the layout leaves no room (a broken or hostile
// frontend). `pad` is ignored without request_offsets (netif.h leaves it unused, and Linux
// netfront does not clear it).
class RxRequestCheck {
public:
    constexpr explicit RxRequestCheck(RxBufferLayout layout) noexcept
        : geo_(rx_uniform_geometry(layout)), pad_mask_(layout.request_offsets ? 0xFFFFU : 0U),
          max_start_(geo_.size != 0 ? static_cast<std::int32_t>(kPageSize - layout.buffer_size)
                                    : -1) {}

    // The layout leaves room for data (rx_uniform_geometry's size is not 0).
    constexpr bool layout_ok() const noexcept { return max_start_ >= 0; }
    constexpr RxBufferGeometry geometry() const noexcept { return geo_; }
    // Whether a request's offset matters (request_offsets): without, every request gets what
    // start(0) and buffer(0) give, which a caller may ask once for a whole burst.
    constexpr bool per_request() const noexcept { return pad_mask_ != 0; }

    constexpr std::optional<std::uint16_t> start(std::uint16_t pad) const noexcept {
        const auto at = static_cast<std::int32_t>(pad & pad_mask_);
        if (at > max_start_) return std::nullopt;
        return static_cast<std::uint16_t>(at);
    }
    constexpr std::optional<RxBufferGeometry> buffer(std::uint16_t pad) const noexcept {
        const auto at = start(pad);
        if (!at) return std::nullopt;
        return RxBufferGeometry{static_cast<std::uint16_t>(*at + geo_.offset), geo_.size};
    }

private:
    RxBufferGeometry geo_;
    std::uint32_t pad_mask_; // the request's pad is its offset, or ignored
    std::int32_t max_start_; // the last start whose buffer stays in the page; -1: none does
};

// The buffer one RX request names: its offset and size in the granted page (RxRequestCheck
// for a single request).
constexpr std::optional<RxBufferGeometry> rx_request_buffer(RxBufferLayout layout,
                                                            std::uint16_t pad) noexcept {
    return RxRequestCheck(layout).buffer(pad);
}

// One request's share of the frame: where in that request's page, and how many bytes.
struct RxChunk {
    std::uint16_t offset = 0;
    std::uint16_t len = 0;
};

// One RX ring slot to write: a response or, overlaying it, an extra-info slot.
struct RxEntry {
    enum class Kind : std::uint8_t { response, extra };
    Kind kind = Kind::response;
    RxResponse rsp{};
    ExtraInfo extra{};
};

enum class RxBuildError : std::uint8_t {
    none,
    empty_frame,        // len == 0: nothing to deliver
    bad_geometry,       // buffer size 0, or offset + size beyond the page
    bad_gso,            // GSO type not TCPv4/TCPv6, or GSO size 0
    gso_not_negotiated, // GSO frame the frontend cannot take: segment it or drop it
    too_many_slots,     // more than kRxMaxDataSlots data slots
    request_mismatch,   // req_ids does not match chunks (+1 for the GSO extra)
    chunk_mismatch,     // a chunk is empty or crosses its page, or chunks do not sum to len
    output_too_small,   // `out` cannot hold every entry
    bad_status,         // error responses need a negative NETIF_RSP_* status
};

const char* to_string(RxBuildError error) noexcept;

// The engine's view of a frame before it consumes any RX request.
struct RxPlan {
    RxBuildError error = RxBuildError::none;
    std::uint32_t data_slots = 0; // requests that receive data
    bool gso_extra = false;       // one more request carries the GSO extra-info slot
    bool hash_extra = false;      // one more carries the hash extra-info slot
    std::uint32_t requests = 0;   // data_slots + the extras: check this many are posted

    // Extra-info slots, right after the first data slot.
    std::uint32_t extras() const noexcept { return (gso_extra ? 1U : 0U) + (hash_extra ? 1U : 0U); }
};

// Plans a frame against the buffer geometry and the frontend's features. Fails (with
// requests == 0) for an empty frame, a bad geometry, a malformed or un-negotiated GSO frame,
// or a frame needing more than kRxMaxDataSlots data slots (segment or copy it instead).
RxPlan plan_rx_frame(const RxFrame& frame, RxBufferGeometry geometry,
                     const RxFeatures& features) noexcept;

// Splits `len` bytes into chunks of the given geometry (the last one shorter). Returns the
// number of chunks written, 0 if `out` is too small or the inputs are invalid.
std::uint32_t rx_layout(std::uint32_t len, RxBufferGeometry geometry,
                        std::span<RxChunk> out) noexcept;

struct RxBuildResult {
    RxBuildError error = RxBuildError::none;
    std::uint32_t entries = 0; // entries written to `out` (== req_ids.size() on success)
};

// --- one entry at a time (the engine writes each straight into its request's ring slot) -----

// Checksum flags of a frame's first data slot (Linux xenvif_rx_data_slot): CHECKSUM_PARTIAL
// is reported as csum_blank | data_validated (the data is good, the checksum field is not
// filled in), CHECKSUM_UNNECESSARY as data_validated.
constexpr std::uint16_t rx_csum_flags(const RxFrame& frame) noexcept {
    if (frame.csum_blank) return rxf::kCsumBlank | rxf::kDataValidated;
    if (frame.data_validated) return rxf::kDataValidated;
    return 0;
}

// The response for data chunk `i` of a frame's `n` chunks, in the request with id `id`: the
// checksum flags (and NETRXF_extra_info when extra-info slots follow) on the first, more_data
// on all but the last; the status is the chunk's length. For a frame planned with
// plan_rx_frame and chunks from rx_layout (or a buffer's own offset), nothing here can fail.
constexpr RxResponse rx_data_response(const RxFrame& frame, bool extras, std::uint32_t i,
                                      std::uint32_t n, std::uint16_t id, RxChunk chunk) noexcept {
    std::uint16_t flags = i + 1 < n ? rxf::kMoreData : 0;
    if (i == 0) flags |= rx_csum_flags(frame) | (extras ? rxf::kExtraInfo : 0);
    return RxResponse{id, chunk.offset, flags, static_cast<std::int16_t>(chunk.len)};
}

// The GSO extra-info slot of a GSO frame, right after its first data slot; MORE when the
// hash extra follows.
constexpr ExtraInfo rx_gso_extra(const RxFrame& frame) noexcept {
    ExtraInfo e{};
    e.type = extra::kGso;
    e.flags = frame.hash ? extra::kFlagMore : 0;
    e.u.gso.size = frame.gso_size;
    e.u.gso.type = frame.gso_type;
    e.u.gso.pad = 0;
    e.u.gso.features = 0;
    return e;
}

// The hash extra-info slot of a frame with a hash, after the GSO extra if any; the last.
inline ExtraInfo rx_hash_extra(const RxFrame& frame) noexcept {
    return frame.hash ? hash_extra(*frame.hash) : ExtraInfo{};
}

// The answer to a request whose buffer could not be filled (a failed copy, a NIC error):
// status NETIF_RSP_ERROR or NETIF_RSP_DROPPED, offset and flags 0, so that netfront recycles
// the buffer as a one-slot packet in error. The extra-info slot of a failed GSO frame gets
// one too: every request of the frame is answered on its own.
constexpr RxResponse rx_error_response(std::uint16_t id, std::int16_t status) noexcept {
    return RxResponse{id, 0, 0, status};
}

// --- a whole frame into an array (the reflector, tests) -------------------------------------

// Builds the ring entries for a delivered frame. `req_ids` are the ids of the requests used,
// in ring order (the GSO extra's request included); `chunks` are the data chunks in order.
RxBuildResult build_rx_responses(const RxFrame& frame, std::span<const std::uint16_t> req_ids,
                                 std::span<const RxChunk> chunks, const RxFeatures& features,
                                 std::span<RxEntry> out) noexcept;

// Answers every request a frame had consumed but could not fill (a failed copy, a NIC
// error): one response per request, status NETIF_RSP_ERROR or NETIF_RSP_DROPPED, flags 0,
// so that netfront recycles each buffer as a one-slot packet in error.
RxBuildResult build_rx_error_responses(std::span<const std::uint16_t> req_ids, std::int16_t status,
                                       std::span<RxEntry> out) noexcept;

// Writes `entries` at the ring's rsp_prod_pvt, in order. Writes nothing and returns false if
// the ring has fewer consumed-but-unanswered requests. Call push_responses() afterwards.
[[nodiscard]] bool put_rx_entries(RxBackRing& ring, std::span<const RxEntry> entries) noexcept;

} // namespace dpnb::netif
