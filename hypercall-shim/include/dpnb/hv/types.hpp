// Identifiers shared by every hypervisor interface: domains, grant references, event
// channel ports. Kept tiny so that interface headers do not pull in implementations.
#pragma once

#include <cstdint>

#include "dpnb/netif/wire.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::hv {

using netif::DomId;
using netif::GrantRef;
using EvtchnPort = std::uint32_t;

inline constexpr DomId kDom0 = 0;
inline constexpr DomId kDomIdInvalid = 0x7FF4; // DOMID_INVALID
inline constexpr DomId kDomIdSelf = 0x7FF0;    // DOMID_SELF
inline constexpr GrantRef kGrantRefInvalid = 0xFFFFFFFFu;
inline constexpr std::size_t kPageSize = netif::kPageSize;

} // namespace dpnb::hv
