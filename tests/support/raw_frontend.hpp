// TEST-ONLY: a netif frontend written by hand over the simulated hypervisor's guest API, for
// tests that play a hostile or abusive guest against a backend (the component tests' Engine,
// the process tests' dpnetbackd). One queue's TX and RX rings in pages 0 and 1 (granted to
// dom0) with their event channels, `npages` pages in all (the rest are the caller's), and
// optionally a netif control ring in a page of the caller's choice. Failures are gtest
// assertions.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dpnb/hv/event_channel.hpp"
#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/hv/xenstore.hpp"
#include "dpnb/netif/ctrl_ring.hpp"
#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace dpnb::test {

using XsKeys = std::vector<std::pair<std::string, std::string>>;

struct RawFrontend {
    hv::DomId dom = 0;
    std::unique_ptr<hv::GuestHypervisor> hv;
    std::unique_ptr<hv::Xenstore> xs;
    std::unique_ptr<hv::EventChannels> ev;
    hv::GuestPages pages;
    netif::TxFrontRing tx;
    netif::RxFrontRing rx;
    netif::GrantRef tx_ref = 0, rx_ref = 0;
    hv::EvtchnPort tx_port = 0, rx_port = 0;
    netif::ctrl::FrontRing ctrl;
    hv::EvtchnPort ctrl_port = 0;

    // Claims domain `d` of the simulated hypervisor in `dir` and sets up the rings.
    void open(const std::string& dir, hv::DomId d, std::uint32_t npages);
    // A control ring in page `page`, granted writable to dom0, with an unbound channel:
    // the keys that announce it (ctrl-ring-ref, event-channel-ctrl).
    XsKeys open_ctrl_ring(std::uint32_t page);
    // Puts the control ring's new requests on the shared ring and notifies when asked to.
    void push_ctrl();
    // Writes the rings' keys, `extra` and Connected, then waits (up to `timeout_ms`) for the
    // backend's Connected.
    void connect(const XsKeys& extra, int timeout_ms = 60000);
};

// `xl network-attach` for a raw frontend: the vif's folders (dom0's xenstore in `dir`), then
// hotplug-status = connected as the vif script would write it.
void plug_vif(const std::string& dir, hv::DomId dom, const netif::MacAddress& mac);

} // namespace dpnb::test
