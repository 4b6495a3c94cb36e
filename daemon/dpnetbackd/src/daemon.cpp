// dpnetbackd's life: start-up order, the event loop, reload, systemd notifications and the
// watchdog, graceful stop (daemon.hpp).
#include "dpnb/daemon/daemon.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_version.h>

#include "daemon_impl.hpp"
#include "dpnb/daemon/logging.hpp"
#include "dpnb/daemon/privileges.hpp"
#include "dpnb/hv/xen.hpp"

#ifndef DPNB_VERSION
#define DPNB_VERSION "0.0.0"
#endif

namespace dpnb::daemon {

namespace {

constexpr auto kTick = std::chrono::milliseconds(250);

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v)
        s += (s.empty() ? "" : ", ") + x;
    return s;
}

} // namespace

const char* version() noexcept {
    return DPNB_VERSION;
}

void block_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::start(Config config, DaemonOptions options) {
    auto impl = std::make_unique<Impl>(std::move(config), std::move(options));
    if (Status st = impl->start(); !st) return st.error();
    return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

int Daemon::run() {
    return impl_->run();
}

Daemon::Impl::~Impl() {
    // run() stops everything; this is for a start() that failed half-way: tear down in the
    // reverse order of start-up.
    mgmt_.reset();
    metrics_.reset();
    control_.reset();
    if (engine_) (void)engine_->shutdown();
    engine_.reset();
    hv_.reset();
    sim_server_.reset();
    if (signal_fd_ >= 0) ::close(signal_fd_);
    if (timer_fd_ >= 0) ::close(timer_fd_);
}

void Daemon::Impl::notify(const std::string& text) {
    // A no-op without NOTIFY_SOCKET (not started by systemd).
    sd_notify(0, text.c_str());
}

void Daemon::Impl::tell_parent(const std::string& line) {
    if (options_.ready_fd < 0) return;
    const std::string l = line + "\n";
    [[maybe_unused]] ssize_t n = ::write(options_.ready_fd, l.data(), l.size());
    ::close(options_.ready_fd);
    options_.ready_fd = -1;
}

Status Daemon::Impl::open_hypervisor() {
    const HypervisorConfig& h = config_.hypervisor;
    auto log = logger(Component::hv);
    if (h.kind == HypervisorKind::xen) {
        auto hv = hv::open_xen_backend(h.xen);
        if (!hv) return make_error(hv.error().code, "xen: " + hv.error().message);
        hv_ = std::move(*hv);
        log->info("hypervisor: Xen, backend domain {}", hv_->self());
        return ok();
    }
    if (h.sim_embedded) {
        auto server = hv::sim::Server::start(h.sim_dir);
        if (!server)
            return make_error(server.error().code, "simulated hypervisor in " + h.sim_dir + ": " +
                                                       server.error().message);
        sim_server_ = std::move(*server);
    }
    auto hv = hv::sim::connect_backend(h.sim_dir, h.self.value_or(hv::kDom0));
    if (!hv)
        return make_error(hv.error().code,
                          "simulated hypervisor in " + h.sim_dir + ": " + hv.error().message);
    hv_ = std::move(*hv);
    log->info("hypervisor: simulated ({} in {}), backend domain {}",
              h.sim_embedded ? "embedded" : "external", h.sim_dir, hv_->self());
    return ok();
}

Status Daemon::Impl::start_metrics(const MetricsConfig& c) {
    if (!c.enabled) return ok();
    auto m = MetricsServer::create(*loop_, c, [this] { return render_metrics(snapshot()); });
    if (!m) return m.error();
    metrics_ = std::move(*m);
    return ok();
}

Status Daemon::Impl::drop_privileges() {
    PrivilegeInputs in;
    for (const engine::PortStatus& p : engine_->ports())
        in.ports.push_back(
            {p.name, p.driver, p.flow_rules, p.zero_copy && p.steering != pmd::Steering::shared});
    in.hugepages = !config_.engine.eal.no_huge;
    in.iova_pa = rte_eal_iova_mode() == RTE_IOVA_PA;
    rlimit memlock{};
    in.memlock_unlimited =
        getrlimit(RLIMIT_MEMLOCK, &memlock) == 0 && memlock.rlim_cur == RLIM_INFINITY;
    in.management_group = !config_.management.group.empty();
    if (config_.metrics.enabled) in.metrics_port = config_.metrics.port;
    auto report = drop_capabilities(capabilities_to_keep(in));
    if (!report) return report.error();
    auto log = logger(Component::control);
    std::string kept;
    for (const KeptCapability& k : report->kept)
        kept += (kept.empty() ? "" : ", ") + capability_name(k.cap) + " (" + k.why + ")";
    log->info("capabilities: kept {} in the control thread, none in the other {} thread(s); "
              "dropped {}; no_new_privs set{}",
              kept.empty() ? std::string("none") : kept, report->threads - 1,
              capability_names(report->dropped),
              report->bounding_trimmed ? "; bounding sets trimmed to the kept ones" : "");
    return ok();
}

Status Daemon::Impl::start() {
    started_wall_ = std::chrono::system_clock::now();
    started_ = std::chrono::steady_clock::now();
    auto log = logger(Component::control);
    log->info("dpnetbackd {} starting ({})", version(),
              config_.path.empty() ? std::string("built-in configuration")
                                   : "configuration " + config_.path);
    notify("STATUS=starting");

    auto loop = EventLoop::create();
    if (!loop) return loop.error();
    loop_ = std::move(*loop);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0)
        return make_error(Errc::io, std::string("signalfd: ") + std::strerror(errno), errno);
    if (Status st = loop_->add(signal_fd_, EPOLLIN, [this](std::uint32_t) { on_signal(); }); !st)
        return st;

    // The management socket first: a second daemon must fail before it touches the
    // hypervisor or the NIC that the first one owns.
    {
        auto m = ManagementServer::create(
            *loop_, config_.management,
            [this](const mgmt::Request& r, const PeerCred& p) { return dispatch(r, p); });
        if (!m) return m.error();
        mgmt_ = std::move(*m);
    }

    notify("STATUS=opening the hypervisor");
    if (Status st = open_hypervisor(); !st) return st;

    notify("STATUS=starting the data plane (DPDK)");
    redirect_dpdk_log();
    engine::EngineOptions eo = config_.engine;
    if (eo.eal.log_level.empty())
        eo.eal.log_level = std::to_string(dpdk_log_level(config_.log.of(Component::dpdk)));
    auto engine = engine::Engine::create(eo, *hv_);
    if (!engine) return make_error(engine.error().code, "data plane: " + engine.error().message);
    engine_ = std::move(*engine);
    apply_log_levels(config_.log); // EAL's --log-level set DPDK's; ours rule from here on

    // The ports and devices are open: from here on the daemon holds only what serving still
    // needs. Before the control plane, whose xenstore watches start libxenstore's reader
    // thread with every signal blocked: a thread made after the drop inherits its creator's
    // sets, a thread that blocks every signal cannot be asked to drop its own.
    notify("STATUS=dropping capabilities");
    if (Status st = drop_privileges(); !st) return st;

    notify("STATUS=starting the control plane");
    auto cp = control::ControlPlane::create(config_.control, *hv_, *engine_);
    if (!cp) return make_error(cp.error().code, "control plane: " + cp.error().message);
    control_ = std::move(*cp);
    if (Status st = loop_->add(control_->fd(), EPOLLIN,
                               [this](std::uint32_t) {
                                   if (stopping_) return;
                                   if (Status s = control_->process(); !s) {
                                       logger(Component::control)
                                           ->critical("control plane: {}; exiting so that a "
                                                      "restart re-attaches the vifs",
                                                      s.error().describe());
                                       exit_status_ = kExitFailure;
                                       stopping_ = true;
                                   }
                               });
        !st)
        return st;

    if (Status st = start_metrics(config_.metrics); !st) return st;

    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timer_fd_ < 0)
        return make_error(Errc::io, std::string("timerfd: ") + std::strerror(errno), errno);
    itimerspec its{};
    its.it_interval.tv_nsec = std::chrono::nanoseconds(kTick).count();
    its.it_value = its.it_interval;
    timerfd_settime(timer_fd_, 0, &its, nullptr);
    if (Status st = loop_->add(timer_fd_, EPOLLIN, [this](std::uint32_t) { on_timer(); }); !st)
        return st;

    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        watchdog_usec_ = std::chrono::microseconds(usec);
        next_watchdog_ = std::chrono::steady_clock::now() + watchdog_usec_ / 2;
        for (const engine::LcoreStats& l : engine_->lcore_stats())
            lcore_progress_.push_back(l.busy_polls + l.idle_polls);
        log->info("systemd watchdog every {} ms, kicked while every lcore makes progress",
                  usec / 1000);
    }

    update_status();
    notify("READY=1\nSTATUS=" + last_status_);
    tell_parent("READY=1");
    log->info("dpnetbackd ready: {}", last_status_);
    return ok();
}

