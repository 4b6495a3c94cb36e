// dpnetbackd assembled: the hypervisor (Xen, or the simulated one embedded or external), the
// data plane (Engine), the control plane, the management socket and the metrics endpoint,
// driven by one event loop on the control thread (the thread that initialised DPDK's EAL).
//
//   start()  brings the parts up in that order, drops every capability serving does not need
//            (privileges.hpp), and tells systemd READY=1 (sd_notify), or writes to the
//            readiness fd of a daemonising parent;
//   run()    the event loop: the control plane's fd, a signalfd (SIGTERM/SIGINT: graceful
//            stop; SIGHUP: reload), the two servers, and a timer for timeouts, the STATUS=
//            line and the systemd watchdog (kicked only while every lcore makes progress);
//   stop     the control plane walks every vif to Closing and waits for the frontends
//            (shutdown.timeout_ms), the engine detaches what is left, completes or answers
//            the frames in flight and checks that no grant or buffer leaked.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dpnb/daemon/config.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::daemon {

// Exit statuses (sysexits.h): systemd's unit does not restart on the last two.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 64;  // EX_USAGE: bad command line
inline constexpr int kExitConfig = 78; // EX_CONFIG: bad configuration

struct DaemonOptions {
    // Where the configuration came from, for reloads.
    std::string config_path;
    bool config_optional = false; // the default path, which may be missing
    std::vector<std::string> overrides;
    // A daemonising parent waits on this fd: "READY=1\n" once serving, or an error line.
    int ready_fd = -1;
};

class Daemon {
public:
    // Signals the daemon handles must be blocked in every thread before start() (so that
    // the threads DPDK and the hypervisor create inherit the mask): see block_signals().
    static Result<std::unique_ptr<Daemon>> start(Config config, DaemonOptions options);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Until SIGTERM/SIGINT (then a graceful stop) or a fatal error. The exit status.
    int run();

    class Impl;

private:
    explicit Daemon(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Blocks SIGTERM, SIGINT, SIGHUP in the calling thread (and those it creates later) and
// ignores SIGPIPE.
void block_signals();

// The daemon's version string ("0.1.0").
const char* version() noexcept;

} // namespace dpnb::daemon
