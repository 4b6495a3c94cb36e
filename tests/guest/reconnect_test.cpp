// The backend going away and coming back: a daemon crash and restart (the connection is kept
// and the new backend re-attaches to the rings), an orderly backend close followed by a new
// backend (the netfront releases every grant, closes, and reconnects when InitWait is offered
// again), the toolstack unplugging the vif, and backends whose keys are not acceptable.
#include "traffic.hpp"

namespace dpnb::netfront::test {
namespace {

struct ReconnectCase {
    RxMode mode;
    bool static_grants;
};

void PrintTo(const ReconnectCase& c, std::ostream* os) {
    *os << to_string(c.mode) << (c.static_grants ? "_static" : "");
}

class Reconnect : public NetfrontFixture, public ::testing::WithParamInterface<ReconnectCase> {
protected:
    ReflectorOptions backend_options() const {
        ReflectorOptions o;
        o.static_grants = GetParam().static_grants;
        return o;
    }
};

TEST_P(Reconnect, BackendCrashAndRestartKeepsTheConnection) {
    auto backend = std::make_unique<ReflectorProcess>(dir(), backend_options());
    ASSERT_TRUE(backend->ready());
    const hv::DomId dom = create_guest("crash");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    NetfrontOptions opts;
    opts.rx_mode = GetParam().mode;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        Traffic t(nf);
        for (int i = 0; i < 40; ++i)
            NF_ASSERT_OK(t.send(1200 + static_cast<std::size_t>(i), 0));
        ASSERT_TRUE(t.wait_all());
        guest_end.send(1);
        ASSERT_TRUE(guest_end.recv().has_value()); // a new backend runs
        // The frontend keeps its rings: the new backend attaches to them where the old one
        // stopped and serves what is posted.
        const std::uint64_t first = t.next_seq();
        for (int i = 0; i < 40; ++i)
            NF_ASSERT_OK(t.send(3000 + static_cast<std::size_t>(i) * 100, 0));
        ASSERT_TRUE(t.wait_for([&] {
            for (std::uint64_t s = first; s < t.next_seq(); ++s)
                if (!t.received().count(s)) return false;
            return true;
        }));
        EXPECT_EQ(t.mismatch(), 0U);
        EXPECT_EQ(nf.state(), LinkState::connected);
        EXPECT_EQ(nf.counters()[Counter::connects], 1U);
        EXPECT_FALSE(nf.broken());
        NF_EXPECT_OK(nf.close(std::chrono::milliseconds(kTimeoutMs)));
    });
    ASSERT_TRUE(test_end.recv().has_value());
    backend->kill(); // the daemon crashes: xenstore still says Connected
    backend = std::make_unique<ReflectorProcess>(dir(), backend_options());
    ASSERT_TRUE(backend->ready());
    test_end.send(1);
    EXPECT_TRUE(guest.succeeded());
    EXPECT_TRUE(backend->quit());
}

TEST_P(Reconnect, BackendClosesThenANewBackendIsOffered) {
    auto backend = std::make_unique<ReflectorProcess>(dir(), backend_options());
    ASSERT_TRUE(backend->ready());
    const hv::DomId dom = create_guest("close");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    NetfrontOptions opts;
    opts.rx_mode = GetParam().mode;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        Traffic t(nf);
        for (int i = 0; i < 20; ++i)
            NF_ASSERT_OK(t.send(2000, 0));
        ASSERT_TRUE(t.wait_all());
        guest_end.send(1);
        // The backend closes: we disconnect, release every grant and write Closed (then,
        // once the backend is Closed too, Initialising: ready for the next backend).
        ASSERT_TRUE(t.wait_for([&] {
            return nf.counters()[Counter::disconnects] == 1 &&
                   (nf.state() == LinkState::closed || nf.state() == LinkState::initialising);
        }));
        EXPECT_EQ(nf.num_queues(), 0U);
        EXPECT_EQ(nf.grants_pending_release(), 0U);
        EXPECT_EQ(nf.counters()[Counter::disconnects], 1U);
        EXPECT_EQ(nf.pool_stats().pages, 0U);
        Status down = nf.send(0, TxFrame{});
        ASSERT_FALSE(down.has_value());
        EXPECT_EQ(down.error().code, Errc::closed);
        guest_end.send(2);
        ASSERT_TRUE(guest_end.recv().has_value()); // a new backend runs
        // It offers InitWait: the handshake runs again and RX buffers are posted again.
        NF_ASSERT_OK(nf.wait_connected(std::chrono::milliseconds(kTimeoutMs), t.handlers()));
        EXPECT_EQ(nf.counters()[Counter::connects], 2U);
        const std::uint64_t first = t.next_seq();
        for (int i = 0; i < 20; ++i)
            NF_ASSERT_OK(t.send(5000, 0));
        ASSERT_TRUE(t.wait_for([&] { return t.received().size() == first + 20; }));
        EXPECT_EQ(t.mismatch(), 0U);
        NF_EXPECT_OK(nf.close(std::chrono::milliseconds(kTimeoutMs)));
        EXPECT_EQ(nf.state(), LinkState::gone);
    });
    ASSERT_TRUE(test_end.recv().has_value());
    ASSERT_TRUE(backend->command(ReflectorProcess::kDetach));
    ASSERT_EQ(test_end.recv(), 2U);
    const std::string fe = "/local/domain/" + std::to_string(dom) + "/device/vif/0";
    const auto fe_state = read(fe + "/state");
    EXPECT_TRUE(fe_state == "6" || fe_state == "1") << fe_state.value_or("(none)");
    // No grant of the guest is mapped, copied or registered any more.
    auto info = toolstack_->domain_info(dom);
    NF_ASSERT_OK(info);
    EXPECT_EQ(info->pinned_grants, 0U);
    auto stats = toolstack_->stats();
    NF_ASSERT_OK(stats);
    EXPECT_EQ(stats->translation_entries, 0U);
    EXPECT_TRUE(backend->quit());
    backend = std::make_unique<ReflectorProcess>(dir(), backend_options());
    ASSERT_TRUE(backend->ready());
    test_end.send(1);
    EXPECT_TRUE(guest.succeeded());
    EXPECT_TRUE(backend->quit());
}

