// The daemon's insides, shared by daemon.cpp (start, event loop, reload, stop) and
// commands.cpp (the management commands). Everything here lives on the control thread.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dpnb/control/control_plane.hpp"
#include "dpnb/daemon/config.hpp"
#include "dpnb/daemon/daemon.hpp"
#include "dpnb/daemon/event_loop.hpp"
#include "dpnb/daemon/http_server.hpp"
#include "dpnb/daemon/metrics.hpp"
#include "dpnb/daemon/mgmt_server.hpp"
#include "dpnb/engine/engine.hpp"
#include "dpnb/hv/sim.hpp"
#include "dpnb/mgmt/protocol.hpp"

namespace dpnb::daemon {

struct ReloadResult {
    std::vector<std::string> applied;
    std::vector<std::string> needs_restart;
    std::vector<std::string> errors; // live keys that could not be applied
};

class Daemon::Impl {
public:
    Impl(Config config, DaemonOptions options)
        : config_(std::move(config)), options_(std::move(options)) {}
    ~Impl();

    Status start();
    int run();

    // Management commands (commands.cpp).
    mgmt::Response dispatch(const mgmt::Request& request, const PeerCred& peer);

    // SIGHUP and the "reload" command.
    Result<ReloadResult> reload();

    MetricsSnapshot snapshot();

    Config config_;
    DaemonOptions options_;
    std::chrono::system_clock::time_point started_wall_;
    std::chrono::steady_clock::time_point started_;

    std::unique_ptr<EventLoop> loop_;
    int signal_fd_ = -1;
    int timer_fd_ = -1;
    std::unique_ptr<hv::sim::Server> sim_server_;
    std::unique_ptr<hv::BackendHypervisor> hv_;
    std::unique_ptr<engine::Engine> engine_;
    std::unique_ptr<control::ControlPlane> control_;
    std::unique_ptr<ManagementServer> mgmt_;
    std::unique_ptr<MetricsServer> metrics_;

    ServerCounters counters_; // reloads; the servers count the rest
    bool stopping_ = false;
    int exit_status_ = kExitOk;

    // systemd
    std::chrono::microseconds watchdog_usec_{0};
    std::chrono::steady_clock::time_point next_watchdog_;
    std::vector<std::uint64_t> lcore_progress_; // busy + idle polls at the last kick
    bool watchdog_withheld_ = false;
    std::string last_status_;

private:
    Status open_hypervisor();
    Status start_metrics(const MetricsConfig& c);
    // After start-up: every capability but those later work needs (privileges.hpp).
    Status drop_privileges();
    void on_signal();
    void on_timer();
    void update_status();
    void watchdog_tick();
    void stop();
    void notify(const std::string& text);
    void tell_parent(const std::string& line);
};

} // namespace dpnb::daemon
