// dpnetbackd's capabilities as /proc/PID/status shows them, before and after start-up
// (docs/operations.md, "Capabilities"), and the work that must still succeed after the drop:
// guests attaching and detaching, traffic, a reload that rebinds the metrics endpoint or
// regroups the management socket, a clean stop of the port. Ports: net_tap, and
// net_af_packet on a veth pair; on this machine's kernel net_tap has no flow rules (no TC
// flower: FINDINGS.md), so the daemon keeps CAP_NET_ADMIN only where the port says it steers
// with rules (the Xen lab's dom0 does).
//
// "Before" is deterministic: the daemon opens the hypervisor before its data plane, so with
// the external simulated hypervisor stopped (SIGSTOP) the daemon waits there, holding what it
// started with, until the test lets the simulator go on.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <grp.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpnb/daemon/privileges.hpp"
#include "process_harness.hpp"

namespace dpnb::daemon_test {
namespace {

constexpr std::uint64_t bit(int cap) {
    return std::uint64_t{1} << cap;
}

using Sets = daemon::ThreadSets;

std::optional<Sets> sets_of(const std::string& status_path) {
    return daemon::read_thread_sets(status_path);
}

// Every thread of a process, by thread id.
std::map<pid_t, Sets> threads_of(pid_t pid) {
    std::map<pid_t, Sets> out;
    const std::string dir = "/proc/" + std::to_string(pid) + "/task";
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        if (auto s = sets_of(e.path().string() + "/status"))
            out[static_cast<pid_t>(std::stoi(e.path().filename().string()))] = *s;
    return out;
}

// The control thread (the main thread) holds `control`; the threads started before the drop
// (the lcore, DPDK's and the simulator's) hold nothing; a thread the control thread started
// since (libxenstore's watch reader) holds at most what it holds. Every thread has
// no_new_privs and the bounding set `bounding`.
void expect_dropped(pid_t pid, std::uint64_t control, std::uint64_t bounding,
                    const std::string& when) {
    const auto threads = threads_of(pid);
    ASSERT_GE(threads.size(), 3u) << when; // control, the lcore, DPDK's own
    for (const auto& [tid, s] : threads) {
        const std::string who = when + ": thread " + std::to_string(tid) + " (" + s.name + ")";
        if (tid == pid) {
            EXPECT_EQ(s.eff, control) << who;
            EXPECT_EQ(s.prm, control) << who;
        } else if (s.name.rfind("rte", 0) == 0 || s.name.rfind("eal", 0) == 0) {
            EXPECT_EQ(s.eff, 0u) << who;
            EXPECT_EQ(s.prm, 0u) << who;
        } else {
            EXPECT_EQ(s.eff & ~control, 0u) << who;
            EXPECT_EQ(s.prm & ~control, 0u) << who;
        }
        EXPECT_EQ(s.inh, 0u) << who;
        EXPECT_EQ(s.amb, 0u) << who;
        EXPECT_EQ(s.bnd, bounding) << who;
        EXPECT_TRUE(s.no_new_privs) << who;
    }
}

// CAP_NET_ADMIN when the uplink steers guests with kernel flow rules (net_tap with TC flower),
// else nothing.
std::uint64_t flow_rule_caps(const DaemonEnv& env) {
    const Json st = env.ctl_json({"stats"});
    return st.is_object() && st["ports"][0].value("flow_rules", false) ? bit(CAP_NET_ADMIN) : 0;
}

// A TCP port on 127.0.0.1 that nothing listens on right now.
std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

bool contains(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
}

// Echo through a guest: every frame back verified.
void expect_echo(const DaemonEnv& env, const std::string& mac) {
    const RunResult r = env.peer({"echo", "--to", mac, "--count", "200", "--wait", "10"});
    const Json j = Json::parse(r.out, nullptr, false);
    ASSERT_EQ(r.status, 0) << r.describe();
    ASSERT_TRUE(j.is_object()) << r.describe();
    EXPECT_EQ(j["received"], 200) << r.out;
    EXPECT_EQ(j["bad"], 0) << r.out;
}

std::optional<gid_t> group_id(const char* name) {
    if (const group* g = getgrnam(name)) return g->gr_gid;
    return std::nullopt;
}

TEST(DaemonPrivileges, DropsAfterStartUpAndServesOn) {
    DT_REQUIRE_ENVIRONMENT();
    const auto mine = sets_of("/proc/self/status");
    ASSERT_TRUE(mine);
    if ((mine->eff & bit(CAP_SETPCAP)) == 0 || (mine->eff & bit(CAP_NET_ADMIN)) == 0)
        GTEST_SKIP() << "needs root's capabilities (CAP_SETPCAP, CAP_NET_ADMIN)";

    DaemonSetup external_sim;
    external_sim.embedded_sim = false;
    DaemonEnv env(external_sim);
    ASSERT_TRUE(env.start_simhv());
    env.simhv->signal(SIGSTOP);
    ASSERT_TRUE(env.spawn_daemon());
    // Started, and waiting for the stopped simulator: nothing dropped yet.
    ASSERT_TRUE(wait_for([&] { return contains(env.daemon_log(), "starting"); }))
        << env.daemon_log();
    const auto before = sets_of("/proc/" + std::to_string(env.daemon->pid()) + "/status");
    ASSERT_TRUE(before);
    EXPECT_EQ(before->name, "dpnetbackd");
    EXPECT_EQ(before->eff, mine->eff);
    EXPECT_EQ(before->prm, mine->prm);
    EXPECT_EQ(before->bnd, mine->bnd);
    EXPECT_FALSE(before->no_new_privs);
    EXPECT_FALSE(contains(env.daemon_log(), "capabilities:"));
    env.simhv->signal(SIGCONT);
    ASSERT_TRUE(env.wait_daemon_ready());

    // After: nothing but what the tap's flow rules need (none here), and the bounding sets
    // shrink to that (the test runs with CAP_SETPCAP).
    const pid_t pid = env.daemon->pid();
    const std::uint64_t kept = flow_rule_caps(env);
    expect_dropped(pid, kept, kept, "after start-up");
    EXPECT_TRUE(contains(env.daemon_log(), kept != 0 ? "capabilities: kept cap_net_admin (port "
                                                       "uplink (net_tap) adds and removes"
                                                     : "capabilities: kept none in the control "
                                                       "thread"))
        << env.daemon_log();
    EXPECT_TRUE(contains(env.daemon_log(), "bounding sets trimmed")) << env.daemon_log();

    // Guests attach and pass traffic.
    const auto d1 = env.create_domain("cap1");
    ASSERT_TRUE(d1);
    env.start_guest(*d1, {"--echo"});
    const std::string v1 = vif_name(*d1);
    ASSERT_TRUE(env.wait_connected({v1}));
    expect_echo(env, guest_mac(*d1));

    // Detach and attach again through the management socket.
    const RunResult detach = env.ctl({"detach", v1});
    EXPECT_EQ(detach.status, 0) << detach.describe();
    const RunResult attach = env.ctl({"attach", v1});
    EXPECT_EQ(attach.status, 0) << attach.describe();

    // A second guest after the drop.
    const auto d2 = env.create_domain("cap2");
    ASSERT_TRUE(d2);
    env.start_guest(*d2, {"--echo"});
    ASSERT_TRUE(env.wait_connected({vif_name(*d2)}));
    expect_echo(env, guest_mac(*d2));

    // A reload that moves the metrics endpoint to another port binds the new one.
    const std::uint16_t port = free_port();
    env.setup.metrics_port = port;
    ASSERT_TRUE(write_file(env.config_path, env.config_text()));
    const RunResult reload = env.ctl({"reload"});
    EXPECT_EQ(reload.status, 0) << reload.describe();
    const auto [code, body] = http_get(port, "/metrics");
    EXPECT_EQ(code, 200);
    EXPECT_TRUE(contains(body, "dpnetback_vifs_connected 2")) << body;

    // Without a group at start-up CAP_CHOWN is gone: a reload that sets one says so.
    env.setup.management_group = "adm";
    ASSERT_TRUE(write_file(env.config_path, env.config_text()));
    const RunResult regroup = env.ctl({"--json", "reload"});
    EXPECT_TRUE(contains(regroup.out, "CAP_CHOWN was dropped after start-up"))
        << regroup.describe();
    env.setup.management_group.clear();

    // The threads started since (libxenstore's watch reader) hold no more than the control
    // thread.
    expect_dropped(pid, kept, kept, "after guests and reloads");

    // The stop closes the port and leaks nothing.
    env.daemon->signal(SIGTERM);
    const auto status = env.daemon->wait();
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << env.daemon_log();
    EXPECT_TRUE(contains(env.daemon_log(), "engine: shut down cleanly")) << env.daemon_log();
}

TEST(DaemonPrivileges, UnderTheUnitsBoundingSetWithAManagementGroup) {
    DT_REQUIRE_ENVIRONMENT();
    const auto adm = group_id("adm"), nogroup = group_id("nogroup");
    if (!adm || !nogroup) GTEST_SKIP() << "needs the groups adm and nogroup";
    if (!std::filesystem::exists("/usr/bin/setpriv")) GTEST_SKIP() << "needs setpriv (util-linux)";

    // The unit's CapabilityBoundingSet, without CAP_NET_ADMIN: the tap cannot be made.
    DaemonSetup no_net_admin;
    no_net_admin.launcher = {"/usr/bin/setpriv", "--bounding-set", "-all,+net_raw,+chown",
                             "--inh-caps", "-all"};
    DaemonEnv failing(no_net_admin);
    ASSERT_TRUE(failing.spawn_daemon());
    const auto failed = failing.daemon->wait();
    ASSERT_TRUE(failed);
    EXPECT_EQ(*failed, 1);
    EXPECT_TRUE(contains(failing.daemon_log(), "Unable to set TUNSETIFF")) << failing.daemon_log();

    // The unit's set: with a management group the control thread keeps CAP_CHOWN. Without
    // CAP_SETPCAP the bounding sets stay the unit's.
    DaemonSetup unit;
    unit.launcher = {"/usr/bin/setpriv", "--bounding-set", "-all,+net_admin,+net_raw,+chown",
                     "--inh-caps", "-all"};
    unit.management_group = "adm";
    DaemonEnv env(unit);
    ASSERT_TRUE(env.start_daemon());
    const std::uint64_t bounding = bit(CAP_NET_ADMIN) | bit(CAP_NET_RAW) | bit(CAP_CHOWN);
    expect_dropped(env.daemon->pid(), flow_rule_caps(env) | bit(CAP_CHOWN), bounding,
                   "after start-up");
    EXPECT_TRUE(contains(env.daemon_log(),
                         "cap_chown (a reload may give the management socket another group)"))
        << env.daemon_log();
    EXPECT_FALSE(contains(env.daemon_log(), "bounding sets trimmed")) << env.daemon_log();
    struct stat st {};
    ASSERT_EQ(::stat(env.socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, *adm);

    // A reload gives the socket another group (CAP_CHOWN: root is in neither group).
    env.setup.management_group = "nogroup";
    ASSERT_TRUE(write_file(env.config_path, env.config_text()));
    const RunResult reload = env.ctl({"reload"});
    EXPECT_EQ(reload.status, 0) << reload.describe();
    ASSERT_EQ(::stat(env.socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, *nogroup);

    env.daemon->signal(SIGTERM);
    const auto status = env.daemon->wait();
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << env.daemon_log();
}

// AF_PACKET on one end of a veth pair, dpnb-peer on the other: the socket needs CAP_NET_RAW and
// promiscuous mode CAP_NET_ADMIN at start-up; serving and stopping need neither.
TEST(DaemonPrivileges, AnAfPacketPortServesWithNothingKept) {
    DT_REQUIRE_ENVIRONMENT();
    const auto mine = sets_of("/proc/self/status");
    ASSERT_TRUE(mine);
    if ((mine->eff & bit(CAP_SETPCAP)) == 0 || (mine->eff & bit(CAP_NET_ADMIN)) == 0)
        GTEST_SKIP() << "needs root's capabilities (CAP_SETPCAP, CAP_NET_ADMIN)";
    DaemonEnv env;
    const std::string daemon_end = env.iface + "d";
    // The test runs in a network namespace of its own: the pair is gone with it.
    for (const std::vector<std::string>& cmd :
         {std::vector<std::string>{"/usr/sbin/ip", "link", "add", daemon_end, "type", "veth",
                                   "peer", "name", env.iface},
          {"/usr/sbin/ip", "link", "set", daemon_end, "up"},
          {"/usr/sbin/ip", "link", "set", env.iface, "up"}}) {
        const RunResult r = run(cmd);
        ASSERT_EQ(r.status, 0) << r.describe();
    }
    env.setup.device = "net_af_packet0,iface=" + daemon_end;
    ASSERT_TRUE(env.start_daemon());
    expect_dropped(env.daemon->pid(), 0, 0, "after start-up");

    const auto d1 = env.create_domain("pkt1");
    ASSERT_TRUE(d1);
    env.start_guest(*d1, {"--echo"});
    ASSERT_TRUE(env.wait_connected({vif_name(*d1)}));
    expect_echo(env, guest_mac(*d1));

    env.daemon->signal(SIGTERM);
    const auto status = env.daemon->wait();
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << env.daemon_log();
    EXPECT_TRUE(contains(env.daemon_log(), "engine: shut down cleanly")) << env.daemon_log();
}

} // namespace
} // namespace dpnb::daemon_test
