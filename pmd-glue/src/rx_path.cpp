// The RX half of the poll loop (docs/datapath.md, "RX"):
//   * zero-copy NIC queues: guest requests are posted (mapped, found in the translation
//     table, or given a bounce buffer) into the queue's guest pool in ring order; received
//     buffers complete their own request; the order the PMD filled them in is checked;
//   * copy queues and the shared queue: frames are demultiplexed by destination MAC (to
//     another lcore's inbox when the guest queue lives there), then take the next requests;
//   * per round: one batched grant copy for every frame of every guest queue, then per ring
//     the responses in ring order, one publish and at most one notification.
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "engine_core.hpp"
#include "lcore.hpp"

namespace dpnb::engine::detail {

using netif::RingIdx;
namespace gntst = netif::gntst;

namespace {

// A grant status that only a guest's own doing explains: a revoked or never-granted buffer,
// a read-only grant for a buffer we must write, a dying domain.
bool guest_fault(std::int16_t st) noexcept {
    return st == gntst::kGeneralError || st == gntst::kBadDomain || st == gntst::kBadGntref ||
           st == gntst::kPermissionDenied || st == gntst::kBadPage;
}

// Removes `idx` from the queue's NIC order; true when it was the oldest (filled in order).
bool take_nic_order(GuestQueue* q, RingIdx idx) noexcept {
    if (q->nic_head != q->nic_tail && q->nic_order[q->nic_head & kRingMask] == idx) {
        ++q->nic_head;
        return true;
    }
    for (std::uint32_t k = q->nic_head; k != q->nic_tail; ++k) {
        if (q->nic_order[k & kRingMask] != idx) continue;
        for (std::uint32_t j = k; j + 1 != q->nic_tail; ++j)
            q->nic_order[j & kRingMask] = q->nic_order[(j + 1) & kRingMask];
        --q->nic_tail;
        break;
    }
    return false;
}

netif::RxFrame frame_meta(const rte_mbuf* m) noexcept {
    netif::RxFrame f;
    f.len = m->pkt_len;
    f.data_validated = (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
    return f;
}

} // namespace

Lcore::Demux* Lcore::demux_for(std::uint16_t port_index) {
    for (Demux& d : demux_)
        if (d.port_index == port_index) return &d;
    return nullptr;
}

// --- receiving -------------------------------------------------------------------------------

bool Lcore::do_nic_rx(NicRx& nic) {
    const bool woke = std::exchange(nic.woke, false);
    if (port_paused_[nic.port_index]) return false;
    unsigned want = engine_.opts.burst;
    if (nic.burst_within_ready) {
        // net_tap readv()s a frame into its head buffer and only then allocates the
        // replacement; when the guest pool is empty it drops the frame (rx_nombuf) and, since
        // it returned fewer frames than asked, marks its RX trigger (a signal the kernel
        // raises per queued frame) as seen, so later bursts return 0 without reading until
        // the next signal. Under a flood the tun queue is full, the kernel drops new frames
        // without signalling, and the queue stalls for good although the guest re-posts.
        // Asking for no more frames than posted buffers keeps every replacement allocation
        // satisfiable: frames the guest has no buffer for wait in the tun queue, as in a NIC
        // whose descriptor ring ran dry.
        want = std::min(want, nic.q->nic.pool->ready());
        if (want == 0) return false;
    }
    rte_mbuf* pkts[kMaxBurst];
    const std::uint16_t n =
        rte_eth_rx_burst(nic.port_id, nic.queue, pkts, static_cast<std::uint16_t>(want));
    if (n == 0) {
        if (woke) nic.woke_empty = true;
        return false;
    }
    nic.woke_empty = false;
    if (nic.q == nullptr) {
        if (Demux* d = demux_for(nic.port_index); d != nullptr)
            demux(*d, pkts, n);
        else
            rte_pktmbuf_free_bulk(pkts, n);
    } else if (nic.q->nic.kind == NicKind::guest_pool) {
        for (std::uint16_t i = 0; i < n; ++i)
            complete_zero_copy(nic.q, pkts[i]);
    } else {
        for (std::uint16_t i = 0; i < n; ++i)
            queue_frame(nic.q, pkts[i]);
    }
    return true;
}

void Lcore::demux(Demux& d, rte_mbuf** frames, unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = frames[i];
        if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(frames[i + 1], void*));
        if (m->data_len < RTE_ETHER_HDR_LEN) {
            rte_pktmbuf_free(m);
            continue;
        }
        const auto* dst = rte_pktmbuf_mtod(m, const std::uint8_t*);
        if ((dst[0] & 0x01) != 0) {
            // Broadcast and multicast: a reference per guest queue; each frees its own.
            if (!d.all.empty()) rte_mbuf_refcnt_update(m, static_cast<std::int16_t>(d.all.size()));
            for (const Target& t : d.all)
                route(t, m);
            rte_pktmbuf_free(m);
            continue;
        }
        std::uint64_t k = 0;
        std::memcpy(&k, dst, 6);
        if (auto it = d.unicast.find(k); it != d.unicast.end())
            route(it->second, m);
        else
            rte_pktmbuf_free(m); // for no guest of this port
    }
}

