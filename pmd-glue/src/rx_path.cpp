// The RX half of the poll loop (docs/datapath.md, "RX"): receiving from NIC queues and the
// inbox, and the round that ends every RX pass. Each NIC burst goes, once per burst, to the
// pipeline of the queue it belongs to (guest_queue.hpp):
//   * a zero-copy queue's burst completes its posted requests (rx_zero_copy.cpp);
//   * a copy queue's burst, a shared queue's frames after the demux by destination MAC, and
//     frames from another lcore's inbox wait on their queue for the round.
// The round: the copy pipeline takes requests for every waiting frame of every queue and
// writes their responses (rx_copy.cpp), one grant copy fills them all, then each queue with
// RX work publishes its final responses: one rsp_prod store, at most one notification.
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <utility>

#include "engine_core.hpp"
#include "lcore.hpp"

namespace dpnb::engine::detail {

// The queue of `q`'s vif a frame goes to, as Linux's xenvif_select_queue picks it: with the
// frontend's Toeplitz hashing (control ring), its mapping of the frame's hash, or the hash
// modulo the queues without a mapping (a frame no enabled hash type covers hashes as 0);
// without it (Linux: skb_get_hash % queues), the NIC's RSS hash where the port gave one, else
// the 5-tuple's. `hash` gets the frontend's hash, for the frame's hash extra-info slot.
GuestQueue* pick_queue(GuestQueue* q, const rte_mbuf* m,
                       std::optional<netif::FlowHash>& hash) noexcept {
    const std::span frame(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len);
    const std::uint32_t n = q->n_vif_queues;
    if (q->hash.active()) {
        hash = netif::flow_hash(q->hash, frame);
        return q->vif_queues[netif::hash_queue(q->hash, hash ? hash->value : 0, n)];
    }
    const std::uint32_t h =
        (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) != 0 ? m->hash.rss : netif::default_flow_hash(frame);
    return q->vif_queues[h % n];
}

Lcore::Demux* Lcore::demux_for(std::uint16_t port_index) {
    for (Demux& d : demux_)
        if (d.port_index == port_index) return &d;
    return nullptr;
}

GuestQueue* Lcore::queue_by_key(std::uint32_t key) const noexcept {
    const std::uint32_t slot = queue_key_slot(key);
    if (slot >= by_key_.size()) return nullptr;
    GuestQueue* q = by_key_[slot];
    return q != nullptr && q->key == key ? q : nullptr;
}

void Lcore::touch(GuestQueue* q) noexcept {
    if (q->rx_touched) return;
    q->rx_touched = true;
    touched_[n_touched_++] = q; // each queue once: at most kMaxQueueKeys
}

// --- receiving -------------------------------------------------------------------------------

// A burst do_nic_rx (lcore.cpp) got: to the demux on a shared queue, else to its guest
// queue's pipeline.
void Lcore::receive_nic_burst(NicRx& nic, rte_mbuf** pkts, std::uint16_t n) {
    if (nic.q == nullptr) {
        if (Demux* d = demux_for(nic.port_index); d != nullptr)
            demux(*d, pkts, n);
        else
            rte_pktmbuf_free_bulk(pkts, n);
    } else if (nic.q->zc) {
        zc_receive(nic.q, pkts, n);
    } else {
        for (std::uint16_t i = 0; i < n; ++i)
            queue_frame(nic.q, pkts[i]);
    }
}

// Frames of a burst often go to one guest: a destination the burst looked up already is not
// looked up again (the table changes only between bursts, on commands).
void Lcore::demux(Demux& d, rte_mbuf** frames, unsigned n) {
    std::uint64_t last_key = ~std::uint64_t{0}; // no MAC: keys use 48 bits
    const Target* last = nullptr;
    // The destination's queue when it lives on this lcore and takes frames as they come (one
    // queue, no hashing, serving): what queue_frame does for a unicast frame, inline. Nothing
    // changes a queue's state while the burst is demultiplexed.
    GuestQueue* direct = nullptr;
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = frames[i];
        if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(frames[i + 1], void*));
        if (m->data_len < RTE_ETHER_HDR_LEN) {
            copy_free(m);
            continue;
        }
        const auto* dst = rte_pktmbuf_mtod(m, const std::uint8_t*);
        if ((dst[0] & 0x01) != 0) {
            // Broadcast and multicast: a reference per guest queue; each frees its own.
            if (!d.all.empty()) rte_mbuf_refcnt_update(m, static_cast<std::int16_t>(d.all.size()));
            for (const Target& t : d.all)
                route(t, m);
            copy_free(m);
            continue;
        }
        std::uint64_t k = 0;
        std::memcpy(&k, dst, 6);
        if (k != last_key) {
            const auto it = d.unicast.find(k);
            last_key = k;
            last = it != d.unicast.end() ? &it->second : nullptr;
            GuestQueue* q = last != nullptr ? last->local : nullptr;
            direct = q != nullptr && q->n_vif_queues == 1 && !q->hash.active() && !q->disabled &&
                             !q->detaching && !q->rx_stalled
                         ? q
                         : nullptr;
        }
        if (last == nullptr) {
            copy_free(m); // for no guest of this port
            continue;
        }
        if (direct != nullptr && direct->n_pending != direct->pending.size()) [[likely]] {
            direct->pending_hash[direct->n_pending].reset();
            direct->pending[direct->n_pending++] = m;
            touch(direct);
            continue;
        }
        route(*last, m);
    }
}

