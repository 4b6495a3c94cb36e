// The copy pipeline of RX (guest_queue.hpp, docs/datapath.md "RX"): frames in daemon mbufs
// take a queue's next requests. As Linux netback's rx.c does, each frame's responses are
// written at once into the ring slots of the requests it took (the requests were copied out
// first), its grant-copy segments join the round's one batch, and after the batched copy
// only the frames whose copy failed get their responses rewritten as errors. Nothing is
// published here: rx_path.cpp publishes each queue once per round.
//
// The batch also carries the zero-copy pipeline's bounce buffers (copy_add_bounce), which
// are filled by the NIC and then copied to the guest the same way.
#include <rte_mbuf.h>

#include <algorithm>

#include "engine_core.hpp"
#include "lcore.hpp"
#include "offload.hpp"

namespace dpnb::engine::detail {

using netif::RingIdx;
namespace gntst = netif::gntst;

// The daemon mbuf `m` is done with once the batch's copy ran.
void Lcore::copy_free(rte_mbuf* m) {
    if (n_copy_free_ == copy_free_.size()) copy_flush();
    copy_free_[n_copy_free_++] = m;
}

// A frame for `q` dropped before it was staged: counted under `reason` (one of its rx_drop_*),
// and under local_rx_drops too when it came from a guest of the same port.
void Lcore::copy_drop(GuestQueue* q, rte_mbuf* m, std::uint64_t& reason) {
    bump(reason);
    copy_drop(q, m);
}

// A frame for `q` dropped because the queue is going away (disabled or detaching): no rx_drop_*
// reason, but a local frame still counts under local_rx_drops.
void Lcore::copy_drop(GuestQueue* q, rte_mbuf* m) {
    if (is_local(m)) bump(q->counters.c.local_rx_drops);
    copy_free(m);
}

// A queue's first frame in the open batch counts a grant batch (one hypercall) for it.
void Lcore::copy_count_batch(GuestQueue* q) noexcept {
    if (q->copy_batch == copy_batch_) return;
    q->copy_batch = copy_batch_;
    bump(q->counters.c.grant_batches);
}

// The queue's waiting frames, with one read of its req_prod.
void Lcore::copy_stage_queue(GuestQueue* q) {
    const std::uint32_t n = std::exchange(q->n_pending, 0);
    netif::RequestWindow w{};
    if (!q->disabled) {
        w = q->rx.poll_requests();
        if (w.overflow)
            disable(q, "RX ring overflow",
                    Detail("req_prod {}, req_cons {}", w.prod, w.cons).c_str());
        rx_watch_stall(q, w.available != 0 || (q->zc && q->zc->posted != 0));
    }
    for (std::uint32_t i = 0; i < n; ++i) {
        rte_mbuf* m = q->pending[i];
        if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(q->pending[i + 1], void*));
        if (q->disabled)
            copy_drop(q, m);
        else if (m->nb_segs == 1 && m->pkt_len == m->data_len &&
                 m->data_len - 1U < q->rx_geo.size &&
                 (m->ol_flags & (RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_RX_LRO)) == 0 &&
                 !q->pending_hash[i])
            copy_stage_one(q, m, w);
        else
            copy_stage_frame(q, m, w, q->pending_hash[i]);
    }
}

