// The management commands (docs/cli.md), as a table of handlers in the style of DPDK's
// vhost_user.c message handlers: each one validates its arguments and answers with JSON.
// They run on the control thread, so they call the control plane and the engine directly.
#include <unistd.h>

#include <rte_version.h>

#include "daemon_impl.hpp"
#include "dpnb/daemon/logging.hpp"
#include "dpnb/netif/ctrl_handler.hpp"
#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/tx_parser.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace dpnb::daemon {

namespace {

using mgmt::Json;

Json counters_json(const engine::VifCounters& c) {
    Json j = Json::object();
    const auto table = engine::vif_counter_table();
    for (std::size_t i = 0; i < table.size(); ++i)
        j[table[i].name] = engine::counter_value(c, i);
    return j;
}

std::uint64_t drops(const engine::VifCounters& c) {
    return c.rx_drop_no_buffer + c.rx_drop_placeholder + c.rx_drop_error + c.tx_drop_protocol +
           c.tx_drop_spoofed + c.tx_drop_ip_spoofed + c.tx_drop_error + c.tx_drop_headers +
           c.rx_drop_stalled;
}

// The data plane's state of a vif: running, stalled (a queue with no RX buffer for
// rx_stall_timeout: carrier off), or disabled.
const char* run_state(const engine::VifStatus& s) {
    if (s.state == engine::VifRunState::disabled) return "disabled";
    return s.stalled_queues != 0 ? "stalled" : "running";
}

Json optional_state(const std::optional<netif::XenbusState>& s) {
    return s ? Json(netif::to_string(*s)) : Json(nullptr);
}

// One line of `list`. Mode and queue: what the data plane serves while attached.
Json vif_summary(const control::VifInfo& v) {
    const std::optional<std::uint16_t> rx_queue =
        v.data_plane ? v.data_plane->rx_queue : v.rx_queue;
    Json j = {{"vif", engine::to_string(v.id)},
              {"domid", v.id.dom},
              {"handle", v.id.handle},
              {"domain", v.domain_name},
              {"role", control::to_string(v.role)},
              {"phase", netif::to_string(v.phase)},
              {"backend_state", netif::to_string(v.backend_state)},
              {"frontend_state", optional_state(v.frontend_state)},
              {"attached", v.attached},
              {"mac", netif::format_mac(v.mac)},
              {"rx_mode", engine::to_string(v.data_plane ? v.data_plane->rx_mode : v.rx_mode)},
              {"port", v.port},
              {"rx_queue", rx_queue ? Json(*rx_queue) : Json(nullptr)},
              {"queues", v.queues}};
    if (v.data_plane) {
        const engine::VifCounters& c = v.data_plane->counters;
        j["state"] = run_state(*v.data_plane);
        j["lcore"] = v.data_plane->lcore;
        j["rx_packets"] = c.rx_packets;
        j["rx_bytes"] = c.rx_bytes;
        j["tx_packets"] = c.tx_packets;
        j["tx_bytes"] = c.tx_bytes;
        j["drops"] = drops(c);
    }
    return j;
}

// The receive hashing a frontend set over its control ring.
Json hash_json(const netif::HashConfig& h) {
    Json types = Json::array();
    for (std::uint8_t t = 0; t < netif::hash_type::kMax; ++t)
        if ((h.flags >> t) & 1U) types.push_back(netif::hash_type_name(t));
    return {{"algorithm", netif::hash_algorithm_name(h.algorithm)},
            {"types", std::move(types)},
            {"mapping_size", h.mapping_size}};
}

// Everything about one vif (`show`).
Json vif_detail(const control::VifInfo& v) {
    Json j = vif_summary(v);
    j["backend_path"] = v.backend_path;
    j["frontend_path"] = v.frontend_path;
    j["hotplug_ready"] = v.hotplug_ready;
    j["adopted"] = v.adopted;
    j["connects"] = v.connects;
    j["rx_mode_requested"] = engine::to_string(v.rx_mode);
    j["rx_mode_reason"] = v.rx_mode_reason;
    j["last_error_kind"] =
        v.last_error_kind ? Json(control::to_string(*v.last_error_kind)) : Json(nullptr);
    j["last_error"] = v.last_error;
    if (v.data_plane) {
        const engine::VifStatus& s = *v.data_plane;
        j["data_plane"] = {{"state", run_state(s)},
                           {"disabled_reason", s.disabled_reason},
                           {"stalled_queues", s.stalled_queues},
                           {"rx_backlog_frames", s.rx_backlog_frames},
                           {"rx_backlog_bytes", s.rx_backlog_bytes},
                           {"rx_mode", engine::to_string(s.rx_mode)},
                           {"rx_mode_reason", s.rx_mode_reason},
                           {"port", s.port},
                           {"rx_queue", s.rx_queue ? Json(*s.rx_queue) : Json(nullptr)},
                           {"lcore", s.lcore},
                           {"queues", s.queues},
                           {"control_ring", s.control_ring},
                           {"static_grants", s.static_grants},
                           {"hash", hash_json(s.hash)}};
        Json irqs = Json::array();
        for (std::size_t q = 0; q < s.queue_irqs.size(); ++q)
            irqs.push_back({{"queue", q},
                            {"irqs", s.queue_irqs[q].irqs},
                            {"cpus", s.queue_irqs[q].cpus},
                            {"placement", s.queue_irqs[q].placement}});
        j["data_plane"]["event_channel_irqs"] = std::move(irqs);
        if (const auto& d = s.static_grant_iommu)
            j["data_plane"]["static_grant_iommu"] = {{"maps", d->maps},
                                                     {"unmaps", d->unmaps},
                                                     {"map_failures", d->map_failures},
                                                     {"unmap_failures", d->unmap_failures}};
        else
            j["data_plane"]["static_grant_iommu"] = nullptr;
        j["counters"] = counters_json(s.counters);
        Json errors = Json::object();
        const auto table = netif::tx_error_table();
        for (std::size_t i = 0; i < table.size() && i < s.tx_errors.size(); ++i)
            errors[table[i].name] = {{"count", s.tx_errors[i]},
                                     {"verdict", netif::to_string(table[i].cls)},
                                     {"help", table[i].help}};
        j["tx_errors"] = std::move(errors);
        Json ctrl = {{"requests", s.ctrl_requests},
                     {"not_supported", s.ctrl_not_supported},
                     {"invalid", s.ctrl_invalid}};
        Json refused = Json::object();
        const auto reasons = netif::ctrl::ctrl_error_table();
        for (std::size_t i = 0; i < reasons.size() && i < s.ctrl_errors.size(); ++i)
            refused[reasons[i].name] = {{"count", s.ctrl_errors[i]}, {"help", reasons[i].help}};
        ctrl["refused"] = std::move(refused);
        j["control_ring"] = std::move(ctrl);
    } else {
        j["data_plane"] = nullptr;
    }
    return j;
}

// "vifN.M: message", once: the control plane's errors often name the vif already (found by
// tests/daemon/ctl_process_test.cpp: "vif1.0: vif1.0: RX mode map needs ...").
std::string about(const engine::VifId& id, const std::string& message) {
    const std::string name = engine::to_string(id);
    if (message.rfind(name + ":", 0) == 0) return message;
    return name + ": " + message;
}

Error bad(std::string msg) {
    return make_error(Errc::invalid_argument, std::move(msg));
}

// The vif a request names: "vif" (a name or a backend path), or "domid" and "handle".
Result<engine::VifId> vif_arg(const Json& args) {
    if (args.contains("vif")) {
        auto s = mgmt::arg_string(args, "vif");
        if (!s) return s.error();
        return mgmt::parse_vif_ref(*s);
    }
    auto dom = mgmt::arg_optional_uint(args, "domid", netif::kDomIdFirstReserved - 1);
    if (!dom) return dom.error();
    auto handle = mgmt::arg_optional_uint(args, "handle", netif::kMaxVifHandle);
    if (!handle) return handle.error();
    if (!*dom) return bad("missing argument \"vif\" (or \"domid\" and \"handle\")");
    return engine::VifId{static_cast<netif::DomId>(**dom),
                         static_cast<std::uint32_t>(handle->value_or(0))};
}

Status only_args(const Json& args, std::initializer_list<std::string_view> known) {
    for (auto& [k, v] : args.items()) {
        bool found = false;
        for (std::string_view n : known)
            found = found || k == n;
        if (!found) return bad("unknown argument \"" + k.substr(0, 32) + "\"");
    }
    return ok();
}

using Handler = Result<Json> (*)(Daemon::Impl&, const Json&);

Result<Json> cmd_version(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {}); !st) return st.error();
    return Json{{"version", version()},
                {"protocol", mgmt::kProtocolVersion},
                {"hypervisor", to_string(d.config_.hypervisor.kind)},
                {"dpdk", rte_version()},
                {"pid", static_cast<long>(getpid())}};
}