void Lcore::route(const Target& t, rte_mbuf* m) {
    if (t.local != nullptr) {
        queue_frame(t.local, m);
        return;
    }
    Lcore& other = *engine_.lcores[t.lcore];
    InboxItem item{m, t.key, 0};
    if (rte_ring_mp_enqueue_elem(other.inbox(), &item, sizeof(item)) != 0) {
        bump(counters_.inbox_drops);
        copy_free(m);
        return;
    }
    if (other.sleeping()) other.wake();
}

bool Lcore::do_inbox() {
    InboxItem items[kMaxBurst];
    const unsigned n =
        rte_ring_sc_dequeue_burst_elem(inbox_, items, sizeof(InboxItem), kMaxBurst, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        if (GuestQueue* q = queue_by_key(items[i].key); q != nullptr)
            queue_frame(q, items[i].m);
        else
            copy_free(items[i].m); // the queue left meanwhile
    }
    if (n != 0) bump(counters_.inbox_frames, n);
    return n != 0;
}

// A frame in a daemon mbuf for `q`'s vif: it waits on the queue its flow picks for the round's
// copy. A vif of one queue that did not ask for hashes costs no hashing.
void Lcore::queue_frame(GuestQueue* q, rte_mbuf* m) {
    std::optional<netif::FlowHash> hash;
    if (q->n_vif_queues > 1 || q->hash.active()) q = pick_queue(q, m, hash);
    if (q->disabled || q->detaching) {
        copy_drop(q, m);
        return;
    }
    if (q->rx_stalled && !rx_stall_over(q)) {
        copy_drop(q, m, q->counters.c.rx_drop_stalled); // not staged: no copy, no round for it
        return;
    }
    const auto* dst = rte_pktmbuf_mtod(m, const std::uint8_t*);
    if (m->data_len >= RTE_ETHER_HDR_LEN && (dst[0] & 0x01) != 0 &&
        !rte_is_broadcast_ether_addr(reinterpret_cast<const rte_ether_addr*>(dst)) &&
        !q->accepts_multicast(dst)) {
        copy_free(m); // multicast the frontend did not subscribe to
        return;
    }
    if (q->n_pending == q->pending.size()) {
        copy_drop(q, m, q->counters.c.rx_drop_no_buffer);
        return;
    }
    q->pending_hash[q->n_pending] = hash;
    q->pending[q->n_pending++] = m;
    touch(q);
}

// --- stalled guests ---------------------------------------------------------------------------
// As Linux netback's carrier off/on (xenvif_rx_queue_stalled/_ready, XSA-392): a queue that
// has frames waiting and no RX buffer for rx_stall_timeout is stalled, and its frames are
// dropped as they come, before they are staged, until the guest posts a buffer again. A
// guest that never posts then costs a counter per frame, not a staged mbuf and a round.

