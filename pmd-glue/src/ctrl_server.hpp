// The backend side of a vif's netif control ring (docs/protocol.md): the static-grant
// messages GET_GREF_MAPPING_SIZE, ADD_GREF_MAPPING and DEL_GREF_MAPPING over the vif's
// persistent-grant table, NOT_SUPPORTED for everything else (netif.h's hash messages).
//
// Served on the control thread, not on an lcore: a frontend registers its RX pool once and
// then rarely changes it, and each ADD maps grants one by one (a hypercall per grant), which
// must not stall a poll loop. The lcores see the result through the table's
// TranslationTableView (translation_table.hpp's race protocol makes DEL safe against a
// concurrent acquire).
//
// Every request is copied out of the shared page before it is looked at, every list is
// copied out of the guest's page with one grant copy before it is parsed, and every count
// and index is checked. A producer index that claims more requests than the ring holds is a
// protocol error: serve() fails and the engine disables the vif.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dpnb/hv/event_channel.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/persistent_grant_table.hpp"
#include "dpnb/netif/ctrl_ring.hpp"
#include "dpnb/netif/features.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::engine::detail {

struct CtrlCounters {
    std::uint64_t requests = 0;
    std::uint64_t not_supported = 0;
    std::uint64_t invalid = 0;       // answered INVALID_PARAMETER
    std::uint64_t grefs_added = 0;   // entries registered
    std::uint64_t grefs_removed = 0; // entries removed
    std::uint64_t grefs_busy = 0;    // DEL entries refused because in flight
};

class CtrlServer {
public:
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
    const CtrlCounters& counters() const noexcept { return counters_; }

    // Answers every request on the ring, publishes the responses, notifies once. An error
    // is a protocol violation by the frontend: stop serving this vif. Bounded by the ring:
    // the responses are published only on return, so a frontend cannot free a slot (and
    // produce again) while this runs, and a producer index beyond the ring is the error.
    // A frontend that keeps its ring full cannot hold the control thread.
    Status serve();

    // Unbinds and unmaps (also done by the destructor). Idempotent.
    void close();

private:
    CtrlServer(hv::GrantTable& gt, hv::EventChannels& ev, hv::DomId guest,
               hv::PersistentGrantTable* table, std::uint32_t num_queues, std::string name)
        : gt_(gt), ev_(ev), guest_(guest), table_(table), num_queues_(num_queues),
          name_(std::move(name)) {}

    netif::ctrl::Response answer(const netif::ctrl::Request& req);
    std::uint32_t add(const netif::ctrl::Request& req);
    std::uint32_t del(const netif::ctrl::Request& req, std::uint32_t& removed);
    // Copies the request's list out of the guest page; false when the message is malformed.
    bool read_list(const netif::ctrl::Request& req, std::uint32_t& n);

    hv::GrantTable& gt_;
    hv::EventChannels& ev_;
    const hv::DomId guest_;
    hv::PersistentGrantTable* const table_;
    const std::uint32_t num_queues_;
    const std::string name_;
    hv::GrantMapping ring_map_;
    netif::ctrl::BackRing ring_;
    hv::EvtchnPort port_ = 0;
    bool dead_ = false;
    CtrlCounters counters_;
    netif::ctrl::Gref list_[netif::ctrl::kMaxGrefsPerMessage];
};

} // namespace dpnb::engine::detail
