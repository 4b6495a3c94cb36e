// The handshake against the test netfront in its own process: the keys the backend publishes
// (Linux netback's), InitWait, Connected held for the hotplug script, the VifSpec handed to
// the data plane (one and two queues, split and shared event channels), and traffic over the
// rings the data plane mapped.
#include <map>

#include "harness.hpp"

namespace dpnb::control {

void PrintTo(HotplugWait w, std::ostream* os) {
    *os << to_string(w);
}

namespace test {
namespace {

struct HandshakeCase {
    unsigned queues;
    bool split;
};

void PrintTo(const HandshakeCase& c, std::ostream* os) {
    *os << c.queues << " queue(s), " << (c.split ? "split" : "shared") << " event channels";
}

class ControlHandshake : public ControlFixture,
                         public ::testing::WithParamInterface<HandshakeCase> {};

// What the frontend wrote for its queues, read back as dom0.
struct WrittenQueue {
    std::string tx_ring_ref, rx_ring_ref, tx_evtchn, rx_evtchn;
};

TEST_P(ControlHandshake, ReachesConnectedWithLinuxKeysAndTheFrontendsConfig) {
    const HandshakeCase c = GetParam();
    start_daemon();
    const hv::DomId dom = create_guest("hs");
    CT_ASSERT_OK(plug(dom));
    const std::string be = backend_path(dom), fe = frontend_path(dom);

    // Probe: features, then InitWait (libxl waits for it before it runs the script).
    ASSERT_TRUE(backend_state_is(dom, "2"));
    const std::map<std::string, std::string> features{
        {"feature-sg", "1"},
        {"feature-gso-tcpv4", "1"},
        {"feature-gso-tcpv6", "1"},
        {"feature-ipv6-csum-offload", "1"},
        {"feature-rx-copy", "1"},
        {"feature-xdp-headroom", "1"},
        {"feature-rx-flip", "0"},
        {"feature-multicast-control", "1"},
        {"feature-dynamic-multicast-control", "1"},
        {"feature-split-event-channels", "1"},
        {"multi-queue-max-queues", "4"},
        {"feature-ctrl-ring", "1"},
        {"feature-static-grants", "0"},
        {"feature-rx-buffer-offset", "1"},
    };
    std::set<std::string> expected{"frontend", "frontend-id", "online", "state", "script",
                                   "mac",      "bridge",      "handle", "type",  "hotplug-status"};
    for (const auto& [k, v] : features) {
        expected.insert(k);
        EXPECT_EQ(read(be + "/" + k), v) << k;
    }
    EXPECT_EQ(keys(be), expected);

    // The frontend connects; Connected is held until the hotplug script is done.
    GuestOptions o;
    o.queues = c.queues;
    o.split = c.split;
    GuestProcess& g = spawn_guest(dom, o);
    ASSERT_EQ(ask(g, "wait connecting " + std::to_string(kTimeoutMs)), "ok");
    ASSERT_TRUE(pump_until([&] { return dp_->attached({dom, 0}); }));
    auto held = vif(dom);
    ASSERT_TRUE(held.has_value());
    EXPECT_EQ(held->phase, netif::Phase::hotplug_wait);
    EXPECT_EQ(read(be + "/state"), "2");
    EXPECT_EQ(ask(g, "state"), "connecting");

    CT_ASSERT_OK(hotplug_done(dom));
    ASSERT_TRUE(backend_state_is(dom, "4"));
    ASSERT_TRUE(guest_connected(g));

    // The spec is what the frontend wrote.
    ASSERT_EQ(dp_->calls().attach.size(), 1U);
    const engine::VifSpec& spec = dp_->calls().attach[0];
    EXPECT_EQ(spec.id, (engine::VifId{dom, 0}));
    EXPECT_EQ(spec.mac, mac_for(dom, 0));
    EXPECT_EQ(spec.rx_mode, engine::RxMode::copy);
    EXPECT_EQ(spec.port, "uplink0");
    EXPECT_FALSE(spec.rx_queue.has_value());
    EXPECT_FALSE(spec.resume);
    EXPECT_FALSE(spec.rate.has_value());
    ASSERT_EQ(spec.frontend.queues.size(), c.queues);
    EXPECT_TRUE(spec.frontend.rx_notify);
    EXPECT_TRUE(spec.frontend.sg);
    EXPECT_TRUE(spec.frontend.gso_tcpv4);
    EXPECT_TRUE(spec.frontend.gso_tcpv6);
    EXPECT_TRUE(spec.frontend.ipv6_csum_offload);
    for (unsigned q = 0; q < c.queues; ++q) {
        const std::string dir = c.queues == 1 ? fe : fe + "/queue-" + std::to_string(q);
        const netif::QueueConfig& qc = spec.frontend.queues[q];
        EXPECT_EQ(read(dir + "/tx-ring-ref"), std::to_string(qc.tx_ring_ref)) << dir;
        EXPECT_EQ(read(dir + "/rx-ring-ref"), std::to_string(qc.rx_ring_ref)) << dir;
        EXPECT_EQ(qc.split_event_channels, c.split);
        if (c.split) {
            EXPECT_EQ(read(dir + "/event-channel-tx"), std::to_string(qc.tx_evtchn));
            EXPECT_EQ(read(dir + "/event-channel-rx"), std::to_string(qc.rx_evtchn));
            EXPECT_NE(qc.tx_evtchn, qc.rx_evtchn);
        } else {
            EXPECT_EQ(read(dir + "/event-channel"), std::to_string(qc.tx_evtchn));
            EXPECT_EQ(qc.rx_evtchn, qc.tx_evtchn);
        }
    }

    // The rings work: every frame is answered by the data plane over the mapped rings.
    EXPECT_EQ(ask(g, "send 16 " + std::to_string(kTimeoutMs)), "ok 16 0");
    EXPECT_GE(dp_->tx_answered(), 16U);

    auto info = vif(dom);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->phase, netif::Phase::connected);
    EXPECT_EQ(info->backend_state, netif::XenbusState::connected);
    EXPECT_EQ(info->frontend_state, netif::XenbusState::connected);
    EXPECT_TRUE(info->attached);
    EXPECT_EQ(info->queues, c.queues);
    EXPECT_EQ(info->connects, 1U);
    EXPECT_TRUE(info->last_error.empty()) << info->last_error;
    EXPECT_FALSE(read(error_path(dom)).has_value());

