// The operations the CLI and the hotplug script use: adopt (with overrides), release,
// set_rx_mode, list; configuration rules; calls from another thread; run() with a stop token;
// graceful shutdown.
#include <thread>

#include "harness.hpp"

namespace dpnb::control::test {
namespace {

class ControlApi : public ControlFixture {};

TEST_F(ControlApi, AdoptedOnlyServesWhatIsHandedOver) {
    options_.serve = VifSelection::adopted_only;
    start_daemon();
    const hv::DomId a = create_guest("adopted");
    const hv::DomId b = create_guest("ignored");
    CT_ASSERT_OK(plug(a));
    CT_ASSERT_OK(plug(b));
    CT_ASSERT_OK(hotplug_done(a));
    CT_ASSERT_OK(hotplug_done(b));
    ASSERT_TRUE(pump_until([&] { return cp_->list().size() == 2; }));
    for (const VifInfo& i : cp_->list())
        EXPECT_EQ(i.role, VifRole::unadopted) << engine::to_string(i.id);
    EXPECT_EQ(cp_->counters().vifs_unadopted, 2U);
    GuestProcess& ga = spawn_guest(a);
    GuestProcess& gb = spawn_guest(b);

    netif::MacAddress mac;
    mac.bytes = {0x02, 0x00, 0x00, 0x00, 0x00, 0x2a};
    VifOverrides o;
    o.mac = mac;
    o.rx_mode = engine::RxMode::reuse;
    o.port = "uplink1";
    o.rx_queue = 3;
    CT_ASSERT_OK(cp_->adopt({a, 0}, o));
    ASSERT_TRUE(guest_connected(ga));
    ASSERT_EQ(dp_->calls().attach.size(), 1U);
    const engine::VifSpec& spec = dp_->calls().attach[0];
    EXPECT_EQ(spec.id, (engine::VifId{a, 0}));
    EXPECT_EQ(spec.mac, mac);
    EXPECT_EQ(spec.rx_mode, engine::RxMode::reuse);
    EXPECT_EQ(spec.port, "uplink1");
    EXPECT_EQ(spec.rx_queue, std::optional<std::uint16_t>(3));
    auto info = vif(a);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->role, VifRole::served);
    EXPECT_TRUE(info->adopted);
    EXPECT_EQ(info->port, "uplink1");
    ASSERT_TRUE(info->data_plane.has_value());
    EXPECT_EQ(info->data_plane->rx_queue, std::optional<std::uint16_t>(3));

    // The other one was never touched.
    EXPECT_EQ(read(backend_path(b) + "/state"), "1");
    EXPECT_EQ(ask(gb, "state"), "initialising");
    EXPECT_EQ(vif(b)->role, VifRole::unadopted);

    // Released: detached, closed, forgotten; its folder stays until the toolstack removes it.
    CT_ASSERT_OK(cp_->release({a, 0}));
    ASSERT_TRUE(backend_state_is(a, "6"));
    ASSERT_TRUE(pump_until([&] { return vif(a)->role == VifRole::forgotten; }));
    EXPECT_FALSE(dp_->attached({a, 0}));
    auto again = cp_->release({a, 0});
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, Errc::not_found);

    auto missing = cp_->adopt({b, 7});
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, Errc::not_found);
}

// adopted-only across a restart: the new daemon serves what the old one adopted (its marker
// in the backend folder), and still leaves the other vifs alone.
TEST_F(ControlApi, AdoptedVifsAreServedAgainAfterARestart) {
    options_.serve = VifSelection::adopted_only;
    start_daemon();
    const hv::DomId a = create_guest("adopted");
    const hv::DomId b = create_guest("someone-elses");
    CT_ASSERT_OK(plug(a));
    CT_ASSERT_OK(plug(b));
    CT_ASSERT_OK(hotplug_done(a));
    CT_ASSERT_OK(hotplug_done(b)); // as another backend's script would
    ASSERT_TRUE(pump_until([&] { return cp_->list().size() == 2; }));
    GuestProcess& ga = spawn_guest(a, GuestOptions{.reconnect = false});
    CT_ASSERT_OK(cp_->adopt({a, 0}, VifOverrides{}));
    ASSERT_TRUE(guest_connected(ga));
    EXPECT_EQ(read(backend_path(a) + "/dpnetback-adopted"), std::optional<std::string>("1"));
    EXPECT_EQ(read(backend_path(b) + "/dpnetback-adopted"), std::nullopt);

    stop_daemon(); // a crash
    start_daemon();
    ASSERT_TRUE(pump_until([&] { return dp_->attached({a, 0}); }));
    EXPECT_TRUE(dp_->spec({a, 0})->resume);
    EXPECT_TRUE(backend_state_is(a, "4"));
    EXPECT_EQ(ask(ga, "state"), "connected");
    EXPECT_EQ(vif(b)->role, VifRole::unadopted);
    EXPECT_FALSE(dp_->attached({b, 0}));

    // Released: the marker goes, so the next daemon leaves the vif alone.
    CT_ASSERT_OK(cp_->release({a, 0}));
    ASSERT_TRUE(backend_state_is(a, "6"));
    EXPECT_EQ(read(backend_path(a) + "/dpnetback-adopted"), std::nullopt);
}

