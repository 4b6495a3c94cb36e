// The TX half of the poll loop (docs/datapath.md, "TX"). Per guest queue and burst:
//   1. parse packets off the ring (netback-core), answering drops and multicast control;
//   2. grant-copy the first bytes of every packet into daemon header mbufs, and slots small
//      enough into mbufs of their own (one call);
//   3. check the copies: the source MAC is the vif's, offload headers parse;
//   3b. on a queue that sends to guests of its port (its slots were not copied in 2): packets
//      for a guest of this lcore go in one grant copy from the sender's grants into the
//      receiver's buffers (tx_local.cpp), answered once it ran; the others' slots are copied;
//   4. map the rest of every packet read-only (one call) and attach the pages as external
//      buffers behind the header mbuf; offload flags or software checksum/segmentation;
//   5. hand packets for guests of the same port to their RX path (tx_local.cpp), stage the
//      rest for the port's TX queue of this lcore (sent once per loop iteration).
// The PMD frees a packet when it is done with it (any thread): the external buffer's
// callback queues the slot on the guest queue's completion ring; the owning lcore unmaps a
// burst's pages once all are back, then answers those slots. Slots that were only copied
// are answered at once.
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "dpnb/netif/ip_filter.hpp"
#include "dpnb/netif/packet_headers.hpp"
#include "engine_core.hpp"
#include "lcore.hpp"
#include "offload.hpp"

