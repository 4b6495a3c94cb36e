// Names, parsers and validation of the control plane's options (dpnb/control/options.hpp).
#include "dpnb/control/options.hpp"

namespace dpnb::control {

const char* to_string(VifSelection s) noexcept {
    switch (s) {
    case VifSelection::all:
        return "all";
    case VifSelection::adopted_only:
        return "adopted-only";
    }
    return "unknown";
}

Result<VifSelection> parse_vif_selection(std::string_view text) {
    if (text == "all") return VifSelection::all;
    if (text == "adopted-only") return VifSelection::adopted_only;
    return make_error(Errc::invalid_argument,
                      "vif selection must be all or adopted-only, not " + netif::quote(text));
}

const char* to_string(HotplugWait w) noexcept {
    switch (w) {
    case HotplugWait::always:
        return "always";
    case HotplugWait::if_present:
        return "if-present";
    case HotplugWait::never:
        return "never";
    }
    return "unknown";
}

Result<HotplugWait> parse_hotplug_wait(std::string_view text) {
    if (text == "always") return HotplugWait::always;
    if (text == "if-present") return HotplugWait::if_present;
    if (text == "never") return HotplugWait::never;
    return make_error(Errc::invalid_argument,
                      "hotplug wait must be always, if-present or never, not " +
                          netif::quote(text));
}

void VifOverrides::merge(const VifOverrides& later) {
    if (later.mac) mac = later.mac;
    if (later.rx_mode) rx_mode = later.rx_mode;
    if (later.port) port = later.port;
    if (later.rx_queue) rx_queue = later.rx_queue;
}

namespace {

Status validate_overrides(const VifOverrides& o, const std::string& where) {
    if (o.mac && (o.mac->is_multicast() || o.mac->is_zero()))
        return make_error(Errc::invalid_argument, where + ": mac " + netif::format_mac(*o.mac) +
                                                      " is not a unicast address");
    if (o.port && o.port->empty())
        return make_error(Errc::invalid_argument, where + ": empty port name");
    return ok();
}

} // namespace

Status validate(const ControlOptions& options) {
    if (Status st = netif::validate(options.capabilities); !st)
        return make_error(Errc::invalid_argument, "backend capabilities: " + st.error().message);
    if (options.default_port.empty())
        return make_error(Errc::invalid_argument, "no default port: every vif needs an uplink");
    if (options.error_log_burst == 0 || options.error_log_interval.count() <= 0)
        return make_error(Errc::invalid_argument,
                          "error log limit: the burst and the interval must be positive");
    for (std::size_t i = 0; i < options.vif_rules.size(); ++i)
        if (Status st =
                validate_overrides(options.vif_rules[i].set, "vif rule " + std::to_string(i));
            !st)
            return st;
    return ok();
}

} // namespace dpnb::control