TEST_F(ControlApi, RulesAndRuntimeChangesReachTheDataPlane) {
    VifRule general;
    general.set.rx_mode = engine::RxMode::map;
    VifRule by_name;
    by_name.domain_name = "special";
    by_name.set.port = "uplink9";
    options_.vif_rules = {general, by_name};
    start_daemon();
    Running plain = run_guest("plain");
    Running special = run_guest("special");
    ASSERT_NE(plain.guest, nullptr);
    ASSERT_NE(special.guest, nullptr);
    EXPECT_EQ(dp_->spec(plain.id())->rx_mode, engine::RxMode::map);
    EXPECT_EQ(dp_->spec(plain.id())->port, "uplink0");
    EXPECT_EQ(dp_->spec(special.id())->rx_mode, engine::RxMode::map);
    EXPECT_EQ(dp_->spec(special.id())->port, "uplink9");

    // The RX mode changes in place.
    CT_ASSERT_OK(cp_->set_rx_mode(plain.id(), engine::RxMode::reuse));
    ASSERT_EQ(dp_->calls().rx_mode.size(), 1U);
    EXPECT_EQ(dp_->calls().rx_mode[0].second, engine::RxMode::reuse);
    EXPECT_EQ(vif(plain.dom)->rx_mode, engine::RxMode::reuse);

    // A new port is a new attach at the rings' positions; the frontend does not notice.
    VifOverrides move;
    move.port = "uplink2";
    CT_ASSERT_OK(cp_->adopt(plain.id(), move));
    const engine::VifSpec now = *dp_->spec(plain.id());
    EXPECT_EQ(now.port, "uplink2");
    EXPECT_EQ(now.rx_mode, engine::RxMode::reuse);
    EXPECT_TRUE(now.resume);
    EXPECT_EQ(cp_->counters().event(ControlEvent::reattaches), 1U);
    EXPECT_EQ(ask(*plain.guest, "send 8 " + std::to_string(kTimeoutMs)), "ok 8 0");
    EXPECT_EQ(ask(*plain.guest, "counter connects"), "1");

    // The toolstack changes the rate.
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, backend_path(special.dom) + "/rate", "125000,20000"));
    ASSERT_TRUE(pump_until([&] { return !dp_->calls().rate.empty(); }));
    EXPECT_EQ(dp_->calls().rate[0].first, special.id());
    EXPECT_EQ(dp_->calls().rate[0].second, (netif::RateLimit{125000, 20000}));
    // A malformed one is refused and logged, the vif keeps running.
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, backend_path(special.dom) + "/rate", "lots"));
    ASSERT_TRUE(
        pump_until([&] { return cp_->counters().error(ControlError::toolstack_config) == 1; }));
    EXPECT_EQ(dp_->calls().rate.size(), 1U);
    EXPECT_EQ(read(backend_path(special.dom) + "/state"), "4");

    auto bad =
        cp_->adopt(plain.id(), VifOverrides{netif::MacAddress{{0x01, 0, 0, 0, 0, 1}}, {}, {}, {}});
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, Errc::invalid_argument);
}

// feature-dynamic-multicast-control: the frontend turns its multicast filter on and off
// after connect (Linux watches request-multicast-control); each change reaches the data
// plane once, a repeated value not at all, and a malformed one is refused while the vif runs.
TEST_F(ControlApi, MulticastControlIsWatchedAfterConnect) {
    start_daemon();
    Running r = run_guest("mcast");
    ASSERT_NE(r.guest, nullptr);
    EXPECT_FALSE(dp_->spec(r.id())->frontend.multicast_control);
    const std::string key = frontend_path(r.dom) + "/request-multicast-control";
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, key, "1"));
    ASSERT_TRUE(pump_until([&] { return !dp_->calls().mcast_control.empty(); }));
    EXPECT_EQ(dp_->calls().mcast_control[0], std::make_pair(r.id(), true));
    EXPECT_TRUE(dp_->spec(r.id())->frontend.multicast_control);
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, key, "1")); // the same value: nothing to do
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, key, "0"));
    ASSERT_TRUE(pump_until([&] { return dp_->calls().mcast_control.size() == 2; }));
    EXPECT_EQ(dp_->calls().mcast_control[1], std::make_pair(r.id(), false));
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, key, "yes"));
    ASSERT_TRUE(
        pump_until([&] { return cp_->counters().error(ControlError::frontend_config) == 1; }));
    EXPECT_EQ(dp_->calls().mcast_control.size(), 2U);
    EXPECT_EQ(read(backend_path(r.dom) + "/state"), "4");
}

