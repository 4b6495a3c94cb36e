// The control plane's shell: set-up (xenstore, watches, the start-up scan), the event loop
// (one epoll fd over the xenstore watch fd, the data plane's events fd and a command
// eventfd), the operations the CLI calls, graceful shutdown and the counters.
#include "dpnb/control/control_plane.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "impl.hpp"

namespace dpnb::control {

using netif::Input;
using netif::Phase;

const char* to_string(VifRole r) noexcept {
    switch (r) {
    case VifRole::unadopted:
        return "unadopted";
    case VifRole::served:
        return "served";
    case VifRole::rejected:
        return "rejected";
    case VifRole::forgotten:
        return "forgotten";
    }
    return "unknown";
}

// --- set-up ---------------------------------------------------------------------------------

ControlPlane::Impl::Impl(const ControlOptions& options, hv::BackendHypervisor& hv,
                         engine::DataPlane& dp)
    : options_(options), hv_(hv), dp_(dp) {}

Status ControlPlane::Impl::init() {
    if (Status st = validate(options_); !st) return st;
    self_ = hv_.self();
    auto xs = hv_.open_xenstore();
    if (!xs) return std::move(xs).error();
    xs_ = std::move(*xs);
    auto home = xs_->domain_path(self_);
    if (!home) return std::move(home).error();
    root_ = *home + "/backend/vif";

    cmd_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cmd_fd_ < 0) return make_error(Errc::io, "eventfd", errno);
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return make_error(Errc::io, "epoll_create1", errno);
    for (int fd : {xs_->watch_fd(), dp_.events_fd(), cmd_fd_}) {
        if (fd < 0) continue;
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = fd;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) != 0)
            return make_error(Errc::io, "epoll_ctl", errno);
    }
    if (Status st = xs_->watch(root_, kRootToken); !st) return st;
    if (Status st = xs_->watch(kReleaseDomain, kReleaseToken); !st) return st;

    spdlog::info("control: serving {} ({} vifs), hotplug wait {}, rx mode {}, port {}", root_,
                 to_string(options_.serve), to_string(options_.hotplug),
                 engine::to_string(options_.default_rx_mode), options_.default_port);
    scan(); // the vifs that exist already: a restart re-attaches the running ones
    refresh_gauges();
    return ok();
}

ControlPlane::Impl::~Impl() {
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (cmd_fd_ >= 0) ::close(cmd_fd_);
}

// Without a graceful shutdown: detach every vif and forget it, writing nothing, as a crash
// would leave it; a restarted daemon attaches to the running frontends again.
void ControlPlane::Impl::quiet_stop() {
    run_commands();
    if (!xs_) return;
    for (auto& [id, v] : vifs_)
        if (v->role == VifRole::served) feed(*v, Input::shutdown);
    (void)xs_->unwatch(root_, kRootToken);
    (void)xs_->unwatch(kReleaseDomain, kReleaseToken);
}

// --- event loop -----------------------------------------------------------------------------

Status ControlPlane::Impl::process() {
    std::uint64_t n = 0;
    while (::read(cmd_fd_, &n, sizeof(n)) == static_cast<ssize_t>(sizeof(n))) {
    }
    Status st = handle_watch_events();
    handle_data_plane_events();
    run_commands();
    refresh_gauges();
    if (!st) spdlog::error("control: xenstore: {}", st.error().describe());
    return st;
}

void ControlPlane::Impl::post(std::function<void()> task) {
    {
        std::lock_guard lock(cmd_mu_);
        cmds_.push_back(std::move(task));
    }
    const std::uint64_t one = 1;
    (void)!::write(cmd_fd_, &one, sizeof(one));
}

void ControlPlane::Impl::run_commands() {
    for (;;) {
        std::deque<std::function<void()>> batch;
        {
            std::lock_guard lock(cmd_mu_);
            batch.swap(cmds_);
        }
        if (batch.empty()) return;
        for (auto& task : batch)
            task();
    }
}

// --- operations -----------------------------------------------------------------------------

