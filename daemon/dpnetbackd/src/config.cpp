// The configuration loader: TOML (toml++) -> Config, with every key checked against one
// table (kKeys), every value against its type and range, and every problem reported with
// file:line:column. See config/README.md for the keys.
//
// toml++ reports syntax errors with exceptions; they are caught here and turned into a
// Result, so that nothing above this file sees one.
#include "dpnb/daemon/config.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "dpnb/netif/features.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace dpnb::daemon {

namespace {

constexpr KeyInfo kKeys[] = {
    {"hypervisor.kind", Reload::restart},
    {"hypervisor.self", Reload::restart},
    {"hypervisor.sim.dir", Reload::restart},
    {"hypervisor.sim.embedded", Reload::restart},
    {"hypervisor.xen.xenstore_path", Reload::restart},
    {"hypervisor.xen.max_grants_per_handle", Reload::restart},
    {"hypervisor.xen.persistent_max_entries", Reload::restart},
    {"hypervisor.xen.persistent_ref_limit", Reload::restart},
    {"hypervisor.xen.persistent_close_timeout_ms", Reload::restart},

    {"log.level", Reload::live},
    {"log.target", Reload::restart},
    {"log.control", Reload::live},
    {"log.data", Reload::live},
    {"log.mgmt", Reload::live},
    {"log.hv", Reload::live},
    {"log.dpdk", Reload::live},

    {"eal.main_lcore", Reload::restart},
    {"eal.worker_lcores", Reload::restart},
    {"eal.lcore_map", Reload::restart},
    {"eal.no_huge", Reload::restart},
    {"eal.memory_mb", Reload::restart},
    {"eal.file_prefix", Reload::restart},
    {"eal.no_pci", Reload::restart},
    {"eal.pci_allow", Reload::restart},
    {"eal.vdevs", Reload::restart},
    {"eal.telemetry", Reload::restart},
    {"eal.extra_args", Reload::restart},

    {"engine.burst", Reload::restart},
    {"engine.zc_depth", Reload::restart},
    {"engine.map_batch", Reload::restart},
    {"engine.reuse_miss", Reload::restart},
    {"engine.tx_copy_len", Reload::restart},
    {"engine.tx_copy_slot_max", Reload::restart},
    {"engine.anti_spoofing", Reload::restart},
    {"engine.ip_anti_spoofing", Reload::restart},
    {"engine.fatal_bad_grants", Reload::restart},
    {"engine.tx_max_slots", Reload::restart},
    {"engine.tx_fatal_slots", Reload::restart},
    {"engine.tx_max_packet_len", Reload::restart},
    {"engine.tx_max_frame_len", Reload::restart},
    {"engine.rx_mbufs_per_port", Reload::restart},
    {"engine.tx_mbufs_per_lcore", Reload::restart},
    {"engine.idle_polls", Reload::restart},
    {"engine.max_sleep_ms", Reload::restart},
    {"engine.poll_sleep_us", Reload::restart},
    {"engine.command_timeout_ms", Reload::restart},
    {"engine.drain_timeout_ms", Reload::restart},
    {"engine.rx_stall_timeout_ms", Reload::restart},
    {"engine.place_interrupts", Reload::restart},
    {"engine.place_vhost_workers", Reload::restart},

    {"port.*.device", Reload::restart},
    {"port.*.group", Reload::restart},
    {"port.*.steering", Reload::restart},
    {"port.*.rx_queues", Reload::restart},
    {"port.*.rx_desc", Reload::restart},
    {"port.*.tx_desc", Reload::restart},
    {"port.*.mtu", Reload::restart},
    {"port.*.mac", Reload::restart},
    {"port.*.promiscuous", Reload::restart},
    {"port.*.zero_copy", Reload::restart},
    {"port.*.rx_checksum", Reload::restart},
    {"port.*.tx_checksum", Reload::restart},
    {"port.*.tso", Reload::restart},
    {"port.*.lro", Reload::restart},
    {"port.*.rx_interrupts", Reload::restart},
    {"port.*.local_delivery", Reload::restart},
    {"port.*.vf_of", Reload::restart},
    {"port.*.vf_index", Reload::restart},

    {"features.sg", Reload::restart},
    {"features.gso_tcpv4", Reload::restart},
    {"features.gso_tcpv6", Reload::restart},
    {"features.ipv6_csum_offload", Reload::restart},
    {"features.multicast_control", Reload::restart},
    {"features.dynamic_multicast_control", Reload::restart},
    {"features.split_event_channels", Reload::restart},
    {"features.max_queues", Reload::restart},
    {"features.ctrl_ring", Reload::restart},
    {"features.xdp_headroom", Reload::restart},
    {"features.static_grants", Reload::restart},
    {"features.rx_buffer_offset", Reload::restart},

    {"vifs.serve", Reload::restart},
    {"vifs.hotplug_wait", Reload::restart},
    {"vifs.default_rx_mode", Reload::restart},
    {"vifs.default_port", Reload::restart},
    {"vifs.error_log_burst", Reload::restart},
    {"vifs.error_log_interval_ms", Reload::restart},
    {"vifs.rule.*.domain_name", Reload::restart},
    {"vifs.rule.*.domid", Reload::restart},
    {"vifs.rule.*.handle", Reload::restart},
    {"vifs.rule.*.mac", Reload::restart},
    {"vifs.rule.*.rx_mode", Reload::restart},
    {"vifs.rule.*.port", Reload::restart},
    {"vifs.rule.*.rx_queue", Reload::restart},

    {"management.socket", Reload::restart},
    {"management.group", Reload::live},
    {"management.timeout_ms", Reload::live},
    {"management.max_clients", Reload::live},

    {"metrics.enabled", Reload::live},
    {"metrics.address", Reload::live},
    {"metrics.port", Reload::live},
    {"metrics.timeout_ms", Reload::live},
    {"metrics.max_clients", Reload::live},

    {"shutdown.timeout_ms", Reload::live},
    {"shutdown.vifs", Reload::live},
};

constexpr std::string_view kOverridePrefix = "override:";
constexpr const char* kDefaultPortDevice = "net_tap0,iface=dpnb0";

// A name with one "*" component matches any single component there.
bool matches(std::string_view pattern, std::string_view name) {
    while (true) {
        const std::size_t pd = pattern.find('.');
        const std::size_t nd = name.find('.');
        const std::string_view p = pattern.substr(0, pd);
        const std::string_view n = name.substr(0, nd);
        if (p != "*" && p != n) return false;
        if (pd == std::string_view::npos || nd == std::string_view::npos)
            return pd == std::string_view::npos && nd == std::string_view::npos;
        pattern.remove_prefix(pd + 1);
        name.remove_prefix(nd + 1);
    }
}

const KeyInfo* find_key(std::string_view full_name) {
    for (const KeyInfo& k : kKeys)
        if (matches(k.name, full_name)) return &k;
    return nullptr;
}

// Port names and rule indexes become key-name components: keep them simple.
bool valid_name(std::string_view s) {
    if (s.empty() || s.size() > 32) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s.substr(0, 64)) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
            out += buf;
        } else {
            out += c;
        }
    }
    if (s.size() > 64) out += "...";
    return out + "\"";
}

