// Carries out one vif's netif control-ring requests for a backend: netback-core's
// ctrl::Handler decides every answer and asks, through its plans, for a grant copy out of
// the guest (a key, a mapping, a static-grant list) or a persistent-grant table operation;
// this does them with the backend's GrantTable and the vif's PersistentGrantTable. The
// engine's CtrlServer and the tests' reflector both answer through it; each owns its ring.
// Control-plane code: it allocates, and runs on one thread.
#pragma once

#include <array>
#include <cstdint>

#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/persistent_grant_table.hpp"
#include "dpnb/netif/ctrl_handler.hpp"

namespace dpnb::hv {

struct CtrlGrantCounts {
    std::uint64_t added = 0;   // entries registered
    std::uint64_t removed = 0; // entries removed
    std::uint64_t busy = 0;    // DEL entries refused because in flight
};

class CtrlRequests {
public:
    // `table` is null when the frontend did not negotiate static grants (those messages are
    // then NOT_SUPPORTED).
    CtrlRequests(GrantTable& gt, DomId guest, PersistentGrantTable* table,
                 std::uint32_t num_queues);

    // The response to one request copied out of the ring; `error` says why it is
    // INVALID_PARAMETER.
    netif::ctrl::Answer answer(const netif::ctrl::Request& req);

    const netif::ctrl::Handler& handler() const noexcept { return handler_; }
    const CtrlGrantCounts& grants() const noexcept { return grants_; }

private:
    // One grant copy out of the guest into buf_.
    bool copy_in(const netif::ctrl::GuestCopy& c);
    netif::ctrl::CtrlError add(const netif::ctrl::Plan& plan);
    netif::ctrl::CtrlError remove(const netif::ctrl::Plan& plan, std::uint32_t& removed);

    GrantTable& gt_;
    const DomId guest_;
    PersistentGrantTable* const table_;
    netif::ctrl::Handler handler_;
    CtrlGrantCounts grants_;
    alignas(8) std::array<std::byte, netif::ctrl::kCopyBufferSize> buf_{};
};

} // namespace dpnb::hv
