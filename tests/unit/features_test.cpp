// Tests of feature negotiation (dpnb/netif/features.hpp): the keys the backend publishes,
// the exact key sets a Linux 6.1 netfront writes (seen in the Xen lab, FINDINGS.md) parsed
// into the expected configuration, and a hostile table of malformed or inconsistent values.
#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/features.hpp"

namespace nf = dpnb::netif;
using dpnb::Errc;

namespace {

using KeyMap = std::map<std::string, std::string, std::less<>>;

// What the Linux netback in the Xen lab offers (FINDINGS.md): everything, 4 queues here.
nf::BackendCapabilities linux_like_caps() {
    nf::BackendCapabilities caps;
    caps.max_queues = 4;
    caps.ctrl_ring = true;
    caps.xdp_headroom = true;
    return caps;
}

// A Linux 6.1 netfront with one queue and split event channels, as seen in the Xen lab:
// its own keys plus what the toolstack wrote into the frontend folder.
KeyMap linux_netfront_one_queue() {
    return {
        {"backend", "/local/domain/0/backend/vif/1/0"},
        {"backend-id", "0"},
        {"handle", "0"},
        {"mac", "00:16:3e:5c:01:02"},
        {"state", "4"},
        {"trusted", "1"},
        {"mtu", "1500"},
        {"multi-queue-num-queues", "1"},
        {"tx-ring-ref", "2303"},
        {"rx-ring-ref", "2304"},
        {"event-channel-tx", "18"},
        {"event-channel-rx", "19"},
        {"request-rx-copy", "1"},
        {"feature-rx-notify", "1"},
        {"feature-sg", "1"},
        {"feature-gso-tcpv4", "1"},
        {"feature-gso-tcpv6", "1"},
        {"feature-ipv6-csum-offload", "1"},
        {"xdp-headroom", "0"},
    };
}

KeyMap linux_netfront_two_queues() {
    KeyMap m = linux_netfront_one_queue();
    for (const char* k : {"tx-ring-ref", "rx-ring-ref", "event-channel-tx", "event-channel-rx"})
        m.erase(k);
    m["multi-queue-num-queues"] = "2";
    m["queue-0/tx-ring-ref"] = "2303";
    m["queue-0/rx-ring-ref"] = "2304";
    m["queue-0/event-channel-tx"] = "18";
    m["queue-0/event-channel-rx"] = "19";
    m["queue-1/tx-ring-ref"] = "2561";
    m["queue-1/rx-ring-ref"] = "2562";
    m["queue-1/event-channel-tx"] = "20";
    m["queue-1/event-channel-rx"] = "21";
    return m;
}

nf::FrontendConfig expected_linux_config() {
    nf::FrontendConfig cfg;
    cfg.queues = {nf::QueueConfig{2303, 2304, 18, 19, true}};
    cfg.rx_notify = true;
    cfg.sg = true;
    cfg.gso_tcpv4 = true;
    cfg.gso_tcpv6 = true;
    cfg.csum_offload = true;
    cfg.ipv6_csum_offload = true;
    cfg.multicast_control = false;
    cfg.mtu = 1500;
    cfg.xdp_headroom = 0;
    return cfg;
}

dpnb::Result<nf::FrontendConfig> parse(const KeyMap& m,
                                       const nf::BackendCapabilities& caps = linux_like_caps()) {
    return nf::parse_frontend_config(nf::map_reader(m), caps);
}

} // namespace

// --- what the backend writes ----------------------------------------------------------------

TEST(BackendFeatures, DefaultsOfferTheControlRingAsLinuxNetbackDoes) {
    // Linux netback writes feature-ctrl-ring = 1 for every vif (xenbus.c netback_probe); a
    // frontend discovers hashing through the ring itself, so nothing else is advertised.
    auto entries = nf::backend_feature_entries(nf::BackendCapabilities{});
    ASSERT_TRUE(entries) << entries.error().message;
    const auto it = std::find_if(entries->begin(), entries->end(),
                                 [](const nf::XsEntry& e) { return e.key == "feature-ctrl-ring"; });
    ASSERT_NE(it, entries->end());
    EXPECT_EQ(it->value, "1");
    for (const nf::XsEntry& e : *entries)
        EXPECT_EQ(e.key.find("hash"), std::string::npos) << e.key;
}