Result<Json> cmd_list(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {}); !st) return st.error();
    Json vifs = Json::array();
    for (const control::VifInfo& v : d.control_->list())
        vifs.push_back(vif_summary(v));
    return Json{{"vifs", std::move(vifs)}};
}

Result<Json> cmd_show(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {"vif", "domid", "handle"}); !st) return st.error();
    auto id = vif_arg(args);
    if (!id) return id.error();
    auto v = d.control_->vif(*id);
    if (!v) return make_error(v.error().code, "no such vif " + engine::to_string(*id));
    return vif_detail(*v);
}

Result<Json> cmd_attach(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {"vif", "domid", "handle", "mac", "rx_mode", "port", "queue"});
        !st)
        return st.error();
    auto id = vif_arg(args);
    if (!id) return id.error();
    control::VifOverrides o;
    auto mac = mgmt::arg_optional_string(args, "mac");
    if (!mac) return mac.error();
    if (*mac) {
        auto m = netif::parse_vif_mac(**mac, "mac");
        if (!m)
            return bad("invalid MAC address \"" + (*mac)->substr(0, 32) +
                       "\" (xx:xx:xx:xx:xx:xx, unicast, not zero)");
        o.mac = *m;
    }
    auto mode = mgmt::arg_optional_string(args, "rx_mode");
    if (!mode) return mode.error();
    if (*mode) {
        auto m = engine::parse_rx_mode(**mode);
        if (!m) return bad("bad RX mode \"" + (*mode)->substr(0, 32) + "\" (copy, map, reuse)");
        o.rx_mode = *m;
    }
    auto port = mgmt::arg_optional_string(args, "port");
    if (!port) return port.error();
    if (*port) {
        bool known = false;
        for (const pmd::PortConfig& p : d.config_.engine.ports)
            known = known || p.name == **port || p.group == **port;
        if (!known)
            return make_error(Errc::not_found, "no port \"" + (*port)->substr(0, 32) + "\"");
        o.port = **port;
    }
    auto queue = mgmt::arg_optional_uint(args, "queue", 127);
    if (!queue) return queue.error();
    if (*queue) o.rx_queue = static_cast<std::uint16_t>(**queue);
    if (Status st = d.control_->adopt(*id, o); !st) {
        Error e = st.error();
        e.message = about(*id, e.message);
        return e;
    }
    logger(Component::mgmt)->info("mgmt: attach {}", engine::to_string(*id));
    auto v = d.control_->vif(*id);
    if (!v) return Json{{"vif", engine::to_string(*id)}};
    return vif_summary(*v);
}

