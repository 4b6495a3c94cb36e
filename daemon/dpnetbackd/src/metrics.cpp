// Prometheus text format for a MetricsSnapshot (metrics.hpp). A Family collects its samples
// first so that each family's HELP and TYPE lines come once, followed by all its samples,
// as the format requires, whatever order the snapshot is walked in.
#include "dpnb/daemon/metrics.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <dirent.h>
#include <fstream>
#include <span>
#include <sys/resource.h>
#include <unistd.h>

#include "dpnb/netif/ctrl_handler.hpp"
#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/tx_parser.hpp"

namespace dpnb::daemon {

namespace {

// Counters of a counter table (engine::vif_counter_table(), engine::lcore_counter_table())
// that share a family, told apart by a label or two. A counter not listed gets
// <prefix><name>_total on its own, with the table's help.
struct CounterFamily {
    std::string_view counter;
    std::string_view family;
    std::string_view help;
    std::string_view label1, value1;
    std::string_view label2 = {}, value2 = {};
};
constexpr std::string_view kPacketsHelp =
    "Frames through the vif; direction rx is to the guest, tx is from the guest.";
constexpr std::string_view kBytesHelp =
    "Bytes through the vif; direction rx is to the guest, tx is from the guest.";
constexpr std::string_view kDropsHelp = "Frames the vif dropped, by direction and reason.";
constexpr std::string_view kGrantHelp = "Grant operations for the vif, by kind (one per grant).";
constexpr std::string_view kIottHelp =
    "RX buffers looked up in the I/O translation table, by result (reuse mode).";
constexpr std::string_view kNotifyHelp = "Event-channel notifications, sent to or received from "
                                         "the guest.";
constexpr std::string_view kLocalPacketsHelp =
    "Frames between guests of one port, delivered without the wire; direction rx is to the "
    "guest, tx is from the guest.";
constexpr std::string_view kLocalBytesHelp =
    "Bytes between guests of one port, delivered without the wire; direction rx is to the "
    "guest, tx is from the guest.";
constexpr CounterFamily kVifFamilies[] = {
    {"rx_packets", "dpnetback_vif_packets_total", kPacketsHelp, "direction", "rx"},
    {"tx_packets", "dpnetback_vif_packets_total", kPacketsHelp, "direction", "tx"},
    {"rx_bytes", "dpnetback_vif_bytes_total", kBytesHelp, "direction", "rx"},
    {"tx_bytes", "dpnetback_vif_bytes_total", kBytesHelp, "direction", "tx"},
    {"rx_drop_no_buffer", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "rx",
     "reason", "no_buffer"},
    {"rx_drop_placeholder", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "rx",
     "reason", "placeholder"},
    {"rx_drop_error", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "rx",
     "reason", "error"},
    {"rx_drop_stalled", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "rx",
     "reason", "stalled"},
    {"tx_drop_protocol", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "tx",
     "reason", "protocol"},
    {"tx_drop_spoofed", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "tx",
     "reason", "spoofed"},
    {"tx_drop_ip_spoofed", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "tx",
     "reason", "ip_spoofed"},
    {"tx_drop_error", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "tx",
     "reason", "error"},
    {"tx_drop_headers", "dpnetback_vif_dropped_packets_total", kDropsHelp, "direction", "tx",
     "reason", "headers"},
    {"grant_copy_ops", "dpnetback_vif_grant_operations_total", kGrantHelp, "kind", "copy"},
    {"grant_map_ops", "dpnetback_vif_grant_operations_total", kGrantHelp, "kind", "map"},
    {"grant_unmap_ops", "dpnetback_vif_grant_operations_total", kGrantHelp, "kind", "unmap"},
    {"iott_hits", "dpnetback_vif_iott_lookups_total", kIottHelp, "result", "hit"},
    {"iott_misses", "dpnetback_vif_iott_lookups_total", kIottHelp, "result", "miss"},
    {"notify_sent", "dpnetback_vif_notifications_total", kNotifyHelp, "direction", "sent"},
    {"notify_received", "dpnetback_vif_notifications_total", kNotifyHelp, "direction", "received"},
    {"local_rx_packets", "dpnetback_vif_local_packets_total", kLocalPacketsHelp, "direction", "rx"},
    {"local_tx_packets", "dpnetback_vif_local_packets_total", kLocalPacketsHelp, "direction", "tx"},
    {"local_rx_bytes", "dpnetback_vif_local_bytes_total", kLocalBytesHelp, "direction", "rx"},
    {"local_tx_bytes", "dpnetback_vif_local_bytes_total", kLocalBytesHelp, "direction", "tx"},
};
constexpr std::string_view kPollsHelp =
    "Poll-loop iterations of the lcore; busy found work, idle did not.";
constexpr std::string_view kHypervisorCallsHelp =
    "Calls the lcore made into the hypervisor interface, by kind: one ioctl each on Xen "
    "(a grant map or unmap also an mmap or munmap), a whole batch per grant call.";
constexpr std::string_view kSyscallsHelp =
    "Read- and write-family system calls of the lcore's thread, as the kernel counts them "
    "(syscr and syscw of /proc/PID/task/TID/io): the PMD's (net_tap's readv and writev per "
    "frame, vhost-net kicks), event-channel reads and unmasks, wake-ups.";
constexpr std::string_view kIommuCallsHelp =
    "Calls the lcore made to the IOMMU of ports behind vfio with an IOMMU, by kind: one "
    "VFIO_IOMMU_MAP_DMA or _UNMAP_DMA ioctl each with IOVA as VA, a run of grant-mapped pages "
    "per call.";
constexpr std::string_view kIommuFailuresHelp =
    "IOMMU calls refused, by kind: a refused map copies the run's RX buffers and drops its TX "
    "packets; a refused unmap leaves the grants mapped and disables the vif.";
constexpr CounterFamily kLcoreFamilies[] = {
    {"busy_polls", "dpnetback_lcore_polls_total", kPollsHelp, "result", "busy"},
    {"idle_polls", "dpnetback_lcore_polls_total", kPollsHelp, "result", "idle"},
    {"grant_copy_calls", "dpnetback_lcore_hypervisor_calls_total", kHypervisorCallsHelp, "kind",
     "grant_copy"},
    {"grant_map_calls", "dpnetback_lcore_hypervisor_calls_total", kHypervisorCallsHelp, "kind",
     "grant_map"},
    {"grant_unmap_calls", "dpnetback_lcore_hypervisor_calls_total", kHypervisorCallsHelp, "kind",
     "grant_unmap"},
    {"notify_calls", "dpnetback_lcore_hypervisor_calls_total", kHypervisorCallsHelp, "kind",
     "notify"},
    {"dma_map_calls", "dpnetback_lcore_iommu_calls_total", kIommuCallsHelp, "kind", "map"},
    {"dma_unmap_calls", "dpnetback_lcore_iommu_calls_total", kIommuCallsHelp, "kind", "unmap"},
    {"dma_map_failures", "dpnetback_lcore_iommu_failures_total", kIommuFailuresHelp, "kind", "map"},
    {"dma_unmap_failures", "dpnetback_lcore_iommu_failures_total", kIommuFailuresHelp, "kind",
     "unmap"},
    {"read_syscalls", "dpnetback_lcore_syscalls_total", kSyscallsHelp, "kind", "read"},
    {"write_syscalls", "dpnetback_lcore_syscalls_total", kSyscallsHelp, "kind", "write"},
};

using Labels = std::vector<std::pair<std::string, std::string>>;

std::string escape_label(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string escape_help(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string format_value(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15)
        std::snprintf(buf, sizeof buf, "%.0f", v);
    else
        std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

class Exposition {
public:
    struct Family {
        std::string type;
        std::string help;
        std::vector<std::string> samples;
    };

    void sample(std::string_view name, std::string_view type, std::string_view help,
                const Labels& labels, double value) {
        auto [it, fresh] = index_.try_emplace(std::string(name), order_.size());
        if (fresh)
            order_.push_back({std::string(name), Family{std::string(type), std::string(help), {}}});
        std::string line(name);
        if (!labels.empty()) {
            line += '{';
            for (std::size_t i = 0; i < labels.size(); ++i) {
                if (i) line += ',';
                line += labels[i].first + "=\"" + escape_label(labels[i].second) + "\"";
            }
            line += '}';
        }
        line += ' ';
        line += format_value(value);
        order_[it->second].second.samples.push_back(std::move(line));
    }
    void counter(std::string_view name, std::string_view help, const Labels& l, double v) {
        sample(name, "counter", help, l, v);
    }
    void gauge(std::string_view name, std::string_view help, const Labels& l, double v) {
        sample(name, "gauge", help, l, v);
    }
    // A family whose samples may be absent (so HELP/TYPE still appear).
    void declare(std::string_view name, std::string_view type, std::string_view help) {
        auto [it, fresh] = index_.try_emplace(std::string(name), order_.size());
        if (fresh)
            order_.push_back({std::string(name), Family{std::string(type), std::string(help), {}}});
    }

    std::string text() const {
        std::string out;
        for (const auto& [name, f] : order_) {
            out += "# HELP " + name + " " + escape_help(f.help) + "\n";
            out += "# TYPE " + name + " " + f.type + "\n";
            for (const std::string& s : f.samples)
                out += s + "\n";
        }
        return out;
    }

private:
    std::map<std::string, std::size_t> index_;
    std::vector<std::pair<std::string, Family>> order_;
};

// Every counter of `table`, its value from `value_of(i)`, labelled `labels` (plus its
// family's labels).
template <class ValueOf>
void render_counters(Exposition& e, std::string_view prefix,
                     std::span<const engine::CounterInfo> table,
                     std::span<const CounterFamily> families, const Labels& labels,
                     ValueOf value_of) {
    for (std::size_t i = 0; i < table.size(); ++i) {
        const auto value = static_cast<double>(value_of(i));
        const auto f = std::find_if(families.begin(), families.end(), [&](const CounterFamily& c) {
            return c.counter == table[i].name;
        });
        if (f != families.end()) {
            Labels l = labels;
            l.emplace_back(f->label1, f->value1);
            if (!f->label2.empty()) l.emplace_back(f->label2, f->value2);
            e.counter(f->family, f->help, l, value);
        } else {
            const std::string family = std::string(prefix) + table[i].name + "_total";
            std::string help = table[i].help;
            if (!help.empty()) help[0] = static_cast<char>(std::toupper(help[0]));
            e.counter(family, help + ".", labels, value);
        }
    }
}

bool connected(netif::Phase p) {
    return p == netif::Phase::connected || p == netif::Phase::reconfigured;
}

void render_vif(Exposition& e, const control::VifInfo& v) {
    const std::string name = engine::to_string(v.id);
    const Labels vif = {{"vif", name}};
    e.gauge("dpnetback_vif_info",
            "A vif the daemon knows, with its guest, uplink port and NIC queue (always 1).",
            {{"vif", name},
             {"domid", std::to_string(v.id.dom)},
             {"handle", std::to_string(v.id.handle)},
             {"domain", v.domain_name},
             {"port", v.port},
             {"nic_queue", v.rx_queue ? std::to_string(*v.rx_queue) : "shared"},
             {"role", control::to_string(v.role)}},
            1);
    e.gauge("dpnetback_vif_phase",
            "The vif's lifecycle phase (docs/xenbus.md); 1 for the current phase.",
            {{"vif", name}, {"phase", netif::to_string(v.phase)}}, 1);
    e.gauge("dpnetback_vif_connected",
            "1 while the vif is Connected and attached to the data "
            "plane.",
            vif, connected(v.phase) && v.attached ? 1 : 0);
    e.counter("dpnetback_vif_connects_total", "Handshakes completed by the vif.", vif,
              static_cast<double>(v.connects));
    const engine::RxMode mode = v.data_plane ? v.data_plane->rx_mode : v.rx_mode;
    e.gauge("dpnetback_vif_rx_mode",
            "The RX mode in effect (copy, map, reuse); 1 for the current mode.",
            {{"vif", name}, {"mode", engine::to_string(mode)}}, 1);
    if (!v.data_plane) return;
    const engine::VifStatus& s = *v.data_plane;
    e.gauge("dpnetback_vif_queues", "Queues of the vif served by the data plane.", vif, s.queues);
    e.gauge("dpnetback_vif_lcore", "The lcore that serves the vif.", vif, s.lcore);
    e.gauge("dpnetback_vif_disabled",
            "1 when the data plane disabled the vif after a fatal protocol error.", vif,
            s.state == engine::VifRunState::disabled ? 1 : 0);
    e.gauge("dpnetback_vif_rx_stalled_queues",
            "Queues of the vif stalled now: frames waiting and no RX buffer posted for "
            "rx_stall_timeout (carrier off); their frames are dropped until the guest posts.",
            vif, s.stalled_queues);
    e.gauge("dpnetback_vif_rx_backlog_frames",
            "Frames kept for the guest after the last round: it had no RX buffer for them "
            "(at most 256 a queue, none while stalled).",
            vif, s.rx_backlog_frames);
    e.gauge("dpnetback_vif_rx_backlog_bytes",
            "Bytes of the frames kept for the guest (at most 512 KiB a queue).", vif,
            s.rx_backlog_bytes);

    render_counters(e, "dpnetback_vif_", engine::vif_counter_table(), kVifFamilies, vif,
                    [&](std::size_t i) { return engine::counter_value(s.counters, i); });
    const auto hits = static_cast<double>(s.counters.iott_hits);
    const auto misses = static_cast<double>(s.counters.iott_misses);
    if (hits + misses > 0)
        e.gauge("dpnetback_vif_iott_hit_ratio",
                "Translation-table hits over lookups since the vif was attached (the reuse "
                "rate).",
                vif, hits / (hits + misses));

    if (s.control_ring) {
        const std::string_view rh = "Control-ring messages the vif's frontend sent, by status.";
        const std::uint64_t refused = s.ctrl_not_supported + s.ctrl_invalid;
        e.counter("dpnetback_vif_ctrl_requests_total", rh, {{"vif", name}, {"status", "success"}},
                  static_cast<double>(s.ctrl_requests >= refused ? s.ctrl_requests - refused : 0));
        e.counter("dpnetback_vif_ctrl_requests_total", rh,
                  {{"vif", name}, {"status", "not_supported"}},
                  static_cast<double>(s.ctrl_not_supported));
        e.counter("dpnetback_vif_ctrl_requests_total", rh,
                  {{"vif", name}, {"status", "invalid_parameter"}},
                  static_cast<double>(s.ctrl_invalid));
        const auto reasons = netif::ctrl::ctrl_error_table();
        for (std::size_t i = 0; i < reasons.size() && i < s.ctrl_errors.size(); ++i)
            e.counter("dpnetback_vif_ctrl_errors_total",
                      "Control-ring messages answered INVALID_PARAMETER, by reason.",
                      {{"vif", name}, {"reason", reasons[i].name}},
                      static_cast<double>(s.ctrl_errors[i]));
        if (s.static_grant_iommu) {
            const engine::VifStatus::StaticGrantIommu& d = *s.static_grant_iommu;
            const std::string_view ch =
                "IOMMU calls for the vif's static grants, on the control thread: a map per "
                "registered page at ADD, an unmap at DEL and at disconnect.";
            const std::string_view fh =
                "IOMMU calls for the vif's static grants refused: a refused map fails its ADD "
                "(nothing of it registered); a refused unmap leaves the page grant-mapped.";
            for (const auto& [kind, calls, failures] :
                 {std::tuple{"map", d.maps, d.map_failures},
                  std::tuple{"unmap", d.unmaps, d.unmap_failures}}) {
                e.counter("dpnetback_vif_static_grant_iommu_calls_total", ch,
                          {{"vif", name}, {"kind", kind}}, static_cast<double>(calls));
                e.counter("dpnetback_vif_static_grant_iommu_failures_total", fh,
                          {{"vif", name}, {"kind", kind}}, static_cast<double>(failures));
            }
        }
        e.gauge("dpnetback_vif_hash_info",
                "The receive hashing the vif's frontend set over its control ring (always 1).",
                {{"vif", name},
                 {"algorithm", netif::hash_algorithm_name(s.hash.algorithm)},
                 {"mapping_size", std::to_string(s.hash.mapping_size)}},
                1);
    }

    const auto errors = netif::tx_error_table();
    for (std::size_t i = 0; i < errors.size() && i < s.tx_errors.size(); ++i) {
        std::string reason = errors[i].name;
        if (reason.rfind("tx_", 0) == 0) reason.erase(0, 3);
        e.counter("dpnetback_vif_tx_errors_total",
                  "Guest TX packets the parser refused, by reason and verdict (drop: the packet "
                  "is answered in error; fatal: the vif is disabled).",
                  {{"vif", name}, {"reason", reason}, {"verdict", netif::to_string(errors[i].cls)}},
                  static_cast<double>(s.tx_errors[i]));
    }
}

void render_lcore(Exposition& e, const engine::LcoreStats& l) {
    const std::string id = std::to_string(l.lcore);
    render_counters(e, "dpnetback_lcore_", engine::lcore_counter_table(), kLcoreFamilies,
                    {{"lcore", id}}, [&](std::size_t i) { return engine::counter_value(l, i); });
    e.counter("dpnetback_lcore_cpu_seconds_total",
              "CPU time of the lcore's thread, user and system (its system calls included, "
              "its sleeps not).",
              {{"lcore", id}}, static_cast<double>(l.cpu_ns) / 1e9);
    e.gauge("dpnetback_lcore_guest_queues", "Guest queues the lcore owns.", {{"lcore", id}},
            l.queues);
    e.gauge("dpnetback_lcore_nic_queues", "NIC RX queues the lcore polls.", {{"lcore", id}},
            l.nic_queues);
    if (!l.stage_timing) return;
    for (std::size_t i = 0; i < l.stages.size(); ++i) {
        const char* stage = engine::to_string(static_cast<engine::Stage>(i));
        const double seconds =
            l.tsc_hz ? static_cast<double>(l.stages[i].cycles) / static_cast<double>(l.tsc_hz)
                     : 0.0;
        e.counter("dpnetback_lcore_stage_seconds_total",
                  "Time the lcore spent in each stage of its poll loop (built with "
                  "DPNB_STAGE_TIMING).",
                  {{"lcore", id}, {"stage", stage}}, seconds);
        e.counter("dpnetback_lcore_stage_calls_total",
                  "Times the lcore ran each stage of its poll loop (built with "
                  "DPNB_STAGE_TIMING).",
                  {{"lcore", id}, {"stage", stage}}, static_cast<double>(l.stages[i].calls));
    }
}

void render_port(Exposition& e, const engine::PortStatus& p) {
    const Labels port = {{"port", p.name}};
    e.gauge("dpnetback_port_info", "A NIC port, its PMD and its steering (always 1).",
            {{"port", p.name},
             {"driver", p.driver},
             {"steering", pmd::to_string(p.steering)},
             {"port_id", std::to_string(p.port_id)}},
            1);
    e.gauge("dpnetback_port_zero_copy",
            "1 when the port's RX queues take guest buffers (zero copy).", port,
            p.zero_copy ? 1 : 0);
    e.gauge("dpnetback_port_dma_info",
            "What the DMA policy made of the port's device: may it be given guest pages "
            "(verdict zero_copy) or only the daemon's memory (copy_only), and its inputs "
            "(always 1).",
            {{"port", p.name},
             {"verdict", pmd::to_string(p.dma)},
             {"domain", pmd::to_string(p.dma_inputs.domain)},
             {"bus", pmd::to_string(p.dma_inputs.bus)},
             {"binding", pmd::to_string(p.dma_inputs.binding)},
             {"iova", pmd::to_string(p.dma_inputs.iova)}},
            1);
    e.gauge("dpnetback_port_flow_rules", "1 when the port steers guests with rte_flow rules.", port,
            p.flow_rules ? 1 : 0);
    e.gauge("dpnetback_port_rx_queues", "RX queues of the port.", port, p.rx_queues);
    double used = 0;
    for (const auto& o : p.queue_owner)
        used += o ? 1 : 0;
    e.gauge("dpnetback_port_dedicated_queues_used", "RX queues of the port owned by one vif.", port,
            used);
    const std::string_view ph = "Frames through the port, as the PMD counts them.";
    const std::string_view bh = "Bytes through the port, as the PMD counts them.";
    e.counter("dpnetback_port_packets_total", ph, {{"port", p.name}, {"direction", "rx"}},
              static_cast<double>(p.stats.ipackets));
    e.counter("dpnetback_port_packets_total", ph, {{"port", p.name}, {"direction", "tx"}},
              static_cast<double>(p.stats.opackets));
    e.counter("dpnetback_port_bytes_total", bh, {{"port", p.name}, {"direction", "rx"}},
              static_cast<double>(p.stats.ibytes));
    e.counter("dpnetback_port_bytes_total", bh, {{"port", p.name}, {"direction", "tx"}},
              static_cast<double>(p.stats.obytes));
    const std::string_view eh = "Frames the port failed to receive or send, by direction.";
    e.counter("dpnetback_port_errors_total", eh, {{"port", p.name}, {"direction", "rx"}},
              static_cast<double>(p.stats.ierrors));
    e.counter("dpnetback_port_errors_total", eh, {{"port", p.name}, {"direction", "tx"}},
              static_cast<double>(p.stats.oerrors));
    e.counter("dpnetback_port_missed_packets_total",
              "Frames the NIC dropped because its RX queue was full.", port,
              static_cast<double>(p.stats.imissed));
    e.counter("dpnetback_port_rx_nombuf_total",
              "RX buffer allocation failures (no buffer to give the NIC).", port,
              static_cast<double>(p.stats.rx_nombuf));
    e.gauge("dpnetback_port_vhost_workers",
            "vhost-net worker threads of the port (a virtio_user port over /dev/vhost-net).", port,
            static_cast<double>(p.vhost_workers.size()));
    e.counter("dpnetback_port_vhost_placement_failures_total",
              "Times a vhost-net worker of the port could not be moved to the CPUs of the lcores "
              "that poll the port (engine.place_vhost_workers), or its workers not listed.",
              port, static_cast<double>(p.vhost_placement_failures));
}

void render_control(Exposition& e, const control::ControlCounters& c,
                    const std::vector<control::VifInfo>& vifs) {
    const std::string_view vh =
        "Vif folders by lifecycle phase (unadopted: left alone; rejected: bad toolstack keys).";
    for (std::size_t i = 0; i < netif::kPhaseCount; ++i)
        e.gauge("dpnetback_vifs", vh, {{"phase", netif::to_string(static_cast<netif::Phase>(i))}},
                static_cast<double>(c.vifs_by_phase[i]));
    e.gauge("dpnetback_vifs", vh, {{"phase", "unadopted"}}, static_cast<double>(c.vifs_unadopted));
    e.gauge("dpnetback_vifs", vh, {{"phase", "rejected"}}, static_cast<double>(c.vifs_rejected));
    double up = 0;
    for (const control::VifInfo& v : vifs)
        up += connected(v.phase) && v.attached ? 1 : 0;
    e.gauge("dpnetback_vifs_connected", "Vifs Connected and attached to the data plane.", {}, up);
    const auto events = control::control_event_table();
    for (std::size_t i = 0; i < events.size(); ++i)
        e.counter("dpnetback_control_events_total",
                  "Control-plane events by kind (docs/metrics.md lists them).",
                  {{"event", events[i].name}}, static_cast<double>(c.events[i]));
    const auto errors = control::control_error_table();
    for (std::size_t i = 0; i < errors.size(); ++i)
        e.counter("dpnetback_control_errors_total",
                  "Control-plane errors by kind (docs/metrics.md lists them).",
                  {{"kind", errors[i].name}}, static_cast<double>(c.errors[i]));
}

} // namespace

std::string render_metrics(const MetricsSnapshot& s) {
    Exposition e;
    const ProcessInfo& p = s.process;
    e.gauge("dpnetback_build_info", "Version, hypervisor backend and DPDK version (always 1).",
            {{"version", p.version}, {"hypervisor", p.hypervisor}, {"dpdk", p.dpdk_version}}, 1);
    e.gauge("dpnetback_start_time_seconds", "When the daemon started, in seconds since the epoch.",
            {}, p.start_time_seconds);
    e.gauge("dpnetback_uptime_seconds", "Seconds since the daemon started.", {}, p.uptime_seconds);
    e.counter("dpnetback_process_cpu_seconds_total", "User and system CPU time of the daemon.", {},
              p.cpu_seconds);
    e.gauge("dpnetback_process_resident_memory_bytes", "Resident memory of the daemon.", {},
            static_cast<double>(p.resident_bytes));
    e.gauge("dpnetback_process_open_fds", "Open file descriptors of the daemon.", {},
            static_cast<double>(p.open_fds));

    render_control(e, s.control, s.vifs);
    // Declared even without vifs, so that dashboards find the families.
    e.declare("dpnetback_vif_packets_total", "counter", kPacketsHelp);
    e.declare("dpnetback_vif_bytes_total", "counter", kBytesHelp);
    for (const control::VifInfo& v : s.vifs)
        render_vif(e, v);
    for (const engine::LcoreStats& l : s.lcores)
        render_lcore(e, l);
    for (const engine::PortStatus& port : s.ports)
        render_port(e, port);

    const std::string_view rh = "Management requests by command and result.";
    for (const auto& [cmd, n] : s.server.requests_ok)
        e.counter("dpnetback_mgmt_requests_total", rh, {{"command", cmd}, {"result", "ok"}},
                  static_cast<double>(n));
    for (const auto& [cmd, n] : s.server.requests_failed)
        e.counter("dpnetback_mgmt_requests_total", rh, {{"command", cmd}, {"result", "error"}},
                  static_cast<double>(n));
    e.declare("dpnetback_mgmt_requests_total", "counter", rh);
    e.counter("dpnetback_mgmt_denied_connections_total",
              "Management connections refused by the peer-credential check.", {},
              static_cast<double>(s.server.denied));
    e.counter("dpnetback_mgmt_bad_requests_total",
              "Management requests that were not valid (not JSON, too long, bad fields).", {},
              static_cast<double>(s.server.bad_requests));
    e.counter("dpnetback_metrics_scrapes_total", "Scrapes of this endpoint.", {},
              static_cast<double>(s.server.scrapes));
    e.counter("dpnetback_config_reloads_total", "Configuration reloads (SIGHUP), by result.",
              {{"result", "ok"}}, static_cast<double>(s.server.reloads));
    e.counter("dpnetback_config_reloads_total", "Configuration reloads (SIGHUP), by result.",
              {{"result", "error"}}, static_cast<double>(s.server.reload_failures));
    return e.text();
}

void read_process_info(ProcessInfo& info) {
    rusage ru{};
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        info.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    std::ifstream statm("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    if (statm >> size >> resident)
        info.resident_bytes = resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
    std::uint64_t fds = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d))
            ++fds;
        closedir(d);
        info.open_fds = fds > 3 ? fds - 3 : 0; // ".", ".." and the directory's own fd
    }
}

} // namespace dpnb::daemon
