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

namespace {

// rte_pktmbuf_free_bulk with its common case inline: an mbuf of one segment, direct, held
// once, from the pool of the first goes back with the others in one put, as
// rte_pktmbuf_prefree_seg would let it; any other is freed the general way.
void free_daemon_mbufs(rte_mbuf** ms, std::uint32_t n) {
    rte_mempool* const pool = ms[0]->pool;
    std::uint32_t k = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        rte_mbuf* m = ms[i];
        if (m->next == nullptr && m->pool == pool && RTE_MBUF_DIRECT(m) &&
            rte_mbuf_refcnt_read(m) == 1) [[likely]]
            ms[k++] = m;
        else
            rte_pktmbuf_free(m);
    }
    if (k != 0) rte_mempool_put_bulk(pool, reinterpret_cast<void**>(ms), k);
}

} // namespace

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

namespace {

// A common frame: one mbuf segment into one buffer of `size` bytes, neither TSO nor a large
// receive, no flow hash to deliver. copy_stage_run and copy_stage_one stage it; any other
// goes through copy_stage_frame.
inline bool common_frame(const rte_mbuf* m, std::uint32_t size, bool hashed) noexcept {
    return m->nb_segs == 1 && m->pkt_len == m->data_len && m->data_len - 1U < size &&
           (m->ol_flags & (RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_RX_LRO)) == 0 && !hashed;
}

} // namespace

// The queue's waiting frames, with one read of its req_prod, in order until one finds no RX
// buffer; that one and those behind it stay (copy_keep). Returns whether any frame left the
// queue (staged or dropped).
bool Lcore::copy_stage_queue(GuestQueue* q) {
    const std::uint32_t n = std::exchange(q->n_pending, 0);
    netif::RequestWindow w = copy_poll(q);
    std::uint32_t i = 0;
    if (!q->disabled && !q->rx_stalled && q->zc == nullptr) i = copy_stage_run(q, w, n);
    for (; i < n; ++i) {
        rte_mbuf* m = q->pending[i];
        if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(q->pending[i + 1], void*));
        bool taken = true;
        if (q->disabled)
            copy_drop(q, m);
        else if (q->rx_stalled) // carrier off since this round: its backlog goes too
            copy_drop(q, m, q->counters.c.rx_drop_stalled);
        else if (common_frame(m, q->rx_geo.size, q->pending_hash[i].has_value()))
            taken = copy_stage_one(q, m, w);
        else
            taken = copy_stage_frame(q, m, w, q->pending_hash[i]);
        if (!taken) break;
    }
    if (i == n) {
        set_gauge(q->backlog_frames, 0);
        set_gauge(q->backlog_bytes, 0);
        return n != 0;
    }
    copy_keep(q, i, n);
    return i != 0;
}

// Frames [first, n) of the queue's pending ones found no RX buffer: they stay, in order, for
// the next round, up to kRxBacklogBytes; the rest is dropped (rx_drop_no_buffer). A zero-copy
// queue keeps none (the NIC takes its buffers first), nor a frame from a guest of the same
// port (it holds that guest's TX slots; the sender is never held up by a receiver).
void Lcore::copy_keep(GuestQueue* q, std::uint32_t first, std::uint32_t n) {
    std::uint32_t kept = 0;
    std::uint32_t bytes = 0;
    for (std::uint32_t i = first; i < n; ++i) {
        rte_mbuf* m = q->pending[i];
        if (q->zc || is_local(m) || bytes + m->pkt_len > kRxBacklogBytes) {
            copy_drop(q, m, q->counters.c.rx_drop_no_buffer);
            continue;
        }
        bytes += m->pkt_len;
        q->pending_hash[kept] = q->pending_hash[i];
        q->pending[kept++] = m;
    }
    q->n_pending = kept;
    set_gauge(q->backlog_frames, kept);
    set_gauge(q->backlog_bytes, bytes);
}

// The queue's requests for frames waiting: one read of its req_prod (none once disabled).
netif::RequestWindow Lcore::copy_poll(GuestQueue* q) {
    netif::RequestWindow w{};
    if (q->disabled) return w;
    w = q->rx.poll_requests();
    if (w.overflow)
        disable(q, "RX ring overflow", Detail("req_prod {}, req_cons {}", w.prod, w.cons).c_str());
    rx_watch_stall(q, w.available != 0 || (q->zc && q->zc->posted != 0));
    return w;
}