namespace dpnb::engine::detail {

using netif::RingIdx;
namespace gntst = netif::gntst;
namespace rsp = netif::rsp;

namespace {

void count_tx_error(GuestQueue* q, netif::TxError e) {
    const auto i = static_cast<std::size_t>(e);
    if (i >= 1 && i <= kTxErrorCount) bump(q->counters.tx_errors[i - 1]);
}

// Answers every slot of a packet nothing of which is mapped.
void answer_packet(GuestQueue* q, const netif::TxPacket& pkt, std::int16_t status) {
    if (netif::put_tx_responses(q->tx, pkt, status)) q->tx_publish = true;
}

// Answers one slot (and, for a packet's first slot, its extra-info slots).
[[gnu::always_inline]] inline void answer_slot(GuestQueue* q, std::uint16_t id, std::int16_t status,
                                               unsigned extras) {
    bool ok = q->tx.put_response(netif::TxResponse{id, status});
    for (unsigned e = 0; e < extras; ++e)
        ok = q->tx.put_response(netif::TxResponse{0, rsp::kNull}) && ok;
    if (ok) q->tx_publish = true;
}

// Frees what a packet holds before it is chained: its header and copied-slot mbufs.
void free_work(TxWork& t) {
    if (t.hdr != nullptr) rte_pktmbuf_free(t.hdr);
    t.hdr = nullptr;
    for (unsigned k = 0; k < t.pkt.nr_slots; ++k)
        if (t.copies[k] != nullptr) {
            rte_pktmbuf_free(t.copies[k]);
            t.copies[k] = nullptr;
        }
}

// `n` mbufs from `pool`: in bulk, or as many as it has left (one at a time) when it cannot
// give them all. Returns how many `out` got.
unsigned alloc_mbufs(rte_mempool* pool, rte_mbuf** out, unsigned n) noexcept {
    if (n == 0) return 0;
    if (rte_pktmbuf_alloc_bulk(pool, out, n) == 0) return n;
    unsigned k = 0;
    while (k < n && (out[k] = rte_pktmbuf_alloc(pool)) != nullptr)
        ++k;
    return k;
}

// Lays out a packet's header copy: its first min(total, copy_len) bytes, from as many slots
// as they span. A guest may split its headers at any byte (XSA-423); the checks and the NIC
// must see them whole, in the daemon's copy, never in a page the guest can still write.
void plan_header(TxWork& t, std::uint16_t copy_len) noexcept {
    std::uint32_t want = std::min<std::uint32_t>(copy_len, t.pkt.total_len);
    std::uint32_t got = 0;
    unsigned k = 0;
    std::uint32_t tail = 0;
    for (; k < t.pkt.nr_slots && got < want; ++k) {
        tail = std::min<std::uint32_t>(want - got, t.pkt.slots[k].len);
        got += tail;
    }
    t.hdr_len = static_cast<std::uint16_t>(got);
    t.hdr_slots = static_cast<std::uint16_t>(std::max(k, 1U));
    t.hdr_tail = static_cast<std::uint16_t>(tail);
}

// Grant-copy segments that gather a packet's header bytes into its header mbuf; returns how
// many it wrote at `out`.
std::uint16_t header_segments(hv::DomId dom, const TxWork& t, hv::GrantCopySegment* out) noexcept {
    auto* dst = rte_pktmbuf_mtod(t.hdr, std::byte*);
    if (t.hdr_slots == 1 && t.hdr_len != 0) { // in the first slot: one segment, no layout
        const netif::TxSlot& s = t.pkt.slots[0];
        out[0] = hv::GrantCopySegment::from_guest(dom, s.gref, s.offset, dst, t.hdr_len);
        return 1;
    }
    std::uint16_t n = 0;
    for (unsigned k = 0; k < t.hdr_slots; ++k) {
        const netif::TxSlot& s = t.pkt.slots[k];
        const auto part = static_cast<std::uint16_t>(tx_header_part(t, k));
        if (part == 0) continue;
        out[n++] = hv::GrantCopySegment::from_guest(dom, s.gref, s.offset, dst, part);
        dst += part;
    }
    return n;
}

// Whether the header copy holds the whole packet (the slots' lengths add up to total_len
// for every packet the parser lets through), so no slot has bytes beyond it.
bool whole(const TxWork& t) noexcept {
    return t.hdr_len == t.pkt.total_len;
}

// The ring index of data slot `k` of a packet: extras sit between the first and second.
RingIdx slot_index(const netif::TxPacket& pkt, unsigned k) {
    return k == 0 ? pkt.first_idx : pkt.first_idx + pkt.nr_extras + k;
}

} // namespace

void Lcore::tx_buffer_released(void*, void* opaque) {
    auto* p = static_cast<TxPending*>(opaque);
    GuestQueue* q = p->q;
    std::uint32_t slot = p->idx & kRingMask;
    // The ring holds twice the ring size: it cannot be full.
    (void)rte_ring_mp_enqueue_elem(q->tx_done, &slot, sizeof(slot));
    Lcore* owner = q->owner;
    if (owner != nullptr && owner->sleeping()) owner->wake();
}

std::int16_t Lcore::mcast_update(GuestQueue* q, const netif::TxMcast& m) {
    netif::MacAddress mac;
    mac.bytes = m.mac;
    McastFilter& f = *q->mcast; // the vif's, whichever of its queues asked
    auto end = f.addrs.begin() + f.n;
    auto it = std::find(f.addrs.begin(), end, mac);
    if (m.op == netif::McastOp::add) {
        if (it != end) return rsp::kOkay;
        if (f.n == kMaxMcast || !mac.is_multicast()) return rsp::kError;
        f.addrs[f.n++] = mac;
        return rsp::kOkay;
    }
    if (it != end) {
        *it = f.addrs[f.n - 1];
        --f.n;
    }
    return rsp::kOkay;
}

bool Lcore::do_guest_tx(GuestQueue* q) {
    q->tx_blocked = false;
    // One read of req_prod for the burst: what the frontend adds meanwhile waits for the next.
    const netif::RequestWindow w = q->tx.poll_requests();
    if (w.available == 0 && !w.overflow && !q->rate.on) return false; // (credit refills idle)
    if (q->rate.on) {
        const std::uint64_t now = rte_get_tsc_cycles();
        if (now >= q->rate.next_refill) {
            q->rate.remaining =
                std::min(q->rate.remaining + q->rate.credit_bytes, q->rate.max_credit);
            q->rate.next_refill = now + q->rate.period_tsc;
        }
    }
    bool progress = false;
    unsigned n = 0;
    if (w.overflow) {
        count_tx_error(q, netif::TxError::ring_overflow);
        disable(q, "TX ring overflow", Detail("req_prod {}, req_cons {}", w.prod, w.cons).c_str());
    }
    const unsigned burst = w.overflow ? 0 : engine_.opts.burst;
    while (n < burst && q->tx.req_cons() != w.prod) {
        TxWork& t = tx_work_[n];
        const netif::TxParseResult r = netif::parse_tx_packet<netif::TxBackRing>(
            q->tx, q->tx.req_cons(), w.prod, q->tx_limits, t.pkt); // inlined here
        if (r.verdict == netif::TxVerdict::empty) break;
        if (r.verdict == netif::TxVerdict::fatal) {
            count_tx_error(q, r.error);
            disable(q, "TX protocol violation", netif::to_string(r.error));
            break;
        }
        if (r.verdict == netif::TxVerdict::drop) {
            q->tx.consume(r.slots);
            answer_packet(q, t.pkt, rsp::kError);
            count_tx_error(q, r.error);
            bump(q->counters.c.tx_drop_protocol);
            DPNB_DP_LOG(q->log, WARN, "{}: TX packet dropped: {} ({})", q->name,
                        netif::to_string(r.error), netif::help(r.error));
            progress = true;
            continue;
        }
        if (r.verdict == netif::TxVerdict::control) {
            q->tx.consume(r.slots);
            answer_packet(q, t.pkt, mcast_update(q, t.pkt.mcast));
            progress = true;
            continue;
        }
        if (q->rate.on) {
            if (t.pkt.total_len > q->rate.remaining) {
                q->tx_blocked = true; // left on the ring until the credit is refilled
                break;
            }
            q->rate.remaining -= t.pkt.total_len;
        }
        q->tx.consume(r.slots);
        t.hdr = nullptr;
        t.drop = false;
        t.onecopy = false;
        ++n;
        progress = true;
    }
    if (n != 0) tx_build(q, n);
    if (q->tx_publish && !q->disabled) {
        if (q->tx.push_responses()) notify_tx(q);
    }
    q->tx_publish = false;
    return progress;
}

// XSA-423: a packet longer than its header copy must have all its headers in the copy (the
// checks below and the NIC read them there); else it is dropped. Marks `t` dropped and
// returns false then.
bool Lcore::tx_headers_whole(GuestQueue* q, TxWork& t) {
    if (whole(t)) return true;
    const auto* d = rte_pktmbuf_mtod(t.hdr, const std::uint8_t*);
    const std::uint32_t need = netif::frame_headers_len(d, t.hdr_len);
    if (need <= t.hdr_len) return true;
    t.drop = true;
    bump(q->counters.c.tx_drop_headers);
    DPNB_DP_LOG(q->log, WARN,
                "{}: TX packet dropped: its headers run past the {} bytes copied "
                "(engine.tx_copy_len)",
                q->name, t.hdr_len);
    return false;
}

// IP anti-spoofing (netif/ip_filter.hpp) on the header copy: the IPv4 source or ARP sender
// must be one of the vif's "ip" addresses. Marks `t` dropped and returns false otherwise.
bool Lcore::tx_ip_source_ok(GuestQueue* q, TxWork& t) {
    const auto* d = rte_pktmbuf_mtod(t.hdr, const std::uint8_t*);
    const netif::IpSourceVerdict v =
        netif::check_ip_source(d, t.hdr_len, std::span(q->ip_allowed.data(), q->n_ip_allowed));
    if (v == netif::IpSourceVerdict::allowed) return true;
    t.drop = true;
    bump(q->counters.c.tx_drop_ip_spoofed);
    DPNB_DP_LOG(q->log, WARN, "{}: TX packet dropped: {}", q->name,
                v == netif::IpSourceVerdict::spoofed
                    ? "its IPv4 source or ARP sender is not one of the vif's \"ip\" addresses"
                    : "an IPv4 or ARP header that cannot be checked against the vif's \"ip\"");
    return false;
}

// The rest of each slot of `t` beyond the header copy that is small enough into a copy mbuf
// of its own, while the burst's copy mbufs last: a segment each at tx_segs_[c.nsegs]. When they
// ran out, the slots beyond are mapped instead where the port takes mapped pages, else the
// packet drops.
void Lcore::tx_add_copies(GuestQueue* q, TxWork& t, TxCopies& c) {
    for (unsigned k = 0; k < t.pkt.nr_slots; ++k) {
        const netif::TxSlot& s = t.pkt.slots[k];
        const std::uint32_t skip = tx_header_part(t, k);
        const std::uint32_t rest = s.len - skip;
        if (rest == 0 || rest > c.copy_max) continue;
        if (c.next == c.count) {
            if (!c.maps) {
                t.drop = true; // answered in error with the burst's other drops
                bump(q->counters.c.tx_drop_error);
            }
            return;
        }
        rte_mbuf* m = tx_copy_mbufs_[c.next++];
        t.copies[k] = m;
        t.copy_seg[k] = c.nsegs;
        tx_segs_[c.nsegs++] = hv::GrantCopySegment::from_guest(
            q->dom, s.gref, static_cast<std::uint16_t>(s.offset + skip), rte_pktmbuf_mtod(m, void*),
            static_cast<std::uint16_t>(rest));
    }
}

// The burst's grant copy of headers and slots (tx_segs_), one call.
void Lcore::tx_copy(GuestQueue* q, std::uint32_t nsegs) {
    if (nsegs == 0) return;
    const std::span segs(tx_segs_.data(), nsegs);
    if (Status st = grant_copy(segs); !st)
        for (auto& s : segs)
            s.status = gntst::kGeneralError;
    bump(q->counters.c.grant_copy_ops, nsegs);
    bump(q->counters.c.grant_batches);
}

// Whether `t`'s copies (its header's when `headers`, and its slots') succeeded. A grant only
// the guest can have broken disables the vif (returns false, q->disabled set); else the packet
// drops.
bool Lcore::tx_copies_ok(GuestQueue* q, TxWork& t, bool headers) {
    std::int16_t st = gntst::kOkay;
    netif::GrantRef bad_ref = t.pkt.slots[0].gref;
    for (std::uint32_t j = t.seg; headers && j < t.seg + t.nhdr_segs && st == gntst::kOkay; ++j) {
        st = tx_segs_[j].status;
        bad_ref = tx_segs_[j].source.foreign.ref;
    }
    for (unsigned k = 0; k < t.pkt.nr_slots && st == gntst::kOkay && !whole(t); ++k)
        if (t.copies[k] != nullptr && tx_segs_[t.copy_seg[k]].status != gntst::kOkay) {
            st = tx_segs_[t.copy_seg[k]].status;
            bad_ref = t.pkt.slots[k].gref;
        }
    if (st == gntst::kOkay) return true;
    if (guest_fault(st) && q->fatal_bad_grants) {
        disable(q, "TX buffer grant refused",
                Detail("GNTST {} copying from gref {}", st, bad_ref).c_str());
        return false;
    }
    t.drop = true;
    bump(q->counters.c.tx_drop_error);
    return false;
}

// 3 of tx_build, on the packet's private header copy: its length set, the headers whole,
// the source MAC the vif's, the IPv4 source or ARP sender allowed, offload headers that
// parse. Marks `t` dropped (counted, logged) and returns false when a check fails.
bool Lcore::tx_check(GuestQueue* q, TxWork& t) {
    t.hdr->data_len = t.hdr_len;
    t.hdr->pkt_len = t.hdr_len;
    const auto* eth = rte_pktmbuf_mtod(t.hdr, const std::uint8_t*);
    if (!whole(t) && !tx_headers_whole(q, t)) return false;
    if (q->anti_spoofing &&
        std::memcmp(eth + RTE_ETHER_ADDR_LEN, q->mac.bytes.data(), RTE_ETHER_ADDR_LEN) != 0) {
        t.drop = true;
        bump(q->counters.c.tx_drop_spoofed);
        DPNB_DP_LOG(q->log, WARN,
                    "{}: TX packet dropped: source MAC "
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} is not the vif's",
                    q->name, eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]);
        return false;
    }
    if (q->n_ip_allowed != 0 && !tx_ip_source_ok(q, t)) return false;
    const netif::TxOffload& off = t.pkt.offload;
    if (off.csum_blank || t.pkt.is_gso()) {
        const HeaderError he = parse_headers(eth, t.hdr_len, t.h);
        const bool gso_ok =
            !t.pkt.is_gso() ||
            (t.h.l4_proto == 6 && (off.gso_type == netif::gso::kTcpV4 ? t.h.ipv4 : t.h.ipv6));
        if (he != HeaderError::none || !gso_ok) {
            t.drop = true;
            bump(q->counters.c.tx_drop_error);
            DPNB_DP_LOG(q->log, WARN, "{}: TX packet with {} dropped: {}", q->name,
                        t.pkt.is_gso() ? "GSO" : "a partial checksum",
                        he != HeaderError::none ? to_string(he)
                                                : "GSO type does not match the headers");
            return false;
        }
    }
    return true;
}

