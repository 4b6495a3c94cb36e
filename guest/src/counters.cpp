// The counter table: names and help text for every netfront counter, in declaration order.
#include "dpnb/netfront/counters.hpp"

namespace dpnb::netfront {

const std::array<CounterInfo, kCounterCount>& counter_table() noexcept {
    static const std::array<CounterInfo, kCounterCount> table = {{
#define DPNB_X(name, help) {Counter::name, #name, help},
        DPNB_NETFRONT_COUNTERS(DPNB_X)
#undef DPNB_X
    }};
    return table;
}

} // namespace dpnb::netfront
