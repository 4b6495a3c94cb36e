// The toolstack's vif plumbing in xenstore, following libxl (Xen 4.17): which keys, in which
// order, with which permissions, and how a device is taken away again.
#include "dpnb/netfront/toolstack.hpp"

#include <poll.h>

#include <atomic>

#include "dpnb/netif/features.hpp"

namespace dpnb::netfront {
namespace {

using hv::XsPerm;
using hv::XsTxn;
using netif::XenbusState;

Status ignore_missing(Status st) {
    if (!st && st.error().code == Errc::not_found) return ok();
    return st;
}

// libxl__xs_path_cleanup: remove `path`, then each parent that has an empty value and no
// children left. Failures are ignored as libxl__device_destroy ignores them, except a failed
// transaction, which the commit reports.
void path_cleanup(hv::Xenstore& xs, XsTxn t, std::string path) {
    if (!xs.rm(t, path)) return;
    for (auto slash = path.rfind('/'); slash != std::string::npos && slash != 0;
         slash = path.rfind('/')) {
        path.resize(slash);
        auto value = xs.read(t, path);
        if (!value || !value->empty()) break;
        auto children = xs.directory(t, path);
        if (!children || !children->empty()) break;
        if (!xs.rm(t, path)) break;
    }
}

std::string dec(std::uint64_t v) {
    return std::to_string(v);
}

} // namespace

Result<VifPaths> vif_paths(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend,
                           std::uint32_t handle) {
    if (guest >= netif::kDomIdFirstReserved || backend >= netif::kDomIdFirstReserved)
        return make_error(Errc::invalid_argument, "bad domain id");
    if (handle > netif::kMaxVifHandle) return make_error(Errc::invalid_argument, "bad handle");
    auto guest_home = xs.domain_path(guest);
    if (!guest_home) return std::move(guest_home).error();
    auto backend_home = xs.domain_path(backend);
    if (!backend_home) return std::move(backend_home).error();
    VifPaths p;
    p.frontend = *guest_home + "/device/vif/" + dec(handle);
    p.backend = *backend_home + "/backend/vif/" + dec(guest) + "/" + dec(handle);
    p.libxl = "/libxl/" + dec(guest) + "/device/vif/" + dec(handle);
    return p;
}

VifEntries vif_entries(const VifConfig& c, const VifPaths&) {
    VifEntries e;
    const std::string mac = netif::format_mac(c.mac);
    // libxl__device_add_async
    e.backend = {{"frontend-id", dec(c.guest)},
                 {"online", "1"},
                 {"state", netif::format_xenbus_state(XenbusState::initialising)}};
    e.frontend = {{"backend-id", dec(c.backend)},
                  {"state", netif::format_xenbus_state(XenbusState::initialising)}};
    // libxl__set_xenstore_nic
    if (!c.script.empty()) e.backend.emplace_back("script", c.script);
    if (c.vifname) e.backend.emplace_back("vifname", *c.vifname);
    e.backend.emplace_back("mac", mac);
    if (c.ip) e.backend.emplace_back("ip", *c.ip);
    if (c.rate) e.backend.emplace_back("rate", dec(c.rate->bytes) + "," + dec(c.rate->usec));
    if (c.mtu != 1500) e.backend.emplace_back("mtu", dec(c.mtu));
    e.backend.emplace_back("bridge", c.bridge);
    e.backend.emplace_back("handle", dec(c.handle));
    e.backend.emplace_back("type", c.type);
    e.frontend.emplace_back("handle", dec(c.handle));
    e.frontend.emplace_back("mac", mac);
    e.frontend_ro.emplace_back("mtu", dec(c.mtu));
    if (c.empty_hotplug_status) e.backend.emplace_back("hotplug-status", "");
    e.frontend.emplace_back("trusted", c.trusted ? "1" : "0");
    return e;
}

Status add_vif(hv::Xenstore& xs, const VifConfig& c) {
    if (c.guest == c.backend)
        return make_error(Errc::invalid_argument, "a vif's backend is another domain");
    if (c.mac.is_multicast() || c.mac.is_zero())
        return make_error(Errc::invalid_argument, "vif MAC must be unicast and not zero");
    auto paths = vif_paths(xs, c.guest, c.backend, c.handle);
    if (!paths) return std::move(paths).error();
    const VifPaths& p = *paths;
    const VifEntries e = vif_entries(c, p);
    const std::vector<XsPerm> frontend_perms{{c.guest, XsPerm::none}, {c.backend, XsPerm::read}};
    const std::vector<XsPerm> backend_perms{{c.backend, XsPerm::none}, {c.guest, XsPerm::read}};
    const std::vector<XsPerm>& ro_frontend_perms = backend_perms;

    return hv::run_transaction(xs, [&](XsTxn t) -> Status {
        // libxl__device_exists: libxl's copy says whether the device is there.
        if (auto existing = xs.read(t, p.libxl); existing)
            return make_error(Errc::exists, "vif " + dec(c.handle) + " of domain " + dec(c.guest) +
                                                " already exists in xenstore");
        else if (existing.error().code != Errc::not_found)
            return existing.error();

        // libxl__device_generic_add
        if (Status st = ignore_missing(xs.rm(t, p.libxl)); !st) return st;
        if (Status st = xs.write(t, p.libxl + "/frontend", p.frontend); !st) return st;
        if (Status st = xs.write(t, p.libxl + "/backend", p.backend); !st) return st;

        if (Status st = ignore_missing(xs.rm(t, p.frontend)); !st) return st;
        if (Status st = xs.mkdir(t, p.frontend); !st) return st;
        if (Status st = xs.set_permissions(t, p.frontend, frontend_perms); !st) return st;
        if (Status st = xs.write(t, p.frontend + "/backend", p.backend); !st) return st;
        for (const auto& [key, value] : e.frontend) { // libxl__xs_writev_perms
            const std::string path = p.frontend + "/" + key;
            if (Status st = xs.write(t, path, value); !st) return st;
            if (Status st = xs.set_permissions(t, path, frontend_perms); !st) return st;
        }
        for (const auto& [key, value] : e.frontend_ro) {
            const std::string path = p.frontend + "/" + key;
            if (Status st = xs.write(t, path, value); !st) return st;
            if (Status st = xs.set_permissions(t, path, ro_frontend_perms); !st) return st;
        }

        if (Status st = ignore_missing(xs.rm(t, p.backend)); !st) return st;
        if (Status st = xs.mkdir(t, p.backend); !st) return st;
        if (Status st = xs.set_permissions(t, p.backend, backend_perms); !st) return st;
        if (Status st = xs.write(t, p.backend + "/frontend", p.frontend); !st) return st;
        for (const auto& [key, value] : e.backend) // libxl__xs_writev: the folder's perms
            if (Status st = xs.write(t, p.backend + "/" + key, value); !st) return st;
        // libxl keeps a copy of the backend keys so that it need not trust the backend.
        for (const auto& [key, value] : e.backend)
            if (Status st = xs.write(t, p.libxl + "/" + key, value); !st) return st;
        return ok();
    });
}

Status request_vif_removal(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend,
                           std::uint32_t handle) {
    auto paths = vif_paths(xs, guest, backend, handle);
    if (!paths) return std::move(paths).error();
    const std::string state_path = paths->backend + "/state";
    return hv::run_transaction(xs, [&](XsTxn t) -> Status {
        auto state = xs.read(t, state_path);
        if (!state) {
            if (state.error().code == Errc::not_found)
                return make_error(Errc::not_found, "backend " + paths->backend + " is gone");
            return state.error();
        }
        if (Status st = xs.write(t, paths->backend + "/online", "0"); !st) return st;
        // libxl compares atoi(state) with Closed: anything else, garbage included, is closed.
        if (*state != netif::format_xenbus_state(XenbusState::closed))
            return xs.write(t, state_path, netif::format_xenbus_state(XenbusState::closing));
        return ok();
    });
}

Status destroy_vif(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend, std::uint32_t handle) {
    auto paths = vif_paths(xs, guest, backend, handle);
    if (!paths) return std::move(paths).error();
    return hv::run_transaction(xs, [&](XsTxn t) -> Status {
        path_cleanup(xs, t, paths->frontend);
        path_cleanup(xs, t, paths->libxl);
        path_cleanup(xs, t, paths->backend);
        return ok();
    });
}

Status wait_for_state(hv::Xenstore& xs, const std::string& path, XenbusState want,
                      std::chrono::milliseconds timeout) {
    static std::atomic<unsigned> next_token{0};
    const std::string token = "dpnb-netfront-wait-" + std::to_string(next_token++);
    if (Status st = xs.watch(path, token); !st) return st;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last = "(absent)";
    Status result = ok();
    for (;;) {
        auto value = xs.read(hv::kNoTxn, path);
        if (value) {
            last = *value;
            auto s = netif::parse_xenbus_state(*value, "state");
            if (s && *s == want) break;
        } else if (value.error().code != Errc::not_found) {
            result = value.error();
            break;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            result = make_error(Errc::again, path + " did not reach " +
                                                 netif::format_xenbus_state(want) +
                                                 " (last: " + netif::quote(last) + ")");
            break;
        }
        pollfd pfd{xs.watch_fd(), POLLIN, 0};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
        (void)::poll(&pfd, 1, static_cast<int>(std::min<long long>(left + 1, 1000)));
        for (;;) { // drain: the fd may be cleared before the queue is empty
            auto ev = xs.read_watch();
            if (!ev || !ev->has_value()) break;
        }
    }
    (void)xs.unwatch(path, token);
    return result;
}

Result<RemoveResult> remove_vif(hv::Xenstore& xs, hv::DomId guest, hv::DomId backend,
                                std::uint32_t handle, std::chrono::milliseconds timeout) {
    RemoveResult r;
    Status req = request_vif_removal(xs, guest, backend, handle);
    if (req) {
        auto paths = vif_paths(xs, guest, backend, handle);
        if (!paths) return std::move(paths).error();
        Status waited = wait_for_state(xs, paths->backend + "/state", XenbusState::closed, timeout);
        if (!waited) {
            if (waited.error().code != Errc::again) return waited.error();
            r.forced = true; // libxl's LIBXL__FORCE_AUTO
        }
    } else if (req.error().code != Errc::not_found) {
        return req.error();
    }
    if (Status st = destroy_vif(xs, guest, backend, handle); !st) return st.error();
    return r;
}

} // namespace dpnb::netfront
