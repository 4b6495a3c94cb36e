// dpnetbackd's configuration loader: the shipped example, defaults, every kind of bad file
// (a table of cases with the exact message), overrides, reload classes, and that
// config/README.md and config/dpnetback.toml document every key.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "dpnb/daemon/config.hpp"

namespace dpnb::daemon {
namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

const std::string kSourceDir = DPNB_SOURCE_DIR;

TEST(Config, BuiltInDefaults) {
    auto c = parse_config("", "dpnetback.toml");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->hypervisor.kind, HypervisorKind::sim);
    EXPECT_TRUE(c->hypervisor.sim_embedded);
    EXPECT_EQ(c->hypervisor.sim_dir, "/run/dpnetback/sim");
    ASSERT_EQ(c->engine.ports.size(), 1u);
    EXPECT_EQ(c->engine.ports[0].name, "uplink");
    EXPECT_EQ(c->engine.ports[0].device, "net_tap0,iface=dpnb0");
    EXPECT_EQ(c->control.default_port, "uplink");
    EXPECT_EQ(c->management.socket, "/run/dpnetback/dpnetbackd.sock");
    EXPECT_EQ(c->metrics.port, 9591);
    EXPECT_EQ(c->metrics.address, "127.0.0.1");
    EXPECT_EQ(c->log.level, LogLevel::info);
    EXPECT_EQ(c->engine.eal.worker_lcores, std::vector<unsigned>{1});
    // Every declared key has an effective value (the reload compares them all).
    for (const KeyInfo& k : config_keys()) {
        if (k.name.find("vifs.rule.") == 0) continue; // no rule by default
        std::string name(k.name);
        if (auto star = name.find('*'); star != std::string::npos) name.replace(star, 1, "uplink");
        EXPECT_TRUE(c->values.count(name)) << name;
    }
}

TEST(Config, ShippedExampleIsValidAndEqualsTheDefaults) {
    const std::string path = kSourceDir + "/config/dpnetback.toml";
    auto example = load_config(path);
    ASSERT_TRUE(example) << example.error().message;
    auto defaults = parse_config("", "");
    ASSERT_TRUE(defaults);
    // The example sets every key to its default, so that it documents them.
    const ConfigDiff d = diff(*defaults, *example);
    EXPECT_TRUE(d.empty()) << "differs: " << ::testing::PrintToString(d.live)
                           << ::testing::PrintToString(d.restart);
}

// scripts/demo.sh runs the daemon on config/demo.toml: a tap port of its own for each of
// its three guests, and a rule per guest that picks its port and RX mode.
TEST(Config, DemoConfigGivesEachGuestAPortAndAMode) {
    auto c = load_config(kSourceDir + "/config/demo.toml");
    ASSERT_TRUE(c) << c.error().message;
    ASSERT_EQ(c->engine.ports.size(), 3u);
    for (const pmd::PortConfig& p : c->engine.ports) {
        EXPECT_EQ(p.steering, pmd::Steering::dedicated_port) << p.name;
        EXPECT_EQ(p.device.rfind("net_tap", 0), 0u) << p.name;
    }
    const std::vector<control::VifRule>& rules = c->control.vif_rules;
    ASSERT_EQ(rules.size(), 3u);
    const std::pair<const char*, engine::RxMode> want[] = {{"web1", engine::RxMode::map},
                                                           {"web2", engine::RxMode::reuse},
                                                           {"db1", engine::RxMode::copy}};
    for (std::size_t i = 0; i < rules.size(); ++i) {
        EXPECT_EQ(rules[i].domain_name, want[i].first);
        EXPECT_EQ(rules[i].set.rx_mode, want[i].second) << want[i].first;
        EXPECT_EQ(rules[i].set.port, "tap-" + std::string(want[i].first));
    }
}