const char* type_name(const toml::node& n) {
    switch (n.type()) {
    case toml::node_type::table:
        return "a table";
    case toml::node_type::array:
        return "an array";
    case toml::node_type::string:
        return "a string";
    case toml::node_type::integer:
        return "an integer";
    case toml::node_type::floating_point:
        return "a float";
    case toml::node_type::boolean:
        return "a boolean";
    case toml::node_type::date:
        return "a date";
    case toml::node_type::time:
        return "a time";
    case toml::node_type::date_time:
        return "a date-time";
    default:
        return "nothing";
    }
}

// Collects errors and effective values for the whole document.
class Loader {
public:
    explicit Loader(std::string path) : path_(std::move(path)) {}

    void error_at(const toml::source_region& where, std::string_view context, std::string msg) {
        std::string loc;
        const std::string_view src = where.path ? std::string_view(*where.path) : path_;
        if (src.substr(0, kOverridePrefix.size()) == kOverridePrefix) {
            loc = "command line (" + std::string(src.substr(kOverridePrefix.size())) + ")";
        } else {
            loc = std::string(src.empty() ? std::string_view("<config>") : src);
            if (where.begin.line > 0)
                loc += ":" + std::to_string(where.begin.line) + ":" +
                       std::to_string(where.begin.column);
        }
        const bool from_file = src.substr(0, kOverridePrefix.size()) != kOverridePrefix;
        errors_.push_back(
            {from_file ? where.begin.line : 0, from_file ? where.begin.column : 0,
             loc + ": " + std::string(context) + (context.empty() ? "" : ": ") + msg});
    }
    void error(std::string msg) {
        errors_.push_back({0, 0, (path_.empty() ? std::string("<config>") : path_) + ": " + msg});
    }

    // In the file's order; command-line and whole-file problems last.
    std::string message() {
        std::stable_sort(errors_.begin(), errors_.end(), [](const Problem& a, const Problem& b) {
            const auto key = [](const Problem& p) {
                return std::pair(p.line == 0 ? ~0U : p.line, p.column);
            };
            return key(a) < key(b);
        });
        std::string msg;
        for (const Problem& e : errors_)
            msg += (msg.empty() ? "" : "\n") + e.text;
        return msg;
    }
    void value(std::string name, std::string text) { values_[std::move(name)] = std::move(text); }

    const std::string& path() const { return path_; }
    struct Problem {
        unsigned line;
        unsigned column;
        std::string text;
    };
    std::vector<Problem> errors_;
    std::map<std::string, std::string> values_;

private:
    std::string path_;
};

std::string render_list(const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i)
        s += (i ? ", " : "") + quote(v[i]);
    return s + "]";
}
std::string render_list(const std::vector<unsigned>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i)
        s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
}

// One table of the document: typed getters that check and record every key, and a final
// check for keys nobody asked for.
class Section {
public:
    // `name` is the key prefix ("metrics", "port.uplink", "vifs.rule.0"); `title` is how
    // messages name the section ("[metrics]", "[[vifs.rule]] #1").
    Section(Loader& l, const toml::table* t, std::string name, std::string title)
        : l_(l), t_(t), name_(std::move(name)), title_(std::move(title)) {}

    const toml::table* table() const { return t_; }
    const std::string& name() const { return name_; }

    // Sub-tables this section has (e.g. [hypervisor.sim]); they are checked by their own
    // Section, so they count as known here.
    void subsection(std::string_view key) { seen_.insert(std::string(key)); }

    bool boolean(std::string_view key, bool& out) {
        const toml::node* n = take(key);
        if (n) {
            if (auto v = n->value_exact<bool>())
                out = *v;
            else
                bad_type(*n, key, "a boolean (true or false)");
        }
        record(key, out ? "true" : "false");
        return n != nullptr;
    }

    template <class T>
    bool integer(std::string_view key, T& out, std::int64_t min, std::int64_t max) {
        const toml::node* n = take(key);
        if (n) {
            if (auto v = n->value_exact<std::int64_t>()) {
                if (*v < min || *v > max)
                    bad_value(*n, key, range_msg(*v, min, max));
                else
                    out = static_cast<T>(*v);
            } else {
                bad_type(*n, key, "an integer");
            }
        }
        record(key, std::to_string(out));
        return n != nullptr;
    }

    template <class T>
    bool optional_integer(std::string_view key, std::optional<T>& out, std::int64_t min,
                          std::int64_t max) {
        const toml::node* n = take(key);
        if (n) {
            if (auto v = n->value_exact<std::int64_t>()) {
                if (*v < min || *v > max)
                    bad_value(*n, key, range_msg(*v, min, max));
                else
                    out = static_cast<T>(*v);
            } else {
                bad_type(*n, key, "an integer");
            }
        }
        record(key, out ? std::to_string(*out) : "");
        return n != nullptr;
    }

    bool milliseconds(std::string_view key, std::chrono::milliseconds& out, std::int64_t min,
                      std::int64_t max) {
        std::int64_t v = out.count();
        const bool present = integer(key, v, min, max);
        out = std::chrono::milliseconds(v);
        return present;
    }

