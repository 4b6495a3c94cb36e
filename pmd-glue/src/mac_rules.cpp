// MAC steering rules (dpnb/pmd/mac_rules.hpp): rte_flow, and the simulated twin.
#include "dpnb/pmd/mac_rules.hpp"

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_flow.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

namespace dpnb::pmd {
namespace {

// One rule's pattern and action, kept together so that the pointers rte_flow reads stay
// valid for the call.
struct EthDstToQueue {
    rte_flow_attr attr{};
    rte_flow_item_eth spec{};
    rte_flow_item_eth mask{};
    std::array<rte_flow_item, 2> pattern{};
    rte_flow_action_queue queue{};
    std::array<rte_flow_action, 2> actions{};

    EthDstToQueue(const netif::MacAddress& mac, std::uint16_t q) {
        attr.ingress = 1;
        std::copy(mac.bytes.begin(), mac.bytes.end(), std::begin(spec.hdr.dst_addr.addr_bytes));
        std::memset(&mask.hdr.dst_addr, 0xFF, sizeof(mask.hdr.dst_addr));
        pattern[0].type = RTE_FLOW_ITEM_TYPE_ETH;
        pattern[0].spec = &spec;
        pattern[0].mask = &mask;
        pattern[1].type = RTE_FLOW_ITEM_TYPE_END;
        queue.index = q;
        actions[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
        actions[0].conf = &queue;
        actions[1].type = RTE_FLOW_ACTION_TYPE_END;
    }
    EthDstToQueue(const EthDstToQueue&) = delete;
    EthDstToQueue& operator=(const EthDstToQueue&) = delete;
};

std::string flow_error(const rte_flow_error& err, int rc) {
    if (err.message != nullptr) return err.message;
    return rte_strerror(rc < 0 ? -rc : rc);
}

class RteFlowMacRules final : public MacRules {
public:
    Status validate(std::uint16_t port_id, std::uint16_t q) override {
        const EthDstToQueue r(netif::MacAddress{{0x02, 0, 0, 0, 0, 1}}, q);
        rte_flow_error err{};
        const int rc =
            rte_flow_validate(port_id, &r.attr, r.pattern.data(), r.actions.data(), &err);
        if (rc != 0)
            return make_error(Errc::unsupported, "rte_flow_validate: " + flow_error(err, rc));
        return ok();
    }
    Result<Rule> add(std::uint16_t port_id, const netif::MacAddress& mac,
                     std::uint16_t q) override {
        const EthDstToQueue r(mac, q);
        rte_flow_error err{};
        rte_flow* f = rte_flow_create(port_id, &r.attr, r.pattern.data(), r.actions.data(), &err);
        if (f == nullptr)
            return make_error(Errc::unsupported, "rte_flow_create: " + flow_error(err, -rte_errno));
        return static_cast<Rule>(f);
    }
    Status remove(std::uint16_t port_id, Rule rule) override {
        rte_flow_error err{};
        if (const int rc = rte_flow_destroy(port_id, static_cast<rte_flow*>(rule), &err); rc != 0)
            return make_error(Errc::io, "rte_flow_destroy: " + flow_error(err, rc));
        return ok();
    }
};

} // namespace

MacRules& rte_flow_mac_rules() {
    static RteFlowMacRules rules;
    return rules;
}

Status SimMacRules::validate(std::uint16_t, std::uint16_t) {
    std::lock_guard lock(mu_);
    if (refuse_) return make_error(Errc::unsupported, "the simulated NIC has no MAC rules");
    return ok();
}

Result<MacRules::Rule> SimMacRules::add(std::uint16_t port_id, const netif::MacAddress& mac,
                                        std::uint16_t q) {
    std::lock_guard lock(mu_);
    if (refuse_) return make_error(Errc::unsupported, "the simulated NIC has no MAC rules");
    // A NIC takes one rule per destination: a second would make the first's queue ambiguous.
    for (const auto& e : entries_)
        if (e->port == port_id && e->mac == mac)
            return make_error(Errc::busy, "a rule for this MAC exists already");
    entries_.push_back(std::make_unique<Entry>(Entry{port_id, mac, q}));
    return static_cast<Rule>(entries_.back().get());
}

Status SimMacRules::remove(std::uint16_t port_id, Rule rule) {
    std::lock_guard lock(mu_);
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) {
        return e.get() == static_cast<Entry*>(rule) && e->port == port_id;
    });
    if (it == entries_.end()) return make_error(Errc::not_found, "no such rule on this port");
    entries_.erase(it);
    return ok();
}

std::uint16_t SimMacRules::queue_for(std::uint16_t port_id, const netif::MacAddress& dst) const {
    std::lock_guard lock(mu_);
    for (const auto& e : entries_)
        if (e->port == port_id && e->mac == dst) return e->queue;
    return 0;
}

std::size_t SimMacRules::rules(std::uint16_t port_id) const {
    std::lock_guard lock(mu_);
    return static_cast<std::size_t>(std::count_if(
        entries_.begin(), entries_.end(), [&](const auto& e) { return e->port == port_id; }));
}

void SimMacRules::refuse(bool on) {
    std::lock_guard lock(mu_);
    refuse_ = on;
}

} // namespace dpnb::pmd
