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
constexpr std::array kCounters = {
#define DPNB_X(name, help) CounterInfo{#name, help},
    DPNB_VIF_COUNTERS(DPNB_X)
#undef DPNB_X
};
} // namespace

std::span<const CounterInfo> vif_counter_table() noexcept {
    return kCounters;
}

std::uint64_t counter_value(const VifCounters& c, std::size_t i) noexcept {
    std::size_t k = 0;
#define DPNB_X(name, help)                                                                         \
    if (k++ == i) return c.name;
    DPNB_VIF_COUNTERS(DPNB_X)
#undef DPNB_X
    return 0;
}

} // namespace dpnb::engine