// tx_build for a burst whose every packet is one slot within the header copy (most small
// packets): nothing to plan, copy apart or map. One grant copy of the burst into header
// mbufs, the checks, then each packet answered and sent, counted once for the burst.
// Returns false, having done nothing, when the header pool cannot give the whole burst
// (tx_build then drops what it must).
bool Lcore::tx_build_whole(GuestQueue* q, unsigned n) {
    std::array<rte_mbuf*, kMaxBurst> hdrs;
    if (rte_pktmbuf_alloc_bulk(hdr_pool_, hdrs.data(), n) != 0) return false;
    q->tx_local_hint = false; // what this burst sends to guests of the port sets it again
    const hv::DomId dom = q->dom;
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        const netif::TxSlot& s = t.pkt.slots[0];
        t.hdr = hdrs[i];
        t.hdr_len = static_cast<std::uint16_t>(t.pkt.total_len);
        t.hdr_slots = 1;
        t.hdr_tail = t.hdr_len;
        t.copies[0] = nullptr;
        // GrantCopySegment::from_guest, written in place.
        hv::GrantCopySegment& seg = tx_segs_[i];
        seg.source.foreign = {s.gref, s.offset, dom};
        seg.dest.virt = rte_pktmbuf_mtod(t.hdr, void*);
        seg.len = t.hdr_len;
        seg.flags = hv::GrantCopySegment::kSourceGref;
        seg.status = 0;
    }
    tx_copy(q, n);
    const bool plain = q->n_ip_allowed == 0;
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        const std::int16_t st = tx_segs_[i].status;
        if (st == gntst::kOkay) {
            // The checks tx_check makes that can fail for a plain frame, inline: its source
            // MAC; the rest only when the vif or the packet asks for more.
            const auto* eth = rte_pktmbuf_mtod(t.hdr, const std::uint8_t*);
            if (!plain || t.pkt.offload.csum_blank || t.pkt.is_gso() ||
                (q->anti_spoofing && std::memcmp(eth + RTE_ETHER_ADDR_LEN, q->mac.bytes.data(),
                                                 RTE_ETHER_ADDR_LEN) != 0)) {
                tx_check(q, t);
                continue;
            }
            t.hdr->data_len = t.hdr_len;
            t.hdr->pkt_len = t.hdr_len;
            continue;
        }
        if (guest_fault(st) && q->fatal_bad_grants) {
            disable(q, "TX buffer grant refused",
                    Detail("GNTST {} copying from gref {}", st, t.pkt.slots[0].gref).c_str());
            rte_pktmbuf_free_bulk(hdrs.data(), n);
            for (unsigned k = 0; k < n; ++k)
                tx_work_[k].hdr = nullptr;
            return true;
        }
        t.drop = true;
        bump(q->counters.c.tx_drop_error);
    }
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    const std::uint16_t port = q->out_port_index;
    const bool direct = local_[port].all.size() < 2;
    unsigned ndirect = 0; // hdrs[0, ndirect): to the port as they are, staged in order
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        rte_mbuf* head = t.hdr;
        t.hdr = nullptr;
        if (t.drop) {
            rte_pktmbuf_free(head);
            answer_packet(q, t.pkt, rsp::kError);
            continue;
        }
        answer_slot(q, t.pkt.slots[0].id, rsp::kOkay, t.pkt.nr_extras);
        ++packets;
        bytes += t.pkt.total_len;
        // No guest of the port to look for, no offload to set: to the port as it is.
        if (direct && !t.pkt.offload.csum_blank && !t.pkt.is_gso()) {
            hdrs[ndirect++] = head;
            continue;
        }
        tx_stage_bulk(port, hdrs.data(), std::exchange(ndirect, 0U));
        tx_send(q, t, head);
    }
    tx_stage_bulk(port, hdrs.data(), ndirect);
    bump(q->counters.c.tx_packets, packets);
    bump(q->counters.c.tx_bytes, bytes);
    return true;
}

