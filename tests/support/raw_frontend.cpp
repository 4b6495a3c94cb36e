// TEST-ONLY raw frontend (raw_frontend.hpp).
#include "raw_frontend.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "dpnb/netfront/toolstack.hpp"

namespace dpnb::test {

void RawFrontend::open(const std::string& dir, hv::DomId d, std::uint32_t npages) {
    dom = d;
    auto h = hv::sim::connect_guest(dir, dom);
    ASSERT_TRUE(h.has_value()) << h.error().describe();
    hv = std::move(*h);
    auto x = hv->open_xenstore();
    ASSERT_TRUE(x.has_value()) << x.error().describe();
    xs = std::move(*x);
    auto e = hv->open_event_channels();
    ASSERT_TRUE(e.has_value()) << e.error().describe();
    ev = std::move(*e);
    auto p = hv->alloc_pages(npages);
    ASSERT_TRUE(p.has_value()) << p.error().describe();
    pages = *p;
    auto t = netif::TxFrontRing::init(pages.page(0));
    auto r = netif::RxFrontRing::init(pages.page(1));
    ASSERT_TRUE(t && r);
    tx = *t;
    rx = *r;
    auto tr = hv->grant_access(hv::kDom0, pages.page(0), false);
    auto rr = hv->grant_access(hv::kDom0, pages.page(1), false);
    ASSERT_TRUE(tr && rr);
    tx_ref = *tr;
    rx_ref = *rr;
    auto tp = ev->bind_unbound(hv::kDom0);
    auto rp = ev->bind_unbound(hv::kDom0);
    ASSERT_TRUE(tp && rp);
    tx_port = *tp;
    rx_port = *rp;
}

XsKeys RawFrontend::open_ctrl_ring(std::uint32_t page) {
    auto cr = netif::ctrl::FrontRing::init(pages.page(page));
    EXPECT_TRUE(cr);
    if (cr) ctrl = *cr;
    auto ref = hv->grant_access(hv::kDom0, pages.page(page), false);
    auto port = ev->bind_unbound(hv::kDom0);
    EXPECT_TRUE(ref && port);
    if (!ref || !port) return {};
    ctrl_port = *port;
    return {{"ctrl-ring-ref", std::to_string(*ref)}, {"event-channel-ctrl", std::to_string(*port)}};
}

void RawFrontend::push_ctrl() {
    if (ctrl.push_requests()) (void)ev->notify(ctrl_port);
}

void RawFrontend::connect(const XsKeys& extra, int timeout_ms) {
    const std::string fe = "/local/domain/" + std::to_string(dom) + "/device/vif/0";
    XsKeys keys = {
        {"tx-ring-ref", std::to_string(tx_ref)},
        {"rx-ring-ref", std::to_string(rx_ref)},
        {"event-channel-tx", std::to_string(tx_port)},
        {"event-channel-rx", std::to_string(rx_port)},
        {"request-rx-copy", "1"},
        {"feature-rx-notify", "1"},
    };
    keys.insert(keys.end(), extra.begin(), extra.end());
    keys.emplace_back("state", "4");
    for (const auto& [k, v] : keys)
        ASSERT_TRUE(xs->write(hv::kNoTxn, fe + "/" + k, v).has_value()) << k;
    const std::string be = "/local/domain/0/backend/vif/" + std::to_string(dom) + "/0";
    for (int i = 0; i < timeout_ms / 10; ++i) {
        auto st = xs->read(hv::kNoTxn, be + "/state");
        if (st && *st == "4") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

void plug_vif(const std::string& dir, hv::DomId dom, const netif::MacAddress& mac) {
    auto xs = hv::open_xenstore(dir + "/xenstore-0.sock");
    ASSERT_TRUE(xs.has_value()) << xs.error().describe();
    netfront::VifConfig vif;
    vif.guest = dom;
    vif.mac = mac;
    auto added = netfront::add_vif(**xs, vif);
    ASSERT_TRUE(added.has_value()) << added.error().describe();
    auto paths = netfront::vif_paths(**xs, dom, hv::kDom0, 0);
    ASSERT_TRUE(paths.has_value()) << paths.error().describe();
    ASSERT_TRUE(
        (*xs)->write(hv::kNoTxn, paths->backend + "/hotplug-status", "connected").has_value());
}

} // namespace dpnb::test
