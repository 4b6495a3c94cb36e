// One vif's lifecycle: inputs go into its netif::VifStateMachine, and the effects the machine
// returns are performed here, in order: state writes, the feature keys, the data-plane
// attach (whose outcome is the next input), detach, reconfiguration, the error node and
// forgetting the vif.
#include <spdlog/spdlog.h>

#include <deque>

#include "impl.hpp"

namespace dpnb::control {

using netif::Action;
using netif::Input;
using netif::Phase;
using netif::XenbusState;

void ControlPlane::Impl::feed(Vif& v, Input first) {
    if (!v.sm) return;
    std::deque<Input> inputs{first};
    while (!inputs.empty()) {
        const Input in = inputs.front();
        inputs.pop_front();
        const netif::Step s = v.sm->on(in);
        log_step(v, s);
        bool wrote_connected = false;
        bool aborted = false;
        for (const netif::Effect& e : s.effects) {
            if (aborted) break;
            switch (e.action) {
            case Action::write_state:
                write_state(v, e.state);
                wrote_connected = wrote_connected || e.state == XenbusState::connected;
                break;
            case Action::publish_features:
                publish_features(v);
                break;
            case Action::connect_data_path:
                inputs.push_back(connect(v));
                break;
            case Action::disconnect_data_path:
                disconnect(v);
                break;
            case Action::reconfigure_data_path:
                // A reconfiguration that cannot be applied leaves a connected frontend with
                // a data path that does not match its keys: do not answer Reconfigured, close
                // it as a protocol error.
                if (!reconfigure(v)) {
                    inputs.push_back(Input::frontend_invalid);
                    aborted = true;
                }
                break;
            case Action::report_error:
                report_error(v, s);
                break;
            case Action::forget:
                forget(v);
                break;
            }
        }
        if (wrote_connected && (s.from == Phase::connecting || s.from == Phase::hotplug_wait)) {
            ++v.connects;
            count(ControlEvent::handshakes);
            if (v.error_node_written) remove_error_node(v); // the reason no longer holds
            spdlog::info("control: {}: connected ({} queue{}, rx mode {}, port {})", v.name,
                         v.attached ? v.attached->frontend.queues.size() : 0,
                         v.attached && v.attached->frontend.queues.size() == 1 ? "" : "s",
                         v.attached ? engine::to_string(v.attached->rx_mode) : "-",
                         v.attached ? v.attached->port : "-");
        }
    }
    // An error is reported by the step it was raised for, or not at all.
    v.pending_error.reset();
}

void ControlPlane::Impl::log_step(const Vif& v, const netif::Step& s) {
    const bool unexpected = (s.rule && s.rule->kind == netif::RuleKind::unexpected) ||
                            (s.replay_rule && s.replay_rule->kind == netif::RuleKind::unexpected);
    if (unexpected) {
        count(ControlError::unexpected);
        spdlog::error("control: {}: unexpected transition (a dpnetback bug): {}", v.name,
                      describe(s));
    } else if (!s.effects.empty() || s.from != s.to) {
        spdlog::info("control: {}: {}", v.name, describe(s));
    } else {
        spdlog::debug("control: {}: {}", v.name, describe(s));
    }
}

void ControlPlane::Impl::write_state(Vif& v, XenbusState s) {
    auto written = write_if_present(v.backend, {netif::XsEntry{std::string(netif::key::kState),
                                                               netif::format_xenbus_state(s)}});
    if (!written) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, std::string("writing state ") + netif::to_string(s),
                             written.error());
    } else if (!*written) {
        spdlog::debug("control: {}: backend folder gone, state {} not written", v.name,
                      netif::to_string(s));
    }
}

void ControlPlane::Impl::publish_features(Vif& v) {
    auto entries = netif::backend_feature_entries(options_.capabilities);
    if (!entries) { // validated at create(): cannot happen
        count(ControlError::unexpected);
        spdlog::error("control: {}: backend features: {}", v.name, entries.error().describe());
        return;
    }
    auto written = write_if_present(v.backend, *entries);
    if (!written) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "writing the backend features", written.error());
    }
}

VifOverrides ControlPlane::Impl::effective_overrides(const Vif& v) const {
    VifOverrides o;
    for (const VifRule& r : options_.vif_rules) {
        if (r.domain_name && *r.domain_name != v.domain_name) continue;
        if (r.domid && *r.domid != v.id.dom) continue;
        if (r.handle && *r.handle != v.id.handle) continue;
        o.merge(r.set);
    }
    o.merge(v.overrides);
    return o;
}

namespace {

// Errors the parsers return for what a peer wrote, as opposed to errors of the store itself.
bool is_value_error(const Error& e) {
    return e.code == Errc::invalid_argument || e.code == Errc::protocol ||
           e.code == Errc::unsupported;
}

} // namespace

