// The zero-copy pipeline of RX (guest_queue.hpp, docs/datapath.md "RX, dedicated queue"):
// a queue whose NIC queue allocates from a guest-buffer pool. Requests are posted ahead of
// frames: each gets a buffer from one source, a page the translation table names (reuse), a
// page mapped for it (map, one batched map per post), or a daemon bounce buffer (copy mode,
// translation misses, and after the PMD was caught filling out of order), and goes into the
// pool's FIFO in ring order. When the NIC returns a filled buffer its response is written
// into its request's slot; the buffer is released before the response is published (reuse:
// the in-flight count dropped; map: its group unmapped; bounce: copied to the guest in the
// round's grant copy, then given back). rx_path.cpp publishes the run of final responses.
#include <rte_mbuf.h>

#include <algorithm>
#include <span>

#include "engine_core.hpp"
#include "lcore.hpp"

namespace dpnb::engine::detail {

using netif::RingIdx;
namespace gntst = netif::gntst;

namespace {

// `idx` was not the oldest buffer the NIC had: remove it from the middle (false).
bool take_nic_order_late(ZeroCopyRx& z, RingIdx idx) noexcept {
    for (std::uint32_t k = z.nic_head; k != z.nic_tail; ++k) {
        if (z.nic_order[k & kRingMask] != idx) continue;
        for (std::uint32_t j = k; j + 1 != z.nic_tail; ++j)
            z.nic_order[j & kRingMask] = z.nic_order[(j + 1) & kRingMask];
        --z.nic_tail;
        break;
    }
    return false;
}

// A posted header the pool gave back (still bound): the slot it was posted for (its ring
// index in `idx`); the header goes back to the free list.
ZcSlot& take_back(ZeroCopyRx& z, rte_mbuf* m, RingIdx& idx) noexcept {
    idx = pmd::GuestBufferPool::info(m).ring_idx;
    z.pool.recycle(m);
    return z.slots[idx & kRingMask];
}

// Removes `idx` from the NIC order; true when it was the oldest (filled in order).
inline bool take_nic_order(ZeroCopyRx& z, RingIdx idx) noexcept {
    if (z.nic_head != z.nic_tail && z.nic_order[z.nic_head & kRingMask] == idx) [[likely]] {
        ++z.nic_head;
        return true;
    }
    return take_nic_order_late(z, idx);
}

} // namespace

// --- posting ---------------------------------------------------------------------------------

bool Lcore::zc_post(GuestQueue* q) {
    if (q->disabled || q->detaching) return false;
    ZeroCopyRx& z = *q->zc;
    const unsigned depth = std::min<unsigned>(engine_.opts.zc_depth, kRingSize);
    if (z.posted >= depth) return false;
    const netif::RequestWindow w = q->rx.poll_requests();
    if (w.overflow) {
        disable(q, "RX ring overflow", Detail("req_prod {}, req_cons {}", w.prod, w.cons).c_str());
        return false;
    }
    const std::uint32_t budget =
        std::min<std::uint32_t>({w.available, depth - z.posted, engine_.opts.burst});
    if (budget == 0) return false;

    // Gather: each request's buffer; maps are collected for one call. A post takes at most
    // a burst (EngineOptions::burst <= kMaxBurst), and maps at most as many.
    static_assert(std::tuple_size_v<decltype(map_reqs_)> >= kMaxBurst &&
                  std::tuple_size_v<decltype(map_idx_)> >= kMaxBurst);
    pmd::GuestBufferPool& pool = z.pool;
    // The queue's buffer layout, read once for the post: each request then costs one check
    // of its own offset.
    const netif::RxBufferLayout layout = q->rx_buffers;
    // netif::rx_request_buffer with the layout's part checked once: a request's buffer starts
    // at its offset (the frame at the headroom after it) and must end within its page.
    const bool layout_ok = netif::rx_uniform_geometry(layout).size != 0;
    const auto max_start =
        static_cast<std::uint32_t>(layout_ok ? netif::kPageSize - layout.buffer_size : 0U);
    const RxMode mode = z.out_of_order ? RxMode::copy : q->mode;
    const bool view = q->have_view;
    // The buffers in ring order, bound as they are found (a mapped one once its map is done).
    rte_mbuf* ready[kMaxBurst];
    std::uint32_t nmap = 0;
    std::uint32_t took = 0;
    std::uint64_t hits = 0, misses = 0;
    for (; took < budget; ++took) {
        const RingIdx idx = w.cons + took;
        const netif::RxRequest req = q->rx.copy_request(idx);
        const std::uint32_t start = layout.request_offsets ? req.pad : 0U;
        if (!layout_ok || start > max_start) [[unlikely]] {
            // Nothing of this round reached the NIC: release it all, stop serving.
            bump(q->counters.c.iott_hits, hits);
            bump(q->counters.c.iott_misses, misses);
            zc_release_round(q, w.cons, idx);
            bad_rx_request(q, req);
            return true;
        }
        rte_mbuf* m = pool.take_header();
        if (m == nullptr) break;
        ZcSlot& s = z.slots[idx & kRingMask];
        const auto buf_start = static_cast<std::uint16_t>(start);
        q->rx_ids[idx & kRingMask] = req.id;
        RxMode how = mode;
        if (how == RxMode::reuse) {
            std::byte* page = view ? q->view.acquire(req.gref, true) : nullptr;
            if (page != nullptr) [[likely]] {
                ++hits;
                s = ZcSlot{
                    m, page, req.gref, -1, buf_start, ZcSlot::State::posted, ZcSlot::Source::reuse};
                pool.bind(m, page + buf_start, pmd::GuestBufKind::guest, idx, layout.buffer_size);
                ready[took] = m;
                continue;
            }
            ++misses;
            how = q->reuse_miss;
        }
        s = ZcSlot{
            m, nullptr, req.gref, -1, buf_start, ZcSlot::State::posted, ZcSlot::Source::none};
        if (how == RxMode::map) {
            s.source = ZcSlot::Source::map;
            map_reqs_[nmap] = hv::GrantMapRequest{q->dom, req.gref, true};
            map_idx_[nmap++] = idx;
            continue;
        }
        std::byte* b = pool.take_bounce();
        if (b == nullptr) {
            pool.give_header(m);
            s = ZcSlot{};
            break;
        }
        s.source = ZcSlot::Source::bounce;
        s.page = b;
        pool.bind(m, b + s.buf_start, pmd::GuestBufKind::bounce, idx, layout.buffer_size);
        ready[took] = m;
    }
    if (hits != 0) bump(q->counters.c.iott_hits, hits);
    if (misses != 0) bump(q->counters.c.iott_misses, misses);
    if (took == 0) return false;
    if (nmap != 0) {
        zc_map_posted(q, nmap);
        if (q->disabled) {
            // A refused grant: nothing of this round reached the NIC. The requests count as
            // consumed, unanswered; detach releases them.
            zc_release_round(q, w.cons, w.cons + took);
            q->rx.consume(took);
            return true;
        }
    }

    // Commit: consume the requests, hand the buffers to the NIC in ring order, all at once.
    q->rx.consume(took);
    unsigned n_ready = 0;
    if (nmap == 0) {
        // Every slot found its buffer in the gather and is bound.
        for (; n_ready < took; ++n_ready)
            z.nic_order[(z.nic_tail + n_ready) & kRingMask] = w.cons + n_ready;
        z.nic_tail += n_ready;
    } else {
        // A slot has a mapped page, a bounce buffer instead, or nothing.
        for (RingIdx j = w.cons; j != w.cons + took; ++j) {
            ZcSlot& s = z.slots[j & kRingMask];
            if (s.source == ZcSlot::Source::none) {
                // No buffer could be found for it: answer it empty, in its turn.
                zc_release(q, s);
                (void)q->rx.put_response_at(
                    j, netif::rx_error_response(q->rx_ids[j & kRingMask], netif::rsp::kError));
                s.state = ZcSlot::State::final;
                bump(q->counters.c.rx_drop_error);
                touch(q);
                continue;
            }
            const auto kind = s.source == ZcSlot::Source::bounce ? pmd::GuestBufKind::bounce
                                                                 : pmd::GuestBufKind::guest;
            pool.bind(s.m, s.page + s.buf_start, kind, j, layout.buffer_size);
            ready[n_ready++] = s.m;
            z.nic_order[z.nic_tail++ & kRingMask] = j;
        }
    }
    // The pool holds a header per buffer the NIC may have (GuestPoolConfig::headers), so its
    // FIFO has room for every one.
    (void)pool.push_ready(std::span<rte_mbuf* const>(ready, n_ready));
    z.posted += n_ready;
    return true;
}

// Maps the buffers of this post's map slots (map_reqs_ / map_idx_), map_batch per call. A
// batch that fails for a reason the guest cannot be blamed for is bounced (copied) instead,
// or left without a buffer; one the guest broke disables the vif.
void Lcore::zc_map_posted(GuestQueue* q, std::uint32_t nmap) {
    ZeroCopyRx& z = *q->zc;
    const unsigned batch = std::clamp(engine_.opts.map_batch, 1U, kMaxBurst);
    for (std::uint32_t start = 0; start < nmap; start += batch) {
        const std::uint32_t n = std::min(batch, nmap - start);
        const std::span status(map_status_.data(), n);
        std::fill(status.begin(), status.end(), std::int16_t{0});
        hv::GrantMapping mapping = grant_map(std::span(map_reqs_.data() + start, n), status);
        std::int16_t g = -1;
        if (mapping)
            for (std::size_t k = 0; k < z.groups.size() && g < 0; ++k)
                if (!z.groups[k].used) g = static_cast<std::int16_t>(k);
        if (!mapping || g < 0) {
            std::int16_t bad = gntst::kGeneralError;
            for (std::int16_t st : status)
                if (st != gntst::kOkay) bad = st;
            if (mapping) (void)grant_unmap(mapping);
            if (guest_fault(bad) && q->fatal_bad_grants) {
                disable(q, "RX buffer grant refused",
                        Detail("GNTST {} mapping a posted buffer", bad).c_str());
                return;
            }
            // Not the guest's fault (or tolerated): these buffers are copied instead; a bad
            // one is then answered in error when its copy fails.
            for (std::uint32_t k = 0; k < n; ++k) {
                ZcSlot& s = z.slots[map_idx_[start + k] & kRingMask];
                s.page = z.pool.take_bounce();
                s.source = s.page != nullptr ? ZcSlot::Source::bounce : ZcSlot::Source::none;
            }
            continue;
        }
        MapGroup& grp = z.groups[static_cast<std::size_t>(g)];
        grp.used = true;
        grp.mapping = mapping;
        grp.pending = static_cast<std::uint16_t>(n);
        grp.first = map_idx_[start];
        grp.last = map_idx_[start + n - 1];
        bump(q->counters.c.grant_map_ops, n);
        bump(q->counters.c.grant_batches);
        for (std::uint32_t k = 0; k < n; ++k) {
            ZcSlot& s = z.slots[map_idx_[start + k] & kRingMask];
            s.page = mapping.page(k);
            s.group = g;
        }
    }
}

// --- receiving -------------------------------------------------------------------------------

// A buffer the NIC returned that is not posted: a start-up placeholder (filled while the
// queue started, no request to deliver it to in order), or a header the PMD should not
// have had.
void Lcore::zc_receive_unposted(GuestQueue* q, rte_mbuf* m) {
    const pmd::GuestBufInfo& info = pmd::GuestBufferPool::info(m);
    if (info.kind == pmd::GuestBufKind::placeholder) {
        bump(q->counters.c.rx_drop_placeholder);
        rte_pktmbuf_free(m);
        return;
    }
    spdlog::error("{} queue {}: NIC returned a buffer that is not posted (ring index {})", q->name,
                  q->index, info.ring_idx);
    if (info.bound)
        q->zc->pool.recycle(m);
    else
        rte_pktmbuf_free(m);
}

// The device filled a buffer out of order (docs/datapath.md, rule 3): new posts are copied.
void Lcore::zc_filled_out_of_order(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    bump(q->counters.c.rx_out_of_order);
    if (z.out_of_order) return;
    z.out_of_order = true;
    report_fallback(q, RxMode::copy,
                    "the PMD filled RX buffers out of order; new buffers are copied");
}

// A burst of buffers the NIC filled: each completes its own request. The round's counts are
// added once for the burst.
void Lcore::zc_receive(GuestQueue* q, rte_mbuf** frames, unsigned n) {
    ZeroCopyRx& z = *q->zc;
    pmd::GuestBufferPool& pool = z.pool;
    touch(q);
    std::uint64_t packets = 0, bytes = 0;
    // Where the answered run ends (nothing is published while a burst is received).
    const RingIdx answered_from = q->rx.rsp_prod_pvt();
    RingIdx next_answer = answered_from + z.answered_run;
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = frames[i];
        const pmd::GuestBufInfo& info = pmd::GuestBufferPool::info(m);
        const RingIdx idx = info.ring_idx;
        ZcSlot& s = z.slots[idx & kRingMask];
        // The slot holds this very header only while it is posted; a placeholder is never
        // bound.
        if (s.m != m || !info.bound || s.state != ZcSlot::State::posted) [[unlikely]] {
            zc_receive_unposted(q, m);
            continue;
        }
        // The device must fill buffers in the order it took them (docs/datapath.md, rule 3).
        if (!take_nic_order(z, idx)) [[unlikely]]
            zc_filled_out_of_order(q);
        --z.posted;

        const std::uint32_t len = m->pkt_len;
        // Where the frame starts in the page: the buffer's start plus the PMD's headroom.
        const auto offset = static_cast<std::uint16_t>(s.buf_start + m->data_off);
        const bool whole = m->nb_segs == 1 && len == m->data_len && len != 0 &&
                           std::uint32_t{m->data_off} + len <= m->buf_len &&
                           std::uint32_t{offset} + len <= netif::kPageSize;
        const netif::RxFrame meta = rx_frame_meta(m);
        s.m = nullptr;
        pool.recycle(m);
        packets += 1;
        bytes += len;
        const std::uint16_t id = q->rx_ids[idx & kRingMask];
        if (!whole) [[unlikely]] {
            (void)q->rx.put_response_at(idx, netif::rx_error_response(id, netif::rsp::kError));
            bump(q->counters.c.rx_drop_error);
        } else {
            const netif::RxChunk chunk{offset, static_cast<std::uint16_t>(len)};
            (void)q->rx.put_response_at(idx, netif::rx_data_response(meta, false, 0, 1, id, chunk));
            if (s.source == ZcSlot::Source::bounce) {
                copy_add_bounce(q, idx, s.page + offset, offset, chunk.len);
                s.state = ZcSlot::State::copying; // the bounce buffer goes back at publish
                continue;
            }
        }
        if (s.source == ZcSlot::Source::reuse) [[likely]] {
            q->view.release(s.gref); // our in-flight count goes before the response
            s.page = nullptr;
            s.source = ZcSlot::Source::none;
            // The oldest unanswered request (after those already answered): publishable as
            // it is, so it joins the answered run; any other waits as final.
            if (idx == next_answer) [[likely]] {
                s.state = ZcSlot::State::idle;
                ++next_answer;
            } else {
                s.state = ZcSlot::State::final;
            }
        } else {
            zc_slot_done(q, s);
        }
    }
    z.answered_run = next_answer - answered_from;
    q->rx_round.packets += packets;
    q->rx_round.bytes += bytes;
}

