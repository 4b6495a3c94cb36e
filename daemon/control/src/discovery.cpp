// From xenstore and the data plane to state-machine inputs: the watch on our backend folder
// (new vifs, removed vifs, online, hotplug-status, rate), one watch per frontend folder (its
// state), @releaseDomain (guests that died), and the data plane's own events.
#include <spdlog/spdlog.h>

#include <set>
#include <vector>

#include "impl.hpp"

namespace dpnb::control {

using netif::Input;
using netif::Phase;
using netif::XenbusState;

Status ControlPlane::Impl::handle_watch_events() {
    for (;;) {
        auto ev = xs_->read_watch();
        if (!ev) return std::move(ev).error();
        if (!ev->has_value()) return ok();
        count(ControlEvent::xenstore_events);
        handle_watch(**ev);
    }
}

void ControlPlane::Impl::handle_watch(const hv::XsWatchEvent& ev) {
    if (ev.token == kReleaseToken) {
        domains_changed();
        return;
    }
    if (ev.token.starts_with(kFrontendTokenPrefix)) {
        auto it = by_token_.find(ev.token);
        if (it == by_token_.end()) return; // an event after unwatch()
        auto v = vifs_.find(it->second);
        if (v != vifs_.end()) frontend_changed(*v->second);
        return;
    }
    if (ev.token != kRootToken) return;

    // A node at or below one vif's folder, or something above (a guest's folder, the root):
    // then only a scan tells what appeared or went.
    auto node = netif::parse_backend_node(ev.path);
    if (!node || node->vif.backend != self_) {
        scan();
        return;
    }
    const engine::VifId id{node->vif.frontend, node->vif.handle};
    auto it = vifs_.find(id);
    if (it == vifs_.end()) {
        auto present = exists(netif::format_backend_path(node->vif));
        if (present && *present) discover(node->vif);
        return;
    }
    backend_changed(*it->second, node->key);
}

void ControlPlane::Impl::scan() {
    std::set<engine::VifId> seen;
    std::vector<netif::BackendPath> found;
    auto guests = xs_->directory(hv::kNoTxn, root_);
    if (!guests && guests.error().code != Errc::not_found) {
        count(ControlError::xenstore);
        log_xenstore_failure("control", "listing " + root_, guests.error());
        return;
    }
    if (guests) {
        for (const std::string& g : *guests) {
            const std::string guest_folder = root_ + "/" + g;
            auto handles = xs_->directory(hv::kNoTxn, guest_folder);
            if (!handles) {
                if (handles.error().code != Errc::not_found) {
                    count(ControlError::xenstore);
                    log_xenstore_failure("control", "listing " + guest_folder, handles.error());
                    return; // do not take a folder we could not list for a removed one
                }
                continue;
            }
            for (const std::string& h : *handles) {
                auto path = netif::parse_backend_path(guest_folder + "/" + h);
                if (!path) {
                    spdlog::debug("control: ignoring {}/{}: {}", guest_folder, h,
                                  path.error().message);
                    continue;
                }
                seen.insert({path->frontend, path->handle});
                found.push_back(*path);
            }
        }
    }
    for (const netif::BackendPath& p : found)
        if (!vifs_.contains({p.frontend, p.handle})) discover(p);
    std::vector<engine::VifId> gone;
    for (const auto& [id, v] : vifs_)
        if (!seen.contains(id)) gone.push_back(id);
    for (const engine::VifId& id : gone)
        if (auto it = vifs_.find(id); it != vifs_.end()) folder_gone(*it->second);
}

void ControlPlane::Impl::discover(const netif::BackendPath& path) {
    const engine::VifId id{path.frontend, path.handle};
    if (vifs_.contains(id)) return;
    auto owned = std::make_unique<Vif>();
    Vif& v = *owned;
    v.id = id;
    v.path = path;
    v.name = engine::to_string(id);
    v.backend = netif::format_backend_path(path);
    v.fe_token = std::string(kFrontendTokenPrefix) + std::to_string(id.dom) + "/" +
                 std::to_string(id.handle);
    if (auto name = hv_.domains().name(id.dom); name) v.domain_name = *name;
    vifs_.emplace(id, std::move(owned));
    count(ControlEvent::vifs_discovered);
    spdlog::info("control: {}: found {}{}{}", v.name, v.backend,
                 v.domain_name.empty() ? "" : ", guest ", v.domain_name);

    if (!load_toolstack(v)) return;
    if (stopped_) return; // shutdown() ran: listed, not served
    if (options_.serve == VifSelection::all || adopted_before(v)) {
        v.adopted = true;
        serve(v);
    } else {
        v.role = VifRole::unadopted;
        spdlog::info("control: {}: left alone until adopted (vif selection adopted-only)", v.name);
    }
}

// adopted-only: a folder an earlier daemon adopted carries our marker (adopt() writes it,
// release() removes it, the toolstack removes it with the folder). Serve it again, so that a
// restart (crash, upgrade, watchdog) does not leave running guests unserved. The marker is
// ours alone: a vif another backend serves (hotplug-status = connected written by its own
// script) is still left alone. The attach's overrides (RX mode, queue, MAC) are not kept
// across the restart: [[vifs.rule]] is the place for options that must survive one.
bool ControlPlane::Impl::adopted_before(const Vif& v) {
    auto raw = read_opt(v.backend, kAdoptedKey);
    if (!raw || !*raw || **raw != "1") return false;
    spdlog::info("control: {}: adopted by an earlier daemon ({}), serving it again", v.name,
                 kAdoptedKey);
    return true;
}

void ControlPlane::Impl::mark_adopted(Vif& v, bool adopted) {
    const std::string node = v.backend + "/" + std::string(kAdoptedKey);
    Status st = adopted ? xs_->write(hv::kNoTxn, node, "1") : xs_->rm(hv::kNoTxn, node);
    if (!st && st.error().code != Errc::not_found) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, (adopted ? "writing " : "removing ") + node, st.error());
    }
}