// The per-frame body of copy_stage_one and copy_stage_run: the common frame `m` (one mbuf
// segment of `len` bytes into one buffer, no GSO, no hash) takes request `req` at `idx`,
// whose buffer's data starts at `offset` (checked by the caller): the request is consumed,
// its response written in its slot, and the frame's segment, record and mbuf go into the open
// batch (the caller made room). The round's counts are the caller's.
[[gnu::always_inline]] inline void Lcore::copy_stage_common(GuestQueue* q, rte_mbuf* m, RingIdx idx,
                                                            const netif::RxRequest& req,
                                                            std::uint16_t offset, std::uint16_t len,
                                                            bool local) {
    q->rx.consume(1);
    q->rx_ids[idx & kRingMask] = req.id;
    (void)q->rx.put_response_at(
        idx, netif::rx_data_response(rx_plain_frame_meta(m), false, 0, 1, req.id, {offset, len}));
    // GrantCopySegment::to_guest's fields, written in place: to_guest zero-fills a whole
    // segment first and costs 5 instructions more per frame here (callgrind, ring copy RX).
    hv::GrantCopySegment& seg = segs_[n_segs_++];
    seg.source.virt = rte_pktmbuf_mtod(m, void*);
    seg.dest.foreign = {req.gref, offset, q->dom};
    seg.len = len;
    seg.flags = hv::GrantCopySegment::kDestGref;
    seg.status = 0;
    copy_frames_[n_copy_frames_++] = CopyFrame{q, idx, len, n_segs_, 1, false, local, nullptr};
    copy_free_[n_copy_free_++] = m;
}

// The leading run of a copy queue's waiting frames that are common frames (one mbuf segment
// into one buffer, no GSO, no hash) and fit the guest's requests and the open batch, staged as
// copy_stage_one stages each, with the round's counts added once. Returns how many; the
// frame it stopped at (not common, no request left, a full batch, a buffer offset to refuse)
// goes the general way.
std::uint32_t Lcore::copy_stage_run(GuestQueue* q, netif::RequestWindow& w, std::uint32_t n) {
    const std::uint32_t room =
        std::min({n, w.available, static_cast<std::uint32_t>(segs_.size() - n_segs_),
                  static_cast<std::uint32_t>(copy_frames_.size() - n_copy_frames_),
                  static_cast<std::uint32_t>(copy_free_.size() - n_copy_free_)});
    const std::uint32_t size = q->rx_geo.size;
    const netif::RxRequestCheck check = q->rx_check;
    // Without request offsets every request's buffer is the same: checked once here.
    const bool per_request = check.per_request();
    const auto same = check.buffer(0);
    if (!per_request && !same) return 0; // copy_stage_one refuses the first
    const std::uint16_t same_offset = same ? same->offset : 0;
    const RingIdx first = w.cons;
    std::uint32_t k = 0;
    std::uint64_t bytes = 0, local_packets = 0, local_bytes = 0;
    for (; k < room; ++k) {
        rte_mbuf* m = q->pending[k];
        if (!common_frame(m, size, q->pending_hash[k].has_value())) [[unlikely]]
            break;
        const RingIdx idx = first + k;
        const netif::RxRequest req = q->rx.copy_request(idx);
        std::uint16_t offset = same_offset;
        if (per_request) {
            const auto buffer = check.buffer(req.pad);
            if (!buffer) [[unlikely]]
                break; // copy_stage_one refuses it
            offset = buffer->offset;
        }
        const bool local = is_local(m);
        const std::uint16_t len = m->data_len;
        copy_stage_common(q, m, idx, req, offset, len, local);
        bytes += len;
        local_packets += local ? 1 : 0;
        local_bytes += local ? len : 0;
    }
    if (k == 0) return 0;
    w.cons += k;
    w.available -= k;
    copy_count_batch(q);
    q->rx_round.packets += k;
    q->rx_round.bytes += bytes;
    q->rx_round.copies += k;
    q->rx_round.copy_ops += k;
    q->rx_round.local_packets += local_packets;
    q->rx_round.local_bytes += local_bytes;
    return k;
}

