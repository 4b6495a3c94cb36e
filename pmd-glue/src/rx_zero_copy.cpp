// The zero-copy pipeline of RX (guest_queue.hpp, docs/datapath.md "RX, dedicated queue"):
// a queue whose NIC queue allocates from a guest-buffer pool. Requests are posted ahead of
// frames: each gets a buffer from one source, a page the translation table names (reuse), a
// page mapped for it (map, one batched map per post), or a daemon bounce buffer (copy mode,
// translation misses, and after the PMD was caught filling out of order), is recorded in the
// ring of posts (ZeroCopyRx::posts: one entry per posted request, in post order, holding what
// its answer needs, as DPDK vhost's shadow ring or VPP memif's descriptor ring) and goes into
// the pool's FIFO in that order. The NIC fills buffers in the order it took them, so a
// returned buffer that is the oldest post is in order: one compare. When the NIC returns a
// filled buffer its response is written into its request's ring slot; the buffer is released
// before the response is published (reuse:
// the in-flight count dropped; map: its group unmapped; bounce: copied to the guest in the
// round's grant copy, then given back). rx_path.cpp publishes the run of final responses.
#include <rte_mbuf.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <span>
#include <utility>

#include "engine_core.hpp"
#include "lcore.hpp"

namespace dpnb::engine::detail {

using netif::RingIdx;
namespace gntst = netif::gntst;

namespace {

// The received post `seq` is not the one nic_head names: skip the posts before it that are
// done (answered without reaching the NIC, taken back, or filled out of order); true when
// `seq` is the oldest the NIC still had, false when the NIC filled it out of order. Only the
// last kRingSize posts are in `posts`: any older one is done.
bool take_nic_order_late(ZeroCopyRx& z, std::uint32_t seq) noexcept {
    if (z.post_tail - z.nic_head > kRingSize) z.nic_head = z.post_tail - kRingSize;
    while (z.nic_head != z.post_tail && z.posts[z.nic_head & kRingMask].m == nullptr)
        ++z.nic_head;
    if (seq != z.nic_head) return false;
    ++z.nic_head;
    return true;
}

// Post `seq` (whose header is still recorded) left the NIC; true when it was the oldest the
// NIC had (filled in order).
inline bool take_nic_order(ZeroCopyRx& z, std::uint32_t seq) noexcept {
    if (seq == z.nic_head) [[likely]] {
        ++z.nic_head;
        return true;
    }
    return take_nic_order_late(z, seq);
}

// Each post slot's own header, taken from the pool at the queue's first post (the pool holds
// them beside the start-up placeholders: engine.cpp sizes it). All or none: a pool that
// cannot give them all yet (placeholders still out) is asked again at the next post. A kept
// header is marked bound to its slot from the start, so that whatever a PMD does with it
// (frees it, returns it unposted) it never reaches the pool's free list (zc_drop_header).
bool zc_take_headers(ZeroCopyRx& z) noexcept {
    for (std::uint32_t k = 0; k < kRingSize; ++k) {
        rte_mbuf* m = z.pool.take_header();
        if (m == nullptr) {
            while (k != 0)
                z.pool.recycle(std::exchange(z.headers[--k], nullptr));
            return false;
        }
        pmd::GuestBufInfo& info = pmd::GuestBufferPool::info(m);
        info.post = k;
        info.bound = true;
        z.headers[k] = m;
    }
    z.have_headers = true;
    return true;
}

// A bound header that answers no post: a post slot's own header stays with its slot (the
// slot rebinds it at its next post); any other goes back to the pool.
void zc_drop_header(ZeroCopyRx& z, rte_mbuf* m) noexcept {
    if (z.headers[pmd::GuestBufferPool::info(m).post & kRingMask] != m) z.pool.recycle(m);
}

} // namespace

// --- posting ---------------------------------------------------------------------------------

bool Lcore::zc_post(GuestQueue* q) {
    if (q->disabled || q->detaching) return false;
    ZeroCopyRx& z = *q->zc;
    const unsigned depth = zc_post_depth();
    if (z.posted >= depth) return false;
    const netif::RequestWindow w = q->rx.poll_requests();
    if (w.overflow) {
        disable(q, "RX ring overflow", Detail("req_prod {}, req_cons {}", w.prod, w.cons).c_str());
        return false;
    }
    const std::uint32_t budget =
        std::min<std::uint32_t>({w.available, depth - z.posted, engine_.opts.burst});
    if (budget == 0) return false;
    if (!z.have_headers) [[unlikely]] {
        if (!zc_take_headers(z)) return false;
    }

    // Gather: each request's buffer, recorded as the next post; maps are collected for one
    // call. A post takes at most a burst (EngineOptions::burst <= kMaxBurst), and maps at
    // most as many.
    static_assert(std::tuple_size_v<decltype(map_reqs_)> >= kMaxBurst &&
                  std::tuple_size_v<decltype(map_idx_)> >= kMaxBurst);
    pmd::GuestBufferPool& pool = z.pool;
    // Each request's offset is checked against the queue's layout (rx_request_buffer's
    // verdicts, the layout's part done at attach).
    const netif::RxRequestCheck check = q->rx_check;
    const std::uint16_t buf_len = q->rx_buffers.buffer_size;
    const RxMode mode = z.out_of_order ? RxMode::copy : q->mode;
    const bool view = q->have_view;
    const std::uint32_t seq0 = z.post_tail;
    // The buffers in post order, bound as they are found (a mapped one once its map is done).
    rte_mbuf* ready[kMaxBurst];
    std::uint32_t nmap = 0;
    std::uint32_t took = 0;
    std::uint64_t hits = 0, misses = 0;
    for (; took < budget; ++took) {
        const RingIdx idx = w.cons + took;
        const netif::RxRequest req = q->rx.copy_request(idx);
        const auto start = check.start(req.pad);
        if (!start) [[unlikely]] {
            // Nothing of this round reached the NIC: release it all, stop serving.
            bump(q->counters.c.iott_hits, hits);
            bump(q->counters.c.iott_misses, misses);
            zc_release_round(q, seq0, seq0 + took);
            bad_rx_request(q, req);
            return true;
        }
        const std::uint32_t seq = seq0 + took;
        ZcPost& p = z.posts[seq & kRingMask];
        // No post that still matters is overwritten (ZeroCopyRx: unreachable while the ring
        // check holds; the slot's header would reach the NIC twice).
        // One test for both fields (adjacent in the entry), one branch per post.
        if ((std::bit_cast<std::uintptr_t>(p.m) | std::bit_cast<std::uintptr_t>(p.page)) != 0)
            [[unlikely]] {
            bump(q->counters.c.iott_hits, hits);
            bump(q->counters.c.iott_misses, misses);
            zc_release_round(q, seq0, seq0 + took);
            zc_post_overwrite(q, seq);
            return true;
        }
        // Each post slot keeps one header for good (the NIC returns them in post order),
        // rebound to each new buffer.
        rte_mbuf* const m = z.headers[seq & kRingMask];
        RxMode how = mode;
        if (how == RxMode::reuse) {
            std::byte* page = view ? q->view.acquire(req.gref, true) : nullptr;
            if (page != nullptr) [[likely]] {
                ++hits;
                p = ZcPost{m, page, idx, req.gref, req.id, *start, -1, ZcPost::Source::reuse};
                pool.bind(m, page + *start, pmd::GuestBufKind::guest, seq, buf_len);
                ready[took] = m;
                continue;
            }
            ++misses;
            how = q->reuse_miss;
        }
        if (how == RxMode::map) {
            p = ZcPost{m, nullptr, idx, req.gref, req.id, *start, -1, ZcPost::Source::map};
            map_reqs_[nmap] = hv::GrantMapRequest{q->dom, req.gref, true};
            map_idx_[nmap++] = seq;
            continue;
        }
        std::byte* b = pool.take_bounce();
        if (b == nullptr) break; // the slot keeps its header
        p = ZcPost{m, b, idx, req.gref, req.id, *start, -1, ZcPost::Source::bounce};
        pool.bind(m, b + *start, pmd::GuestBufKind::bounce, seq, buf_len);
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
            zc_release_round(q, seq0, seq0 + took);
            q->rx.consume(took);
            return true;
        }
    }