// The NIC is done with a slot's buffer and its response is written: a mapped buffer waits
// for its group's unmap, any other is released now; the slot is then final.
void Lcore::zc_slot_done(GuestQueue* q, ZcSlot& s) {
    if (s.source == ZcSlot::Source::map) {
        s.state = ZcSlot::State::filled;
        zc_group_filled(q, s.group);
    } else {
        zc_release(q, s);
        s.state = ZcSlot::State::final;
    }
}

// A filled member of map group `g`: once all are filled, the group is unmapped (one call)
// and its members are final.
void Lcore::zc_group_filled(GuestQueue* q, std::int16_t g) {
    ZeroCopyRx& z = *q->zc;
    MapGroup& grp = z.groups[static_cast<std::size_t>(g)];
    if (--grp.pending != 0) return;
    const std::uint32_t n = grp.mapping.count;
    if (Status st = grant_unmap(grp.mapping); !st) {
        disable(q, "unmapping RX buffers failed", st.error().message.c_str());
        return;
    }
    bump(q->counters.c.grant_unmap_ops, n);
    bump(q->counters.c.grant_batches);
    for (RingIdx i = grp.first; i != grp.last + 1; ++i) {
        ZcSlot& s = z.slots[i & kRingMask];
        if (s.group == g && s.state == ZcSlot::State::filled) {
            s.state = ZcSlot::State::final;
            s.group = -1;
            s.page = nullptr;
        }
    }
    grp = MapGroup{};
}

