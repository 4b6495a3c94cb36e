// libFuzzer target for the TX parser: the input is a whole TX ring page as a hostile
// frontend could leave it, plus the backend's limits. The backend loop (poll, parse,
// consume, answer) runs over the ring until it is empty or a fatal verdict stops it, and
// every step is checked against the parser's invariants; a violation traps.
//
// Input layout (little-endian; tests/fuzz/make_seeds_tx.py writes seeds in it):
//   [0]      max_slots            [1]      fatal_slots (may be invalid: the parser clamps)
//   [2..3]   max_packet_len       [4..5]   max_frame_len (0 = none)
//   [6..7]   req_prod - start     [8..11]  start: req_cons = rsp_prod_pvt = start
//   [12]     bit 0: answer slot by slot (last slot first) instead of whole packets
//   [13..15] reserved
//   [16..]   ring slots, 12 bytes each, from ring index `start` on (at most 256 slots)
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/tx_parser.hpp"
#include "fuzz_support.hpp"

namespace nf = dpnb::netif;

namespace {

constexpr std::size_t kHeader = 16;

using dpnb::fuzz::le16;
using dpnb::fuzz::le32;
using dpnb::fuzz::Page;

// Reads through the real ring and records which slots were read and how often.
class CheckedSource {
public:
    CheckedSource(const nf::TxBackRing& ring, nf::RingIdx cons, std::uint32_t avail)
        : ring_(ring), cons_(cons), avail_(avail) {}
    nf::TxRequest copy_request(nf::RingIdx idx) const {
        note(idx);
        return ring_.copy_request(idx);
    }
    nf::ExtraInfo copy_extra(nf::RingIdx idx) const {
        note(idx);
        return ring_.copy_extra(idx);
    }
    std::uint32_t distinct_reads() const { return distinct_; }

private:
    void note(nf::RingIdx idx) const {
        CHECK(idx - cons_ < avail_);       // never at or past req_prod
        CHECK(reads_[idx - cons_]++ == 0); // never the same slot twice
        ++distinct_;
    }
    const nf::TxBackRing& ring_;
    nf::RingIdx cons_;
    std::uint32_t avail_;
    mutable std::uint8_t reads_[nf::kTxRingSize] = {};
    mutable std::uint32_t distinct_ = 0;
};

nf::TxResponse read_response(const Page& page, nf::RingIdx idx) {
    nf::TxResponse rsp;
    std::memcpy(&rsp, page.bytes + sizeof(nf::SharedRingHeader) + (idx & 255U) * nf::kTxEntrySize,
                sizeof(rsp));
    return rsp;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < kHeader) return 0;
    nf::TxLimits limits;
    limits.max_slots = data[0];
    limits.fatal_slots = data[1];
    limits.max_packet_len = le16(data + 2);
    limits.max_frame_len = le16(data + 4);
    const std::uint32_t prod_delta = le16(data + 6);
    const nf::RingIdx start = le32(data + 8);
    const bool per_slot = (data[12] & 1) != 0;
    const unsigned fatal_cap = limits.fatal_slots < 1                 ? 1U
                               : limits.fatal_slots < nf::kTxMaxSlots ? limits.fatal_slots
                                                                      : nf::kTxMaxSlots;

    auto page = std::make_unique<Page>();
    dpnb::fuzz::fill_ring(*page, nf::kTxRingSize, nf::kTxEntrySize, start, prod_delta,
                          data + kHeader, (size - kHeader) / nf::kTxEntrySize);

    auto attached = nf::TxBackRing::attach_at(page->bytes, start);
    CHECK(attached.has_value());
    nf::TxBackRing ring = *attached;
    const std::uint32_t published = prod_delta;
    std::uint32_t consumed = 0;

