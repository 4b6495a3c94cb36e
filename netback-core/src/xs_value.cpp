// Strict xenstore value parsers and the formatters for what the backend writes (see
// xs_value.hpp for the accepted forms). Errors are Errc::invalid_argument and say what was
// wrong with which value; nothing here throws or trusts a length it did not check.
#include "dpnb/netif/xs_value.hpp"

#include <algorithm>
#include <limits>

namespace dpnb::netif {

namespace {

constexpr char kHex[] = "0123456789abcdef";

Error invalid(std::string_view what, std::string_view text, std::string_view reason) {
    std::string msg;
    msg.reserve(what.size() + text.size() + reason.size() + 8);
    msg.append(what);
    msg.append(": ");
    msg.append(quote(text));
    msg.push_back(' ');
    msg.append(reason);
    return make_error(Errc::invalid_argument, std::move(msg));
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The digits-only core of every number: nullopt on anything but a canonical decimal that
// fits in 64 bits.
enum class NumberError { none, empty, not_digits, leading_zero, overflow };

NumberError scan_decimal(std::string_view text, std::uint64_t& out) {
    if (text.empty()) return NumberError::empty;
    if (!std::all_of(text.begin(), text.end(), is_digit)) return NumberError::not_digits;
    if (text.size() > 1 && text[0] == '0') return NumberError::leading_zero;
    std::uint64_t value = 0;
    constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
    for (char c : text) {
        auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (kMax - digit) / 10) return NumberError::overflow;
        value = value * 10 + digit;
    }
    out = value;
    return NumberError::none;
}

std::string range_text(std::uint64_t min, std::uint64_t max) {
    return "(" + std::to_string(min) + ".." + std::to_string(max) + ")";
}

// Splits `path` on '/' into exactly `N` components after the leading '/'. Rejects empty
// components (a trailing '/' or "//").
template <std::size_t N>
bool split_path(std::string_view path, std::array<std::string_view, N>& parts,
                std::string_view* rest = nullptr) {
    if (path.empty() || path[0] != '/') return false;
    std::size_t pos = 1;
    for (std::size_t i = 0; i < N; ++i) {
        std::size_t end = path.find('/', pos);
        if (end == std::string_view::npos) end = path.size();
        if (end == pos) return false;
        parts[i] = path.substr(pos, end - pos);
        pos = end;
        if (i + 1 < N) {
            if (pos == path.size()) return false;
            ++pos; // skip '/'
        }
    }
    if (pos == path.size()) {
        if (rest != nullptr) *rest = {};
        return true;
    }
    // Something follows the N components.
    if (rest == nullptr) return false;
    std::string_view tail = path.substr(pos + 1); // after the '/'
    if (tail.empty() || tail.front() == '/' || tail.back() == '/' ||
        tail.find("//") != std::string_view::npos)
        return false;
    *rest = tail;
    return true;
}

} // namespace

std::string quote(std::string_view value, std::size_t limit) {
    std::string out;
    std::size_t shown = std::min(value.size(), limit);
    out.reserve(shown + 16);
    out.push_back('"');
    for (std::size_t i = 0; i < shown; ++i) {
        auto c = static_cast<unsigned char>(value[i]);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c >= 0x20 && c < 0x7F) {
            out.push_back(static_cast<char>(c));
        } else {
            out.append("\\x");
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xF]);
        }
    }
    out.push_back('"');
    if (shown < value.size()) {
        out.append("... (");
        out.append(std::to_string(value.size()));
        out.append(" bytes)");
    }
    return out;
}

Result<std::uint64_t> parse_unsigned(std::string_view text, std::uint64_t min, std::uint64_t max,
                                     std::string_view what) {
    std::uint64_t value = 0;
    switch (scan_decimal(text, value)) {
    case NumberError::none:
        break;
    case NumberError::empty:
        return invalid(what, text, "is empty, expected an unsigned decimal number");
    case NumberError::not_digits:
        return invalid(what, text, "is not an unsigned decimal number");
    case NumberError::leading_zero:
        return invalid(what, text, "has a leading zero");
    case NumberError::overflow:
        return invalid(what, text, "is out of range " + range_text(min, max));
    }
    if (value < min || value > max)
        return invalid(what, text, "is out of range " + range_text(min, max));
    return value;
}

Result<bool> parse_bool(std::string_view text, std::string_view what) {
    if (text == "0") return false;
    if (text == "1") return true;
    return invalid(what, text, "is not a boolean (\"0\" or \"1\")");
}

