// Daemon restart (docs/xenbus.md, "daemon restart"): the daemon goes without closing anything
// (a crash, an upgrade), a new one starts on the same xenstore, finds the running frontends
// Connected and attaches to their rings again with VifSpec::resume. The netfronts never see a
// disconnect and their traffic goes on.
#include "harness.hpp"

namespace dpnb::control::test {
namespace {

class ControlRestart : public ControlFixture {};

TEST_F(ControlRestart, ReattachesConnectedFrontendsWhichKeepWorking) {
    start_daemon();
    GuestOptions one;
    one.reconnect = false; // a disconnect would be final: the test would see it
    GuestOptions two = one;
    two.queues = 2;
    two.split = false;
    Running a = run_guest("a", one);
    Running b = run_guest("b", two);
    ASSERT_NE(a.guest, nullptr);
    ASSERT_NE(b.guest, nullptr);
    EXPECT_EQ(ask(*a.guest, "send 8 " + std::to_string(kTimeoutMs)), "ok 8 0");
    EXPECT_EQ(ask(*b.guest, "send 8 " + std::to_string(kTimeoutMs)), "ok 8 0");
    const engine::VifSpec spec_a = *dp_->spec(a.id());
    const engine::VifSpec spec_b = *dp_->spec(b.id());

    // The daemon stops without a graceful shutdown: it detaches (the data plane releases
    // every grant and port) and writes nothing.
    const auto detached = dp_->calls().detach;
    stop_daemon();
    EXPECT_EQ(read(backend_path(a.dom) + "/state"), "4");
    EXPECT_EQ(read(backend_path(b.dom) + "/state"), "4");
    auto stats = toolstack_->stats();
    CT_ASSERT_OK(stats);
    EXPECT_EQ(stats->pinned_grants, 0U);
    EXPECT_EQ(ask(*a.guest, "state"), "connected");
    EXPECT_EQ(ask(*b.guest, "state"), "connected");

    // A new daemon on the same xenstore.
    start_daemon();
    ASSERT_TRUE(pump_until([&] { return dp_->attached(a.id()) && dp_->attached(b.id()); }));
    for (const auto& [id, before] : {std::pair{a.id(), spec_a}, std::pair{b.id(), spec_b}}) {
        const engine::VifSpec now = *dp_->spec(id);
        EXPECT_TRUE(now.resume) << engine::to_string(id);
        EXPECT_EQ(now.frontend, before.frontend) << engine::to_string(id);
        EXPECT_EQ(now.mac, before.mac);
    }
    EXPECT_TRUE(backend_state_is(a.dom, "4"));
    EXPECT_TRUE(backend_state_is(b.dom, "4"));

    // The frontends kept their rings, their grants and their event channels.
    EXPECT_EQ(ask(*a.guest, "send 16 " + std::to_string(kTimeoutMs)), "ok 16 0");
    EXPECT_EQ(ask(*b.guest, "send 16 " + std::to_string(kTimeoutMs)), "ok 16 0");
    for (GuestProcess* g : {a.guest, b.guest}) {
        EXPECT_EQ(ask(*g, "state"), "connected");
        EXPECT_EQ(ask(*g, "counter connects"), "1");
        EXPECT_EQ(ask(*g, "counter disconnects"), "0");
    }
    const ControlCounters k = cp_->counters();
    EXPECT_EQ(k.event(ControlEvent::resumed_attaches), 2U);
    EXPECT_EQ(k.event(ControlEvent::handshakes), 2U);
    EXPECT_EQ(k.vifs(netif::Phase::connected), 2U);
    auto info = vif(a.dom);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->connects, 1U);

    // And the next connection of a restarted vif is an ordinary one again.
    EXPECT_EQ(ask(*a.guest, "close " + std::to_string(kTimeoutMs)), "ok");
    EXPECT_TRUE(backend_state_is(a.dom, "6"));
    EXPECT_FALSE(dp_->attached(a.id()));
}

// A vif the old daemon left before the frontend connected (InitWait) is taken up from there.
TEST_F(ControlRestart, PicksUpVifsThatWereNotConnectedYet) {
    start_daemon();
    const hv::DomId dom = create_guest("late");
    CT_ASSERT_OK(plug(dom));
    ASSERT_TRUE(backend_state_is(dom, "2"));
    stop_daemon();
    start_daemon();
    CT_ASSERT_OK(hotplug_done(dom));
    GuestProcess& g = spawn_guest(dom);
    ASSERT_TRUE(guest_connected(g));
    ASSERT_EQ(dp_->calls().attach.size(), 1U);
    EXPECT_FALSE(dp_->calls().attach[0].resume);
    EXPECT_EQ(ask(g, "send 4 " + std::to_string(kTimeoutMs)), "ok 4 0");
}

} // namespace
} // namespace dpnb::control::test
