// TEST-ONLY reflector backend (reflector.hpp): control path over netback-core's feature and
// xenbus code, data path over netback-core's ring views, TX parser and RX builder.
#include "reflector.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>

#include "dpnb/hv/ctrl_requests.hpp"
#include "dpnb/hv/persistent_grant_table.hpp"
#include "dpnb/hv/sim.hpp"
#include "dpnb/netfront/ctrl_ring.hpp"
#include "dpnb/netfront/netfront.hpp"
#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/rx_builder.hpp"
#include "dpnb/netif/tx_parser.hpp"

namespace dpnb::netfront::test {

using namespace dpnb::netif;

struct Reflector::Queue {
    TxBackRing tx;
    RxBackRing rx;
    hv::GrantMapping tx_map, rx_map;
    hv::EvtchnPort tx_port = 0, rx_port = 0;
    struct Posted {
        std::uint16_t id;
        std::uint16_t pad;
        GrantRef gref;
        std::byte* page; // acquired through the translation table, else null
    };
    std::deque<Posted> posted;
    std::vector<std::byte> frame;
    RxFrame meta;
    bool pending = false;
    bool dead = false;
};

struct Reflector::Vif {
    BackendPath path;
    std::string be, fe;
    std::string fe_token;
    VifStateMachine sm;
    FrontendConfig cfg;
    bool connected = false;
    bool detached = false;
    bool forget = false;
    bool present = true; // the backend folder exists
    std::vector<std::unique_ptr<Queue>> queues;
    std::unique_ptr<hv::TranslationTable> iott;
    std::unique_ptr<hv::PersistentGrantTable> pgt; // static grants, instead of `iott`
    hv::TranslationTableView view;
    ctrl::BackRing ctrl;
    hv::GrantMapping ctrl_map;
    hv::EvtchnPort ctrl_port = 0;
    bool ctrl_dead = false;
    std::unique_ptr<hv::CtrlRequests> ctrl_requests; // answers for the control ring
};

namespace {

constexpr std::string_view kRootToken = "reflector-root";

} // namespace

Reflector::Reflector(const ReflectorOptions& options) : options_(options) {}

Result<std::unique_ptr<Reflector>> Reflector::start(const std::string& sim_dir,
                                                    const ReflectorOptions& options) {
    ReflectorOptions o = options;
    if (o.static_grants) o.caps.ctrl_ring = o.caps.static_grants = true;
    std::unique_ptr<Reflector> r(new Reflector(o));
    if (Status st = r->init(sim_dir); !st) return st.error();
    return r;
}

Status Reflector::init(const std::string& sim_dir) {
    auto hv = hv::sim::connect_backend(sim_dir, options_.self);
    if (!hv) return std::move(hv).error();
    hv_ = std::move(*hv);
    auto xs = hv_->open_xenstore();
    if (!xs) return std::move(xs).error();
    xs_ = std::move(*xs);
    auto gt = hv_->open_grant_table();
    if (!gt) return std::move(gt).error();
    gt_ = std::move(*gt);
    auto ev = hv_->open_event_channels();
    if (!ev) return std::move(ev).error();
    ev_ = std::move(*ev);
    auto home = xs_->domain_path(options_.self);
    if (!home) return std::move(home).error();
    vif_root_ = *home + "/backend/vif";
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return make_error(Errc::io, "epoll_create1", errno);
    for (int fd : {xs_->watch_fd(), ev_->fd()}) {
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = fd;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) != 0)
            return make_error(Errc::io, "epoll_ctl", errno);
    }
    return xs_->watch(vif_root_, kRootToken);
}