TEST(BackendFeatures, LinuxLikeCapabilitiesGiveLinuxNetbackKeysInOrder) {
    auto entries = nf::backend_feature_entries(linux_like_caps());
    ASSERT_TRUE(entries) << entries.error().message;
    const std::vector<nf::XsEntry> expected = {
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
    EXPECT_EQ(*entries, expected);

    // The keys Linux 6.1 netback wrote in the Xen lab (FINDINGS.md), plus dpnetback's own.
    const std::set<std::string> linux_netback = {
        "feature-ctrl-ring",
        "feature-dynamic-multicast-control",
        "feature-gso-tcpv4",
        "feature-gso-tcpv6",
        "feature-ipv6-csum-offload",
        "feature-multicast-control",
        "feature-rx-copy",
        "feature-rx-flip",
        "feature-sg",
        "feature-split-event-channels",
        "feature-xdp-headroom",
        "multi-queue-max-queues",
    };
    std::set<std::string> ours;
    for (const auto& e : *entries)
        ours.insert(e.key);
    std::set<std::string> expected_keys = linux_netback;
    expected_keys.insert("feature-static-grants");
    expected_keys.insert("feature-rx-buffer-offset");
    EXPECT_EQ(ours, expected_keys);
}

TEST(BackendFeatures, DisabledFeaturesAreWrittenAsZero) {
    nf::BackendCapabilities caps;
    caps.sg = false;
    caps.gso_tcpv4 = false;
    caps.gso_tcpv6 = false;
    caps.ipv6_csum_offload = false;
    caps.multicast_control = false;
    caps.dynamic_multicast_control = false;
    caps.split_event_channels = false;
    caps.ctrl_ring = false;
    caps.rx_buffer_offset = false;
    auto entries = nf::backend_feature_entries(caps);
    ASSERT_TRUE(entries);
    ASSERT_EQ(entries->size(), 14U);
    for (const auto& e : *entries) {
        if (e.key == "feature-rx-copy") {
            EXPECT_EQ(e.value, "1");
        } else if (e.key == "multi-queue-max-queues") {
            EXPECT_EQ(e.value, "1");
        } else {
            EXPECT_EQ(e.value, "0") << e.key;
        }
    }
}

TEST(BackendFeatures, StaticGrantsAreAdvertisedWithTheControlRing) {
    nf::BackendCapabilities caps;
    caps.ctrl_ring = true;
    caps.static_grants = true;
    auto entries = nf::backend_feature_entries(caps);
    ASSERT_TRUE(entries);
    EXPECT_NE(
        std::find(entries->begin(), entries->end(), nf::XsEntry{"feature-static-grants", "1"}),
        entries->end());
}

TEST(BackendFeatures, InvalidCapabilitiesAreRefused) {
    nf::BackendCapabilities caps;
    caps.max_queues = 0;
    EXPECT_FALSE(nf::validate(caps));
    EXPECT_FALSE(nf::backend_feature_entries(caps));
    caps.max_queues = nf::kMaxQueuesLimit + 1;
    EXPECT_FALSE(nf::validate(caps));
    caps.max_queues = nf::kMaxQueuesLimit;
    EXPECT_TRUE(nf::validate(caps));
    caps.ctrl_ring = false;
    caps.static_grants = true; // without the control ring
    EXPECT_FALSE(nf::validate(caps));
    caps.ctrl_ring = true;
    EXPECT_TRUE(nf::validate(caps));
    caps.multicast_control = false; // dynamic without plain
    EXPECT_FALSE(nf::validate(caps));
    // A frontend config is never parsed against invalid capabilities.
    EXPECT_FALSE(parse(linux_netfront_one_queue(), caps));
}

// --- what a Linux 6.1 netfront writes ---------------------------------------------------------

TEST(FrontendConfig, LinuxNetfrontOneQueueSplitChannels) {
    auto cfg = parse(linux_netfront_one_queue());
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(*cfg, expected_linux_config());
}

TEST(FrontendConfig, LinuxNetfrontTwoQueuesSplitChannels) {
    auto cfg = parse(linux_netfront_two_queues());
    ASSERT_TRUE(cfg) << cfg.error().message;
    nf::FrontendConfig expected = expected_linux_config();
    expected.queues = {nf::QueueConfig{2303, 2304, 18, 19, true},
                       nf::QueueConfig{2561, 2562, 20, 21, true}};
    EXPECT_EQ(*cfg, expected);
}

TEST(FrontendConfig, LinuxNetfrontAgainstDpnetbackDefaults) {
    // Default capabilities: one queue, no XDP headroom offered; netfront then writes neither
    // more queues nor a headroom, but a "0" headroom left from before is harmless.
    nf::BackendCapabilities caps;
    auto cfg = parse(linux_netfront_one_queue(), caps);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(*cfg, expected_linux_config());
}

TEST(FrontendConfig, SingleEventChannelAndOldFrontendDefaults) {
    // An old frontend: no multi-queue, one shared event channel, no feature-rx-notify, no
    // offloads; only the mandatory keys.
    const KeyMap m = {{"tx-ring-ref", "8"},
                      {"rx-ring-ref", "9"},
                      {"event-channel", "3"},
                      {"request-rx-copy", "1"}};
    auto cfg = parse(m);
    ASSERT_TRUE(cfg) << cfg.error().message;
    nf::FrontendConfig expected;
    expected.queues = {nf::QueueConfig{8, 9, 3, 3, false}};
    expected.rx_notify = false;
    expected.csum_offload = true; // feature-no-csum-offload absent: offload on
    EXPECT_EQ(*cfg, expected);
}

TEST(FrontendConfig, OptionalFeaturesWhenOffered) {
    KeyMap m = linux_netfront_one_queue();
    m["feature-no-csum-offload"] = "1";
    m["request-multicast-control"] = "1";
    m["xdp-headroom"] = "256";
    m["ctrl-ring-ref"] = "77";
    m["event-channel-ctrl"] = "25";
    m["feature-static-grants"] = "1";
    m.erase("mtu");
    nf::BackendCapabilities caps = linux_like_caps();
    caps.static_grants = true;
    auto cfg = parse(m, caps);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_FALSE(cfg->csum_offload);
    EXPECT_TRUE(cfg->multicast_control);
    EXPECT_EQ(cfg->xdp_headroom, 256);
    ASSERT_TRUE(cfg->ctrl_ring.has_value());
    EXPECT_EQ(*cfg->ctrl_ring, (nf::CtrlRingConfig{77, 25}));
    EXPECT_TRUE(cfg->static_grants);
    EXPECT_FALSE(cfg->mtu.has_value());
    EXPECT_FALSE(cfg->rx_buffer_offset);
    EXPECT_EQ(cfg->rx_buffer_size, 4096);
}

TEST(FrontendConfig, SubPageRxBuffers) {
    KeyMap m = linux_netfront_one_queue();
    m["feature-rx-buffer-offset"] = "1";
    m["rx-buffer-size"] = "2048";
    auto cfg = parse(m, linux_like_caps());
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_TRUE(cfg->rx_buffer_offset);
    EXPECT_EQ(cfg->rx_buffer_size, 2048);
    // A size without the feature is parsed (strictly) but means nothing.
    m["feature-rx-buffer-offset"] = "0";
    cfg = parse(m, linux_like_caps());
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_FALSE(cfg->rx_buffer_offset);
    EXPECT_EQ(cfg->rx_buffer_size, 4096);
}

TEST(FrontendConfig, IgnoredKeys) {
    // Legacy GSO prefix, the toolstack's keys, and stale queue folders of a frontend that
    // now uses one queue are not read at all.
    KeyMap m = linux_netfront_one_queue();
    m["feature-gso-tcpv4-prefix"] = "garbage";
    m["trusted"] = "nonsense";
    m["queue-0/tx-ring-ref"] = "not a number";
    m["queue-5/event-channel"] = "";
    auto cfg = parse(m);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(*cfg, expected_linux_config());
}

TEST(FrontendConfig, NumQueuesAbsentMeansOne) {
    KeyMap m = linux_netfront_one_queue();
    m.erase("multi-queue-num-queues");
    auto cfg = parse(m);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(cfg->queues.size(), 1U);
}

TEST(FrontendConfig, MaxQueuesAccepted) {
    KeyMap m = linux_netfront_one_queue();
    for (const char* k : {"tx-ring-ref", "rx-ring-ref", "event-channel-tx", "event-channel-rx"})
        m.erase(k);
    m["multi-queue-num-queues"] = "4";
    for (unsigned q = 0; q < 4; ++q) {
        const std::string p = "queue-" + std::to_string(q) + "/";
        m[p + "tx-ring-ref"] = std::to_string(100 + 2 * q);
        m[p + "rx-ring-ref"] = std::to_string(101 + 2 * q);
        m[p + "event-channel"] = std::to_string(10 + q);
    }
    auto cfg = parse(m);
    ASSERT_TRUE(cfg) << cfg.error().message;
    ASSERT_EQ(cfg->queues.size(), 4U);
    EXPECT_EQ(cfg->queues[3], (nf::QueueConfig{106, 107, 13, 13, false}));
}

// --- the hostile table --------------------------------------------------------------------------

namespace {

struct Hostile {
    const char* name;
    std::function<void(KeyMap&, nf::BackendCapabilities&)> mutate;
    Errc code;
    const char* message; // a part of the expected message
};

void PrintTo(const Hostile& h, std::ostream* os) {
    *os << h.name;
}

const Hostile kHostile[] = {
    // ring references
    {"tx_ring_ref_missing", [](KeyMap& m, auto&) { m.erase("tx-ring-ref"); }, Errc::protocol,
     "tx-ring-ref is missing"},
    {"tx_ring_ref_not_a_number", [](KeyMap& m, auto&) { m["tx-ring-ref"] = "abc"; },
     Errc::invalid_argument, "tx-ring-ref: \"abc\" is not an unsigned decimal number"},
    {"tx_ring_ref_negative", [](KeyMap& m, auto&) { m["tx-ring-ref"] = "-1"; },
     Errc::invalid_argument, "tx-ring-ref: \"-1\""},
    {"tx_ring_ref_invalid_ref", [](KeyMap& m, auto&) { m["tx-ring-ref"] = "4294967295"; },
     Errc::invalid_argument, "INVALID_GRANT_REF"},
    {"tx_ring_ref_overflow", [](KeyMap& m, auto&) { m["tx-ring-ref"] = "4294967296"; },
     Errc::invalid_argument, "out of range"},
    {"rx_ring_ref_empty", [](KeyMap& m, auto&) { m["rx-ring-ref"] = ""; }, Errc::invalid_argument,
     "rx-ring-ref: \"\" is empty"},
    {"rx_ring_ref_trailing_space", [](KeyMap& m, auto&) { m["rx-ring-ref"] = "2304 "; },
     Errc::invalid_argument, "rx-ring-ref: \"2304 \""},
    {"rx_ring_ref_binary", [](KeyMap& m, auto&) { m["rx-ring-ref"] = std::string("23\0\xff", 4); },
     Errc::invalid_argument, "rx-ring-ref: \"23\\x00\\xff\""},
    {"same_page_for_both_rings", [](KeyMap& m, auto&) { m["rx-ring-ref"] = "2303"; },
     Errc::protocol, "rx-ring-ref: grant reference 2303 is also tx-ring-ref"},
    // event channels
    {"port_zero", [](KeyMap& m, auto&) { m["event-channel-tx"] = "0"; }, Errc::invalid_argument,
     "event-channel-tx: \"0\" is out of range (1..131071)"},
    {"port_too_large", [](KeyMap& m, auto&) { m["event-channel-rx"] = "131072"; },
     Errc::invalid_argument, "event-channel-rx: \"131072\" is out of range"},
    {"split_half_missing", [](KeyMap& m, auto&) { m.erase("event-channel-tx"); }, Errc::protocol,
     "event-channel-rx is set without event-channel-tx"},
    {"both_channel_forms", [](KeyMap& m, auto&) { m["event-channel"] = "18"; }, Errc::protocol,
     "event-channel and event-channel-tx are both set"},
    {"no_channel",
     [](KeyMap& m, auto&) {
         m.erase("event-channel-tx");
         m.erase("event-channel-rx");
     },
     Errc::protocol, "event-channel is missing (or event-channel-tx and event-channel-rx)"},
    {"split_same_port", [](KeyMap& m, auto&) { m["event-channel-rx"] = "18"; }, Errc::protocol,
     "are both port 18"},
    {"split_not_offered",
     [](KeyMap&, nf::BackendCapabilities& c) { c.split_event_channels = false; }, Errc::unsupported,
     "feature-split-event-channels = 0"},
    {"single_port_not_a_number",
     [](KeyMap& m, auto&) {
         m.erase("event-channel-tx");
         m.erase("event-channel-rx");
         m["event-channel"] = "0x12";
     },
     Errc::invalid_argument, "event-channel: \"0x12\""},
    // queues
    {"zero_queues", [](KeyMap& m, auto&) { m["multi-queue-num-queues"] = "0"; },
     Errc::invalid_argument, "multi-queue-num-queues: \"0\" is out of range (1..4)"},
    {"more_queues_than_offered", [](KeyMap& m, auto&) { m["multi-queue-num-queues"] = "5"; },
     Errc::invalid_argument, "multi-queue-num-queues: \"5\" is out of range (1..4)"},
    {"huge_queue_count",
     [](KeyMap& m, auto&) { m["multi-queue-num-queues"] = "99999999999999999999999"; },
     Errc::invalid_argument, "out of range (1..4)"},
    {"queue_count_with_sign", [](KeyMap& m, auto&) { m["multi-queue-num-queues"] = "+2"; },
     Errc::invalid_argument, "multi-queue-num-queues: \"+2\""},
    {"two_queues_without_queue_folders",
     [](KeyMap& m, auto&) { m["multi-queue-num-queues"] = "2"; }, Errc::protocol,
     "tx-ring-ref = \"2303\" is set at top level although multi-queue-num-queues is 2"},
    {"two_queues_but_multi_queue_not_offered",
     [](KeyMap& m, nf::BackendCapabilities& c) {
         m = linux_netfront_two_queues();
         c.max_queues = 1;
     },
     Errc::invalid_argument, "multi-queue-num-queues: \"2\" is out of range (1..1)"},
    {"two_queues_second_missing",
     [](KeyMap& m, auto&) {
         m = linux_netfront_two_queues();
         m.erase("queue-1/rx-ring-ref");
     },
     Errc::protocol, "queue-1/rx-ring-ref is missing"},
    {"two_queues_toplevel_channel_left",
     [](KeyMap& m, auto&) {
         m = linux_netfront_two_queues();
         m["event-channel"] = "5";
     },
     Errc::protocol, "event-channel = \"5\" is set at top level"},
    {"three_queues_two_given",
     [](KeyMap& m, auto&) {
         m = linux_netfront_two_queues();
         m["multi-queue-num-queues"] = "3";
     },
     Errc::protocol, "queue-2/tx-ring-ref is missing"},
    {"queues_share_a_ring",
     [](KeyMap& m, auto&) {
         m = linux_netfront_two_queues();
         m["queue-1/tx-ring-ref"] = "2304";
     },
     Errc::protocol, "queue-1/tx-ring-ref: grant reference 2304 is also queue-0/rx-ring-ref"},
    {"queues_share_a_port",
     [](KeyMap& m, auto&) {
         m = linux_netfront_two_queues();
         m["queue-1/event-channel-rx"] = "18";
     },
     Errc::protocol, "queue-1/event-channel-rx: event channel 18 is also queue-0/event-channel-tx"},
    {"queue_port_garbage",
     [](KeyMap& m, auto&) {
         m = linux_netfront_two_queues();
         m["queue-1/event-channel-tx"] = "twenty";
     },
     Errc::invalid_argument, "queue-1/event-channel-tx: \"twenty\""},
    // rx copy
    {"rx_copy_missing", [](KeyMap& m, auto&) { m.erase("request-rx-copy"); }, Errc::unsupported,
     "request-rx-copy is missing"},
    {"rx_copy_zero", [](KeyMap& m, auto&) { m["request-rx-copy"] = "0"; }, Errc::unsupported,
     "page flipping"},
    {"rx_copy_garbage", [](KeyMap& m, auto&) { m["request-rx-copy"] = "yes"; },
     Errc::invalid_argument, "request-rx-copy: \"yes\" is not a boolean"},
    // flags
    {"sg_two", [](KeyMap& m, auto&) { m["feature-sg"] = "2"; }, Errc::invalid_argument,
     "feature-sg: \"2\" is not a boolean"},
    {"rx_notify_space", [](KeyMap& m, auto&) { m["feature-rx-notify"] = " 1"; },
     Errc::invalid_argument, "feature-rx-notify: \" 1\""},
    {"gso_v6_empty", [](KeyMap& m, auto&) { m["feature-gso-tcpv6"] = ""; }, Errc::invalid_argument,
     "feature-gso-tcpv6: \"\""},
    {"no_csum_word", [](KeyMap& m, auto&) { m["feature-no-csum-offload"] = "true"; },
     Errc::invalid_argument, "feature-no-csum-offload: \"true\""},
    {"ipv6_csum_garbage", [](KeyMap& m, auto&) { m["feature-ipv6-csum-offload"] = "1\n"; },
     Errc::invalid_argument, "feature-ipv6-csum-offload: \"1\\x0a\""},
    // mtu and xdp
    {"mtu_too_small", [](KeyMap& m, auto&) { m["mtu"] = "67"; }, Errc::invalid_argument,
     "mtu: \"67\" is out of range (68..65535)"},
    {"mtu_too_large", [](KeyMap& m, auto&) { m["mtu"] = "65536"; }, Errc::invalid_argument,
     "mtu: \"65536\" is out of range (68..65535)"},
    {"mtu_long_garbage", [](KeyMap& m, auto&) { m["mtu"] = std::string(300, '9'); },
     Errc::invalid_argument, "... (300 bytes) is out of range"},
    {"xdp_headroom_too_large", [](KeyMap& m, auto&) { m["xdp-headroom"] = "32768"; },
     Errc::invalid_argument, "xdp-headroom: \"32768\" is out of range (0..32767)"},
    {"xdp_headroom_not_offered",
     [](KeyMap& m, nf::BackendCapabilities& c) {
         m["xdp-headroom"] = "256";
         c.xdp_headroom = false;
     },
     Errc::unsupported, "xdp-headroom = \"256\" asks for something this backend did not offer"},
    // control ring and static grants
    {"ctrl_ring_without_port", [](KeyMap& m, auto&) { m["ctrl-ring-ref"] = "77"; }, Errc::protocol,
     "ctrl-ring-ref is set without event-channel-ctrl"},
    {"ctrl_port_without_ring", [](KeyMap& m, auto&) { m["event-channel-ctrl"] = "25"; },
     Errc::protocol, "event-channel-ctrl is set without ctrl-ring-ref"},
    {"ctrl_ring_not_offered",
     [](KeyMap& m, nf::BackendCapabilities& c) {
         m["ctrl-ring-ref"] = "77";
         m["event-channel-ctrl"] = "25";
         c.ctrl_ring = false;
     },
     Errc::unsupported, "feature-ctrl-ring = 0"},
    {"ctrl_ring_shares_tx_ring",
     [](KeyMap& m, auto&) {
         m["ctrl-ring-ref"] = "2303";
         m["event-channel-ctrl"] = "25";
     },
     Errc::protocol, "ctrl-ring-ref: grant reference 2303 is also tx-ring-ref"},
    {"ctrl_port_shares_queue_port",
     [](KeyMap& m, auto&) {
         m["ctrl-ring-ref"] = "77";
         m["event-channel-ctrl"] = "19";
     },
     Errc::protocol, "event-channel-ctrl: event channel 19 is also event-channel-rx"},
    {"ctrl_port_zero",
     [](KeyMap& m, auto&) {
         m["ctrl-ring-ref"] = "77";
         m["event-channel-ctrl"] = "0";
     },
     Errc::invalid_argument, "event-channel-ctrl: \"0\""},
    {"static_grants_not_offered", [](KeyMap& m, auto&) { m["feature-static-grants"] = "1"; },
     Errc::unsupported, "feature-static-grants = \"1\" asks for something"},
    {"static_grants_without_ctrl_ring",
     [](KeyMap& m, nf::BackendCapabilities& c) {
         m["feature-static-grants"] = "1";
         c.static_grants = true;
     },
     Errc::protocol, "feature-static-grants = \"1\" needs a control ring"},
    {"static_grants_garbage", [](KeyMap& m, auto&) { m["feature-static-grants"] = "y"; },
     Errc::invalid_argument, "feature-static-grants: \"y\""},
    // sub-page RX buffers
    {"rx_buffer_offset_not_offered",
     [](KeyMap& m, nf::BackendCapabilities& c) {
         m["feature-rx-buffer-offset"] = "1";
         m["rx-buffer-size"] = "2048";
         c.rx_buffer_offset = false;
     },
     Errc::unsupported, "feature-rx-buffer-offset = \"1\" asks for something"},
    {"rx_buffer_offset_without_size", [](KeyMap& m, auto&) { m["feature-rx-buffer-offset"] = "1"; },
     Errc::protocol, "feature-rx-buffer-offset = \"1\" needs rx-buffer-size"},
    {"rx_buffer_size_too_small",
     [](KeyMap& m, auto&) {
         m["feature-rx-buffer-offset"] = "1";
         m["rx-buffer-size"] = "64";
     },
     Errc::invalid_argument, "rx-buffer-size: \"64\""},
    {"rx_buffer_size_beyond_page",
     [](KeyMap& m, auto&) {
         m["feature-rx-buffer-offset"] = "1";
         m["rx-buffer-size"] = "4097";
     },
     Errc::invalid_argument, "rx-buffer-size: \"4097\""},
    {"rx_buffer_size_garbage", [](KeyMap& m, auto&) { m["rx-buffer-size"] = "2k"; },
     Errc::invalid_argument, "rx-buffer-size: \"2k\""},
    {"rx_buffer_all_headroom",
     [](KeyMap& m, auto&) {
         m["feature-rx-buffer-offset"] = "1";
         m["rx-buffer-size"] = "1024";
         m["xdp-headroom"] = "1024";
     },
     Errc::protocol, "xdp-headroom 1024 leaves no room in rx-buffer-size 1024"},
    // multicast
    {"multicast_not_offered",
     [](KeyMap& m, nf::BackendCapabilities& c) {
         m["request-multicast-control"] = "1";
         c.multicast_control = false;
         c.dynamic_multicast_control = false;
     },
     Errc::unsupported, "request-multicast-control = \"1\""},
    {"multicast_garbage", [](KeyMap& m, auto&) { m["request-multicast-control"] = "on"; },
     Errc::invalid_argument, "request-multicast-control: \"on\""},
};

class HostileFrontend : public ::testing::TestWithParam<Hostile> {};

} // namespace

TEST_P(HostileFrontend, IsRejectedWithAClearMessage) {
    const Hostile& h = GetParam();
    KeyMap m = linux_netfront_one_queue();
    nf::BackendCapabilities caps = linux_like_caps();
    h.mutate(m, caps);
    auto cfg = parse(m, caps);
    ASSERT_FALSE(cfg) << h.name << " was accepted";
    EXPECT_EQ(cfg.error().code, h.code) << cfg.error().message;
    EXPECT_NE(cfg.error().message.find(h.message), std::string::npos)
        << "message: " << cfg.error().message << "\nexpected to contain: " << h.message;
    // Deterministic: the same answers give the same error.
    auto again = parse(m, caps);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().message, cfg.error().message);
}

