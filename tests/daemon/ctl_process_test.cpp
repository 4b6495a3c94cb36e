// dpnetbackctl against a running dpnetbackd (every command, table and --json forms, the
// error cases and their exit statuses: docs/cli.md), and dpnetbackd's own command line and
// configuration errors (one clear line, exit status 64 or 78: daemon.hpp), and a port it
// refuses at start (a virtio_user port without vhost-net: exit status 1, the fix named).
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "process_harness.hpp"

namespace dpnb::daemon_test {
namespace {

constexpr int kCtlRefused = 1, kCtlUsage = 2, kCtlUnreachable = 3;
constexpr int kUsage = 64, kConfig = 78;

bool contains(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
}

std::size_t lines(const std::string& text) {
    std::size_t n = 0;
    for (char c : text)
        n += c == '\n';
    return n;
}

// One daemon and two echoing guests for the whole suite of CLI checks (one test: ctest runs
// each test in a process of its own, and a daemon start is the expensive part).
TEST(DaemonCtl, EveryCommandTableJsonAndErrors) {
    DT_REQUIRE_ENVIRONMENT();
    DaemonEnv env;
    ASSERT_TRUE(env.start_daemon());
    const auto d1 = env.create_domain("ctl1"), d2 = env.create_domain("ctl2");
    ASSERT_TRUE(d1 && d2);
    env.start_guest(*d1, {"--echo"});
    Process& g2 = env.start_guest(*d2, {"--echo", "--json"});
    const std::string v1 = vif_name(*d1), v2 = vif_name(*d2);
    ASSERT_TRUE(env.wait_connected({v1, v2}));

    // version
    const RunResult ver = env.ctl({"version"});
    EXPECT_EQ(ver.status, 0) << ver.describe();
    EXPECT_TRUE(contains(ver.out, "dpnetbackd ")) << ver.out;
    EXPECT_TRUE(contains(ver.out, "hypervisor sim")) << ver.out;
    EXPECT_TRUE(contains(ver.out, "pid " + std::to_string(env.daemon->pid()))) << ver.out;
    const Json vj = env.ctl_json({"version"});
    ASSERT_TRUE(vj.is_object());
    EXPECT_EQ(vj["pid"], env.daemon->pid());
    EXPECT_EQ(vj["protocol"], 1);
    EXPECT_EQ(vj["hypervisor"], "sim");
    EXPECT_TRUE(vj["version"].is_string());

    // list
    const RunResult list = env.ctl({"list"});
    EXPECT_EQ(list.status, 0) << list.describe();
    EXPECT_EQ(list.out.rfind("VIF ", 0), 0u) << list.out;
    EXPECT_TRUE(contains(list.out, "RX-PKTS")) << list.out;
    EXPECT_TRUE(contains(list.out, v1 + " ")) << list.out;
    EXPECT_TRUE(contains(list.out, v2 + " ")) << list.out;
    EXPECT_EQ(lines(list.out), 3u) << list.out;
    const Json lj = env.ctl_json({"list"});
    ASSERT_TRUE(lj.is_object());
    ASSERT_EQ(lj["vifs"].size(), 2u);
    for (const Json& v : lj["vifs"]) {
        EXPECT_EQ(v["role"], "served");
        EXPECT_EQ(v["phase"], "connected");
        EXPECT_EQ(v["backend_state"], "Connected");
        EXPECT_EQ(v["frontend_state"], "Connected");
        EXPECT_EQ(v["port"], "uplink");
        EXPECT_TRUE(v["rx_queue"].is_null()); // shared steering
    }

    // show, by name and by backend path
    const RunResult show = env.ctl({"show", v1});
    EXPECT_EQ(show.status, 0) << show.describe();
    EXPECT_EQ(show.out.rfind(v1 + "\n", 0), 0u) << show.out;
    EXPECT_TRUE(contains(show.out, guest_mac(*d1))) << show.out;
    EXPECT_TRUE(contains(show.out, "counters\n")) << show.out;
    EXPECT_TRUE(contains(show.out, "tx errors by reason\n")) << show.out;
    const Json sj =
        env.ctl_json({"show", "/local/domain/0/backend/vif/" + std::to_string(*d1) + "/0"});
    ASSERT_TRUE(sj.is_object());
    EXPECT_EQ(sj["vif"], v1);
    EXPECT_EQ(sj["domain"], "ctl1");
    EXPECT_EQ(sj["mac"], guest_mac(*d1));
    EXPECT_EQ(sj["data_plane"]["state"], "running");
    // No device behind an IOMMU here: nothing of the guest's is DMA-mapped.
    EXPECT_TRUE(sj["data_plane"].contains("static_grant_iommu"));
    EXPECT_TRUE(sj["data_plane"]["static_grant_iommu"].is_null());
    EXPECT_TRUE(sj["counters"].contains("rx_packets"));
    EXPECT_TRUE(sj["tx_errors"].is_object());

    // stats
    const RunResult stats = env.ctl({"stats"});
    EXPECT_EQ(stats.status, 0) << stats.describe();
    for (const char* section :
         {"process\n", "metrics\n", "vifs\n", "lcores\n", "ports\n", "control plane\n"})
        EXPECT_TRUE(contains(stats.out, section)) << section << " in\n" << stats.out;
    EXPECT_TRUE(contains(stats.out, "zero_copy (")) << "the ports' DMA column in\n" << stats.out;
    const Json st = env.ctl_json({"stats"});
    ASSERT_TRUE(st.is_object());
    EXPECT_EQ(st["process"]["pid"], env.daemon->pid());
    EXPECT_EQ(st["vifs"]["connected"], 2);
    EXPECT_EQ(st["ports"][0]["name"], "uplink");
    EXPECT_EQ(st["ports"][0]["driver"], "net_tap");
    // The DMA policy's decision for the tap: a virtual device, zero copy, whatever the domain.
    EXPECT_EQ(st["ports"][0]["dma"]["verdict"], "zero_copy") << st["ports"][0].dump();
    EXPECT_EQ(st["ports"][0]["dma"]["bus"], "vdev");
    EXPECT_EQ(st["ports"][0]["dma"]["binding"], "none");
    EXPECT_FALSE(st["ports"][0]["dma"]["reason"].get<std::string>().empty());
    const std::uint16_t mport = st["management"]["metrics_endpoint"]["port"];
    EXPECT_NE(mport, 0);
    // The log says the same port (metrics.port = 0 picked it).
    EXPECT_TRUE(contains(env.daemon_log(),
                         "metrics: http://127.0.0.1:" + std::to_string(mport) + "/metrics"))
        << env.daemon_log();
    EXPECT_TRUE(contains(stats.out, "http://127.0.0.1:" + std::to_string(mport) + "/metrics"))
        << stats.out;

    // set: the RX mode at once. Map and reuse need a zero-copy NIC queue, which a tap port
    // with shared steering does not have: refused, with the reason, and the vif keeps copying.
    const RunResult map = env.ctl({"set", v1, "rx-mode", "map"});
    EXPECT_EQ(map.status, kCtlRefused) << map.describe();
    EXPECT_TRUE(contains(map.err, "dpnetbackctl: " + v1 + ": RX mode map needs a zero-copy"))
        << map.err;
    EXPECT_FALSE(contains(map.err, v1 + ": " + v1)) << map.err;
    const RunResult set = env.ctl({"set", v1, "rx-mode", "copy"});
    EXPECT_EQ(set.status, 0) << set.describe();
    EXPECT_TRUE(contains(set.out, v1 + ": set done (phase connected, rx mode copy)")) << set.out;
    EXPECT_EQ(env.ctl_json({"show", v1})["data_plane"]["rx_mode"], "copy");
    const RunResult echo = env.peer({"echo", "--to", guest_mac(*d1), "--count", "300"});
    EXPECT_EQ(echo.status, 0) << echo.describe();
    const Json rate = env.ctl_json({"set", v1, "rate", "125000,20000"});
    ASSERT_TRUE(rate.is_object());
    EXPECT_EQ(rate["vif"], v1);
    EXPECT_EQ(env.ctl({"set", v1, "rate", "off"}).status, 0);

    // Errors the daemon reports: exit 1, its message on stderr, or JSON with --json.
    const RunResult no_vif = env.ctl({"show", "vif999.0"});
    EXPECT_EQ(no_vif.status, kCtlRefused) << no_vif.describe();
    EXPECT_TRUE(contains(no_vif.err, "no such vif vif999.0")) << no_vif.err;
    EXPECT_EQ(lines(no_vif.err), 1u) << no_vif.err;
    const RunResult no_vif_json = env.ctl({"--json", "show", "vif999.0"});
    EXPECT_EQ(no_vif_json.status, kCtlRefused);
    const Json nj = Json::parse(no_vif_json.out, nullptr, false);
    ASSERT_FALSE(nj.is_discarded()) << no_vif_json.out;
    EXPECT_EQ(nj["ok"], false);
    EXPECT_EQ(nj["error"]["code"], "not_found");
    EXPECT_TRUE(contains(nj["error"]["message"].get<std::string>(), "vif999.0"));
    const RunResult no_detach = env.ctl({"detach", "vif999.0"});
    EXPECT_EQ(no_detach.status, kCtlRefused) << no_detach.describe();
    EXPECT_TRUE(contains(no_detach.err, "vif999.0: no such vif served")) << no_detach.err;
    const RunResult no_set = env.ctl({"set", "vif999.0", "rx-mode", "copy"});
    EXPECT_EQ(no_set.status, kCtlRefused) << no_set.describe();

    // Errors caught before anything is sent: exit 2.
    const RunResult bad_mac = env.ctl({"attach", v1, "--mac", "01:00:5e:00:00:01"});
    EXPECT_EQ(bad_mac.status, kCtlUsage) << bad_mac.describe();
    EXPECT_TRUE(contains(bad_mac.err, "invalid MAC address \"01:00:5e:00:00:01\"")) << bad_mac.err;
    EXPECT_EQ(env.ctl({"attach", v1, "--mac", "00:16:3e:zz:00:01"}).status, kCtlUsage);
    const RunResult bad_name = env.ctl({"show", "eth0"});
    EXPECT_EQ(bad_name.status, kCtlUsage) << bad_name.describe();
    EXPECT_EQ(env.ctl({"set", v1, "rx-mode", "teleport"}).status, kCtlUsage);
    EXPECT_EQ(env.ctl({"set", v1, "rate", "fast"}).status, kCtlUsage);
    const RunResult unknown = env.ctl({"frobnicate"});
    EXPECT_EQ(unknown.status, kCtlUsage) << unknown.describe();
    EXPECT_TRUE(contains(unknown.err, "unknown command \"frobnicate\"")) << unknown.err;
    EXPECT_EQ(env.ctl({}).status, kCtlUsage);

    // detach: the guest is closed and the vif forgotten; the other keeps its traffic.
    const RunResult detach = env.ctl({"detach", v2});
    EXPECT_EQ(detach.status, 0) << detach.describe();
    EXPECT_TRUE(contains(detach.out, v2 + ": detach done")) << detach.out;
    ASSERT_TRUE(wait_for([&] {
        const Json v = env.vif_entry(v2);
        return v.is_object() && v["role"] == "forgotten";
    })) << env.ctl({"list"}).describe();
    EXPECT_EQ(env.xenstore_read("/local/domain/0/backend/vif/" + std::to_string(*d2) + "/0/state"),
              "6");
    const RunResult echo2 = env.peer({"echo", "--to", guest_mac(*d1), "--count", "300"});
    EXPECT_EQ(echo2.status, 0) << echo2.describe();
    g2.signal(SIGTERM);
    ASSERT_TRUE(g2.wait());
    const Json gj = Json::parse(g2.out(), nullptr, false);
    ASSERT_FALSE(gj.is_discarded()) << g2.out() << g2.err();
    EXPECT_GE(gj["counters"]["disconnects"].get<double>(), 1);

    // A second daemon on the same socket refuses to start, and says why.
    const RunResult second = run({DPNB_DAEMON_PATH, "--foreground", "--config", env.config_path});
    EXPECT_EQ(second.status, 1) << second.describe();
    EXPECT_TRUE(contains(second.err, "another dpnetbackd is running")) << second.err;

    // The daemon stopped: a clear message and exit 3, for a missing socket and a dead one.
    env.daemon->signal(SIGTERM);
    ASSERT_EQ(env.daemon->wait(), 0) << env.daemon_log();
    const RunResult gone = env.ctl({"list"});
    EXPECT_EQ(gone.status, kCtlUnreachable) << gone.describe();
    EXPECT_TRUE(contains(gone.err, "dpnetbackd")) << gone.err;
    EXPECT_EQ(lines(gone.err), 1u) << gone.err;
    const RunResult missing =
        run({DPNB_CTL_PATH, "--socket", env.dir + "/no-such.sock", "version"});
    EXPECT_EQ(missing.status, kCtlUnreachable) << missing.describe();
    EXPECT_TRUE(contains(missing.err, "no such socket (is dpnetbackd running?)")) << missing.err;
    // A socket file nobody listens on (what a crashed daemon leaves).
    const std::string stale = env.dir + "/stale.sock";
    {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, stale.c_str(), sizeof a.sun_path - 1);
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        ::close(fd);
    }
    const RunResult refused = run({DPNB_CTL_PATH, "--socket", stale, "--json", "list"});
    EXPECT_EQ(refused.status, kCtlUnreachable) << refused.describe();
    EXPECT_TRUE(contains(refused.err, "dpnetbackd is not running")) << refused.err;
}

// --- dpnetbackd's command line and configuration file ----------------------------------------

struct DaemonRun {
    RunResult r;
    std::string first_line;
};

DaemonRun run_daemon(const std::vector<std::string>& args) {
    std::vector<std::string> argv{DPNB_DAEMON_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    DaemonRun d{run(argv, kWait), {}};
    d.first_line = d.r.err.substr(0, d.r.err.find('\n'));
    return d;
}

TEST(DaemonCommandLine, BadArgumentsExit64WithOneLine) {
    for (const std::vector<std::string>& args :
         std::vector<std::vector<std::string>>{{"--no-such-option"},
                                               {"--hypervisor", "kvm"},
                                               {"--log-level", "loud"},
                                               {"--config"}}) {
        const DaemonRun d = run_daemon(args);
        EXPECT_EQ(d.r.status, kUsage) << args[0] << ": " << d.r.describe();
        EXPECT_EQ(d.first_line.rfind("dpnetbackd: ", 0), 0u) << d.r.err;
        EXPECT_EQ(d.r.out, "");
    }
    const DaemonRun v = run_daemon({"--version"});
    EXPECT_EQ(v.r.status, 0) << v.r.describe();
    EXPECT_EQ(v.r.out.rfind("dpnetbackd ", 0), 0u) << v.r.out;
}

TEST(DaemonCommandLine, BadConfigurationExit78WithFileLineColumn) {
    DaemonEnv env;
    const std::string base = env.config_text();
    const auto check = [&](const std::string& name, const std::string& text,
                           const std::vector<std::string>& extra, const std::string& expect) {
        const std::string path = env.dir + "/" + name + ".toml";
        ASSERT_TRUE(write_file(path, text));
        std::vector<std::string> args{"--check-config", "--config", path};
        args.insert(args.end(), extra.begin(), extra.end());
        const DaemonRun d = run_daemon(args);
        EXPECT_EQ(d.r.status, kConfig) << name << ": " << d.r.describe();
        EXPECT_TRUE(contains(d.r.err, expect)) << name << ": " << d.r.err;
        EXPECT_EQ(lines(d.r.err), 1u) << name << ": " << d.r.err;
        // Without --check-config the daemon refuses the same way, before touching anything.
        std::vector<std::string> start{"--foreground", "--config", path};
        start.insert(start.end(), extra.begin(), extra.end());
        const DaemonRun s = run_daemon(start);
        EXPECT_EQ(s.r.status, kConfig) << name << ": " << s.r.describe();
        EXPECT_EQ(s.r.err, d.r.err) << name;
    };
    check("unknown-key", base + "[shutdown]\ntimeout_sec = 3\n", {},
          "unknown-key.toml:" /* file:line:column */);
    check("unknown-key2", base + "[shutdown]\ntimeout_sec = 3\n", {},
          "[shutdown] timeout_sec: unknown key");
    check("range", base + "[engine]\nburst = 0\n", {}, "[engine] burst: 0 is out of range");
    check("type", base + "[engine]\nburst = \"many\"\n", {}, "[engine] burst:");
    check("syntax", base + "[engine\n", {}, "syntax.toml:");
    check("enum", "[hypervisor]\nkind = \"kvm\"\n", {}, "[hypervisor] kind: \"kvm\" is not one of");
    check("override", base, {"metrics.port=99999"},
          "command line (metrics.port=99999): [metrics] port: 99999 is out of range");
    check("override-key", base, {"metrics.nope=1"}, "[metrics] nope: unknown key");

    // A named file that does not exist is an error too (only the default may be missing).
    const DaemonRun missing = run_daemon({"--check-config", "--config", env.dir + "/missing.toml"});
    EXPECT_EQ(missing.r.status, kConfig) << missing.r.describe();
    EXPECT_TRUE(contains(missing.r.err, "missing.toml")) << missing.r.err;

    // And the good file passes.
    ASSERT_TRUE(write_file(env.config_path, base));
    const DaemonRun good = run_daemon({"--check-config", "--config", env.config_path});
    EXPECT_EQ(good.r.status, 0) << good.r.describe();
    EXPECT_EQ(good.r.out, "configuration OK: " + env.config_path + "\n");
}

// A virtio_user port over /dev/vhost-net on a kernel without vhost_net (this machine's; the
// Xen lab's dom0 has it) stops the daemon at start, with the fix in the message.
TEST(DaemonStart, AVhostPortWithoutVhostNetIsRefusedWithTheFix) {
    DT_REQUIRE_ENVIRONMENT();
    if (::access("/dev/vhost-net", F_OK) == 0) GTEST_SKIP() << "this machine has /dev/vhost-net";
    DaemonEnv env;
    std::string text = env.config_text();
    const std::string tap = "device = \"net_tap0,iface=" + env.iface + "\"";
    ASSERT_NE(text.find(tap), std::string::npos) << text;
    text.replace(text.find(tap), tap.size(),
                 "device = \"virtio_user0,path=/dev/vhost-net,queues=1,queue_size=1024,iface=" +
                     env.iface + "\"");
    ASSERT_TRUE(write_file(env.config_path, text));
    const DaemonRun d = run_daemon({"--foreground", "--config", env.config_path});
    EXPECT_EQ(d.r.status, 1) << d.r.describe();
    EXPECT_TRUE(contains(d.r.err, "port uplink (virtio_user0): /dev/vhost-net does not exist"))
        << d.r.err;
    EXPECT_TRUE(contains(d.r.err, "modprobe vhost_net")) << d.r.err;
    EXPECT_TRUE(contains(d.r.err, "use a net_tap port")) << d.r.err;
}

} // namespace
} // namespace dpnb::daemon_test