TEST(Config, EveryKeyIsDocumented) {
    const std::string readme = read_file(kSourceDir + "/config/README.md");
    const std::string example = read_file(kSourceDir + "/config/dpnetback.toml");
    ASSERT_FALSE(readme.empty());
    ASSERT_FALSE(example.empty());
    for (const KeyInfo& k : config_keys()) {
        const std::string name(k.name);
        const std::string key = name.substr(name.rfind('.') + 1);
        // README: a table row "| `key` |" in the section of the key, with its reload class.
        EXPECT_NE(readme.find("`" + name + "`"), std::string::npos) << name << " not in README";
        // Example: "key =" (set or commented out).
        EXPECT_NE(example.find(key + " ="), std::string::npos) << key << " not in the example";
    }
}

TEST(Config, ReloadClasses) {
    EXPECT_EQ(reload_class("log.level"), Reload::live);
    EXPECT_EQ(reload_class("log.data"), Reload::live);
    EXPECT_EQ(reload_class("metrics.port"), Reload::live);
    EXPECT_EQ(reload_class("port.anything.mtu"), Reload::restart);
    EXPECT_EQ(reload_class("eal.worker_lcores"), Reload::restart);
    EXPECT_EQ(reload_class("vifs.rule.3.domid"), Reload::restart);
    EXPECT_EQ(reload_class("no.such.key"), Reload::restart);
}

TEST(Config, FullFile) {
    const char* text = R"(
[hypervisor]
kind = "xen"
self = 0

[hypervisor.xen]
max_grants_per_handle = 8192

[log]
level = "debug"
data = "warn"

[eal]
main_lcore = 0
worker_lcores = [1, 2]
no_huge = false
memory_mb = 0
no_pci = false
pci_allow = ["0000:03:00.0"]

[port.nic]
device = "0000:03:00.0"
steering = "mac_flow"
rx_queues = 8
mtu = 9000

[port.vfs]
device = "0000:03:10.0"
steering = "dedicated_port"
group = "vf"

[vifs]
default_port = "nic"
default_rx_mode = "reuse"

[[vifs.rule]]
domain_name = "web1"
rx_mode = "map"
rx_queue = 3

[[vifs.rule]]
domid = 5
port = "vf"

[management]
group = "netadm"

[metrics]
address = "::1"
port = 9600
)";
    auto c = parse_config(text, "f.toml");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->hypervisor.kind, HypervisorKind::xen);
    EXPECT_EQ(c->hypervisor.xen.max_grants_per_handle, 8192u);
    EXPECT_EQ(c->hypervisor.xen.self, std::optional<hv::DomId>(0));
    EXPECT_EQ(c->log.of(Component::data), LogLevel::warn);
    EXPECT_EQ(c->log.of(Component::control), LogLevel::debug);
    ASSERT_EQ(c->engine.ports.size(), 2u);
    EXPECT_EQ(c->engine.ports[0].name, "nic");
    EXPECT_EQ(c->engine.ports[0].steering, pmd::Steering::mac_flow);
    EXPECT_EQ(c->engine.ports[0].rx_queues, 8);
    EXPECT_EQ(c->engine.ports[0].mtu, 9000u);
    EXPECT_EQ(c->engine.ports[1].group, "vf");
    EXPECT_EQ(c->control.default_rx_mode, engine::RxMode::reuse);
    ASSERT_EQ(c->control.vif_rules.size(), 2u);
    EXPECT_EQ(c->control.vif_rules[0].domain_name, std::optional<std::string>("web1"));
    EXPECT_EQ(c->control.vif_rules[0].set.rx_mode, std::optional(engine::RxMode::map));
    EXPECT_EQ(c->control.vif_rules[0].set.rx_queue, std::optional<std::uint16_t>(3));
    EXPECT_EQ(c->control.vif_rules[1].domid, std::optional<netif::DomId>(5));
    EXPECT_EQ(c->control.vif_rules[1].set.port, std::optional<std::string>("vf"));
    EXPECT_EQ(c->management.group, "netadm");
    EXPECT_EQ(c->metrics.address, "::1");
    EXPECT_EQ(c->values.at("port.nic.rx_queues"), "8");
    EXPECT_EQ(c->values.at("vifs.rule.0.domain_name"), "web1");
}