    // Commit: consume the requests, hand the buffers to the NIC in post order, all at once.
    q->rx.consume(took);
    z.post_tail = seq0 + took;
    unsigned n_ready = took; // without maps every post found its buffer in the gather
    if (nmap != 0) {
        // A post has a mapped page, a bounce buffer instead, or nothing.
        n_ready = 0;
        for (std::uint32_t seq = seq0; seq != seq0 + took; ++seq) {
            ZcPost& p = z.posts[seq & kRingMask];
            if (p.source == ZcPost::Source::none) {
                // No buffer could be found for it: answer it empty, in its turn. Its header
                // goes back, so the NIC order passes over it.
                zc_release(q, p);
                (void)q->rx.put_response_at(p.idx,
                                            netif::rx_error_response(p.id, netif::rsp::kError));
                z.answers[p.idx & kRingMask].state = ZcAnswer::State::final;
                bump(q->counters.c.rx_drop_error);
                touch(q);
                continue;
            }
            const auto kind = p.source == ZcPost::Source::bounce ? pmd::GuestBufKind::bounce
                                                                 : pmd::GuestBufKind::guest;
            pool.bind(p.m, p.page + p.buf_start, kind, seq, buf_len);
            ready[n_ready++] = p.m;
        }
    }
    // The pool holds a header per buffer the NIC may have (GuestPoolConfig::headers), so its
    // FIFO has room for every one.
    (void)pool.push_ready(std::span<rte_mbuf* const>(ready, n_ready));
    z.posted += n_ready;
    return true;
}