// The toolstack's keys, in one transaction. A folder whose keys do not parse is not served
// (its frontend path, MAC or handle cannot be trusted) until the toolstack rewrites them; the
// reason goes to the error node, where libxl's user looks for it.
Status ControlPlane::Impl::load_toolstack(Vif& v) {
    std::optional<Result<netif::ToolstackConfig>> tc;
    Status st = hv::run_transaction(*xs_, [&](hv::XsTxn t) -> Status {
        tc.emplace(netif::parse_toolstack_config(reader(t, v.backend), v.path));
        return ok();
    });
    if (!st) {
        fail(v, ControlError::xenstore, st.error());
        return st;
    }
    if (!*tc) {
        Error e = std::move(*tc).error();
        e.message = v.backend + ": " + e.message;
        const bool same = v.role == VifRole::rejected && v.last_error == e.describe();
        if (!same) {
            fail(v, ControlError::toolstack_config, e);
            write_error_node(v, e);
        }
        v.role = VifRole::rejected;
        return e;
    }
    v.toolstack = std::move(**tc);
    v.frontend = netif::format_frontend_path(v.toolstack.frontend);
    if (v.role == VifRole::rejected) {
        v.role = VifRole::unadopted;
        if (v.error_node_written) remove_error_node(v);
    }
    return ok();
}

void ControlPlane::Impl::serve(Vif& v) {
    if (v.role == VifRole::served || v.role == VifRole::rejected) return;
    auto ds = hv_.domains().state(v.id.dom);
    if ((!ds && ds.error().code == Errc::not_found) || (ds && (!ds->exists || ds->dying))) {
        spdlog::info("control: {}: guest {} is gone; not served", v.name, v.id.dom);
        v.role = VifRole::forgotten;
        return;
    }
    if (!ds) spdlog::warn("control: {}: domain {}: {}", v.name, v.id.dom, ds.error().describe());
    v.role = VifRole::served;
    v.sm.emplace();
    v.detach_raised = false;
    v.hotplug_failed_logged = false;
    v.pending_error.reset();

    // A frontend that is already Connected to rings an earlier daemon served (docs/xenbus.md,
    // "daemon restart"): attach to them where they are. The backend state tells that an
    // earlier backend got that far (InitWait with a Connected frontend: Connected was held
    // for the hotplug script, the data path may have run already).
    auto be_state = read_opt(v.backend, netif::key::kState);
    auto fe_state = read_opt(v.frontend, netif::key::kState);
    if (be_state && fe_state && *be_state && *fe_state) {
        auto b = netif::parse_xenbus_state(**be_state, "state");
        auto f = netif::parse_xenbus_state(**fe_state, "state");
        if (b && f && *f == XenbusState::connected &&
            (*b == XenbusState::connected || *b == XenbusState::reconfigured ||
             *b == XenbusState::init_wait)) {
            v.resume = true;
            spdlog::info("control: {}: frontend Connected, backend was {}: re-attaching to its "
                         "running rings",
                         v.name, netif::to_string(*b));
        }
    }

    if (Status st = xs_->watch(v.frontend, v.fe_token); st) {
        v.watching_frontend = true;
        by_token_[v.fe_token] = v.id;
    } else {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "watching " + v.frontend, st.error());
    }

    if (options_.hotplug == HotplugWait::never) feed(v, Input::hotplug_ready);
    // A vif the toolstack is removing already: Closed at once, nothing offered.
    if (auto online = read_opt(v.backend, netif::key::kOnline); online && *online) {
        auto on = netif::parse_bool(**online, netif::key::kOnline);
        if (on && !*on) {
            v.detach_raised = true;
            feed(v, Input::detach);
            return;
        }
    }
    feed(v, Input::probe);
    read_hotplug_status(v);
    frontend_changed(v);
}