void Lcore::route(const Target& t, rte_mbuf* m) {
    if (t.lcore == index_) {
        if (auto it = by_key_.find(t.key); it != by_key_.end())
            queue_frame(it->second, m);
        else
            rte_pktmbuf_free(m);
        return;
    }
    Lcore& other = *engine_.lcores[t.lcore];
    InboxItem item{m, t.key, 0};
    if (rte_ring_mp_enqueue_elem(other.inbox(), &item, sizeof(item)) != 0) {
        bump(counters_.inbox_drops);
        rte_pktmbuf_free(m);
        return;
    }
    if (other.sleeping()) other.wake();
}

bool Lcore::do_inbox() {
    InboxItem items[kMaxBurst];
    const unsigned n =
        rte_ring_sc_dequeue_burst_elem(inbox_, items, sizeof(InboxItem), kMaxBurst, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        if (auto it = by_key_.find(items[i].key); it != by_key_.end())
            queue_frame(it->second, items[i].m);
        else
            rte_pktmbuf_free(items[i].m); // the queue left meanwhile
    }
    if (n != 0) bump(counters_.inbox_frames, n);
    return n != 0;
}

void Lcore::queue_frame(GuestQueue* q, rte_mbuf* m) {
    if (q->disabled || q->detaching) {
        rte_pktmbuf_free(m);
        return;
    }
    const auto* dst = rte_pktmbuf_mtod(m, const std::uint8_t*);
    if (m->data_len >= RTE_ETHER_HDR_LEN && (dst[0] & 0x01) != 0 &&
        !rte_is_broadcast_ether_addr(reinterpret_cast<const rte_ether_addr*>(dst)) &&
        !q->accepts_multicast(dst)) {
        rte_pktmbuf_free(m); // multicast the frontend did not subscribe to
        return;
    }
    if (q->n_pending == q->pending.size()) {
        bump(q->counters.c.rx_drop_no_buffer);
        rte_pktmbuf_free(m);
        return;
    }
    q->pending[q->n_pending++] = m;
}

// --- zero copy --------------------------------------------------------------------------------