void Lcore::tx_build(GuestQueue* q, unsigned n) {
    const std::uint16_t copy_len = engine_.opts.tx_copy_len;
    unsigned small = 0;
    while (small < n && tx_work_[small].pkt.nr_slots == 1 &&
           tx_work_[small].pkt.total_len <= copy_len)
        ++small;
    if (small == n && tx_build_whole(q, n)) return;
    // A port that may not be handed grant-mapped pages has every slot copied
    // (Engine::Impl::check_tx_maps); when the copy pool runs short its packets drop.
    TxCopies c;
    c.copy_max = copy_pool_ != nullptr ? engine_.opts.tx_copy_slot_max : 0;
    c.maps = engine_.ports[q->out_port_index]->tx_maps;
    // A queue whose last burst sent a unicast frame to another guest of its port copies the
    // headers alone first: a packet for a guest of this lcore then goes in one grant copy
    // from the sender's pages into the receiver's (tx_onecopy), and only the others get their
    // slots copied, in a second call. Other queues copy headers and slots in one call.
    const bool split = q->tx_local_hint && local_[q->out_port_index].all.size() >= 2;
    q->tx_local_hint = false;
    // 2. The first bytes of every packet into header mbufs, and the rest of every slot small
    //    enough into mbufs of its own, with one grant copy for the burst. The mbufs come in
    //    bulk: a header per packet, one per slot copied whole.
    // A burst fits (EngineOptions::burst <= kMaxBurst): a header segment per packet and a
    // segment and a copy mbuf per slot, every slot of every packet at most.
    static_assert(std::tuple_size_v<decltype(tx_work_)> >= kMaxBurst);
    static_assert(std::tuple_size_v<decltype(tx_segs_)> >= kMaxBurst * (1 + netif::kTxMaxSlots));
    static_assert(std::tuple_size_v<decltype(tx_copy_mbufs_)> >= kMaxBurst * netif::kTxMaxSlots);
    static_assert(std::tuple_size_v<decltype(TxWork::copies)> >= netif::kTxMaxSlots);
    std::uint32_t npieces = 0; // data beyond the headers: copied or mapped
    std::uint32_t ncopy = 0;
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        if (t.pkt.nr_slots == 1 && t.pkt.total_len <= copy_len) {
            // One slot that fits the header copy (most small packets): the copy is the whole
            // packet; nothing to plan, copy apart or map.
            t.hdr_len = static_cast<std::uint16_t>(t.pkt.total_len);
            t.hdr_slots = 1;
            t.hdr_tail = t.hdr_len;
            t.copies[0] = nullptr;
            continue;
        }
        plan_header(t, copy_len);
        for (unsigned k = 0; k < t.pkt.nr_slots; ++k) {
            const std::uint32_t rest = t.pkt.slots[k].len - tx_header_part(t, k);
            t.copies[k] = nullptr;
            npieces += rest != 0 ? 1U : 0U;
            ncopy += !split && rest != 0 && rest <= c.copy_max ? 1U : 0U;
        }
    }
    std::array<rte_mbuf*, kMaxBurst> hdrs;
    const unsigned nhdr = alloc_mbufs(hdr_pool_, hdrs.data(), n);
    c.count = alloc_mbufs(copy_pool_, tx_copy_mbufs_.data(), ncopy);
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        t.hdr = i < nhdr ? hdrs[i] : nullptr;
        if (t.hdr == nullptr) {
            t.drop = true;
            bump(q->counters.c.tx_drop_error);
            continue;
        }
        t.seg = c.nsegs;
        t.nhdr_segs = header_segments(q->dom, t, tx_segs_.data() + c.nsegs);
        c.nsegs += t.nhdr_segs;
        if (!split && !whole(t)) tx_add_copies(q, t, c);
    }
    // Headers of packets dropped for want of a header mbuf took no copy mbuf: give back
    // what no slot took.
    if (c.next < c.count) rte_pktmbuf_free_bulk(tx_copy_mbufs_.data() + c.next, c.count - c.next);
    tx_copy(q, c.nsegs);
    // 3. Checks on our private copy.
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        if (t.drop) continue;
        if (!tx_copies_ok(q, t, true)) {
            if (!q->disabled) continue;
            for (unsigned k = 0; k < n; ++k)
                free_work(tx_work_[k]);
            return;
        }
        tx_check(q, t);
    }
    if (split && npieces != 0) { // (a burst of packets within their header copies: no rests)
        // 3b. Packets for guests of this lcore in one copy each (tx_local.cpp), answered once
        //     that copy ran; then the others' slots, copied as above.
        if (!tx_onecopy_burst(q, n)) {
            for (unsigned k = 0; k < n; ++k)
                free_work(tx_work_[k]);
            return; // the vif was disabled
        }
        npieces = 0;
        ncopy = 0;
        for (unsigned i = 0; i < n; ++i) {
            const TxWork& t = tx_work_[i];
            for (unsigned k = 0; k < t.pkt.nr_slots && !t.drop && !t.onecopy && !whole(t); ++k) {
                const std::uint32_t rest = t.pkt.slots[k].len - tx_header_part(t, k);
                npieces += rest != 0 ? 1U : 0U;
                ncopy += rest != 0 && rest <= c.copy_max ? 1U : 0U;
            }
        }
        c.count = alloc_mbufs(copy_pool_, tx_copy_mbufs_.data(), ncopy);
        c.next = 0;
        c.nsegs = 0;
        for (unsigned i = 0; i < n; ++i) {
            TxWork& t = tx_work_[i];
            if (!t.drop && !t.onecopy && !whole(t)) tx_add_copies(q, t, c);
        }
        if (c.next < c.count)
            rte_pktmbuf_free_bulk(tx_copy_mbufs_.data() + c.next, c.count - c.next);
        tx_copy(q, c.nsegs);
        for (unsigned i = 0; i < n; ++i) {
            TxWork& t = tx_work_[i];
            if (t.drop || t.onecopy || whole(t) || tx_copies_ok(q, t, false)) continue;
            if (!q->disabled) continue;
            for (unsigned k = 0; k < n; ++k)
                free_work(tx_work_[k]);
            return;
        }
    }
    // 4. Map what was not copied, with one grant-map call for the burst.
    std::int16_t group = -1;
    if (npieces != c.next && !tx_map(q, n, group)) {
        for (unsigned k = 0; k < n; ++k)
            free_work(tx_work_[k]);
        return; // the vif was disabled
    }
    // 5. Chains, offloads, staging.
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        if (t.onecopy) continue; // delivered and answered (3b)
        if (t.drop) {
            free_work(t);
            answer_packet(q, t.pkt, rsp::kError);
            continue;
        }
        tx_chain(q, t, group);
    }
    if (group >= 0 && q->tx_groups[static_cast<std::size_t>(group)].outstanding == 0)
        tx_release_group(q, group);
}