    // `check` returns an error message for a bad value, or "".
    template <class Check>
    bool string(std::string_view key, std::string& out, Check check) {
        const toml::node* n = take(key);
        if (n) {
            if (auto v = n->value_exact<std::string>()) {
                std::string why = check(*v);
                if (!why.empty())
                    bad_value(*n, key, why);
                else
                    out = *v;
            } else {
                bad_type(*n, key, "a string");
            }
        }
        record(key, out);
        return n != nullptr;
    }
    bool string(std::string_view key, std::string& out) {
        return string(key, out, [](const std::string&) { return std::string(); });
    }

    // A string parsed into T by `parse` (returning Result<T>); `render` gives T's text.
    template <class T, class Parse, class Render>
    bool parsed(std::string_view key, T& out, Parse parse, Render render,
                std::string_view allowed) {
        const toml::node* n = take(key);
        if (n) {
            if (auto v = n->value_exact<std::string>()) {
                auto r = parse(*v);
                if (r)
                    out = *r;
                else
                    bad_value(*n, key, quote(*v) + " is not one of " + std::string(allowed));
            } else {
                bad_type(*n, key, "a string (" + std::string(allowed) + ")");
            }
        }
        record(key, render(out));
        return n != nullptr;
    }

    bool mac(std::string_view key, std::optional<netif::MacAddress>& out, bool vif_address) {
        const toml::node* n = take(key);
        if (n) {
            if (auto v = n->value_exact<std::string>()) {
                auto r = vif_address ? netif::parse_vif_mac(*v, key) : netif::parse_mac(*v, key);
                if (r)
                    out = *r;
                else
                    bad_value(*n, key, mac_reason(*v, vif_address));
            } else {
                bad_type(*n, key, "a string (xx:xx:xx:xx:xx:xx)");
            }
        }
        record(key, out ? netif::format_mac(*out) : "");
        return n != nullptr;
    }

    template <class Check>
    bool string_list(std::string_view key, std::vector<std::string>& out, Check check) {
        const toml::node* n = take(key);
        if (n) {
            if (const toml::array* a = n->as_array()) {
                std::vector<std::string> v;
                bool good = true;
                for (const toml::node& e : *a) {
                    if (auto s = e.value_exact<std::string>()) {
                        std::string why = check(*s);
                        if (!why.empty()) {
                            bad_value(e, key, why);
                            good = false;
                        }
                        v.push_back(*s);
                    } else {
                        bad_type(e, key, "a string in the array");
                        good = false;
                    }
                }
                if (good) out = std::move(v);
            } else {
                bad_type(*n, key, "an array of strings");
            }
        }
        record(key, render_list(out));
        return n != nullptr;
    }
    bool string_list(std::string_view key, std::vector<std::string>& out) {
        return string_list(key, out, [](const std::string&) { return std::string(); });
    }

    bool unsigned_list(std::string_view key, std::vector<unsigned>& out, std::int64_t min,
                       std::int64_t max) {
        const toml::node* n = take(key);
        if (n) {
            if (const toml::array* a = n->as_array()) {
                std::vector<unsigned> v;
                bool good = true;
                for (const toml::node& e : *a) {
                    if (auto i = e.value_exact<std::int64_t>()) {
                        if (*i < min || *i > max) {
                            bad_value(e, key, range_msg(*i, min, max));
                            good = false;
                        } else {
                            v.push_back(static_cast<unsigned>(*i));
                        }
                    } else {
                        bad_type(e, key, "an integer in the array");
                        good = false;
                    }
                }
                if (good) out = std::move(v);
            } else {
                bad_type(*n, key, "an array of integers");
            }
        }
        record(key, render_list(out));
        return n != nullptr;
    }

    // A problem with a value that only shows when looking at several keys.
    void error(std::string_view key, std::string msg) {
        const toml::node* n = t_ ? t_->get(key) : nullptr;
        if (n)
            l_.error_at(n->source(), context(key), std::move(msg));
        else if (t_)
            l_.error_at(t_->source(), context(key), std::move(msg));
        else
            l_.error(context(key) + ": " + msg);
    }
    void section_error(std::string msg) {
        if (t_)
            l_.error_at(t_->source(), title_, std::move(msg));
        else
            l_.error(title_ + ": " + msg);
    }

    // Every key of the table that no getter asked for is an error.
    void finish() {
        if (!t_) return;
        for (auto&& [k, v] : *t_) {
            if (seen_.count(std::string(k.str()))) continue;
            std::string known;
            for (const std::string& s : asked_)
                known += (known.empty() ? "" : ", ") + s;
            // A key an override added has no place in the file; its value knows the override.
            const bool from_override =
                v.source().path &&
                v.source().path->substr(0, kOverridePrefix.size()) == kOverridePrefix;
            l_.error_at(from_override ? v.source() : k.source(), context(k.str()),
                        "unknown key" +
                            (known.empty() ? std::string() : " (known: " + known + ")"));
        }
    }

private:
    std::string context(std::string_view key) const { return title_ + " " + std::string(key); }

    const toml::node* take(std::string_view key) {
        const std::string full = name_ + "." + std::string(key);
        if (!find_key(full)) l_.error("internal: key " + full + " is not declared in kKeys");
        asked_.push_back(std::string(key));
        seen_.insert(std::string(key));
        return t_ ? t_->get(key) : nullptr;
    }
    void record(std::string_view key, std::string text) {
        l_.value(name_ + "." + std::string(key), std::move(text));
    }
    void bad_type(const toml::node& n, std::string_view key, const std::string& expected) {
        std::string got = type_name(n);
        if (auto s = n.value_exact<std::string>()) got += " " + quote(*s);
        l_.error_at(n.source(), context(key), "expected " + expected + ", got " + got);
    }
    void bad_value(const toml::node& n, std::string_view key, std::string why) {
        l_.error_at(n.source(), context(key), std::move(why));
    }
    static std::string range_msg(std::int64_t v, std::int64_t min, std::int64_t max) {
        return std::to_string(v) + " is out of range " + std::to_string(min) + ".." +
               std::to_string(max);
    }
    static std::string mac_reason(const std::string& v, bool vif_address) {
        if (auto plain = netif::parse_mac(v, "mac"); plain && vif_address) {
            if (plain->is_zero()) return quote(v) + " is the zero address";
            return quote(v) + " is a multicast or broadcast address";
        }
        return quote(v) + " is not a MAC address (xx:xx:xx:xx:xx:xx)";
    }

