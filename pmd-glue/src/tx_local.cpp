// Guest-to-guest delivery on one port (docs/datapath.md, "Local delivery"), as a VEB does: a
// packet a guest sent, built and checked by the TX path (anti-spoofing included), whose
// destination is another guest of the same port goes to that guest's RX copy pipeline
// instead of the wire. Broadcast and multicast go to the wire and to every other guest of
// the port (each filters multicast itself); frames to other MACs go to the wire only.
//
// A packet for a guest whose queue this lcore owns and runs the copy pipeline goes in one grant
// copy from the sender's grants into the receiver's buffers (tx_onecopy). Otherwise the frame
// travels in the daemon mbufs the TX path built (its copied header and slots, or
// mapped guest pages attached as external buffers): the receiver's lcore grant-copies it into
// its guest's buffers in its round's one batch and frees it, which completes the sender's
// mapped slots through their free callback, as a PMD's free does. A receiver on another lcore
// gets it through that lcore's inbox. A receiver without room drops it (counted there): the
// sender is never held up by it.
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstring>
#include <optional>

#include "engine_core.hpp"
#include "lcore.hpp"
#include "offload.hpp"

namespace dpnb::engine::detail {

namespace {

// The guest's offload request, where the receiving copy pipeline reads it (rx_frame_meta):
// the frame's bytes stay as the sender wrote them, as Linux's bridge forwards a
// CHECKSUM_PARTIAL or GSO skb between two netback vifs.
void mark_offload(rte_mbuf* m, const netif::TxPacket& pkt, const PacketHeaders& h) {
    if (pkt.is_gso()) {
        m->ol_flags |=
            RTE_MBUF_F_TX_TCP_SEG |
            (pkt.offload.gso_type == netif::gso::kTcpV4 ? RTE_MBUF_F_TX_IPV4 : RTE_MBUF_F_TX_IPV6);
        m->tso_segsz = pkt.offload.gso_size;
    } else if (pkt.offload.csum_blank) {
        m->ol_flags |= h.l4_proto == 6 ? RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_UDP_CKSUM;
    }
}

// Whether the receiving frontend takes `pkt` whole: no GSO, or GSO of a kind it negotiated.
bool takes_gso(const netif::TxPacket& pkt, const netif::RxFeatures& f) {
    return !pkt.is_gso() ||
           (pkt.offload.gso_type == netif::gso::kTcpV4 ? f.gso_tcpv4 : f.gso_tcpv6);
}

} // namespace

// The other guest of the port a unicast packet (its header copy at `head`) is for, or nullptr.
const Lcore::LocalTarget* Lcore::tx_local_unicast(const GuestQueue* q, const rte_mbuf* head) const {
    const LocalPort& lp = local_[q->out_port_index];
    const auto* dst = rte_pktmbuf_mtod(head, const std::uint8_t*);
    if ((dst[0] & 0x01) != 0) return nullptr;
    std::uint64_t k = 0;
    std::memcpy(&k, dst, 6);
    const auto it = lp.unicast.find(k);
    if (it == lp.unicast.end() || std::memcmp(dst, q->mac.bytes.data(), 6) == 0) return nullptr;
    return &it->second;
}

// One copy, gref to gref (tx_build's step 3b on a queue that sends to guests of its port): a
// checked packet beyond its header copy, unicast to a guest whose queue this lcore owns and
// runs the copy pipeline, goes from the sender's grants straight into that guest's buffers
// (copy_stage_grants), the header from the daemon copy; the sender's slots are neither mapped
// nor copied into the daemon. Anything else (another lcore, a zero-copy or stalled receiver,
// frames already waiting for it, GSO it segments in software) returns false and goes on the
// daemon-mbuf path below. Returns true when the packet was taken (t.onecopy).
bool Lcore::tx_onecopy(GuestQueue* q, TxWork& t) {
    const LocalTarget* to = tx_local_unicast(q, t.hdr);
    if (to == nullptr || to->to.local == nullptr || !takes_gso(t.pkt, to->features)) return false;
    std::optional<netif::FlowHash> hash;
    GuestQueue* r = to->to.local;
    if (r->n_vif_queues > 1 || r->hash.active()) r = pick_queue(r, t.hdr, hash);
    // Frames waiting for it go first: a flow's frames keep their order.
    if (r->zc || r->disabled || r->detaching || r->rx_stalled || r->n_pending != 0) return false;
    mark_offload(t.hdr, t.pkt, t.h);
    netif::RxFrame meta = rx_frame_meta(t.hdr);
    meta.len = t.pkt.total_len;
    meta.hash = hash;
    if (!copy_stage_grants(r, t, q->dom, meta)) return false;
    q->tx_local_hint = true;
    return true;
}

// Returns true when the packet went to a guest of the port and not to the wire. Called only
// for a port with local delivery on and another guest besides the sender.
bool Lcore::tx_local(GuestQueue* q, TxWork& t, rte_mbuf* head) {
    const auto* dst = rte_pktmbuf_mtod(head, const std::uint8_t*);
    if ((dst[0] & 0x01) != 0) {
        tx_local_flood(q, t, head, local_[q->out_port_index]);
        return false;
    }
    const LocalTarget* found = tx_local_unicast(q, head);
    if (found == nullptr) return false;
    const LocalTarget& to = *found;
    const netif::TxPacket& pkt = t.pkt;
    q->tx_local_hint = true;
    bump(q->counters.c.local_tx_packets);
    bump(q->counters.c.local_tx_bytes, pkt.total_len);
    if (takes_gso(pkt, to.features)) {
        mark_offload(head, pkt, t.h);
        local_deliver(to.to, head);
        return true;
    }
    // A frontend that takes no GSO of this kind gets the segments, checksums filled in.
    TxSegments segs;
    const unsigned ns = tx_segment(q, t, head, false, segs);
    for (unsigned i = 0; i < ns; ++i)
        local_deliver(to.to, segs[i]);
    return true;
}

// Broadcast and multicast: a reference for every other guest of the port, on every segment of
// the chain (each receiver frees the whole chain); the caller sends the packet out as well.
// Receivers read the bytes while the PMD sends them, so nothing may write them afterwards: a
// partial checksum is filled in here, and the wire gets the packet without offloads. A GSO
// packet is TCP, never a group frame: it goes out only.
void Lcore::tx_local_flood(GuestQueue* q, TxWork& t, rte_mbuf* head, const LocalPort& lp) {
    if (t.pkt.is_gso()) return;
    std::uint64_t self = 0;
    std::memcpy(&self, q->mac.bytes.data(), 6);
    const auto n = static_cast<std::int16_t>(lp.all.size() - 1); // every guest but the sender
    if (t.pkt.offload.csum_blank) {
        software_l4_checksum(head, t.h);
        t.pkt.offload.csum_blank = false;
    }
    for (rte_mbuf* seg = head; seg != nullptr; seg = seg->next)
        rte_mbuf_refcnt_update(seg, n);
    head->ol_flags |= local_flag_;
    bump(q->counters.c.local_tx_packets);
    bump(q->counters.c.local_tx_bytes, t.pkt.total_len);
    std::int16_t given = 0;
    for (const LocalTarget& to : lp.all)
        if (to.mac != self && given < n) {
            ++given;
            route(to.to, head);
        }
    for (; given < n; ++given) // the table named the sender more than once: cannot happen
        rte_pktmbuf_free(head);
}

// One frame to a guest of the port: into its queue's round, or its lcore's inbox.
void Lcore::local_deliver(const Target& to, rte_mbuf* m) {
    m->ol_flags |= local_flag_;
    route(to, m);
}

} // namespace dpnb::engine::detail