// Releases what a slot holds (translation-table count, bounce buffer, header); map groups
// are unmapped as a whole by their last member or at detach.
void Lcore::zc_release(GuestQueue* q, ZcSlot& s) {
    ZeroCopyRx& z = *q->zc;
    switch (s.source) {
    case ZcSlot::Source::reuse:
        if (q->have_view && s.page != nullptr) q->view.release(s.gref);
        break;
    case ZcSlot::Source::bounce:
        if (s.page != nullptr) z.pool.give_bounce(s.page);
        break;
    case ZcSlot::Source::map:
    case ZcSlot::Source::none:
        break;
    }
    s.page = nullptr;
    s.source = ZcSlot::Source::none;
    if (s.m != nullptr) {
        z.pool.recycle(s.m);
        s.m = nullptr;
    }
}

// Releases the slots [first, end) of a post that gave nothing to the NIC.
void Lcore::zc_release_round(GuestQueue* q, RingIdx first, RingIdx end) {
    for (RingIdx j = first; j != end; ++j) {
        ZcSlot& s = q->zc->slots[j & kRingMask];
        zc_release(q, s);
        s = ZcSlot{};
    }
}

// --- answering -------------------------------------------------------------------------------

// The run of final responses from rsp_prod_pvt on (rx_path.cpp publishes it). A slot the
// round's copy filled is final now: the copy ran (and patched its status if it failed), so
// its bounce buffer goes back.
std::uint32_t Lcore::zc_answerable(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    const std::uint32_t unanswered = q->rx.unanswered();
    // The answered run is idle already; the slots after it are looked at.
    std::uint32_t n = std::min(std::exchange(z.answered_run, 0U), unanswered);
    RingIdx i = q->rx.rsp_prod_pvt() + n;
    for (; n < unanswered; ++n, ++i) {
        ZcSlot& s = z.slots[i & kRingMask];
        if (s.state == ZcSlot::State::copying)
            zc_release(q, s);
        else if (s.state != ZcSlot::State::final)
            break;
        s.state = ZcSlot::State::idle;
    }
    return n;
}

