// dpnb-protocol-demo: the netif protocol core at work, narrated. A frontend and a backend
// share TX and RX ring pages in one process (grant references are page numbers of a small
// "guest memory"); the frontend transmits packets, a hostile frontend breaks the rules, and
// the backend receives a multi-slot frame into posted buffers. Every step prints what the
// protocol core decided. Exit status 0 when every check held.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/rx_builder.hpp"
#include "dpnb/netif/tx_parser.hpp"

namespace nf = dpnb::netif;

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    std::printf("    %s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) ++failures;
}

// Page-aligned memory: the two ring pages and the guest's buffer pages.
struct Pages {
    explicit Pages(std::size_t n) : count(n) {
        base = static_cast<std::byte*>(std::aligned_alloc(nf::kPageSize, n * nf::kPageSize));
        std::memset(base, 0, n * nf::kPageSize);
    }
    ~Pages() { std::free(base); }
    Pages(const Pages&) = delete;
    Pages& operator=(const Pages&) = delete;
    std::byte* page(std::size_t i) const { return base + i * nf::kPageSize; }
    std::byte* base;
    std::size_t count;
};

constexpr std::size_t kGuestPages = 16;

// The backend's TX loop for one burst: parse every packet, gather its bytes from the guest
// pages named by its grant references, answer every slot.
void backend_tx_burst(nf::TxBackRing& ring, const Pages& guest, const nf::TxLimits& limits,
                      bool& vif_disabled) {
    nf::RequestWindow w = ring.poll_requests();
    if (w.overflow) {
        std::printf("  backend: req_prod %u is impossible: fatal, vif disabled\n", w.prod);
        vif_disabled = true;
        return;
    }
    nf::TxPacket pkt;
    while (w.cons != w.prod) {
        const nf::TxParseResult r = nf::parse_tx_packet(ring, w.cons, w.prod, limits, pkt);
        if (r.verdict == nf::TxVerdict::fatal) {
            std::printf("  backend: fatal %s (%s): vif disabled\n", nf::to_string(r.error),
                        nf::help(r.error));
            vif_disabled = true;
            return;
        }
        ring.consume(r.slots);
        w.cons += r.slots;
        std::int16_t status = nf::rsp::kOkay;
        if (r.verdict == nf::TxVerdict::drop) {
            std::printf("  backend: drop %s (%s): %u slots answered with NETIF_RSP_ERROR\n",
                        nf::to_string(r.error), nf::help(r.error), r.slots);
            status = nf::rsp::kError;
        } else if (r.verdict == nf::TxVerdict::packet) {
            std::vector<std::byte> frame;
            for (unsigned i = 0; i < pkt.nr_slots; ++i) {
                const nf::TxSlot& s = pkt.slots[i];
                const std::byte* src = guest.page(s.gref % kGuestPages) + s.offset;
                frame.insert(frame.end(), src, src + s.len);
            }
            std::printf("  backend: packet of %u bytes in %u data slot(s)%s%s, sent to the NIC\n",
                        pkt.total_len, pkt.nr_slots, pkt.is_gso() ? ", GSO TCPv4" : "",
                        pkt.offload.csum_blank ? ", checksum to fill" : "");
        }
        if (!nf::put_tx_responses(ring, pkt, status)) check(false, "TX responses fit the ring");
    }
    if (ring.push_responses()) std::printf("  backend: notify the frontend (TX)\n");
}

void frontend_send(nf::TxFrontRing& ring, Pages& guest, std::uint16_t& next_id,
                   const std::vector<std::uint16_t>& slot_sizes, bool gso) {
    std::uint32_t total = 0;
    for (auto s : slot_sizes)
        total += s;
    for (std::size_t i = 0; i < slot_sizes.size(); ++i) {
        const nf::GrantRef gref = next_id % kGuestPages;
        std::memset(guest.page(gref), static_cast<int>(0x40 + i), slot_sizes[i]);
        nf::TxRequest req{};
        req.gref = gref;
        req.offset = 0;
        req.id = next_id++;
        req.size = static_cast<std::uint16_t>(i == 0 ? total : slot_sizes[i]);
        req.flags = static_cast<std::uint16_t>(
            (i + 1 < slot_sizes.size() ? nf::txf::kMoreData : 0) |
            (i == 0 && gso ? nf::txf::kExtraInfo | nf::txf::kCsumBlank : 0));
        (void)ring.put_request(req);
        if (i == 0 && gso) {
            nf::ExtraInfo extra{};
            extra.type = nf::extra::kGso;
            extra.u.gso.size = 1448;
            extra.u.gso.type = nf::gso::kTcpV4;
            (void)ring.put_extra(extra);
        }
    }
}

std::uint32_t frontend_collect_tx(nf::TxFrontRing& ring) {
    nf::ResponseWindow w = ring.poll_responses();
    std::uint32_t errors = 0;
    for (std::uint32_t i = 0; i < w.available; ++i) {
        const nf::TxResponse rsp = ring.copy_response(w.cons + i);
        if (rsp.status == nf::rsp::kError || rsp.status == nf::rsp::kDropped) ++errors;
    }
    ring.consume_responses(w.available);
    std::printf("  frontend: %u TX responses, %u of them errors\n", w.available, errors);
    return errors;
}

