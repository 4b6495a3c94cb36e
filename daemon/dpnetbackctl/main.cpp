// dpnetbackctl: the operator's runtime CLI for dpnetbackd (docs/cli.md). Sends one request
// over the management socket and prints the answer as a table, or as JSON with --json.
//
// Exit statuses: 0 done; 1 the daemon refused (no such vif, busy, ...); 2 bad usage (unknown
// option, invalid MAC, bad mode: checked before anything is sent); 3 the daemon cannot be
// reached (not running, no answer); 4 permission denied.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "dpnb/mgmt/protocol.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace {

using dpnb::Errc;
using dpnb::mgmt::Json;

constexpr int kOk = 0;
constexpr int kRefused = 1;
constexpr int kUsage = 2;
constexpr int kUnreachable = 3;
constexpr int kDenied = 4;

int fail(int status, const std::string& message) {
    std::cerr << "dpnetbackctl: " << message << "\n";
    return status;
}

// --- plain-text output ------------------------------------------------------------------

std::string text(const Json& j) {
    if (j.is_null()) return "-";
    if (j.is_string()) {
        const auto& s = j.get_ref<const std::string&>();
        return s.empty() ? "-" : s;
    }
    if (j.is_boolean()) return j.get<bool>() ? "yes" : "no";
    if (j.is_number_float()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", j.get<double>());
        return buf;
    }
    return j.dump();
}

std::string field(const Json& j, const char* key) {
    auto it = j.find(key);
    return it == j.end() ? "-" : text(*it);
}

// Columns padded to their widest cell; numbers right-aligned.
class Table {
public:
    explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
    void print(std::ostream& out) const {
        std::vector<std::size_t> width;
        for (const auto& r : rows_)
            for (std::size_t i = 0; i < r.size(); ++i) {
                if (width.size() <= i) width.push_back(0);
                width[i] = std::max(width[i], r[i].size());
            }
        for (std::size_t n = 0; n < rows_.size(); ++n) {
            const auto& r = rows_[n];
            std::string line;
            for (std::size_t i = 0; i < r.size(); ++i) {
                const bool numeric = n > 0 && !r[i].empty() &&
                                     r[i].find_first_not_of("0123456789.") == std::string::npos;
                const std::string pad(width[i] - r[i].size(), ' ');
                line += numeric ? pad + r[i] : r[i] + (i + 1 < r.size() ? pad : "");
                if (i + 1 < r.size()) line += "  ";
            }
            out << line << "\n";
        }
    }

private:
    std::vector<std::vector<std::string>> rows_;
};

void print_list(const Json& r) {
    const Json& vifs = r["vifs"];
    if (vifs.empty()) {
        std::cout << "no vifs\n";
        return;
    }
    Table t({"VIF", "DOMAIN", "ROLE", "PHASE", "BACKEND", "FRONTEND", "MODE", "PORT", "QUEUE",
             "RX-PKTS", "TX-PKTS", "DROPS"});
    for (const Json& v : vifs)
        t.add({field(v, "vif"), field(v, "domain"), field(v, "role"), field(v, "phase"),
               field(v, "backend_state"), field(v, "frontend_state"), field(v, "rx_mode"),
               field(v, "port"), v["rx_queue"].is_null() ? "shared" : text(v["rx_queue"]),
               field(v, "rx_packets"), field(v, "tx_packets"), field(v, "drops")});
    t.print(std::cout);
}

void print_pairs(const Json& obj, const std::vector<std::pair<const char*, const char*>>& keys) {
    std::size_t w = 0;
    for (auto& [k, label] : keys)
        w = std::max(w, std::string(label).size());
    for (auto& [k, label] : keys) {
        if (!obj.contains(k)) continue;
        std::cout << "  " << label << std::string(w - std::string(label).size(), ' ') << "  "
                  << text(obj[k]) << "\n";
    }
}