// The common frame: one mbuf segment into one buffer, no GSO, no hash. False, the frame
// untouched, when the guest has no RX buffer for it.
bool Lcore::copy_stage_one(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w) {
    if (w.available == 0) return false;
    if (n_segs_ == segs_.size() || n_copy_frames_ == copy_frames_.size() ||
        n_copy_free_ == copy_free_.size())
        copy_flush();
    const RingIdx idx = w.cons;
    const netif::RxRequest req = q->rx.copy_request(idx);
    const auto buffer = q->rx_check.buffer(req.pad);
    if (!buffer) {
        bad_rx_request(q, req);
        copy_drop(q, m);
        return true;
    }
    ++w.cons;
    --w.available;
    const bool local = is_local(m);
    const std::uint16_t len = m->data_len;
    copy_stage_common(q, m, idx, req, buffer->offset, len, local);
    if (q->zc) // behind the posted buffers: final once the copy ran
        q->zc->answers[idx & kRingMask] = ZcAnswer{ZcAnswer::kNoPost, ZcAnswer::State::copying};
    copy_count_batch(q);
    q->rx_round.packets += 1;
    q->rx_round.bytes += len;
    q->rx_round.copies += 1;
    q->rx_round.copy_ops += 1;
    if (local) {
        q->rx_round.local_packets += 1;
        q->rx_round.local_bytes += len;
    }
    return true;
}

namespace {

// How a frame goes into a queue's buffers: whole as planned, segmented in software first
// (a GSO frame the frontend cannot take whole), or not at all.
enum class PlanVerdict : std::uint8_t { whole, segment, undeliverable };

PlanVerdict plan_frame(GuestQueue* q, const netif::RxFrame& meta, netif::RxPlan& plan) {
    const netif::RxBufferGeometry geo = q->rx_geo;
    if (meta.len != 0 && meta.len <= geo.size && meta.gso_type == netif::gso::kNone && !meta.hash) {
        plan.data_slots = plan.requests = 1; // the common case: one buffer, no GSO
        return PlanVerdict::whole;
    }
    plan = netif::plan_rx_frame(meta, geo, q->rx_features);
    // A GSO frame goes whole only to a frontend with GSO of its kind and feature-sg (as
    // Linux's netback offers TSO only with SG), in no more slots than a packet may have.
    if (meta.gso_type != netif::gso::kNone &&
        (!q->rx_sg || plan.error == netif::RxBuildError::gso_not_negotiated ||
         plan.error == netif::RxBuildError::too_many_slots))
        return PlanVerdict::segment;
    if (plan.error != netif::RxBuildError::none || (!q->rx_sg && plan.data_slots > 1)) {
        DPNB_DP_LOG(q->log, DEBUG, "{}: RX frame of {} bytes cannot be delivered: {}", q->name,
                    meta.len,
                    plan.error != netif::RxBuildError::none ? netif::to_string(plan.error)
                                                            : "frontend without feature-sg");
        return PlanVerdict::undeliverable;
    }
    return PlanVerdict::whole;
}

// A frame's bytes in a daemon mbuf chain, as the sources of its copy segments.
struct ChainSource {
    const rte_mbuf* seg;
    std::uint32_t off = 0;

    // Points `s`'s source at the next at most `max` bytes; returns how many (0: no more).
    std::uint32_t next(hv::GrantCopySegment& s, std::uint32_t max) noexcept {
        while (seg != nullptr && off == seg->data_len) {
            seg = seg->next;
            off = 0;
        }
        if (seg == nullptr) return 0;
        const std::uint32_t take = std::min<std::uint32_t>(max, seg->data_len - off);
        s.source.virt = rte_pktmbuf_mtod_offset(seg, void*, off);
        off += take;
        return take;
    }
};

// A guest's TX packet: its header copy (a daemon mbuf), then the rest of each slot in the
// guest's granted page, copied gref to gref.
struct GrantSource {
    const TxWork& t;
    hv::DomId dom;
    unsigned k = 0;        // slot; hdr_slots past the header once `in_header` is false
    std::uint32_t off = 0; // bytes taken of the header, then of slot k's rest
    bool in_header = true;

    std::uint32_t next(hv::GrantCopySegment& s, std::uint32_t max) noexcept {
        if (in_header) {
            if (off < t.hdr_len) {
                const std::uint32_t take = std::min<std::uint32_t>(max, t.hdr_len - off);
                s.source.virt = rte_pktmbuf_mtod_offset(t.hdr, void*, off);
                off += take;
                return take;
            }
            in_header = false;
            off = 0;
        }
        for (; k < t.pkt.nr_slots; ++k, off = 0) {
            const netif::TxSlot& slot = t.pkt.slots[k];
            const std::uint32_t skip = tx_header_part(t, k);
            if (off == slot.len - skip) continue;
            const std::uint32_t take = std::min<std::uint32_t>(max, slot.len - skip - off);
            s.source.foreign = {slot.gref, static_cast<std::uint16_t>(slot.offset + skip + off),
                                dom};
            s.flags |= hv::GrantCopySegment::kSourceGref;
            off += take;
            return take;
        }
        return 0;
    }
};

} // namespace