struct BadCase {
    const char* name;
    const char* text;
    const char* expected; // the whole message (one line per error)
};

// gtest prints a parameter's bytes without this (and CTest shows that in every test's name).
void PrintTo(const BadCase& c, std::ostream* os) {
    *os << c.name;
}

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, GivesAClearMessage) {
    auto c = parse_config(GetParam().text, "dpnetback.toml");
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, Errc::invalid_argument);
    EXPECT_EQ(c.error().message, GetParam().expected);
}

// Each text's line 1 is the first line after R"(.
const BadCase kBadCases[] = {
    {"syntax", "[metrics\nport = 1\n",
     "dpnetback.toml:1:9: TOML syntax: Error while parsing table header: expected ']', saw '\\n'"},
    {"unknown_section", "[metrcs]\nport = 1\n",
     "dpnetback.toml:1:2: metrcs: unknown section (known: hypervisor, log, eal, engine, port, "
     "features, vifs, management, metrics, shutdown)"},
    {"top_level_key", "verbose = true\n",
     "dpnetback.toml:1:1: verbose: unknown key at top level (keys belong in a section: "
     "hypervisor, log, eal, engine, port, features, vifs, management, metrics, shutdown)"},
    {"unknown_key", "[metrics]\nprot = 9600\n",
     "dpnetback.toml:2:1: [metrics] prot: unknown key (known: enabled, address, port, "
     "timeout_ms, max_clients)"},
    {"out_of_range",
     "[port.uplink]\ndevice = \"net_null0\"\nsteering = \"mac_flow\"\n"
     "rx_queues = 0\n",
     "dpnetback.toml:4:13: [port.uplink] rx_queues: 0 is out of range 1..128"},
    {"wrong_type", "[metrics]\nport = \"9600\"\n",
     "dpnetback.toml:2:8: [metrics] port: expected an integer, got a string \"9600\""},
    {"bad_choice", "[hypervisor]\nkind = \"kvm\"\n",
     "dpnetback.toml:2:8: [hypervisor] kind: \"kvm\" is not one of \"xen\", \"sim\""},
    {"bad_rx_mode", "[vifs]\ndefault_rx_mode = \"zero\"\n",
     "dpnetback.toml:2:19: [vifs] default_rx_mode: \"zero\" is not one of \"copy\", \"map\", "
     "\"reuse\""},
    {"bad_log_level", "[log]\ndata = \"loud\"\n",
     "dpnetback.toml:2:8: [log] data: \"loud\" is not one of trace, debug, info, warn, error, "
     "critical, off"},
    {"bad_mac", "[port.uplink]\ndevice = \"net_null0\"\nmac = \"00:16:3e:zz:00:01\"\n",
     "dpnetback.toml:3:7: [port.uplink] mac: \"00:16:3e:zz:00:01\" is not a MAC address "
     "(xx:xx:xx:xx:xx:xx)"},
    {"multicast_mac", "[port.uplink]\ndevice = \"net_null0\"\nmac = \"01:00:5e:00:00:01\"\n",
     "dpnetback.toml:3:7: [port.uplink] mac: \"01:00:5e:00:00:01\" is a multicast or broadcast "
     "address"},
    {"missing_device", "[port.uplink]\nmtu = 1500\n",
     "dpnetback.toml:1:1: [port.uplink]: device: missing (devargs such as "
     "\"net_tap0,iface=dpnb0\" or a PCI address)"},
    {"two_ports_no_default", "[port.a]\ndevice = \"net_null0\"\n[port.b]\ndevice = \"net_null1\"\n",
     "dpnetback.toml: [vifs] default_port: missing: required when there are several ports"},
    {"default_port_unknown", "[port.a]\ndevice = \"net_null0\"\n[vifs]\ndefault_port = \"b\"\n",
     "dpnetback.toml:4:16: [vifs] default_port: \"b\" names no [port.NAME] or group"},
    {"shared_with_queues", "[port.a]\ndevice = \"net_null0\"\nrx_queues = 4\n",
     "dpnetback.toml:3:13: [port.a] rx_queues: a shared port has one RX queue (steering = "
     "\"mac_flow\" gives guests their own)"},
    {"main_lcore_is_worker", "[eal]\nmain_lcore = 1\nworker_lcores = [1]\n",
     "dpnetback.toml:3:17: [eal] worker_lcores: lcore 1 is the main lcore (the control "
     "thread's); workers need their own"},
    {"worker_out_of_range", "[eal]\nworker_lcores = [1, 500]\n",
     "dpnetback.toml:2:21: [eal] worker_lcores: 500 is out of range 0..127"},
    {"no_workers", "[eal]\nworker_lcores = []\n",
     "dpnetback.toml:2:17: [eal] worker_lcores: at least one worker lcore is needed"},
    {"no_huge_without_memory", "[eal]\nno_huge = true\nmemory_mb = 0\n",
     "dpnetback.toml:3:13: [eal] memory_mb: no_huge needs memory_mb (e.g. 512)"},
    {"relative_socket", "[management]\nsocket = \"dpnetbackd.sock\"\n",
     "dpnetback.toml:2:10: [management] socket: \"dpnetbackd.sock\" must be an absolute path"},
    {"bad_group", "[management]\ngroup = \"net adm\"\n",
     "dpnetback.toml:2:9: [management] group: \"net adm\" is not a group name"},
    {"bad_metrics_address", "[metrics]\naddress = \"localhost\"\n",
     "dpnetback.toml:2:11: [metrics] address: \"localhost\" is not an IPv4 or IPv6 address "
     "literal"},
    {"features_inconsistent", "[features]\nctrl_ring = false\nstatic_grants = true\n",
     "dpnetback.toml:1:1: [features]: static grants need the control ring (feature-ctrl-ring)"},
    {"rule_sets_nothing", "[[vifs.rule]]\ndomid = 3\n",
     "dpnetback.toml:1:1: [[vifs.rule]] #1: sets nothing (mac, rx_mode, port or rx_queue)"},
    {"rule_unknown_key", "[[vifs.rule]]\ndomid = 3\nrx_mode = \"map\"\nspeed = 10\n",
     "dpnetback.toml:4:1: [[vifs.rule]] #1 speed: unknown key (known: domain_name, domid, "
     "handle, mac, rx_mode, port, rx_queue)"},
    {"rule_mac_without_match", "[[vifs.rule]]\nmac = \"00:16:3e:00:00:01\"\n",
     "dpnetback.toml:1:1: [[vifs.rule]] #1: mac: a rule that sets a MAC must match one guest "
     "(domid or domain_name)"},
    {"section_not_table", "metrics = 5\n",
     "dpnetback.toml:1:11: metrics: expected a table [metrics], got an integer"},
    {"several_errors", "[metrics]\nport = -1\nenabled = \"yes\"\n",
     "dpnetback.toml:2:8: [metrics] port: -1 is out of range 0..65535\n"
     "dpnetback.toml:3:11: [metrics] enabled: expected a boolean (true or false), got a string "
     "\"yes\""},
};