Status ControlPlane::Impl::adopt(const engine::VifId& id, const VifOverrides& overrides) {
    if (stopped_) return make_error(Errc::closed, "the control plane is shut down");
    if (overrides.mac && (overrides.mac->is_multicast() || overrides.mac->is_zero()))
        return make_error(Errc::invalid_argument,
                          "mac " + netif::format_mac(*overrides.mac) + " is not unicast");
    if (overrides.port && overrides.port->empty())
        return make_error(Errc::invalid_argument, "empty port name");
    const std::string name = engine::to_string(id);
    auto it = vifs_.find(id);
    if (it == vifs_.end()) {
        // The toolstack may have created the folder a moment ago: look at xenstore itself.
        const netif::BackendPath path{self_, id.dom, id.handle};
        auto present = exists(netif::format_backend_path(path));
        if (!present) return std::move(present).error();
        if (!*present)
            return make_error(Errc::not_found,
                              name + ": no backend folder " + netif::format_backend_path(path));
        discover(path);
        it = vifs_.find(id);
        if (it == vifs_.end()) return make_error(Errc::not_found, name + ": not found");
    }
    Vif& v = *it->second;
    if (v.role == VifRole::rejected) {
        if (Status st = load_toolstack(v); !st)
            return make_error(Errc::invalid_argument, name + ": " + st.error().message);
    }
    if (v.role != VifRole::served) {
        v.overrides = overrides;
        v.adopted = true;
        spdlog::info("control: {}: adopted", name);
        if (options_.serve == VifSelection::adopted_only) mark_adopted(v, true);
        serve(v);
        refresh_gauges();
        if (v.role != VifRole::served)
            return make_error(Errc::not_found, name + ": the guest is gone");
        return ok();
    }

    // Served already: new settings.
    v.overrides.merge(overrides);
    v.adopted = true;
    if (!v.attached) return ok(); // taken at the next connect
    const VifOverrides o = effective_overrides(v);
    engine::VifSpec spec = *v.attached;
    spec.mac = o.mac.value_or(v.toolstack.mac);
    spec.port = o.port.value_or(options_.default_port);
    spec.rx_queue = o.rx_queue;
    const engine::RxMode mode = o.rx_mode.value_or(options_.default_rx_mode);
    if (spec.mac != v.attached->mac || spec.port != v.attached->port ||
        spec.rx_queue != v.attached->rx_queue) {
        spec.rx_mode = mode;
        Status st = reattach(v, std::move(spec), ControlError::reconfigure);
        if (!st) {
            // The frontend thinks it is connected to a data path that is gone: close it.
            v.pending_error = st.error();
            feed(v, Input::frontend_invalid);
        }
        refresh_gauges();
        return st;
    }
    if (mode != v.attached->rx_mode) return set_rx_mode(id, mode);
    return ok();
}

Status ControlPlane::Impl::release(const engine::VifId& id) {
    auto it = vifs_.find(id);
    if (it == vifs_.end() || it->second->role != VifRole::served)
        return make_error(Errc::not_found, engine::to_string(id) + ": not served");
    Vif& v = *it->second;
    spdlog::info("control: {}: released", v.name);
    v.adopted = false;
    if (options_.serve == VifSelection::adopted_only) mark_adopted(v, false);
    if (!v.detach_raised) {
        v.detach_raised = true;
        feed(v, Input::detach);
    }
    refresh_gauges();
    return ok();
}

Status ControlPlane::Impl::set_rx_mode(const engine::VifId& id, engine::RxMode mode) {
    auto it = vifs_.find(id);
    if (it == vifs_.end())
        return make_error(Errc::not_found, engine::to_string(id) + ": no such vif");
    Vif& v = *it->second;
    v.overrides.rx_mode = mode;
    if (!v.attached || v.attached->rx_mode == mode) return ok();
    if (Status st = dp_.set_rx_mode(id, mode); !st) return st;
    spdlog::info("control: {}: rx mode {} -> {}", v.name, engine::to_string(v.attached->rx_mode),
                 engine::to_string(mode));
    v.attached->rx_mode = mode;
    v.rx_mode_reason.clear();
    return ok();
}