    const ControlCounters k = cp_->counters();
    EXPECT_EQ(k.event(ControlEvent::handshakes), 1U);
    EXPECT_EQ(k.event(ControlEvent::attaches), 1U);
    EXPECT_EQ(k.vifs(netif::Phase::connected), 1U);
    for (std::size_t i = 0; i < kControlErrorCount; ++i)
        EXPECT_EQ(k.errors[i], 0U) << control_error_table()[i].name;
}

INSTANTIATE_TEST_SUITE_P(QueuesAndChannels, ControlHandshake,
                         ::testing::Values(HandshakeCase{1, true}, HandshakeCase{1, false},
                                           HandshakeCase{2, true}, HandshakeCase{2, false}),
                         [](const ::testing::TestParamInfo<HandshakeCase>& i) {
                             return std::to_string(i.param.queues) + "Queues" +
                                    (i.param.split ? "Split" : "Shared");
                         });

class ControlHotplugWaitMode : public ControlFixture,
                               public ::testing::WithParamInterface<HotplugWait> {};

// Without hotplug-status (an older toolstack, no script), `never` and `if-present` publish
// Connected as soon as the data path is attached.
TEST_P(ControlHotplugWaitMode, ConnectsWithoutAHotplugStatusNode) {
    options_.hotplug = GetParam();
    start_daemon();
    const hv::DomId dom = create_guest("nohp");
    CT_ASSERT_OK(plug(dom, 0, [](netfront::VifConfig& v) { v.empty_hotplug_status = false; }));
    GuestProcess& g = spawn_guest(dom);
    ASSERT_TRUE(guest_connected(g));
    EXPECT_TRUE(backend_state_is(dom, "4"));
    EXPECT_FALSE(read(backend_path(dom) + "/hotplug-status").has_value());
    EXPECT_EQ(ask(g, "send 4 " + std::to_string(kTimeoutMs)), "ok 4 0");
}

INSTANTIATE_TEST_SUITE_P(Modes, ControlHotplugWaitMode,
                         ::testing::Values(HotplugWait::never, HotplugWait::if_present),
                         [](const ::testing::TestParamInfo<HotplugWait>& i) {
                             return i.param == HotplugWait::never ? "Never" : "IfPresent";
                         });

// `always` (Linux's rule): no hotplug-status at all keeps Connected held; the toolstack's
// "connected" releases it.
class ControlHotplug : public ControlFixture {};

TEST_F(ControlHotplug, AlwaysHoldsConnectedUntilTheScriptReports) {
    start_daemon();
    const hv::DomId dom = create_guest("hold");
    CT_ASSERT_OK(plug(dom, 0, [](netfront::VifConfig& v) { v.empty_hotplug_status = false; }));
    GuestProcess& g = spawn_guest(dom);
    ASSERT_EQ(ask(g, "wait connecting " + std::to_string(kTimeoutMs)), "ok");
    ASSERT_TRUE(pump_until([&] { return dp_->attached({dom, 0}); }));
    EXPECT_EQ(read(backend_path(dom) + "/state"), "2");
    // A failed script is reported, and Connected stays held.
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, backend_path(dom) + "/hotplug-status", "error"));
    ASSERT_TRUE(
        pump_until([&] { return cp_->counters().error(ControlError::hotplug_script) == 1; }));
    EXPECT_EQ(read(backend_path(dom) + "/state"), "2");
    EXPECT_EQ(vif(dom)->last_error_kind, ControlError::hotplug_script);
    CT_ASSERT_OK(hotplug_done(dom));
    EXPECT_TRUE(backend_state_is(dom, "4"));
    EXPECT_TRUE(guest_connected(g));
}

} // namespace
} // namespace test
} // namespace dpnb::control