// The common frame: one mbuf segment into one buffer, no GSO, no hash.
void Lcore::copy_stage_one(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w) {
    const bool local = is_local(m);
    if (w.available == 0) {
        copy_drop(q, m, q->counters.c.rx_drop_no_buffer);
        return;
    }
    if (n_segs_ == segs_.size() || n_copy_frames_ == copy_frames_.size() ||
        n_copy_free_ == copy_free_.size())
        copy_flush();
    const RingIdx idx = w.cons;
    const netif::RxRequest req = q->rx.copy_request(idx);
    std::uint16_t offset = q->rx_geo.offset;
    if (q->rx_buffers.request_offsets) {
        const auto buffer = netif::rx_request_buffer(q->rx_buffers, req.pad);
        if (!buffer) {
            bad_rx_request(q, req);
            copy_drop(q, m);
            return;
        }
        offset = buffer->offset;
    }
    q->rx.consume(1);
    ++w.cons;
    --w.available;
    q->rx_ids[idx & kRingMask] = req.id;
    const netif::RxFrame meta = rx_frame_meta(m);
    const netif::RxChunk chunk{offset, m->data_len};
    (void)q->rx.put_response_at(idx, netif::rx_data_response(meta, false, 0, 1, req.id, chunk));
    segs_[n_segs_++] = hv::GrantCopySegment::to_guest(rte_pktmbuf_mtod(m, const std::byte*), q->dom,
                                                      req.gref, offset, chunk.len);
    copy_frames_[n_copy_frames_++] = CopyFrame{q, idx, chunk.len, n_segs_, 1, false, local};
    if (q->zc) { // behind the posted buffers: final once the copy ran
        ZcSlot& s = q->zc->slots[idx & kRingMask];
        s = ZcSlot{};
        s.state = ZcSlot::State::copying;
    }
    copy_count_batch(q);
    q->rx_round.packets += 1;
    q->rx_round.bytes += chunk.len;
    q->rx_round.copies += 1;
    q->rx_round.copy_ops += 1;
    if (local) {
        q->rx_round.local_packets += 1;
        q->rx_round.local_bytes += chunk.len;
    }
    copy_free_[n_copy_free_++] = m;
}

