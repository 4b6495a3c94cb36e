// The control path: the toolstack's vif keys and permissions (libxl), and the netfront's
// xenbus handshake against the reflector backend in another process: the keys a Linux 6.1
// netfront writes, one and two queues, split and single event channels.
#include <set>

#include "traffic.hpp"

namespace dpnb::netfront::test {
namespace {

using hv::XsPerm;

std::set<std::string> keys_of(hv::Xenstore& xs, const std::string& path) {
    auto d = xs.directory(hv::kNoTxn, path);
    EXPECT_TRUE(d.has_value()) << path;
    return d ? std::set<std::string>(d->begin(), d->end()) : std::set<std::string>{};
}

class Toolstack : public NetfrontFixture {};

TEST_F(Toolstack, AddVifWritesLibxlKeysAndPermissions) {
    const hv::DomId dom = create_guest("ts-add");
    VifConfig v;
    v.guest = dom;
    v.handle = 3;
    v.mac = mac_for(dom, 3);
    v.mtu = 9000;
    v.ip.emplace("10.0.0.2");
    v.rate = netif::RateLimit{125000, 50000};
    NF_ASSERT_OK(add_vif(*xs_, v));
    auto paths = vif_paths(*xs_, dom, 0, 3);
    NF_ASSERT_OK(paths);
    const std::string fe = paths->frontend, be = paths->backend;
    EXPECT_EQ(fe, "/local/domain/" + std::to_string(dom) + "/device/vif/3");
    EXPECT_EQ(be, "/local/domain/0/backend/vif/" + std::to_string(dom) + "/3");
    EXPECT_EQ(paths->libxl, "/libxl/" + std::to_string(dom) + "/device/vif/3");

    const std::string mac = netif::format_mac(v.mac);
    EXPECT_EQ(keys_of(*xs_, fe), (std::set<std::string>{"backend", "backend-id", "state", "handle",
                                                        "mac", "trusted", "mtu"}));
    EXPECT_EQ(read(fe + "/backend"), be);
    EXPECT_EQ(read(fe + "/backend-id"), "0");
    EXPECT_EQ(read(fe + "/state"), "1");
    EXPECT_EQ(read(fe + "/handle"), "3");
    EXPECT_EQ(read(fe + "/mac"), mac);
    EXPECT_EQ(read(fe + "/trusted"), "1");
    EXPECT_EQ(read(fe + "/mtu"), "9000");
    EXPECT_EQ(
        keys_of(*xs_, be),
        (std::set<std::string>{"frontend", "frontend-id", "online", "state", "script", "mac", "ip",
                               "rate", "mtu", "bridge", "handle", "type", "hotplug-status"}));
    EXPECT_EQ(read(be + "/frontend"), fe);
    EXPECT_EQ(read(be + "/frontend-id"), std::to_string(dom));
    EXPECT_EQ(read(be + "/online"), "1");
    EXPECT_EQ(read(be + "/state"), "1");
    EXPECT_EQ(read(be + "/script"), "/etc/xen/scripts/vif-bridge");
    EXPECT_EQ(read(be + "/mac"), mac);
    EXPECT_EQ(read(be + "/ip"), "10.0.0.2");
    EXPECT_EQ(read(be + "/rate"), "125000,50000");
    EXPECT_EQ(read(be + "/mtu"), "9000");
    EXPECT_EQ(read(be + "/bridge"), "xenbr0");
    EXPECT_EQ(read(be + "/type"), "vif");
    EXPECT_EQ(read(be + "/hotplug-status"), "");
    EXPECT_EQ(read(paths->libxl + "/frontend"), fe);
    EXPECT_EQ(read(paths->libxl + "/backend"), be);
    EXPECT_EQ(read(paths->libxl + "/mac"), mac);

    // libxl__device_generic_add's permissions.
    const std::vector<XsPerm> fe_perms{{dom, XsPerm::none}, {0, XsPerm::read}};
    const std::vector<XsPerm> be_perms{{0, XsPerm::none}, {dom, XsPerm::read}};
    for (const char* k : {"", "/backend", "/backend-id", "/state", "/mac", "/trusted"}) {
        auto p = xs_->get_permissions(hv::kNoTxn, fe + k);
        NF_ASSERT_OK(p);
        EXPECT_EQ(*p, fe_perms) << fe + k;
    }
    auto mtu_perms = xs_->get_permissions(hv::kNoTxn, fe + "/mtu");
    NF_ASSERT_OK(mtu_perms);
    EXPECT_EQ(*mtu_perms, be_perms);
    for (const char* k : {"", "/frontend", "/state", "/mac", "/hotplug-status"}) {
        auto p = xs_->get_permissions(hv::kNoTxn, be + k);
        NF_ASSERT_OK(p);
        EXPECT_EQ(*p, be_perms) << be + k;
    }

    // The device exists: a second add is refused, as libxl refuses it.
    auto again = add_vif(*xs_, v);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, Errc::exists);

