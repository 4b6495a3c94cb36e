// Xenstore through the simulated hypervisor's faces (BackendHypervisor::open_xenstore and
// GuestHypervisor::open_xenstore): each process reaches its own domain's socket of the
// embedded xenstore server, with watches and transactions across processes.
#include "dpnb/hv/xenstore_client.hpp"
#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

std::optional<XsWatchEvent> next_event(Xenstore& xs, std::string_view token) {
    for (;;) {
        auto ev = xs.read_watch();
        if (!ev) return std::nullopt;
        if (ev->has_value()) {
            if ((*ev)->token == token) return **ev;
            continue;
        }
        if (!wait_readable(xs.watch_fd())) return std::nullopt;
    }
}

class SimXenstoreTest : public SimFixture {};

TEST_F(SimXenstoreTest, WatchesAndTransactionsAcrossProcesses) {
    const DomId guest_dom = create("guest");
    const std::string home = "/local/domain/" + std::to_string(guest_dom);
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_dom);
        SIM_ASSERT_OK(gh);
        auto xs = (*gh)->open_xenstore();
        SIM_ASSERT_OK(xs);
        auto path = (*xs)->domain_path(guest_dom);
        SIM_ASSERT_OK(path);
        EXPECT_EQ(*path, home);
        auto name = (*xs)->read(kNoTxn, home + "/name");
        SIM_ASSERT_OK(name);
        EXPECT_EQ(*name, "guest");
        // The guest cannot read dom0's home; it owns its data folder.
        SIM_EXPECT_ERRC((*xs)->read(kNoTxn, "/local/domain/0/name"), Errc::permission_denied);
        SIM_ASSERT_OK((*xs)->watch(home + "/data/reply", "reply"));
        ASSERT_TRUE(next_event(**xs, "reply").has_value()); // initial firing
        SIM_ASSERT_OK((*xs)->write(kNoTxn, home + "/data/hello", "from the guest"));
        for (;;) {
            ASSERT_TRUE(next_event(**xs, "reply").has_value());
            auto reply = (*xs)->read(kNoTxn, home + "/data/reply");
            if (reply && *reply == "from the backend") break;
        }
        link.send(1);
        SIM_RECV(link, conflict_now);
        SIM_ASSERT_OK((*xs)->write(kNoTxn, home + "/data/counter", "guest was here"));
        link.send(1);
        SIM_RECV(link, done);
    });

    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto xs = (*be)->open_xenstore();
    SIM_ASSERT_OK(xs);
    SIM_ASSERT_OK((*xs)->watch(home + "/data/hello", "hello"));
    for (;;) {
        ASSERT_TRUE(next_event(**xs, "hello").has_value());
        auto hello = (*xs)->read(kNoTxn, home + "/data/hello");
        if (hello && *hello == "from the guest") break;
    }
    SIM_ASSERT_OK(run_transaction(
        **xs, [&](XsTxn t) { return (*xs)->write(t, home + "/data/reply", "from the backend"); }));
    SIM_RECV(to_guest, got_reply);

    // A transaction that read a node the guest changes before the commit conflicts.
    auto txn = (*xs)->transaction_start();
    SIM_ASSERT_OK(txn);
    (void)(*xs)->read(*txn, home + "/data/counter");
    SIM_ASSERT_OK((*xs)->write(*txn, home + "/data/counter", "backend"));
    to_guest.send(1);
    SIM_RECV(to_guest, guest_wrote);
    SIM_EXPECT_ERRC((*xs)->transaction_end(*txn, true), Errc::again);
    auto counter = (*xs)->read(kNoTxn, home + "/data/counter");
    SIM_ASSERT_OK(counter);
    EXPECT_EQ(*counter, "guest was here");

    // The domain's name, through Domains.
    auto name = (*be)->domains().name(guest_dom);
    SIM_ASSERT_OK(name);
    EXPECT_EQ(*name, "guest");
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

} // namespace
} // namespace dpnb::hv::sim::test
