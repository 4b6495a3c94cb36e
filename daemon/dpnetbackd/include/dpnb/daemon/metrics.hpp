// The Prometheus text exposition (format 0.0.4) of dpnetbackd's state: per vif (packets,
// bytes, drops by reason, TX errors by reason, grant operations, translation-table lookups,
// notifications, RX mode, xenbus phase), per lcore (polls, sleeps, inbox and TX drops,
// queues), per port, the
// control plane's events and errors, the management server, and the process. docs/metrics.md
// lists every family.
//
// render_metrics() is a pure function of a snapshot taken on the control thread: counters
// are written by their lcore only and summed by the engine when the snapshot is taken.
// Per-vif and per-lcore counter families come from engine::vif_counter_table() and
// engine::lcore_counter_table(), so a counter the engine adds appears without a change here
// (under dpnetback_vif_<name>_total or dpnetback_lcore_<name>_total when it has no family of
// its own in kVifFamilies or kLcoreFamilies).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dpnb/control/control_plane.hpp"
#include "dpnb/engine/engine.hpp"

namespace dpnb::daemon {

struct ProcessInfo {
    std::string version;
    std::string hypervisor; // "xen" or "sim"
    std::string dpdk_version;
    double start_time_seconds = 0; // since the epoch
    double uptime_seconds = 0;
    double cpu_seconds = 0;
    std::uint64_t resident_bytes = 0;
    std::uint64_t open_fds = 0;
};

struct ServerCounters {
    std::map<std::string, std::uint64_t> requests_ok;     // by command
    std::map<std::string, std::uint64_t> requests_failed; // by command
    std::uint64_t denied = 0;
    std::uint64_t bad_requests = 0;
    std::uint64_t scrapes = 0;
    std::uint64_t reloads = 0;
    std::uint64_t reload_failures = 0;
};

struct MetricsSnapshot {
    std::vector<control::VifInfo> vifs;
    std::vector<engine::LcoreStats> lcores;
    std::vector<engine::PortStatus> ports;
    control::ControlCounters control;
    ServerCounters server;
    ProcessInfo process;
};

std::string render_metrics(const MetricsSnapshot& snapshot);

// Reads the process part from /proc/self (resident memory, CPU time, open fds).
void read_process_info(ProcessInfo& info);

} // namespace dpnb::daemon
