// The control plane's insides: one Vif record per backend folder and the Impl that owns them.
// control_plane.cpp has the event loop and the operations, discovery.cpp turns xenstore watch
// events into inputs, lifecycle.cpp feeds inputs to each vif's state machine and performs the
// effects, xs_io.cpp has the xenstore helpers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "dpnb/control/control_plane.hpp"
#include "dpnb/hv/xenstore.hpp"
#include "dpnb/netif/features.hpp"

namespace dpnb::control {

using Clock = std::chrono::steady_clock;

// At most `burst` messages per `interval`; the rest are counted and reported with the next
// message that gets through.
class LogLimiter {
public:
    // True when the caller may log now; `suppressed` is then the number dropped before.
    bool allow(Clock::time_point now, unsigned burst, std::chrono::milliseconds interval,
               std::uint64_t& suppressed) noexcept;

private:
    Clock::time_point window_start_{};
    unsigned in_window_ = 0;
    std::uint64_t suppressed_ = 0;
};

struct Vif {
    engine::VifId id;
    netif::BackendPath path;
    std::string name;     // "vif<dom>.<handle>", for logs
    std::string backend;  // the backend folder
    std::string frontend; // the frontend folder (from the toolstack's keys)
    std::string fe_token; // token of the watch on the frontend folder
    std::string domain_name;
    VifRole role = VifRole::unadopted;
    bool adopted = false;

    std::optional<netif::VifStateMachine> sm; // while served (and after, to report the phase)
    netif::ToolstackConfig toolstack;         // last good parse
    VifOverrides overrides;                   // from adopt() and set_rx_mode()

    bool watching_frontend = false;
    bool resume = false;        // the next attach takes over rings that may carry traffic
    bool detach_raised = false; // online = 0 or release(): detach is fed once
    bool hotplug_failed_logged = false;
    bool error_node_written = false;
    std::string invalid_frontend_state;      // the last unparsable state value fed
    std::optional<engine::VifSpec> attached; // what the data plane runs now

    // The reason the next report_error effect writes, set where the error was seen.
    std::optional<Error> pending_error;
    // Last error, for the CLI.
    std::optional<ControlError> last_error_kind;
    std::string last_error;
    std::string rx_mode_reason;
    std::uint64_t connects = 0;
    LogLimiter limiter;
};

class ControlPlane::Impl {
public:
    Impl(const ControlOptions& options, hv::BackendHypervisor& hv, engine::DataPlane& dp);
    ~Impl();
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    Status init();

    // control_plane.cpp
    Status process();
    void post(std::function<void()> task);
    void run_commands();
    Status adopt(const engine::VifId& id, const VifOverrides& overrides);
    Status release(const engine::VifId& id);
    Status set_rx_mode(const engine::VifId& id, engine::RxMode mode);
    VifInfo info(const Vif& v) const;
    Status shutdown(std::chrono::milliseconds timeout);
    void quiet_stop();
    void refresh_gauges();
    ControlCounters counters() const;
    void count(ControlEvent e) noexcept;
    void count(ControlError e) noexcept;

    // discovery.cpp
    Status handle_watch_events();
    void handle_watch(const hv::XsWatchEvent& ev);
    void scan();
    void discover(const netif::BackendPath& path);
    bool adopted_before(const Vif& v);
    void mark_adopted(Vif& v, bool adopted);
    Status load_toolstack(Vif& v);
    void serve(Vif& v);
    void backend_changed(Vif& v, std::string_view key);
    void folder_gone(Vif& v);
    void read_hotplug_status(Vif& v);
    void read_online(Vif& v);
    void read_rate(Vif& v);
    void frontend_changed(Vif& v);
    void read_mcast_control(Vif& v);
    void domains_changed();
    void handle_data_plane_events();

    // lifecycle.cpp
    void feed(Vif& v, netif::Input in);
    void log_step(const Vif& v, const netif::Step& s);
    void write_state(Vif& v, netif::XenbusState s);
    void publish_features(Vif& v);
    netif::Input connect(Vif& v);
    Result<engine::VifSpec> build_spec(Vif& v);
    void disconnect(Vif& v);
    bool reconfigure(Vif& v);
    Status reattach(Vif& v, engine::VifSpec spec, ControlError kind);
    void report_error(Vif& v, const netif::Step& s);
    void forget(Vif& v);
    void fail(Vif& v, ControlError kind, const Error& e);
    VifOverrides effective_overrides(const Vif& v) const;

    // xs_io.cpp
    netif::KeyReader reader(hv::XsTxn txn, const std::string& folder);
    // Reads `key` below `folder`: nullopt when it does not exist.
    Result<std::optional<std::string>> read_opt(const std::string& folder, std::string_view key);
    Result<bool> exists(const std::string& path);
    // Writes entries into `folder` in one transaction, only if the folder still exists
    // (a late write must not recreate a folder the toolstack removed). False if it is gone.
    Result<bool> write_if_present(const std::string& folder,
                                  const std::vector<netif::XsEntry>& entries);
    void write_error_node(Vif& v, const Error& e);
    void remove_error_node(Vif& v);

    ControlOptions options_;
    hv::BackendHypervisor& hv_;
    engine::DataPlane& dp_;
    std::unique_ptr<hv::Xenstore> xs_;
    netif::DomId self_ = 0;
    std::string root_; // /local/domain/<self>/backend/vif
    int epoll_fd_ = -1;
    int cmd_fd_ = -1; // eventfd: call() queued something, or run() is asked to stop
    std::map<engine::VifId, std::unique_ptr<Vif>> vifs_;
    std::map<std::string, engine::VifId, std::less<>> by_token_;
    bool stopped_ = false; // shutdown() ran: nothing new is served

    std::mutex cmd_mu_;
    std::deque<std::function<void()>> cmds_;

    std::array<std::atomic<std::uint64_t>, netif::kPhaseCount> gauge_phase_{};
    std::atomic<std::uint64_t> gauge_unadopted_{0};
    std::atomic<std::uint64_t> gauge_rejected_{0};
    std::array<std::atomic<std::uint64_t>, kControlEventCount> events_{};
    std::array<std::atomic<std::uint64_t>, kControlErrorCount> errors_{};
};

void log_xenstore_failure(std::string_view vif, std::string_view what, const Error& e);

inline constexpr std::string_view kRootToken = "dpnb-control:backend";
inline constexpr std::string_view kReleaseToken = "dpnb-control:release";
inline constexpr std::string_view kFrontendTokenPrefix = "dpnb-control:frontend:";
// adopted-only: the node in a backend folder that says a dpnetbackd adopted the vif.
inline constexpr std::string_view kAdoptedKey = "dpnetback-adopted";
inline constexpr std::string_view kReleaseDomain = "@releaseDomain";

} // namespace dpnb::control
