// Feature negotiation: the backend's feature keys, and the validating readers of what the
// frontend and the toolstack wrote (see features.hpp for the rules, docs/xenbus.md for the
// key tables). Keys are read in a fixed order and the first problem is returned.
#include "dpnb/netif/features.hpp"

#include <limits>
#include <utility>

namespace dpnb::netif {

namespace {

using RawValue = std::optional<std::string>;

Result<RawValue> read_raw(const KeyReader& read, const std::string& key) {
    if (!read) return make_error(Errc::internal, "no key reader");
    auto value = read(key);
    if (!value) {
        Error e = std::move(value).error();
        e.message = "reading " + key + ": " + e.message;
        return e;
    }
    return value;
}

Error missing(const std::string& key, std::string_view detail = {}) {
    std::string msg = key + " is missing";
    if (!detail.empty()) {
        msg += " (";
        msg += detail;
        msg += ")";
    }
    return make_error(Errc::protocol, std::move(msg));
}

Error not_offered(const std::string& key, std::string_view value, std::string_view offer) {
    return make_error(Errc::unsupported, key + " = " + quote(value) + " asks for something " +
                                             "this backend did not offer (" + std::string(offer) +
                                             ")");
}

// Parses a present value with `parse(text, key)`; nullopt when the key is absent.
template <class T, class Parse>
Result<std::optional<T>> read_optional(const KeyReader& read, const std::string& key,
                                       Parse&& parse) {
    auto raw = read_raw(read, key);
    if (!raw) return std::move(raw).error();
    if (!raw->has_value()) return std::optional<T>{};
    Result<T> value = parse(std::string_view(**raw), std::string_view(key));
    if (!value) return std::move(value).error();
    return std::optional<T>{std::move(*value)};
}

template <class T, class Parse>
Result<T> read_required(const KeyReader& read, const std::string& key, Parse&& parse) {
    auto value = read_optional<T>(read, key, std::forward<Parse>(parse));
    if (!value) return std::move(value).error();
    if (!value->has_value()) return missing(key);
    return std::move(**value);
}

Result<bool> read_flag(const KeyReader& read, const std::string& key, bool absent) {
    auto value = read_optional<bool>(read, key, parse_bool);
    if (!value) return std::move(value).error();
    return value->value_or(absent);
}

std::string joined(std::string_view prefix, std::string_view name) {
    std::string out(prefix);
    out.append(name);
    return out;
}

// One queue's rings and event channels under `prefix` ("" or "queue-N/").
Result<QueueConfig> read_queue(const KeyReader& read, const std::string& prefix,
                               const BackendCapabilities& offered) {
    QueueConfig q;
    const std::string tx_ref_key = joined(prefix, key::kTxRingRef);
    const std::string rx_ref_key = joined(prefix, key::kRxRingRef);
    const std::string single_key = joined(prefix, key::kEventChannel);
    const std::string tx_key = joined(prefix, key::kEventChannelTx);
    const std::string rx_key = joined(prefix, key::kEventChannelRx);

    auto tx_ref = read_required<GrantRef>(read, tx_ref_key, parse_grant_ref);
    if (!tx_ref) return std::move(tx_ref).error();
    auto rx_ref = read_required<GrantRef>(read, rx_ref_key, parse_grant_ref);
    if (!rx_ref) return std::move(rx_ref).error();
    q.tx_ring_ref = *tx_ref;
    q.rx_ring_ref = *rx_ref;

    auto single = read_raw(read, single_key);
    if (!single) return std::move(single).error();
    auto tx = read_raw(read, tx_key);
    if (!tx) return std::move(tx).error();
    auto rx = read_raw(read, rx_key);
    if (!rx) return std::move(rx).error();

    const bool has_single = single->has_value();
    const bool has_tx = tx->has_value();
    const bool has_rx = rx->has_value();
    if (has_single && (has_tx || has_rx))
        return make_error(Errc::protocol, single_key + " and " + (has_tx ? tx_key : rx_key) +
                                              " are both set: a queue has either one shared "
                                              "event channel or split ones, not both");
    if (has_tx != has_rx)
        return make_error(Errc::protocol, (has_tx ? tx_key : rx_key) + " is set without " +
                                              (has_tx ? rx_key : tx_key));
    if (has_tx) {
        if (!offered.split_event_channels)
            return not_offered(tx_key, **tx, "feature-split-event-channels = 0");
        auto tx_port = parse_evtchn_port(**tx, tx_key);
        if (!tx_port) return std::move(tx_port).error();
        auto rx_port = parse_evtchn_port(**rx, rx_key);
        if (!rx_port) return std::move(rx_port).error();
        if (*tx_port == *rx_port)
            return make_error(Errc::protocol, tx_key + " and " + rx_key + " are both port " +
                                                  std::to_string(*tx_port) +
                                                  ": split event channels are two channels");
        q.tx_evtchn = *tx_port;
        q.rx_evtchn = *rx_port;
        q.split_event_channels = true;
        return q;
    }
    if (!has_single) return missing(single_key, "or " + tx_key + " and " + rx_key);
    auto port = parse_evtchn_port(**single, single_key);
    if (!port) return std::move(port).error();
    q.tx_evtchn = *port;
    q.rx_evtchn = *port;
    return q;
}

std::string queue_prefix(unsigned num_queues, unsigned index) {
    return num_queues == 1 ? std::string() : queue_name(index) + "/";
}

// Two queues on one ring page, or two users of one port, can only be a broken or hostile
// frontend (binding a port twice fails in Xen anyway): refuse before mapping anything.
Status check_distinct(const FrontendConfig& cfg) {
    struct Use {
        std::uint32_t value;
        std::string key;
    };
    std::vector<Use> grefs;
    std::vector<Use> ports;
    const auto n = static_cast<unsigned>(cfg.queues.size());
    for (unsigned i = 0; i < n; ++i) {
        const QueueConfig& q = cfg.queues[i];
        const std::string prefix = queue_prefix(n, i);
        grefs.push_back({q.tx_ring_ref, joined(prefix, key::kTxRingRef)});
        grefs.push_back({q.rx_ring_ref, joined(prefix, key::kRxRingRef)});
        if (q.split_event_channels) {
            ports.push_back({q.tx_evtchn, joined(prefix, key::kEventChannelTx)});
            ports.push_back({q.rx_evtchn, joined(prefix, key::kEventChannelRx)});
        } else {
            ports.push_back({q.tx_evtchn, joined(prefix, key::kEventChannel)});
        }
    }
    if (cfg.ctrl_ring) {
        grefs.push_back({cfg.ctrl_ring->ring_ref, std::string(key::kCtrlRingRef)});
        ports.push_back({cfg.ctrl_ring->evtchn, std::string(key::kEventChannelCtrl)});
    }
    auto check = [](const std::vector<Use>& uses, std::string_view what) -> Status {
        for (std::size_t i = 0; i < uses.size(); ++i)
            for (std::size_t j = 0; j < i; ++j)
                if (uses[i].value == uses[j].value)
                    return make_error(Errc::protocol, uses[i].key + ": " + std::string(what) + " " +
                                                          std::to_string(uses[i].value) +
                                                          " is also " + uses[j].key);
        return ok();
    };
    if (auto st = check(grefs, "grant reference"); !st) return st;
    return check(ports, "event channel");
}

} // namespace

Status validate(const BackendCapabilities& caps) {
    if (caps.max_queues < 1 || caps.max_queues > kMaxQueuesLimit)
        return make_error(Errc::invalid_argument, "max_queues " + std::to_string(caps.max_queues) +
                                                      " is out of range (1.." +
                                                      std::to_string(kMaxQueuesLimit) + ")");
    if (caps.dynamic_multicast_control && !caps.multicast_control)
        return make_error(Errc::invalid_argument,
                          "dynamic multicast control needs multicast control");
    if (caps.static_grants && !caps.ctrl_ring)
        return make_error(Errc::invalid_argument,
                          "static grants need the control ring (feature-ctrl-ring)");
    return ok();
}

Result<std::vector<XsEntry>> backend_feature_entries(const BackendCapabilities& caps) {
    if (auto st = validate(caps); !st) return std::move(st).error();
    auto flag = [](std::string_view k, bool v) { return XsEntry{std::string(k), format_bool(v)}; };
    return std::vector<XsEntry>{
        flag(key::kFeatureSg, caps.sg),
        flag(key::kFeatureGsoTcpv4, caps.gso_tcpv4),
        flag(key::kFeatureGsoTcpv6, caps.gso_tcpv6),
        flag(key::kFeatureIpv6CsumOffload, caps.ipv6_csum_offload),
        flag(key::kFeatureRxCopy, true),
        flag(key::kFeatureXdpHeadroom, caps.xdp_headroom),
        flag(key::kFeatureRxFlip, false),
        flag(key::kFeatureMulticastControl, caps.multicast_control),
        flag(key::kFeatureDynamicMulticastControl, caps.dynamic_multicast_control),
        flag(key::kFeatureSplitEventChannels, caps.split_event_channels),
        XsEntry{std::string(key::kMultiQueueMaxQueues), format_unsigned(caps.max_queues)},
        flag(key::kFeatureCtrlRing, caps.ctrl_ring),
        flag(key::kFeatureStaticGrants, caps.static_grants),
        flag(key::kFeatureRxBufferOffset, caps.rx_buffer_offset),
    };
}

KeyReader map_reader(std::map<std::string, std::string, std::less<>> keys) {
    return [keys = std::move(keys)](std::string_view k) -> Result<std::optional<std::string>> {
        auto it = keys.find(k);
        if (it == keys.end()) return std::optional<std::string>{};
        return std::optional<std::string>{it->second};
    };
}

Result<bool> read_multicast_control(const KeyReader& frontend, const BackendCapabilities& offered) {
    const std::string k(key::kRequestMulticastControl);
    auto value = read_flag(frontend, k, false);
    if (!value) return value;
    if (*value && !offered.multicast_control)
        return not_offered(k, "1", "feature-multicast-control = 0");
    return value;
}

Result<std::uint16_t> read_xdp_headroom(const KeyReader& frontend,
                                        const BackendCapabilities& offered) {
    const std::string k(key::kXdpHeadroom);
    auto value =
        read_optional<std::uint64_t>(frontend, k, [](std::string_view text, std::string_view what) {
            return parse_unsigned(text, 0, kMaxXdpHeadroom, what);
        });
    if (!value) return std::move(value).error();
    const auto headroom = static_cast<std::uint16_t>(value->value_or(0));
    if (headroom != 0 && !offered.xdp_headroom)
        return not_offered(k, std::to_string(headroom), "feature-xdp-headroom = 0");
    return headroom;
}

Result<FrontendConfig> parse_frontend_config(const KeyReader& frontend,
                                             const BackendCapabilities& offered) {
    if (auto st = validate(offered); !st) return std::move(st).error();
    FrontendConfig cfg;

    // Queues. Absent: one queue (a frontend that does not know multi-queue).
    const unsigned max_queues = offered.max_queues;
    auto requested =
        read_optional<std::uint64_t>(frontend, std::string(key::kMultiQueueNumQueues),
                                     [max_queues](std::string_view text, std::string_view what) {
                                         return parse_unsigned(text, 1, max_queues, what);
                                     });
    if (!requested) return std::move(requested).error();
    const auto num_queues = static_cast<unsigned>(requested->value_or(1));

    if (num_queues > 1) {
        // netif.h: frontends requesting two or more queues must not write the top-level keys.
        for (std::string_view k : {key::kTxRingRef, key::kRxRingRef, key::kEventChannel,
                                   key::kEventChannelTx, key::kEventChannelRx}) {
            auto raw = read_raw(frontend, std::string(k));
            if (!raw) return std::move(raw).error();
            if (raw->has_value())
                return make_error(Errc::protocol,
                                  std::string(k) + " = " + quote(**raw) +
                                      " is set at top level although " +
                                      std::string(key::kMultiQueueNumQueues) + " is " +
                                      std::to_string(num_queues) +
                                      ": with several queues, ring keys live under queue-N/");
        }
    }
    cfg.queues.reserve(num_queues);
    for (unsigned i = 0; i < num_queues; ++i) {
        auto q = read_queue(frontend, queue_prefix(num_queues, i), offered);
        if (!q) return std::move(q).error();
        cfg.queues.push_back(*q);
    }

    // dpnetback never flips pages: the frontend must ask for copies (or, with zero-copy RX,
    // for data written into its own granted buffers, which is the same contract).
    {
        const std::string k(key::kRequestRxCopy);
        auto raw = read_raw(frontend, k);
        if (!raw) return std::move(raw).error();
        if (!raw->has_value())
            return make_error(Errc::unsupported,
                              k + " is missing: the frontend expects page flipping "
                                  "(feature-rx-flip = 0), which dpnetback does not do");
        auto rx_copy = parse_bool(**raw, k);
        if (!rx_copy) return std::move(rx_copy).error();
        if (!*rx_copy)
            return make_error(Errc::unsupported,
                              k + " = \"0\": the frontend asks for page flipping "
                                  "(feature-rx-flip = 0), which dpnetback does not do");
    }

    struct Flag {
        std::string_view key;
        bool FrontendConfig::*field;
    };
    for (const Flag& f : {Flag{key::kFeatureRxNotify, &FrontendConfig::rx_notify},
                          Flag{key::kFeatureSg, &FrontendConfig::sg},
                          Flag{key::kFeatureGsoTcpv4, &FrontendConfig::gso_tcpv4},
                          Flag{key::kFeatureGsoTcpv6, &FrontendConfig::gso_tcpv6},
                          Flag{key::kFeatureIpv6CsumOffload, &FrontendConfig::ipv6_csum_offload}}) {
        auto value = read_flag(frontend, std::string(f.key), false);
        if (!value) return std::move(value).error();
        cfg.*f.field = *value;
    }
    {
        auto no_csum = read_flag(frontend, std::string(key::kFeatureNoCsumOffload), false);
        if (!no_csum) return std::move(no_csum).error();
        cfg.csum_offload = !*no_csum;
    }
    {
        auto mcast = read_multicast_control(frontend, offered);
        if (!mcast) return std::move(mcast).error();
        cfg.multicast_control = *mcast;
    }
    {
        auto mtu = read_optional<std::uint64_t>(
            frontend, std::string(key::kMtu), [](std::string_view text, std::string_view what) {
                return parse_unsigned(text, kMinMtu, kMaxMtu, what);
            });
        if (!mtu) return std::move(mtu).error();
        if (mtu->has_value()) cfg.mtu = static_cast<std::uint32_t>(**mtu);
    }
    {
        auto headroom = read_xdp_headroom(frontend, offered);
        if (!headroom) return std::move(headroom).error();
        cfg.xdp_headroom = *headroom;
    }
    {
        const std::string ref_key(key::kCtrlRingRef);
        const std::string port_key(key::kEventChannelCtrl);
        auto ref = read_raw(frontend, ref_key);
        if (!ref) return std::move(ref).error();
        auto port = read_raw(frontend, port_key);
        if (!port) return std::move(port).error();
        if (ref->has_value() != port->has_value())
            return make_error(Errc::protocol, (ref->has_value() ? ref_key : port_key) +
                                                  " is set without " +
                                                  (ref->has_value() ? port_key : ref_key));
        if (ref->has_value()) {
            if (!offered.ctrl_ring) return not_offered(ref_key, **ref, "feature-ctrl-ring = 0");
            auto gref = parse_grant_ref(**ref, ref_key);
            if (!gref) return std::move(gref).error();
            auto evtchn = parse_evtchn_port(**port, port_key);
            if (!evtchn) return std::move(evtchn).error();
            cfg.ctrl_ring = CtrlRingConfig{*gref, *evtchn};
        }
    }
    {
        const std::string k(key::kFeatureStaticGrants);
        auto wanted = read_flag(frontend, k, false);
        if (!wanted) return std::move(wanted).error();
        if (*wanted && !offered.static_grants)
            return not_offered(k, "1", "feature-static-grants = 0");
        if (*wanted && !cfg.ctrl_ring)
            return make_error(Errc::protocol, k + " = \"1\" needs a control ring (" +
                                                  std::string(key::kCtrlRingRef) + ", " +
                                                  std::string(key::kEventChannelCtrl) + ")");
        cfg.static_grants = *wanted;
    }
    {
        const std::string k(key::kFeatureRxBufferOffset);
        const std::string size_key(key::kRxBufferSize);
        auto wanted = read_flag(frontend, k, false);
        if (!wanted) return std::move(wanted).error();
        if (*wanted && !offered.rx_buffer_offset)
            return not_offered(k, "1", "feature-rx-buffer-offset = 0");
        auto size = read_optional<std::uint64_t>(
            frontend, size_key, [](std::string_view text, std::string_view what) {
                return parse_unsigned(text, kMinRxBufferSize, kPageSize, what);
            });
        if (!size) return std::move(size).error();
        if (*wanted) {
            if (!size->has_value())
                return make_error(Errc::protocol, k + " = \"1\" needs " + size_key);
            cfg.rx_buffer_offset = true;
            cfg.rx_buffer_size = static_cast<std::uint16_t>(**size);
            // The XDP headroom is taken from each buffer: some room must be left.
            if (cfg.xdp_headroom >= cfg.rx_buffer_size)
                return make_error(Errc::protocol, std::string(key::kXdpHeadroom) + " " +
                                                      std::to_string(cfg.xdp_headroom) +
                                                      " leaves no room in " + size_key + " " +
                                                      std::to_string(cfg.rx_buffer_size));
        }
    }

    if (auto st = check_distinct(cfg); !st) return std::move(st).error();
    return cfg;
}

Result<ToolstackConfig> parse_toolstack_config(const KeyReader& backend, const BackendPath& self) {
    ToolstackConfig cfg;
    auto path = read_required<FrontendPath>(
        backend, std::string(key::kFrontend),
        [](std::string_view text, std::string_view) { return parse_frontend_path(text); });
    if (!path) return std::move(path).error();
    auto id = read_required<DomId>(backend, std::string(key::kFrontendId), parse_domid);
    if (!id) return std::move(id).error();
    auto handle =
        read_required<std::uint32_t>(backend, std::string(key::kHandle), parse_vif_handle);
    if (!handle) return std::move(handle).error();
    if (*id != self.frontend || *handle != self.handle || path->domid != *id ||
        path->handle != *handle)
        return make_error(Errc::protocol,
                          "frontend " + format_frontend_path(*path) + ", frontend-id " +
                              std::to_string(*id) + " and handle " + std::to_string(*handle) +
                              " do not all name the vif of " + format_backend_path(self));
    cfg.frontend = *path;
    cfg.frontend_id = *id;
    cfg.handle = *handle;

    auto mac = read_required<MacAddress>(backend, std::string(key::kMac), parse_vif_mac);
    if (!mac) return std::move(mac).error();
    cfg.mac = *mac;

    auto online = read_flag(backend, std::string(key::kOnline), false);
    if (!online) return std::move(online).error();
    cfg.online = *online;

    auto rate = read_optional<RateLimit>(backend, std::string(key::kRate), parse_rate);
    if (!rate) return std::move(rate).error();
    cfg.rate = *rate;

    auto ip =
        read_optional<std::vector<Ipv4Address>>(backend, std::string(key::kIp), parse_ipv4_list);
    if (!ip) return std::move(ip).error();
    if (ip->has_value()) cfg.ip = std::move(**ip);
    return cfg;
}

Result<HotplugStatus> parse_hotplug_status(const std::optional<std::string>& value) {
    // Toolstacks write "" when they create the vif and leave it to the hotplug script
    // (libxl's device add, libxenlight clones): the script has not run yet.
    if (!value.has_value() || value->empty()) return HotplugStatus::pending;
    if (*value == "connected") return HotplugStatus::connected;
    if (*value == "error") return HotplugStatus::failed;
    return make_error(Errc::invalid_argument, std::string(key::kHotplugStatus) + ": " +
                                                  quote(*value) +
                                                  " is not \"connected\" or \"error\"");
}

} // namespace dpnb::netif
