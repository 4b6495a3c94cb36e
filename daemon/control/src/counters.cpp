// The counter tables of dpnb/control/counters.hpp.
#include "dpnb/control/counters.hpp"

namespace dpnb::control {

namespace {

constexpr std::array<ControlCounterInfo, kControlEventCount> kEvents = {{
#define DPNB_X(name, help) {#name, help},
    DPNB_CONTROL_EVENTS(DPNB_X)
#undef DPNB_X
}};

constexpr std::array<ControlCounterInfo, kControlErrorCount> kErrors = {{
#define DPNB_X(name, help) {#name, help},
    DPNB_CONTROL_ERRORS(DPNB_X)
#undef DPNB_X
}};

} // namespace

std::span<const ControlCounterInfo> control_event_table() noexcept {
    return kEvents;
}

std::span<const ControlCounterInfo> control_error_table() noexcept {
    return kErrors;
}

const char* to_string(ControlEvent e) noexcept {
    const auto i = static_cast<std::size_t>(e);
    return i < kEvents.size() ? kEvents[i].name : "unknown";
}

const char* to_string(ControlError e) noexcept {
    const auto i = static_cast<std::size_t>(e);
    return i < kErrors.size() ? kErrors[i].name : "unknown";
}

} // namespace dpnb::control
