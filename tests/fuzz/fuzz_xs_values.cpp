// libFuzzer target over everything a guest or toolstack can write into xenstore for a vif:
// every value parser, the frontend and toolstack config readers, and the xenbus state
// machine. Input format (tests/fuzz/gen_xs_values_seeds.py writes the seeds):
//
//   byte 0   offered features: sg, gso-v4, gso-v6, ipv6-csum, multicast, split, ctrl, xdp
//   byte 1   bits 0-2: max queues - 1; bit 3: static grants (with ctrl); bit 4: dynamic
//            multicast (with multicast); bit 5: the reader fails on read number byte 2
//   byte 2   which read fails (when bit 5 of byte 1 is set)
//   rest     lines "key=value" (the frontend/backend folder; a line without '=' is a key
//            with an empty value); every key and value also goes through every parser
//
// The whole input, byte by byte, is also a sequence of state-machine inputs.
// Invariants are checked with check(): a violation prints and traps.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/netif/features.hpp"
#include "dpnb/netif/xenbus_state.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace nf = dpnb::netif;

namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "invariant violated: %s\n", what);
        __builtin_trap();
    }
}

// An error names what was wrong, and a hostile value cannot blow the message up.
template <class T>
void check_error(const dpnb::Result<T>& r) {
    if (!r) {
        check(!r.error().message.empty(), "error without a message");
        check(r.error().message.size() < 2048, "error message not bounded");
    }
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

void fuzz_scalars(std::string_view v) {
    check(nf::quote(v).size() <= 4 * nf::kQuoteLimit + 32, "quote not truncated");

    for (auto [min, max] :
         {std::pair<std::uint64_t, std::uint64_t>{0, UINT64_MAX}, {1, 8}, {68, 65535}}) {
        auto u = nf::parse_unsigned(v, min, max, "k");
        check_error(u);
        if (u) {
            check(*u >= min && *u <= max, "unsigned out of range");
            check(nf::format_unsigned(*u) == v, "unsigned does not round-trip");
        }
    }
    auto b = nf::parse_bool(v, "k");
    check_error(b);
    if (b) check(nf::format_bool(*b) == v, "bool does not round-trip");
    auto g = nf::parse_grant_ref(v, "k");
    check_error(g);
    if (g) check(*g != nf::kGrantRefInvalid && nf::format_unsigned(*g) == v, "grant ref");
    auto p = nf::parse_evtchn_port(v, "k");
    check_error(p);
    if (p) check(*p >= 1 && *p <= nf::kMaxEvtchnPort && nf::format_unsigned(*p) == v, "port");
    auto s = nf::parse_xenbus_state(v, "k");
    check_error(s);
    if (s) check(nf::format_xenbus_state(*s) == v, "state does not round-trip");
    auto d = nf::parse_domid(v, "k");
    check_error(d);
    if (d) check(*d < nf::kDomIdFirstReserved, "domid reserved");
    auto h = nf::parse_vif_handle(v, "k");
    check_error(h);
    if (h) check(*h <= nf::kMaxVifHandle, "handle out of range");

    auto mac = nf::parse_mac(v, "k");
    check_error(mac);
    if (mac) check(nf::format_mac(*mac) == lower(v), "mac does not round-trip");
    auto vmac = nf::parse_vif_mac(v, "k");
    check_error(vmac);
    if (vmac) check(mac && !vmac->is_multicast() && !vmac->is_zero(), "vif mac");

    auto ip = nf::parse_ipv4(v, "k");
    check_error(ip);
    if (ip) check(nf::format_ipv4(*ip) == v, "ipv4 does not round-trip");
    auto ips = nf::parse_ipv4_list(v, "k");
    check_error(ips);
    if (ips) check(!ips->empty() && ips->size() <= v.size() / 7 + 1, "ipv4 list");
    auto rate = nf::parse_rate(v, "k");
    check_error(rate);
    if (rate) check(std::to_string(rate->bytes) + "," + std::to_string(rate->usec) == v, "rate");

    auto q = nf::parse_queue_name(v);
    check_error(q);
    if (q) check(*q < nf::kMaxQueuesLimit && nf::queue_name(*q) == v, "queue name");
    auto fp = nf::parse_frontend_path(v);
    check_error(fp);
    if (fp) check(nf::format_frontend_path(*fp) == v, "frontend path does not round-trip");
    auto bp = nf::parse_backend_path(v);
    check_error(bp);
    if (bp) check(nf::format_backend_path(*bp) == v, "backend path does not round-trip");
    auto node = nf::parse_backend_node(v);
    check_error(node);
    if (node) {
        std::string again = nf::format_backend_path(node->vif);
        if (!node->key.empty()) again += "/" + std::string(node->key);
        check(again == v, "backend node does not round-trip");
        check(node->key.empty() || (node->key.front() != '/' && node->key.back() != '/'),
              "backend node key");
    }
    auto hs = nf::parse_hotplug_status(std::string(v));
    check_error(hs);
}

void check_config(const nf::FrontendConfig& cfg, const nf::BackendCapabilities& caps) {
    check(!cfg.queues.empty() && cfg.queues.size() <= caps.max_queues, "queue count");
    std::set<std::uint32_t> grefs;
    std::set<std::uint32_t> ports;
    for (const nf::QueueConfig& q : cfg.queues) {
        check(q.tx_ring_ref != nf::kGrantRefInvalid && q.rx_ring_ref != nf::kGrantRefInvalid,
              "invalid ring ref accepted");
        check(grefs.insert(q.tx_ring_ref).second && grefs.insert(q.rx_ring_ref).second,
              "ring ref reused");
        check(q.tx_evtchn >= 1 && q.tx_evtchn <= nf::kMaxEvtchnPort, "tx port range");
        check(q.rx_evtchn >= 1 && q.rx_evtchn <= nf::kMaxEvtchnPort, "rx port range");
        if (q.split_event_channels) {
            check(caps.split_event_channels, "split channels not offered");
            check(q.tx_evtchn != q.rx_evtchn, "split channels equal");
            check(ports.insert(q.tx_evtchn).second && ports.insert(q.rx_evtchn).second,
                  "port reused");
        } else {
            check(q.tx_evtchn == q.rx_evtchn, "shared channel differs");
            check(ports.insert(q.tx_evtchn).second, "port reused");
        }
    }
    if (cfg.mtu) check(*cfg.mtu >= nf::kMinMtu && *cfg.mtu <= nf::kMaxMtu, "mtu range");
    check(cfg.xdp_headroom <= nf::kMaxXdpHeadroom, "xdp headroom range");
    check(cfg.xdp_headroom == 0 || caps.xdp_headroom, "xdp headroom not offered");
    check(!cfg.multicast_control || caps.multicast_control, "multicast not offered");
    if (cfg.ctrl_ring) {
        check(caps.ctrl_ring, "ctrl ring not offered");
        check(grefs.insert(cfg.ctrl_ring->ring_ref).second, "ctrl ring ref reused");
        check(ports.insert(cfg.ctrl_ring->evtchn).second, "ctrl port reused");
    }
    check(!cfg.static_grants || (caps.static_grants && cfg.ctrl_ring), "static grants");
    if (cfg.rx_buffer_offset) {
        check(caps.rx_buffer_offset, "rx buffer offsets not offered");
        check(cfg.rx_buffer_size >= nf::kMinRxBufferSize && cfg.rx_buffer_size <= nf::kPageSize,
              "rx buffer size range");
        check(cfg.xdp_headroom < cfg.rx_buffer_size, "headroom fills the rx buffer");
    } else {
        check(cfg.rx_buffer_size == nf::kPageSize, "whole pages without rx buffer offsets");
    }
}

void fuzz_configs(const std::map<std::string, std::string, std::less<>>& keys,
                  const nf::BackendCapabilities& caps, bool inject_fault, unsigned fault_at) {
    unsigned reads = 0;
    bool faulted = false;
    auto inner = nf::map_reader(keys);
    nf::KeyReader reader = [&](std::string_view k) -> dpnb::Result<std::optional<std::string>> {
        if (inject_fault && reads++ == fault_at) {
            faulted = true;
            return dpnb::make_error(dpnb::Errc::io, "injected");
        }
        return inner(k);
    };

    auto cfg = nf::parse_frontend_config(reader, caps);
    check_error(cfg);
    if (cfg) {
        check(!faulted, "a failed read did not stop the parse");
        check_config(*cfg, caps);
    } else if (faulted) {
        check(cfg.error().code == dpnb::Errc::io, "a failed read gave another error");
    }
    // A function of the reader's answers: the same answers give the same result.
    reads = 0;
    faulted = false;
    auto again = nf::parse_frontend_config(reader, caps);
    check(cfg.has_value() == again.has_value(), "frontend parse not deterministic");
    if (cfg)
        check(*cfg == *again, "frontend parse not deterministic");
    else
        check(cfg.error().message == again.error().message, "error not deterministic");

    auto mcast = nf::read_multicast_control(inner, caps);
    check_error(mcast);
    auto xdp = nf::read_xdp_headroom(inner, caps);
    check_error(xdp);
    if (xdp) check(*xdp <= nf::kMaxXdpHeadroom, "xdp headroom range");

    const nf::BackendPath self{0, 1, 0};
    auto ts = nf::parse_toolstack_config(inner, self);
    check_error(ts);
    if (ts) {
        check(ts->frontend_id == self.frontend && ts->handle == self.handle, "toolstack ids");
        check(ts->frontend == (nf::FrontendPath{self.frontend, self.handle}), "toolstack path");
        check(!ts->mac.is_multicast() && !ts->mac.is_zero(), "toolstack mac");
    }
}

enum class DataPath { down, pending, up };

DataPath data_path(nf::Phase p) {
    switch (p) {
    case nf::Phase::connecting:
        return DataPath::pending;
    case nf::Phase::hotplug_wait:
    case nf::Phase::connected:
    case nf::Phase::reconfigured:
        return DataPath::up;
    default:
        return DataPath::down;
    }
}

void fuzz_machine(const std::uint8_t* data, std::size_t size) {
    nf::VifStateMachine m;
    DataPath dp = DataPath::down;
    bool forgotten = false;
    for (std::size_t i = 0; i < size; ++i) {
        const auto in = static_cast<nf::Input>(data[i] % nf::kInputCount);
        const nf::Phase before = m.phase();
        const nf::Step s = m.on(in);
        check(s.from == before && s.to == m.phase(), "step phases");
        check(s.rule != nullptr, "step without rule");
        check(!forgotten || s.effects.empty(), "effects after forget");
        for (const nf::Effect& e : s.effects) {
            switch (e.action) {
            case nf::Action::connect_data_path:
                check(dp == DataPath::down, "connect while connected");
                dp = DataPath::pending;
                break;
            case nf::Action::disconnect_data_path:
                check(dp != DataPath::down, "disconnect while down");
                dp = DataPath::down;
                break;
            case nf::Action::forget:
                check(!forgotten, "forgot twice");
                forgotten = true;
                break;
            case nf::Action::publish_features:
                check(before == nf::Phase::unprobed, "features published twice");
                break;
            default:
                break;
            }
        }
        if (before == nf::Phase::connecting && in == nf::Input::connect_ok &&
            dp == DataPath::pending)
            dp = DataPath::up;
        if (before == nf::Phase::connecting && in == nf::Input::connect_failed) dp = DataPath::down;
        if (m.phase() == nf::Phase::gone)
            check(forgotten && dp == DataPath::down, "gone but not forgotten");
        else
            check(dp == data_path(m.phase()), "data path out of step with the phase");
        if (!s.writes().empty() && m.phase() != nf::Phase::gone)
            check(m.written() == nf::published_state(m.phase()), "published state");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_machine(data, size);
    if (size < 3) return 0;

    nf::BackendCapabilities caps;
    const std::uint8_t f = data[0];
    caps.sg = (f & 0x01) != 0;
    caps.gso_tcpv4 = (f & 0x02) != 0;
    caps.gso_tcpv6 = (f & 0x04) != 0;
    caps.ipv6_csum_offload = (f & 0x08) != 0;
    caps.multicast_control = (f & 0x10) != 0;
    caps.split_event_channels = (f & 0x20) != 0;
    caps.ctrl_ring = (f & 0x40) != 0;
    caps.xdp_headroom = (f & 0x80) != 0;
    caps.max_queues = (data[1] & 0x07) + 1U;
    caps.static_grants = caps.ctrl_ring && (data[1] & 0x08) != 0;
    caps.dynamic_multicast_control = caps.multicast_control && (data[1] & 0x10) != 0;
    caps.rx_buffer_offset = (data[1] & 0x40) != 0;
    const bool inject_fault = (data[1] & 0x20) != 0;
    const unsigned fault_at = data[2];
    check(static_cast<bool>(nf::validate(caps)), "fuzzer built invalid capabilities");
    auto entries = nf::backend_feature_entries(caps);
    check(entries && entries->size() == 14, "backend feature entries");

    std::map<std::string, std::string, std::less<>> keys;
    std::string_view rest(reinterpret_cast<const char*>(data + 3), size - 3);
    while (!rest.empty() && keys.size() < 128) {
        std::size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        std::size_t eq = line.find('=');
        std::string_view k = line.substr(0, eq);
        std::string_view v =
            eq == std::string_view::npos ? std::string_view() : line.substr(eq + 1);
        fuzz_scalars(k);
        fuzz_scalars(v);
        keys.insert_or_assign(std::string(k), std::string(v));
    }
    fuzz_configs(keys, caps, inject_fault, fault_at);
    return 0;
}