TEST_F(ControlApi, CallRunsOnTheControlThread) {
    start_daemon();
    Running r = run_guest("call");
    ASSERT_NE(r.guest, nullptr);
    std::future<std::size_t> listed;
    std::future<Status> changed;
    ControlCounters seen;
    std::thread cli([&] {
        listed = cp_->call([](ControlPlane& c) { return c.list().size(); });
        changed = cp_->call(
            [id = r.id()](ControlPlane& c) { return c.set_rx_mode(id, engine::RxMode::map); });
        seen = cp_->counters();
    });
    cli.join();
    ASSERT_TRUE(pump_until([&] {
        return listed.wait_for(std::chrono::seconds(0)) == std::future_status::ready &&
               changed.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    }));
    EXPECT_EQ(listed.get(), 1U);
    CT_EXPECT_OK(changed.get());
    EXPECT_EQ(dp_->spec(r.id())->rx_mode, engine::RxMode::map);
    EXPECT_EQ(seen.event(ControlEvent::handshakes), 1U);
}

TEST_F(ControlApi, RunServesUntilStopped) {
    options_.hotplug = HotplugWait::never;
    start_daemon();
    const hv::DomId dom = create_guest("run");
    Status ran = make_error(Errc::internal, "not run");
    std::jthread loop([&](std::stop_token stop) { ran = cp_->run(stop); });
    CT_ASSERT_OK(plug(dom));
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    // The control thread serves on its own: only the guest is read here.
    auto line = [&]() -> std::optional<std::string> {
        for (;;) {
            if (auto l = g.take_line()) return l;
            pollfd p{g.out_fd(), POLLIN, 0};
            if (::poll(&p, 1, kTimeoutMs) != 1 || !g.read_some()) return std::nullopt;
        }
    };
    ASSERT_EQ(line(), "ready");
    ASSERT_TRUE(g.send("wait connected " + std::to_string(kTimeoutMs)));
    EXPECT_EQ(line(), "ok");
    auto n =
        cp_->call([](ControlPlane& c) { return c.counters().event(ControlEvent::handshakes); });
    EXPECT_EQ(n.get(), 1U);
    loop.request_stop();
    loop.join();
    CT_EXPECT_OK(ran);
}

TEST_F(ControlApi, ShutdownClosesEveryVif) {
    start_daemon();
    GuestOptions once;
    once.reconnect = false; // Linux netfront stays Closed; the test netfront would come back
    Running a = run_guest("a", once);
    Running b = run_guest("b", once);
    ASSERT_NE(a.guest, nullptr);
    ASSERT_NE(b.guest, nullptr);
    CT_ASSERT_OK(cp_->shutdown(std::chrono::milliseconds(kTimeoutMs)));
    EXPECT_EQ(read(backend_path(a.dom) + "/state"), "6");
    EXPECT_EQ(read(backend_path(b.dom) + "/state"), "6");
    EXPECT_EQ(dp_->attached_count(), 0U);
    EXPECT_EQ(dp_->mapped_pages(), 0U);
    EXPECT_EQ(dp_->calls().detach.size(), 2U);
    EXPECT_EQ(ask(*a.guest, "state"), "closed");
    for (const VifInfo& i : cp_->list())
        EXPECT_EQ(i.role, VifRole::forgotten);

    // Nothing new is served afterwards.
    const hv::DomId c = create_guest("c");
    CT_ASSERT_OK(plug(c));
    ASSERT_TRUE(pump_until([&] { return vif(c).has_value(); }));
    EXPECT_EQ(read(backend_path(c) + "/state"), "1");
    auto refused = cp_->adopt({c, 0});
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, Errc::closed);
}

// A frontend that never answers does not hold the daemon: its vif is detached at once and
// left Closing when the time is up.
TEST_F(ControlApi, ShutdownIsBoundedBySilentFrontends) {
    start_daemon();
    const hv::DomId dom = create_guest("silent");
    CT_ASSERT_OK(plug(dom));
    CT_ASSERT_OK(hotplug_done(dom));
    ASSERT_TRUE(backend_state_is(dom, "2"));
    auto guest = hv::sim::connect_guest(dir_.path(), dom);
    CT_ASSERT_OK(guest);
    auto gxs = (*guest)->open_xenstore();
    CT_ASSERT_OK(gxs);
    // Keys that parse; the data plane refuses the (ungranted) ring, so use Initialised: a
    // frontend that sits there and never closes.
    CT_ASSERT_OK((*gxs)->write(hv::kNoTxn, frontend_path(dom) + "/state", "3"));
    ASSERT_TRUE(pump_until([&] {
        auto v = vif(dom);
        return v && v->frontend_state == netif::XenbusState::initialised;
    }));
    auto st = cp_->shutdown(std::chrono::milliseconds(200));
    ASSERT_FALSE(st.has_value());
    EXPECT_EQ(st.error().code, Errc::again);
    EXPECT_EQ(read(backend_path(dom) + "/state"), "5");
    EXPECT_EQ(vif(dom)->role, VifRole::forgotten);
}