    // Each iteration consumes at least one slot or stops, so this bound is never reached.
    for (int guard = 0; guard <= static_cast<int>(nf::kTxRingSize); ++guard) {
        CHECK(guard < static_cast<int>(nf::kTxRingSize) + 1);
        const nf::RequestWindow w = ring.poll_requests();
        CHECK(w.overflow || w.available == published - consumed);
        CheckedSource src(ring, w.cons, w.overflow ? 0U : w.available);
        nf::TxPacket pkt;
        const nf::TxParseResult r = nf::parse_tx_packet(src, w.cons, w.prod, limits, pkt);

        // The real ring gives the same answer as the checked source (no hidden state).
        nf::TxPacket pkt2;
        const nf::TxParseResult r2 = nf::parse_tx_packet(ring, w.cons, w.prod, limits, pkt2);
        CHECK(r.verdict == r2.verdict && r.error == r2.error && r.slots == r2.slots);

        if (w.overflow) {
            CHECK(r.verdict == nf::TxVerdict::fatal && r.error == nf::TxError::ring_overflow);
            CHECK(src.distinct_reads() == 0);
            break;
        }
        if (r.verdict == nf::TxVerdict::empty) {
            CHECK(w.available == 0 && r.error == nf::TxError::none && r.slots == 0);
            break;
        }
        if (r.verdict == nf::TxVerdict::fatal) {
            CHECK(nf::classify(r.error) == nf::TxErrorClass::fatal);
            CHECK(r.slots <= w.available);
            CHECK(src.distinct_reads() == r.slots);
            break;
        }

        // packet, control or drop: a packet description whose every slot can be answered.
        CHECK(r.slots >= 1 && r.slots <= w.available);
        CHECK(src.distinct_reads() == r.slots);
        CHECK(pkt.first_idx == w.cons);
        CHECK(pkt.ring_slots == r.slots);
        CHECK(pkt.nr_slots >= 1 && pkt.nr_slots <= fatal_cap);
        CHECK(r.slots == 1U + pkt.nr_extras + (pkt.nr_slots - 1U));
        CHECK(pkt2.ring_slots == pkt.ring_slots && pkt2.nr_slots == pkt.nr_slots);
        if (r.verdict == nf::TxVerdict::drop) {
            CHECK(nf::classify(r.error) == nf::TxErrorClass::drop);
        } else {
            CHECK(r.error == nf::TxError::none);
        }
        if (r.verdict == nf::TxVerdict::packet) {
            CHECK(pkt.mcast.op == nf::McastOp::none);
            CHECK(pkt.nr_slots <= limits.max_slots || pkt.nr_slots == 1);
            CHECK(pkt.total_len >= nf::kEthHeaderLen && pkt.total_len <= limits.max_packet_len);
            CHECK(pkt.slots[0].len >= nf::kEthHeaderLen);
            CHECK(pkt.is_gso() || limits.max_frame_len == 0 ||
                  pkt.total_len <= limits.max_frame_len);
            if (pkt.is_gso())
                CHECK(pkt.offload.gso_size != 0 && (pkt.offload.gso_type == nf::gso::kTcpV4 ||
                                                    pkt.offload.gso_type == nf::gso::kTcpV6));
            std::uint32_t sum = 0;
            for (unsigned i = 0; i < pkt.nr_slots; ++i) {
                CHECK(pkt.slots[i].offset + pkt.slots[i].len <= nf::kPageSize);
                sum += pkt.slots[i].len;
            }
            CHECK(sum == pkt.total_len);
        }
        if (r.verdict == nf::TxVerdict::control)
            CHECK(pkt.mcast.op != nf::McastOp::none && pkt.nr_slots == 1);

        ring.consume(r.slots);
        consumed += r.slots;
        CHECK(consumed <= published);

        // Answer, then check the response slots: first id, NULL per extra, later ids.
        const nf::RingIdx rsp_start = ring.rsp_prod_pvt();
        const std::int16_t status =
            r.verdict == nf::TxVerdict::drop ? nf::rsp::kError : nf::rsp::kOkay;
        if (per_slot) {
            for (unsigned i = pkt.nr_slots; i-- > 0;)
                CHECK(nf::put_tx_slot_response(ring, pkt, i, status));
            CHECK(!nf::put_tx_slot_response(ring, pkt, 0, status));
            // Last slot first: its response leads; slot 0 and its NULLs come last.
            CHECK(read_response(*page, ring.rsp_prod_pvt() - 1U - pkt.nr_extras).id ==
                  pkt.first_id());
        } else {
            CHECK(nf::put_tx_responses(ring, pkt, status));
            CHECK(read_response(*page, rsp_start).id == pkt.first_id());
            for (unsigned i = 0; i < pkt.nr_extras; ++i)
                CHECK(read_response(*page, rsp_start + 1 + i).status == nf::rsp::kNull);
            for (unsigned i = 1; i < pkt.nr_slots; ++i)
                CHECK(read_response(*page, rsp_start + pkt.nr_extras + i).id == pkt.slots[i].id);
        }
        CHECK(ring.unanswered() == 0);
        CHECK(ring.rsp_prod_pvt() == ring.req_cons());
        ring.push_responses();
    }
    CHECK(consumed <= published);
    return 0;
}