int Daemon::Impl::run() {
    while (!stopping_) {
        if (Status st = loop_->run_once(std::chrono::milliseconds(1000)); !st) {
            logger(Component::control)->critical("event loop: {}", st.error().describe());
            exit_status_ = kExitFailure;
            break;
        }
    }
    stop();
    return exit_status_;
}

void Daemon::Impl::on_signal() {
    signalfd_siginfo si{};
    while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        auto log = logger(Component::control);
        if (si.ssi_signo == SIGHUP) {
            log->info("SIGHUP: reloading {}", options_.config_path);
            auto r = reload();
            if (!r) log->error("reload refused: {}", r.error().message);
        } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            log->info("{}: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            stopping_ = true;
        }
    }
}

void Daemon::Impl::on_timer() {
    std::uint64_t expirations = 0;
    [[maybe_unused]] ssize_t n = ::read(timer_fd_, &expirations, sizeof expirations);
    if (mgmt_) mgmt_->expire();
    if (metrics_) metrics_->expire();
    update_status();
    watchdog_tick();
}

void Daemon::Impl::update_status() {
    if (!control_ || !engine_) return;
    const control::ControlCounters c = control_->counters();
    std::uint64_t served = 0;
    for (std::uint64_t n : c.vifs_by_phase)
        served += n;
    served -= c.vifs(netif::Phase::gone);
    const std::uint64_t up = c.vifs(netif::Phase::connected) + c.vifs(netif::Phase::reconfigured);
    const std::string status =
        std::to_string(up) + " vif(s) connected, " + std::to_string(served) + " served, " +
        std::to_string(config_.engine.ports.size()) + " port(s), " +
        std::to_string(config_.engine.eal.worker_lcores.size()) + " lcore(s)";
    if (status != last_status_) {
        last_status_ = status;
        notify("STATUS=" + status);
    }
}