Reflector::~Reflector() {
    for (auto& [path, vif] : vifs_)
        apply(*vif, vif->sm.on(Input::shutdown));
    release_kept_mappings();
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

int Reflector::fd() const noexcept {
    return epoll_fd_;
}

void Reflector::release_kept_mappings() {
    for (hv::GrantMapping& m : kept_)
        (void)gt_->unmap(m);
    kept_.clear();
}

ReflectorStats Reflector::stats() const {
    ReflectorStats s{frames_, zero_copy_, grant_copied_, dropped_, 0, 0, 0, 0};
    for (const auto& [path, vif] : vifs_) {
        ++s.vifs;
        s.connected_vifs += vif->connected;
        for (const auto& q : vif->queues)
            for (const auto& p : q->posted)
                s.in_flight += p.page != nullptr;
        if (vif->pgt) s.static_entries += vif->pgt->valid_entries();
    }
    return s;
}

void Reflector::detach_all() {
    for (auto& [path, vif] : vifs_)
        if (!vif->detached) {
            vif->detached = true;
            apply(*vif, vif->sm.on(Input::detach));
        }
}

// --- control ----------------------------------------------------------------------------------

Status Reflector::scan() {
    std::vector<std::string> seen;
    auto guests = xs_->directory(hv::kNoTxn, vif_root_);
    if (guests) {
        for (const std::string& g : *guests) {
            auto handles = xs_->directory(hv::kNoTxn, vif_root_ + "/" + g);
            if (!handles) continue;
            for (const std::string& h : *handles)
                seen.push_back(vif_root_ + "/" + g + "/" + h);
        }
    }
    for (const std::string& be : seen) {
        if (vifs_.count(be)) continue;
        auto path = parse_backend_path(be);
        if (!path) continue;
        KeyReader reader = [&](std::string_view key) -> Result<std::optional<std::string>> {
            auto v = xs_->read(hv::kNoTxn, be + "/" + std::string(key));
            if (v) return std::optional<std::string>(*v);
            if (v.error().code == Errc::not_found) return std::optional<std::string>();
            return std::move(v).error();
        };
        auto tc = parse_toolstack_config(reader, *path);
        if (!tc) {
            spdlog::warn("reflector: {}: {}", be, tc.error().describe());
            continue;
        }
        auto vif = std::make_unique<Vif>();
        vif->path = *path;
        vif->be = be;
        vif->fe = format_frontend_path(tc->frontend);
        vif->fe_token = "reflector-fe:" + be;
        // We are the hotplug script too.
        (void)xs_->write(hv::kNoTxn, be + "/" + std::string(netif::key::kHotplugStatus),
                         "connected");
        Vif& v = *vif;
        vifs_.emplace(be, std::move(vif));
        apply(v, v.sm.on(Input::hotplug_ready));
        apply(v, v.sm.on(Input::probe));
        (void)xs_->watch(v.fe, v.fe_token);
    }
    for (auto& [be, vif] : vifs_)
        if (vif->present && std::find(seen.begin(), seen.end(), be) == seen.end()) {
            vif->present = false;
            apply(*vif, vif->sm.on(Input::backend_removed));
        }
    return ok();
}

void Reflector::handle_vif_event(Vif& vif) {
    if (vif.forget) return;
    if (auto online = xs_->read(hv::kNoTxn, vif.be + "/online");
        online && *online == "0" && !vif.detached) {
        vif.detached = true;
        apply(vif, vif.sm.on(Input::detach));
    }
    Input in = Input::frontend_unknown;
    if (auto s = xs_->read(hv::kNoTxn, vif.fe + "/state"); s) {
        auto parsed = parse_xenbus_state(*s, "state");
        in = parsed ? frontend_input(*parsed) : Input::frontend_invalid;
    }
    apply(vif, vif.sm.on(in));
}

void Reflector::apply(Vif& vif, const Step& step) {
    for (const Effect& e : step.effects) {
        switch (e.action) {
        case Action::write_state:
            (void)xs_->write(hv::kNoTxn, vif.be + "/state", format_xenbus_state(e.state));
            break;
        case Action::publish_features: {
            auto entries = backend_feature_entries(options_.caps);
            if (entries)
                for (const XsEntry& x : *entries)
                    (void)xs_->write(hv::kNoTxn, vif.be + "/" + x.key, x.value);
            break;
        }
        case Action::connect_data_path: {
            Status st = connect(vif);
            if (!st) spdlog::warn("reflector: {}: connect: {}", vif.be, st.error().describe());
            apply(vif, vif.sm.on(st ? Input::connect_ok : Input::connect_failed));
            break;
        }
        case Action::disconnect_data_path:
            disconnect(vif);
            break;
        case Action::reconfigure_data_path:
            break;
        case Action::report_error:
            (void)xs_->write(hv::kNoTxn, format_backend_error_path(vif.path),
                             "71 frontend configuration rejected");
            break;
        case Action::forget:
            disconnect(vif);
            vif.forget = true;
            (void)xs_->unwatch(vif.fe, vif.fe_token);
            break;
        }
    }
}

Status Reflector::connect(Vif& vif) {
    disconnect(vif);
    Status parsed = hv::run_transaction(*xs_, [&](hv::XsTxn t) -> Status {
        KeyReader reader = [&](std::string_view key) -> Result<std::optional<std::string>> {
            auto v = xs_->read(t, vif.fe + "/" + std::string(key));
            if (v) return std::optional<std::string>(*v);
            if (v.error().code == Errc::not_found) return std::optional<std::string>();
            return std::move(v).error();
        };
        auto cfg = parse_frontend_config(reader, options_.caps);
        if (!cfg) return cfg.error();
        vif.cfg = *cfg;
        return ok();
    });
    if (!parsed) return parsed;

    const DomId guest = vif.path.frontend;
    for (const QueueConfig& qc : vif.cfg.queues) {
        auto q = std::make_unique<Queue>();
        for (int r = 0; r < 2; ++r) {
            const hv::GrantMapRequest req{guest, r == 0 ? qc.tx_ring_ref : qc.rx_ring_ref, true};
            std::int16_t status = 0;
            hv::GrantMapping m = gt_->map(std::span(&req, 1), std::span(&status, 1));
            if (!m) {
                vif.queues.push_back(std::move(q));
                disconnect(vif);
                return make_error(Errc::permission_denied, "mapping ring grant " +
                                                               std::to_string(req.ref) +
                                                               ": GNTST " + std::to_string(status));
            }
            (r == 0 ? q->tx_map : q->rx_map) = m;
        }
        auto tx = TxBackRing::attach(q->tx_map.base);
        auto rx = RxBackRing::attach(q->rx_map.base);
        if (!tx || !rx) {
            vif.queues.push_back(std::move(q));
            disconnect(vif);
            return make_error(Errc::protocol, "ring indices out of range");
        }
        q->tx = *tx;
        q->rx = *rx;
        auto tp = ev_->bind_interdomain(guest, qc.tx_evtchn);
        if (!tp) {
            vif.queues.push_back(std::move(q));
            disconnect(vif);
            return std::move(tp).error();
        }
        q->tx_port = q->rx_port = *tp;
        if (qc.split_event_channels) {
            auto rp = ev_->bind_interdomain(guest, qc.rx_evtchn);
            if (!rp) {
                vif.queues.push_back(std::move(q));
                disconnect(vif);
                return std::move(rp).error();
            }
            q->rx_port = *rp;
        }
        vif.queues.push_back(std::move(q));
    }
    if (vif.cfg.ctrl_ring) {
        const hv::GrantMapRequest req{guest, vif.cfg.ctrl_ring->ring_ref, true};
        std::int16_t status = 0;
        vif.ctrl_map = gt_->map(std::span(&req, 1), std::span(&status, 1));
        auto ring = vif.ctrl_map ? ctrl::BackRing::attach(vif.ctrl_map.base)
                                 : Result<ctrl::BackRing>(make_error(Errc::protocol, "map"));
        auto port = ring ? ev_->bind_interdomain(guest, vif.cfg.ctrl_ring->evtchn)
                         : Result<hv::EvtchnPort>(ring.error());
        if (!port) {
            disconnect(vif);
            return make_error(Errc::protocol, "control ring: " + port.error().describe());
        }
        vif.ctrl = *ring;
        vif.ctrl_port = *port;
        vif.ctrl_dead = false;
    }
    if (vif.cfg.static_grants) {
        auto mapper = hv_->open_grant_table();
        if (!mapper) {
            disconnect(vif);
            return std::move(mapper).error();
        }
        auto t = hv::PersistentGrantTable::create(std::move(*mapper), guest,
                                                  hv::PersistentGrantLimits{});
        if (!t) {
            disconnect(vif);
            return std::move(t).error();
        }
        vif.pgt = std::move(*t);
        vif.view = vif.pgt->view();
    } else if (options_.use_translation_table) {
        auto t = hv_->open_translation_table(guest);
        if (t) {
            vif.iott = std::move(*t);
            vif.view = vif.iott->view();
        }
    }
    if (vif.ctrl.attached())
        vif.ctrl_requests = std::make_unique<hv::CtrlRequests>(
            *gt_, guest, vif.pgt.get(), static_cast<std::uint32_t>(vif.queues.size()));
    vif.connected = true;
    for (auto& q : vif.queues) { // anything posted before we attached
        (void)q->rx.final_check_for_requests();
        (void)q->tx.final_check_for_requests();
    }
    if (vif.ctrl.attached()) (void)vif.ctrl.final_check_for_requests();
    return ok();
}

void Reflector::disconnect(Vif& vif) {
    for (auto& q : vif.queues) {
        for (const auto& p : q->posted)
            if (p.page != nullptr) vif.view.release(p.gref);
        q->posted.clear();
        if (q->tx_port != 0) (void)ev_->unbind(q->tx_port);
        if (q->rx_port != 0 && q->rx_port != q->tx_port) (void)ev_->unbind(q->rx_port);
        if (q->tx_map) (void)gt_->unmap(q->tx_map);
        if (q->rx_map) (void)gt_->unmap(q->rx_map);
    }
    vif.queues.clear();
    if (vif.pgt) (void)vif.pgt->close(); // nothing is in flight any more
    vif.ctrl_requests.reset();
    vif.pgt.reset();
    if (vif.ctrl_port != 0) (void)ev_->unbind(vif.ctrl_port);
    vif.ctrl_port = 0;
    if (vif.ctrl_map) (void)gt_->unmap(vif.ctrl_map);
    vif.ctrl = {};
    vif.iott.reset();
    vif.view = {};
    vif.connected = false;
}

// docs/protocol.md: every message answered through netback-core's ctrl::Handler, as the
// daemon's engine does (hv::CtrlRequests), static grants over the persistent-grant table.
void Reflector::serve_ctrl(Vif& vif) {
    if (!vif.ctrl.attached() || vif.ctrl_dead || !vif.ctrl_requests) return;
    bool answered = false;
    for (int round = 0; round < 16; ++round) {
        const RequestWindow w = vif.ctrl.poll_requests();
        if (w.overflow) {
            vif.ctrl_dead = true;
            return;
        }
        for (std::uint32_t k = 0; k < w.available; ++k) {
            const ctrl::Request req = vif.ctrl.copy_request(w.cons + k);
            vif.ctrl.consume(1);
            ctrl::Response rsp = vif.ctrl_requests->answer(req).rsp;
            if (!mischief_done_ && options_.mischief == Mischief::ctrl_bad_id &&
                req.type == ctrl::kTypeAddGrefMapping) {
                rsp.id = static_cast<std::uint16_t>(rsp.id + 0x55);
                mischief_done_ = true;
            }
            const bool put = vif.ctrl.put_response(rsp);
            (void)put;
            answered = true;
        }
        if (w.available != 0) continue;
        if (!vif.ctrl.final_check_for_requests()) break;
    }
    if (answered && vif.ctrl.push_responses()) (void)ev_->notify(vif.ctrl_port);
}

// --- data path -------------------------------------------------------------------------------

bool Reflector::deliver(Vif& vif, Queue& q) {
    const RxFeatures features{vif.cfg.gso_tcpv4, vif.cfg.gso_tcpv6};
    const RxBufferLayout layout{vif.cfg.rx_buffer_offset, vif.cfg.rx_buffer_size, 0};
    const std::uint16_t size = vif.cfg.rx_buffer_size;
    const RxPlan plan = plan_rx_frame(q.meta, rx_uniform_geometry(layout), features);
    if (plan.error != RxBuildError::none) {
        q.pending = false;
        ++dropped_;
        return true;
    }
    const bool mischief =
        !mischief_done_ && options_.mischief != Mischief::none && frames_ >= options_.mischief_at;
    const bool bad_extra = mischief && options_.mischief == Mischief::rx_bad_extra &&
                           plan.data_slots == 1 && plan.extras() == 0;
    const std::uint32_t needed = plan.requests + (bad_extra ? 1U : 0U);
    if (q.posted.size() < needed) return false;

    std::vector<std::uint16_t> ids;
    std::vector<RxChunk> chunks;
    std::vector<hv::GrantCopySegment> segs;
    std::vector<std::uint32_t> data_req; // index into posted of each chunk
    for (std::uint32_t k = 0; k < plan.requests; ++k)
        ids.push_back(q.posted[k].id);
    bool bad_request = false;
    std::uint32_t pos = 0;
    for (std::uint32_t c = 0; c < plan.data_slots; ++c) {
        const std::uint32_t r = c == 0 ? 0 : c + plan.extras();
        const auto& p = q.posted[r];
        const auto buffer = rx_request_buffer(layout, p.pad);
        if (!buffer) bad_request = true;
        const std::uint16_t off = buffer ? buffer->offset : 0;
        const std::uint32_t len = std::min<std::uint32_t>(q.meta.len - pos, size);
        chunks.push_back(RxChunk{off, static_cast<std::uint16_t>(len)});
        data_req.push_back(r);
        pos += len;
    }
    bool copy_ok = !bad_request;
    if (copy_ok) {
        // A buffer posted before its page was registered (static grants are registered
        // asynchronously) may be registered by now: look it up again.
        for (std::size_t c = 0; c < chunks.size(); ++c) {
            auto& p = q.posted[data_req[c]];
            if (p.page == nullptr && vif.view.entries != nullptr)
                p.page = vif.view.acquire(p.gref, true);
        }
        pos = 0;
        for (std::size_t c = 0; c < chunks.size(); ++c) {
            const auto& p = q.posted[data_req[c]];
            if (p.page != nullptr) {
                std::memcpy(p.page + chunks[c].offset, q.frame.data() + pos, chunks[c].len);
                ++zero_copy_;
            } else {
                segs.push_back(hv::GrantCopySegment::to_guest(q.frame.data() + pos,
                                                              vif.path.frontend, p.gref,
                                                              chunks[c].offset, chunks[c].len));
                ++grant_copied_;
            }
            pos += chunks[c].len;
        }
        if (!segs.empty()) {
            if (Status st = gt_->copy(segs); !st) copy_ok = false;
            for (const auto& s : segs)
                copy_ok = copy_ok && s.status == gntst::kOkay;
        }
    }
    if (mischief && options_.mischief == Mischief::rx_keep_mapping && q.posted[0].page == nullptr) {
        const hv::GrantMapRequest req{vif.path.frontend, q.posted[0].gref, true};
        std::int16_t status = 0;
        hv::GrantMapping m = gt_->map(std::span(&req, 1), std::span(&status, 1));
        if (m) kept_.push_back(m);
    }
    // The buffers leave our hands before the frontend hears about them.
    for (std::uint32_t k = 0; k < needed; ++k)
        if (q.posted[k].page != nullptr) vif.view.release(q.posted[k].gref);

    std::vector<RxEntry> out(needed);
    RxBuildResult built;
    if (!copy_ok || (mischief && options_.mischief == Mischief::rx_error_status))
        built = build_rx_error_responses(ids, rsp::kError, out);
    else
        built = build_rx_responses(q.meta, ids, chunks, features, out);
    out.resize(built.entries);
    if (mischief) {
        RxEntry& first = out.front();
        switch (options_.mischief) {
        case Mischief::rx_offset_overflow:
            first.rsp.offset = static_cast<std::uint16_t>(chunks[0].offset + size - 10);
            break;
        case Mischief::rx_bad_id:
            first.rsp.id ^= 1;
            break;
        case Mischief::rx_incomplete:
            out.back().rsp.flags |= rxf::kMoreData;
            break;
        case Mischief::rx_bad_extra:
            if (bad_extra) {
                first.rsp.flags |= rxf::kExtraInfo;
                RxEntry extra;
                extra.kind = RxEntry::Kind::extra;
                extra.extra.type = 0x7F;
                out.insert(out.begin() + 1, extra);
            }
            break;
        default:
            break;
        }
    }
    const bool put = put_rx_entries(q.rx, out);
    (void)put;
    bool notify = q.rx.push_responses();
    if (mischief && options_.mischief == Mischief::rx_prod_overflow) {
        std::atomic_ref<RingIdx>(reinterpret_cast<SharedRingHeader*>(q.rx_map.base)->rsp_prod)
            .fetch_add(300, std::memory_order_release);
        notify = true;
    }
    if (notify) (void)ev_->notify(q.rx_port);
    if (mischief && (options_.mischief != Mischief::rx_bad_extra || bad_extra) &&
        options_.mischief != Mischief::tx_bad_id && options_.mischief != Mischief::tx_bad_status &&
        options_.mischief != Mischief::ctrl_bad_id)
        mischief_done_ = true;
    q.posted.erase(q.posted.begin(), q.posted.begin() + needed);
    q.pending = false;
    ++frames_;
    return true;
}

void Reflector::run_queue(Vif& vif, Queue& q) {
    const TxLimits limits;
    for (int round = 0; round < 64 && !q.dead; ++round) {
        // The control ring between rounds, as dpnetback's control thread serves it beside the
        // data path: a registration never waits for the traffic to pause.
        serve_ctrl(vif);
        bool progress = false;
        const RequestWindow rw = q.rx.poll_requests();
        if (rw.overflow) {
            q.dead = true;
            return;
        }
        for (std::uint32_t k = 0; k < rw.available; ++k) {
            const RxRequest req = q.rx.copy_request(rw.cons + k);
            std::byte* page =
                vif.view.entries != nullptr ? vif.view.acquire(req.gref, true) : nullptr;
            q.posted.push_back({req.id, req.pad, req.gref, page});
        }
        q.rx.consume(rw.available);
        progress = rw.available != 0;

        if (q.pending && deliver(vif, q)) progress = true;
        bool answered = false;
        while (!q.pending) {
            const RequestWindow tw = q.tx.poll_requests();
            if (tw.overflow) {
                q.dead = true;
                return;
            }
            if (tw.available == 0) break;
            TxPacket pkt;
            const TxParseResult r = parse_tx_packet(q.tx, tw.cons, tw.prod, limits, pkt);
            if (r.verdict == TxVerdict::fatal) {
                spdlog::warn("reflector: {}: fatal TX: {}", vif.be, to_string(r.error));
                q.dead = true;
                return;
            }
            if (r.verdict == TxVerdict::empty) break;
            q.tx.consume(r.slots);
            progress = answered = true;
            std::int16_t status = rsp::kOkay;
            if (r.verdict == TxVerdict::drop) {
                status = rsp::kError;
                ++dropped_;
            } else if (r.verdict == TxVerdict::packet) {
                q.frame.resize(pkt.total_len);
                std::vector<hv::GrantCopySegment> segs;
                std::uint32_t pos = 0;
                for (std::uint16_t s = 0; s < pkt.nr_slots; ++s) {
                    if (pkt.slots[s].len == 0) continue;
                    segs.push_back(hv::GrantCopySegment::from_guest(
                        vif.path.frontend, pkt.slots[s].gref, pkt.slots[s].offset,
                        q.frame.data() + pos, pkt.slots[s].len));
                    pos += pkt.slots[s].len;
                }
                bool copied = static_cast<bool>(gt_->copy(segs));
                for (const auto& s : segs)
                    copied = copied && s.status == gntst::kOkay;
                status = copied ? rsp::kOkay : rsp::kError;
                if (copied) {
                    q.meta = RxFrame{pkt.total_len, pkt.offload.csum_blank,
                                     pkt.offload.csum_blank || pkt.offload.data_validated,
                                     pkt.offload.gso_type, pkt.offload.gso_size};
                    q.pending = true;
                }
            }
            const bool mischief = !mischief_done_ && frames_ >= options_.mischief_at &&
                                  (options_.mischief == Mischief::tx_bad_id ||
                                   options_.mischief == Mischief::tx_bad_status) &&
                                  pkt.nr_slots == 1 && pkt.nr_extras == 0;
            if (mischief) {
                const TxResponse bad{
                    static_cast<std::uint16_t>(
                        options_.mischief == Mischief::tx_bad_id ? 999 : pkt.first_id()),
                    static_cast<std::int16_t>(options_.mischief == Mischief::tx_bad_id ? 0 : 7)};
                const bool put = q.tx.put_response(bad);
                (void)put;
                mischief_done_ = true;
            } else {
                const bool put = put_tx_responses(q.tx, pkt, status);
                (void)put;
            }
            if (q.pending) deliver(vif, q);
        }
        if (answered && q.tx.push_responses()) (void)ev_->notify(q.tx_port);
        if (progress) continue;
        // Nothing to do now: arm both rings (RING_FINAL_CHECK_FOR_REQUESTS) and stop unless
        // something arrived meanwhile.
        const bool rx_more = q.rx.final_check_for_requests();
        const bool tx_more = !q.pending && q.tx.final_check_for_requests();
        if (!rx_more && !tx_more) break;
    }
}

Status Reflector::poll(std::chrono::milliseconds timeout) {
    if (timeout.count() > 0) {
        epoll_event events[4];
        (void)::epoll_wait(epoll_fd_, events, 4, static_cast<int>(timeout.count()));
    }
    bool xs_event = false;
    for (;;) {
        auto ev = xs_->read_watch();
        if (!ev) return std::move(ev).error();
        if (!ev->has_value()) break;
        xs_event = true;
    }
    if (xs_event) {
        if (Status st = scan(); !st) return st;
        for (auto& [be, vif] : vifs_)
            handle_vif_event(*vif);
    }
    std::vector<hv::EvtchnPort> fired;
    for (;;) {
        auto port = ev_->pending();
        if (!port) return std::move(port).error();
        if (!port->has_value()) break;
        fired.push_back(**port);
    }
    for (auto& [be, vif] : vifs_) {
        if (!vif->connected) continue;
        for (auto& q : vif->queues)
            run_queue(*vif, *q);
    }
    for (hv::EvtchnPort p : fired)
        (void)ev_->unmask(p);
    // A forgotten vif stays known (and ignored) until the toolstack removes its folder: only a
    // new folder is probed again.
    for (auto it = vifs_.begin(); it != vifs_.end();) {
        if (it->second->forget && !it->second->present)
            it = vifs_.erase(it);
        else
            ++it;
    }
    return ok();
}

} // namespace dpnb::netfront::test