Result<Json> cmd_detach(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {"vif", "domid", "handle"}); !st) return st.error();
    auto id = vif_arg(args);
    if (!id) return id.error();
    if (Status st = d.control_->release(*id); !st) {
        Error e = st.error();
        e.message = engine::to_string(*id) + ": " +
                    (e.code == Errc::not_found ? "no such vif served" : e.message);
        return e;
    }
    logger(Component::mgmt)->info("mgmt: detach {}", engine::to_string(*id));
    return Json{{"vif", engine::to_string(*id)}};
}

Result<Json> cmd_set(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {"vif", "domid", "handle", "rx_mode", "rate"}); !st)
        return st.error();
    auto id = vif_arg(args);
    if (!id) return id.error();
    auto mode = mgmt::arg_optional_string(args, "rx_mode");
    if (!mode) return mode.error();
    auto rate = mgmt::arg_optional_string(args, "rate");
    if (!rate) return rate.error();
    if (!*mode && !*rate) return bad("nothing to set (rx_mode or rate)");
    if (*mode) {
        auto m = engine::parse_rx_mode(**mode);
        if (!m) return bad("bad RX mode \"" + (*mode)->substr(0, 32) + "\" (copy, map, reuse)");
        if (Status st = d.control_->set_rx_mode(*id, *m); !st) {
            Error e = st.error();
            e.message = about(*id, e.message);
            return e;
        }
    }
    if (*rate) {
        std::optional<netif::RateLimit> limit;
        if (**rate != "off") {
            auto r = netif::parse_rate(**rate, "rate");
            if (!r)
                return bad("bad rate \"" + (*rate)->substr(0, 32) +
                           "\" (<bytes>,<usec> as the toolstack writes it, or off)");
            limit = *r;
        }
        // Straight to the data plane: the toolstack's "rate" applies again at the next
        // connect (docs/cli.md).
        if (Status st = d.engine_->set_rate(*id, limit); !st) {
            Error e = st.error();
            e.message = engine::to_string(*id) + ": " +
                        (e.code == Errc::not_found ? "not attached to the data plane" : e.message);
            return e;
        }
    }
    logger(Component::mgmt)
        ->info("mgmt: set {}{}{}", engine::to_string(*id), *mode ? " rx_mode " + **mode : "",
               *rate ? " rate " + **rate : "");
    auto v = d.control_->vif(*id);
    if (!v) return Json{{"vif", engine::to_string(*id)}};
    return vif_summary(*v);
}