void Lcore::complete_zero_copy(GuestQueue* q, rte_mbuf* m) {
    pmd::GuestBufferPool& pool = *q->nic.pool;
    pmd::GuestBufInfo& info = pmd::GuestBufferPool::info(m);
    if (info.kind == pmd::GuestBufKind::placeholder) {
        // Filled while the queue started: no request to deliver it to in order.
        bump(q->counters.c.rx_drop_placeholder);
        rte_pktmbuf_free(m);
        return;
    }
    const RingIdx idx = info.ring_idx;
    RxSlot& s = q->slots[idx & kRingMask];
    if (!info.bound || s.state != RxSlot::State::posted || s.m != m) {
        spdlog::error("{} queue {}: NIC returned a buffer that is not posted (ring index {})",
                      to_string(q->vif), q->index, idx);
        if (info.bound)
            pool.recycle(m);
        else
            rte_pktmbuf_free(m);
        return;
    }
    // The device must fill buffers in the order it took them (docs/datapath.md, rule 3).
    if (!take_nic_order(q, idx)) {
        bump(q->counters.c.rx_out_of_order);
        if (!q->zc_out_of_order) {
            q->zc_out_of_order = true;
            report_fallback(q, RxMode::copy,
                            "the PMD filled RX buffers out of order; new buffers are copied");
        }
    }
    --q->posted;

    const netif::RxFrame meta = frame_meta(m);
    // Where the frame starts in the page: the buffer's start plus the PMD's headroom.
    const auto offset = static_cast<std::uint16_t>(s.buf_start + m->data_off);
    const bool whole = m->nb_segs == 1 && m->pkt_len == m->data_len && m->pkt_len != 0 &&
                       std::uint32_t{m->data_off} + m->pkt_len <= m->buf_len &&
                       std::uint32_t{offset} + m->pkt_len <= netif::kPageSize;
    s.m = nullptr;
    pool.recycle(m);
    bump(q->counters.c.rx_packets);
    bump(q->counters.c.rx_bytes, meta.len);
    if (!whole) {
        const std::uint16_t id = s.id;
        (void)netif::build_rx_error_responses(std::span(&id, 1), netif::rsp::kError,
                                              std::span(&s.entry, 1));
        bump(q->counters.c.rx_drop_error);
    } else if (s.buf == RxSlot::Buf::bounce) {
        if (segs_.size() + 1 > segs_.capacity()) finish_copies();
        stage_bounce(q, idx, nullptr);
        const netif::RxChunk chunk{offset, static_cast<std::uint16_t>(meta.len)};
        CopyFrame& f = copy_frames_.back();
        f.meta = meta;
        f.nchunks = 1;
        f.chunks[0] = chunk;
        f.seg_begin = static_cast<std::uint32_t>(segs_.size());
        segs_.push_back(
            hv::GrantCopySegment::to_guest(s.page + offset, q->dom, s.gref, offset, chunk.len));
        f.seg_end = static_cast<std::uint32_t>(segs_.size());
        s.state = RxSlot::State::copying;
        return;
    } else {
        const std::uint16_t id = s.id;
        const netif::RxChunk chunk{offset, static_cast<std::uint16_t>(meta.len)};
        (void)netif::build_rx_responses(meta, std::span(&id, 1), std::span(&chunk, 1),
                                        q->rx_features, std::span(&s.entry, 1));
    }
    if (std::find(rx_touched_.begin(), rx_touched_.end(), q) == rx_touched_.end())
        rx_touched_.push_back(q);
    if (s.buf == RxSlot::Buf::mapped) {
        s.state = RxSlot::State::filled;
        group_filled(q, s.group);
    } else {
        release_rx_slot(q, s); // reuse: drop our in-flight count before the response
        s.state = RxSlot::State::ready;
    }
}

void Lcore::stage_bounce(GuestQueue* q, std::uint32_t idx, rte_mbuf* m) {
    CopyFrame f{};
    f.q = q;
    f.m = m;
    f.first = idx;
    f.nslots = 1;
    copy_frames_.push_back(f);
    if (std::find(rx_touched_.begin(), rx_touched_.end(), q) == rx_touched_.end())
        rx_touched_.push_back(q);
}

