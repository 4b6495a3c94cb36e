// dpnetbackd's configuration: the TOML file (default /etc/dpnetback/dpnetback.toml), the
// command line's key=value overrides, and what a SIGHUP may change without a restart.
//
// Every key is declared once in config_keys() (name, reload class); the loader refuses keys
// that are not there, and config/README.md documents each of them (a test checks both).
// Errors name the file, line and column, the section and the key, and the reason:
//   dpnetback.toml:12:13: [port.uplink] rx_queues: 0 is out of range 1..128
// Every problem in a file is reported, one per line, not only the first.
//
// The result is the options of each part (Engine, ControlPlane, hypervisor, management,
// metrics, logging) plus every key's effective value rendered as text, which is what a
// reload compares to decide what changed.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/control/options.hpp"
#include "dpnb/engine/engine.hpp"
#include "dpnb/hv/xen.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::daemon {

inline constexpr std::string_view kDefaultConfigPath = "/etc/dpnetback/dpnetback.toml";

// The daemon's log components; each has its own level.
enum class Component : std::uint8_t { control, data, mgmt, hv, dpdk };
inline constexpr std::size_t kComponentCount = 5;
const char* to_string(Component c) noexcept;

// spdlog's levels, by the names the configuration uses.
enum class LogLevel : std::uint8_t { trace, debug, info, warn, error, critical, off };
const char* to_string(LogLevel l) noexcept;
Result<LogLevel> parse_log_level(std::string_view text);

enum class LogTarget : std::uint8_t {
    automatic, // the journal when stderr is connected to it (JOURNAL_STREAM) or detached
    journal,
    stderr_stream,
};
const char* to_string(LogTarget t) noexcept;

struct LogConfig {
    LogLevel level = LogLevel::info;
    std::array<std::optional<LogLevel>, kComponentCount> components{}; // unset: `level`
    LogTarget target = LogTarget::automatic;

    LogLevel of(Component c) const noexcept {
        return components[static_cast<std::size_t>(c)].value_or(level);
    }
};

enum class HypervisorKind : std::uint8_t { xen, sim };
const char* to_string(HypervisorKind k) noexcept;

struct HypervisorConfig {
    HypervisorKind kind = HypervisorKind::sim;
    std::optional<hv::DomId> self; // our domain id; unset: xen asks, sim uses 0
    std::string sim_dir = "/run/dpnetback/sim";
    bool sim_embedded = true; // start the simulated hypervisor inside the daemon
    hv::XenOptions xen;
};

struct ManagementConfig {
    std::string socket = "/run/dpnetback/dpnetbackd.sock";
    std::string group;                       // may use the socket besides root; empty: root only
    std::chrono::milliseconds timeout{5000}; // a client must send its request within this
    unsigned max_clients = 16;
};

struct MetricsConfig {
    bool enabled = true;
    std::string address = "127.0.0.1"; // IPv4 or IPv6 literal
    std::uint16_t port = 9591;
    std::chrono::milliseconds timeout{5000}; // request read + response write
    unsigned max_clients = 8;
};

// What SIGTERM does to the guests' vifs.
enum class ShutdownVifs : std::uint8_t {
    close, // Closing/Closed: guests lose their network until their vif is plugged again (a
           // Linux netfront stays Closed); for removing the daemon or the host's shutdown
    keep,  // detach and write nothing, as a crash would: a restarted daemon re-attaches and the
           // guests keep their network (upgrades; `systemctl restart` sends SIGTERM)
};
const char* to_string(ShutdownVifs v) noexcept;
Result<ShutdownVifs> parse_shutdown_vifs(std::string_view text);

struct Config {
    std::string path; // the file it came from; empty when no file was read
    HypervisorConfig hypervisor;
    LogConfig log;
    engine::EngineOptions engine;
    control::ControlOptions control;
    ManagementConfig management;
    MetricsConfig metrics;
    std::chrono::milliseconds shutdown_timeout{10000}; // frontends answering Closed on SIGTERM
    ShutdownVifs shutdown_vifs = ShutdownVifs::close;

    // Every key's effective value by its full name ("metrics.port", "port.uplink.mtu",
    // "vifs.rule.0.domid"), as text: what a reload compares.
    std::map<std::string, std::string> values;
};

// What a SIGHUP does with a changed key.
enum class Reload : std::uint8_t {
    live,    // applied at once
    restart, // structural: logged as "needs restart", not applied
};
const char* to_string(Reload r) noexcept;

struct KeyInfo {
    std::string_view name; // "metrics.port"; "port.*.mtu" for keys of every [port.NAME]
    Reload reload;
};
std::span<const KeyInfo> config_keys() noexcept;
// The reload class of a full key name ("port.uplink.mtu" matches "port.*.mtu"); rules
// ("vifs.rule.N.*") are structural.
Reload reload_class(std::string_view full_name) noexcept;

// Parses `text` as the file `path` (used in messages) with `overrides` ("section.key=value";
// the value is TOML, or a bare string) applied on top.
Result<Config> parse_config(std::string_view text, std::string_view path,
                            std::span<const std::string> overrides = {});
// Reads and parses `path`. A missing file is an error unless `optional_file` (then the
// built-in defaults plus the overrides are used, and Config::path stays empty).
Result<Config> load_config(const std::string& path, std::span<const std::string> overrides = {},
                           bool optional_file = false);

struct ConfigDiff {
    std::vector<std::string> live;    // changed keys applied by a reload
    std::vector<std::string> restart; // changed keys that need a restart
    bool empty() const noexcept { return live.empty() && restart.empty(); }
};
ConfigDiff diff(const Config& running, const Config& next);

} // namespace dpnb::daemon