// A frontend scripted step by step (through its own xenstore connection): an XDP program
// changes xdp-headroom (Reconfiguring); the vif is attached again with the new headroom at its
// rings' positions, Reconfigured is answered, and Connected again when the frontend is.
TEST_F(ControlApi, ReconfiguringAppliesTheNewHeadroom) {
    start_daemon(false);
    const hv::DomId dom = create_guest("xdp");
    CT_ASSERT_OK(plug(dom));
    CT_ASSERT_OK(hotplug_done(dom));
    ASSERT_TRUE(backend_state_is(dom, "2"));
    auto guest = hv::sim::connect_guest(dir_.path(), dom);
    CT_ASSERT_OK(guest);
    auto gxs = (*guest)->open_xenstore();
    CT_ASSERT_OK(gxs);
    const std::string fe = frontend_path(dom);
    auto write = [&](const std::string& key, const std::string& value) {
        return (*gxs)->write(hv::kNoTxn, fe + "/" + key, value);
    };
    for (const auto& [k, v] :
         std::vector<std::pair<std::string, std::string>>{{"tx-ring-ref", "8"},
                                                          {"rx-ring-ref", "9"},
                                                          {"event-channel", "5"},
                                                          {"request-rx-copy", "1"},
                                                          {"xdp-headroom", "0"}})
        CT_ASSERT_OK(write(k, v));
    CT_ASSERT_OK(write("state", "4"));
    ASSERT_TRUE(backend_state_is(dom, "4"));
    EXPECT_EQ(dp_->spec({dom, 0})->frontend.xdp_headroom, 0U);

    CT_ASSERT_OK(write("xdp-headroom", "256"));
    CT_ASSERT_OK(write("state", "7"));
    ASSERT_TRUE(backend_state_is(dom, "8"));
    auto now = dp_->spec({dom, 0});
    ASSERT_TRUE(now.has_value());
    EXPECT_EQ(now->frontend.xdp_headroom, 256U);
    EXPECT_TRUE(now->resume);
    EXPECT_EQ(dp_->calls().attach.size(), 2U);
    EXPECT_EQ(dp_->calls().detach.size(), 1U);
    CT_ASSERT_OK(write("state", "4"));
    ASSERT_TRUE(backend_state_is(dom, "4"));
    EXPECT_EQ(cp_->counters().event(ControlEvent::handshakes), 1U);

    // A headroom out of range while connected: closed as a protocol error.
    CT_ASSERT_OK(write("xdp-headroom", "40000"));
    CT_ASSERT_OK(write("state", "7"));
    ASSERT_TRUE(backend_state_is(dom, "5"));
    EXPECT_FALSE(dp_->attached({dom, 0}));
    auto err = read(error_path(dom));
    ASSERT_TRUE(err.has_value());
    EXPECT_NE(err->find("xdp-headroom"), std::string::npos) << *err;
}

TEST_F(ControlApi, RefusesBadOptions) {
    auto dp = FakeDataPlane::create(nullptr);
    CT_ASSERT_OK(dp);
    ControlOptions no_port = options_;
    no_port.default_port.clear();
    auto a = ControlPlane::create(no_port, *hv_, **dp);
    ASSERT_FALSE(a.has_value());
    EXPECT_EQ(a.error().code, Errc::invalid_argument);
    ControlOptions bad_caps = options_;
    bad_caps.capabilities.max_queues = 0;
    auto b = ControlPlane::create(bad_caps, *hv_, **dp);
    ASSERT_FALSE(b.has_value());
    EXPECT_EQ(b.error().code, Errc::invalid_argument);
    ControlOptions bad_rule = options_;
    VifRule r;
    r.set.port = "";
    bad_rule.vif_rules.push_back(r);
    auto c = ControlPlane::create(bad_rule, *hv_, **dp);
    ASSERT_FALSE(c.has_value());
    EXPECT_EQ(c.error().code, Errc::invalid_argument);

    EXPECT_EQ(*parse_vif_selection("adopted-only"), VifSelection::adopted_only);
    EXPECT_FALSE(parse_vif_selection("some").has_value());
    EXPECT_EQ(*parse_hotplug_wait("if-present"), HotplugWait::if_present);
    EXPECT_FALSE(parse_hotplug_wait("sometimes").has_value());
}

} // namespace
} // namespace dpnb::control::test