INSTANTIATE_TEST_SUITE_P(Modes, Reconnect,
                         ::testing::Values(ReconnectCase{RxMode::copy, false},
                                           ReconnectCase{RxMode::reuse, false},
                                           ReconnectCase{RxMode::reuse, true}),
                         [](const auto& tp) {
                             return std::string(to_string(tp.param.mode)) +
                                    (tp.param.static_grants ? "_static" : "");
                         });

class Unplug : public NetfrontFixture {};

TEST_F(Unplug, ToolstackRemovalClosesAndTheVifIsGone) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("unplug");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    Child guest = run_guest(dir(), dom, NetfrontOptions{}, [&](Netfront& nf, hv::GuestHypervisor&) {
        Traffic t(nf);
        NF_ASSERT_OK(t.send(100, 0));
        ASSERT_TRUE(t.wait_all());
        guest_end.send(1);
        // online = 0 and Closing: we close and do not come back.
        ASSERT_TRUE(t.wait_for([&] { return nf.state() == LinkState::gone; }));
        EXPECT_EQ(nf.counters()[Counter::connects], 1U);
        EXPECT_EQ(nf.grants_pending_release(), 0U);
    });
    ASSERT_TRUE(test_end.recv().has_value());
    // The last thing this process does: remove_vif watches xenstore (a reader thread).
    auto removed = remove_vif(*xs_, dom, 0, 0, std::chrono::milliseconds(kTimeoutMs));
    NF_ASSERT_OK(removed);
    EXPECT_FALSE(removed->forced) << "the backend did not reach Closed";
    EXPECT_TRUE(guest.succeeded());
    EXPECT_FALSE(read("/local/domain/" + std::to_string(dom) + "/device/vif/0").has_value());
    EXPECT_TRUE(backend.quit());
}

// A backend whose keys the netfront must refuse: played by the test writing the backend
// folder itself.
struct BadBackendCase {
    const char* key;
    const char* value;
    const char* errno_prefix;
};

class BadBackend : public NetfrontFixture, public ::testing::WithParamInterface<BadBackendCase> {};

TEST_P(BadBackend, ConnectFailsWithAnErrorNodeAndClosing) {
    const BadBackendCase c = GetParam();
    const hv::DomId dom = create_guest("bad", 4096, false); // xenstore stays for the checks
    NF_ASSERT_OK(plug(dom, 0));
    const std::string be = "/local/domain/0/backend/vif/" + std::to_string(dom) + "/0";
    NF_ASSERT_OK(xs_->write(hv::kNoTxn, be + "/feature-rx-copy", "1"));
    NF_ASSERT_OK(xs_->write(hv::kNoTxn, be + "/" + c.key, c.value));
    NF_ASSERT_OK(xs_->write(hv::kNoTxn, be + "/state", "2"));
    Child guest([&] {
        auto g = hv::sim::connect_guest(dir(), dom);
        NF_ASSERT_OK(g);
        auto nf = Netfront::create(**g, NetfrontOptions{});
        NF_ASSERT_OK(nf);
        Traffic t(**nf);
        ASSERT_TRUE(t.wait_for([&] { return (*nf)->state() == LinkState::failing; }));
        EXPECT_EQ((*nf)->counters()[Counter::connect_failures], 1U);
        EXPECT_EQ((*nf)->num_queues(), 0U);
        EXPECT_FALSE((*nf)->last_error().empty());
    });
    EXPECT_TRUE(guest.succeeded());
    const std::string fe = "/local/domain/" + std::to_string(dom) + "/device/vif/0";
    EXPECT_EQ(read(fe + "/state"), "5"); // xenbus_dev_fatal: Closing
    auto err = read("/local/domain/" + std::to_string(dom) + "/error/device/vif/0/error");
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->rfind(c.errno_prefix, 0), 0U) << *err;
    EXPECT_FALSE(read(fe + "/tx-ring-ref").has_value()); // nothing was published
}

INSTANTIATE_TEST_SUITE_P(
    Keys, BadBackend,
    ::testing::Values(BadBackendCase{"feature-rx-copy", "0", "19 "}, // ENODEV, as Linux
                      BadBackendCase{"feature-sg", "yes", "71 "},    // EPROTO
                      BadBackendCase{"multi-queue-max-queues", "0", "71 "},
                      BadBackendCase{"multi-queue-max-queues", "-1", "71 "},
                      BadBackendCase{"feature-split-event-channels", "01", "71 "}),
    [](const auto& tp) {
        std::string n = std::string(tp.param.key) + "_" + tp.param.value;
        for (char& ch : n)
            if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
        return n;
    });

} // namespace
} // namespace dpnb::netfront::test
