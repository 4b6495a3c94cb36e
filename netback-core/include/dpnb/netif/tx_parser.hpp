// The guest-transmit parser: turns the requests a frontend posted on its TX ring into one
// packet description (data slots and offload metadata), a multicast control request, or a
// verdict: drop (answer every slot with an error, the vif lives) or fatal (disable the vif).
//
// Behaviour follows Linux xen-netback (xenvif_tx_build_gops, xenvif_get_extras,
// xenvif_count_requests, xenvif_set_skb_gso); docs/protocol-core.md has the verdict table and
// where dpnetback differs. Every request is copied out of the ring exactly once (ring.hpp);
// every guest-supplied count and length is bounded before use; any ring content yields a
// verdict after at most one ring's worth of slots. Nothing here allocates.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/wire.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::netif {

// --- failure reasons: one table yields the enum, the class, the counter name, the help -----

// X(enumerator, class, counter name, help text)
#define DPNB_NETIF_TX_ERRORS(X)                                                                    \
    X(ring_overflow, fatal, "tx_ring_overflow",                                                    \
      "frontend's req_prod is more than a ring ahead of the unanswered requests, or behind "       \
      "req_cons")                                                                                  \
    X(extra_past_producer, fatal, "tx_extra_past_producer",                                        \
      "extra-info chain continues past the last published request")                                \
    X(chain_past_producer, fatal, "tx_chain_past_producer",                                        \
      "NETTXF_more_data on the last published request")                                            \
    X(too_many_slots_fatal, fatal, "tx_slot_fatal",                                                \
      "packet uses more data slots than fatal_slots: a malicious frontend")                        \
    X(slot_crosses_page, fatal, "tx_slot_crosses_page",                                            \
      "offset + size of a data slot runs past the 4096-byte page")                                 \
    X(bad_extra_type, fatal, "tx_bad_extra_type", "extra-info type 0 or unknown")                  \
    X(bad_gso_size, fatal, "tx_bad_gso_size", "GSO extra with size 0")                             \
    X(bad_gso_type, fatal, "tx_bad_gso_type", "GSO extra with a type other than TCPv4/TCPv6")      \
    X(too_many_slots, drop, "tx_slot_overflow", "packet uses more data slots than max_slots")      \
    X(slot_size_overflow, drop, "tx_slot_size_overflow",                                           \
      "a later slot is larger than what the first slot's size leaves (16-bit size overflow)")      \
    X(runt, drop, "tx_runt", "packet shorter than an Ethernet header (14 bytes)")                  \
    X(short_first_slot, drop, "tx_short_first_slot",                                               \
      "first slot holds less than an Ethernet header (14 bytes) and more data follows")            \
    X(too_long, drop, "tx_too_long", "packet longer than max_packet_len")                          \
    X(frame_too_long, drop, "tx_frame_too_long", "non-GSO packet longer than max_frame_len (MTU)") \
    X(duplicate_extra, drop, "tx_duplicate_extra", "two extra-info slots of the same type")        \
    X(bad_hash_type, drop, "tx_bad_hash_type", "hash extra with an unknown hash type")             \
    X(mcast_with_data, drop, "tx_mcast_with_data",                                                 \
      "multicast control request with NETTXF_more_data")                                           \
    X(mcast_conflict, drop, "tx_mcast_conflict",                                                   \
      "multicast control request carrying both an add and a del extra")

enum class TxError : std::uint8_t {
    none = 0,
#define DPNB_X(name, cls, counter, help) name,
    DPNB_NETIF_TX_ERRORS(DPNB_X)
#undef DPNB_X
};

enum class TxErrorClass : std::uint8_t { none, drop, fatal };

struct TxErrorInfo {
    TxError error;
    TxErrorClass cls;
    const char* name; // counter name, e.g. "tx_slot_overflow"
    const char* help; // one line for the CLI and the metrics HELP text
};

