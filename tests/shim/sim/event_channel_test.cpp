// Event channels against the simulated hypervisor, across processes: the guest allocates an
// unbound port for dom0, the backend (this process) binds it; notifications go both ways and
// wake poll() on the handle's fd; a fired port stays masked until unmask(), as with
// /dev/xen/evtchn; unbinding and domain destruction close channels without crashing anyone.
#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

// The next pending port, after waiting for the fd to become readable.
std::optional<EvtchnPort> wait_pending(EventChannels& ev) {
    if (!wait_readable(ev.fd())) return std::nullopt;
    auto p = ev.pending();
    if (!p) return std::nullopt;
    return *p;
}

bool nothing_pending(EventChannels& ev) {
    auto p = ev.pending();
    return p.has_value() && !p->has_value();
}

class SimEventChannelTest : public SimFixture {
protected:
    void SetUp() override {
        SimFixture::SetUp();
        if (HasFatalFailure()) return;
        guest_ = create("guest");
    }
    DomId guest_ = kDomIdInvalid;
};

TEST_F(SimEventChannelTest, NotifyBothWaysWakesPollAndMasksUntilUnmask) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto ev = (*gh)->open_event_channels();
        SIM_ASSERT_OK(ev);
        auto port = (*ev)->bind_unbound(kDom0);
        SIM_ASSERT_OK(port);
        EXPECT_TRUE(nothing_pending(**ev));
        // Sent before the backend binds: not lost (Xen marks the new port pending).
        SIM_ASSERT_OK((*ev)->notify(*port));
        link.send(*port);

        // Round trips: the backend kicks, we answer.
        for (int round = 0; round < 3; ++round) {
            auto fired = wait_pending(**ev);
            ASSERT_TRUE(fired.has_value()) << "round " << round;
            EXPECT_EQ(*fired, *port);
            EXPECT_TRUE(nothing_pending(**ev));
            SIM_ASSERT_OK((*ev)->unmask(*port));
            SIM_ASSERT_OK((*ev)->notify(*port));
        }
        // Masking: two kicks while the backend has not unmasked.
        SIM_RECV(link, go);
        SIM_ASSERT_OK((*ev)->notify(*port));
        SIM_ASSERT_OK((*ev)->notify(*port));
        link.send(1);
        SIM_RECV(link, done);
    });

    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto ev = (*be)->open_event_channels();
    SIM_ASSERT_OK(ev);
    SIM_RECV(to_guest, remote_port);
    auto port = (*ev)->bind_interdomain(guest_, static_cast<EvtchnPort>(remote_port));
    SIM_ASSERT_OK(port);
    auto first = wait_pending(**ev);
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(*first, *port);
    SIM_ASSERT_OK((*ev)->unmask(*port));

    for (int round = 0; round < 3; ++round) {
        SIM_ASSERT_OK((*ev)->notify(*port));
        auto answer = wait_pending(**ev);
        ASSERT_TRUE(answer.has_value()) << "round " << round;
        EXPECT_EQ(*answer, *port);
        SIM_ASSERT_OK((*ev)->unmask(*port));
    }

    to_guest.send(1);
    SIM_RECV(to_guest, kicked_twice);
    auto fired = wait_pending(**ev);
    ASSERT_TRUE(fired.has_value());
    EXPECT_EQ(*fired, *port);
    // Two kicks before we looked: one event (a pending bit, not a counter), then masked.
    EXPECT_TRUE(nothing_pending(**ev));
    EXPECT_FALSE(wait_readable((*ev)->fd(), 0));
    SIM_ASSERT_OK((*ev)->unmask(*port));
    EXPECT_FALSE(wait_readable((*ev)->fd(), 0)) << "both kicks were reported as one";
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimEventChannelTest, KickWhileMaskedFiresOnUnmask) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto ev = (*gh)->open_event_channels();
        SIM_ASSERT_OK(ev);
        auto port = (*ev)->bind_unbound(kDom0);
        SIM_ASSERT_OK(port);
        link.send(*port);
        SIM_RECV(link, bound);
        SIM_ASSERT_OK((*ev)->notify(*port));
        link.send(1);
        SIM_RECV(link, masked);
        SIM_ASSERT_OK((*ev)->notify(*port)); // arrives while the backend has it masked
        link.send(1);
        SIM_RECV(link, done);
    });
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto ev = (*be)->open_event_channels();
    SIM_ASSERT_OK(ev);
    SIM_RECV(to_guest, remote_port);
    auto port = (*ev)->bind_interdomain(guest_, static_cast<EvtchnPort>(remote_port));
    SIM_ASSERT_OK(port);
    ASSERT_EQ(wait_pending(**ev), *port); // the bind itself
    SIM_ASSERT_OK((*ev)->unmask(*port));
    to_guest.send(1);
    SIM_RECV(to_guest, kicked);
    ASSERT_EQ(wait_pending(**ev), *port);
    to_guest.send(1);
    SIM_RECV(to_guest, kicked_again);
    EXPECT_TRUE(nothing_pending(**ev));
    SIM_ASSERT_OK((*ev)->unmask(*port));
    EXPECT_EQ(wait_pending(**ev), *port);
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimEventChannelTest, RefusalsAndClosedChannels) {
    const DomId other = create("other");
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto ev = (*gh)->open_event_channels();
        SIM_ASSERT_OK(ev);
        auto for_dom0 = (*ev)->bind_unbound(kDom0);
        auto for_other = (*ev)->bind_unbound(other);
        SIM_ASSERT_OK(for_dom0);
        SIM_ASSERT_OK(for_other);
        SIM_EXPECT_ERRC((*ev)->bind_unbound(static_cast<DomId>(other + 40)), Errc::not_found);
        SIM_EXPECT_ERRC((*ev)->notify(999), Errc::invalid_argument);
        SIM_EXPECT_ERRC((*ev)->unmask(999), Errc::invalid_argument);
        link.send(*for_dom0);
        link.send(*for_other);
        SIM_RECV(link, bound);
        // The guest closes its end: the backend's notifications are then dropped (Xen).
        SIM_ASSERT_OK((*ev)->unbind(*for_dom0));
        SIM_EXPECT_ERRC((*ev)->notify(*for_dom0), Errc::invalid_argument);
        link.send(1);
        SIM_RECV(link, done);
    });
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto ev = (*be)->open_event_channels();
    SIM_ASSERT_OK(ev);
    SIM_RECV(to_guest, for_dom0);
    SIM_RECV(to_guest, for_other);
    // A port offered to another domain, a port that does not exist, a domain that does not.
    SIM_EXPECT_ERRC((*ev)->bind_interdomain(guest_, static_cast<EvtchnPort>(for_other)),
                    Errc::invalid_argument);
    SIM_EXPECT_ERRC((*ev)->bind_interdomain(guest_, 1000), Errc::invalid_argument);
    SIM_EXPECT_ERRC((*ev)->bind_interdomain(static_cast<DomId>(other + 40), 1), Errc::not_found);
    auto port = (*ev)->bind_interdomain(guest_, static_cast<EvtchnPort>(for_dom0));
    SIM_ASSERT_OK(port);
    SIM_EXPECT_ERRC((*ev)->bind_interdomain(guest_, static_cast<EvtchnPort>(for_dom0)),
                    Errc::invalid_argument); // already bound
    to_guest.send(1);
    SIM_RECV(to_guest, unbound);
    SIM_EXPECT_OK((*ev)->notify(*port));

    // A second channel whose guest is destroyed: notify reports it, nothing crashes.
    const DomId doomed = create("doomed");
    auto [to_doomed, from_doomed] = Link::make();
    Child victim([&, &link = from_doomed] {
        auto gh = connect_guest(dir(), doomed);
        SIM_ASSERT_OK(gh);
        auto gev = (*gh)->open_event_channels();
        SIM_ASSERT_OK(gev);
        auto p = (*gev)->bind_unbound(kDom0);
        SIM_ASSERT_OK(p);
        link.send(*p);
        SIM_RECV(link, done);
    });
    SIM_RECV(to_doomed, doomed_port);
    auto port2 = (*ev)->bind_interdomain(doomed, static_cast<EvtchnPort>(doomed_port));
    SIM_ASSERT_OK(port2);
    SIM_EXPECT_OK((*ev)->notify(*port2));
    SIM_ASSERT_OK(toolstack_->destroy_domain(doomed));
    SIM_EXPECT_ERRC((*ev)->notify(*port2), Errc::closed);
    SIM_EXPECT_OK((*ev)->unbind(*port2));
    SIM_EXPECT_ERRC((*ev)->unbind(*port2), Errc::invalid_argument);
    to_doomed.send(1);
    EXPECT_TRUE(victim.succeeded());

    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
    SIM_EXPECT_OK((*ev)->unbind(*port));
    ev->reset();
    EXPECT_EQ(stats().event_channel_handles, 0U);
    EXPECT_EQ(stats().event_channel_ports, 0U);
}

} // namespace
} // namespace dpnb::hv::sim::test