// After the round read the queue's requests with frames waiting: `has_buffers` is whether
// the guest had any RX buffer for them (a request, or one posted to its zero-copy NIC queue).
void Lcore::rx_watch_stall(GuestQueue* q, bool has_buffers) {
    if (stall_tsc_ == 0) return;
    if (has_buffers) {
        q->rx_starved_since = 0;
        return;
    }
    const std::uint64_t now = rte_get_tsc_cycles();
    if (q->rx_starved_since == 0) {
        q->rx_starved_since = now;
        return;
    }
    if (q->rx_stalled || now - q->rx_starved_since < stall_tsc_) return;
    q->rx_stalled = true;
    bump(q->counters.c.rx_stalls);
    q->shared->stalled_queues.fetch_add(1, std::memory_order_relaxed);
    DPNB_DP_LOG(q->log, WARN,
                "{} queue {}: stalled: no RX buffer for {} ms with frames waiting; its frames "
                "are dropped until it posts (carrier off)",
                q->name, q->index, engine_.opts.rx_stall_timeout.count());
}

// A stalled queue whose guest posted again recovers (carrier on). Returns whether it did.
bool Lcore::rx_stall_over(GuestQueue* q) {
    const netif::RequestWindow w = q->rx.poll_requests();
    // (A zero-copy queue posts requests to its NIC queue as they come; overflow: the round
    // disables the queue.)
    if (w.available == 0 && !w.overflow && !(q->zc && q->zc->posted != 0)) return false;
    q->rx_stalled = false;
    q->rx_starved_since = 0;
    q->shared->stalled_queues.fetch_sub(1, std::memory_order_relaxed);
    DPNB_DP_LOG(q->log, WARN, "{} queue {}: RX buffers posted again: no longer stalled", q->name,
                q->index);
    return true;
}

// A request whose buffer offset leaves its page: the frontend is broken or hostile.
void Lcore::bad_rx_request(GuestQueue* q, const netif::RxRequest& req) {
    bump(q->counters.c.rx_bad_request);
    disable(q, "RX request names a buffer beyond its page",
            Detail("id {}, gref {}, offset {}, rx-buffer-size {}", req.id, req.gref, req.pad,
                   q->rx_buffers.buffer_size)
                .c_str());
}

// --- the round -------------------------------------------------------------------------------

bool Lcore::do_rx_round() {
    if (n_touched_ == 0) {
        if (n_copy_free_ != 0) copy_flush(); // frames the demux dropped
        return false;
    }
    // Work unless the round's only queues were backlogs that found no buffer (a queue touched
    // without frames took a one-copy frame or a bounce copy in this round).
    bool moved = false;
    for (std::uint32_t i = 0; i < n_touched_; ++i)
        moved = (touched_[i]->n_pending == 0 || copy_stage_queue(touched_[i])) || moved;
    copy_flush();
    for (std::uint32_t i = 0; i < n_touched_; ++i)
        publish_rx(touched_[i]);
    // Queues with a backlog (frames their guest had no buffer for) stay on the list: each
    // round looks at their requests again, and sleep_when_idle arms their rings.
    std::uint32_t kept = 0;
    for (std::uint32_t i = 0; i < n_touched_; ++i) {
        GuestQueue* q = touched_[i];
        if (q->n_pending == 0) continue;
        q->rx_touched = true;
        touched_[kept++] = q;
    }
    n_touched_ = kept;
    return moved;
}

// Commits the round's counts, then publishes the responses that are final from rsp_prod_pvt
// on: one rsp_prod store, at most one notification.
void Lcore::publish_rx(GuestQueue* q) {
    q->rx_touched = false;
    RxRoundCounts& r = q->rx_round;
    if (r.packets != 0) {
        bump(q->counters.c.rx_packets, r.packets);
        bump(q->counters.c.rx_bytes, r.bytes);
    }
    if (r.local_packets != 0) {
        bump(q->counters.c.local_rx_packets, r.local_packets);
        bump(q->counters.c.local_rx_bytes, r.local_bytes);
    }
    if (r.copy_ops != 0) {
        bump(q->counters.c.grant_copy_ops, r.copy_ops);
        bump(q->counters.c.daemon_copies, r.copies);
    }
    r = RxRoundCounts{};
    if (q->disabled) return; // the guest gets nothing more; detach releases the buffers
    // A copy queue answers in the round that consumed: everything is final.
    const std::uint32_t n = q->zc ? zc_answerable(q) : q->rx.unanswered();
    if (n == 0 || !q->rx.complete_responses(n)) return;
    if (q->rx.push_responses()) notify_rx(q);
}

} // namespace dpnb::engine::detail
