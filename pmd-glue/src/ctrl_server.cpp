// The netif control ring's backend side (ctrl_server.hpp): the ring served in budgeted rounds,
// each request answered through hv::CtrlRequests.
#include "ctrl_server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace dpnb::engine::detail {

namespace ctrl = netif::ctrl;

CtrlServer::CtrlServer(hv::GrantTable& gt, hv::EventChannels& ev, hv::DomId guest,
                       hv::PersistentGrantTable* table, std::uint32_t num_queues, std::string name)
    : gt_(gt), ev_(ev), name_(std::move(name)), requests_(gt, guest, table, num_queues) {}

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

ctrl::Response CtrlServer::answer(const ctrl::Request& req) {
    const ctrl::Answer a = requests_.answer(req);
    if (a.rsp.status == ctrl::kStatusInvalidParameter && log_.allow()) {
        const std::uint64_t suppressed = log_.take_suppressed();
        spdlog::warn(
            "{}: control ring: {} (data {} {} {}) refused: {}{}", name_, ctrl::type_name(req.type),
            req.data[0], req.data[1], req.data[2], ctrl::help(a.error),
            suppressed != 0 ? " (" + std::to_string(suppressed) + " more not logged)" : "");
    }
    return a.rsp;
}

Result<bool> CtrlServer::serve() {
    if (dead_) return false;
    std::uint32_t answered = 0;
    bool more = false;
    for (;;) {
        const netif::RequestWindow w = ring_.poll_requests();
        if (w.overflow) {
            dead_ = true;
            return make_error(Errc::protocol,
                              name_ + ": control ring: the frontend's producer index claims "
                                      "more requests than the ring holds");
        }
        const std::uint32_t n = std::min(w.available, kServeBudget - answered);
        for (std::uint32_t k = 0; k < n; ++k) {
            const ctrl::Request req = ring_.copy_request(w.cons + k);
            ring_.consume(1);
            // One response per request, and the ring has a slot for each request consumed.
            (void)ring_.put_response(answer(req));
        }
        answered += n;
        if (w.available > n) {
            // The budget is spent with requests left. req_event stays where it is, so the
            // frontend will not notify for them: the caller comes back on its own.
            more = true;
            break;
        }
        // Drained: arm req_event, unless more came meanwhile.
        if (!ring_.final_check_for_requests()) break;
        if (answered == kServeBudget) {
            more = true;
            break;
        }
    }
    if (answered != 0 && ring_.push_responses()) {
        if (Status st = ev_.notify(port_); !st)
            spdlog::warn("{}: notifying the control channel: {}", name_, st.error().message);
    }
    return more;
}

} // namespace dpnb::engine::detail
