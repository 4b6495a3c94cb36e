// Hostile frontends: a guest that writes malformed or inconsistent keys (written here through
// its own xenstore connection, with a guest's permissions) gets Closing and an error node that
// names the key and quotes the value, as Linux's xenbus_dev_fatal() reports it; the daemon and
// a well-behaved guest next to it carry on.
#include <map>

#include "harness.hpp"

namespace dpnb::control::test {
namespace {

struct HostileCase {
    const char* name;
    std::map<std::string, std::string> keys; // on top of a valid one-queue configuration
    std::vector<std::string> drop;           // keys of that configuration left out
    const char* state;                       // the state the frontend writes
    int err;                                 // the errno in the error node
    std::vector<std::string> mentions;       // the error node names these
    bool reaches_attach;                     // the keys parse; the data plane refuses them
};

void PrintTo(const HostileCase& c, std::ostream* os) {
    *os << c.name;
}

class ControlHostileFrontend : public ControlFixture,
                               public ::testing::WithParamInterface<HostileCase> {};

TEST_P(ControlHostileFrontend, GetsClosingAndAnErrorNodeOthersCarryOn) {
    const HostileCase& c = GetParam();
    start_daemon();
    Running good = run_guest("good");
    ASSERT_NE(good.guest, nullptr);

    const hv::DomId dom = create_guest("hostile");
    CT_ASSERT_OK(plug(dom));
    CT_ASSERT_OK(hotplug_done(dom));
    ASSERT_TRUE(backend_state_is(dom, "2"));

    // The guest's own view of xenstore.
    auto guest = hv::sim::connect_guest(dir_.path(), dom);
    CT_ASSERT_OK(guest);
    auto gxs = (*guest)->open_xenstore();
    CT_ASSERT_OK(gxs);
    std::map<std::string, std::string> keys{{"tx-ring-ref", "8"},       {"rx-ring-ref", "9"},
                                            {"event-channel", "5"},     {"request-rx-copy", "1"},
                                            {"feature-rx-notify", "1"}, {"feature-sg", "1"}};
    for (const std::string& k : c.drop)
        keys.erase(k);
    for (const auto& [k, v] : c.keys)
        keys[k] = v;
    const std::string fe = frontend_path(dom);
    CT_ASSERT_OK(hv::run_transaction(**gxs, [&](hv::XsTxn t) -> Status {
        for (const auto& [k, v] : keys)
            if (Status st = (*gxs)->write(t, fe + "/" + k, v); !st) return st;
        return (*gxs)->write(t, fe + "/state", c.state);
    }));

    ASSERT_TRUE(backend_state_is(dom, "5"));
    auto err = read(error_path(dom));
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->rfind(std::to_string(c.err) + " ", 0), 0U) << *err;
    for (const std::string& m : c.mentions)
        EXPECT_NE(err->find(m), std::string::npos) << "error node: " << *err << "\nmissing: " << m;
    EXPECT_FALSE(dp_->attached({dom, 0}));
    std::size_t attaches = 0;
    for (const engine::VifSpec& s : dp_->calls().attach)
        attaches += s.id == engine::VifId{dom, 0};
    EXPECT_EQ(attaches, c.reaches_attach ? 1U : 0U);
    auto info = vif(dom);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->phase, netif::Phase::closing);
    EXPECT_TRUE(info->last_error_kind.has_value());
    EXPECT_FALSE(info->last_error.empty());

    // The frontend answers Closed: the backend follows.
    CT_ASSERT_OK((*gxs)->write(hv::kNoTxn, fe + "/state", "6"));
    EXPECT_TRUE(backend_state_is(dom, "6"));

    // The good guest never noticed.
    EXPECT_EQ(ask(*good.guest, "state"), "connected");
    EXPECT_EQ(ask(*good.guest, "send 8 " + std::to_string(kTimeoutMs)), "ok 8 0");
    EXPECT_EQ(read(backend_path(good.dom) + "/state"), "4");
    EXPECT_FALSE(read(error_path(good.dom)).has_value());
    EXPECT_EQ(cp_->counters().event(ControlEvent::handshakes), 1U);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ControlHostileFrontend,
    ::testing::Values(
        HostileCase{"MalformedRingRef",
                    {{"tx-ring-ref", "12abc"}},
                    {},
                    "4",
                    22,
                    {"tx-ring-ref", "\"12abc\""},
                    false},
        HostileCase{"InvalidGrantRef",
                    {{"rx-ring-ref", "4294967295"}},
                    {},
                    "4",
                    22,
                    {"rx-ring-ref", "4294967295"},
                    false},
        HostileCase{"LeadingZeroPort",
                    {{"event-channel", "05"}},
                    {},
                    "4",
                    22,
                    {"event-channel", "\"05\""},
                    false},
        HostileCase{"TooManyQueues",
                    {{"multi-queue-num-queues", "9"}},
                    {"tx-ring-ref", "rx-ring-ref", "event-channel"},
                    "4",
                    22,
                    {"multi-queue-num-queues", "\"9\""},
                    false},
        HostileCase{"BothEventChannelForms",
                    {{"event-channel-tx", "6"}, {"event-channel-rx", "7"}},
                    {},
                    "4",
                    71,
                    {"event-channel", "event-channel-tx"},
                    false},
        HostileCase{"SplitChannelsOnOnePort",
                    {{"event-channel-tx", "6"}, {"event-channel-rx", "6"}},
                    {"event-channel"},
                    "4",
                    71,
                    {"event-channel-tx", "event-channel-rx"},
                    false},
        HostileCase{"TopLevelKeysWithTwoQueues",
                    {{"multi-queue-num-queues", "2"}},
                    {},
                    "4",
                    71,
                    {"multi-queue-num-queues", "queue-N"},
                    false},
        HostileCase{"MissingRingRef", {}, {"rx-ring-ref"}, "4", 71, {"rx-ring-ref"}, false},
        HostileCase{"UngrantedRing", {}, {}, "4", 71, {"data plane attach", "grant 8"}, true},
        HostileCase{"UnparsableState", {}, {}, "banana", 71, {"/state", "\"banana\""}, false},
        HostileCase{"BackendOnlyState", {}, {}, "2", 71, {"/state", "InitWait"}, false}),
    [](const ::testing::TestParamInfo<HostileCase>& i) { return std::string(i.param.name); });

} // namespace
} // namespace dpnb::control::test