INSTANTIATE_TEST_SUITE_P(Table, HostileFrontend, ::testing::ValuesIn(kHostile),
                         [](const ::testing::TestParamInfo<Hostile>& param) {
                             return std::string(param.param.name);
                         });

// --- the reader ---------------------------------------------------------------------------------

TEST(FrontendConfig, ReaderErrorsStopTheParse) {
    const KeyMap m = linux_netfront_one_queue();
    auto inner = nf::map_reader(m);
    nf::KeyReader failing = [&](std::string_view k) -> dpnb::Result<std::optional<std::string>> {
        if (k == "event-channel-rx") return dpnb::make_error(Errc::io, "xenstore read failed", 5);
        return inner(k);
    };
    auto cfg = nf::parse_frontend_config(failing, linux_like_caps());
    ASSERT_FALSE(cfg);
    EXPECT_EQ(cfg.error().code, Errc::io);
    EXPECT_EQ(cfg.error().sys_errno, 5);
    EXPECT_NE(cfg.error().message.find("reading event-channel-rx"), std::string::npos);

    EXPECT_FALSE(nf::parse_frontend_config(nf::KeyReader{}, linux_like_caps()));
}

TEST(FrontendConfig, ReadsInAFixedOrder) {
    const KeyMap m = linux_netfront_two_queues();
    auto trace = [&](std::vector<std::string>& log) {
        auto inner = nf::map_reader(m);
        return nf::KeyReader([&log, inner](std::string_view k) {
            log.emplace_back(k);
            return inner(k);
        });
    };
    std::vector<std::string> first;
    std::vector<std::string> second;
    auto a = nf::parse_frontend_config(trace(first), linux_like_caps());
    auto b = nf::parse_frontend_config(trace(second), linux_like_caps());
    ASSERT_TRUE(a && b);
    EXPECT_EQ(*a, *b);
    EXPECT_EQ(first, second);
    EXPECT_EQ(first.front(), "multi-queue-num-queues");
}