// Takes the requests for one frame, writes its responses into their slots (its extra-info
// slots, GSO then hash, right after the first) and adds its segments to the batch; `w` is the
// queue's request window, advanced past what was taken. `Source` gives the frame's bytes in
// at most `pieces` runs (ChainSource, GrantSource).
template <class Source>
Lcore::Staged Lcore::copy_stage_plan(GuestQueue* q, const netif::RxFrame& meta,
                                     const netif::RxPlan& plan, netif::RequestWindow& w,
                                     Source& src, std::uint32_t pieces, bool local, TxWork* from) {
    if (w.available < plan.requests) return Staged::no_buffer;
    // Segments: every chunk, split where the source's runs split.
    const std::uint32_t need = plan.data_slots + pieces - 1U;
    if (need > segs_.size()) return Staged::too_long; // longer than any batch
    if (n_segs_ + need > segs_.size() || n_copy_frames_ == copy_frames_.size() ||
        n_copy_free_ == copy_free_.size())
        copy_flush();

    // Read and check every request before anything is written or consumed.
    const netif::RxBufferGeometry geo = q->rx_geo;
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
        const auto buffer = q->rx_check.buffer(reqs[k].pad);
        if (!buffer) {
            bad_rx_request(q, reqs[k]);
            return Staged::bad_request;
        }
        chunks[k == 0 ? 0 : k - extras].offset = buffer->offset;
    }
    const RingIdx first = w.cons;
    q->rx.consume(plan.requests);
    w.cons += plan.requests;
    w.available -= plan.requests;

    // Responses in the requests' own slots; segments from the source into each buffer.
    const std::uint32_t seg_begin = n_segs_;
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
        for (std::uint32_t left = chunk.len; left > 0;) {
            hv::GrantCopySegment s{};
            s.dest.foreign = {reqs[k].gref, static_cast<std::uint16_t>(dst_off), q->dom};
            s.flags = hv::GrantCopySegment::kDestGref;
            const std::uint32_t take = src.next(s, left);
            if (take == 0) break;
            s.len = static_cast<std::uint16_t>(take);
            segs_[n_segs_++] = s;
            dst_off += take;
            left -= take;
        }
    }
    if (q->zc) // behind the posted buffers: final once the copy ran
        for (std::uint32_t k = 0; k < plan.requests; ++k)
            q->zc->answers[(first + k) & kRingMask] =
                ZcAnswer{ZcAnswer::kNoPost, ZcAnswer::State::copying};
    copy_frames_[n_copy_frames_++] = CopyFrame{
        q, first, meta.len, n_segs_, static_cast<std::uint8_t>(plan.requests), false, local, from};
    copy_count_batch(q);
    q->rx_round.packets += 1;
    q->rx_round.bytes += meta.len;
    q->rx_round.copies += 1;
    q->rx_round.copy_ops += n_segs_ - seg_begin;
    if (local) {
        q->rx_round.local_packets += 1;
        q->rx_round.local_bytes += meta.len;
    }
    return Staged::ok;
}

// A frame in a daemon mbuf chain, with `hash` for its hash extra-info slot. False, the frame
// untouched, when the guest has no RX buffer for it.
bool Lcore::copy_stage_frame(GuestQueue* q, rte_mbuf* m, netif::RequestWindow& w,
                             const std::optional<netif::FlowHash>& hash) {
    netif::RxFrame meta = rx_frame_meta(m);
    meta.hash = hash;
    netif::RxPlan plan;
    switch (plan_frame(q, meta, plan)) {
    case PlanVerdict::segment:
        copy_stage_segments(q, m, w, hash, meta.gso_size);
        return true;
    case PlanVerdict::undeliverable:
        copy_drop(q, m, q->counters.c.rx_drop_error);
        return true;
    case PlanVerdict::whole:
        break;
    }
    ChainSource src{m};
    switch (copy_stage_plan(q, meta, plan, w, src, m->nb_segs, is_local(m), nullptr)) {
    case Staged::ok:
        if ((m->ol_flags & RTE_MBUF_F_RX_LRO) != 0) bump(q->counters.c.rx_lro);
        copy_free(m);
        return true;
    case Staged::no_buffer:
        return false;
    case Staged::too_long:
        copy_drop(q, m, q->counters.c.rx_drop_error);
        return true;
    case Staged::bad_request:
        copy_drop(q, m);
        return true;
    }
    return true;
}