// Reads the toolstack's and the frontend's keys (each folder in one transaction), builds the
// VifSpec and attaches it. Every failure is reported here and answered with connect_failed.
Input ControlPlane::Impl::connect(Vif& v) {
    auto failed = [&](ControlError kind, Error e) {
        fail(v, kind, e);
        v.pending_error = std::move(e);
        return Input::connect_failed;
    };
    if (v.attached) { // the rules disconnect before they connect again; never both
        count(ControlError::unexpected);
        spdlog::error("control: {}: connect while attached (a dpnetback bug); detaching first",
                      v.name);
        disconnect(v);
    }

    std::optional<Result<netif::ToolstackConfig>> tc;
    Status st = hv::run_transaction(*xs_, [&](hv::XsTxn t) -> Status {
        tc.emplace(netif::parse_toolstack_config(reader(t, v.backend), v.path));
        return ok();
    });
    if (!st) return failed(ControlError::xenstore, std::move(st).error());
    if (!*tc) {
        Error e = std::move(*tc).error();
        e.message = v.backend + ": " + e.message;
        return failed(is_value_error(e) ? ControlError::toolstack_config : ControlError::xenstore,
                      std::move(e));
    }
    v.toolstack = std::move(**tc);

    std::optional<Result<netif::FrontendConfig>> fc;
    st = hv::run_transaction(*xs_, [&](hv::XsTxn t) -> Status {
        fc.emplace(netif::parse_frontend_config(reader(t, v.frontend), options_.capabilities));
        return ok();
    });
    if (!st) return failed(ControlError::xenstore, std::move(st).error());
    if (!*fc) {
        Error e = std::move(*fc).error();
        e.message = v.frontend + ": " + e.message;
        return failed(is_value_error(e) ? ControlError::frontend_config : ControlError::xenstore,
                      std::move(e));
    }

    const VifOverrides o = effective_overrides(v);
    engine::VifSpec spec;
    spec.id = v.id;
    spec.mac = o.mac.value_or(v.toolstack.mac);
    spec.rx_mode = o.rx_mode.value_or(options_.default_rx_mode);
    spec.port = o.port.value_or(options_.default_port);
    spec.rx_queue = o.rx_queue;
    spec.frontend = std::move(**fc);
    spec.rate = v.toolstack.rate;
    spec.ip = v.toolstack.ip;
    spec.resume = v.resume;

    if (Status a = dp_.attach(spec); !a) {
        Error e = std::move(a).error();
        e.message = "data plane attach: " + e.message;
        return failed(ControlError::attach, std::move(e));
    }
    count(ControlEvent::attaches);
    if (spec.resume) count(ControlEvent::resumed_attaches);
    spdlog::info("control: {}: attached to the data plane: {} queue{}{}, rx mode {}, port {}{}",
                 v.name, spec.frontend.queues.size(), spec.frontend.queues.size() == 1 ? "" : "s",
                 spec.frontend.queues.empty() || !spec.frontend.queues[0].split_event_channels
                     ? ""
                     : " (split event channels)",
                 engine::to_string(spec.rx_mode), spec.port,
                 spec.resume ? ", resuming running rings" : "");
    v.resume = false;
    v.rx_mode_reason.clear();
    v.attached = std::move(spec);
    return Input::connect_ok;
}

void ControlPlane::Impl::disconnect(Vif& v) {
    if (!v.attached) return;
    Status st = dp_.detach(v.id);
    v.attached.reset();
    count(ControlEvent::detaches);
    if (!st && st.error().code != Errc::not_found) {
        // The data plane keeps what it could not release; nothing the control plane can do
        // beyond saying so.
        fail(v, ControlError::detach, st.error());
        return;
    }
    spdlog::info("control: {}: detached from the data plane", v.name);
}

Status ControlPlane::Impl::reattach(Vif& v, engine::VifSpec spec, ControlError kind) {
    spec.resume = true; // the frontend keeps its rings: take them over where they are
    if (Status st = dp_.detach(v.id); !st && st.error().code != Errc::not_found) {
        Error e = std::move(st).error();
        e.message = "data plane detach: " + e.message;
        fail(v, kind, e);
        return e;
    }
    v.attached.reset();
    count(ControlEvent::detaches);
    if (Status st = dp_.attach(spec); !st) {
        Error e = std::move(st).error();
        e.message = "data plane attach: " + e.message;
        fail(v, kind, e);
        return e;
    }
    count(ControlEvent::attaches);
    count(ControlEvent::reattaches);
    spdlog::info("control: {}: attached again: rx mode {}, port {}, xdp headroom {}", v.name,
                 engine::to_string(spec.rx_mode), spec.port, spec.frontend.xdp_headroom);
    v.attached = std::move(spec);
    return ok();
}