INSTANTIATE_TEST_SUITE_P(Cases, BadConfig, ::testing::ValuesIn(kBadCases),
                         [](const auto& p) { return std::string(p.param.name); });

TEST(ConfigOverride, ValuesAndBareWords) {
    const std::vector<std::string> o = {"metrics.port=9600", "hypervisor.kind=xen",
                                        "eal.worker_lcores=[1,2]", "log.level=debug",
                                        "port.uplink.device=net_null0,size=64"};
    auto c = parse_config("", "dpnetback.toml", o);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->metrics.port, 9600);
    EXPECT_EQ(c->hypervisor.kind, HypervisorKind::xen);
    EXPECT_EQ(c->engine.eal.worker_lcores, (std::vector<unsigned>{1, 2}));
    EXPECT_EQ(c->log.level, LogLevel::debug);
    EXPECT_EQ(c->engine.ports.at(0).device, "net_null0,size=64");
}

TEST(ConfigShutdown, VifsCloseByDefaultKeepOnRequest) {
    auto d = parse_config("", "dpnetback.toml");
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->shutdown_vifs, ShutdownVifs::close);
    auto k = parse_config("[shutdown]\nvifs = \"keep\"\n", "dpnetback.toml");
    ASSERT_TRUE(k) << k.error().message;
    EXPECT_EQ(k->shutdown_vifs, ShutdownVifs::keep);
    EXPECT_EQ(reload_class("shutdown.vifs"), Reload::live);
    auto bad = parse_config("[shutdown]\nvifs = \"drop\"\n", "dpnetback.toml");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message,
              "dpnetback.toml:2:8: [shutdown] vifs: \"drop\" is not one of \"close\", \"keep\"");
}