void ControlPlane::Impl::backend_changed(Vif& v, std::string_view key) {
    if (key.empty()) {
        auto present = exists(v.backend);
        if (present && !*present) {
            folder_gone(v);
            return;
        }
    }
    if (v.role == VifRole::rejected) {
        // The toolstack may be fixing its keys.
        if (key == netif::key::kState) return;
        if (load_toolstack(v) && !stopped_ && (options_.serve == VifSelection::all || v.adopted))
            serve(v);
        return;
    }
    if (v.role != VifRole::served) return;
    if (key == netif::key::kOnline)
        read_online(v);
    else if (key == netif::key::kHotplugStatus)
        read_hotplug_status(v);
    else if (key == netif::key::kRate)
        read_rate(v);
    // Anything else is ours (state, features) or read when the vif connects.
}

void ControlPlane::Impl::folder_gone(Vif& v) {
    spdlog::info("control: {}: backend folder removed", v.name);
    if (v.role == VifRole::served) feed(v, Input::backend_removed); // forgets it
    if (v.error_node_written) remove_error_node(v);
    const engine::VifId id = v.id;
    vifs_.erase(id); // `v` is gone
}

void ControlPlane::Impl::read_online(Vif& v) {
    auto raw = read_opt(v.backend, netif::key::kOnline);
    if (!raw) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "reading online", raw.error());
        return;
    }
    if (!*raw) return; // absent: Linux reads it only to decide on removal
    auto on = netif::parse_bool(**raw, netif::key::kOnline);
    if (!on) {
        Error e = std::move(on).error();
        e.message = v.backend + ": " + e.message;
        fail(v, ControlError::toolstack_config, e);
        return;
    }
    if (!*on && !v.detach_raised) {
        v.detach_raised = true;
        feed(v, Input::detach);
    }
}

void ControlPlane::Impl::read_hotplug_status(Vif& v) {
    if (options_.hotplug == HotplugWait::never || !v.sm || v.sm->hotplug_ready()) return;
    auto raw = read_opt(v.backend, netif::key::kHotplugStatus);
    if (!raw) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "reading hotplug-status", raw.error());
        return;
    }
    if (!*raw) {
        if (options_.hotplug == HotplugWait::if_present) feed(v, Input::hotplug_ready);
        return;
    }
    // "" is pending: libxl (since Xen 4.16) writes it when it creates the vif, so that the
    // backend holds Connected until its script writes "connected".
    auto status = netif::parse_hotplug_status(*raw);
    if (!status) {
        Error e = std::move(status).error();
        e.message = v.backend + ": " + e.message;
        fail(v, ControlError::toolstack_config, e);
        return;
    }
    switch (*status) {
    case netif::HotplugStatus::pending:
        break;
    case netif::HotplugStatus::connected:
        feed(v, Input::hotplug_ready);
        break;
    case netif::HotplugStatus::failed:
        if (!v.hotplug_failed_logged) {
            v.hotplug_failed_logged = true;
            fail(v, ControlError::hotplug_script,
                 make_error(Errc::io, "the hotplug script failed (hotplug-status = error); "
                                      "Connected stays held, the toolstack removes the vif"));
        }
        break;
    }
}