void Daemon::Impl::watchdog_tick() {
    if (watchdog_usec_.count() == 0 || !engine_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_watchdog_) return;
    next_watchdog_ = now + watchdog_usec_ / 2;
    // An lcore's poll count moves on every loop iteration, and an idle lcore wakes at least
    // every engine.max_sleep_ms: a count that stood still for half the watchdog interval
    // means a poll loop is stuck, and systemd should restart us.
    const std::vector<engine::LcoreStats> stats = engine_->lcore_stats();
    bool progress = stats.size() == lcore_progress_.size();
    std::vector<std::uint64_t> now_counts;
    for (std::size_t i = 0; i < stats.size(); ++i) {
        const std::uint64_t count = stats[i].busy_polls + stats[i].idle_polls;
        now_counts.push_back(count);
        if (i < lcore_progress_.size() && count == lcore_progress_[i]) {
            progress = false;
            if (!watchdog_withheld_)
                logger(Component::data)
                    ->error(
                        "lcore {} made no progress for {} ms: not kicking the watchdog",
                        stats[i].lcore,
                        std::chrono::duration_cast<std::chrono::milliseconds>(watchdog_usec_ / 2)
                            .count());
        }
    }
    lcore_progress_ = std::move(now_counts);
    if (progress) {
        notify("WATCHDOG=1");
        if (watchdog_withheld_) logger(Component::data)->info("every lcore makes progress again");
    }
    watchdog_withheld_ = !progress;
}