// Every reason in declaration order (TxError::none is not in the table).
std::span<const TxErrorInfo> tx_error_table() noexcept;
const char* to_string(TxError error) noexcept; // the counter name; "none" for TxError::none
const char* help(TxError error) noexcept;
TxErrorClass classify(TxError error) noexcept;
const char* to_string(TxErrorClass cls) noexcept;

// --- limits -----------------------------------------------------------------------------------

// Largest fatal_slots a TxPacket can describe. A packet beyond fatal_slots is fatal and
// needs no answer, so the description never needs more room than this.
inline constexpr unsigned kTxMaxSlots = 64;

struct TxLimits {
    unsigned max_slots = kLegacyMaxSlots; // data slots (first included) above this: drop
    unsigned fatal_slots = 20;            // data slots above this: fatal (Linux fatal_skb_slots)
    unsigned max_packet_len = kMaxTxSize; // bytes
    unsigned max_frame_len = 0;           // non-GSO packets only; 0 = no MTU limit
};

// max_frame_len for an interface MTU: the Ethernet header and one VLAN tag on top.
constexpr unsigned tx_max_frame_len_for_mtu(unsigned mtu) noexcept {
    return mtu + kEthHeaderLen + 4;
}

// Control-plane check of configured limits: 18 <= max_slots <= fatal_slots <= kTxMaxSlots,
// 14 <= max_packet_len <= 65535, max_frame_len 0 or within [14, max_packet_len].
// The parser itself only clamps fatal_slots into [1, kTxMaxSlots], so any limits give a verdict
// (a first slot is always read, so max_slots and fatal_slots below 1 act as 1).
Status validate(const TxLimits& limits);

// --- the packet description -------------------------------------------------------------------

struct TxSlot {
    GrantRef gref = 0;
    std::uint16_t offset = 0;
    std::uint16_t len = 0; // bytes of packet data in this slot (slot 0: total minus the rest)
    std::uint16_t id = 0;  // echoed in this slot's response
};

struct TxOffload {
    bool csum_blank = false;     // NETTXF_csum_blank: checksum to be filled in (partial)
    bool data_validated = false; // NETTXF_data_validated
    std::uint8_t gso_type = gso::kNone;
    std::uint16_t gso_size = 0; // MSS
    std::uint16_t gso_features = 0;
    bool has_hash = false;
    std::uint8_t hash_type = 0; // hash_type::*
    std::uint8_t hash_algorithm = 0;
    std::uint32_t hash_value = 0; // host order (the wire is little-endian)
};

enum class McastOp : std::uint8_t { none, add, del };

struct TxMcast {
    McastOp op = McastOp::none;
    std::array<std::uint8_t, 6> mac{};
};

// One packet as it sat on the ring, copied. Enough to build the packet, to answer every slot
// in ring order, and to answer each data slot on its own when its buffer is released.
struct TxPacket {
    RingIdx first_idx = 0;        // ring index of the first slot
    std::uint32_t total_len = 0;  // the first slot's size field: the whole packet
    std::uint16_t nr_slots = 0;   // data slots in `slots` (the first included)
    std::uint16_t nr_extras = 0;  // extra-info slots that followed the first slot
    std::uint32_t ring_slots = 0; // ring slots the packet occupies: 1 + nr_extras + nr_slots - 1
    TxOffload offload;
    TxMcast mcast;
    std::array<TxSlot, kTxMaxSlots> slots;

    std::uint16_t first_id() const noexcept { return slots[0].id; }
    bool is_gso() const noexcept { return offload.gso_type != gso::kNone; }
};

enum class TxVerdict : std::uint8_t {
    empty,   // no request to parse
    packet,  // a data packet: transmit it, answer each slot (OKAY/ERROR) when done
    control, // a multicast add/del: update the filter, answer with OKAY or ERROR
    drop,    // answer every slot with NETIF_RSP_ERROR, count `error`; the vif lives
    fatal,   // disable the vif; consume nothing, answer nothing
};

