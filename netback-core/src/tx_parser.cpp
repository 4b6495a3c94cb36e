// The TX parser's out-of-line parts: the failure-reason table, the limits check, the parser
// instantiated for the real back ring, and the TX response writers (Linux make_tx_response
// order). The parsing logic itself is the template in tx_parser.hpp.
#include "dpnb/netif/tx_parser.hpp"

#include <string>

#include "dpnb/util/reason_table.hpp"

namespace dpnb::netif {

namespace {

constexpr TxErrorInfo kTxErrors[] = {
#define DPNB_X(name, cls, counter, help) {TxError::name, TxErrorClass::cls, counter, help},
    DPNB_NETIF_TX_ERRORS(DPNB_X)
#undef DPNB_X
};

// The table is in enum order, so TxError n lives at index n - 1.
static_assert(reasons_in_enum_order(kTxErrors));

const TxErrorInfo* find(TxError error) noexcept {
    return find_reason(kTxErrors, error);
}

} // namespace

std::span<const TxErrorInfo> tx_error_table() noexcept {
    return kTxErrors;
}

const char* to_string(TxError error) noexcept {
    const TxErrorInfo* info = find(error);
    return info != nullptr ? info->name : "none";
}

const char* help(TxError error) noexcept {
    const TxErrorInfo* info = find(error);
    return info != nullptr ? info->help : "no error";
}

TxErrorClass classify(TxError error) noexcept {
    const TxErrorInfo* info = find(error);
    return info != nullptr ? info->cls : TxErrorClass::none;
}

const char* to_string(TxErrorClass cls) noexcept {
    switch (cls) {
    case TxErrorClass::none:
        return "none";
    case TxErrorClass::drop:
        return "drop";
    case TxErrorClass::fatal:
        return "fatal";
    }
    return "unknown";
}

const char* to_string(TxVerdict verdict) noexcept {
    switch (verdict) {
    case TxVerdict::empty:
        return "empty";
    case TxVerdict::packet:
        return "packet";
    case TxVerdict::control:
        return "control";
    case TxVerdict::drop:
        return "drop";
    case TxVerdict::fatal:
        return "fatal";
    }
    return "unknown";
}

Status validate(const TxLimits& limits) {
    if (limits.max_slots < kLegacyMaxSlots)
        return make_error(Errc::invalid_argument,
                          "tx max_slots " + std::to_string(limits.max_slots) +
                              " is below XEN_NETIF_NR_SLOTS_MIN (18): frontends may use 18");
    if (limits.fatal_slots < limits.max_slots)
        return make_error(Errc::invalid_argument,
                          "tx fatal_slots " + std::to_string(limits.fatal_slots) +
                              " is below max_slots " + std::to_string(limits.max_slots));
    if (limits.fatal_slots > kTxMaxSlots)
        return make_error(Errc::invalid_argument, "tx fatal_slots " +
                                                      std::to_string(limits.fatal_slots) +
                                                      " is above " + std::to_string(kTxMaxSlots));
    if (limits.max_packet_len < kEthHeaderLen || limits.max_packet_len > kMaxTxSize)
        return make_error(Errc::invalid_argument, "tx max_packet_len " +
                                                      std::to_string(limits.max_packet_len) +
                                                      " is outside [14, 65535]");
    if (limits.max_frame_len != 0 &&
        (limits.max_frame_len < kEthHeaderLen || limits.max_frame_len > limits.max_packet_len))
        return make_error(Errc::invalid_argument, "tx max_frame_len " +
                                                      std::to_string(limits.max_frame_len) +
                                                      " is outside [14, max_packet_len]");
    return ok();
}

TxParseResult parse_tx_packet(const TxBackRing& ring, RingIdx cons, RingIdx prod,
                              const TxLimits& limits, TxPacket& out) noexcept {
    return parse_tx_packet<TxBackRing>(ring, cons, prod, limits, out);
}

bool put_tx_responses(TxBackRing& ring, const TxPacket& pkt, std::int16_t status) noexcept {
    if (pkt.nr_slots == 0 || pkt.nr_slots > kTxMaxSlots || ring.unanswered() < pkt.ring_slots ||
        pkt.ring_slots != 1U + pkt.nr_extras + (pkt.nr_slots - 1U))
        return false;
    bool ok = ring.put_response(TxResponse{pkt.slots[0].id, status});
    for (unsigned i = 0; i < pkt.nr_extras; ++i)
        ok = ring.put_response(TxResponse{0, rsp::kNull}) && ok;
    for (unsigned i = 1; i < pkt.nr_slots; ++i)
        ok = ring.put_response(TxResponse{pkt.slots[i].id, status}) && ok;
    return ok; // always true after the check above
}

bool put_tx_slot_response(TxBackRing& ring, const TxPacket& pkt, unsigned slot,
                          std::int16_t status) noexcept {
    if (slot >= pkt.nr_slots || slot >= kTxMaxSlots) return false;
    const std::uint32_t needed = slot == 0 ? 1U + pkt.nr_extras : 1U;
    if (ring.unanswered() < needed) return false;
    bool ok = ring.put_response(TxResponse{pkt.slots[slot].id, status});
    if (slot == 0)
        for (unsigned i = 0; i < pkt.nr_extras; ++i)
            ok = ring.put_response(TxResponse{0, rsp::kNull}) && ok;
    return ok;
}

} // namespace dpnb::netif
