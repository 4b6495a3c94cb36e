// The control plane's counters for the management plane: vifs per lifecycle phase (gauges),
// events (handshakes, attaches, ...) and errors by kind. Each list is declared once, as VPP
// declares its error counters, and yields the enum, the metric name and its help text.
//
// The control thread is the only writer; ControlPlane::counters() may be read from any
// thread (a metrics scrape) without stopping it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dpnb/netif/xenbus_state.hpp"

namespace dpnb::control {

// X(name, help)
#define DPNB_CONTROL_EVENTS(X)                                                                     \
    X(vifs_discovered, "vif folders found in the backend folder")                                  \
    X(vifs_forgotten, "vifs the control plane stopped serving")                                    \
    X(handshakes, "connections completed: data path attached and Connected published")             \
    X(attaches, "vifs attached to the data plane")                                                 \
    X(resumed_attaches, "attaches that took over rings after a daemon restart (resume)")           \
    X(detaches, "vifs detached from the data plane")                                               \
    X(reattaches, "running vifs attached again with a new configuration (resume)")                 \
    X(xenstore_events, "xenstore watch events handled")                                            \
    X(data_plane_events, "events received from the data plane")

#define DPNB_CONTROL_ERRORS(X)                                                                     \
    X(frontend_config, "frontend keys malformed, inconsistent or asking for what was not offered") \
    X(frontend_state, "frontend states that are unparsable or that a frontend never writes")       \
    X(toolstack_config, "toolstack keys in a backend folder that are malformed")                   \
    X(hotplug_script, "hotplug scripts that reported an error (hotplug-status = error)")           \
    X(attach, "vifs the data plane refused to attach")                                             \
    X(detach, "data-plane detaches that failed")                                                   \
    X(data_plane_disabled, "vifs the data plane disabled after a fatal protocol error")            \
    X(reconfigure, "reconfigurations (xdp-headroom, new settings) that failed")                    \
    X(xenstore, "xenstore reads and writes that failed")                                           \
    X(unexpected, "transitions the state machine calls unexpected (a dpnetback bug)")

enum class ControlEvent : std::uint8_t {
#define DPNB_X(name, help) name,
    DPNB_CONTROL_EVENTS(DPNB_X)
#undef DPNB_X
};

enum class ControlError : std::uint8_t {
#define DPNB_X(name, help) name,
    DPNB_CONTROL_ERRORS(DPNB_X)
#undef DPNB_X
};

inline constexpr std::size_t kControlEventCount = 0
#define DPNB_X(name, help) +1
    DPNB_CONTROL_EVENTS(DPNB_X)
#undef DPNB_X
    ;
inline constexpr std::size_t kControlErrorCount = 0
#define DPNB_X(name, help) +1
    DPNB_CONTROL_ERRORS(DPNB_X)
#undef DPNB_X
    ;

struct ControlCounterInfo {
    const char* name;
    const char* help;
};
std::span<const ControlCounterInfo> control_event_table() noexcept; // ControlEvent order
std::span<const ControlCounterInfo> control_error_table() noexcept; // ControlError order
const char* to_string(ControlEvent e) noexcept;
const char* to_string(ControlError e) noexcept;

// A snapshot.
struct ControlCounters {
    // Served vifs by phase (netif::Phase order); `gone` counts vifs forgotten whose folder
    // is still there.
    std::array<std::uint64_t, netif::kPhaseCount> vifs_by_phase{};
    std::uint64_t vifs_unadopted = 0; // folders left alone (VifSelection::adopted_only)
    std::uint64_t vifs_rejected = 0;  // folders whose toolstack keys do not parse
    std::array<std::uint64_t, kControlEventCount> events{};
    std::array<std::uint64_t, kControlErrorCount> errors{};

    std::uint64_t event(ControlEvent e) const noexcept {
        return events[static_cast<std::size_t>(e)];
    }
    std::uint64_t error(ControlError e) const noexcept {
        return errors[static_cast<std::size_t>(e)];
    }
    std::uint64_t vifs(netif::Phase p) const noexcept {
        return vifs_by_phase[static_cast<std::size_t>(p)];
    }
};

} // namespace dpnb::control
