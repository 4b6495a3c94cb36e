// What the control plane is told at start: which vifs it serves, what it offers frontends,
// how each vif is plumbed into the data plane (RX mode, uplink port, NIC queue) and how it
// waits for the toolstack's hotplug script. The daemon fills this from its configuration
// file; the per-vif values can also come from the CLI (ControlPlane::adopt).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/engine/data_plane.hpp"
#include "dpnb/netif/features.hpp"
#include "dpnb/netif/xs_value.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::control {

// Which vifs under /local/domain/<self>/backend/vif the control plane takes on.
enum class VifSelection : std::uint8_t {
    // Every vif folder the toolstack creates (what Linux netback does). The only choice that
    // works with libxl's own flow: libxl waits for InitWait before it runs the hotplug script.
    all,
    // Only vifs handed over with ControlPlane::adopt() (an operator, or a toolstack that
    // calls dpnetbackctl before it waits for InitWait). Other folders are listed but left
    // untouched, so their state stays Initialising.
    adopted_only,
};
const char* to_string(VifSelection s) noexcept;
Result<VifSelection> parse_vif_selection(std::string_view text); // "all", "adopted-only"

// When Connected may be published (docs/xenbus.md: hotplug readiness gates Connected).
enum class HotplugWait : std::uint8_t {
    // Hold Connected until hotplug-status = "connected", as Linux netback does today. libxl
    // (>= 4.16) writes an empty hotplug-status at creation and the script writes
    // "connected"; a toolstack without scripts must write "connected" itself.
    always,
    // Hold it only while a hotplug-status node exists and is not "connected" (Linux 5.13's
    // rule, for toolstacks that never run a script and never write the node).
    if_present,
    // Never hold it (the daemon is the only thing that plumbs the vif).
    never,
};
const char* to_string(HotplugWait w) noexcept;
Result<HotplugWait> parse_hotplug_wait(std::string_view text); // "always", "if-present", "never"

// Per-vif settings that replace the defaults. Unset fields keep what the level below says.
struct VifOverrides {
    std::optional<netif::MacAddress> mac;  // instead of the toolstack's "mac"
    std::optional<engine::RxMode> rx_mode; // instead of ControlOptions::default_rx_mode
    std::optional<std::string> port;       // instead of ControlOptions::default_port
    std::optional<std::uint16_t> rx_queue; // a dedicated NIC RX queue

    // Fields set in `later` win.
    void merge(const VifOverrides& later);
    bool empty() const noexcept { return !mac && !rx_mode && !port && !rx_queue; }
    bool operator==(const VifOverrides&) const = default;
};

// A configuration rule: applies `set` to every vif it matches. Unset match fields match
// anything. Rules are applied in order, so general rules go first and specific ones last.
struct VifRule {
    // The guest's /local/domain/<dom>/name, as the toolstack wrote it (libxl makes the home
    // folder dom0's and read-only for the guest, so a guest cannot take another's name).
    std::optional<std::string> domain_name;
    std::optional<netif::DomId> domid;
    std::optional<std::uint32_t> handle;
    VifOverrides set;
};

struct ControlOptions {
    VifSelection serve = VifSelection::all;
    // Offered to every frontend (backend_feature_entries); checked by validate().
    netif::BackendCapabilities capabilities;
    HotplugWait hotplug = HotplugWait::always;

    engine::RxMode default_rx_mode = engine::RxMode::copy;
    std::string default_port; // the uplink port every vif uses unless a rule says otherwise
    std::vector<VifRule> vif_rules;

    // Errors from a guest are logged at most `error_log_burst` times per vif per interval;
    // the rest are counted and the count is logged with the next message.
    unsigned error_log_burst = 5;
    std::chrono::milliseconds error_log_interval{10'000};
};

// Capabilities valid (netif::validate), a default port, a sane log limit.
Status validate(const ControlOptions& options);

} // namespace dpnb::control