// Takes the requests for one frame, writes its responses into their slots (its extra-info
// slots, GSO then hash, right after the first) and adds its segments to the batch; `w` is the
// queue's request window, advanced past what was taken.
void Lcore::copy_stage_frame(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w,
                             const std::optional<netif::FlowHash>& hash) {
    netif::RxFrame meta = rx_frame_meta(m);
    meta.hash = hash;
    const netif::RxBufferGeometry geo = q->rx_geo;
    const bool local = is_local(m);
    netif::RxPlan plan;
    if (meta.len != 0 && meta.len <= geo.size && meta.gso_type == netif::gso::kNone && !hash) {
        plan.data_slots = plan.requests = 1; // the common case: one buffer, no GSO
    } else {
        plan = netif::plan_rx_frame(meta, geo, q->rx_features);
        // A GSO frame goes whole only to a frontend with GSO of its kind and feature-sg (as
        // Linux's netback offers TSO only with SG), in no more slots than a packet may have.
        if (meta.gso_type != netif::gso::kNone &&
            (!q->rx_sg || plan.error == netif::RxBuildError::gso_not_negotiated ||
             plan.error == netif::RxBuildError::too_many_slots)) {
            copy_stage_segments(q, m, w, hash, meta.gso_size);
            return;
        }
        if (plan.error != netif::RxBuildError::none || (!q->rx_sg && plan.data_slots > 1)) {
            DPNB_DP_LOG(q->log, DEBUG, "{}: RX frame of {} bytes cannot be delivered: {}", q->name,
                        meta.len,
                        plan.error != netif::RxBuildError::none ? netif::to_string(plan.error)
                                                                : "frontend without feature-sg");
            copy_drop(q, m, q->counters.c.rx_drop_error);
            return;
        }
    }
    if (w.available < plan.requests) {
        copy_drop(q, m, q->counters.c.rx_drop_no_buffer);
        return;
    }
    // Segments: every chunk, split where the mbuf chain splits.
    const std::uint32_t need = plan.data_slots + m->nb_segs - 1U;
    if (need > segs_.size()) {
        copy_drop(q, m, q->counters.c.rx_drop_error); // a chain longer than any batch
        return;
    }
    if (n_segs_ + need > segs_.size() || n_copy_frames_ == copy_frames_.size() ||
        n_copy_free_ == copy_free_.size())
        copy_flush();

    // Read and check every request before anything is written or consumed.
    std::array<netif::RxRequest, netif::kRxMaxDataSlots + 1> reqs;
    std::array<netif::RxChunk, netif::kRxMaxDataSlots> chunks;
    if (plan.requests == 1) {
        chunks[0] = netif::RxChunk{geo.offset, static_cast<std::uint16_t>(meta.len)};
    } else {
        (void)netif::rx_layout(meta.len, geo, std::span(chunks.data(), plan.data_slots));
    }
    const std::uint32_t extras = plan.extras();
    for (std::uint32_t k = 0; k < plan.requests; ++k) {
        reqs[k] = q->rx.copy_request(w.cons + k);
        // The requests after the first carry the extra-info slots: their buffers are not
        // written.
        if (k != 0 && k <= extras) continue;
        const auto buffer = netif::rx_request_buffer(q->rx_buffers, reqs[k].pad);
        if (!buffer) {
            bad_rx_request(q, reqs[k]);
            copy_drop(q, m);
            return;
        }
        chunks[k == 0 ? 0 : k - extras].offset = buffer->offset;
    }
    const RingIdx first = w.cons;
    q->rx.consume(plan.requests);
    w.cons += plan.requests;
    w.available -= plan.requests;

    // Responses in the requests' own slots; segments from the mbuf chain into each buffer.
    const std::uint32_t seg_begin = n_segs_;
    const rte_mbuf* seg = m;
    std::uint32_t seg_off = 0;
    std::uint32_t c = 0;
    for (std::uint32_t k = 0; k < plan.requests; ++k) {
        const RingIdx idx = first + k;
        q->rx_ids[idx & kRingMask] = reqs[k].id;
        if (k != 0 && k <= extras) {
            (void)q->rx.put_extra_at(idx, plan.gso_extra && k == 1 ? netif::rx_gso_extra(meta)
                                                                   : netif::rx_hash_extra(meta));
            continue;
        }
        const netif::RxChunk chunk = chunks[c];
        (void)q->rx.put_response_at(
            idx, netif::rx_data_response(meta, extras != 0, c, plan.data_slots, reqs[k].id, chunk));
        ++c;
        std::uint32_t dst_off = chunk.offset;
        std::uint32_t left = chunk.len;
        while (left > 0 && seg != nullptr) {
            if (seg_off == seg->data_len) {
                seg = seg->next;
                seg_off = 0;
                continue;
            }
            const std::uint32_t take = std::min<std::uint32_t>(left, seg->data_len - seg_off);
            segs_[n_segs_++] = hv::GrantCopySegment::to_guest(
                rte_pktmbuf_mtod_offset(seg, const std::byte*, seg_off), q->dom, reqs[k].gref,
                static_cast<std::uint16_t>(dst_off), static_cast<std::uint16_t>(take));
            seg_off += take;
            dst_off += take;
            left -= take;
        }
    }
    if (q->zc) // behind the posted buffers: final once the copy ran
        for (std::uint32_t k = 0; k < plan.requests; ++k) {
            ZcSlot& s = q->zc->slots[(first + k) & kRingMask];
            s = ZcSlot{};
            s.state = ZcSlot::State::copying;
        }
    copy_frames_[n_copy_frames_++] = CopyFrame{
        q, first, meta.len, n_segs_, static_cast<std::uint8_t>(plan.requests), false, local};
    copy_count_batch(q);
    q->rx_round.packets += 1;
    q->rx_round.bytes += meta.len;
    q->rx_round.copies += 1;
    q->rx_round.copy_ops += n_segs_ - seg_begin;
    if (local) {
        q->rx_round.local_packets += 1;
        q->rx_round.local_bytes += meta.len;
    }
    if ((m->ol_flags & RTE_MBUF_F_RX_LRO) != 0) bump(q->counters.c.rx_lro);
    copy_free(m);
}

// A GSO frame the frontend cannot take whole: segmented in software (segment_tcp, as the TX
// path segments for a port without TSO) into frames of at most `mss` payload bytes with their
// checksums filled in, each staged as a frame of its own with the frame's hash, as Linux
// segments a GSO skb for a vif without the offload. The segments refer to the frame's
// buffers, which go back once the last of them is freed.
void Lcore::copy_stage_segments(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w,
                                const std::optional<netif::FlowHash>& hash, std::uint16_t mss) {
    const std::uint64_t local = m->ol_flags & local_flag_;
    PacketHeaders h;
    TxSegments segs;
    int ns = -1;
    if (parse_headers(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len, h) ==
        HeaderError::none)
        ns = segment_tcp(m, h, mss, false, hdr_pool_, ext_pool_, segs.data(), segs.size());
    const std::uint32_t len = m->pkt_len;
    copy_free(m);
    if (ns < 0) {
        bump(q->counters.c.rx_drop_error);
        if (local != 0) bump(q->counters.c.local_rx_drops);
        DPNB_DP_LOG(q->log, DEBUG, "{}: software segmentation of a {}-byte GSO frame failed",
                    q->name, len);
        return;
    }
    bump(q->counters.c.rx_gso_segmented);
    for (int i = 0; i < ns; ++i) {
        segs[static_cast<unsigned>(i)]->ol_flags |= local;
        copy_stage_frame(q, segs[static_cast<unsigned>(i)], w, hash);
    }
}