// --- detach ----------------------------------------------------------------------------------

// Buffers the PMD gave back without a frame (it dropped one, or released its ring): their
// requests are answered empty.
void Lcore::zc_collect_returned(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    while (rte_mbuf* m = z.pool.pop_returned()) {
        RingIdx idx = 0;
        ZcSlot& s = take_back(z, m, idx);
        if (s.state != ZcSlot::State::posted || s.m != m) continue;
        s.m = nullptr;
        --z.posted;
        (void)take_nic_order(z, idx);
        (void)q->rx.put_response_at(
            idx, netif::rx_error_response(q->rx_ids[idx & kRingMask], netif::rsp::kError));
        bump(q->counters.c.rx_drop_error);
        zc_slot_done(q, s);
        touch(q);
    }
}

// Takes back the buffers the NIC has not taken yet (detach).
void Lcore::zc_drop_posted(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    while (rte_mbuf* m = z.pool.pop_ready()) {
        RingIdx idx = 0;
        ZcSlot& s = take_back(z, m, idx);
        if (s.m == m) s.m = nullptr;
        if (s.state == ZcSlot::State::posted) {
            --z.posted;
            if (s.source == ZcSlot::Source::map) {
                s.state = ZcSlot::State::filled; // unmapped with its group at detach
            } else {
                zc_release(q, s);
                s.state = ZcSlot::State::final;
            }
        }
    }
    // What stays posted is inside the NIC: nic_order keeps only those.
    z.nic_tail = z.nic_head + z.posted;
}

// The queue leaves: every slot's buffer and every map group are released.
void Lcore::zc_finish(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    for (ZcSlot& s : z.slots)
        if (s.state != ZcSlot::State::idle) zc_release(q, s);
    for (MapGroup& g : z.groups)
        if (g.used) {
            if (g.mapping) {
                const auto n = g.mapping.count;
                if (Status st = grant_unmap(g.mapping); !st)
                    spdlog::error("{} queue {}: unmapping {} RX buffers at detach: {}", q->name,
                                  q->index, n, st.error().message);
                else
                    bump(q->counters.c.grant_unmap_ops, n);
            }
            g = MapGroup{};
        }
    z.posted = 0;
}

} // namespace dpnb::engine::detail
