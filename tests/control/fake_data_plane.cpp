// TEST-ONLY data plane (fake_data_plane.hpp).
#include "fake_data_plane.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/tx_parser.hpp"

namespace dpnb::control::test {

struct FakeDataPlane::Vif {
    engine::VifSpec spec;
    struct Queue {
        hv::GrantMapping tx_map, rx_map;
        hv::EvtchnPort tx_port = 0, rx_port = 0;
        netif::TxBackRing tx;
        bool dead = false;
    };
    std::vector<Queue> queues;
};

FakeDataPlane::FakeDataPlane(hv::BackendHypervisor* hv) : hv_(hv) {}

Result<std::unique_ptr<FakeDataPlane>> FakeDataPlane::create(hv::BackendHypervisor* hv) {
    std::unique_ptr<FakeDataPlane> dp(new FakeDataPlane(hv));
    dp->event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC | EFD_SEMAPHORE);
    if (dp->event_fd_ < 0) return make_error(Errc::io, "eventfd", errno);
    if (hv != nullptr) {
        auto gt = hv->open_grant_table();
        if (!gt) return std::move(gt).error();
        dp->gt_ = std::move(*gt);
        auto ev = hv->open_event_channels();
        if (!ev) return std::move(ev).error();
        dp->ev_ = std::move(*ev);
    }
    return dp;
}

FakeDataPlane::~FakeDataPlane() {
    for (auto& [id, v] : vifs_)
        release(*v);
    if (event_fd_ >= 0) ::close(event_fd_);
}

void FakeDataPlane::release(Vif& v) {
    for (Vif::Queue& q : v.queues) {
        if (q.rx_port != 0 && q.rx_port != q.tx_port) (void)ev_->unbind(q.rx_port);
        if (q.tx_port != 0) (void)ev_->unbind(q.tx_port);
        if (q.tx_map) (void)gt_->unmap(q.tx_map);
        if (q.rx_map) (void)gt_->unmap(q.rx_map);
    }
    v.queues.clear();
}

Status FakeDataPlane::attach(const engine::VifSpec& spec) {
    calls_.attach.push_back(spec);
    if (fail_next_) {
        Error e = std::move(*fail_next_);
        fail_next_.reset();
        return e;
    }
    if (vifs_.contains(spec.id)) return make_error(Errc::exists, "attached already");
    auto v = std::make_unique<Vif>();
    v->spec = spec;
    if (hv_ != nullptr) {
        const hv::DomId guest = spec.id.dom;
        for (const netif::QueueConfig& qc : spec.frontend.queues) {
            Vif::Queue& q = v->queues.emplace_back();
            for (int r = 0; r < 2; ++r) {
                const hv::GrantMapRequest req{guest, r == 0 ? qc.tx_ring_ref : qc.rx_ring_ref,
                                              true};
                std::int16_t status = 0;
                hv::GrantMapping m = gt_->map(std::span(&req, 1), std::span(&status, 1));
                if (!m) {
                    release(*v);
                    return make_error(Errc::protocol, "ring grant " + std::to_string(req.ref) +
                                                          " cannot be mapped (GNTST " +
                                                          std::to_string(status) + ")");
                }
                (r == 0 ? q.tx_map : q.rx_map) = m;
            }
            auto tx = netif::TxBackRing::attach(q.tx_map.base);
            if (!tx) {
                release(*v);
                return make_error(Errc::protocol, tx.error().message);
            }
            q.tx = *tx;
            auto tp = ev_->bind_interdomain(guest, qc.tx_evtchn);
            if (!tp) {
                release(*v);
                return make_error(Errc::protocol, "event channel " + std::to_string(qc.tx_evtchn) +
                                                      ": " + tp.error().message);
            }
            q.tx_port = q.rx_port = *tp;
            if (qc.split_event_channels) {
                auto rp = ev_->bind_interdomain(guest, qc.rx_evtchn);
                if (!rp) {
                    release(*v);
                    return make_error(Errc::protocol, "event channel " +
                                                          std::to_string(qc.rx_evtchn) + ": " +
                                                          rp.error().message);
                }
                q.rx_port = *rp;
            }
        }
        // The frontend may be waiting for a kick (always after a restart): one per channel.
        for (const Vif::Queue& q : v->queues) {
            (void)ev_->notify(q.tx_port);
            if (q.rx_port != q.tx_port) (void)ev_->notify(q.rx_port);
        }
    }
    vifs_.emplace(spec.id, std::move(v));
    return ok();
}

