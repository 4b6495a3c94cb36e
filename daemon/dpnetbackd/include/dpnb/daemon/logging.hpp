// dpnetbackd's logging: spdlog to the systemd journal (when systemd runs us, or when we
// detached from the terminal) or to stderr, with a level per component (control, data,
// mgmt, hv, dpdk) that a SIGHUP can change.
//
// Each component has a logger registered under its name (spdlog::get("control") ...). The
// libraries log through spdlog's default logger with a prefix ("control: ...", "vif1.0: ...",
// "xenstore: ..."); the default logger's sink assigns such a line to a component by that
// prefix (kPrefixes in logging.cpp), so per-component levels apply to them too. DPDK's own
// log (rte_log) is redirected to the "dpdk" logger.
#pragma once

#include <memory>
#include <spdlog/logger.h>

#include "dpnb/daemon/config.hpp"

namespace dpnb::daemon {

// Where the lines go, decided once at start (a reload does not move them).
enum class LogSink : std::uint8_t { journal, stderr_stream };
const char* to_string(LogSink s) noexcept;

// LogTarget::automatic: the journal if stderr is the journal's stream (JOURNAL_STREAM names
// its device and inode, as systemd sets it) or the process detached from its terminal;
// otherwise stderr.
LogSink choose_sink(LogTarget target, bool detached);

// Installs the sinks and loggers process-wide. Call once, before other threads log.
void setup_logging(const LogConfig& config, LogSink sink);
// New levels (SIGHUP); also DPDK's global log level.
void apply_log_levels(const LogConfig& config);

// The logger of a component (set up by setup_logging(); before that, spdlog's default).
std::shared_ptr<spdlog::logger> logger(Component c);

// Which component a line of the default logger belongs to (by its prefix); nullopt: none
// (then the global level applies).
std::optional<Component> classify(std::string_view message) noexcept;

// Sends DPDK's rte_log lines to the "dpdk" logger. Call before EAL is initialised.
void redirect_dpdk_log();
// spdlog level -> DPDK's RTE_LOG_* level (info maps to NOTICE: DPDK's INFO is chatty).
unsigned dpdk_log_level(LogLevel level) noexcept;

} // namespace dpnb::daemon