TEST(ConfigOverride, ReplacesTheFilesValue) {
    const std::vector<std::string> o = {"metrics.port=9700"};
    auto c = parse_config("[metrics]\nport = 9600\n", "f.toml", o);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->metrics.port, 9700);
}

TEST(ConfigOverride, ErrorsNameTheCommandLine) {
    struct Case {
        std::string override_text;
        std::string expected;
    };
    const Case cases[] = {
        {"metrics.port=99999",
         "command line (metrics.port=99999): [metrics] port: 99999 is out of range 0..65535"},
        {"metrics.prot=1",
         "command line (metrics.prot=1): [metrics] prot: unknown key (known: enabled, address, "
         "port, timeout_ms, max_clients)"},
        {"port", "command line: \"port\" is not section.key=value"},
        {"level=debug", "command line: \"level\" needs a section (e.g. metrics.port)"},
        {"metrics.port.x=1", "command line: \"metrics.port.x\": port is not a table"},
        {"a b.c=1", "command line: \"a b.c\" is not a key name"},
    };
    for (const Case& k : cases) {
        const std::vector<std::string> o = {k.override_text};
        auto c = parse_config("[metrics]\nport = 9600\n", "f.toml", o);
        ASSERT_FALSE(c) << k.override_text;
        EXPECT_EQ(c.error().message, k.expected);
    }
}

TEST(Config, MissingFile) {
    auto c = load_config("/nonexistent/dpnetback.toml");
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().message,
              "/nonexistent/dpnetback.toml: cannot read: No such file or directory");
    auto d = load_config("/nonexistent/dpnetback.toml", {}, /*optional_file=*/true);
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_TRUE(d->path.empty());
}

TEST(ConfigDiffTest, LiveAndRestartKeys) {
    auto a = parse_config("[metrics]\nport = 9600\n[log]\nlevel = \"info\"\n", "f");
    auto b = parse_config("[metrics]\nport = 9601\n[log]\nlevel = \"debug\"\n"
                          "[eal]\nworker_lcores = [1, 2]\n",
                          "f");
    ASSERT_TRUE(a && b);
    const ConfigDiff d = diff(*a, *b);
    EXPECT_EQ(d.live, (std::vector<std::string>{"log.level", "metrics.port"}));
    EXPECT_EQ(d.restart, (std::vector<std::string>{"eal.worker_lcores"}));
}

TEST(ConfigDiffTest, PortsAddedOrRemovedAreStructural) {
    auto a = parse_config("[port.a]\ndevice = \"net_null0\"\n", "f");
    auto b = parse_config("[port.a]\ndevice = \"net_null0\"\n[port.b]\ndevice = \"net_null1\"\n"
                          "[vifs]\ndefault_port = \"a\"\n",
                          "f");
    ASSERT_TRUE(a) << a.error().message;
    ASSERT_TRUE(b) << b.error().message;
    const ConfigDiff d = diff(*a, *b);
    EXPECT_TRUE(d.live.empty());
    EXPECT_FALSE(d.restart.empty());
    for (const std::string& k : d.restart)
        EXPECT_EQ(k.substr(0, 7), "port.b.") << k;
}

} // namespace
} // namespace dpnb::daemon