// 3b of tx_build: every packet of the burst for a guest of this lcore that tx_onecopy can
// take is staged in the lcore's copy batch; the batch is flushed, then each is answered:
// OKAY once its copy ran (the receiver may have dropped it: no buffer, or its own grant
// failed), NETIF_RSP_ERROR when the sender's own grant failed (tx_drop_error, or the vif
// disabled as for any grant it broke). Returns false when the vif was disabled.
bool Lcore::tx_onecopy_burst(GuestQueue* q, unsigned n) {
    bool any = false;
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        if (!t.drop && !whole(t)) any = tx_onecopy(q, t) || any;
    }
    if (!any) return true;
    copy_flush();
    for (unsigned i = 0; i < n; ++i) {
        TxWork& t = tx_work_[i];
        if (!t.onecopy) continue;
        const std::int16_t st = t.onecopy_status;
        if (st == gntst::kOkay) {
            answer_packet(q, t.pkt, rsp::kOkay);
            bump(q->counters.c.tx_packets);
            bump(q->counters.c.tx_bytes, t.pkt.total_len);
            bump(q->counters.c.local_tx_packets);
            bump(q->counters.c.local_tx_bytes, t.pkt.total_len);
            continue;
        }
        if (guest_fault(st) && q->fatal_bad_grants) {
            disable(
                q, "TX buffer grant refused",
                Detail("GNTST {} copying from gref {} to a guest of the port", st, t.onecopy_ref)
                    .c_str());
            return false;
        }
        answer_packet(q, t.pkt, rsp::kError);
        bump(q->counters.c.tx_drop_error);
    }
    return true;
}

