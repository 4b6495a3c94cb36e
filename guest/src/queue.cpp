// The per-queue data path of the netfront: set-up and teardown of the rings, transmit
// (xennet_start_xmit), TX response collection (xennet_tx_buf_gc), receive
// (xennet_poll / xennet_get_responses / xennet_get_extras) and RX refill
// (xennet_alloc_rx_buffers). Everything read from the shared rings is a copy (ring.hpp) and
// is checked before it is used.
#include "queue.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

namespace dpnb::netfront {

namespace gtf = netif::gtf;
namespace rsp = netif::rsp;
namespace txf = netif::txf;
namespace rxf = netif::rxf;

Queue::Queue(Netfront& nf, unsigned index) : nf_(nf), index_(index) {}

Queue::~Queue() {
    teardown();
}

Status Queue::setup(bool split) {
    hv::GuestHypervisor& hv = nf_.hv_;
    for (std::byte*& page : ring_pages_) { // one allocation each: gntalloc frees whole ones
        auto p = hv.alloc_pages(1);
        if (!p) return std::move(p).error();
        page = p->base;
    }
    auto tx_pages = hv.alloc_pages(kRingSize);
    if (!tx_pages) return std::move(tx_pages).error();
    tx_pages_ = *tx_pages;

    auto tx = netif::TxFrontRing::init(ring_pages_[0]);
    if (!tx) return std::move(tx).error();
    tx_ = *tx;
    auto rx = netif::RxFrontRing::init(ring_pages_[1]);
    if (!rx) return std::move(rx).error();
    rx_ = *rx;
    std::memset(ring_pages_[0] + sizeof(netif::SharedRingHeader), 0,
                hv::kPageSize - sizeof(netif::SharedRingHeader));
    std::memset(ring_pages_[1] + sizeof(netif::SharedRingHeader), 0,
                hv::kPageSize - sizeof(netif::SharedRingHeader));

    auto tx_ref = hv.grant_access(nf_.backend_, ring_pages_[0], false);
    if (!tx_ref) return std::move(tx_ref).error();
    tx_ring_ref_ = *tx_ref;
    auto rx_ref = hv.grant_access(nf_.backend_, ring_pages_[1], false);
    if (!rx_ref) return std::move(rx_ref).error();
    rx_ring_ref_ = *rx_ref;

    hv::EventChannels& ev = *nf_.evtchn_;
    bool split_ok = false;
    if (split) { // setup_netfront_split, else (or on failure) setup_netfront_single
        auto t = ev.bind_unbound(nf_.backend_);
        if (t) {
            auto r = ev.bind_unbound(nf_.backend_);
            if (r) {
                tx_port_ = *t;
                rx_port_ = *r;
                split_ok = true;
            } else {
                (void)ev.unbind(*t);
            }
        }
    }
    if (!split_ok) {
        auto port = ev.bind_unbound(nf_.backend_);
        if (!port) return std::move(port).error();
        tx_port_ = rx_port_ = *port;
    }

    for (std::uint32_t i = 0; i < kRingSize; ++i)
        tx_free_[i] = static_cast<std::uint16_t>(kRingSize - 1 - i);
    tx_free_count_ = kRingSize;
    return ok();
}

void Queue::teardown() {
    hv::GuestHypervisor& hv = nf_.hv_;
    if (nf_.evtchn_) {
        if (tx_port_ != 0) (void)nf_.evtchn_->unbind(tx_port_);
        if (rx_port_ != 0 && rx_port_ != tx_port_) (void)nf_.evtchn_->unbind(rx_port_);
    }
    tx_port_ = rx_port_ = 0;

    // xennet_release_tx_bufs: frames the backend never answered.
    for (std::uint32_t id = 0; id < kRingSize; ++id) {
        TxSlot& s = tx_slots_[id];
        if (!s.pending) continue;
        if (Status st = hv.end_access(s.gref); !st) {
            nf_.deferred_.push_back({s.gref, nullptr, kNoBuffer});
            nf_.counters_.add(Counter::grants_deferred);
            tx_pages_leaked_ = true; // the page stays readable by the backend
        }
        s = TxSlot{};
    }
    for (std::uint32_t id = 0; id < kRingSize; ++id)
        if (tx_frames_[id].active) complete(static_cast<std::uint16_t>(id), nullptr);
    tx_frames_in_flight_ = 0;
    tx_free_count_ = 0;

    // xennet_release_rx_bufs: buffers posted and not answered, or waiting to be re-posted.
    auto release_rx = [&](BufferId buf, hv::GrantRef gref, bool per_post) {
        if (per_post) {
            if (Status st = hv.end_access(gref); !st) {
                nf_.deferred_.push_back({gref, nullptr, buf}); // given back once ended
                nf_.counters_.add(Counter::grants_deferred);
                return;
            }
            nf_.pool_->buffer(buf).post_gref = hv::kGrantRefInvalid;
        }
        nf_.pool_->give_back(buf);
    };
    for (RxSlot& s : rx_slots_) {
        if (s.buf != kNoBuffer) release_rx(s.buf, s.gref, s.per_post);
        s = RxSlot{};
    }
    for (const Repost& r : repost_)
        release_rx(r.buf, r.gref, r.per_post);
    repost_.clear();

    // The rings: xennet_end_access frees them once the backend has unmapped them.
    for (std::uint32_t i = 0; i < 2; ++i) {
        hv::GrantRef& ref = i == 0 ? tx_ring_ref_ : rx_ring_ref_;
        std::byte*& page = ring_pages_[i];
        if (page == nullptr) continue;
        if (ref == hv::kGrantRefInvalid || hv.end_access(ref)) {
            (void)hv.free_pages({page, 1});
        } else {
            nf_.deferred_.push_back({ref, page, kNoBuffer});
            nf_.counters_.add(Counter::grants_deferred);
        }
        ref = hv::kGrantRefInvalid;
        page = nullptr;
    }
    tx_ = {};
    rx_ = {};
    if (tx_pages_.base != nullptr) {
        if (tx_pages_leaked_)
            spdlog::warn("netfront: queue {}: TX pages kept: the backend still holds a grant",
                         index_);
        else
            (void)hv.free_pages(tx_pages_);
    }
    tx_pages_ = {};
}

void Queue::notify(hv::EvtchnPort port, Counter counter) {
    if (port == 0) return;
    if (Status st = nf_.evtchn_->notify(port); st) nf_.counters_.add(counter);
}

void Queue::kick() {
    notify(tx_port_, Counter::notify_tx);
    if (rx_port_ != tx_port_) notify(rx_port_, Counter::notify_rx);
}

// --- transmit ---------------------------------------------------------------------------------

Status Queue::send(const TxFrame& f) {
    const BackendFeatures& feat = nf_.features_;
    const std::size_t len = f.data.size();
    if (len < netif::kEthHeaderLen || len > netif::kMaxTxSize)
        return make_error(Errc::invalid_argument,
                          "frame of " + std::to_string(len) + " bytes (14 .. 65535)");
    if (f.first_offset > hv::kPageSize - netif::kEthHeaderLen)
        return make_error(Errc::invalid_argument, "first slot leaves no room for the header");
    const std::size_t first_len = std::min<std::size_t>(len, hv::kPageSize - f.first_offset);
    const std::size_t nslots = 1 + (len - first_len + hv::kPageSize - 1) / hv::kPageSize;
    if (nslots > kMaxTxSlots)
        return make_error(Errc::invalid_argument, "frame needs more than 18 slots");
    if (nslots > 1 && !feat.sg)
        return make_error(Errc::unsupported, "multi-slot frame: the backend has no feature-sg");
    const bool gso = f.gso_type != netif::gso::kNone;
    if (gso) {
        if (f.gso_type != netif::gso::kTcpV4 && f.gso_type != netif::gso::kTcpV6)
            return make_error(Errc::invalid_argument, "unknown GSO type");
        if (f.gso_size == 0) return make_error(Errc::invalid_argument, "GSO size 0");
        if ((f.gso_type == netif::gso::kTcpV4 && !feat.gso_tcpv4) ||
            (f.gso_type == netif::gso::kTcpV6 && !feat.gso_tcpv6))
            return make_error(Errc::unsupported, "the backend did not offer this GSO type");
    }
    const std::uint32_t ring_slots = static_cast<std::uint32_t>(nslots) + (gso ? 1U : 0U);
    if (tx_.free_requests() < ring_slots || tx_free_count_ < nslots) {
        nf_.counters_.add(Counter::tx_ring_full);
        return make_error(Errc::busy, "TX ring full");
    }

    // Fill and grant each slot's page (xennet_tx_setup_grant); undo on failure.
    std::array<netif::TxRequest, kMaxTxSlots> reqs{};
    std::size_t done = 0;
    std::size_t offset_in_frame = 0;
    for (; done < nslots; ++done) {
        const std::uint16_t id = tx_free_[tx_free_count_ - 1 - done];
        std::byte* page = tx_pages_.page(id);
        const std::size_t off = done == 0 ? f.first_offset : 0;
        const std::size_t n =
            done == 0 ? first_len : std::min<std::size_t>(len - offset_in_frame, hv::kPageSize);
        std::memcpy(page + off, f.data.data() + offset_in_frame, n);
        if (!nf_.trusted_) { // bounce: nothing but the frame is visible in the granted page
            std::memset(page, 0, off);
            std::memset(page + off + n, 0, hv::kPageSize - off - n);
        }
        auto gref = nf_.hv_.grant_access(nf_.backend_, page, true);
        if (!gref) {
            for (std::size_t k = 0; k < done; ++k)
                (void)nf_.hv_.end_access(reqs[k].gref); // never published: cannot be in use
            nf_.counters_.add(Counter::tx_ring_full);
            return make_error(Errc::busy, "no grant for a TX slot: " + gref.error().message);
        }
        reqs[done] = netif::TxRequest{*gref, static_cast<std::uint16_t>(off), 0, id,
                                      static_cast<std::uint16_t>(n)};
        offset_in_frame += n;
    }
    tx_free_count_ -= static_cast<std::uint32_t>(nslots);

    // The first request carries the frame's length and flags (xennet_start_xmit).
    netif::TxRequest& first = reqs[0];
    first.size = static_cast<std::uint16_t>(len);
    if (f.csum_partial)
        first.flags |= txf::kCsumBlank | txf::kDataValidated;
    else if (f.data_validated)
        first.flags |= txf::kDataValidated;
    if (nslots > 1) first.flags |= txf::kMoreData;
    if (gso) first.flags |= txf::kExtraInfo;
    for (std::size_t k = 1; k + 1 < nslots; ++k)
        reqs[k].flags |= txf::kMoreData;

    const std::uint16_t first_id = first.id;
    for (std::size_t k = 0; k < nslots; ++k) {
        const bool put = tx_.put_request(reqs[k]);
        (void)put; // room was checked above
        tx_slots_[reqs[k].id] = TxSlot{reqs[k].gref, first_id, true};
        if (k == 0 && gso) {
            netif::ExtraInfo extra{};
            extra.type = netif::extra::kGso;
            extra.flags = 0;
            extra.u.gso.size = f.gso_size;
            extra.u.gso.type = f.gso_type;
            extra.u.gso.pad = 0;
            extra.u.gso.features = 0;
            const bool put_extra = tx_.put_extra(extra);
            (void)put_extra;
        }
    }
    tx_frames_[first_id] = TxFrameState{f.cookie, static_cast<std::uint32_t>(len),
                                        static_cast<std::uint16_t>(nslots), TxStatus::okay, true};
    ++tx_frames_in_flight_;
    nf_.counters_.add(Counter::tx_frames);
    nf_.counters_.add(Counter::tx_slots, nslots);
    if (tx_.push_requests()) notify(tx_port_, Counter::notify_tx);
    return ok();
}

void Queue::complete(std::uint16_t first_id, const Handlers* handlers) {
    TxFrameState& fr = tx_frames_[first_id];
    if (!fr.active) return;
    TxCompletion c{index_, fr.cookie, fr.len, fr.status};
    if (fr.remaining != 0) c.status = TxStatus::aborted;
    fr = TxFrameState{};
    if (tx_frames_in_flight_ > 0) --tx_frames_in_flight_;
    switch (c.status) {
    case TxStatus::okay:
        nf_.counters_.add(Counter::tx_frames_ok);
        nf_.counters_.add(Counter::tx_bytes_ok, c.len);
        break;
    case TxStatus::error:
        nf_.counters_.add(Counter::tx_frames_error);
        break;
    case TxStatus::dropped:
        nf_.counters_.add(Counter::tx_frames_dropped);
        break;
    case TxStatus::bad_status:
        nf_.counters_.add(Counter::tx_frames_bad_status);
        break;
    case TxStatus::aborted:
        nf_.counters_.add(Counter::tx_frames_aborted);
        break;
    }
    if (handlers != nullptr && handlers->on_tx)
        handlers->on_tx(c);
    else if (handlers == nullptr)
        nf_.aborted_.push_back(c); // delivered by the next poll()
}

void Queue::collect_tx(const Handlers& handlers) {
    const netif::ResponseWindow w = tx_.poll_responses();
    if (w.overflow) {
        nf_.counters_.add(Counter::ring_overflow);
        nf_.mark_broken("queue " + std::to_string(index_) + ": illegal number of TX responses " +
                        std::to_string(w.prod - w.cons));
        return;
    }
    netif::RingIdx cons = w.cons;
    for (; cons != w.prod; ++cons) {
        const netif::TxResponse r = tx_.copy_response(cons);
        if (r.status == rsp::kNull) continue; // answers an extra-info slot
        if (r.id >= kRingSize || !tx_slots_[r.id].pending) {
            nf_.counters_.add(Counter::tx_bad_response);
            tx_.consume_responses(cons - w.cons + 1);
            nf_.mark_broken("queue " + std::to_string(index_) + ": TX response for " +
                            (r.id >= kRingSize ? "an impossible id " : "an inactive id ") +
                            std::to_string(r.id));
            return;
        }
        TxSlot& s = tx_slots_[r.id];
        if (Status st = nf_.hv_.end_access(s.gref); !st) {
            nf_.counters_.add(Counter::grant_still_in_use);
            nf_.deferred_.push_back({s.gref, nullptr, kNoBuffer});
            tx_pages_leaked_ = true;
            s = TxSlot{};
            tx_.consume_responses(cons - w.cons + 1);
            nf_.mark_broken("queue " + std::to_string(index_) + ": TX grant " +
                            std::to_string(r.id) + " still in use by the backend");
            return;
        }
        const std::uint16_t first_id = s.frame;
        s = TxSlot{};
        tx_free_[tx_free_count_++] = r.id;
        TxFrameState& fr = tx_frames_[first_id];
        if (!fr.active) continue; // cannot happen: every pending slot has an active frame
        if (fr.status == TxStatus::okay) {
            if (r.status == rsp::kError)
                fr.status = TxStatus::error;
            else if (r.status == rsp::kDropped)
                fr.status = TxStatus::dropped;
            else if (r.status != rsp::kOkay)
                fr.status = TxStatus::bad_status;
        }
        if (--fr.remaining == 0) complete(first_id, &handlers);
    }
    tx_.consume_responses(cons - w.cons);
}

// --- receive ----------------------------------------------------------------------------------

bool Queue::end_rx_grant(RxSlot& slot) {
    if (!slot.per_post) return true;
    if (Status st = nf_.hv_.end_access(slot.gref); !st) {
        nf_.counters_.add(Counter::grant_still_in_use);
        nf_.deferred_.push_back({slot.gref, nullptr, slot.buf});
        slot = RxSlot{};
        nf_.mark_broken("queue " + std::to_string(index_) +
                        ": RX grant still in use by the backend after its response");
        return false;
    }
    nf_.pool_->buffer(slot.buf).post_gref = hv::kGrantRefInvalid;
    slot.per_post = false;
    slot.gref = hv::kGrantRefInvalid;
    return true;
}

void Queue::receive(const Handlers& handlers) {
    const netif::ResponseWindow w = rx_.poll_responses();
    if (w.overflow) {
        nf_.counters_.add(Counter::ring_overflow);
        nf_.mark_broken("queue " + std::to_string(index_) + ": illegal number of RX responses " +
                        std::to_string(w.prod - w.cons));
        return;
    }
    constexpr std::uint32_t kMask = kRingSize - 1;
    RxBufferPool& pool = *nf_.pool_;
    netif::RingIdx i = w.cons;
    while (i != w.prod && !nf_.broken_) {
        // One frame (xennet_get_responses): the first response, its extra-info slots, then
        // the data slots chained with more_data; every slot it touches is consumed.
        const netif::RxResponse first = rx_.copy_response(i);
        std::array<netif::RingIdx, kMaxFrameSlots> data_idx{};
        std::array<netif::RxResponse, kMaxFrameSlots> data_rsp{};
        std::array<netif::RingIdx, kMaxFrameSlots> extra_idx{};
        std::size_t nd = 0, ne = 0, ndata_total = 0;
        std::optional<Counter> error;
        auto fail = [&](Counter c) {
            if (!error) error = c;
        };
        netif::ExtraInfo gso{};
        bool have_gso = false;
        netif::ExtraInfo hash{};
        bool have_hash = false;
        std::uint32_t used = 1;
        data_idx[nd] = i;
        data_rsp[nd++] = first;
        ndata_total = 1;

        if (first.flags & rxf::kExtraInfo) { // xennet_get_extras
            for (;;) {
                if (i + used == w.prod) {
                    fail(Counter::rx_bad_extra); // "Missing extra info"
                    break;
                }
                const netif::ExtraInfo ex = rx_.copy_extra(i + used);
                if (ne < kMaxFrameSlots)
                    extra_idx[ne++] = i + used;
                else
                    fail(Counter::rx_too_many_slots);
                ++used;
                if (ex.type == netif::extra::kNone || ex.type >= netif::extra::kTypeMax) {
                    fail(Counter::rx_bad_extra);
                } else if (ex.type == netif::extra::kGso) {
                    gso = ex;
                    have_gso = true;
                } else if (ex.type == netif::extra::kHash) {
                    hash = ex;
                    have_hash = true;
                }
                if (!(ex.flags & netif::extra::kFlagMore)) break;
            }
        }
        // The data chain is consumed whole, even after an error, as Linux does (up to what
        // is published).
        netif::RxResponse cur = first;
        while (cur.flags & rxf::kMoreData) {
            if (i + used == w.prod) {
                fail(Counter::rx_incomplete); // "Need more slots"
                break;
            }
            cur = rx_.copy_response(i + used);
            if (nd < kMaxFrameSlots) {
                data_idx[nd] = i + used;
                data_rsp[nd++] = cur;
            }
            ++used;
            ++ndata_total;
        }
        // Linux: XEN_NETIF_NR_SLOTS_MIN, plus one when the first slot is small.
        const std::size_t max_slots = netif::kLegacyMaxSlots + (first.status <= 256 ? 1U : 0U);
        if (ndata_total > max_slots || ndata_total > nd) fail(Counter::rx_too_many_slots);

        std::uint32_t total = 0;
        for (std::size_t k = 0; k < nd; ++k) {
            const netif::RxResponse& r = data_rsp[k];
            const RxSlot& slot = rx_slots_[data_idx[k] & kMask];
            if (slot.buf == kNoBuffer) { // cannot happen: every produced slot was posted
                fail(Counter::rx_bad_id);
                continue;
            }
            const RxBuffer& b = pool.buffer(slot.buf);
            if (r.id != (data_idx[k] & kMask)) fail(Counter::rx_bad_id);
            if (r.status < 0) {
                fail(Counter::rx_error_status);
                continue;
            }
            if (r.offset < b.offset ||
                static_cast<std::uint32_t>(r.offset) + static_cast<std::uint32_t>(r.status) >
                    static_cast<std::uint32_t>(b.offset) + b.size)
                fail(Counter::rx_bad_offset);
            total += static_cast<std::uint32_t>(r.status);
        }
        if (have_gso && (gso.u.gso.size == 0 || (gso.u.gso.type != netif::gso::kTcpV4 &&
                                                 gso.u.gso.type != netif::gso::kTcpV6)))
            fail(Counter::rx_bad_gso);
        if (!error && total < netif::kEthHeaderLen) fail(Counter::rx_runt);

        rx_.consume_responses(used);

        // Extra-info slots carried no data: their buffers go back on the ring as they are
        // (xennet_move_rx_slot).
        for (std::size_t k = 0; k < ne; ++k) {
            RxSlot& s = rx_slots_[extra_idx[k] & kMask];
            if (s.buf != kNoBuffer) repost_.push_back({s.buf, s.gref, s.per_post});
            s = RxSlot{};
        }
        // Data slots beyond what we could record (only in a frame already in error).
        for (std::uint32_t k = 0; k < used; ++k) {
            RxSlot& s = rx_slots_[(i + k) & kMask];
            const bool recorded =
                std::find(data_idx.begin(), data_idx.begin() + static_cast<long>(nd), i + k) !=
                data_idx.begin() + static_cast<long>(nd);
            if (!recorded && s.buf != kNoBuffer) {
                repost_.push_back({s.buf, s.gref, s.per_post});
                s = RxSlot{};
            }
        }

        if (error) {
            nf_.counters_.add(*error);
            // Nothing of the frame reaches the stack; the buffers are posted again with
            // their grants (the backend answered them, so it is done with them).
            for (std::size_t k = 0; k < nd; ++k) {
                RxSlot& s = rx_slots_[data_idx[k] & kMask];
                if (s.buf != kNoBuffer) repost_.push_back({s.buf, s.gref, s.per_post});
                s = RxSlot{};
            }
            i += used;
            continue;
        }

        std::array<RxSegment, kMaxFrameSlots> segs{};
        std::array<BufferId, kMaxFrameSlots> bufs{};
        bool grants_ok = true;
        for (std::size_t k = 0; k < nd; ++k) {
            RxSlot& s = rx_slots_[data_idx[k] & kMask];
            bufs[k] = s.buf;
            if (!end_rx_grant(s)) { // broken: the buffer stays with the deferred grant
                grants_ok = false;
                bufs[k] = kNoBuffer;
                continue;
            }
            const RxBuffer& b = pool.buffer(s.buf);
            segs[k] = RxSegment{b.page + data_rsp[k].offset,
                                static_cast<std::uint16_t>(data_rsp[k].status)};
            s = RxSlot{};
        }
        if (!grants_ok) {
            for (std::size_t k = 0; k < nd; ++k)
                if (bufs[k] != kNoBuffer) pool.give_back(bufs[k]);
            i += used;
            break;
        }
        RxFrameView view;
        view.queue = index_;
        view.len = total;
        view.segments = std::span<const RxSegment>(segs.data(), nd);
        view.csum_blank = (first.flags & rxf::kCsumBlank) != 0;
        view.data_validated = (first.flags & rxf::kDataValidated) != 0;
        if (have_gso) {
            view.gso_type = gso.u.gso.type;
            view.gso_size = gso.u.gso.size;
        }
        if (have_hash) {
            view.hash = true;
            view.hash_type = hash.u.hash.type;
            for (unsigned b = 0; b < 4; ++b)
                view.hash_value |= static_cast<std::uint32_t>(hash.u.hash.value[b]) << (8 * b);
        }
        nf_.counters_.add(Counter::rx_frames);
        nf_.counters_.add(Counter::rx_bytes, total);
        nf_.counters_.add(Counter::rx_slots, nd);
        if (handlers.on_rx) handlers.on_rx(view);
        pool.hold(std::span<const BufferId>(bufs.data(), nd));
        i += used;
    }
}

void Queue::refill() {
    constexpr std::uint32_t kMask = kRingSize - 1;
    RxBufferPool& pool = *nf_.pool_;
    bool added = false;
    while (rx_.req_prod_pvt() - rx_.rsp_cons() < kRingSize) {
        RxSlot slot;
        if (!repost_.empty()) {
            const Repost r = repost_.back();
            repost_.pop_back();
            slot = RxSlot{r.buf, r.gref, r.per_post};
            nf_.counters_.add(Counter::rx_reposts);
        } else {
            auto buf = pool.take();
            if (!buf) {
                nf_.counters_.add(Counter::rx_no_buffer);
                break;
            }
            slot.buf = *buf;
            slot.gref = pool.page_gref(*buf);        // reuse mode: the page's own grant
            if (slot.gref == hv::kGrantRefInvalid) { // a grant for this post only
                RxBuffer& b = pool.buffer(*buf);
                auto gref = nf_.hv_.grant_access(nf_.backend_, b.page, false);
                if (!gref) {
                    pool.give_back(*buf);
                    nf_.counters_.add(Counter::rx_no_buffer);
                    break;
                }
                slot.gref = *gref;
                slot.per_post = true;
                b.post_gref = *gref;
            }
        }
        const netif::RingIdx idx = rx_.req_prod_pvt();
        netif::RxRequest req{};
        req.id = static_cast<std::uint16_t>(idx & kMask); // xennet_rxidx: the ring index
        req.pad = nf_.use_buffer_offset_ ? pool.buffer(slot.buf).offset : 0;
        req.gref = slot.gref;
        const bool put = rx_.put_request(req);
        (void)put; // the loop condition guarantees room
        rx_slots_[idx & kMask] = slot;
        added = true;
    }
    if (added && rx_.push_requests()) notify(rx_port_, Counter::notify_rx);
}

void Queue::process(const Handlers& handlers) {
    if (nf_.broken_) return;
    collect_tx(handlers);
    if (nf_.broken_) return;
    receive(handlers);
    if (nf_.broken_) return;
    refill();
}

bool Queue::more_work() {
    if (nf_.broken_ || !tx_.attached()) return false;
    const bool tx_more = tx_.final_check_for_responses();
    const bool rx_more = rx_.final_check_for_responses();
    return tx_more || rx_more;
}

} // namespace dpnb::netfront
