// How a mac_flow port sends the frames for one destination MAC to one RX queue: the boundary
// under Port's MAC steering (docs/datapath.md, "Steering"). RteFlowMacRules asks the PMD for
// rte_flow rules (eth dst -> queue), as a NIC with flow rules takes them; SimMacRules is the
// simulated twin: a table that a test's NIC (a net_ring peer playing a NIC that steers by MAC,
// PortConfig::rx_peer_fills_pool) reads for each frame it receives from the wire, so that
// mac_flow steering, its dedicated zero-copy queues and their rules' life are tested on a
// machine whose virtual PMDs have no usable flow rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "dpnb/netif/xs_value.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::pmd {

class MacRules {
public:
    using Rule = void*; // opaque: what add() returned, for remove()

    virtual ~MacRules() = default;
    // A dry run: whether port `port_id` takes a rule sending a MAC to RX queue `q`.
    virtual Status validate(std::uint16_t port_id, std::uint16_t q) = 0;
    // Frames whose destination is `mac` go to RX queue `q` from now on.
    virtual Result<Rule> add(std::uint16_t port_id, const netif::MacAddress& mac,
                             std::uint16_t q) = 0;
    virtual Status remove(std::uint16_t port_id, Rule rule) = 0;
};

// rte_flow on the port's PMD: ingress, eth dst (all 48 bits) -> QUEUE.
MacRules& rte_flow_mac_rules();

// The twin. Thread-safe: the engine adds and removes rules on its control thread while the
// test's NIC looks frames up on its own.
class SimMacRules final : public MacRules {
public:
    Status validate(std::uint16_t port_id, std::uint16_t q) override;
    Result<Rule> add(std::uint16_t port_id, const netif::MacAddress& mac, std::uint16_t q) override;
    Status remove(std::uint16_t port_id, Rule rule) override;

    // The NIC's lookup: the RX queue of the rule for `dst` on `port_id`, 0 (the default
    // queue) where none matches.
    std::uint16_t queue_for(std::uint16_t port_id, const netif::MacAddress& dst) const;
    // Rules in place on `port_id`.
    std::size_t rules(std::uint16_t port_id) const;
    // A NIC without MAC rules: validate() and add() fail from now on.
    void refuse(bool on);

private:
    struct Entry {
        std::uint16_t port;
        netif::MacAddress mac;
        std::uint16_t queue;
    };
    mutable std::mutex mu_;
    bool refuse_ = false;
    std::vector<std::unique_ptr<Entry>> entries_; // a Rule is an Entry*
};

} // namespace dpnb::pmd