TEST(FrontendConfig, ResamplingHelpers) {
    KeyMap m;
    EXPECT_EQ(*nf::read_multicast_control(nf::map_reader(m), linux_like_caps()), false);
    EXPECT_EQ(*nf::read_xdp_headroom(nf::map_reader(m), linux_like_caps()), 0);
    m["request-multicast-control"] = "1";
    m["xdp-headroom"] = "256";
    EXPECT_EQ(*nf::read_multicast_control(nf::map_reader(m), linux_like_caps()), true);
    EXPECT_EQ(*nf::read_xdp_headroom(nf::map_reader(m), linux_like_caps()), 256);
    m["xdp-headroom"] = "32767";
    EXPECT_EQ(*nf::read_xdp_headroom(nf::map_reader(m), linux_like_caps()), 32767);
    m["xdp-headroom"] = "32768";
    EXPECT_FALSE(nf::read_xdp_headroom(nf::map_reader(m), linux_like_caps()));
}

// --- the toolstack's keys ---------------------------------------------------------------------

namespace {

// The backend folder as libxl wrote it in the Xen lab (FINDINGS.md), with our own keys.
KeyMap libxl_backend_folder() {
    return {
        {"frontend", "/local/domain/1/device/vif/0"},
        {"frontend-id", "1"},
        {"handle", "0"},
        {"mac", "00:16:3e:5c:01:02"},
        {"online", "1"},
        {"script", "/etc/xen/scripts/vif-dpnetback"},
        {"type", "vif"},
        {"bridge", "xenbr0"},
        {"hotplug-status", "connected"},
        {"state", "4"},
        {"feature-sg", "1"},
    };
}

const nf::BackendPath kSelf{0, 1, 0};

} // namespace