    // The backend's own parser accepts what the toolstack wrote.
    netif::KeyReader reader = [&](std::string_view key) -> Result<std::optional<std::string>> {
        return std::optional<std::string>(read(be + "/" + std::string(key)));
    };
    auto bp = netif::parse_backend_path(be);
    NF_ASSERT_OK(bp);
    auto tc = netif::parse_toolstack_config(reader, *bp);
    NF_ASSERT_OK(tc);
    EXPECT_EQ(tc->mac, v.mac);
    EXPECT_TRUE(tc->online);
    ASSERT_TRUE(tc->rate.has_value());
    EXPECT_EQ(tc->rate->bytes, 125000U);
}

TEST_F(Toolstack, RemovalAsksTheBackendThenRemovesEverything) {
    const hv::DomId dom = create_guest("ts-rm");
    NF_ASSERT_OK(plug(dom, 0));
    auto paths = vif_paths(*xs_, dom, 0, 0);
    NF_ASSERT_OK(paths);
    NF_ASSERT_OK(request_vif_removal(*xs_, dom, 0, 0));
    EXPECT_EQ(read(paths->backend + "/online"), "0");
    EXPECT_EQ(read(paths->backend + "/state"), "5");
    NF_ASSERT_OK(destroy_vif(*xs_, dom, 0, 0));
    EXPECT_FALSE(read(paths->frontend).has_value());
    EXPECT_FALSE(read(paths->backend).has_value());
    EXPECT_FALSE(read(paths->libxl).has_value());
    // libxl__xs_path_cleanup removes the parents that became empty, not the homes.
    EXPECT_FALSE(read("/local/domain/0/backend/vif/" + std::to_string(dom)).has_value());
    EXPECT_TRUE(read("/local/domain/" + std::to_string(dom)).has_value());
    // Nothing to remove any more: the removal request says so.
    auto gone = request_vif_removal(*xs_, dom, 0, 0);
    ASSERT_FALSE(gone.has_value());
    EXPECT_EQ(gone.error().code, Errc::not_found);
    // And the vif can be plugged again.
    NF_EXPECT_OK(plug(dom, 0));
}

TEST_F(Toolstack, RemovalWithoutABackendIsForcedAfterTheTimeout) {
    const hv::DomId dom = create_guest("ts-force");
    NF_ASSERT_OK(plug(dom, 0));
    // Nobody serves the backend folder: libxl's auto-force removes the device anyway.
    auto r = remove_vif(*xs_, dom, 0, 0, std::chrono::milliseconds(300));
    NF_ASSERT_OK(r);
    EXPECT_TRUE(r->forced);
    EXPECT_FALSE(read("/local/domain/" + std::to_string(dom) + "/device/vif/0").has_value());
    EXPECT_FALSE(read("/local/domain/0/backend/vif/" + std::to_string(dom) + "/0").has_value());
}

struct HandshakeCase {
    unsigned queues;
    bool split;
};

class Handshake : public NetfrontFixture, public ::testing::WithParamInterface<HandshakeCase> {};

// The backend offers what Linux netback offers in the lab (FINDINGS.md), four queues.
ReflectorOptions linux_like_backend() {
    ReflectorOptions o;
    o.caps.max_queues = 4;
    o.caps.xdp_headroom = true;
    o.caps.ctrl_ring = true;
    o.caps.rx_buffer_offset = false;
    return o;
}

TEST_P(Handshake, FrontendKeysAreLinuxNetfronts) {
    const HandshakeCase c = GetParam();
    ReflectorProcess backend(dir(), linux_like_backend());
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("hs");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    NetfrontOptions opts;
    opts.max_queues = c.queues;
    opts.split_event_channels = c.split;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        EXPECT_EQ(nf.num_queues(), c.queues);
        EXPECT_TRUE(nf.backend_features().rx_copy);
        Traffic t(nf);
        for (unsigned i = 0; i < 8; ++i)
            NF_ASSERT_OK(t.send(200 + i, i % nf.num_queues()));
        ASSERT_TRUE(t.wait_all());
        EXPECT_EQ(t.mismatch(), 0U);
        guest_end.send(1);
        (void)guest_end.recv(); // stay connected while the test reads xenstore
    });
    ASSERT_TRUE(test_end.recv().has_value());

    const std::string fe = "/local/domain/" + std::to_string(dom) + "/device/vif/0";
    // FINDINGS.md: the keys of Linux 6.1 netfront (with the toolstack's backend,
    // backend-id, handle, mac, mtu and trusted).
    std::set<std::string> expected{"backend",
                                   "backend-id",
                                   "handle",
                                   "mac",
                                   "mtu",
                                   "trusted",
                                   "state",
                                   "feature-gso-tcpv4",
                                   "feature-gso-tcpv6",
                                   "feature-ipv6-csum-offload",
                                   "feature-rx-notify",
                                   "feature-sg",
                                   "multi-queue-num-queues",
                                   "request-rx-copy",
                                   "xdp-headroom"};
    std::vector<std::string> queue_folders;
    if (c.queues == 1) {
        queue_folders.push_back(fe);
    } else {
        for (unsigned q = 0; q < c.queues; ++q) {
            expected.insert("queue-" + std::to_string(q));
            queue_folders.push_back(fe + "/queue-" + std::to_string(q));
        }
    }
    std::set<std::string> per_queue{"tx-ring-ref", "rx-ring-ref"};
    if (c.split) {
        per_queue.insert("event-channel-tx");
        per_queue.insert("event-channel-rx");
    } else {
        per_queue.insert("event-channel");
    }
    if (c.queues == 1) expected.insert(per_queue.begin(), per_queue.end());
    EXPECT_EQ(keys_of(*xs_, fe), expected);
    for (const std::string& qf : queue_folders) {
        if (c.queues > 1) {
            EXPECT_EQ(keys_of(*xs_, qf), per_queue) << qf;
        }
        for (const std::string& k : per_queue) {
            auto v = read(qf + "/" + k);
            ASSERT_TRUE(v.has_value()) << qf << "/" << k;
            EXPECT_TRUE(k.find("ring-ref") != std::string::npos
                            ? netif::parse_grant_ref(*v, k).has_value()
                            : netif::parse_evtchn_port(*v, k).has_value())
                << k << "=" << *v;
        }
    }
    EXPECT_EQ(read(fe + "/state"), "4");
    EXPECT_EQ(read(fe + "/multi-queue-num-queues"), std::to_string(c.queues));
    for (const char* k : {"request-rx-copy", "feature-rx-notify", "feature-sg", "feature-gso-tcpv4",
                          "feature-gso-tcpv6", "feature-ipv6-csum-offload"})
        EXPECT_EQ(read(fe + "/" + k), "1") << k;
    EXPECT_EQ(read(fe + "/xdp-headroom"), "0");
    EXPECT_EQ(read("/local/domain/0/backend/vif/" + std::to_string(dom) + "/0/state"), "4");

    // netback-core's parser reads exactly this configuration.
    netif::KeyReader reader = [&](std::string_view key) -> Result<std::optional<std::string>> {
        return std::optional<std::string>(read(fe + "/" + std::string(key)));
    };
    auto cfg = netif::parse_frontend_config(reader, linux_like_backend().caps);
    NF_ASSERT_OK(cfg);
    EXPECT_EQ(cfg->queues.size(), c.queues);
    for (const auto& q : cfg->queues)
        EXPECT_EQ(q.split_event_channels, c.split);
    EXPECT_TRUE(cfg->rx_notify);
    EXPECT_TRUE(cfg->sg);
    EXPECT_TRUE(cfg->gso_tcpv4);
    EXPECT_TRUE(cfg->gso_tcpv6);
    EXPECT_TRUE(cfg->ipv6_csum_offload);

    test_end.send(1);
    EXPECT_TRUE(guest.succeeded());
    EXPECT_TRUE(backend.quit());
}