const char* to_string(TxVerdict verdict) noexcept;

struct TxParseResult {
    TxVerdict verdict = TxVerdict::empty;
    TxError error = TxError::none;
    // Ring slots the packet occupies; consume exactly these (unless fatal). For a fatal
    // verdict: the slots read before the violation was found (diagnostics only).
    std::uint32_t slots = 0;
};

// Any object that hands out copies of TX ring slots by index (TxBackRing; tests use
// instrumented ones). The parser reads every slot it looks at through exactly one call.
template <class S>
concept TxSlotSource = requires(const S& s, RingIdx i) {
    { s.copy_request(i) } -> std::same_as<TxRequest>;
    { s.copy_extra(i) } -> std::same_as<ExtraInfo>;
};

// Parses the packet that starts at `cons`, reading no slot at or beyond `prod`; `prod` and
// `cons` come from one BackRing::poll_requests() (its overflow check is repeated here).
// `out` is overwritten; for drop and control verdicts it still holds every id to answer.
template <TxSlotSource Source>
TxParseResult parse_tx_packet(const Source& ring, RingIdx cons, RingIdx prod,
                              const TxLimits& limits, TxPacket& out) noexcept;

TxParseResult parse_tx_packet(const TxBackRing& ring, RingIdx cons, RingIdx prod,
                              const TxLimits& limits, TxPacket& out) noexcept;

// --- responses --------------------------------------------------------------------------------

// Answers every slot of a parsed, control or dropped packet at rsp_prod_pvt, in the order
// Linux uses (make_tx_response): the first slot's id with `status`, NETIF_RSP_NULL for each
// extra-info slot, then each later data slot's id with `status`. Writes nothing and returns
// false if the ring has fewer consumed-but-unanswered requests than the packet's slots.
// Call push_responses() afterwards to publish.
[[nodiscard]] bool put_tx_responses(TxBackRing& ring, const TxPacket& pkt,
                                    std::int16_t status) noexcept;

// Answers data slot `slot` of `pkt` alone (when its buffer is released): slot 0 also answers
// the packet's extra-info slots with NETIF_RSP_NULL right after it, as Linux does. Writes
// nothing and returns false if `slot` is out of range or the ring lacks unanswered requests.
[[nodiscard]] bool put_tx_slot_response(TxBackRing& ring, const TxPacket& pkt, unsigned slot,
                                        std::int16_t status) noexcept;

// ==============================================================================================
// Implementation of the parser template.

