// dpnetbackd as a process, with guests as dpnb-netfront processes and the tap port's kernel
// side driven by dpnb-peer: traffic both ways, the metrics endpoint scraped over HTTP and
// checked with promtool, vifs handed over with dpnetbackctl attach, SIGTERM with traffic in
// flight, SIGKILL and a restart that the guests survive, guests destroyed mid-transfer.
#include <gtest/gtest.h>

#include <csignal>

#include "process_harness.hpp"

namespace dpnb::daemon_test {
namespace {

Json parse_report(const std::string& text) {
    const Json j = Json::parse(text, nullptr, false);
    return j.is_discarded() ? Json(nullptr) : j;
}

// dpnb-peer echo to the guests: every frame must come back verified.
void expect_echo(const DaemonEnv& env, const std::vector<std::string>& macs, unsigned count,
                 unsigned size = 1000) {
    std::string to;
    for (const std::string& m : macs)
        to += (to.empty() ? "" : ",") + m;
    const RunResult r = env.peer({"echo", "--to", to, "--count", std::to_string(count), "--size",
                                  std::to_string(size), "--wait", "10"});
    const Json j = parse_report(r.out);
    ASSERT_EQ(r.status, 0) << r.describe();
    ASSERT_TRUE(j.is_object()) << r.describe();
    EXPECT_EQ(j["sent"], count * macs.size());
    EXPECT_EQ(j["received"], count * macs.size());
    EXPECT_EQ(j["lost"], 0);
    EXPECT_EQ(j["bad"], 0);
    EXPECT_EQ(j["duplicates"], 0);
    EXPECT_TRUE(j["rtt_us"].is_object());
}

double total_rx(const DaemonEnv& env) {
    const Json s = env.ctl_json({"stats"});
    return s.is_object() ? s["vifs"]["rx_packets"].get<double>() : -1;
}

std::string vif_series(const std::string& family, const std::string& vif,
                       const std::string& direction) {
    return family + "{vif=\"" + vif + "\",direction=\"" + direction + "\"}";
}

TEST(DaemonTraffic, BothWaysMetricsMoveAndPassPromtool) {
    DT_REQUIRE_ENVIRONMENT();
    // The test must fail, not skip, without promtool (scripts/install-deps.sh test).
    ASSERT_FALSE(promtool_path().empty()) << "promtool is missing: apt-get install prometheus";
    DaemonEnv env;
    ASSERT_TRUE(env.start_daemon());
    const auto d1 = env.create_domain("echo1"), d2 = env.create_domain("echo2"),
               d3 = env.create_domain("talker");
    ASSERT_TRUE(d1 && d2 && d3);
    env.start_guest(*d1, {"--echo"});
    env.start_guest(*d2, {"--echo", "--rx-mode", "reuse"});
    ASSERT_TRUE(env.wait_connected({vif_name(*d1), vif_name(*d2)}));

    const std::string before = env.scrape();
    ASSERT_FALSE(before.empty());
    EXPECT_EQ(metric(before, "dpnetback_vifs_connected"), 2);
    EXPECT_EQ(metric(before, "dpnetback_vif_connected{vif=\"" + vif_name(*d1) + "\"}"), 1);

    // Tap -> guests -> tap.
    expect_echo(env, {guest_mac(*d1), guest_mac(*d2)}, 2000);
    if (HasFatalFailure()) return;

    // Guest -> tap: the receiver listens before the guest starts sending.
    const auto tap = iface_mac(env.iface);
    ASSERT_TRUE(tap);
    auto rx = env.start_peer({"receive", "--count", "500", "--from", guest_mac(*d3)}, "rx");
    ASSERT_TRUE(wait_for([&] { return rx->err().find("receiving on") != std::string::npos; }))
        << rx->err();
    Process& talker = env.start_guest(
        *d3, {"--send", "500", "--size", "700", "--dst-mac", *tap, "--receive", "300", "--json"});
    ASSERT_TRUE(env.wait_connected({vif_name(*d3)}));
    // Tap -> guest without echo: the guest verifies and counts.
    // Paced: frames beyond the guest's posted RX buffers would be dropped (no_buffer), rightly.
    const RunResult sent =
        env.peer({"send", "--to", guest_mac(*d3), "--count", "300", "--rate", "2000"});
    EXPECT_EQ(sent.status, 0) << sent.describe();
    const auto rx_status = rx->wait();
    ASSERT_TRUE(rx_status) << "dpnb-peer receive did not finish";
    EXPECT_EQ(*rx_status, 0) << rx->out() << rx->err();
    const Json rj = parse_report(rx->out());
    ASSERT_TRUE(rj.is_object()) << rx->out();
    EXPECT_EQ(rj["received"], 500);
    EXPECT_EQ(rj["bad"], 0);
    EXPECT_EQ(rj["duplicates"], 0);
    const auto talker_status = talker.wait();
    ASSERT_TRUE(talker_status) << "dpnb-netfront --send/--receive did not finish";
    EXPECT_EQ(*talker_status, 0) << talker.out() << talker.err();
    const Json tj = parse_report(talker.out());
    ASSERT_TRUE(tj.is_object()) << talker.out();
    EXPECT_EQ(tj["workload"]["rx_verified"], 300);
    EXPECT_EQ(tj["workload"]["tx_completed"], 500);
    EXPECT_EQ(tj["workload"]["tx_failed"], 0);

    // The counters moved by at least what the guests and the peer counted.
    const std::string after = env.scrape();
    for (unsigned d : {*d1, *d2}) {
        const std::string vif = vif_name(d);
        const auto rx0 = metric(before, vif_series("dpnetback_vif_packets_total", vif, "rx"));
        const auto rx1 = metric(after, vif_series("dpnetback_vif_packets_total", vif, "rx"));
        const auto tx1 = metric(after, vif_series("dpnetback_vif_packets_total", vif, "tx"));
        const auto b1 = metric(after, vif_series("dpnetback_vif_bytes_total", vif, "rx"));
        ASSERT_TRUE(rx0 && rx1 && tx1 && b1) << after;
        EXPECT_GE(*rx1 - *rx0, 2000) << vif;
        EXPECT_GE(*tx1, 2000) << vif;
        EXPECT_GE(*b1, 2000.0 * 1000) << vif;
    }
    // (The talker's own series are gone: it unplugged its vif when done. The port counts it.)
    const auto port_rx =
        metric(after, "dpnetback_port_packets_total{port=\"uplink\",direction=\"rx\"}");
    const auto port_tx =
        metric(after, "dpnetback_port_packets_total{port=\"uplink\",direction=\"tx\"}");
    ASSERT_TRUE(port_rx && port_tx) << after;
    EXPECT_GE(*port_rx, 4300);
    EXPECT_GE(*port_tx, 4500);
    EXPECT_EQ(metric(after, "dpnetback_vif_rx_mode{vif=\"" + vif_name(*d1) + "\",mode=\"copy\"}"),
              1);
    // Every attached vif has its translation-table series; a tap port with shared steering
    // has no zero-copy queue, so the daemon grant-copies even for the reuse guest: no lookups.
    EXPECT_EQ(metric(after, "dpnetback_vif_iott_lookups_total{vif=\"" + vif_name(*d2) +
                                "\",result=\"hit\"}"),
              0)
        << after;
    EXPECT_GE(metric(after, "dpnetback_vif_grant_operations_total{vif=\"" + vif_name(*d2) +
                                "\",kind=\"copy\"}")
                  .value_or(0),
              2000)
        << after;
    EXPECT_GE(metric(after, "dpnetback_metrics_scrapes_total").value_or(0), 1);
    EXPECT_GE(
        metric(after, "dpnetback_mgmt_requests_total{command=\"list\",result=\"ok\"}").value_or(0),
        1);

    // `stats` agrees with the metrics.
    EXPECT_GE(total_rx(env), 4000); // over the vifs attached now (the talker is gone)

    // promtool's linter on the real exposition.
    const RunResult lint = run({promtool_path(), "check", "metrics"}, kWait, after);
    EXPECT_EQ(lint.status, 0) << lint.describe();
    EXPECT_EQ(lint.out + lint.err, "") << lint.describe();

    // "/" points at /metrics; other paths are not found.
    const std::uint16_t port = env.metrics_port();
    EXPECT_EQ(http_get(port, "/").first, 200);
    EXPECT_EQ(http_get(port, "/metricz").first, 404);
}

TEST(DaemonTraffic, AdoptedOnlyServesWhatTheCliAttaches) {
    DT_REQUIRE_ENVIRONMENT();
    DaemonEnv env({.embedded_sim = true, .extra_toml = "[vifs]\nserve = \"adopted-only\"\n"});
    ASSERT_TRUE(env.start_daemon());
    const auto d1 = env.create_domain("byname"), d2 = env.create_domain("bydomid");
    ASSERT_TRUE(d1 && d2);
    env.start_guest(*d1, {"--echo"});
    env.start_guest(*d2, {"--echo"});
    const std::string v1 = vif_name(*d1), v2 = vif_name(*d2);
    // Listed, left alone: nobody answers the frontends.
    ASSERT_TRUE(wait_for([&] {
        const Json a = env.vif_entry(v1), b = env.vif_entry(v2);
        return a.is_object() && b.is_object();
    })) << env.ctl({"list"}).describe();
    EXPECT_EQ(env.vif_entry(v1)["role"], "unadopted");
    EXPECT_EQ(env.vif_entry(v2)["role"], "unadopted");
    EXPECT_FALSE(env.vif_connected(v1));

    // By name, with a mode; by domain id.
    const RunResult a1 = env.ctl({"attach", v1, "--rx-mode", "copy"});
    EXPECT_EQ(a1.status, 0) << a1.describe();
    EXPECT_NE(a1.out.find(v1 + ": attach done"), std::string::npos) << a1.out;
    const Json a2 = env.ctl_json({"attach", "--domid", std::to_string(*d2)});
    ASSERT_TRUE(a2.is_object());
    EXPECT_EQ(a2["vif"], v2);
    ASSERT_TRUE(env.wait_connected({v1, v2}));
    const Json s1 = env.ctl_json({"show", v1});
    ASSERT_TRUE(s1.is_object());
    EXPECT_EQ(s1["adopted"], true);
    EXPECT_EQ(s1["rx_mode"], "copy");
    expect_echo(env, {guest_mac(*d1), guest_mac(*d2)}, 500);

    // A domain that does not exist cannot be attached.
    const RunResult bad = env.ctl({"attach", "vif4000.0"});
    EXPECT_EQ(bad.status, 1) << bad.describe();
    EXPECT_NE(bad.err.find("vif4000.0"), std::string::npos) << bad.err;
}

// Counts of "engine: shut down cleanly" and the final line, for one daemon run.
void expect_clean_stop(const std::string& log) {
    EXPECT_NE(log.find("SIGTERM: stopping"), std::string::npos) << log;
    EXPECT_NE(log.find("engine: shut down cleanly"), std::string::npos) << log;
    EXPECT_NE(log.find("(exit status 0)"), std::string::npos) << log;
    EXPECT_EQ(log.find("leaks at shutdown"), std::string::npos) << log;
}

TEST(DaemonLifecycle, SigtermWithTrafficInFlightClosesGuestsAndExitsZero) {
    DT_REQUIRE_ENVIRONMENT();
    // The simulator in its own process: the guests and xenstore outlive the daemon, so what
    // the daemon left behind can be looked at.
    DaemonEnv env({.embedded_sim = false, .extra_toml = ""});
    ASSERT_TRUE(env.start_simhv());
    ASSERT_TRUE(env.start_daemon());
    const auto d1 = env.create_domain("g1"), d2 = env.create_domain("g2");
    ASSERT_TRUE(d1 && d2);
    Process& g1 = env.start_guest(*d1, {"--echo", "--json"});
    Process& g2 = env.start_guest(*d2, {"--echo", "--json", "--rx-mode", "reuse"});
    ASSERT_TRUE(env.wait_connected({vif_name(*d1), vif_name(*d2)}));

    auto traffic = env.start_peer({"echo", "--to", guest_mac(*d1) + "," + guest_mac(*d2),
                                   "--duration", "300", "--window", "128", "--loss-timeout", "200"},
                                  "inflight");
    // Frames are moving before the signal.
    ASSERT_TRUE(wait_for([&] { return total_rx(env) > 1000; })) << env.ctl({"stats"}).describe();
    env.daemon->signal(SIGTERM);
    const auto status = env.daemon->wait();
    ASSERT_TRUE(status) << "dpnetbackd did not stop";
    EXPECT_EQ(*status, 0) << env.daemon_log();
    expect_clean_stop(env.daemon_log());
    EXPECT_NE(env.daemon_log().find("control: every vif closed"), std::string::npos)
        << env.daemon_log();

    // The backends say Closed in xenstore; the guests went through a disconnect.
    for (unsigned d : {*d1, *d2})
        EXPECT_EQ(
            env.xenstore_read("/local/domain/0/backend/vif/" + std::to_string(d) + "/0/state"),
            "6");
    traffic->signal(SIGINT);
    ASSERT_TRUE(traffic->wait());
    const Json tr = parse_report(traffic->out());
    ASSERT_TRUE(tr.is_object()) << traffic->out() << traffic->err();
    EXPECT_GT(tr["received"].get<double>(), 0);
    EXPECT_EQ(tr["bad"], 0);
    for (Process* g : {&g1, &g2}) {
        g->signal(SIGTERM);
        ASSERT_TRUE(g->wait()) << "the guest did not stop";
        const Json j = parse_report(g->out());
        ASSERT_TRUE(j.is_object()) << g->out() << g->err();
        EXPECT_GE(j["counters"]["disconnects"].get<double>(), 1) << g->out();
        EXPECT_EQ(j["counters"]["broken"], 0) << g->out();
        EXPECT_EQ(j["counters"]["grant_still_in_use"], 0) << g->out();
    }
    // The guests are gone and nothing of theirs is pinned.
    ASSERT_TRUE(wait_for([&] {
        const RunResult s = env.simhv_cmd({"stats"});
        return s.out.find("pinned_grants 0\n") != std::string::npos;
    })) << env.simhv_cmd({"stats"}).describe();
}

TEST(DaemonLifecycle, SigkillThenRestartGuestsReconnectAndTrafficResumes) {
    DT_REQUIRE_ENVIRONMENT();
    DaemonEnv env({.embedded_sim = false, .extra_toml = ""});
    ASSERT_TRUE(env.start_simhv());
    ASSERT_TRUE(env.start_daemon());
    const auto d1 = env.create_domain("r1"), d2 = env.create_domain("r2");
    ASSERT_TRUE(d1 && d2);
    Process& g1 = env.start_guest(*d1, {"--echo"});
    Process& g2 = env.start_guest(*d2, {"--echo", "--rx-mode", "reuse"});
    const std::vector<std::string> vifs{vif_name(*d1), vif_name(*d2)};
    ASSERT_TRUE(env.wait_connected(vifs));
    expect_echo(env, {guest_mac(*d1), guest_mac(*d2)}, 500);

    env.daemon->signal(SIGKILL);
    ASSERT_EQ(env.daemon->wait(), 128 + SIGKILL);
    // The management socket is left behind; the next daemon replaces it.
    const RunResult down = env.ctl({"list"});
    EXPECT_EQ(down.status, 3) << down.describe();

    ASSERT_TRUE(env.start_daemon());
    ASSERT_TRUE(env.wait_connected(vifs));
    EXPECT_TRUE(g1.running());
    EXPECT_TRUE(g2.running());
    expect_echo(env, {guest_mac(*d1), guest_mac(*d2)}, 1000);
    // The restarted daemon found the vifs where the old one left them.
    for (const std::string& v : vifs) {
        const Json s = env.ctl_json({"show", v});
        ASSERT_TRUE(s.is_object());
        EXPECT_EQ(s["phase"], "connected");
    }

    env.daemon->signal(SIGTERM);
    ASSERT_EQ(env.daemon->wait(), 0) << env.daemon_log();
}

// shutdown.vifs = keep: SIGTERM detaches and writes nothing (the upgrade path), so the next
// daemon re-attaches and the guests never see their backend leave Connected.
TEST(DaemonLifecycle, SigtermWithKeepLeavesVifsForTheNextDaemon) {
    DT_REQUIRE_ENVIRONMENT();
    DaemonEnv env({.embedded_sim = false, .extra_toml = "[shutdown]\nvifs = \"keep\"\n"});
    ASSERT_TRUE(env.start_simhv());
    ASSERT_TRUE(env.start_daemon());
    const auto d = env.create_domain("kept");
    ASSERT_TRUE(d);
    Process& g = env.start_guest(*d, {"--echo"});
    const std::vector<std::string> vifs{vif_name(*d)};
    ASSERT_TRUE(env.wait_connected(vifs));
    expect_echo(env, {guest_mac(*d)}, 200);

    env.daemon->signal(SIGTERM);
    ASSERT_EQ(env.daemon->wait(), 0) << env.daemon_log();
    EXPECT_NE(env.daemon_log().find("shutdown.vifs = keep"), std::string::npos);
    EXPECT_EQ(env.xenstore_read("/local/domain/0/backend/vif/" + std::to_string(*d) + "/0/state"),
              std::optional<std::string>("4"));

    ASSERT_TRUE(env.start_daemon());
    ASSERT_TRUE(env.wait_connected(vifs));
    EXPECT_TRUE(g.running());
    expect_echo(env, {guest_mac(*d)}, 500);
    env.daemon->signal(SIGTERM);
    ASSERT_EQ(env.daemon->wait(), 0) << env.daemon_log();
}

TEST(DaemonLifecycle, GuestsDestroyedMidTransferAreReleasedOthersKeepTraffic) {
    DT_REQUIRE_ENVIRONMENT();
    DaemonEnv env;
    ASSERT_TRUE(env.start_daemon());
    const auto keep = env.create_domain("keeper"), doomed = env.create_domain("doomed"),
               crashed = env.create_domain("crashed");
    ASSERT_TRUE(keep && doomed && crashed);
    env.start_guest(*keep, {"--echo"});
    Process& gd = env.start_guest(*doomed, {"--echo", "--rx-mode", "reuse"});
    Process& gc = env.start_guest(*crashed, {"--echo"});
    ASSERT_TRUE(env.wait_connected({vif_name(*keep), vif_name(*doomed), vif_name(*crashed)}));

    auto traffic = env.start_peer(
        {"echo", "--to", guest_mac(*keep) + "," + guest_mac(*doomed) + "," + guest_mac(*crashed),
         "--duration", "300", "--loss-timeout", "200"},
        "mid");
    ASSERT_TRUE(wait_for([&] { return total_rx(env) > 1500; }));
    // `xl destroy` of one guest, and another guest's process killed (its domain dies with it).
    const RunResult destroyed = env.simhv_cmd({"destroy", std::to_string(*doomed)});
    ASSERT_EQ(destroyed.status, 0) << destroyed.describe();
    gc.signal(SIGKILL);
    ASSERT_TRUE(gc.wait());

    // The daemon lets go of both: no longer served, and the simulator frees the domains,
    // which it does only once no page of theirs is mapped or in flight.
    const auto released = [&](unsigned d) {
        const Json v = env.vif_entry(vif_name(d));
        return !v.is_object() || v.value("role", "") != "served";
    };
    EXPECT_TRUE(wait_for([&] { return released(*doomed) && released(*crashed); }))
        << env.ctl({"list"}).describe();
    EXPECT_TRUE(wait_for([&] {
        const RunResult l = env.simhv_cmd({"list"});
        return l.status == 0 && l.out.find("doomed") == std::string::npos &&
               l.out.find("crashed") == std::string::npos;
    })) << env.simhv_cmd({"list"}).describe();
    gd.kill_now();

    // The survivor kept its traffic during all this, and keeps it now.
    traffic->signal(SIGINT);
    ASSERT_TRUE(traffic->wait());
    const Json tr = parse_report(traffic->out());
    ASSERT_TRUE(tr.is_object()) << traffic->out() << traffic->err();
    EXPECT_EQ(tr["bad"], 0);
    EXPECT_GT(tr["targets"][0]["received"].get<double>(), 0);
    EXPECT_TRUE(env.vif_connected(vif_name(*keep)));
    expect_echo(env, {guest_mac(*keep)}, 1000);
    const std::string m = env.scrape();
    EXPECT_EQ(metric(m, "dpnetback_vifs_connected"), 1) << m;

    env.daemon->signal(SIGTERM);
    ASSERT_EQ(env.daemon->wait(), 0) << env.daemon_log();
    expect_clean_stop(env.daemon_log());
}

} // namespace
} // namespace dpnb::daemon_test