void Lcore::group_filled(GuestQueue* q, std::int16_t g) {
    MapGroup& grp = q->groups[static_cast<std::size_t>(g)];
    if (--grp.pending != 0) return;
    // Every buffer of the group is filled: unmap before any of them is answered.
    const std::uint32_t n = grp.mapping.count;
    if (Status st = gt_->unmap(grp.mapping); !st) {
        disable(q, "unmapping RX buffers failed", st.error().describe());
        return;
    }
    bump(q->counters.c.grant_unmap_ops, n);
    bump(q->counters.c.grant_batches);
    for (RingIdx i = grp.first; i != grp.last + 1; ++i) {
        RxSlot& s = q->slots[i & kRingMask];
        if (s.group == g && s.state == RxSlot::State::filled) {
            s.state = RxSlot::State::ready;
            s.group = -1;
            s.page = nullptr;
        }
    }
    grp = MapGroup{};
}

void Lcore::collect_returned(GuestQueue* q) {
    if (q->nic.kind != NicKind::guest_pool) return;
    pmd::GuestBufferPool& pool = *q->nic.pool;
    while (rte_mbuf* m = pool.pop_returned()) {
        const RingIdx idx = pmd::GuestBufferPool::info(m).ring_idx;
        RxSlot& s = q->slots[idx & kRingMask];
        pool.recycle(m);
        if (s.state != RxSlot::State::posted || s.m != m) continue;
        s.m = nullptr;
        --q->posted;
        (void)take_nic_order(q, idx);
        const std::uint16_t id = s.id;
        (void)netif::build_rx_error_responses(std::span(&id, 1), netif::rsp::kError,
                                              std::span(&s.entry, 1));
        bump(q->counters.c.rx_drop_error);
        if (s.buf == RxSlot::Buf::mapped) {
            s.state = RxSlot::State::filled;
            group_filled(q, s.group);
        } else {
            release_rx_slot(q, s);
            s.state = RxSlot::State::ready;
        }
        if (std::find(rx_touched_.begin(), rx_touched_.end(), q) == rx_touched_.end())
            rx_touched_.push_back(q);
    }
}

// Releases what a slot holds (translation-table count, bounce buffer, header); map groups
// are unmapped as a whole by their last member or at detach.
void Lcore::release_rx_slot(GuestQueue* q, RxSlot& s) {
    switch (s.buf) {
    case RxSlot::Buf::reuse:
        if (q->have_view && s.page != nullptr) q->view.release(s.gref);
        break;
    case RxSlot::Buf::bounce:
        if (s.page != nullptr && q->nic.pool != nullptr) q->nic.pool->give_bounce(s.page);
        break;
    case RxSlot::Buf::mapped:
    case RxSlot::Buf::none:
        break;
    }
    s.page = nullptr;
    s.buf = RxSlot::Buf::none;
    if (s.m != nullptr && q->nic.pool != nullptr) {
        q->nic.pool->recycle(s.m);
        s.m = nullptr;
    }
}

// Releases the slots [first, end) of a posting round that gave nothing to the NIC.
void Lcore::release_rx_round(GuestQueue* q, RingIdx first, RingIdx end) {
    for (RingIdx j = first; j != end; ++j) {
        release_rx_slot(q, q->slots[j & kRingMask]);
        q->slots[j & kRingMask] = RxSlot{};
    }
}

// Takes back the buffers the NIC has not taken yet (detach).
void Lcore::drop_posted(GuestQueue* q) {
    if (q->nic.kind != NicKind::guest_pool) return;
    pmd::GuestBufferPool& pool = *q->nic.pool;
    while (rte_mbuf* m = pool.pop_ready()) {
        const RingIdx idx = pmd::GuestBufferPool::info(m).ring_idx;
        RxSlot& s = q->slots[idx & kRingMask];
        pool.recycle(m);
        if (s.m == m) s.m = nullptr;
        if (s.state == RxSlot::State::posted) {
            --q->posted;
            if (s.buf == RxSlot::Buf::mapped) {
                s.state = RxSlot::State::filled; // unmapped with its group at detach
            } else {
                release_rx_slot(q, s);
                s.state = RxSlot::State::ready;
            }
        }
    }
    // What stays posted is inside the NIC: nic_order keeps only those.
    q->nic_tail = q->nic_head + q->posted;
}