namespace detail {

inline void record_drop(TxError& drop, TxError reason) noexcept {
    if (drop == TxError::none) drop = reason; // the first reason found is the one reported
}

// What follows a first request that chains extras or more data slots (parse_tx_packet read
// it into `first` and `out`): kept out of line, so that the one-slot case stays small.
template <TxSlotSource Source>
[[gnu::noinline]] TxParseResult parse_tx_chain(const Source& ring, RingIdx cons,
                                               std::uint32_t avail, const TxLimits& limits,
                                               const TxRequest& first, TxPacket& out) noexcept {
    // The only clamp: the description has room for kTxMaxSlots slots, and the first slot is
    // always read. validate() keeps configured limits far from both ends.
    const unsigned fatal_slots =
        limits.fatal_slots < 1
            ? 1U
            : (limits.fatal_slots < kTxMaxSlots ? limits.fatal_slots : kTxMaxSlots);
    const auto fatal = [&](TxError e, std::uint32_t used) {
        return TxParseResult{TxVerdict::fatal, e, used};
    };
    std::uint32_t used = 1;
    TxError drop = TxError::none;

    // Extra-info slots (xenvif_get_extras): as many as the frontend chains with
    // XEN_NETIF_EXTRA_FLAG_MORE, bounded by the published requests.
    if (first.flags & txf::kExtraInfo) {
        unsigned seen = 0; // bit per extra type
        for (;;) {
            if (used == avail) return fatal(TxError::extra_past_producer, used);
            const ExtraInfo extra = ring.copy_extra(cons + used);
            ++used;
            ++out.nr_extras;
            if (extra.type == extra::kNone || extra.type >= extra::kTypeMax)
                return fatal(TxError::bad_extra_type, used);
            const bool duplicate = (seen & (1U << extra.type)) != 0;
            seen |= 1U << extra.type;
            switch (extra.type) {
            case extra::kGso:
                // Linux (xenvif_set_skb_gso) disables the vif for these; so do we, for every
                // GSO extra as it is read, data packet or not.
                if (extra.u.gso.size == 0) return fatal(TxError::bad_gso_size, used);
                if (extra.u.gso.type != gso::kTcpV4 && extra.u.gso.type != gso::kTcpV6)
                    return fatal(TxError::bad_gso_type, used);
                if (!duplicate) {
                    out.offload.gso_type = extra.u.gso.type;
                    out.offload.gso_size = extra.u.gso.size;
                    out.offload.gso_features = extra.u.gso.features;
                }
                break;
            case extra::kMcastAdd:
            case extra::kMcastDel:
                if (!duplicate && out.mcast.op == McastOp::none) {
                    out.mcast.op = extra.type == extra::kMcastAdd ? McastOp::add : McastOp::del;
                    for (std::size_t i = 0; i < out.mcast.mac.size(); ++i)
                        out.mcast.mac[i] = extra.u.mcast.addr[i];
                } else if (!duplicate) {
                    detail::record_drop(drop, TxError::mcast_conflict);
                }
                break;
            case extra::kHash:
                if (extra.u.hash.type >= hash_type::kMax) {
                    detail::record_drop(drop, TxError::bad_hash_type);
                } else if (!duplicate) {
                    out.offload.has_hash = true;
                    out.offload.hash_type = extra.u.hash.type;
                    out.offload.hash_algorithm = extra.u.hash.algorithm;
                    out.offload.hash_value =
                        static_cast<std::uint32_t>(extra.u.hash.value[0]) |
                        static_cast<std::uint32_t>(extra.u.hash.value[1]) << 8 |
                        static_cast<std::uint32_t>(extra.u.hash.value[2]) << 16 |
                        static_cast<std::uint32_t>(extra.u.hash.value[3]) << 24;
                }
                break;
            default:
                break;
            }
            if (duplicate) detail::record_drop(drop, TxError::duplicate_extra);
            if (!(extra.flags & extra::kFlagMore)) break;
        }
    }

    // A multicast add/del is a control request: the frontend has nothing to transmit.
    // Linux answers it and leaves any data slots to be parsed as the next packet; a request
    // that carries data is malformed, so dpnetback consumes the chain and drops it whole.
    const bool control = out.mcast.op != McastOp::none;
    if (control && (first.flags & txf::kMoreData))
        detail::record_drop(drop, TxError::mcast_with_data);

    // Data slots (xenvif_count_requests). `rest` sums the later slots' sizes; 32 bits cannot
    // overflow with at most kTxMaxSlots slots of 16 bits each.
    std::uint32_t rest = 0;
    bool size_overflow = false;
    bool more = (first.flags & txf::kMoreData) != 0;
    while (more) {
        if (used == avail) return fatal(TxError::chain_past_producer, used);
        if (out.nr_slots >= fatal_slots) return fatal(TxError::too_many_slots_fatal, used);
        const TxRequest req = ring.copy_request(cons + used);
        ++used;
        if (out.nr_slots >= limits.max_slots) detail::record_drop(drop, TxError::too_many_slots);
        // Buggy frontends overflow the 16-bit size of a packet >= 64 KiB; later slots then
        // look larger than the packet. Not fatal (Linux keeps such guests alive): drop.
        if (!size_overflow && req.size > out.total_len - rest) {
            size_overflow = true;
            detail::record_drop(drop, TxError::slot_size_overflow);
        }
        rest += req.size;
        if (static_cast<std::uint32_t>(req.offset) + req.size > kPageSize)
            return fatal(TxError::slot_crosses_page, used);
        out.slots[out.nr_slots] = TxSlot{req.gref, req.offset, req.size, req.id};
        ++out.nr_slots;
        more = (req.flags & txf::kMoreData) != 0;
    }

    out.ring_slots = used;

    if (!size_overflow) {
        const std::uint32_t first_len = out.total_len - rest;
        out.slots[0].len = static_cast<std::uint16_t>(first_len);
        // The first slot obeys the page bound too, once its own length is known; a control
        // request's first slot carries no data and is not checked (nor is it in Linux).
        if (!control && static_cast<std::uint32_t>(first.offset) + first_len > kPageSize)
            return fatal(TxError::slot_crosses_page, used);
    }

    if (!control) {
        if (out.total_len < kEthHeaderLen)
            detail::record_drop(drop, TxError::runt);
        else if (!size_overflow && out.slots[0].len < kEthHeaderLen)
            // Linux checks the first slot's own length against ETH_HLEN (after
            // xenvif_count_requests) and netfront copies an skb rather than send a shorter
            // first slot; a zero-length first slot with more data is the extreme case.
            detail::record_drop(drop, TxError::short_first_slot);
        if (out.total_len > limits.max_packet_len) detail::record_drop(drop, TxError::too_long);
        if (!out.is_gso() && limits.max_frame_len != 0 && out.total_len > limits.max_frame_len)
            detail::record_drop(drop, TxError::frame_too_long);
    }

    if (drop != TxError::none) return {TxVerdict::drop, drop, used};
    return {control ? TxVerdict::control : TxVerdict::packet, TxError::none, used};
}

} // namespace detail