bool Lcore::tx_map(GuestQueue* q, unsigned n, std::int16_t& group) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        // At most every slot of every packet of a burst is mapped.
        static_assert(std::tuple_size_v<decltype(map_reqs_)> >= kMaxBurst * netif::kTxMaxSlots &&
                      std::tuple_size_v<decltype(map_status_)> >= kMaxBurst * netif::kTxMaxSlots);
        std::uint32_t nmap = 0;
        for (unsigned i = 0; i < n; ++i) {
            TxWork& t = tx_work_[i];
            t.map_first = nmap;
            t.map_count = 0;
            if (t.drop || t.onecopy) continue;
            for (unsigned k = 0; k < t.pkt.nr_slots; ++k) {
                const netif::TxSlot& s = t.pkt.slots[k];
                const std::uint32_t rest = s.len - tx_header_part(t, k);
                if (rest == 0 || t.copies[k] != nullptr) continue;
                map_reqs_[nmap++] = hv::GrantMapRequest{q->dom, s.gref, false};
                ++t.map_count;
            }
        }
        if (nmap == 0) return true;
        const std::span status(map_status_.data(), nmap);
        std::fill(status.begin(), status.end(), std::int16_t{0});
        hv::GrantMapping mapping = grant_map(std::span(map_reqs_.data(), nmap), status);
        hv::DmaMapper* const dma = engine_.ports[q->out_port_index]->dma;
        // Behind an IOMMU the run must be reachable before any packet of it is staged; a
        // refused run drops the burst's packets, as a map that names no grant does.
        if (mapping && dma != nullptr && !dma_map_run(q, dma, mapping)) [[unlikely]] {
            (void)grant_unmap(mapping);
            break;
        }
        if (mapping) {
            std::int16_t g = -1;
            for (std::size_t k = 0; k < q->tx_groups.size() && g < 0; ++k)
                if (!q->tx_groups[k].used) g = static_cast<std::int16_t>(k);
            if (g < 0) { // cannot happen: a group per burst, at most a ring of slots
                hv::DmaMapper* mapped_in = dma;
                (void)unmap_run(q, mapped_in, mapping);
                disable(q, "internal", "no TX map group left");
                return false;
            }
            TxGroup& grp = q->tx_groups[static_cast<std::size_t>(g)];
            grp = TxGroup{};
            grp.used = true;
            grp.mapping = mapping;
            grp.dma = dma;
            group = g;
            bump(q->counters.c.grant_map_ops, nmap);
            bump(q->counters.c.grant_batches);
            return true;
        }
        // Which packets hold a refused grant?
        bool any_bad = false;
        for (unsigned i = 0; i < n; ++i) {
            TxWork& t = tx_work_[i];
            for (std::uint32_t k = t.map_first; k < t.map_first + t.map_count; ++k) {
                const std::int16_t st = map_status_[k];
                if (st == gntst::kOkay) continue;
                if (guest_fault(st) && q->fatal_bad_grants) {
                    disable(q, "TX buffer grant refused",
                            Detail("GNTST {} mapping gref {}", st, map_reqs_[k].ref).c_str());
                    return false;
                }
                if (!t.drop) bump(q->counters.c.tx_drop_error);
                t.drop = true;
                any_bad = true;
            }
        }
        if (!any_bad) break; // failed without naming a grant: drop the burst
    }
    for (unsigned i = 0; i < n; ++i)
        if (!tx_work_[i].drop) {
            tx_work_[i].drop = true;
            bump(q->counters.c.tx_drop_error);
        }
    return true;
}