void demo_tx() {
    std::printf("\n== Guest transmit: a well-behaved frontend\n");
    Pages ring_page(1), guest(kGuestPages);
    auto front = nf::TxFrontRing::init(ring_page.page(0));
    auto back = nf::TxBackRing::attach(ring_page.page(0));
    if (!front || !back) return check(false, "rings attach");
    std::uint16_t id = 0;
    frontend_send(*front, guest, id, {60}, false);
    frontend_send(*front, guest, id, {1000, 2000, 1500}, false);
    frontend_send(*front, guest, id, {2048, 4096, 4096}, true);
    std::printf("  frontend: 3 packets posted, notify=%d\n", front->push_requests());
    bool disabled = false;
    backend_tx_burst(*back, guest, nf::TxLimits{}, disabled);
    check(!disabled && frontend_collect_tx(*front) == 0, "every packet transmitted and answered");

    std::printf("\n== Guest transmit: a frontend that breaks the rules\n");
    frontend_send(*front, guest, id, {10}, false); // a runt: shorter than an Ethernet header
    frontend_send(*front, guest, id, std::vector<std::uint16_t>(19, 64), false);
    (void)front->push_requests();
    backend_tx_burst(*back, guest, nf::TxLimits{}, disabled);
    check(!disabled && frontend_collect_tx(*front) == 20,
          "runt and 19-slot packet dropped, vif alive");

    nf::TxRequest bad{};
    bad.gref = 1;
    bad.offset = 4000;
    bad.size = 200; // offset + size runs past the page: the backend must never touch that
    bad.id = id++;
    (void)front->put_request(bad);
    (void)front->push_requests();
    backend_tx_burst(*back, guest, nf::TxLimits{}, disabled);
    check(disabled, "a slot crossing its page disables the vif");
}

void demo_rx() {
    std::printf("\n== Guest receive: a 5000-byte frame into posted buffers\n");
    Pages ring_page(1), guest(kGuestPages);
    auto front = nf::RxFrontRing::init(ring_page.page(0));
    auto back = nf::RxBackRing::attach(ring_page.page(0));
    if (!front || !back) return check(false, "rings attach");
    for (std::uint16_t i = 0; i < 8; ++i) {
        nf::RxRequest req{};
        req.id = i; // Linux netfront: id = ring index
        req.gref = i;
        (void)front->put_request(req);
    }
    (void)front->push_requests();
    std::printf("  frontend: 8 RX buffers posted\n");

    std::vector<std::byte> frame(5000);
    for (std::size_t i = 0; i < frame.size(); ++i)
        frame[i] = static_cast<std::byte>(i * 7);
    const nf::RxFrame desc{.len = 5000, .csum_blank = false, .data_validated = true};
    const nf::RxBufferGeometry geometry{};
    const nf::RxPlan plan = nf::plan_rx_frame(desc, geometry, nf::RxFeatures{});
    nf::RequestWindow w = back->poll_requests();
    std::printf("  backend: frame needs %u request(s), %u posted\n", plan.requests, w.available);

    std::array<nf::RxChunk, nf::kRxMaxDataSlots> chunks{};
    const std::uint32_t n = nf::rx_layout(desc.len, geometry, chunks);
    std::array<std::uint16_t, nf::kRxMaxDataSlots> ids{};
    std::size_t copied = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        const nf::RxRequest req = back->copy_request(w.cons + i);
        ids[i] = req.id;
        std::memcpy(guest.page(req.gref % kGuestPages) + chunks[i].offset, frame.data() + copied,
                    chunks[i].len);
        copied += chunks[i].len;
    }
    back->consume(n);
    std::array<nf::RxEntry, nf::kRxMaxDataSlots> entries{};
    const nf::RxBuildResult built = nf::build_rx_responses(
        desc, std::span(ids.data(), n), std::span(chunks.data(), n), nf::RxFeatures{}, entries);
    check(built.error == nf::RxBuildError::none &&
              nf::put_rx_entries(*back, std::span(entries.data(), built.entries)),
          "responses built in Linux netback's layout");
    std::printf("  backend: %u responses, notify=%d\n", built.entries, back->push_responses());

    nf::ResponseWindow rw = front->poll_responses();
    std::vector<std::byte> got;
    for (std::uint32_t i = 0; i < rw.available; ++i) {
        const nf::RxResponse rsp = front->copy_response(rw.cons + i);
        const std::byte* src = guest.page(rsp.id % kGuestPages) + rsp.offset;
        got.insert(got.end(), src, src + rsp.status);
        std::printf("  frontend: slot %u id %u offset %u len %d%s%s\n", i, rsp.id, rsp.offset,
                    rsp.status, (rsp.flags & nf::rxf::kMoreData) ? " more_data" : "",
                    (rsp.flags & nf::rxf::kDataValidated) ? " data_validated" : "");
    }
    front->consume_responses(rw.available);
    check(got == frame, "the frontend reassembled the frame byte for byte");
}

} // namespace

int main() {
    std::printf("dpnetback protocol core demo (netback-core: rings, TX parser, RX builder)\n");
    demo_tx();
    demo_rx();
    std::printf("\n%s\n", failures == 0 ? "demo: all checks held" : "demo: FAILED");
    return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