template <TxSlotSource Source>
[[gnu::always_inline]] inline TxParseResult parse_tx_packet(const Source& ring, RingIdx cons,
                                                            RingIdx prod, const TxLimits& limits,
                                                            TxPacket& out) noexcept {
    constexpr std::uint32_t kRing = kTxRingSize;
    const std::uint32_t avail = prod - cons;
    if (avail > kRing) return {TxVerdict::fatal, TxError::ring_overflow, 0};
    if (avail == 0) return {TxVerdict::empty, TxError::none, 0};

    out.first_idx = cons;
    out.nr_extras = 0;
    out.offload = TxOffload{};
    out.mcast = TxMcast{};

    const TxRequest first = ring.copy_request(cons);
    out.total_len = first.size;
    out.offload.csum_blank = (first.flags & txf::kCsumBlank) != 0;
    out.offload.data_validated = (first.flags & txf::kDataValidated) != 0;
    out.slots[0] = TxSlot{first.gref, first.offset, 0, first.id};
    out.nr_slots = 1;
    if ((first.flags & (txf::kExtraInfo | txf::kMoreData)) != 0) {
        out.ring_slots = 0;
        return detail::parse_tx_chain(ring, cons, avail, limits, first, out);
    }

    // One data slot and nothing chained to it (most packets): parse_tx_chain's checks for
    // that case alone, in their order; the slot holds the whole packet.
    out.ring_slots = 1;
    out.slots[0].len = first.size;
    if (static_cast<std::uint32_t>(first.offset) + first.size > kPageSize)
        return {TxVerdict::fatal, TxError::slot_crosses_page, 1};
    TxError drop = TxError::none;
    if (first.size < kEthHeaderLen)
        drop = TxError::runt;
    else if (first.size > limits.max_packet_len)
        drop = TxError::too_long;
    else if (limits.max_frame_len != 0 && first.size > limits.max_frame_len)
        drop = TxError::frame_too_long;
    if (drop != TxError::none) return {TxVerdict::drop, drop, 1};
    return {TxVerdict::packet, TxError::none, 1};
}

} // namespace dpnb::netif