// Post `seq` would overwrite post seq - kRingSize, whose header the pool's FIFO or the NIC
// still has, or whose buffer is still held (its answer not final): a broken invariant, the
// queue stops serving.
void Lcore::zc_post_overwrite(GuestQueue* q, std::uint32_t seq) {
    const ZcPost& p = q->zc->posts[seq & kRingMask];
    bump(q->counters.c.rx_post_overwrite);
    disable(q, "zero-copy RX post would overwrite a live post",
            Detail("post {} over post {} (request {}, {})", seq, seq - kRingSize, p.idx,
                   p.m != nullptr ? "its buffer posted" : "its buffer held")
                .c_str());
}

// Maps the buffers of this post's map posts (map_reqs_ / map_idx_: post sequences), map_batch
// per call. A
// batch that fails for a reason the guest cannot be blamed for is bounced (copied) instead,
// or left without a buffer; one the guest broke disables the vif.
void Lcore::zc_map_posted(GuestQueue* q, std::uint32_t nmap) {
    ZeroCopyRx& z = *q->zc;
    const unsigned batch = std::clamp(engine_.opts.map_batch, 1U, kMaxBurst);
    hv::DmaMapper* const dma = engine_.ports[q->nic.port_index]->dma;
    // Posts [start, start + n) get bounce buffers (copied) instead, or none.
    auto bounce = [&](std::uint32_t start, std::uint32_t n) {
        for (std::uint32_t k = 0; k < n; ++k) {
            ZcPost& p = z.posts[map_idx_[start + k] & kRingMask];
            p.page = z.pool.take_bounce();
            p.source = p.page != nullptr ? ZcPost::Source::bounce : ZcPost::Source::none;
        }
    };
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
            bounce(start, n);
            continue;
        }
        // Behind an IOMMU the run must be reachable before its buffers reach the PMD; a
        // refused run is copied instead, as for a failed map.
        if (dma != nullptr && !dma_map_run(q, dma, mapping)) [[unlikely]] {
            (void)grant_unmap(mapping);
            bounce(start, n);
            continue;
        }
        MapGroup& grp = z.groups[static_cast<std::size_t>(g)];
        grp.used = true;
        grp.mapping = mapping;
        grp.dma = dma;
        grp.pending = static_cast<std::uint16_t>(n);
        grp.first = map_idx_[start];
        grp.last = map_idx_[start + n - 1];
        bump(q->counters.c.grant_map_ops, n);
        bump(q->counters.c.grant_batches);
        for (std::uint32_t k = 0; k < n; ++k) {
            ZcPost& p = z.posts[map_idx_[start + k] & kRingMask];
            p.page = mapping.page(k);
            p.group = g;
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
    spdlog::error("{} queue {}: NIC returned a buffer that is not posted (post {})", q->name,
                  q->index, info.post);
    if (info.bound)
        zc_drop_header(*q->zc, m);
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
    touch(q);
    std::uint64_t packets = 0, bytes = 0;
    // Where the answered run ends (nothing is published while a burst is received).
    const RingIdx answered_from = q->rx.rsp_prod_pvt();
    RingIdx next_answer = answered_from + z.answered_run;
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = frames[i];
        const pmd::GuestBufInfo& info = pmd::GuestBufferPool::info(m);
        const std::uint32_t seq = info.post;
        ZcPost& p = z.posts[seq & kRingMask];
        // The post holds this very header only while the pool or the NIC has it. That is
        // also "bound": a post's header is its slot's, bound for as long as the slot keeps
        // it, and a placeholder is never a slot's.
        if (p.m != m) [[unlikely]] {
            zc_receive_unposted(q, m);
            continue;
        }
        // The device must fill buffers in the order it took them (docs/datapath.md, rule 3).
        if (!take_nic_order(z, seq)) [[unlikely]]
            zc_filled_out_of_order(q);
        --z.posted;

        const std::uint32_t len = m->pkt_len;
        // Where the frame starts in the page: the buffer's start plus the PMD's headroom.
        const auto offset = static_cast<std::uint16_t>(p.buf_start + m->data_off);
        const bool whole = m->nb_segs == 1 && len == m->data_len && len != 0 &&
                           std::uint32_t{m->data_off} + len <= m->buf_len &&
                           std::uint32_t{offset} + len <= netif::kPageSize;
        const netif::RxFrame meta = rx_frame_meta(m);
        p.m = nullptr; // the header stays with its post slot for the slot's next post
        packets += 1;
        bytes += len;
        const RingIdx idx = p.idx;
        if (!whole) [[unlikely]] {
            (void)q->rx.put_response_at(idx, netif::rx_error_response(p.id, netif::rsp::kError));
            bump(q->counters.c.rx_drop_error);
        } else {
            const netif::RxChunk chunk{offset, static_cast<std::uint16_t>(len)};
            (void)q->rx.put_response_at(idx,
                                        netif::rx_data_response(meta, false, 0, 1, p.id, chunk));
            if (p.source == ZcPost::Source::bounce) {
                // The copy's failure patch reads the id by ring index; the bounce buffer goes
                // back at publish.
                q->rx_ids[idx & kRingMask] = p.id;
                copy_add_bounce(q, idx, p.gref, p.page + offset, offset, chunk.len);
                z.answers[idx & kRingMask] = ZcAnswer{seq, ZcAnswer::State::copying};
                continue;
            }
        }
        if (p.source == ZcPost::Source::reuse) [[likely]] {
            q->view.release(p.gref); // our in-flight count goes before the response
            p.page = nullptr;
            p.source = ZcPost::Source::none;
            // The oldest unanswered request (after those already answered): publishable as
            // it is, so it joins the answered run; any other waits as final.
            if (idx == next_answer) [[likely]]
                ++next_answer;
            else
                z.answers[idx & kRingMask].state = ZcAnswer::State::final;
        } else {
            zc_post_done(q, p);
        }
    }
    z.answered_run = next_answer - answered_from;
    q->rx_round.packets += packets;
    q->rx_round.bytes += bytes;
}