void Lcore::tx_chain(GuestQueue* q, TxWork& t, std::int16_t group) {
    const netif::TxPacket& pkt = t.pkt;
    TxGroup* grp = group >= 0 ? &q->tx_groups[static_cast<std::size_t>(group)] : nullptr;
    rte_mbuf* head = t.hdr;
    t.hdr = nullptr;
    bool failed = false;
    std::uint32_t piece = t.map_first;
    unsigned k = 0;
    if (pkt.nr_slots == 1 && whole(t)) { // the one slot is in the header copy: answered now
        answer_slot(q, pkt.slots[0].id, rsp::kOkay, pkt.nr_extras);
        k = 1;
    }
    for (; k < pkt.nr_slots; ++k) {
        const netif::TxSlot& s = pkt.slots[k];
        const std::uint32_t skip = tx_header_part(t, k);
        const std::uint32_t len = s.len - skip;
        const unsigned extras = k == 0 ? pkt.nr_extras : 0;
        if (len == 0) {
            answer_slot(q, s.id, rsp::kOkay, extras); // copied whole, or empty
            continue;
        }
        if (t.copies[k] != nullptr) { // grant-copied into a daemon mbuf: answered now
            rte_mbuf* cm = t.copies[k];
            t.copies[k] = nullptr;
            answer_slot(q, s.id, failed ? rsp::kError : rsp::kOkay, extras);
            cm->data_len = static_cast<std::uint16_t>(len);
            cm->pkt_len = len;
            if (failed || rte_pktmbuf_chain(head, cm) != 0) {
                rte_pktmbuf_free(cm);
                failed = true;
            }
            continue;
        }
        // A mapped page: the PMD gets it as an external buffer; freeing it answers the slot.
        if (grp == nullptr) { // cannot happen: tx_map mapped every piece of a kept packet
            disable(q, "internal", "TX piece without a mapping");
            rte_pktmbuf_free(head);
            free_work(t); // copied slots not chained yet
            return;
        }
        const RingIdx idx = slot_index(pkt, k);
        TxPending& p = q->txp[idx & kRingMask];
        p = TxPending{};
        p.q = q;
        p.idx = idx;
        p.id = s.id;
        p.extras = static_cast<std::uint8_t>(extras);
        p.in_use = true;
        p.status = failed ? rsp::kError : rsp::kOkay;
        p.group = group;
        p.next = grp->first;
        grp->first = static_cast<std::int16_t>(idx & kRingMask);
        ++grp->outstanding;
        ++q->tx_outstanding;
        p.shinfo.free_cb = &Lcore::tx_buffer_released;
        p.shinfo.fcb_opaque = &p;
        rte_mbuf_ext_refcnt_set(&p.shinfo, 1);
        std::byte* buf = grp->mapping.page(piece) + s.offset + skip;
        ++piece;
        rte_mbuf* em = failed ? nullptr : rte_pktmbuf_alloc(ext_pool_);
        if (em == nullptr) {
            // Nothing will free this buffer: complete it now, in error.
            p.status = rsp::kError;
            tx_buffer_released(buf, &p);
            failed = true;
            continue;
        }
        rte_pktmbuf_attach_extbuf(em, buf, rte_mem_virt2iova(buf), static_cast<std::uint16_t>(len),
                                  &p.shinfo);
        em->data_len = static_cast<std::uint16_t>(len);
        em->pkt_len = len;
        if (rte_pktmbuf_chain(head, em) != 0) {
            p.status = rsp::kError;
            rte_pktmbuf_free(em);
            failed = true;
        }
    }
    if (failed) {
        bump(q->counters.c.tx_drop_error);
        rte_pktmbuf_free(head);
        return;
    }
    bump(q->counters.c.tx_packets);
    bump(q->counters.c.tx_bytes, pkt.total_len);
    tx_send(q, t, head);
}

// Sends a built packet (`head`, its chain): to a guest of the same port, or staged for the
// port with its offloads set or done in software.
void Lcore::tx_send(GuestQueue* q, TxWork& t, rte_mbuf* head) {
    const netif::TxPacket& pkt = t.pkt;
    // To a guest of the same port (tx_local.cpp); a port with one guest, or with local
    // delivery off, has no table to look in.
    if (local_[q->out_port_index].all.size() >= 2 && tx_local(q, t, head)) return;

    const PortState& port = *engine_.ports[q->out_port_index];
    const std::uint64_t offl = port.tx_offloads;
    if (head->nb_segs > 1 && (offl & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) == 0) {
        // A PMD that cannot send chains would need the packet copied into one buffer.
        bump(q->counters.c.tx_drop_error);
        DPNB_DP_LOG(q->log, WARN, "{}: port {} cannot send multi-segment packets", q->name,
                    port.port->config().name);
        rte_pktmbuf_free(head);
        return;
    }
    if (pkt.is_gso()) {
        const bool tso = (offl & RTE_ETH_TX_OFFLOAD_TCP_TSO) != 0 && (t.h.ipv4 || port.tso_ipv6);
        if (tso) {
            set_tx_offload(head, t.h, true, pkt.offload.gso_size);
            bump(q->counters.c.tx_tso);
            tx_stage(q->out_port_index, head);
            return;
        }
        TxSegments segs;
        const unsigned ns =
            tx_segment(q, t, head, (offl & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) != 0, segs);
        for (unsigned i = 0; i < ns; ++i)
            tx_stage(q->out_port_index, segs[i]);
        return;
    }
    if (pkt.offload.csum_blank) {
        const std::uint64_t need =
            t.h.l4_proto == 6 ? RTE_ETH_TX_OFFLOAD_TCP_CKSUM : RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
        if ((offl & need) != 0)
            set_tx_offload(head, t.h, false, 0);
        else
            software_l4_checksum(head, t.h);
    }
    tx_stage(q->out_port_index, head);
}

// Software TCP segmentation of a GSO packet into `segs`, L4 checksums offloaded when
// `csum_offload`, else computed; `head` is freed (the segments hold their own references).
// Returns the number of segments: 0 when segmentation failed (dropped and counted).
unsigned Lcore::tx_segment(GuestQueue* q, const TxWork& t, rte_mbuf* head, bool csum_offload,
                           TxSegments& segs) {
    const int ns = segment_tcp(head, t.h, t.pkt.offload.gso_size, csum_offload, hdr_pool_,
                               ext_pool_, segs.data(), segs.size());
    rte_pktmbuf_free(head);
    if (ns >= 0) return static_cast<unsigned>(ns);
    bump(q->counters.c.tx_drop_error);
    DPNB_DP_LOG(q->log, WARN, "{}: software segmentation of a {}-byte GSO packet failed", q->name,
                t.pkt.total_len);
    return 0;
}

// Queues a packet for the port's TX queue of this lcore; sent once per loop iteration, or
// at once when the stage is full.
void Lcore::tx_stage(std::uint16_t port_index, rte_mbuf* m) {
    TxStage& st = tx_stage_[port_index];
    if (!st.listed) {
        st.listed = true;
        tx_stage_ports_[n_tx_stage_ports_++] = port_index; // each port once: ports.size()
    }
    if (st.n == st.m.size()) tx_flush(port_index);
    st.m[st.n++] = m;
}

