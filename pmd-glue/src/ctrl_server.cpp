// The netif control ring's backend side: static grants (ctrl_server.hpp, docs/protocol.md).
#include "ctrl_server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

namespace dpnb::engine::detail {

namespace ctrl = netif::ctrl;

Result<std::unique_ptr<CtrlServer>> CtrlServer::open(hv::GrantTable& gt, hv::EventChannels& ev,
                                                     hv::DomId guest,
                                                     const netif::CtrlRingConfig& cfg,
                                                     hv::PersistentGrantTable* table,
                                                     std::uint32_t num_queues, std::string name) {
    std::unique_ptr<CtrlServer> s(
        new CtrlServer(gt, ev, guest, table, num_queues, std::move(name)));
    const hv::GrantMapRequest req{guest, cfg.ring_ref, true};
    std::int16_t status = 0;
    s->ring_map_ = gt.map(std::span(&req, 1), std::span(&status, 1));
    if (!s->ring_map_)
        return make_error(Errc::protocol, s->name_ + ": mapping control ring grant " +
                                              std::to_string(cfg.ring_ref) + ": GNTST " +
                                              std::to_string(status));
    // At the shared rsp_prod: right for a fresh ring and for one a previous daemon served
    // (its registrations are gone with it; the frontend's buffers then miss the table and
    // are mapped per packet until it registers them again).
    auto ring = ctrl::BackRing::attach(s->ring_map_.base);
    if (!ring)
        return make_error(Errc::protocol, s->name_ + ": control ring: " + ring.error().message);
    s->ring_ = *ring;
    auto port = ev.bind_interdomain(guest, cfg.evtchn);
    if (!port)
        return make_error(Errc::protocol, s->name_ + ": binding control event channel " +
                                              std::to_string(cfg.evtchn) + ": " +
                                              port.error().message);
    s->port_ = *port;
    return s;
}

CtrlServer::~CtrlServer() {
    close();
}

void CtrlServer::close() {
    if (port_ != 0) {
        if (Status st = ev_.unbind(port_); !st)
            spdlog::warn("{}: unbinding the control channel: {}", name_, st.error().message);
        port_ = 0;
    }
    if (ring_map_) {
        if (Status st = gt_.unmap(ring_map_); !st)
            spdlog::error("{}: unmapping the control ring: {}", name_, st.error().message);
    }
    ring_ = {};
    dead_ = true;
}

bool CtrlServer::read_list(const ctrl::Request& req, std::uint32_t& n) {
    n = req.data[2];
    if (req.data[0] >= num_queues_ || n == 0 || n > ctrl::kMaxGrefsPerMessage) return false;
    hv::GrantCopySegment seg = hv::GrantCopySegment::from_guest(
        guest_, req.data[1], 0, list_, static_cast<std::uint16_t>(n * sizeof(ctrl::Gref)));
    return gt_.copy(std::span(&seg, 1)) && seg.status == netif::gntst::kOkay;
}

std::uint32_t CtrlServer::add(const ctrl::Request& req) {
    std::uint32_t n = 0;
    if (!read_list(req, n)) return ctrl::kStatusInvalidParameter;
    std::vector<hv::StaticGrant> grants;
    grants.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        // Copied out already: the guest cannot change it under us.
        const ctrl::Gref g = list_[i];
        if ((g.flags & ~ctrl::kGrefReadonly) != 0) return ctrl::kStatusInvalidParameter;
        grants.push_back({g.ref, (g.flags & ctrl::kGrefReadonly) != 0});
    }
    std::vector<hv::StaticGrantStatus> st(n);
    if (!table_->add(grants, st)) return ctrl::kStatusInvalidParameter;
    if (!std::all_of(st.begin(), st.end(),
                     [](hv::StaticGrantStatus s) { return s == hv::StaticGrantStatus::ok; }))
        return ctrl::kStatusInvalidParameter;
    counters_.grefs_added += n;
    return ctrl::kStatusSuccess;
}

std::uint32_t CtrlServer::del(const ctrl::Request& req, std::uint32_t& removed) {
    removed = 0;
    std::uint32_t n = 0;
    if (!read_list(req, n)) return ctrl::kStatusInvalidParameter;
    std::vector<hv::GrantRef> refs(n);
    for (std::uint32_t i = 0; i < n; ++i)
        refs[i] = list_[i].ref;
    std::vector<hv::StaticGrantStatus> st(n);
    auto r = table_->remove(refs, st);
    for (std::uint32_t i = 0; i < n; ++i) {
        list_[i].status = hv::to_ctrl_status(st[i]);
        if (st[i] == hv::StaticGrantStatus::busy) ++counters_.grefs_busy;
    }
    // The per-entry statuses go back into the guest's list page before the response.
    hv::GrantCopySegment back = hv::GrantCopySegment::to_guest(
        list_, guest_, req.data[1], 0, static_cast<std::uint16_t>(n * sizeof(ctrl::Gref)));
    const bool written = gt_.copy(std::span(&back, 1)) && back.status == netif::gntst::kOkay;
    if (!r || !written) return ctrl::kStatusInvalidParameter;
    removed = *r;
    counters_.grefs_removed += removed;
    return removed == n ? ctrl::kStatusSuccess : ctrl::kStatusInvalidParameter;
}

ctrl::Response CtrlServer::answer(const ctrl::Request& req) {
    ctrl::Response rsp{req.id, req.type, ctrl::kStatusNotSupported, 0};
    ++counters_.requests;
    const bool static_type = req.type == ctrl::kTypeGetGrefMappingSize ||
                             req.type == ctrl::kTypeAddGrefMapping ||
                             req.type == ctrl::kTypeDelGrefMapping;
    if (!static_type || table_ == nullptr) {
        ++counters_.not_supported;
        return rsp;
    }
    if (req.type == ctrl::kTypeGetGrefMappingSize) {
        const bool queue_ok = req.data[0] < num_queues_;
        rsp.status = queue_ok ? ctrl::kStatusSuccess : ctrl::kStatusInvalidParameter;
        rsp.data = queue_ok ? table_->limits().max_entries : 0;
    } else if (req.type == ctrl::kTypeAddGrefMapping) {
        rsp.status = add(req);
    } else {
        rsp.status = del(req, rsp.data);
    }
    if (rsp.status == ctrl::kStatusInvalidParameter) ++counters_.invalid;
    return rsp;
}

Status CtrlServer::serve() {
    if (dead_) return ok();
    bool answered = false;
    for (;;) {
        const netif::RequestWindow w = ring_.poll_requests();
        if (w.overflow) {
            dead_ = true;
            return make_error(Errc::protocol,
                              name_ + ": control ring: the frontend's producer index claims "
                                      "more requests than the ring holds");
        }
        for (std::uint32_t k = 0; k < w.available; ++k) {
            const ctrl::Request req = ring_.copy_request(w.cons + k);
            ring_.consume(1);
            // One response per request, and the ring has a slot for each request consumed.
            (void)ring_.put_response(answer(req));
            answered = true;
        }
        if (w.available != 0) continue;
        if (!ring_.final_check_for_requests()) break;
    }
    if (answered && ring_.push_responses()) {
        if (Status st = ev_.notify(port_); !st)
            spdlog::warn("{}: notifying the control channel: {}", name_, st.error().message);
    }
    return ok();
}

} // namespace dpnb::engine::detail