// A guest's TX packet `t` for `q`, from a guest of the same port on this lcore (tx_onecopy):
// its header from the daemon copy, the rest from the sender's grants straight into the
// receiver's buffers, in this lcore's copy batch, gref to gref. Returns false, having touched
// nothing, when the frame cannot go whole (software segmentation, or undeliverable): the
// daemon-mbuf path then takes it. A frame dropped at the receiver (no buffer) counts there.
bool Lcore::copy_stage_grants(GuestQueue* q, TxWork& t, hv::DomId from_dom,
                              const netif::RxFrame& meta) {
    netif::RxPlan plan;
    if (plan_frame(q, meta, plan) != PlanVerdict::whole) return false;
    netif::RequestWindow w = copy_poll(q);
    GrantSource src{t, from_dom};
    t.onecopy = true;
    t.onecopy_status = gntst::kOkay;
    const Staged st = q->disabled
                          ? Staged::bad_request
                          : copy_stage_plan(q, meta, plan, w, src, 1U + t.pkt.nr_slots, true, &t);
    if (st == Staged::no_buffer) bump(q->counters.c.rx_drop_no_buffer);
    if (st == Staged::too_long) bump(q->counters.c.rx_drop_error);
    if (st != Staged::ok) bump(q->counters.c.local_rx_drops);
    touch(q);
    copy_free(t.hdr); // read by the batch's copy
    t.hdr = nullptr;
    return true;
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
        rte_mbuf* seg = segs[static_cast<unsigned>(i)];
        seg->ol_flags |= local;
        // Segments the guest has no room for are dropped: the frame they came from is gone.
        if (!copy_stage_frame(q, seg, w, hash)) copy_drop(q, seg, q->counters.c.rx_drop_no_buffer);
    }
}

// A frame the NIC wrote into a bounce buffer of a zero-copy queue: its response is written
// (and counted as received) already; the batch copies it into the guest's buffer.
void Lcore::copy_add_bounce(GuestQueue* q, RingIdx idx, netif::GrantRef gref, const std::byte* src,
                            std::uint16_t offset, std::uint16_t len) {
    if (n_segs_ == segs_.size() || n_copy_frames_ == copy_frames_.size()) copy_flush();
    segs_[n_segs_++] = hv::GrantCopySegment::to_guest(src, q->dom, gref, offset, len);
    copy_frames_[n_copy_frames_++] = CopyFrame{q, idx, len, n_segs_, 1, true, false, nullptr};
    copy_count_batch(q);
    q->rx_round.copies += 1;
    q->rx_round.copy_ops += 1;
}

// One grant copy for the batch; then the frames whose copy failed are answered in error;
// then the daemon mbufs go back in bulk.
void Lcore::copy_flush() {
    if (n_segs_ != 0) {
        const std::span segs(segs_.data(), n_segs_);
        if (const Status st = grant_copy(segs); !st)
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
    if (n_copy_free_ != 0) free_daemon_mbufs(copy_free_.data(), n_copy_free_);
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
    std::int16_t mine = bad.status; // the receiver's grant's part in it
    if ((bad.flags & hv::GrantCopySegment::kSourceGref) != 0 && f.from != nullptr) {
        const auto [source, dest] = copy_probe(bad);
        if (source != gntst::kOkay) { // the sender's: tx_onecopy_burst answers it
            f.from->onecopy_status = source;
            f.from->onecopy_ref = bad.source.foreign.ref;
        }
        mine = dest;
    }
    if (guest_fault(mine) && q->fatal_bad_grants)
        disable(q, "RX buffer grant refused",
                Detail("GNTST {} copying into gref {}", mine, bad.dest.foreign.ref).c_str());
}

// A copy from one guest's grant into another's failed: whose grant was it? Each side is tried
// again alone, one byte each, in one call (the receiver's buffer is answered in error anyway).
// Only a side whose grant still fails is blamed, so neither guest can have the other
// disconnected by withdrawing a grant for the copy and granting it again.
std::pair<std::int16_t, std::int16_t> Lcore::copy_probe(const hv::GrantCopySegment& bad) {
    std::array<std::byte, 2> scratch{};
    std::array<hv::GrantCopySegment, 2> p{
        hv::GrantCopySegment::from_guest(bad.source.foreign.domid, bad.source.foreign.ref,
                                         bad.source.foreign.offset, &scratch[0], 1),
        hv::GrantCopySegment::to_guest(&scratch[1], bad.dest.foreign.domid, bad.dest.foreign.ref,
                                       bad.dest.foreign.offset, 1)};
    if (!grant_copy(p)) return {gntst::kOkay, gntst::kOkay}; // tells nothing: blame neither
    return {p[0].status, p[1].status};
}

} // namespace dpnb::engine::detail