Result<Json> cmd_stats(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {}); !st) return st.error();
    const MetricsSnapshot s = d.snapshot();
    Json lcores = Json::array();
    for (const engine::LcoreStats& l : s.lcores) {
        Json j = {{"lcore", l.lcore},           {"cpus", l.cpus},     {"guest_queues", l.queues},
                  {"nic_queues", l.nic_queues}, {"cpu_ns", l.cpu_ns}, {"tsc_hz", l.tsc_hz}};
        const auto table = engine::lcore_counter_table();
        for (std::size_t i = 0; i < table.size(); ++i)
            j[table[i].name] = engine::counter_value(l, i);
        if (l.stage_timing) {
            Json st = Json::object();
            for (std::size_t i = 0; i < l.stages.size(); ++i)
                st[engine::to_string(static_cast<engine::Stage>(i))] = {
                    {"cycles", l.stages[i].cycles}, {"calls", l.stages[i].calls}};
            j["stages"] = std::move(st);
        }
        lcores.push_back(std::move(j));
    }
    Json ports = Json::array();
    for (const engine::PortStatus& p : s.ports) {
        unsigned used = 0;
        for (const auto& o : p.queue_owner)
            used += o ? 1 : 0;
        ports.push_back({{"name", p.name},
                         {"driver", p.driver},
                         {"port_id", p.port_id},
                         {"steering", pmd::to_string(p.steering)},
                         {"zero_copy", p.zero_copy},
                         {"copy_reason", p.copy_reason},
                         {"dma",
                          {{"verdict", pmd::to_string(p.dma)},
                           {"reason", p.dma_reason},
                           {"domain", pmd::to_string(p.dma_inputs.domain)},
                           {"bus", pmd::to_string(p.dma_inputs.bus)},
                           {"binding", pmd::to_string(p.dma_inputs.binding)},
                           {"iova", pmd::to_string(p.dma_inputs.iova)}}},
                         {"flow_rules", p.flow_rules},
                         {"rx_queues", p.rx_queues},
                         {"mtu", p.mtu},
                         {"rx_offloads", p.rx_offloads},
                         {"tx_offloads", p.tx_offloads},
                         {"dedicated_queues_used", used},
                         {"vhost_workers", p.vhost_workers},
                         {"vhost_cpus", p.vhost_cpus},
                         {"vhost_placement_failures", p.vhost_placement_failures},
                         {"rx_packets", p.stats.ipackets},
                         {"tx_packets", p.stats.opackets},
                         {"rx_bytes", p.stats.ibytes},
                         {"tx_bytes", p.stats.obytes},
                         {"rx_missed", p.stats.imissed},
                         {"rx_errors", p.stats.ierrors},
                         {"tx_errors", p.stats.oerrors},
                         {"rx_nombuf", p.stats.rx_nombuf}});
    }
    Json phases = Json::object();
    for (std::size_t i = 0; i < netif::kPhaseCount; ++i)
        phases[netif::to_string(static_cast<netif::Phase>(i))] = s.control.vifs_by_phase[i];
    phases["unadopted"] = s.control.vifs_unadopted;
    phases["rejected"] = s.control.vifs_rejected;
    Json events = Json::object();
    const auto et = control::control_event_table();
    for (std::size_t i = 0; i < et.size(); ++i)
        events[et[i].name] = s.control.events[i];
    Json errors = Json::object();
    const auto rt = control::control_error_table();
    for (std::size_t i = 0; i < rt.size(); ++i)
        errors[rt[i].name] = s.control.errors[i];
    std::uint64_t connected = 0;
    engine::VifCounters total;
    for (const control::VifInfo& v : s.vifs) {
        if ((v.phase == netif::Phase::connected || v.phase == netif::Phase::reconfigured) &&
            v.attached)
            ++connected;
        if (!v.data_plane) continue;
        total.rx_packets += v.data_plane->counters.rx_packets;
        total.rx_bytes += v.data_plane->counters.rx_bytes;
        total.tx_packets += v.data_plane->counters.tx_packets;
        total.tx_bytes += v.data_plane->counters.tx_bytes;
    }
    // metrics.port = 0 binds a free port: config/README.md promises that `stats` says which
    // (the address actually bound, or null when the endpoint is disabled).
    Json metrics_endpoint = nullptr;
    if (d.metrics_)
        metrics_endpoint = {{"address", d.metrics_->config().address},
                            {"port", d.metrics_->port()}};
    return Json{{"process",
                 {{"pid", static_cast<long>(getpid())},
                  {"version", s.process.version},
                  {"hypervisor", s.process.hypervisor},
                  {"dpdk", s.process.dpdk_version},
                  {"uptime_seconds", s.process.uptime_seconds},
                  {"cpu_seconds", s.process.cpu_seconds},
                  {"resident_bytes", s.process.resident_bytes},
                  {"open_fds", s.process.open_fds}}},
                {"vifs",
                 {{"known", s.vifs.size()},
                  {"connected", connected},
                  {"by_phase", std::move(phases)},
                  {"rx_packets", total.rx_packets},
                  {"rx_bytes", total.rx_bytes},
                  {"tx_packets", total.tx_packets},
                  {"tx_bytes", total.tx_bytes}}},
                {"control", {{"events", std::move(events)}, {"errors", std::move(errors)}}},
                {"lcores", std::move(lcores)},
                {"ports", std::move(ports)},
                {"management",
                 {{"denied", s.server.denied},
                  {"bad_requests", s.server.bad_requests},
                  {"scrapes", s.server.scrapes},
                  {"reloads", s.server.reloads},
                  {"reload_failures", s.server.reload_failures},
                  {"metrics_endpoint", std::move(metrics_endpoint)}}}};
}