Result<GrantRef> parse_grant_ref(std::string_view text, std::string_view what) {
    auto v = parse_unsigned(text, 0, std::numeric_limits<GrantRef>::max(), what);
    if (!v) return std::move(v).error();
    if (*v == kGrantRefInvalid)
        return invalid(what, text, "is the invalid grant reference (INVALID_GRANT_REF)");
    return static_cast<GrantRef>(*v);
}

Result<EvtchnPort> parse_evtchn_port(std::string_view text, std::string_view what) {
    auto v = parse_unsigned(text, 1, kMaxEvtchnPort, what);
    if (!v) return std::move(v).error();
    return static_cast<EvtchnPort>(*v);
}

Result<XenbusState> parse_xenbus_state(std::string_view text, std::string_view what) {
    auto v = parse_unsigned(text, 0, kXenbusStateCount - 1, what);
    if (!v) return std::move(v).error();
    return static_cast<XenbusState>(*v);
}

Result<DomId> parse_domid(std::string_view text, std::string_view what) {
    auto v = parse_unsigned(text, 0, kDomIdFirstReserved - 1, what);
    if (!v) return std::move(v).error();
    return static_cast<DomId>(*v);
}

Result<std::uint32_t> parse_vif_handle(std::string_view text, std::string_view what) {
    auto v = parse_unsigned(text, 0, kMaxVifHandle, what);
    if (!v) return std::move(v).error();
    return static_cast<std::uint32_t>(*v);
}

bool MacAddress::is_zero() const noexcept {
    return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

Result<MacAddress> parse_mac(std::string_view text, std::string_view what) {
    constexpr std::size_t kLen = 17; // "xx:" * 5 + "xx"
    MacAddress mac;
    bool ok = text.size() == kLen;
    for (std::size_t i = 0; ok && i < 6; ++i) {
        int hi = hex_value(text[3 * i]);
        int lo = hex_value(text[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':'))
            ok = false;
        else
            mac.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    if (!ok) return invalid(what, text, "is not a MAC address (expected xx:xx:xx:xx:xx:xx in hex)");
    return mac;
}

Result<MacAddress> parse_vif_mac(std::string_view text, std::string_view what) {
    auto mac = parse_mac(text, what);
    if (!mac) return mac;
    if (mac->is_multicast())
        return invalid(what, text, "is a multicast or broadcast address, not a vif's own address");
    if (mac->is_zero())
        return invalid(what, text, "is the all-zero address, not a vif's own address");
    return mac;
}

Result<Ipv4Address> parse_ipv4(std::string_view text, std::string_view what) {
    Ipv4Address ip;
    std::size_t pos = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        std::size_t end = i < 3 ? text.find('.', pos) : text.size();
        if (end == std::string_view::npos)
            return invalid(what, text, "is not an IPv4 address (expected a.b.c.d)");
        std::uint64_t part = 0;
        if (scan_decimal(text.substr(pos, end - pos), part) != NumberError::none || part > 255)
            return invalid(what, text, "is not an IPv4 address (expected a.b.c.d)");
        ip.bytes[i] = static_cast<std::uint8_t>(part);
        pos = end + 1;
    }
    return ip;
}

Result<std::vector<Ipv4Address>> parse_ipv4_list(std::string_view text, std::string_view what) {
    std::vector<Ipv4Address> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        if (text[pos] == ' ') {
            ++pos;
            continue;
        }
        std::size_t end = text.find(' ', pos);
        if (end == std::string_view::npos) end = text.size();
        auto ip = parse_ipv4(text.substr(pos, end - pos), what);
        if (!ip) return std::move(ip).error();
        out.push_back(*ip);
        pos = end;
    }
    if (out.empty()) return invalid(what, text, "holds no IPv4 address");
    return out;
}

Result<RateLimit> parse_rate(std::string_view text, std::string_view what) {
    std::size_t comma = text.find(',');
    std::uint64_t bytes = 0;
    std::uint64_t usec = 0;
    if (comma == std::string_view::npos ||
        scan_decimal(text.substr(0, comma), bytes) != NumberError::none ||
        scan_decimal(text.substr(comma + 1), usec) != NumberError::none ||
        usec > std::numeric_limits<std::uint32_t>::max())
        return invalid(what, text, "is not a rate (expected <bytes>,<usec>)");
    return RateLimit{bytes, static_cast<std::uint32_t>(usec)};
}