    Loader& l_;
    const toml::table* t_;
    std::string name_;
    std::string title_;
    std::set<std::string> seen_;
    std::vector<std::string> asked_;
};

const toml::table* sub_table(Section& parent, std::string_view key, Loader& l) {
    parent.subsection(key);
    const toml::table* t = parent.table();
    if (!t) return nullptr;
    const toml::node* n = t->get(key);
    if (!n) return nullptr;
    if (const toml::table* st = n->as_table()) return st;
    l.error_at(n->source(), parent.name() + "." + std::string(key),
               std::string("expected a table, got ") + type_name(*n));
    return nullptr;
}

std::string check_file_prefix(const std::string& s) {
    if (!valid_name(s)) return quote(s) + " must be 1..32 characters of [A-Za-z0-9_-]";
    return "";
}

std::string check_absolute_path(const std::string& s) {
    if (s.empty() || s.front() != '/') return quote(s) + " must be an absolute path";
    if (s.size() > 107) return quote(s) + " is longer than a UNIX socket path may be (107)";
    return "";
}

std::string check_address(const std::string& s) {
    // Checked with inet_pton by the metrics server; here only the shape.
    if (s.empty()) return "the address is empty";
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == '.' || c == ':'))
            return quote(s) + " is not an IPv4 or IPv6 address literal";
    return "";
}

std::string check_group(const std::string& s) {
    if (s.empty()) return "";
    if (s.size() > 32) return quote(s) + " is too long for a group name";
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return quote(s) + " is not a group name";
    return "";
}

template <class E>
auto enum_parser(std::initializer_list<std::pair<std::string_view, E>> items) {
    std::vector<std::pair<std::string_view, E>> v(items);
    return [v](const std::string& s) -> Result<E> {
        for (auto& [name, e] : v)
            if (name == s) return e;
        return make_error(Errc::invalid_argument, s);
    };
}

void load_hypervisor(Loader& l, const toml::table& root, Config& c) {
    const toml::node* hn = root.get("hypervisor");
    if (hn && !hn->as_table())
        l.error_at(hn->source(), "hypervisor",
                   std::string("expected a table [hypervisor], got ") + type_name(*hn));
    Section s(l, hn ? hn->as_table() : nullptr, "hypervisor", "[hypervisor]");
    HypervisorConfig& h = c.hypervisor;
    s.parsed(
        "kind", h.kind,
        enum_parser<HypervisorKind>({{"xen", HypervisorKind::xen}, {"sim", HypervisorKind::sim}}),
        [](HypervisorKind k) { return std::string(to_string(k)); }, "\"xen\", \"sim\"");
    s.optional_integer("self", h.self, 0, netif::kDomIdFirstReserved - 1);

    Section sim(l, sub_table(s, "sim", l), "hypervisor.sim", "[hypervisor.sim]");
    sim.string("dir", h.sim_dir, check_absolute_path);
    sim.boolean("embedded", h.sim_embedded);
    sim.finish();

    Section xen(l, sub_table(s, "xen", l), "hypervisor.xen", "[hypervisor.xen]");
    xen.string("xenstore_path", h.xen.xenstore_path, [](const std::string& v) {
        return v.empty() ? std::string() : check_absolute_path(v);
    });
    xen.integer("max_grants_per_handle", h.xen.max_grants_per_handle, 0, 1 << 20);
    xen.integer("persistent_max_entries", h.xen.persistent_grants.max_entries, 1, 1 << 20);
    xen.integer("persistent_ref_limit", h.xen.persistent_grants.ref_limit, 1,
                hv::PersistentGrantLimits::kMaxRefLimit);
    xen.milliseconds("persistent_close_timeout_ms", h.xen.persistent_grants.close_timeout, 0,
                     600'000);
    xen.finish();
    h.xen.self = h.self;
    s.finish();
}

auto log_level_parser() {
    return [](const std::string& v) { return parse_log_level(v); };
}

void load_log(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "log", "[log]");
    constexpr std::string_view levels = "trace, debug, info, warn, error, critical, off";
    s.parsed(
        "level", c.log.level, log_level_parser(),
        [](LogLevel v) { return std::string(to_string(v)); }, levels);
    s.parsed(
        "target", c.log.target,
        enum_parser<LogTarget>({{"auto", LogTarget::automatic},
                                {"journal", LogTarget::journal},
                                {"stderr", LogTarget::stderr_stream}}),
        [](LogTarget v) { return std::string(to_string(v)); }, "\"auto\", \"journal\", \"stderr\"");
    for (std::size_t i = 0; i < kComponentCount; ++i) {
        auto& slot = c.log.components[i];
        const char* key = to_string(static_cast<Component>(i));
        s.parsed(
            key, slot,
            [](const std::string& v) -> Result<std::optional<LogLevel>> {
                auto r = parse_log_level(v);
                if (!r) return r.error();
                return std::optional<LogLevel>(*r);
            },
            [](const std::optional<LogLevel>& v) { return v ? std::string(to_string(*v)) : ""; },
            levels);
    }
    s.finish();
}