// request-multicast-control after connect (feature-dynamic-multicast-control, as Linux's
// xen_mcast_ctrl_changed): the frontend turns its multicast filter on or off at any time.
void ControlPlane::Impl::read_mcast_control(Vif& v) {
    if (!options_.capabilities.dynamic_multicast_control) return; // sampled at connect only
    auto on = netif::read_multicast_control(reader(hv::kNoTxn, v.frontend), options_.capabilities);
    if (!on) {
        Error e = std::move(on).error();
        e.message = v.frontend + ": " + e.message;
        fail(v, is_value_error(e) ? ControlError::frontend_config : ControlError::xenstore, e);
        return;
    }
    if (*on == v.attached->frontend.multicast_control) return;
    if (Status st = dp_.set_mcast_control(v.id, *on); !st) {
        fail(v, ControlError::reconfigure, st.error());
        return;
    }
    v.attached->frontend.multicast_control = *on;
    spdlog::info("control: {}: multicast filter {}", v.name, *on ? "on" : "off");
}

// The frontend changed xdp-headroom (Reconfiguring). The data plane has no way to change a
// running vif's configuration, so the vif is attached again at its rings' positions, as a
// restarted daemon would.
bool ControlPlane::Impl::reconfigure(Vif& v) {
    auto headroom = netif::read_xdp_headroom(reader(hv::kNoTxn, v.frontend), options_.capabilities);
    if (!headroom) {
        Error e = std::move(headroom).error();
        e.message = v.frontend + ": " + e.message;
        fail(v, is_value_error(e) ? ControlError::frontend_config : ControlError::xenstore, e);
        v.pending_error = std::move(e);
        return false;
    }
    if (!v.attached || v.attached->frontend.xdp_headroom == *headroom) return true;
    engine::VifSpec spec = *v.attached;
    spec.frontend.xdp_headroom = *headroom;
    if (Status st = reattach(v, std::move(spec), ControlError::reconfigure); !st) {
        v.pending_error = std::move(st).error();
        return false;
    }
    return true;
}

void ControlPlane::Impl::report_error(Vif& v, const netif::Step& s) {
    Error e;
    if (v.pending_error) {
        e = *v.pending_error; // logged and counted where it was seen
    } else {
        // A protocol-error rule on a valid frontend state (InitWait or Reconfigured, which
        // only a backend writes).
        const auto fe = v.sm->last_frontend_input();
        const auto state = fe && netif::is_frontend_input(*fe)
                               ? netif::to_string(static_cast<XenbusState>(*fe))
                               : "invalid";
        e = make_error(Errc::protocol, v.frontend + "/state: the frontend wrote " +
                                           std::string(state) +
                                           ", which a frontend never writes (backend " +
                                           netif::to_string(s.from) + ")");
        fail(v, ControlError::frontend_state, e);
    }
    write_error_node(v, e);
}

void ControlPlane::Impl::forget(Vif& v) {
    if (v.attached) { // every rule that forgets a connected vif disconnects it first
        count(ControlError::unexpected);
        spdlog::error("control: {}: forgotten while attached (a dpnetback bug); detaching", v.name);
        disconnect(v);
    }
    if (v.watching_frontend) {
        (void)xs_->unwatch(v.frontend, v.fe_token); // late events are matched by token
        by_token_.erase(v.fe_token);
        v.watching_frontend = false;
    }
    v.role = VifRole::forgotten;
    v.adopted = false;
    count(ControlEvent::vifs_forgotten);
    spdlog::info("control: {}: forgotten", v.name);
}

void ControlPlane::Impl::fail(Vif& v, ControlError kind, const Error& e) {
    count(kind);
    v.last_error_kind = kind;
    v.last_error = e.describe();
    std::uint64_t suppressed = 0;
    if (!v.limiter.allow(Clock::now(), options_.error_log_burst, options_.error_log_interval,
                         suppressed))
        return;
    if (suppressed != 0)
        spdlog::warn("control: {}: {}: {} ({} earlier messages suppressed)", v.name,
                     to_string(kind), v.last_error, suppressed);
    else
        spdlog::warn("control: {}: {}: {}", v.name, to_string(kind), v.last_error);
}

bool LogLimiter::allow(Clock::time_point now, unsigned burst, std::chrono::milliseconds interval,
                       std::uint64_t& suppressed) noexcept {
    if (in_window_ == 0 || now - window_start_ >= interval) {
        window_start_ = now;
        in_window_ = 0;
    }
    if (in_window_ >= burst) {
        ++suppressed_;
        return false;
    }
    ++in_window_;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
}

} // namespace dpnb::control