Result<unsigned> parse_queue_name(std::string_view name) {
    constexpr std::string_view kPrefix = "queue-";
    std::uint64_t index = 0;
    if (name.substr(0, kPrefix.size()) != kPrefix ||
        scan_decimal(name.substr(std::min(name.size(), kPrefix.size())), index) !=
            NumberError::none ||
        index >= kMaxQueuesLimit)
        return invalid("queue folder", name,
                       "is not a queue folder name (queue-0 .. queue-" +
                           std::to_string(kMaxQueuesLimit - 1) + ")");
    return static_cast<unsigned>(index);
}

std::string queue_name(unsigned index) {
    return "queue-" + std::to_string(index);
}

Result<FrontendPath> parse_frontend_path(std::string_view path) {
    constexpr std::string_view kWhat = "frontend path";
    constexpr std::string_view kForm =
        "is not a vif frontend path (/local/domain/<domid>/device/vif/<handle>)";
    std::array<std::string_view, 6> p;
    if (!split_path(path, p) || p[0] != "local" || p[1] != "domain" || p[3] != "device" ||
        p[4] != "vif")
        return invalid(kWhat, path, kForm);
    auto domid = parse_domid(p[2], "domid");
    if (!domid) return invalid(kWhat, path, std::string(kForm) + ": " + domid.error().message);
    auto handle = parse_vif_handle(p[5], "handle");
    if (!handle) return invalid(kWhat, path, std::string(kForm) + ": " + handle.error().message);
    return FrontendPath{*domid, *handle};
}

std::string format_frontend_path(const FrontendPath& p) {
    return "/local/domain/" + std::to_string(p.domid) + "/device/vif/" + std::to_string(p.handle);
}

namespace {

constexpr std::string_view kBackendForm =
    "is not a vif backend path (/local/domain/<self>/backend/vif/<domid>/<handle>)";

Result<BackendNode> parse_backend(std::string_view path, bool allow_rest, std::string_view what) {
    std::array<std::string_view, 7> p;
    std::string_view rest;
    if (!split_path(path, p, allow_rest ? &rest : nullptr) || p[0] != "local" || p[1] != "domain" ||
        p[3] != "backend" || p[4] != "vif")
        return invalid(what, path, kBackendForm);
    auto self = parse_domid(p[2], "backend domid");
    if (!self) return invalid(what, path, std::string(kBackendForm) + ": " + self.error().message);
    auto frontend = parse_domid(p[5], "frontend domid");
    if (!frontend)
        return invalid(what, path, std::string(kBackendForm) + ": " + frontend.error().message);
    auto handle = parse_vif_handle(p[6], "handle");
    if (!handle)
        return invalid(what, path, std::string(kBackendForm) + ": " + handle.error().message);
    return BackendNode{BackendPath{*self, *frontend, *handle}, rest};
}

} // namespace

Result<BackendPath> parse_backend_path(std::string_view path) {
    auto node = parse_backend(path, false, "backend path");
    if (!node) return std::move(node).error();
    return node->vif;
}

Result<BackendNode> parse_backend_node(std::string_view path) {
    return parse_backend(path, true, "backend node");
}

std::string format_backend_path(const BackendPath& p) {
    return "/local/domain/" + std::to_string(p.backend) + "/backend/vif/" +
           std::to_string(p.frontend) + "/" + std::to_string(p.handle);
}

std::string format_backend_error_path(const BackendPath& p) {
    return "/local/domain/" + std::to_string(p.backend) + "/error/backend/vif/" +
           std::to_string(p.frontend) + "/" + std::to_string(p.handle);
}

std::string format_unsigned(std::uint64_t value) {
    return std::to_string(value);
}

std::string format_bool(bool value) {
    return value ? "1" : "0";
}

std::string format_xenbus_state(XenbusState s) {
    return std::to_string(static_cast<unsigned>(s));
}

std::string format_mac(const MacAddress& mac) {
    std::string out;
    out.reserve(17);
    for (std::size_t i = 0; i < mac.bytes.size(); ++i) {
        if (i != 0) out.push_back(':');
        out.push_back(kHex[mac.bytes[i] >> 4]);
        out.push_back(kHex[mac.bytes[i] & 0xF]);
    }
    return out;
}

std::string format_ipv4(const Ipv4Address& ip) {
    return std::to_string(ip.bytes[0]) + "." + std::to_string(ip.bytes[1]) + "." +
           std::to_string(ip.bytes[2]) + "." + std::to_string(ip.bytes[3]);
}

} // namespace dpnb::netif