Result<ReloadResult> Daemon::Impl::reload() {
    auto next = load_config(options_.config_path, options_.overrides, options_.config_optional);
    if (!next) {
        ++counters_.reload_failures;
        return next.error();
    }
    const ConfigDiff d = diff(config_, *next);
    ReloadResult r;
    r.needs_restart = d.restart;
    auto log = logger(Component::control);
    if (!d.restart.empty())
        log->warn("reload: changed but needs restart (not applied): {}", join(d.restart));
    bool log_changed = false, mgmt_changed = false, metrics_changed = false;
    for (const std::string& k : d.live) {
        if (k.rfind("log.", 0) == 0)
            log_changed = true;
        else if (k.rfind("management.", 0) == 0)
            mgmt_changed = true;
        else if (k.rfind("metrics.", 0) == 0)
            metrics_changed = true;
    }
    const auto take = [&](std::string_view prefix) {
        for (const std::string& k : d.live)
            if (k.rfind(prefix, 0) == 0) {
                config_.values[k] = next->values.at(k);
                r.applied.push_back(k);
            }
    };
    if (log_changed) {
        const LogTarget target = config_.log.target; // structural
        config_.log = next->log;
        config_.log.target = target;
        apply_log_levels(config_.log);
        take("log.");
    }
    if (mgmt_changed) {
        ManagementConfig m = next->management;
        m.socket = config_.management.socket; // structural
        if (Status st = mgmt_->apply(m); !st) {
            r.errors.push_back(st.error().message);
        } else {
            config_.management = m;
            take("management.");
        }
    }
    if (metrics_changed) {
        const MetricsConfig& n = next->metrics;
        const MetricsConfig& o = config_.metrics;
        if (n.enabled != o.enabled || n.address != o.address || n.port != o.port) {
            // Bind the new endpoint while the old one still serves; if that fails because
            // the old one holds the address, close it and try again; if that fails too,
            // bring the old one back.
            std::unique_ptr<MetricsServer> old = std::move(metrics_);
            Status st = start_metrics(n);
            if (!st && old) {
                old.reset();
                st = start_metrics(n);
                if (!st) (void)start_metrics(o);
            }
            if (!st) {
                r.errors.push_back(st.error().message);
            } else {
                config_.metrics = n;
                take("metrics.");
            }
        } else {
            if (metrics_) metrics_->apply_limits(n);
            config_.metrics = n;
            take("metrics.");
        }
    }
    for (const std::string& k : d.live)
        if (k == "shutdown.timeout_ms" || k == "shutdown.vifs") {
            config_.shutdown_timeout = next->shutdown_timeout;
            config_.shutdown_vifs = next->shutdown_vifs;
            config_.values[k] = next->values.at(k);
            r.applied.push_back(k);
        }
    if (r.errors.empty())
        ++counters_.reloads;
    else
        ++counters_.reload_failures;
    log->info("reload: {} applied{}{}", r.applied.empty() ? "nothing" : join(r.applied),
              r.needs_restart.empty() ? "" : "; needs restart: " + join(r.needs_restart),
              r.errors.empty() ? "" : "; failed: " + join(r.errors));
    return r;
}

MetricsSnapshot Daemon::Impl::snapshot() {
    MetricsSnapshot s;
    if (control_) {
        s.vifs = control_->list();
        s.control = control_->counters();
    }
    if (engine_) {
        s.lcores = engine_->lcore_stats();
        s.ports = engine_->ports();
    }
    if (mgmt_) {
        const ManagementServer::Stats& m = mgmt_->stats();
        s.server.requests_ok = m.ok;
        s.server.requests_failed = m.failed;
        s.server.denied = m.denied;
        s.server.bad_requests = m.bad_requests;
    }
    if (metrics_) s.server.scrapes = metrics_->stats().scrapes;
    s.server.reloads = counters_.reloads;
    s.server.reload_failures = counters_.reload_failures;
    s.process.version = version();
    s.process.hypervisor = to_string(config_.hypervisor.kind);
    s.process.dpdk_version = rte_version();
    s.process.start_time_seconds =
        std::chrono::duration<double>(started_wall_.time_since_epoch()).count();
    s.process.uptime_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    read_process_info(s.process);
    return s;
}

void Daemon::Impl::stop() {
    auto log = logger(Component::control);
    notify("STOPPING=1\nSTATUS=stopping: closing vifs");
    const auto t0 = std::chrono::steady_clock::now();
    // No new requests while the vifs close.
    if (mgmt_) mgmt_->stop();
    metrics_.reset();
    if (control_ && config_.shutdown_vifs == ShutdownVifs::keep) {
        // Destroying the control plane without shutdown() detaches every vif and writes
        // nothing, exactly what a crash leaves: the next daemon re-attaches (docs/xenbus.md).
        log->info("shutdown.vifs = keep: leaving {} vif(s) to the next daemon",
                  control_->list().size());
        control_.reset();
    } else if (control_) {
        if (Status st = control_->shutdown(config_.shutdown_timeout); !st)
            log->warn("shutdown: {}", st.error().message);
        control_.reset();
    }
    notify("STATUS=stopping: data plane");
    if (engine_) {
        if (Status st = engine_->shutdown(); !st) {
            log->error("data plane shutdown: {}", st.error().message);
            exit_status_ = kExitFailure;
        }
        const engine::LeakReport leaks = engine_->leaks();
        if (!leaks.clean()) {
            log->error("leaks at shutdown: {} mapped grant(s), {} mbuf(s), {} guest header(s)",
                       leaks.mapped_grants, leaks.mbufs_missing, leaks.guest_headers_missing);
            exit_status_ = kExitFailure;
        }
        engine_.reset();
    }
    hv_.reset();
    sim_server_.reset();
    mgmt_.reset();
    log->info(
        "dpnetbackd stopped in {} ms (exit status {})",
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count(),
        exit_status_);
}

} // namespace dpnb::daemon