bool Lcore::do_rx_post(GuestQueue* q) {
    if (q->nic.kind != NicKind::guest_pool || q->disabled || q->detaching) return false;
    const unsigned depth = std::min<unsigned>(engine_.opts.zc_depth, kRingSize);
    if (q->posted >= depth) return false;
    const netif::RequestWindow w = q->rx.poll_requests();
    if (w.overflow) {
        disable(q, "RX ring overflow",
                "req_prod " + std::to_string(w.prod) + ", req_cons " + std::to_string(w.cons));
        return false;
    }
    pmd::GuestBufferPool& pool = *q->nic.pool;
    const std::uint32_t budget =
        std::min<std::uint32_t>({w.available, depth - q->posted, engine_.opts.burst});
    if (budget == 0) return false;

    // Gather: decide each request's buffer; map requests are collected for one call.
    map_reqs_.clear();
    std::uint32_t took = 0;
    for (; took < budget; ++took) {
        const RingIdx idx = w.cons + took;
        const netif::RxRequest req = q->rx.copy_request(idx);
        const auto buffer = netif::rx_request_buffer(q->rx_buffers, req.pad);
        if (!buffer) {
            // Nothing of this round reached the NIC: release it all, stop serving.
            release_rx_round(q, w.cons, idx);
            bad_rx_request(q, req);
            return true;
        }
        RxSlot& s = q->slots[idx & kRingMask];
        rte_mbuf* m = pool.take_header();
        if (m == nullptr) break;
        s = RxSlot{};
        s.id = req.id;
        s.gref = req.gref;
        s.buf_start = static_cast<std::uint16_t>(buffer->offset - q->rx_buffers.headroom);
        s.m = m;
        RxMode how = q->zc_out_of_order ? RxMode::copy : q->mode;
        if (how == RxMode::reuse) {
            std::byte* page = q->have_view ? q->view.acquire(req.gref, true) : nullptr;
            if (page != nullptr) {
                bump(q->counters.c.iott_hits);
                s.buf = RxSlot::Buf::reuse;
                s.page = page;
            } else {
                bump(q->counters.c.iott_misses);
                how = q->reuse_miss;
            }
        }
        if (how == RxMode::map) {
            s.buf = RxSlot::Buf::mapped;
            map_reqs_.push_back(hv::GrantMapRequest{q->dom, req.gref, true});
        } else if (how == RxMode::copy) {
            std::byte* b = pool.take_bounce();
            if (b == nullptr) {
                pool.give_header(m);
                s = RxSlot{};
                break;
            }
            s.buf = RxSlot::Buf::bounce;
            s.page = b;
        }
        s.state = RxSlot::State::posted;
    }
    if (took == 0) return false;

    // Map: groups of at most map_batch buffers, one grant-map call each.
    std::array<RingIdx, kMaxBurst> map_idx{};
    std::uint32_t nmap = 0;
    for (RingIdx j = w.cons; j != w.cons + took; ++j)
        if (q->slots[j & kRingMask].buf == RxSlot::Buf::mapped) map_idx[nmap++] = j;
    const unsigned batch = std::clamp(engine_.opts.map_batch, 1U, kMaxBurst);
    for (std::uint32_t start = 0; start < nmap; start += batch) {
        const std::uint32_t n = std::min(batch, nmap - start);
        map_status_.assign(n, 0);
        hv::GrantMapping mapping =
            gt_->map(std::span(map_reqs_.data() + start, n), std::span(map_status_.data(), n));
        std::int16_t g = -1;
        if (mapping)
            for (std::size_t k = 0; k < q->groups.size() && g < 0; ++k)
                if (!q->groups[k].used) g = static_cast<std::int16_t>(k);
        if (!mapping || g < 0) {
            std::int16_t bad = gntst::kGeneralError;
            for (std::int16_t st : map_status_)
                if (st != gntst::kOkay) bad = st;
            if (mapping) (void)gt_->unmap(mapping);
            if (guest_fault(bad) && q->fatal_bad_grants) {
                // Nothing of this round reached the NIC: release it all, stop serving.
                release_rx_round(q, w.cons, w.cons + took);
                q->rx.consume(took);
                q->rx_answer_pending += took;
                disable(q, "RX buffer grant refused",
                        "GNTST " + std::to_string(bad) + " mapping a posted buffer");
                return true;
            }
            // Not the guest's fault (or tolerated): these buffers are copied instead; a
            // bad one is then answered in error when its copy fails.
            for (std::uint32_t k = 0; k < n; ++k) {
                RxSlot& s = q->slots[map_idx[start + k] & kRingMask];
                s.page = pool.take_bounce();
                s.buf = s.page != nullptr ? RxSlot::Buf::bounce : RxSlot::Buf::none;
            }
            continue;
        }
        MapGroup& grp = q->groups[static_cast<std::size_t>(g)];
        grp.used = true;
        grp.mapping = mapping;
        grp.pending = static_cast<std::uint16_t>(n);
        grp.first = map_idx[start];
        grp.last = map_idx[start + n - 1];
        bump(q->counters.c.grant_map_ops, n);
        bump(q->counters.c.grant_batches);
        for (std::uint32_t k = 0; k < n; ++k) {
            RxSlot& s = q->slots[map_idx[start + k] & kRingMask];
            s.page = mapping.page(k);
            s.group = g;
        }
    }

    // Commit: consume the requests, hand the buffers to the NIC in ring order.
    q->rx.consume(took);
    q->rx_answer_pending += took;
    for (RingIdx j = w.cons; j != w.cons + took; ++j) {
        RxSlot& s = q->slots[j & kRingMask];
        if (s.buf == RxSlot::Buf::none) {
            // No buffer could be found for it: answer it empty, in its turn.
            release_rx_slot(q, s);
            const std::uint16_t id = s.id;
            (void)netif::build_rx_error_responses(std::span(&id, 1), netif::rsp::kError,
                                                  std::span(&s.entry, 1));
            s.state = RxSlot::State::ready;
            bump(q->counters.c.rx_drop_error);
            if (std::find(rx_touched_.begin(), rx_touched_.end(), q) == rx_touched_.end())
                rx_touched_.push_back(q);
            continue;
        }
        const auto kind =
            s.buf == RxSlot::Buf::bounce ? pmd::GuestBufKind::bounce : pmd::GuestBufKind::guest;
        (void)pool.push_ready(s.m, s.page + s.buf_start, kind, j, q->rx_buffers.buffer_size);
        q->nic_order[q->nic_tail++ & kRingMask] = j;
        ++q->posted;
    }
    return true;
}