void load_eal(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "eal", "[eal]");
    pmd::EalOptions& e = c.engine.eal;
    constexpr std::int64_t kMaxLcore = 127; // RTE_MAX_LCORE - 1 in Debian's DPDK
    s.integer("main_lcore", e.main_lcore, 0, kMaxLcore);
    s.unsigned_list("worker_lcores", e.worker_lcores, 0, kMaxLcore);
    std::string map = e.lcore_map.value_or("");
    if (s.string("lcore_map", map, [](const std::string& v) {
            for (char ch : v)
                if (!((ch >= '0' && ch <= '9') || ch == ',' || ch == '@' || ch == '(' ||
                      ch == ')' || ch == '-'))
                    return quote(v) + " is not an lcore map (\"0@0,1@1,2@(2-3)\")";
            return std::string();
        }))
        e.lcore_map = map.empty() ? std::nullopt : std::optional<std::string>(map);
    s.boolean("no_huge", e.no_huge);
    s.integer("memory_mb", e.memory_mb, 0, 1 << 20);
    s.string("file_prefix", e.file_prefix, check_file_prefix);
    s.boolean("no_pci", e.no_pci);
    s.string_list("pci_allow", e.pci_allow);
    s.string_list("vdevs", e.vdevs);
    s.boolean("telemetry", e.telemetry);
    s.string_list("extra_args", e.extra_args);
    s.finish();
    if (e.worker_lcores.empty()) s.error("worker_lcores", "at least one worker lcore is needed");
    if (std::find(e.worker_lcores.begin(), e.worker_lcores.end(), e.main_lcore) !=
        e.worker_lcores.end())
        s.error("worker_lcores", "lcore " + std::to_string(e.main_lcore) +
                                     " is the main lcore (the control thread's); workers need "
                                     "their own");
    std::set<unsigned> uniq(e.worker_lcores.begin(), e.worker_lcores.end());
    if (uniq.size() != e.worker_lcores.size()) s.error("worker_lcores", "an lcore appears twice");
    if (e.no_huge && e.memory_mb == 0) s.error("memory_mb", "no_huge needs memory_mb (e.g. 512)");
    if (e.no_pci && !e.pci_allow.empty())
        s.error("pci_allow", "an allow list with no_pci = true would probe nothing");
}

auto rx_mode_parser() {
    return [](const std::string& v) { return engine::parse_rx_mode(v); };
}