void print_show(const Json& v) {
    std::cout << field(v, "vif") << "\n";
    print_pairs(v, {{"domain", "domain"},
                    {"domid", "domid"},
                    {"handle", "handle"},
                    {"mac", "mac"},
                    {"role", "role"},
                    {"adopted", "adopted"},
                    {"phase", "phase"},
                    {"backend_state", "backend state"},
                    {"frontend_state", "frontend state"},
                    {"hotplug_ready", "hotplug ready"},
                    {"attached", "attached"},
                    {"rx_mode", "rx mode"},
                    {"rx_mode_requested", "rx mode requested"},
                    {"rx_mode_reason", "rx mode reason"},
                    {"port", "port"},
                    {"rx_queue", "nic queue"},
                    {"queues", "queues"},
                    {"lcore", "lcore"},
                    {"connects", "connects"},
                    {"last_error_kind", "last error kind"},
                    {"last_error", "last error"},
                    {"backend_path", "backend path"},
                    {"frontend_path", "frontend path"}});
    if (v.contains("data_plane") && v["data_plane"].is_object()) {
        std::cout << "data plane\n";
        print_pairs(v["data_plane"], {{"state", "state"},
                                      {"disabled_reason", "disabled reason"},
                                      {"stalled_queues", "stalled queues"},
                                      {"rx_backlog_frames", "rx backlog frames"},
                                      {"rx_backlog_bytes", "rx backlog bytes"},
                                      {"rx_mode", "rx mode"},
                                      {"rx_mode_reason", "rx mode reason"},
                                      {"lcore", "lcore"},
                                      {"queues", "queues"}});
        // Only where the vif's static grants are DMA-mapped for a device behind an IOMMU.
        if (const Json d = v["data_plane"].value("static_grant_iommu", Json()); d.is_object()) {
            std::cout << "static-grant iommu calls\n";
            print_pairs(d, {{"maps", "maps"},
                            {"map_failures", "maps refused"},
                            {"unmaps", "unmaps"},
                            {"unmap_failures", "unmaps refused"}});
        }
    }
    if (v.contains("data_plane") && v["data_plane"].contains("event_channel_irqs")) {
        // Where dom0's kernel takes each queue's event channels (the lcore's CPUs when placed).
        std::cout << "event-channel irqs\n";
        Table t({"  QUEUE", "IRQS", "CPUS", "PLACEMENT"});
        for (const Json& q : v["data_plane"]["event_channel_irqs"]) {
            std::string irqs;
            for (const Json& n : q.value("irqs", Json::array()))
                irqs += (irqs.empty() ? "" : ",") + text(n);
            t.add({"  " + field(q, "queue"), irqs.empty() ? "-" : irqs,
                   field(q, "cpus").empty() ? "-" : field(q, "cpus"), field(q, "placement")});
        }
        t.print(std::cout);
    }
    if (v.contains("counters") && v["counters"].is_object()) {
        std::cout << "counters\n";
        Table t({"  COUNTER", "VALUE"});
        for (auto& [k, n] : v["counters"].items())
            t.add({"  " + k, text(n)});
        t.print(std::cout);
    }
    if (v.contains("tx_errors") && v["tx_errors"].is_object()) {
        std::cout << "tx errors by reason\n";
        Table t({"  REASON", "COUNT", "VERDICT"});
        for (auto& [k, e] : v["tx_errors"].items())
            t.add({"  " + k, field(e, "count"), field(e, "verdict")});
        t.print(std::cout);
    }
}

void print_stats(const Json& s) {
    std::cout << "process\n";
    print_pairs(s["process"], {{"pid", "pid"},
                               {"version", "version"},
                               {"hypervisor", "hypervisor"},
                               {"dpdk", "dpdk"},
                               {"uptime_seconds", "uptime (s)"},
                               {"cpu_seconds", "cpu (s)"},
                               {"resident_bytes", "resident bytes"},
                               {"open_fds", "open fds"}});
    // The endpoint actually bound (metrics.port = 0 picks a free one).
    if (const Json& m = s["management"]["metrics_endpoint"]; m.is_object()) {
        const std::string addr = field(m, "address");
        std::cout << "metrics\n  http://"
                  << (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) << ":"
                  << field(m, "port") << "/metrics\n";
    }
    std::cout << "vifs\n";
    print_pairs(s["vifs"], {{"known", "known"},
                            {"connected", "connected"},
                            {"rx_packets", "rx packets"},
                            {"rx_bytes", "rx bytes"},
                            {"tx_packets", "tx packets"},
                            {"tx_bytes", "tx bytes"}});
    std::cout << "lcores\n";
    Table l({"  LCORE", "CPUS", "QUEUES", "NIC-QUEUES", "BUSY-POLLS", "IDLE-POLLS", "SLEEPS",
             "BUSY-%", "INBOX-DROPS", "TX-NIC-DROPS", "GRANT-CALLS", "NOTIFIES", "READS",
             "WRITES"});
    for (const Json& c : s["lcores"]) {
        const double busy = c.value("busy_polls", 0.0), idle = c.value("idle_polls", 0.0);
        char pct[16];
        std::snprintf(pct, sizeof pct, "%.1f",
                      busy + idle > 0 ? 100.0 * busy / (busy + idle) : 0.0);
        const std::uint64_t grant_calls = c.value("grant_copy_calls", std::uint64_t{0}) +
                                          c.value("grant_map_calls", std::uint64_t{0}) +
                                          c.value("grant_unmap_calls", std::uint64_t{0});
        l.add({"  " + field(c, "lcore"), field(c, "cpus"), field(c, "guest_queues"),
               field(c, "nic_queues"), field(c, "busy_polls"), field(c, "idle_polls"),
               field(c, "sleeps"), pct, field(c, "inbox_drops"), field(c, "tx_nic_drops"),
               std::to_string(grant_calls), field(c, "notify_calls"), field(c, "read_syscalls"),
               field(c, "write_syscalls")});
    }
    l.print(std::cout);
    std::cout << "ports\n";
    Table p({"  PORT", "DRIVER", "STEERING", "ZERO-COPY", "DMA", "RX-PKTS", "TX-PKTS", "MISSED",
             "ERRORS", "VHOST-CPUS"});
    for (const Json& c : s["ports"]) {
        // The DMA policy's verdict and its inputs: "copy_only (HVM, pci/vfio)".
        const Json dma = c.value("dma", Json::object());
        const std::string binding = field(dma, "binding");
        p.add({"  " + field(c, "name"), field(c, "driver"), field(c, "steering"),
               field(c, "zero_copy"),
               field(dma, "verdict") + " (" + field(dma, "domain") + ", " + field(dma, "bus") +
                   (binding == "none" ? "" : "/" + binding) + ")",
               field(c, "rx_packets"), field(c, "tx_packets"), field(c, "rx_missed"),
               std::to_string(c.value("rx_errors", 0ULL) + c.value("tx_errors", 0ULL)),
               field(c, "vhost_cpus").empty() ? "-" : field(c, "vhost_cpus")});
    }
    p.print(std::cout);
    std::cout << "control plane\n";
    Table e({"  EVENT", "COUNT"});
    for (auto& [k, n] : s["control"]["events"].items())
        e.add({"  " + k, text(n)});
    for (auto& [k, n] : s["control"]["errors"].items())
        if (n.is_number() && n.get<std::uint64_t>() > 0) e.add({"  error: " + k, text(n)});
    e.print(std::cout);
}