// A request whose buffer offset leaves its page: the frontend is broken or hostile.
void Lcore::bad_rx_request(GuestQueue* q, const netif::RxRequest& req) {
    bump(q->counters.c.rx_bad_request);
    disable(q, "RX request names a buffer beyond its page",
            "id " + std::to_string(req.id) + ", gref " + std::to_string(req.gref) + ", offset " +
                std::to_string(req.pad) + ", rx-buffer-size " +
                std::to_string(q->rx_buffers.buffer_size));
}

// --- copying and answering -----------------------------------------------------------------

// Takes the next requests for a frame in a daemon mbuf and stages its grant copy.
bool Lcore::stage_copy_frame(GuestQueue* q, rte_mbuf* m) {
    netif::RxFrame meta = frame_meta(m);
    const netif::RxBufferGeometry geo = netif::rx_uniform_geometry(q->rx_buffers);
    netif::RxFeatures features = q->rx_features;
    const netif::RxPlan plan = netif::plan_rx_frame(meta, geo, features);
    if (plan.error != netif::RxBuildError::none || (!q->rx_sg && plan.data_slots > 1)) {
        bump(q->counters.c.rx_drop_error);
        DPNB_DP_LOG(q->log, DEBUG, "{}: RX frame of {} bytes cannot be delivered: {}",
                    to_string(q->vif), meta.len,
                    plan.error != netif::RxBuildError::none ? netif::to_string(plan.error)
                                                            : "frontend without feature-sg");
        rte_pktmbuf_free(m);
        return false;
    }
    const netif::RequestWindow w = q->rx.poll_requests();
    if (w.overflow) {
        disable(q, "RX ring overflow", "req_prod " + std::to_string(w.prod));
        rte_pktmbuf_free(m);
        return false;
    }
    if (w.available < plan.requests) {
        bump(q->counters.c.rx_drop_no_buffer);
        rte_pktmbuf_free(m);
        return false;
    }
    if (segs_.size() + plan.data_slots + m->nb_segs > segs_.capacity()) finish_copies();

    CopyFrame f{};
    f.q = q;
    f.m = m;
    f.first = w.cons;
    f.nslots = plan.requests;
    f.meta = meta;
    f.nchunks = static_cast<std::uint16_t>(
        netif::rx_layout(meta.len, geo, std::span(f.chunks.data(), f.chunks.size())));
    f.seg_begin = static_cast<std::uint32_t>(segs_.size());
    for (std::uint32_t k = 0; k < plan.requests; ++k) {
        const RingIdx idx = w.cons + k;
        const netif::RxRequest req = q->rx.copy_request(idx);
        // Request 1 of a GSO frame carries the extra-info slot: its buffer is not written.
        const bool extra = plan.gso_extra && k == 1;
        if (!extra) {
            const auto buffer = netif::rx_request_buffer(q->rx_buffers, req.pad);
            if (!buffer) {
                for (std::uint32_t j = 0; j < k; ++j)
                    q->slots[(w.cons + j) & kRingMask] = RxSlot{};
                bad_rx_request(q, req);
                rte_pktmbuf_free(m);
                return false;
            }
            f.chunks[k == 0 ? 0 : k - (plan.gso_extra ? 1U : 0U)].offset = buffer->offset;
        }
        RxSlot& s = q->slots[idx & kRingMask];
        s = RxSlot{};
        s.id = req.id;
        s.gref = req.gref;
        s.state = RxSlot::State::copying;
    }
    q->rx.consume(plan.requests);
    q->rx_answer_pending += plan.requests;
    // Segments: each chunk goes to its request's buffer, split where the mbuf chain splits.
    const rte_mbuf* seg = m;
    std::uint32_t seg_off = 0;
    for (std::uint16_t c = 0; c < f.nchunks; ++c) {
        const std::uint32_t slot = c == 0 ? 0 : c + (plan.gso_extra ? 1U : 0U);
        const RxSlot& s = q->slots[(w.cons + slot) & kRingMask];
        std::uint32_t dst_off = f.chunks[c].offset;
        std::uint32_t left = f.chunks[c].len;
        while (left > 0 && seg != nullptr) {
            if (seg_off == seg->data_len) {
                seg = seg->next;
                seg_off = 0;
                continue;
            }
            const std::uint32_t take = std::min<std::uint32_t>(left, seg->data_len - seg_off);
            segs_.push_back(hv::GrantCopySegment::to_guest(
                rte_pktmbuf_mtod_offset(seg, const std::byte*, seg_off), q->dom, s.gref,
                static_cast<std::uint16_t>(dst_off), static_cast<std::uint16_t>(take)));
            seg_off += take;
            dst_off += take;
            left -= take;
        }
    }
    f.seg_end = static_cast<std::uint32_t>(segs_.size());
    copy_frames_.push_back(f);
    return true;
}