// The NIC is done with a post's buffer and its response is written: a mapped buffer waits
// for its group's unmap, any other is released now; the answer is then final.
void Lcore::zc_post_done(GuestQueue* q, ZcPost& p) {
    ZcAnswer& a = q->zc->answers[p.idx & kRingMask];
    if (p.source == ZcPost::Source::map) {
        a.state = ZcAnswer::State::filled;
        zc_group_filled(q, p.group);
    } else {
        zc_release(q, p);
        a.state = ZcAnswer::State::final;
    }
}

// A filled member of map group `g`: once all are filled, the group is unmapped (one call)
// and its members are final.
void Lcore::zc_group_filled(GuestQueue* q, std::int16_t g) {
    ZeroCopyRx& z = *q->zc;
    MapGroup& grp = z.groups[static_cast<std::size_t>(g)];
    if (--grp.pending != 0) return;
    const std::uint32_t n = grp.mapping.count;
    if (Status st = unmap_run(q, grp.dma, grp.mapping); !st) {
        disable(q, "unmapping RX buffers failed", st.error().message.c_str());
        return;
    }
    bump(q->counters.c.grant_unmap_ops, n);
    bump(q->counters.c.grant_batches);
    for (std::uint32_t seq = grp.first; seq != grp.last + 1; ++seq) {
        ZcPost& p = z.posts[seq & kRingMask];
        ZcAnswer& a = z.answers[p.idx & kRingMask];
        if (p.group == g && a.state == ZcAnswer::State::filled) {
            a.state = ZcAnswer::State::final;
            p.group = -1;
            p.page = nullptr;
        }
    }
    grp = MapGroup{};
}