void print_result(const std::string& command, const Json& r) {
    if (command == "list") return print_list(r);
    if (command == "show") return print_show(r);
    if (command == "stats") return print_stats(r);
    if (command == "version") {
        std::cout << "dpnetbackd " << field(r, "version") << " (protocol " << field(r, "protocol")
                  << ", hypervisor " << field(r, "hypervisor") << ", " << field(r, "dpdk")
                  << ", pid " << field(r, "pid") << ")\n";
        return;
    }
    if (command == "reload") {
        std::cout << "applied: "
                  << (r["applied"].empty() ? std::string("nothing") : r["applied"].dump()) << "\n";
        if (!r["needs_restart"].empty())
            std::cout << "needs restart (not applied): " << r["needs_restart"].dump() << "\n";
        if (!r["errors"].empty()) std::cout << "failed: " << r["errors"].dump() << "\n";
        return;
    }
    // attach, detach, set: one line.
    std::cout << field(r, "vif") << ": " << command << " done";
    if (r.contains("phase"))
        std::cout << " (phase " << field(r, "phase") << ", rx mode " << field(r, "rx_mode") << ")";
    std::cout << "\n";
}

int status_for(std::string_view code) {
    if (code == "permission_denied") return kDenied;
    return kRefused;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"dpnetbackctl: control a running dpnetbackd"};
    app.require_subcommand(1);
    std::string socket(dpnb::mgmt::kDefaultSocket);
    bool json = false;
    double timeout = 30;
    app.add_option("-s,--socket", socket, "dpnetbackd's management socket")->capture_default_str();
    app.add_flag("-j,--json", json, "Print the daemon's JSON answer (for scripts)");
    app.add_option("-t,--timeout", timeout, "Seconds to wait for the answer")
        ->check(CLI::Range(0.1, 3600.0))
        ->capture_default_str();

    dpnb::mgmt::Request req;
    std::string vif, mac, mode, port, rate_text, set_what, set_value;
    std::optional<unsigned> queue, domid, handle;

    app.add_subcommand("version", "The daemon's version");
    app.add_subcommand("list", "Vifs: xenbus phase and states, RX mode, queue, main counters");
    auto* show = app.add_subcommand("show", "Everything about one vif");
    show->add_option("vif", vif, "vif<domid>.<handle> or a backend path")->required();
    app.add_subcommand("stats", "Engine, lcores, ports, control plane, process");
    auto* attach = app.add_subcommand("attach", "Hand a vif to the daemon (operator, hotplug)");
    attach->add_option("vif", vif, "vif<domid>.<handle> or a backend path");
    attach->add_option("--domid", domid, "Guest domain id (instead of a vif name)");
    attach->add_option("--handle", handle, "Vif handle (with --domid; default 0)");
    attach->add_option("--mac", mac, "The guest's MAC (instead of the toolstack's)");
    attach->add_option("--rx-mode", mode, "copy, map or reuse");
    attach->add_option("--port", port, "Uplink port (or group) name");
    attach->add_option("--queue", queue, "A dedicated NIC RX queue");
    auto* detach = app.add_subcommand("detach", "Give a vif back: disconnect and close it");
    detach->add_option("vif", vif, "vif<domid>.<handle> or a backend path")->required();
    auto* set = app.add_subcommand("set", "Change a running vif: rx-mode MODE | rate B,US|off");
    set->add_option("vif", vif, "vif<domid>.<handle> or a backend path")->required();
    set->add_option("what", set_what, "rx-mode or rate")
        ->required()
        ->check(CLI::IsMember({"rx-mode", "rate"}));
    set->add_option("value", set_value, "copy|map|reuse, or <bytes>,<usec>|off")->required();
    app.add_subcommand("reload", "Reload the configuration (as SIGHUP) and say what changed");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        if (app.get_subcommands().empty()) {
            // The first word that is not an option names a command we do not have.
            for (int i = 1; i < argc; ++i) {
                const std::string a = argv[i];
                if (a.empty() || a[0] == '-') {
                    if (a == "-s" || a == "--socket" || a == "-t" || a == "--timeout") ++i;
                    continue;
                }
                std::string names;
                for (const CLI::App* s : app.get_subcommands({}))
                    names += (names.empty() ? "" : ", ") + s->get_name();
                return fail(kUsage, "unknown command \"" + a + "\" (commands: " + names + ")");
            }
        }
        std::cerr << "dpnetbackctl: " << e.what() << "\nRun with --help for more information.\n";
        return kUsage;
    }
    req.command = app.get_subcommands().front()->get_name();
    req.args = Json::object();

    // Local checks: a clear message without bothering the daemon.
    if (!vif.empty()) {
        auto id = dpnb::mgmt::parse_vif_ref(vif);
        if (!id) return fail(kUsage, id.error().message);
        req.args["vif"] = vif;
    }
    if (req.command == "attach") {
        if (vif.empty() == !domid)
            return fail(kUsage, "attach: name the vif (vif<domid>.<handle> or a backend path) or "
                                "give --domid");
        if (handle && !domid) return fail(kUsage, "attach: --handle goes with --domid");
        if (domid) {
            req.args["domid"] = *domid;
            req.args["handle"] = handle.value_or(0);
        }
        if (!mac.empty()) {
            if (!dpnb::netif::parse_vif_mac(mac, "mac"))
                return fail(kUsage, "invalid MAC address \"" + mac +
                                        "\" (xx:xx:xx:xx:xx:xx, unicast, not zero)");
            req.args["mac"] = mac;
        }
        if (!mode.empty()) {
            if (!dpnb::engine::parse_rx_mode(mode))
                return fail(kUsage, "bad RX mode \"" + mode + "\" (copy, map, reuse)");
            req.args["rx_mode"] = mode;
        }
        if (!port.empty()) req.args["port"] = port;
        if (queue) req.args["queue"] = *queue;
    }
    if (req.command == "set") {
        if (set_what == "rx-mode") {
            if (!dpnb::engine::parse_rx_mode(set_value))
                return fail(kUsage, "bad RX mode \"" + set_value + "\" (copy, map, reuse)");
            req.args["rx_mode"] = set_value;
        } else {
            if (set_value != "off" && !dpnb::netif::parse_rate(set_value, "rate"))
                return fail(kUsage, "bad rate \"" + set_value +
                                        "\" (<bytes>,<usec>, e.g. 125000,20000, or off)");
            req.args["rate"] = set_value;
        }
    }

    const auto t = std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
    auto client = dpnb::mgmt::Client::connect(socket, t);
    if (!client) {
        const Errc c = client.error().code;
        return fail(c == Errc::permission_denied ? kDenied : kUnreachable, client.error().message);
    }
    auto resp = client->call(req);
    if (!resp) {
        const Errc c = resp.error().code;
        return fail(c == Errc::permission_denied ? kDenied : kUnreachable, resp.error().message);
    }
    if (json) {
        Json out =
            resp->ok
                ? Json{{"ok", true}, {"result", resp->result}}
                : Json{{"ok", false},
                       {"error", {{"code", resp->error_code}, {"message", resp->error_message}}}};
        std::cout << out.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
        return resp->ok ? kOk : status_for(resp->error_code);
    }
    if (!resp->ok) return fail(status_for(resp->error_code), resp->error_message);
    print_result(req.command, resp->result);
    return kOk;
}