void load_engine(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "engine", "[engine]");
    engine::EngineOptions& e = c.engine;
    s.integer("burst", e.burst, 1, 64);
    s.integer("zc_depth", e.zc_depth, 1, 256);
    s.integer("map_batch", e.map_batch, 1, 64);
    s.parsed(
        "reuse_miss", e.reuse_miss,
        enum_parser<engine::RxMode>({{"map", engine::RxMode::map}, {"copy", engine::RxMode::copy}}),
        [](engine::RxMode m) { return std::string(engine::to_string(m)); }, "\"map\", \"copy\"");
    s.integer("tx_copy_len", e.tx_copy_len, 128, 256);
    s.integer("tx_copy_slot_max", e.tx_copy_slot_max, 0, 4096);
    s.boolean("anti_spoofing", e.anti_spoofing);
    s.boolean("ip_anti_spoofing", e.ip_anti_spoofing);
    s.boolean("fatal_bad_grants", e.fatal_bad_grants);
    s.integer("tx_max_slots", e.tx_limits.max_slots, 18, netif::kTxMaxSlots);
    s.integer("tx_fatal_slots", e.tx_limits.fatal_slots, 18, netif::kTxMaxSlots);
    s.integer("tx_max_packet_len", e.tx_limits.max_packet_len, 14, 65535);
    s.integer("tx_max_frame_len", e.tx_limits.max_frame_len, 0, 65535);
    s.integer("rx_mbufs_per_port", e.rx_mbufs_per_port, 512, 1 << 20);
    s.integer("tx_mbufs_per_lcore", e.tx_mbufs_per_lcore, 512, 1 << 20);
    s.integer("idle_polls", e.idle_polls, 0, 1 << 24);
    std::int64_t max_sleep = e.max_sleep.count();
    s.integer("max_sleep_ms", max_sleep, 1, 10'000);
    e.max_sleep = std::chrono::milliseconds(max_sleep);
    std::int64_t poll_sleep = e.poll_sleep.count();
    s.integer("poll_sleep_us", poll_sleep, 1, 1'000'000);
    e.poll_sleep = std::chrono::microseconds(poll_sleep);
    s.milliseconds("command_timeout_ms", e.command_timeout, 100, 600'000);
    s.milliseconds("drain_timeout_ms", e.drain_timeout, 0, 600'000);
    s.milliseconds("rx_stall_timeout_ms", e.rx_stall_timeout, 0, 3'600'000);
    s.boolean("place_interrupts", e.place_interrupts);
    s.boolean("place_vhost_workers", e.place_vhost_workers);
    s.finish();
    if (Status st = netif::validate(e.tx_limits); !st) s.error("tx_max_slots", st.error().message);
}

void load_ports(Loader& l, const toml::table& root, Config& c) {
    const toml::node* n = root.get("port");
    const toml::table* ports = n ? n->as_table() : nullptr;
    if (n && !ports) {
        l.error_at(n->source(), "port",
                   std::string("expected tables [port.NAME], got ") + type_name(*n));
        return;
    }
    if (ports && ports->empty())
        l.error_at(ports->source(), "[port]", "no port: add a [port.NAME] table");
    // Without any [port.NAME]: the built-in default, one tap port named "uplink" (a virtual
    // NIC shared by every guest; needs /dev/net/tun).
    std::vector<std::pair<std::string, const toml::table*>> list;
    if (!ports) list.emplace_back("uplink", nullptr);
    if (ports) {
        for (auto&& [k, v] : *ports) {
            const std::string name(k.str());
            if (!valid_name(name)) {
                l.error_at(k.source(), "[port." + name + "]",
                           "port names are 1..32 characters of [A-Za-z0-9_-]");
                continue;
            }
            if (!v.as_table()) {
                l.error_at(v.source(), "port." + name,
                           std::string("expected a table, got ") + type_name(v));
                continue;
            }
            list.emplace_back(name, v.as_table());
        }
    }
    c.engine.ports.clear();
    for (auto& [name, t] : list) {
        pmd::PortConfig p;
        p.name = name;
        p.device = kDefaultPortDevice;
        const std::string title = "[port." + name + "]";
        Section s(l, t, "port." + name, title);
        if (!s.string("device", p.device) && ports)
            s.section_error("device: missing (devargs such as \"net_tap0,iface=dpnb0\" or a PCI "
                            "address)");
        else if (p.device.empty())
            s.error("device", "must not be empty");
        s.string("group", p.group, [](const std::string& v) {
            return v.empty() || valid_name(v) ? std::string()
                                              : quote(v) + " must be 1..32 characters of "
                                                           "[A-Za-z0-9_-]";
        });
        s.parsed(
            "steering", p.steering, [](const std::string& v) { return pmd::parse_steering(v); },
            [](pmd::Steering st) { return std::string(pmd::to_string(st)); },
            "\"shared\", \"mac_flow\", \"dedicated_port\"");
        s.integer("rx_queues", p.rx_queues, 1, 128);
        s.integer("rx_desc", p.rx_desc, 32, 32768);
        s.integer("tx_desc", p.tx_desc, 32, 32768);
        s.integer("mtu", p.mtu, 68, 9600);
        s.mac("mac", p.mac, true);
        s.boolean("promiscuous", p.promiscuous);
        s.boolean("zero_copy", p.zero_copy);
        s.boolean("rx_checksum", p.rx_checksum);
        s.boolean("tx_checksum", p.tx_checksum);
        s.boolean("tso", p.tso);
        s.boolean("lro", p.lro);
        s.boolean("rx_interrupts", p.rx_interrupts);
        s.boolean("local_delivery", p.local_delivery);
        s.string("vf_of", p.vf_of);
        s.integer("vf_index", p.vf_index, 0, 255);
        s.finish();
        if (p.steering == pmd::Steering::shared && p.rx_queues != 1)
            s.error("rx_queues", "a shared port has one RX queue (steering = \"mac_flow\" gives "
                                 "guests their own)");
        if (!p.group.empty() && p.steering != pmd::Steering::dedicated_port)
            s.error("group", "only dedicated ports (steering = \"dedicated_port\") belong to a "
                             "group");
        c.engine.ports.push_back(std::move(p));
    }
    for (const pmd::PortConfig& p : c.engine.ports) {
        if (!p.vf_of.empty() &&
            std::none_of(c.engine.ports.begin(), c.engine.ports.end(),
                         [&](const pmd::PortConfig& q) { return q.name == p.vf_of; }))
            l.error("[port." + p.name + "] vf_of: names no port: " + quote(p.vf_of));
        if (!p.group.empty() &&
            std::any_of(c.engine.ports.begin(), c.engine.ports.end(),
                        [&](const pmd::PortConfig& q) { return q.name == p.group; }))
            l.error("[port." + p.name + "] group: " + quote(p.group) + " is the name of a port");
    }
}

void load_features(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "features", "[features]");
    netif::BackendCapabilities& f = c.control.capabilities;
    s.boolean("sg", f.sg);
    s.boolean("gso_tcpv4", f.gso_tcpv4);
    s.boolean("gso_tcpv6", f.gso_tcpv6);
    s.boolean("ipv6_csum_offload", f.ipv6_csum_offload);
    s.boolean("multicast_control", f.multicast_control);
    s.boolean("dynamic_multicast_control", f.dynamic_multicast_control);
    s.boolean("split_event_channels", f.split_event_channels);
    s.integer("max_queues", f.max_queues, 1, netif::kMaxQueuesLimit);
    s.boolean("ctrl_ring", f.ctrl_ring);
    s.boolean("xdp_headroom", f.xdp_headroom);
    s.boolean("static_grants", f.static_grants);
    s.boolean("rx_buffer_offset", f.rx_buffer_offset);
    s.finish();
    if (Status st = netif::validate(f); !st) s.section_error(st.error().message);
}

bool port_named(const Config& c, const std::string& name) {
    return std::any_of(c.engine.ports.begin(), c.engine.ports.end(),
                       [&](const pmd::PortConfig& p) { return p.name == name || p.group == name; });
}

void load_vifs(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "vifs", "[vifs]");
    control::ControlOptions& o = c.control;
    s.parsed(
        "serve", o.serve, [](const std::string& v) { return control::parse_vif_selection(v); },
        [](control::VifSelection v) { return std::string(control::to_string(v)); },
        "\"all\", \"adopted-only\"");
    s.parsed(
        "hotplug_wait", o.hotplug,
        [](const std::string& v) { return control::parse_hotplug_wait(v); },
        [](control::HotplugWait v) { return std::string(control::to_string(v)); },
        "\"always\", \"if-present\", \"never\"");
    s.parsed(
        "default_rx_mode", o.default_rx_mode, rx_mode_parser(),
        [](engine::RxMode m) { return std::string(engine::to_string(m)); },
        "\"copy\", \"map\", \"reuse\"");
    if (c.engine.ports.size() == 1) o.default_port = c.engine.ports.front().name;
    if (s.string("default_port", o.default_port)) {
        if (!port_named(c, o.default_port))
            s.error("default_port", quote(o.default_port) + " names no [port.NAME] or group");
    } else if (c.engine.ports.size() > 1) {
        s.error("default_port", "missing: required when there are several ports");
    }
    s.integer("error_log_burst", o.error_log_burst, 1, 1000);
    s.milliseconds("error_log_interval_ms", o.error_log_interval, 100, 3'600'000);

    // [[vifs.rule]]
    s.subsection("rule");
    const toml::node* rn = t ? t->get("rule") : nullptr;
    const toml::array* rules = rn ? rn->as_array() : nullptr;
    if (rn && (!rules || !rules->is_array_of_tables())) {
        l.error_at(rn->source(), "[vifs] rule",
                   "expected [[vifs.rule]] tables, got " + std::string(type_name(*rn)));
        rules = nullptr;
    }
    o.vif_rules.clear();
    if (rules) {
        for (std::size_t i = 0; i < rules->size(); ++i) {
            const toml::table* rt = (*rules)[i].as_table();
            control::VifRule r;
            Section rs(l, rt, "vifs.rule." + std::to_string(i),
                       "[[vifs.rule]] #" + std::to_string(i + 1));
            std::string name = r.domain_name.value_or("");
            if (rs.string("domain_name", name)) r.domain_name = name;
            rs.optional_integer("domid", r.domid, 0, netif::kDomIdFirstReserved - 1);
            rs.optional_integer("handle", r.handle, 0, netif::kMaxVifHandle);
            rs.mac("mac", r.set.mac, true);
            std::optional<engine::RxMode> mode;
            rs.parsed(
                "rx_mode", mode,
                [](const std::string& v) -> Result<std::optional<engine::RxMode>> {
                    auto m = engine::parse_rx_mode(v);
                    if (!m) return m.error();
                    return std::optional<engine::RxMode>(*m);
                },
                [](const std::optional<engine::RxMode>& m) {
                    return m ? std::string(engine::to_string(*m)) : "";
                },
                "\"copy\", \"map\", \"reuse\"");
            r.set.rx_mode = mode;
            std::string port = r.set.port.value_or("");
            if (rs.string("port", port)) {
                r.set.port = port;
                if (!port_named(c, port))
                    rs.error("port", quote(port) + " names no [port.NAME] or group");
            }
            rs.optional_integer("rx_queue", r.set.rx_queue, 0, 127);
            rs.finish();
            if (r.set.mac && !r.domid && !r.domain_name)
                rs.section_error("mac: a rule that sets a MAC must match one guest (domid or "
                                 "domain_name)");
            if (r.set.empty()) rs.section_error("sets nothing (mac, rx_mode, port or rx_queue)");
            o.vif_rules.push_back(std::move(r));
        }
    }
    s.finish();
    if (c.engine.ports.size() == 1 && o.default_port.empty())
        o.default_port = c.engine.ports.front().name;
}