INSTANTIATE_TEST_SUITE_P(Layouts, Handshake,
                         ::testing::Values(HandshakeCase{1, true}, HandshakeCase{1, false},
                                           HandshakeCase{2, true}, HandshakeCase{2, false}),
                         [](const auto& tp) {
                             return std::to_string(tp.param.queues) + "q_" +
                                    (tp.param.split ? "split" : "single");
                         });

class MinimalBackend : public NetfrontFixture {};

TEST_F(MinimalBackend, OneQueueSingleChannelNoXdpHeadroom) {
    ReflectorOptions o;
    o.caps = netif::BackendCapabilities{};
    o.caps.max_queues = 1;
    o.caps.split_event_channels = false;
    ReflectorProcess backend(dir(), o);
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("hs-old");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    NetfrontOptions opts;
    opts.max_queues = 4;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        EXPECT_EQ(nf.num_queues(), 1U);
        guest_end.send(1);
        (void)guest_end.recv();
    });
    ASSERT_TRUE(test_end.recv().has_value());
    const std::string fe = "/local/domain/" + std::to_string(dom) + "/device/vif/0";
    EXPECT_EQ(read(fe + "/multi-queue-num-queues"), "1"); // the backend offered 1
    EXPECT_TRUE(read(fe + "/event-channel").has_value());
    EXPECT_FALSE(read(fe + "/event-channel-tx").has_value());
    EXPECT_FALSE(read(fe + "/xdp-headroom").has_value()); // not offered: not written
    test_end.send(1);
    EXPECT_TRUE(guest.succeeded());
    EXPECT_TRUE(backend.quit());
}

} // namespace
} // namespace dpnb::netfront::test