TEST(ToolstackConfig, LibxlBackendFolder) {
    auto cfg = nf::parse_toolstack_config(nf::map_reader(libxl_backend_folder()), kSelf);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(cfg->frontend, (nf::FrontendPath{1, 0}));
    EXPECT_EQ(cfg->frontend_id, 1);
    EXPECT_EQ(cfg->handle, 0U);
    EXPECT_EQ(nf::format_mac(cfg->mac), "00:16:3e:5c:01:02");
    EXPECT_TRUE(cfg->online);
    EXPECT_FALSE(cfg->rate.has_value());
    EXPECT_TRUE(cfg->ip.empty());
}

TEST(ToolstackConfig, OptionalKeys) {
    KeyMap m = libxl_backend_folder();
    m.erase("online");
    m["rate"] = "12500000,50000";
    m["ip"] = "198.18.0.2 198.18.0.3";
    auto cfg = nf::parse_toolstack_config(nf::map_reader(m), kSelf);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_FALSE(cfg->online);
    ASSERT_TRUE(cfg->rate.has_value());
    EXPECT_EQ(*cfg->rate, (nf::RateLimit{12500000, 50000}));
    EXPECT_EQ(cfg->ip.size(), 2U);
}

TEST(ToolstackConfig, RejectsInconsistentOrMalformedKeys) {
    struct Case {
        const char* key;
        const char* value; // nullptr: remove
        const char* message;
    };
    const Case cases[] = {
        {"frontend", nullptr, "frontend is missing"},
        {"frontend", "/local/domain/2/device/vif/0", "do not all name the vif"},
        {"frontend", "/local/domain/1/device/vbd/0", "is not a vif frontend path"},
        {"frontend-id", "2", "do not all name the vif"},
        {"frontend-id", "32753", "frontend-id: \"32753\" is out of range"},
        {"handle", "1", "do not all name the vif"},
        {"mac", nullptr, "mac is missing"},
        {"mac", "ff:ff:ff:ff:ff:ff", "multicast or broadcast"},
        {"mac", "00:16:3e:5c:01", "is not a MAC address"},
        {"online", "yes", "online: \"yes\" is not a boolean"},
        {"rate", "fast", "rate: \"fast\" is not a rate"},
        {"ip", "198.18.0.256", "ip: \"198.18.0.256\" is not an IPv4 address"},
    };
    for (const Case& c : cases) {
        KeyMap m = libxl_backend_folder();
        if (c.value == nullptr)
            m.erase(c.key);
        else
            m[c.key] = c.value;
        auto cfg = nf::parse_toolstack_config(nf::map_reader(m), kSelf);
        ASSERT_FALSE(cfg) << c.key;
        EXPECT_NE(cfg.error().message.find(c.message), std::string::npos)
            << cfg.error().message << " (expected: " << c.message << ")";
    }
    // The same folder read for another vif does not match.
    EXPECT_FALSE(nf::parse_toolstack_config(nf::map_reader(libxl_backend_folder()),
                                            nf::BackendPath{0, 1, 1}));
}

TEST(ToolstackConfig, HotplugStatus) {
    EXPECT_EQ(*nf::parse_hotplug_status(std::nullopt), nf::HotplugStatus::pending);
    EXPECT_EQ(*nf::parse_hotplug_status(std::string("connected")), nf::HotplugStatus::connected);
    EXPECT_EQ(*nf::parse_hotplug_status(std::string("error")), nf::HotplugStatus::failed);
    EXPECT_FALSE(nf::parse_hotplug_status(std::string("Connected")));
    // libxl writes "" at device creation: pending until the script answers.
    EXPECT_EQ(*nf::parse_hotplug_status(std::string("")), nf::HotplugStatus::pending);
}
