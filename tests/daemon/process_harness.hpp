// TEST-ONLY plumbing for the process-level tests of dpnetbackd: the real binaries
// (dpnetbackd, dpnetbackctl, dpnb-netfront, dpnb-peer, dpnb-simhv, promtool) run as child
// processes, configured through files in a temporary folder, and are observed only from the
// outside: their exit statuses and output, the management socket, the metrics endpoint over
// HTTP, the simulated hypervisor's xenstore and counters.
//
// The test process moves into a network namespace of its own before any test runs, so the
// daemon's tap interface and its loopback metrics endpoint are invisible to other processes
// on the machine (and their names cannot clash). Every child gets PR_SET_PDEATHSIG, and every
// Process is killed when it goes out of scope, so a failing test leaves nothing running.
// Waits poll for a condition with a generous deadline; nothing sleeps as synchronisation.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace dpnb::daemon_test {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// Loaded 2-core machines, sanitizers: every wait is long, and never a synchronisation.
inline constexpr std::chrono::milliseconds kWait = 120s;

// Whether these tests can run here: root, /dev/net/tun and the private network namespace.
bool environment_ready(std::string* why);

#define DT_REQUIRE_ENVIRONMENT()                                                                   \
    do {                                                                                           \
        std::string dt_why_;                                                                       \
        if (!::dpnb::daemon_test::environment_ready(&dt_why_)) GTEST_SKIP() << dt_why_;            \
    } while (0)

std::string read_file(const std::string& path);
bool write_file(const std::string& path, const std::string& text);

// Polls `condition` every 50 ms until it holds or `timeout` passes.
bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout = kWait);

struct RunResult {
    int status = -1; // exit status; 128 + signal when killed; -1 when it could not run
    std::string out;
    std::string err;
    std::string describe() const; // for failure messages
};

// Runs a program to completion (killed after `timeout`), with `input` on its stdin.
RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = kWait,
              const std::string& input = {});

// A program running in the background; stdout and stderr go to files.
class Process {
public:
    Process(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path);
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    bool running();
    void signal(int sig) const;
    // The exit status (128 + signal when killed), or nullopt when it is still running.
    std::optional<int> wait(std::chrono::milliseconds timeout = kWait);
    void kill_now();
    std::string out() const { return read_file(out_path_); }
    std::string err() const { return read_file(err_path_); }

private:
    pid_t pid_ = -1;
    int pidfd_ = -1;
    std::optional<int> status_;
    std::string out_path_, err_path_;
};

// The interface's MAC, read with SIOCGIFHWADDR in this namespace.
std::optional<std::string> iface_mac(const std::string& iface);
// dpnb-netfront's default MAC for a domain's vif.
std::string guest_mac(unsigned dom, unsigned handle = 0);
std::string vif_name(unsigned dom, unsigned handle = 0);

// GET a path from 127.0.0.1:port: {status code, body}.
std::pair<int, std::string> http_get(std::uint16_t port, const std::string& path);
// A sample's value in a Prometheus text exposition: `series` is the name and labels exactly
// as printed ("dpnetback_vif_packets_total{vif=\"vif1.0\",direction=\"rx\"}").
std::optional<double> metric(const std::string& text, const std::string& series);

struct DaemonSetup {
    bool embedded_sim = true;
    std::string extra_toml;            // appended to the configuration file
    std::string management_group = {}; // management.group, when not empty
    std::uint16_t metrics_port = 0;    // metrics.port (0: any free port)
    // The uplink's device; empty: a net_tap port on `iface`. dpnb-peer always uses `iface`.
    std::string device = {};
    // Runs the daemon through this program and its arguments (e.g. setpriv with a bounding
    // set); it must exec the daemon, which keeps its pid.
    std::vector<std::string> launcher = {};
};

// One daemon's world: a temporary folder with the configuration file, the simulator's
// folder, the management socket, the logs; a unique tap interface and EAL file prefix.
class DaemonEnv {
public:
    explicit DaemonEnv(DaemonSetup setup = {});
    ~DaemonEnv();

    std::string dir, sim_dir, socket, config_path, iface, file_prefix;
    DaemonSetup setup;

    std::string config_text() const;
    // Starts `dpnb-simhv serve` (for embedded_sim = false) and waits for its READY.
    ::testing::AssertionResult start_simhv();
    // Writes the configuration, starts `dpnetbackd -f -c FILE`, waits for "dpnetbackd ready".
    ::testing::AssertionResult start_daemon();
    // start_daemon() in two halves: the start, and the wait for "dpnetbackd ready".
    ::testing::AssertionResult spawn_daemon();
    ::testing::AssertionResult wait_daemon_ready();
    // The daemon's stderr (its log) so far.
    std::string daemon_log() const;
    std::unique_ptr<Process> daemon;
    std::unique_ptr<Process> simhv;
    int daemon_starts = 0;

    // dpnetbackctl --socket S ARGS...
    RunResult ctl(const std::vector<std::string>& args) const;
    // dpnetbackctl --json ... that must succeed: its "result".
    Json ctl_json(const std::vector<std::string>& args) const;
    // `list --json`'s entry for a vif (null when not listed).
    Json vif_entry(const std::string& vif) const;
    bool vif_connected(const std::string& vif) const;
    ::testing::AssertionResult wait_connected(const std::vector<std::string>& vifs,
                                              std::chrono::milliseconds timeout = kWait) const;

    // dpnb-simhv --dir SIM ARGS...
    RunResult simhv_cmd(const std::vector<std::string>& args) const;
    // Creates a domain with the simulated toolstack (destroyed when its guest process exits).
    std::optional<unsigned> create_domain(const std::string& name) const;
    // dpnb-netfront --domid DOM (it plugs the vif, as xl network-attach) with `args`.
    Process& start_guest(unsigned dom, const std::vector<std::string>& args);
    std::map<unsigned, std::unique_ptr<Process>> guests;
    // A key of the simulated xenstore, read as dom0 (nullopt when missing).
    std::optional<std::string> xenstore_read(const std::string& path) const;

    // dpnb-peer --iface IFACE ARGS... --json: its report (null when it printed none).
    RunResult peer(const std::vector<std::string>& args,
                   std::chrono::milliseconds timeout = kWait) const;
    std::unique_ptr<Process> start_peer(const std::vector<std::string>& args,
                                        const std::string& name);

    std::uint16_t metrics_port() const;
    std::string scrape() const;

private:
    int peers_ = 0;
};

const std::string& promtool_path(); // empty when promtool is not installed

} // namespace dpnb::daemon_test