// tx_stage for `n` packets in order.
void Lcore::tx_stage_bulk(std::uint16_t port_index, rte_mbuf* const* ms, unsigned n) {
    if (n == 0) return;
    TxStage& st = tx_stage_[port_index];
    if (!st.listed) {
        st.listed = true;
        tx_stage_ports_[n_tx_stage_ports_++] = port_index;
    }
    while (n != 0) {
        if (st.n == st.m.size()) tx_flush(port_index);
        const auto k = std::min<unsigned>(n, static_cast<unsigned>(st.m.size() - st.n));
        std::copy_n(ms, k, st.m.data() + st.n);
        st.n += k;
        ms += k;
        n -= k;
    }
}

void Lcore::tx_flush(std::uint16_t port_index) {
    TxStage& st = tx_stage_[port_index];
    const PortState& port = *engine_.ports[port_index];
    const std::uint16_t txq = port.tx_queue(index_);
    std::uint32_t sent = 0;
    if (!port_paused_[port_index]) {
        tx_prepare(port.port->id(), txq, st);
        for (int tries = 0; sent < st.n && tries < 4; ++tries) {
            const auto chunk =
                static_cast<std::uint16_t>(std::min<std::uint32_t>(st.n - sent, kMaxBurst));
            const std::uint16_t k =
                rte_eth_tx_burst(port.port->id(), txq, st.m.data() + sent, chunk);
            sent += k;
            if (k == 0) tx_cleanup_held();
        }
    }
    tx_drop_staged(std::span(st.m.data() + sent, st.n - sent)); // not taken
    st.n = 0;
}

// Sends what every port's stage holds.
void Lcore::tx_flush_all() {
    for (std::uint32_t i = 0; i < n_tx_stage_ports_; ++i) {
        tx_flush(tx_stage_ports_[i]);
        tx_stage_[tx_stage_ports_[i]].listed = false;
    }
    n_tx_stage_ports_ = 0;
}

// The PMD's last touches to offload headers (rte_eth_tx_prepare): virtio fills a TSO
// packet's IPv4 header checksum and turns its pseudo-header checksum into the one Linux
// expects of a GSO packet (over the whole length); PMDs without a prepare step return at
// once. A packet the PMD refuses is
// answered in error and the rest keep their order.
void Lcore::tx_prepare(std::uint16_t port_id, std::uint16_t txq, TxStage& st) {
    std::uint32_t done = 0;
    while (done < st.n) {
        done += rte_eth_tx_prepare(port_id, txq, st.m.data() + done,
                                   static_cast<std::uint16_t>(st.n - done));
        if (done == st.n) break;
        tx_drop_staged(std::span(st.m.data() + done, 1));
        std::copy(st.m.begin() + done + 1, st.m.begin() + st.n, st.m.begin() + done);
        --st.n;
    }
}

// Staged packets that do not go out: the guest hears NETIF_RSP_ERROR for their slots. Freed
// in one call: a port that refuses a burst refuses most of it.
void Lcore::tx_drop_staged(std::span<rte_mbuf* const> ms) {
    if (ms.empty()) return;
    for (rte_mbuf* m : ms)
        for (rte_mbuf* seg = m; seg != nullptr; seg = seg->next)
            if (RTE_MBUF_HAS_EXTBUF(seg) && seg->shinfo != nullptr &&
                seg->shinfo->free_cb == &Lcore::tx_buffer_released)
                static_cast<TxPending*>(seg->shinfo->fcb_opaque)->status = rsp::kError;
    rte_pktmbuf_free_bulk(const_cast<rte_mbuf**>(ms.data()), static_cast<unsigned>(ms.size()));
    bump(counters_.tx_nic_drops, ms.size());
}

// Asks PMDs that free transmitted mbufs lazily (descriptor rings) to free them now, on the
// TX queues this lcore uses.
void Lcore::tx_cleanup_held() {
    for (const auto& port : engine_.ports) {
        if (port_paused_[port->index]) continue;
        bool mine = !port->single_tx;
        for (const GuestQueue* q : queues_)
            mine = mine || q->out_port_index == port->index;
        if (mine) (void)rte_eth_tx_done_cleanup(port->port->id(), port->tx_queue(index_), 0);
    }
}

bool Lcore::do_tx_completions(GuestQueue* q) {
    if (q->tx_outstanding == 0) return false;
    std::uint32_t slots[kMaxBurst];
    const unsigned n = rte_ring_sc_dequeue_burst_elem(q->tx_done, slots, sizeof(std::uint32_t),
                                                      kMaxBurst, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        TxPending& p = q->txp[slots[i] & kRingMask];
        if (!p.in_use || p.done) continue;
        p.done = true;
        TxGroup& g = q->tx_groups[static_cast<std::size_t>(p.group)];
        if (--g.outstanding == 0) tx_release_group(q, p.group);
    }
    if (q->tx_publish && !q->disabled) {
        if (q->tx.push_responses()) notify_tx(q);
    }
    q->tx_publish = false;
    return n != 0;
}

// Every page of a burst is back: unmap them with one call, then answer their slots.
void Lcore::tx_release_group(GuestQueue* q, std::int16_t g) {
    TxGroup& grp = q->tx_groups[static_cast<std::size_t>(g)];
    const std::uint32_t n = grp.mapping.count;
    if (Status st = unmap_run(q, grp.dma, grp.mapping); !st) {
        disable(q, "unmapping TX buffers failed", st.error().message.c_str());
        return;
    }
    bump(q->counters.c.grant_unmap_ops, n);
    bump(q->counters.c.grant_batches);
    for (std::int16_t s = grp.first; s >= 0;) {
        TxPending& p = q->txp[static_cast<std::size_t>(s)];
        s = p.next;
        if (!q->disabled) answer_slot(q, p.id, p.status, p.extras);
        p.in_use = false;
        --q->tx_outstanding;
    }
    grp = TxGroup{};
}

} // namespace dpnb::engine::detail