void Lcore::finish_copies() {
    if (!segs_.empty()) {
        const Status st = gt_->copy(std::span(segs_));
        if (!st)
            for (auto& s : segs_)
                s.status = gntst::kGeneralError;
        GuestQueue* last = nullptr;
        for (const CopyFrame& f : copy_frames_)
            if (f.q != last) {
                bump(f.q->counters.c.grant_batches);
                last = f.q;
            }
    }
    for (CopyFrame& f : copy_frames_) {
        GuestQueue* q = f.q;
        std::int16_t bad = gntst::kOkay;
        for (std::uint32_t i = f.seg_begin; i < f.seg_end; ++i)
            if (segs_[i].status != gntst::kOkay) bad = segs_[i].status;
        bump(q->counters.c.grant_copy_ops, f.seg_end - f.seg_begin);
        std::array<std::uint16_t, netif::kRxMaxDataSlots + 1> ids{};
        std::array<netif::RxEntry, netif::kRxMaxDataSlots + 1> entries{};
        for (std::uint32_t k = 0; k < f.nslots; ++k)
            ids[k] = q->slots[(f.first + k) & kRingMask].id;
        const auto id_span = std::span(ids.data(), f.nslots);
        const auto out = std::span(entries.data(), f.nslots);
        netif::RxBuildResult r;
        if (bad == gntst::kOkay) {
            r = netif::build_rx_responses(f.meta, id_span, std::span(f.chunks.data(), f.nchunks),
                                          q->rx_features, out);
            if (f.m != nullptr) { // bounce slots were counted when the NIC filled them
                bump(q->counters.c.rx_packets);
                bump(q->counters.c.rx_bytes, f.meta.len);
            }
            bump(q->counters.c.daemon_copies);
        }
        if (bad != gntst::kOkay || r.error != netif::RxBuildError::none) {
            if (guest_fault(bad) && q->fatal_bad_grants)
                disable(q, "RX buffer grant refused",
                        "GNTST " + std::to_string(bad) + " copying into gref " +
                            std::to_string(q->slots[f.first & kRingMask].gref));
            r = netif::build_rx_error_responses(id_span, netif::rsp::kError, out);
            bump(q->counters.c.rx_drop_error);
        }
        for (std::uint32_t k = 0; k < f.nslots; ++k) {
            RxSlot& s = q->slots[(f.first + k) & kRingMask];
            s.entry = entries[k];
            release_rx_slot(q, s); // a bounce buffer goes back
            s.state = RxSlot::State::ready;
        }
        if (f.m != nullptr) rte_pktmbuf_free(f.m);
    }
    segs_.clear();
    copy_frames_.clear();
}