Result<Json> cmd_reload(Daemon::Impl& d, const Json& args) {
    if (Status st = only_args(args, {}); !st) return st.error();
    auto r = d.reload();
    if (!r) return r.error();
    return Json{
        {"applied", r->applied}, {"needs_restart", r->needs_restart}, {"errors", r->errors}};
}

struct Command {
    std::string_view name;
    Handler handler;
    bool changes_state; // logged with the peer's identity
};
constexpr Command kCommands[] = {
    {"version", cmd_version, false}, {"list", cmd_list, false},    {"show", cmd_show, false},
    {"stats", cmd_stats, false},     {"attach", cmd_attach, true}, {"detach", cmd_detach, true},
    {"set", cmd_set, true},          {"reload", cmd_reload, true},
};

} // namespace

mgmt::Response Daemon::Impl::dispatch(const mgmt::Request& request, const PeerCred& peer) {
    mgmt::Response r;
    for (const Command& c : kCommands) {
        if (c.name != request.command) continue;
        if (stopping_ || !control_ || !engine_) {
            r.error_code = mgmt::wire_code(Errc::closed);
            r.error_message = "dpnetbackd is stopping";
            return r;
        }
        if (c.changes_state)
            logger(Component::mgmt)
                ->info("mgmt: {} from pid {} uid {}: {}", request.command, peer.pid, peer.uid,
                       request.args.dump(-1, ' ', false, mgmt::Json::error_handler_t::replace));
        Result<Json> out = c.handler(*this, request.args);
        if (out) {
            r.ok = true;
            r.result = std::move(*out);
        } else {
            r.error_code = mgmt::wire_code(out.error().code);
            r.error_message = out.error().message;
        }
        return r;
    }
    r.error_code = mgmt::kUnknownCommand;
    std::string names;
    for (const Command& c : kCommands)
        names += (names.empty() ? "" : ", ") + std::string(c.name);
    r.error_message = "unknown command \"" + request.command + "\" (commands: " + names + ")";
    return r;
}

} // namespace dpnb::daemon
