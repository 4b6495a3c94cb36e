// The netif control ring's wire format lives in netback-core (dpnb/netif/ctrl_ring.hpp),
// shared by the netfront (frontend side) and the daemon's engine (backend side).
#pragma once

#include "dpnb/netif/ctrl_ring.hpp"

namespace dpnb::netfront {
namespace ctrl = netif::ctrl;
} // namespace dpnb::netfront