void load_management(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "management", "[management]");
    s.string("socket", c.management.socket, check_absolute_path);
    s.string("group", c.management.group, check_group);
    s.milliseconds("timeout_ms", c.management.timeout, 100, 600'000);
    s.integer("max_clients", c.management.max_clients, 1, 1024);
    s.finish();
}

void load_metrics(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "metrics", "[metrics]");
    s.boolean("enabled", c.metrics.enabled);
    s.string("address", c.metrics.address, check_address);
    s.integer("port", c.metrics.port, 0, 65535);
    s.milliseconds("timeout_ms", c.metrics.timeout, 100, 600'000);
    s.integer("max_clients", c.metrics.max_clients, 1, 1024);
    s.finish();
}

} // namespace

const char* to_string(ShutdownVifs v) noexcept {
    return v == ShutdownVifs::keep ? "keep" : "close";
}

Result<ShutdownVifs> parse_shutdown_vifs(std::string_view text) {
    if (text == "close") return ShutdownVifs::close;
    if (text == "keep") return ShutdownVifs::keep;
    return make_error(Errc::invalid_argument,
                      "shutdown.vifs must be close or keep, not \"" + std::string(text) + "\"");
}

namespace {

void load_shutdown(Loader& l, const toml::table* t, Config& c) {
    Section s(l, t, "shutdown", "[shutdown]");
    s.milliseconds("timeout_ms", c.shutdown_timeout, 0, 600'000);
    s.parsed(
        "vifs", c.shutdown_vifs, [](const std::string& v) { return parse_shutdown_vifs(v); },
        [](ShutdownVifs v) { return std::string(to_string(v)); }, "\"close\", \"keep\"");
    s.finish();
}

const toml::table* top_table(Loader& l, const toml::table& root, std::string_view key) {
    const toml::node* n = root.get(key);
    if (!n) return nullptr;
    if (const toml::table* t = n->as_table()) return t;
    l.error_at(n->source(), std::string(key),
               std::string("expected a table [") + std::string(key) + "], got " + type_name(*n));
    return nullptr;
}

// "a.b.c=value" -> root[a][b][c] = value (TOML, or the bare text as a string).
Status apply_override(toml::table& root, const std::string& text) {
    const std::size_t eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
        return make_error(Errc::invalid_argument,
                          "command line: " + quote(text) + " is not section.key=value");
    const std::string key = text.substr(0, eq);
    const std::string value = text.substr(eq + 1);
    std::vector<std::string> parts;
    for (std::size_t b = 0;;) {
        const std::size_t d = key.find('.', b);
        parts.push_back(key.substr(b, d == std::string::npos ? std::string::npos : d - b));
        if (d == std::string::npos) break;
        b = d + 1;
    }
    for (const std::string& p : parts)
        if (!valid_name(p))
            return make_error(Errc::invalid_argument,
                              "command line: " + quote(key) + " is not a key name");
    if (parts.size() < 2)
        return make_error(Errc::invalid_argument,
                          "command line: " + quote(key) + " needs a section (e.g. metrics.port)");

    // The value is TOML ("metrics.port=9600", "eal.worker_lcores=[1,2]", "x=\"text\""), or
    // else a bare word taken as a string ("hypervisor.kind=sim"). Either way it is parsed with
    // the override as its source, so that messages point at the command line.
    const std::string source = std::string(kOverridePrefix) + text;
    toml::table snippet;
    try {
        snippet = toml::parse("v = " + value, source);
    } catch (const toml::parse_error&) {
        std::string quoted = "v = \"";
        for (char ch : value) {
            if (ch == '"' || ch == '\\') quoted += '\\';
            if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
                return make_error(Errc::invalid_argument,
                                  "command line: " + quote(text) + ": control character in value");
            quoted += ch;
        }
        quoted += '"';
        try {
            snippet = toml::parse(quoted, source);
        } catch (const toml::parse_error& e) {
            return make_error(Errc::invalid_argument,
                              "command line: " + quote(text) + ": " + std::string(e.description()));
        }
    }
    if (snippet.size() != 1 || !snippet.get("v"))
        return make_error(Errc::invalid_argument,
                          "command line: " + quote(text) + ": the value must be one TOML value");
    toml::table* t = &root;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        toml::node* n = t->get(parts[i]);
        if (!n) {
            t->insert(parts[i], toml::table{});
            n = t->get(parts[i]);
        }
        if (!n->as_table())
            return make_error(Errc::invalid_argument,
                              "command line: " + quote(key) + ": " + parts[i] + " is not a table");
        t = n->as_table();
    }
    t->insert_or_assign(parts.back(), std::move(*snippet.get("v")));
    return ok();
}

Result<Config> build(const toml::table& root, std::string path) {
    Loader l(std::move(path));
    Config c;
    c.path = l.path();
    // Defaults the file format adds on top of the parts' own defaults.
    c.engine.eal.main_lcore = 0;
    c.engine.eal.worker_lcores = {1};
    c.engine.eal.no_huge = true;
    c.engine.eal.memory_mb = 512;
    c.engine.eal.no_pci = true;
    c.engine.eal.file_prefix = "dpnetback";

    static constexpr std::string_view kSections[] = {"hypervisor", "log",      "eal",  "engine",
                                                     "port",       "features", "vifs", "management",
                                                     "metrics",    "shutdown"};
    for (auto&& [k, v] : root) {
        if (std::find(std::begin(kSections), std::end(kSections), k.str()) == std::end(kSections)) {
            std::string known;
            for (std::string_view s : kSections)
                known += (known.empty() ? "" : ", ") + std::string(s);
            l.error_at(k.source(), std::string(k.str()),
                       v.as_table()
                           ? "unknown section (known: " + known + ")"
                           : "unknown key at top level (keys belong in a section: " + known + ")");
        }
    }
    load_hypervisor(l, root, c);
    load_log(l, top_table(l, root, "log"), c);
    load_eal(l, top_table(l, root, "eal"), c);
    load_engine(l, top_table(l, root, "engine"), c);
    load_ports(l, root, c);
    load_features(l, top_table(l, root, "features"), c);
    load_vifs(l, top_table(l, root, "vifs"), c);
    load_management(l, top_table(l, root, "management"), c);
    load_metrics(l, top_table(l, root, "metrics"), c);
    load_shutdown(l, top_table(l, root, "shutdown"), c);

    if (l.errors_.empty()) {
        // Static grants size the engine's persistent-grant tables on either hypervisor (a
        // simulated guest may register its buffers over the control ring too).
        c.engine.static_grants = c.hypervisor.xen.persistent_grants;
        // The parts' own checks (whatever the per-key checks above cannot see).
        if (Status st = engine::validate(c.engine); !st) l.error(st.error().message);
        if (Status st = control::validate(c.control); !st) l.error(st.error().message);
        if (auto args = pmd::eal_arguments(c.engine.eal); !args)
            l.error("[eal] " + args.error().message);
    }
    if (!l.errors_.empty()) return make_error(Errc::invalid_argument, l.message());
    c.values = std::move(l.values_);
    return c;
}

} // namespace

