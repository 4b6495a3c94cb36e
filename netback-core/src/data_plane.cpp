// Names and tables of the control/data plane contract (dpnb/engine/data_plane.hpp).
#include "dpnb/engine/data_plane.hpp"

#include <array>

namespace dpnb::engine {

const char* to_string(RxMode mode) noexcept {
    switch (mode) {
    case RxMode::copy:
        return "copy";
    case RxMode::map:
        return "map";
    case RxMode::reuse:
        return "reuse";
    }
    return "unknown";
}

Result<RxMode> parse_rx_mode(std::string_view text) {
    if (text == "copy") return RxMode::copy;
    if (text == "map") return RxMode::map;
    if (text == "reuse") return RxMode::reuse;
    return make_error(Errc::invalid_argument,
                      "RX mode must be copy, map or reuse, not " + netif::quote(text));
}

std::string to_string(const VifId& id) {
    return "vif" + std::to_string(id.dom) + "." + std::to_string(id.handle);
}

namespace {
using CounterStats = VifCounters;
constexpr auto kCounters = make_counter_table<VifCounters>({DPNB_VIF_COUNTERS(DPNB_COUNTER_FIELD)});
} // namespace

std::span<const CounterInfo> vif_counter_table() noexcept {
    return kCounters.info;
}

std::uint64_t counter_value(const VifCounters& c, std::size_t i) noexcept {
    return kCounters.value(c, i);
}

} // namespace dpnb::engine