VifInfo ControlPlane::Impl::info(const Vif& v) const {
    VifInfo i;
    i.id = v.id;
    i.backend_path = v.backend;
    i.frontend_path = v.frontend;
    i.domain_name = v.domain_name;
    i.role = v.role;
    if (v.sm) {
        i.phase = v.sm->phase();
        i.backend_state = v.sm->written();
        i.hotplug_ready = v.sm->hotplug_ready();
        if (auto fe = v.sm->last_frontend_input(); fe && *fe != Input::frontend_invalid)
            i.frontend_state = static_cast<netif::XenbusState>(*fe);
    }
    i.adopted = v.adopted;
    const VifOverrides o = effective_overrides(v);
    if (v.attached) {
        i.mac = v.attached->mac;
        i.rx_mode = v.attached->rx_mode;
        i.port = v.attached->port;
        i.rx_queue = v.attached->rx_queue;
        i.attached = true;
        i.queues = static_cast<unsigned>(v.attached->frontend.queues.size());
        if (auto st = dp_.status(v.id); st) {
            i.data_plane = *st;
            i.rx_mode = st->rx_mode;
        }
    } else {
        i.mac = o.mac.value_or(v.toolstack.mac);
        i.rx_mode = o.rx_mode.value_or(options_.default_rx_mode);
        i.port = o.port.value_or(options_.default_port);
        i.rx_queue = o.rx_queue;
    }
    i.rx_mode_reason = v.rx_mode_reason;
    i.connects = v.connects;
    i.last_error_kind = v.last_error_kind;
    i.last_error = v.last_error;
    return i;
}

Status ControlPlane::Impl::shutdown(std::chrono::milliseconds timeout) {
    if (stopped_) return ok();
    stopped_ = true;
    spdlog::info("control: shutting down: closing every vif (at most {} ms)", timeout.count());
    for (auto& [id, v] : vifs_)
        if (v->role == VifRole::served && !v->detach_raised) {
            v->detach_raised = true;
            feed(*v, Input::detach); // disconnects at once; forgotten once the frontend closed
        }
    auto remaining = [this] {
        std::size_t n = 0;
        for (const auto& [id, v] : vifs_)
            n += v->role == VifRole::served;
        return n;
    };
    const auto deadline = Clock::now() + timeout;
    Status lost = ok();
    while (remaining() != 0) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) break;
        pollfd p{epoll_fd_, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno != EINTR) {
            lost = make_error(Errc::io, "poll", errno);
            break;
        }
        std::uint64_t n = 0;
        while (::read(cmd_fd_, &n, sizeof(n)) == static_cast<ssize_t>(sizeof(n))) {
        }
        if (lost = handle_watch_events(); !lost) break;
        handle_data_plane_events();
        run_commands();
    }
    const std::size_t late = remaining();
    for (auto& [id, v] : vifs_)
        if (v->role == VifRole::served) {
            spdlog::warn("control: {}: the frontend did not close in time; left {}", v->name,
                         netif::to_string(v->sm->written()));
            feed(*v, Input::shutdown);
        }
    refresh_gauges();
    if (!lost) return lost;
    if (late != 0)
        return make_error(Errc::again, std::to_string(late) + " vif" + (late == 1 ? "" : "s") +
                                           " did not close within " +
                                           std::to_string(timeout.count()) + " ms");
    spdlog::info("control: every vif closed");
    return ok();
}

// --- counters -------------------------------------------------------------------------------

void ControlPlane::Impl::count(ControlEvent e) noexcept {
    events_[static_cast<std::size_t>(e)].fetch_add(1, std::memory_order_relaxed);
}

void ControlPlane::Impl::count(ControlError e) noexcept {
    errors_[static_cast<std::size_t>(e)].fetch_add(1, std::memory_order_relaxed);
}