// A frame the NIC wrote into a bounce buffer of a zero-copy queue: its response is written
// (and counted as received) already; the batch copies it into the guest's buffer.
void Lcore::copy_add_bounce(GuestQueue* q, RingIdx idx, const std::byte* src, std::uint16_t offset,
                            std::uint16_t len) {
    if (n_segs_ == segs_.size() || n_copy_frames_ == copy_frames_.size()) copy_flush();
    segs_[n_segs_++] = hv::GrantCopySegment::to_guest(
        src, q->dom, q->zc->slots[idx & kRingMask].gref, offset, len);
    copy_frames_[n_copy_frames_++] = CopyFrame{q, idx, len, n_segs_, 1, true, false};
    copy_count_batch(q);
    q->rx_round.copies += 1;
    q->rx_round.copy_ops += 1;
}

// One grant copy for the batch; then the frames whose copy failed are answered in error;
// then the daemon mbufs go back in bulk.
void Lcore::copy_flush() {
    if (n_segs_ != 0) {
        const std::span segs(segs_.data(), n_segs_);
        if (const Status st = gt_->copy(segs); !st)
            for (hv::GrantCopySegment& s : segs)
                s.status = gntst::kGeneralError;
        bool failed = false;
        for (const hv::GrantCopySegment& s : segs)
            failed = failed || s.status != gntst::kOkay;
        if (failed) {
            std::uint32_t begin = 0;
            for (std::uint32_t f = 0; f < n_copy_frames_; ++f) {
                const CopyFrame& cf = copy_frames_[f];
                const hv::GrantCopySegment* bad = nullptr;
                for (std::uint32_t i = begin; i < cf.seg_end; ++i)
                    if (segs_[i].status != gntst::kOkay) bad = &segs_[i];
                begin = cf.seg_end;
                if (bad != nullptr) copy_failed(cf, *bad);
            }
        }
    }
    n_segs_ = 0;
    n_copy_frames_ = 0;
    ++copy_batch_;
    if (n_copy_free_ != 0) rte_pktmbuf_free_bulk(copy_free_.data(), n_copy_free_);
    n_copy_free_ = 0;
}

// A frame whose copy failed: every request it took is answered in error (netfront recycles
// each buffer), its counts move from received to dropped; a grant only the guest can have
// broken disables the vif.
void Lcore::copy_failed(const CopyFrame& f, const hv::GrantCopySegment& bad) {
    GuestQueue* q = f.q;
    for (std::uint32_t k = 0; k < f.nslots; ++k) {
        const RingIdx idx = f.first + k;
        (void)q->rx.put_response_at(
            idx, netif::rx_error_response(q->rx_ids[idx & kRingMask], netif::rsp::kError));
    }
    if (!f.bounce) { // a bounce frame counts as received when the NIC filled it
        q->rx_round.packets -= 1;
        q->rx_round.bytes -= f.len;
    }
    if (f.local) {
        q->rx_round.local_packets -= 1;
        q->rx_round.local_bytes -= f.len;
        bump(q->counters.c.local_rx_drops);
    }
    q->rx_round.copies -= 1;
    bump(q->counters.c.rx_drop_error);
    if (guest_fault(bad.status) && q->fatal_bad_grants)
        disable(q, "RX buffer grant refused",
                Detail("GNTST {} copying into gref {}", bad.status, bad.dest.foreign.ref).c_str());
}

} // namespace dpnb::engine::detail