// Releases what a post holds (translation-table count, bounce buffer, header); map groups
// are unmapped as a whole by their last member or at detach.
void Lcore::zc_release(GuestQueue* q, ZcPost& p) {
    switch (p.source) {
    case ZcPost::Source::reuse:
        if (q->have_view && p.page != nullptr) q->view.release(p.gref);
        break;
    case ZcPost::Source::bounce:
        if (p.page != nullptr) q->zc->pool.give_bounce(p.page);
        break;
    case ZcPost::Source::map:
    case ZcPost::Source::none:
        break;
    }
    p.page = nullptr;
    p.source = ZcPost::Source::none;
    p.m = nullptr; // the header stays with its post slot (ZeroCopyRx::headers)
}

// Releases the posts [first, end) of a post round that gave nothing to the NIC.
void Lcore::zc_release_round(GuestQueue* q, std::uint32_t first, std::uint32_t end) {
    for (std::uint32_t seq = first; seq != end; ++seq) {
        ZcPost& p = q->zc->posts[seq & kRingMask];
        zc_release(q, p);
        p = ZcPost{};
    }
}

// --- answering -------------------------------------------------------------------------------

// The run of final responses from rsp_prod_pvt on (rx_path.cpp publishes it). A request the
// round's copy filled is final now: the copy ran (and patched its status if it failed), so
// a bounce buffer goes back.
std::uint32_t Lcore::zc_answerable(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    const std::uint32_t unanswered = q->rx.unanswered();
    // The answered run is idle already; the answers after it are looked at.
    std::uint32_t n = std::min(std::exchange(z.answered_run, 0U), unanswered);
    RingIdx i = q->rx.rsp_prod_pvt() + n;
    for (; n < unanswered; ++n, ++i) {
        ZcAnswer& a = z.answers[i & kRingMask];
        if (a.state == ZcAnswer::State::copying) {
            if (a.post != ZcAnswer::kNoPost) zc_release(q, z.posts[a.post & kRingMask]);
        } else if (a.state != ZcAnswer::State::final) {
            break;
        }
        a = ZcAnswer{};
    }
    return n;
}

// --- detach ----------------------------------------------------------------------------------

// Buffers the PMD gave back without a frame (it dropped one, or released its ring): their
// requests are answered empty.
void Lcore::zc_collect_returned(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    while (rte_mbuf* m = z.pool.pop_returned()) {
        const std::uint32_t seq = pmd::GuestBufferPool::info(m).post;
        ZcPost& p = z.posts[seq & kRingMask];
        if (p.m != m) {
            zc_drop_header(z, m);
            continue;
        }
        (void)take_nic_order(z, seq);
        p.m = nullptr;
        --z.posted;
        (void)q->rx.put_response_at(p.idx, netif::rx_error_response(p.id, netif::rsp::kError));
        bump(q->counters.c.rx_drop_error);
        zc_post_done(q, p);
        touch(q);
    }
}

// Takes back the buffers the NIC has not taken yet (detach).
void Lcore::zc_drop_posted(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    while (rte_mbuf* m = z.pool.pop_ready()) {
        const std::uint32_t seq = pmd::GuestBufferPool::info(m).post;
        ZcPost& p = z.posts[seq & kRingMask];
        if (p.m != m) {
            zc_drop_header(z, m);
            continue;
        }
        p.m = nullptr; // the NIC order passes over it
        --z.posted;
        if (p.source == ZcPost::Source::map) {
            // unmapped with its group at detach
            z.answers[p.idx & kRingMask].state = ZcAnswer::State::filled;
        } else {
            zc_release(q, p);
            z.answers[p.idx & kRingMask].state = ZcAnswer::State::final;
        }
    }
}

// The queue leaves: every post's buffer and every map group are released.
void Lcore::zc_finish(GuestQueue* q) {
    ZeroCopyRx& z = *q->zc;
    for (ZcPost& p : z.posts)
        zc_release(q, p);
    // The slots' headers go back to the pool (the next queue on it takes its own).
    for (rte_mbuf*& h : z.headers)
        if (h != nullptr) z.pool.recycle(std::exchange(h, nullptr));
    z.have_headers = false;
    for (MapGroup& g : z.groups)
        if (g.used) {
            if (g.mapping) {
                const auto n = g.mapping.count;
                if (Status st = unmap_run(q, g.dma, g.mapping); !st)
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