void ControlPlane::Impl::read_rate(Vif& v) {
    if (!v.attached) return; // read when it connects
    auto raw = read_opt(v.backend, netif::key::kRate);
    if (!raw) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "reading rate", raw.error());
        return;
    }
    std::optional<netif::RateLimit> rate;
    if (*raw) {
        auto parsed = netif::parse_rate(**raw, netif::key::kRate);
        if (!parsed) {
            Error e = std::move(parsed).error();
            e.message = v.backend + ": " + e.message;
            fail(v, ControlError::toolstack_config, e);
            return;
        }
        rate = *parsed;
    }
    if (rate == v.attached->rate) return;
    if (Status st = dp_.set_rate(v.id, rate); !st) {
        fail(v, ControlError::reconfigure, st.error());
        return;
    }
    v.attached->rate = rate;
    spdlog::info("control: {}: rate {}", v.name,
                 rate ? std::to_string(rate->bytes) + " bytes per " + std::to_string(rate->usec) +
                            " us"
                      : std::string("unlimited"));
}

void ControlPlane::Impl::frontend_changed(Vif& v) {
    if (v.role != VifRole::served || !v.sm) return;
    auto raw = read_opt(v.frontend, netif::key::kState);
    if (!raw) {
        count(ControlError::xenstore);
        log_xenstore_failure(v.name, "reading the frontend state", raw.error());
        return;
    }
    if (*raw && v.attached) read_mcast_control(v);
    Input in = Input::frontend_unknown;
    if (!*raw) {
        // The frontend folder went. When that is because the guest died (its home is removed
        // with it), @releaseDomain may still be queued behind this event: the guest is gone,
        // not closing, and nothing should be written for it.
        auto ds = hv_.domains().state(v.id.dom);
        if ((!ds && ds.error().code == Errc::not_found) || (ds && (!ds->exists || ds->dying))) {
            spdlog::info("control: {}: frontend folder gone with its domain", v.name);
            feed(v, Input::domain_gone);
            return;
        }
    } else {
        auto s = netif::parse_xenbus_state(**raw, v.frontend + "/state");
        if (s) {
            in = netif::frontend_input(*s);
        } else {
            // The same garbage again (the frontend wrote another key) is nothing new.
            if (v.sm->last_frontend_input() == Input::frontend_invalid &&
                v.invalid_frontend_state == **raw)
                return;
            v.invalid_frontend_state = **raw;
            in = Input::frontend_invalid;
            Error e = std::move(s).error();
            e.code = Errc::protocol;
            fail(v, ControlError::frontend_state, e);
            v.pending_error = std::move(e);
        }
    }
    // The state is a level: an event that did not change it (another key of the folder,
    // a spurious firing) is nothing new.
    if (in != Input::frontend_invalid && v.sm->last_frontend_input() == in) return;
    feed(v, in);
}

void ControlPlane::Impl::domains_changed() {
    std::set<netif::DomId> doms;
    for (const auto& [id, v] : vifs_)
        if (v->role == VifRole::served) doms.insert(id.dom);
    for (netif::DomId dom : doms) {
        auto ds = hv_.domains().state(dom);
        if (!ds && ds.error().code != Errc::not_found) {
            spdlog::warn("control: domain {}: {}", dom, ds.error().describe());
            continue;
        }
        if (ds && ds->exists && !ds->dying) continue;
        spdlog::info("control: domain {} is {}", dom, ds && ds->exists ? "dying" : "gone");
        for (auto& [id, v] : vifs_)
            if (id.dom == dom && v->role == VifRole::served) feed(*v, Input::domain_gone);
    }
}

void ControlPlane::Impl::handle_data_plane_events() {
    while (auto ev = dp_.next_event()) {
        count(ControlEvent::data_plane_events);
        auto it = vifs_.find(ev->vif);
        if (it == vifs_.end() || !it->second->attached) {
            spdlog::debug("control: {}: data-plane event for a vif not attached: {}",
                          engine::to_string(ev->vif), ev->detail);
            continue;
        }
        Vif& v = *it->second;
        switch (ev->kind) {
        case engine::DataPlaneEvent::Kind::vif_disabled: {
            // A fatal protocol error on a ring (Linux's xenvif_fatal_tx_err): the frontend is
            // closed as for any protocol error: detach, Closing with the error node, and it may
            // come back through Initialising.
            Error e = make_error(Errc::protocol, "the data plane disabled the vif: " + ev->detail);
            fail(v, ControlError::data_plane_disabled, e);
            v.pending_error = std::move(e);
            feed(v, Input::frontend_invalid);
            break;
        }
        case engine::DataPlaneEvent::Kind::mode_fallback:
            v.rx_mode_reason = ev->detail;
            spdlog::info("control: {}: rx mode fallback: {}", v.name, ev->detail);
            break;
        }
    }
}

} // namespace dpnb::control