Status FakeDataPlane::detach(const engine::VifId& id) {
    calls_.detach.push_back(id);
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, "not attached");
    release(*it->second);
    vifs_.erase(it);
    return ok();
}

Status FakeDataPlane::set_rx_mode(const engine::VifId& id, engine::RxMode mode) {
    calls_.rx_mode.emplace_back(id, mode);
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, "not attached");
    it->second->spec.rx_mode = mode;
    return ok();
}

Status FakeDataPlane::set_rate(const engine::VifId& id, std::optional<netif::RateLimit> rate) {
    calls_.rate.emplace_back(id, rate);
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, "not attached");
    it->second->spec.rate = rate;
    return ok();
}

Status FakeDataPlane::set_mcast_control(const engine::VifId& id, bool on) {
    calls_.mcast_control.emplace_back(id, on);
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, "not attached");
    it->second->spec.frontend.multicast_control = on;
    return ok();
}

std::vector<engine::VifStatus> FakeDataPlane::list() const {
    std::vector<engine::VifStatus> out;
    for (const auto& [id, v] : vifs_)
        out.push_back(*status(id));
    return out;
}

Result<engine::VifStatus> FakeDataPlane::status(const engine::VifId& id) const {
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, "not attached");
    engine::VifStatus s;
    s.id = id;
    s.rx_mode = it->second->spec.rx_mode;
    s.port = it->second->spec.port;
    s.rx_queue = it->second->spec.rx_queue;
    s.queues = static_cast<unsigned>(it->second->spec.frontend.queues.size());
    return s;
}

void FakeDataPlane::inject(engine::DataPlaneEvent ev) {
    events_.push_back(std::move(ev));
    const std::uint64_t one = 1;
    (void)!::write(event_fd_, &one, sizeof(one));
}

std::optional<engine::DataPlaneEvent> FakeDataPlane::next_event() {
    if (events_.empty()) return std::nullopt;
    std::uint64_t n = 0;
    (void)!::read(event_fd_, &n, sizeof(n)); // semaphore: one per event
    engine::DataPlaneEvent ev = std::move(events_.front());
    events_.pop_front();
    return ev;
}

std::optional<engine::VifSpec> FakeDataPlane::spec(const engine::VifId& id) const {
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return std::nullopt;
    return it->second->spec;
}

std::uint64_t FakeDataPlane::mapped_pages() const {
    return gt_ ? gt_->mapped_pages() : 0;
}

int FakeDataPlane::serve_fd() const {
    return ev_ ? ev_->fd() : -1;
}

void FakeDataPlane::serve() {
    if (!ev_) return;
    std::vector<hv::EvtchnPort> fired;
    for (;;) {
        auto port = ev_->pending();
        if (!port || !port->has_value()) break;
        fired.push_back(**port);
    }
    const netif::TxLimits limits;
    for (auto& [id, v] : vifs_) {
        for (Vif::Queue& q : v->queues) {
            bool answered = false;
            for (int round = 0; round < 64 && !q.dead; ++round) {
                const netif::RequestWindow w = q.tx.poll_requests();
                if (w.overflow) {
                    q.dead = true;
                    break;
                }
                if (w.available == 0) {
                    if (!q.tx.final_check_for_requests()) break;
                    continue;
                }
                netif::TxPacket pkt;
                const netif::TxParseResult r =
                    netif::parse_tx_packet(q.tx, w.cons, w.prod, limits, pkt);
                if (r.verdict == netif::TxVerdict::fatal) {
                    q.dead = true;
                    break;
                }
                if (r.verdict == netif::TxVerdict::empty) break;
                q.tx.consume(r.slots);
                const std::int16_t status =
                    r.verdict == netif::TxVerdict::drop ? netif::rsp::kError : netif::rsp::kOkay;
                if (put_tx_responses(q.tx, pkt, status)) {
                    answered = true;
                    ++tx_answered_;
                }
            }
            if (answered && q.tx.push_responses()) (void)ev_->notify(q.tx_port);
        }
    }
    for (hv::EvtchnPort p : fired)
        (void)ev_->unmask(p);
}

} // namespace dpnb::control::test
