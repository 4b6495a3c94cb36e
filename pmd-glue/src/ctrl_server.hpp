// The backend side of a vif's netif control ring (docs/protocol.md): the ring and its event
// channel, served in budgeted rounds. Every answer comes from netback-core's ctrl::Handler
// through hv::CtrlRequests (which does the grant copies and table operations it asks for):
// the hash messages (the vif's HashConfig, which the engine hands to the data path) and the
// static-grant messages over the vif's persistent-grant table.
//
// Served on the control thread, not on an lcore: a frontend registers its RX pool once and
// then rarely changes it, and each ADD maps grants one by one (a hypercall per grant), which
// must not stall a poll loop. The lcores see the result through the table's
// TranslationTableView (translation_table.hpp's race protocol makes DEL safe against a
// concurrent acquire).
//
// Every request is copied out of the shared page before it is looked at, every list, key
// and mapping is copied out of the guest's page with one grant copy before it is parsed, and
// every count and index is checked. A producer index that claims more requests than the ring
// holds is a protocol error: serve() fails and the engine disables the vif.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dp_common.hpp"
#include "dpnb/hv/ctrl_requests.hpp"
#include "dpnb/hv/event_channel.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/persistent_grant_table.hpp"
#include "dpnb/netif/ctrl_handler.hpp"
#include "dpnb/netif/features.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::engine::detail {

class CtrlServer {
public:
    // Requests answered per serve() call. A frontend's whole hash set-up at connect (Windows
    // PV drivers send 7 messages) fits in one call; a frontend that keeps its ring full
    // holds the control thread, which also serves xenstore and every other vif, for at most
    // 8 messages (at most 8 x 512 grant maps) before the engine gets back to its loop.
    static constexpr std::uint32_t kServeBudget = 8;

    // Maps the ring page and binds the frontend's channel. `table` is null when the frontend
    // did not negotiate static grants (then every static-grant message is NOT_SUPPORTED).
    static Result<std::unique_ptr<CtrlServer>> open(hv::GrantTable& gt, hv::EventChannels& ev,
                                                    hv::DomId guest,
                                                    const netif::CtrlRingConfig& cfg,
                                                    hv::PersistentGrantTable* table,
                                                    std::uint32_t num_queues, std::string name);
    ~CtrlServer();
    CtrlServer(const CtrlServer&) = delete;
    CtrlServer& operator=(const CtrlServer&) = delete;

    hv::EvtchnPort port() const noexcept { return port_; }
    // Requests, statuses, refusals by reason.
    const netif::ctrl::CtrlCounters& counters() const noexcept {
        return requests_.handler().counters();
    }
    const hv::CtrlGrantCounts& grants() const noexcept { return requests_.grants(); }
    const netif::HashConfig& hash() const noexcept { return requests_.handler().hash(); }
    std::uint64_t hash_version() const noexcept { return requests_.handler().hash_version(); }

    // Answers up to kServeBudget requests, publishes the responses and notifies once. Returns
    // true when it stopped at the budget with requests left: the caller must call again
    // without waiting for an event (the frontend will not send one: req_event was not moved).
    // An error is a protocol violation by the frontend: stop serving this vif.
    Result<bool> serve();

    // Unbinds and unmaps (also done by the destructor). Idempotent.
    void close();

private:
    CtrlServer(hv::GrantTable& gt, hv::EventChannels& ev, hv::DomId guest,
               hv::PersistentGrantTable* table, std::uint32_t num_queues, std::string name);

    netif::ctrl::Response answer(const netif::ctrl::Request& req);

    hv::GrantTable& gt_;
    hv::EventChannels& ev_;
    const std::string name_;
    hv::CtrlRequests requests_;
    hv::GrantMapping ring_map_;
    netif::ctrl::BackRing ring_;
    hv::EvtchnPort port_ = 0;
    bool dead_ = false;
    LogLimiter log_;
};

} // namespace dpnb::engine::detail