const char* to_string(Component c) noexcept {
    switch (c) {
    case Component::control:
        return "control";
    case Component::data:
        return "data";
    case Component::mgmt:
        return "mgmt";
    case Component::hv:
        return "hv";
    case Component::dpdk:
        return "dpdk";
    }
    return "?";
}

const char* to_string(LogLevel l) noexcept {
    switch (l) {
    case LogLevel::trace:
        return "trace";
    case LogLevel::debug:
        return "debug";
    case LogLevel::info:
        return "info";
    case LogLevel::warn:
        return "warn";
    case LogLevel::error:
        return "error";
    case LogLevel::critical:
        return "critical";
    case LogLevel::off:
        return "off";
    }
    return "?";
}

Result<LogLevel> parse_log_level(std::string_view text) {
    for (int i = 0; i <= static_cast<int>(LogLevel::off); ++i)
        if (text == to_string(static_cast<LogLevel>(i))) return static_cast<LogLevel>(i);
    if (text == "warning") return LogLevel::warn;
    return make_error(Errc::invalid_argument,
                      "log level " + quote(text) +
                          " is not one of trace, debug, info, warn, error, critical, off");
}

const char* to_string(LogTarget t) noexcept {
    switch (t) {
    case LogTarget::automatic:
        return "auto";
    case LogTarget::journal:
        return "journal";
    case LogTarget::stderr_stream:
        return "stderr";
    }
    return "?";
}

const char* to_string(HypervisorKind k) noexcept {
    return k == HypervisorKind::xen ? "xen" : "sim";
}

const char* to_string(Reload r) noexcept {
    return r == Reload::live ? "live" : "restart";
}

std::span<const KeyInfo> config_keys() noexcept {
    return kKeys;
}

Reload reload_class(std::string_view full_name) noexcept {
    const KeyInfo* k = find_key(full_name);
    return k ? k->reload : Reload::restart;
}

Result<Config> parse_config(std::string_view text, std::string_view path,
                            std::span<const std::string> overrides) {
    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& e) {
        const toml::source_region& where = e.source();
        std::string loc(path);
        if (where.begin.line > 0)
            loc +=
                ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
        return make_error(Errc::invalid_argument,
                          loc + ": TOML syntax: " + std::string(e.description()));
    }
    for (const std::string& o : overrides)
        if (Status st = apply_override(root, o); !st) return st.error();
    return build(root, std::string(path));
}

Result<Config> load_config(const std::string& path, std::span<const std::string> overrides,
                           bool optional_file) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        if (optional_file && err == ENOENT) {
            auto c = parse_config("", "", overrides);
            return c;
        }
        return make_error(err == EACCES ? Errc::permission_denied : Errc::not_found,
                          path + ": cannot read: " + std::strerror(err), err);
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (text.str().size() > (1U << 20))
        return make_error(Errc::invalid_argument, path + ": larger than 1 MiB");
    return parse_config(text.str(), path, overrides);
}

ConfigDiff diff(const Config& running, const Config& next) {
    ConfigDiff d;
    std::set<std::string> names;
    for (auto& [k, v] : running.values)
        names.insert(k);
    for (auto& [k, v] : next.values)
        names.insert(k);
    for (const std::string& k : names) {
        auto a = running.values.find(k);
        auto b = next.values.find(k);
        const bool same =
            a != running.values.end() && b != next.values.end() && a->second == b->second;
        if (same) continue;
        (reload_class(k) == Reload::live ? d.live : d.restart).push_back(k);
    }
    return d;
}

} // namespace dpnb::daemon
