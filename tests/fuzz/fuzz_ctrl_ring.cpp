// libFuzzer target for the netif control ring's backend side: the input is a control ring
// page as a hostile frontend could leave it, plus the guest page every grant copy reads. The
// backend loop of pmd-glue's CtrlServer (poll, copy the request, plan, grant-copy, finish,
// answer, publish) runs over the ring in budgeted rounds through the real ring view and
// ctrl::Handler; the table operations of static grants are played by the input. After every
// request the handler's invariants are checked; a violation traps:
//   * every response answers its request (id, type) with SUCCESS, NOT_SUPPORTED or
//     INVALID_PARAMETER, one response per request;
//   * every copy a plan asks for stays in one page and in the copy buffer;
//   * the hash state stays in bounds: algorithm NONE/TOEPLITZ, the four flag bits, at most
//     128 mapping entries, each below the vif's queues, nothing set past the table;
//   * a refused message changes no state; the counters add up.
//
// Input layout (little-endian; tests/fuzz/make_seeds_ctrl.py writes seeds in it):
//   [0]      queues - 1 (mod 64)     [1]  bit 0: static grants negotiated
//   [2..3]   req_prod - start        [4..7] start: req_cons = rsp_prod_pvt = start
//   [8]      budget: requests answered per round (0 = 1)
//   [9]      bits for the persistent-grant table's verdicts (ADD/DEL refused, ...)
//   [10..15] reserved
//   [16..]   ring requests, 16 bytes each, from ring index `start` on (at most 128), then
//            the guest page (4096 bytes, zero padded). A copy from a grant reference with
//            bit 0 set fails, as a reference the guest never granted.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "dpnb/netif/ctrl_handler.hpp"
#include "dpnb/netif/ring.hpp"
#include "fuzz_support.hpp"

namespace nf = dpnb::netif;
namespace ctrl = dpnb::netif::ctrl;