bool Lcore::do_rx_deliver() {
    bool any = false;
    for (GuestQueue* q : queues_) {
        if (q->n_pending == 0) continue;
        any = true;
        if (std::find(rx_touched_.begin(), rx_touched_.end(), q) == rx_touched_.end())
            rx_touched_.push_back(q);
        for (std::uint32_t i = 0; i < q->n_pending; ++i) {
            if (i + 1 < q->n_pending) rte_prefetch0(rte_pktmbuf_mtod(q->pending[i + 1], void*));
            if (q->disabled)
                rte_pktmbuf_free(q->pending[i]);
            else
                stage_copy_frame(q, q->pending[i]);
        }
        q->n_pending = 0;
    }
    finish_copies();
    for (GuestQueue* q : rx_touched_)
        answer_rx(q);
    any = any || !rx_touched_.empty();
    rx_touched_.clear();
    return any;
}

// Writes every finished response from rsp_prod_pvt on, in ring order; one publish, at most
// one notification.
void Lcore::answer_rx(GuestQueue* q) {
    if (q->disabled) return; // the guest gets nothing more; detach releases the slots
    RingIdx i = q->rx.rsp_prod_pvt();
    bool wrote = false;
    while (q->rx_answer_pending != 0) {
        RxSlot& s = q->slots[i & kRingMask];
        if (s.state != RxSlot::State::ready) break;
        if (!netif::put_rx_entries(q->rx, std::span(&s.entry, 1))) break;
        s = RxSlot{};
        ++i;
        --q->rx_answer_pending;
        wrote = true;
    }
    if (wrote && q->rx.push_responses()) notify_rx(q);
}

} // namespace dpnb::engine::detail