void ControlPlane::Impl::refresh_gauges() {
    std::array<std::uint64_t, netif::kPhaseCount> phases{};
    std::uint64_t unadopted = 0, rejected = 0;
    for (const auto& [id, v] : vifs_) {
        switch (v->role) {
        case VifRole::served:
            ++phases[static_cast<std::size_t>(v->sm->phase())];
            break;
        case VifRole::forgotten:
            ++phases[static_cast<std::size_t>(Phase::gone)];
            break;
        case VifRole::unadopted:
            ++unadopted;
            break;
        case VifRole::rejected:
            ++rejected;
            break;
        }
    }
    for (std::size_t i = 0; i < phases.size(); ++i)
        gauge_phase_[i].store(phases[i], std::memory_order_relaxed);
    gauge_unadopted_.store(unadopted, std::memory_order_relaxed);
    gauge_rejected_.store(rejected, std::memory_order_relaxed);
}

ControlCounters ControlPlane::Impl::counters() const {
    ControlCounters c;
    for (std::size_t i = 0; i < c.vifs_by_phase.size(); ++i)
        c.vifs_by_phase[i] = gauge_phase_[i].load(std::memory_order_relaxed);
    c.vifs_unadopted = gauge_unadopted_.load(std::memory_order_relaxed);
    c.vifs_rejected = gauge_rejected_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < c.events.size(); ++i)
        c.events[i] = events_[i].load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < c.errors.size(); ++i)
        c.errors[i] = errors_[i].load(std::memory_order_relaxed);
    return c;
}

// --- the public shell -----------------------------------------------------------------------

Result<std::unique_ptr<ControlPlane>> ControlPlane::create(const ControlOptions& options,
                                                           hv::BackendHypervisor& hv,
                                                           engine::DataPlane& data_plane) {
    auto impl = std::make_unique<Impl>(options, hv, data_plane);
    if (Status st = impl->init(); !st) return std::move(st).error();
    return std::unique_ptr<ControlPlane>(new ControlPlane(std::move(impl)));
}

ControlPlane::ControlPlane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ControlPlane::~ControlPlane() {
    if (impl_) impl_->quiet_stop();
}

int ControlPlane::fd() const noexcept {
    return impl_->epoll_fd_;
}

Status ControlPlane::process() {
    return impl_->process();
}

Status ControlPlane::run(std::stop_token stop) {
    std::stop_callback wake(stop, [this] {
        const std::uint64_t one = 1;
        (void)!::write(impl_->cmd_fd_, &one, sizeof(one));
    });
    while (!stop.stop_requested()) {
        pollfd p{impl_->epoll_fd_, POLLIN, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR) return make_error(Errc::io, "poll", errno);
        if (Status st = process(); !st) return st;
    }
    return ok();
}

Status ControlPlane::adopt(const engine::VifId& id, const VifOverrides& overrides) {
    return impl_->adopt(id, overrides);
}

Status ControlPlane::release(const engine::VifId& id) {
    return impl_->release(id);
}

Status ControlPlane::set_rx_mode(const engine::VifId& id, engine::RxMode mode) {
    Status st = impl_->set_rx_mode(id, mode);
    impl_->refresh_gauges();
    return st;
}

std::vector<VifInfo> ControlPlane::list() const {
    std::vector<VifInfo> out;
    out.reserve(impl_->vifs_.size());
    for (const auto& [id, v] : impl_->vifs_)
        out.push_back(impl_->info(*v));
    return out;
}

Result<VifInfo> ControlPlane::vif(const engine::VifId& id) const {
    auto it = impl_->vifs_.find(id);
    if (it == impl_->vifs_.end())
        return make_error(Errc::not_found, engine::to_string(id) + ": no such vif");
    return impl_->info(*it->second);
}

Status ControlPlane::shutdown(std::chrono::milliseconds timeout) {
    return impl_->shutdown(timeout);
}

const ControlOptions& ControlPlane::options() const noexcept {
    return impl_->options_;
}

ControlCounters ControlPlane::counters() const {
    return impl_->counters();
}

void ControlPlane::post(std::function<void()> task) {
    impl_->post(std::move(task));
}

} // namespace dpnb::control