namespace {

constexpr std::size_t kHeader = 16;
constexpr std::uint32_t kRingSize = ctrl::BackRing::kSize;

using dpnb::fuzz::le16;
using dpnb::fuzz::le32;
using dpnb::fuzz::Page;

ctrl::Response read_response(const Page& page, nf::RingIdx idx) {
    ctrl::Response rsp;
    std::memcpy(&rsp,
                page.bytes + sizeof(nf::SharedRingHeader) +
                    (idx & (kRingSize - 1)) * ctrl::RingProto::kEntrySize,
                sizeof(rsp));
    return rsp;
}

void check_state(const nf::HashConfig& s, std::uint32_t queues) {
    CHECK(s.algorithm == nf::hash_alg::kNone || s.algorithm == nf::hash_alg::kToeplitz);
    CHECK((s.flags & ~nf::hash_flag::kAll) == 0);
    CHECK(s.mapping_size <= nf::kMaxHashMappingSize);
    for (std::uint32_t k = 0; k < nf::kMaxHashMappingSize; ++k) {
        if (k < s.mapping_size)
            CHECK(s.mapping[k] < queues);
        else
            CHECK(s.mapping[k] == 0);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < kHeader) return 0;
    const std::uint32_t queues = 1U + data[0] % 64U;
    const bool static_grants = (data[1] & 1U) != 0;
    const std::uint32_t prod_delta = le16(data + 2);
    const nf::RingIdx start = le32(data + 4);
    const unsigned budget = data[8] == 0 ? 1U : data[8];
    const std::uint8_t table_bits = data[9];

    auto ring_page = std::make_unique<Page>();
    auto guest_page = std::make_unique<Page>();
    const std::size_t nreq =
        std::min<std::size_t>((size - kHeader) / sizeof(ctrl::Request), kRingSize);
    dpnb::fuzz::fill_ring(*ring_page, kRingSize, ctrl::RingProto::kEntrySize, start, prod_delta,
                          data + kHeader, nreq);
    std::memset(guest_page->bytes, 0, sizeof(guest_page->bytes));
    const std::size_t page_from = kHeader + nreq * sizeof(ctrl::Request);
    if (size > page_from)
        std::memcpy(guest_page->bytes, data + page_from,
                    std::min<std::size_t>(size - page_from, nf::kPageSize));

    auto attached = ctrl::BackRing::attach_at(ring_page->bytes, start);
    CHECK(attached.has_value());
    ctrl::BackRing ring = *attached;
    ctrl::Handler h(ctrl::HandlerConfig{queues, static_grants, 1024});
    std::array<std::byte, ctrl::kCopyBufferSize> buffer{};
    std::uint64_t answered = 0;

    // The grant copy: bytes from the start of the guest page, or a failure.
    auto copy = [&](const ctrl::GuestCopy& c) -> bool {
        CHECK(c.len != 0 && c.len <= buffer.size());
        CHECK(static_cast<std::uint32_t>(c.offset) + c.len <= nf::kPageSize);
        if ((c.gref & 1U) != 0) return false;
        std::memcpy(buffer.data(), guest_page->bytes + c.offset, c.len);
        return true;
    };

    // Each round answers at most `budget` requests and publishes, as the server does; the
    // ring can never hold more than a ring of unanswered requests, so this ends.
    for (int round = 0; round <= static_cast<int>(kRingSize); ++round) {
        const nf::RequestWindow w = ring.poll_requests();
        if (w.overflow) {
            CHECK(prod_delta > kRingSize);
            break;
        }
        if (w.available == 0) break;
        const std::uint32_t n = std::min<std::uint32_t>(w.available, budget);
        for (std::uint32_t k = 0; k < n; ++k) {
            const ctrl::Request req = ring.copy_request(w.cons + k);
            ring.consume(1);
            const nf::HashConfig before = h.hash();
            const std::uint64_t version = h.hash_version();
            const ctrl::Plan p = h.begin(req);
            ctrl::Response rsp = p.rsp;
            switch (p.step) {
            case ctrl::Step::answer:
                break;
            case ctrl::Step::copy_key:
            case ctrl::Step::copy_mapping: {
                const bool ok = copy(p.copy);
                const ctrl::Answer a = h.finish_hash(p, ok, std::span(buffer.data(), p.copy.len));
                CHECK((a.rsp.status == ctrl::kStatusSuccess) == (a.error == ctrl::CtrlError::none));
                rsp = a.rsp;
                break;
            }
            case ctrl::Step::add_grefs:
            case ctrl::Step::del_grefs: {
                CHECK(static_grants);
                CHECK(p.entries >= 1 && p.entries <= ctrl::kMaxGrefsPerMessage);
                CHECK(p.copy.len == p.entries * sizeof(ctrl::Gref));
                ctrl::CtrlError e = ctrl::CtrlError::none;
                if (!copy(p.copy)) {
                    e = ctrl::CtrlError::gref_list_unreadable;
                } else {
                    std::array<ctrl::Gref, ctrl::kMaxGrefsPerMessage> list;
                    std::memcpy(list.data(), buffer.data(), p.copy.len);
                    if (p.step == ctrl::Step::add_grefs)
                        e = ctrl::Handler::check_gref_list(std::span(list.data(), p.entries));
                    if (e == ctrl::CtrlError::none && ((table_bits >> (k % 8)) & 1U) != 0)
                        e = ctrl::CtrlError::gref_refused;
                }
                rsp = h.finish_grefs(p, e, table_bits).rsp;
                CHECK(p.step == ctrl::Step::del_grefs ? rsp.data <= p.entries : rsp.data == 0);
                CHECK((rsp.status == ctrl::kStatusSuccess) == (e == ctrl::CtrlError::none));
                break;
            }
            }
            CHECK(rsp.id == req.id && rsp.type == req.type);
            CHECK(rsp.status == ctrl::kStatusSuccess || rsp.status == ctrl::kStatusNotSupported ||
                  rsp.status == ctrl::kStatusInvalidParameter);
            if (rsp.status != ctrl::kStatusSuccess) {
                CHECK(h.hash() == before);
                CHECK(h.hash_version() == version);
            }
            CHECK((h.hash() == before) == (h.hash_version() == version));
            check_state(h.hash(), queues);
            CHECK(ring.put_response(rsp));
            ++answered;
            CHECK(read_response(*ring_page, ring.rsp_prod_pvt() - 1U).id == req.id);
        }
        CHECK(ring.unanswered() == 0);
        (void)ring.push_responses();
    }
    const ctrl::CtrlCounters& c = h.counters();
    CHECK(c.requests == answered);
    CHECK(answered <= (prod_delta > kRingSize ? 0U : prod_delta));
    std::uint64_t by_reason = 0;
    for (std::uint64_t e : c.errors)
        by_reason += e;
    CHECK(by_reason == c.invalid);
    CHECK(c.invalid + c.not_supported <= c.requests);
    return 0;
}
