// Xenstore path and permission-string parsing (see xs_path.hpp).
#include "xenstore/xs_path.hpp"

#include <charconv>

namespace dpnb::hv::sim::xs {

namespace {

bool valid_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '/' || c == '_' || c == '@';
}

} // namespace

bool is_valid_node_path(std::string_view path) {
    if (path.empty() || path.front() != '/' || path.size() > kAbsPathMax) return false;
    if (path.size() > 1 && path.back() == '/') return false;
    char prev = '\0';
    for (char c : path) {
        if (!valid_char(c)) return false;
        if (c == '/' && prev == '/') return false;
        prev = c;
    }
    return true;
}

std::string home_path(DomId dom) {
    return "/local/domain/" + std::to_string(dom);
}

std::optional<std::string> canonical_node_path(std::string_view path, DomId dom) {
    std::string full;
    if (!path.empty() && path.front() == '/') {
        full.assign(path);
    } else {
        if (path.empty() || path.size() > kRelPathMax) return std::nullopt;
        full = home_path(dom);
        full += '/';
        full += path;
    }
    if (!is_valid_node_path(full)) return std::nullopt;
    return full;
}

std::string_view parent_of(std::string_view path) {
    std::size_t slash = path.rfind('/');
    if (slash == 0 || slash == std::string_view::npos) return "/";
    return path.substr(0, slash);
}

std::string_view basename_of(std::string_view path) {
    std::size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string child_path(std::string_view parent, std::string_view name) {
    std::string out(parent);
    if (out != "/") out += '/';
    out += name;
    return out;
}

bool is_child(std::string_view child, std::string_view parent) {
    if (parent == "/") return true;
    if (child.size() < parent.size() || child.substr(0, parent.size()) != parent) return false;
    return child.size() == parent.size() || child[parent.size()] == '/';
}

std::optional<std::uint32_t> parse_u32(std::string_view text) {
    if (text.empty() || text.size() > 10) return std::nullopt;
    for (char c : text)
        if (c < '0' || c > '9') return std::nullopt;
    std::uint32_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

std::optional<DomId> parse_domid(std::string_view text) {
    auto value = parse_u32(text);
    if (!value || *value > 0xFFFF) return std::nullopt;
    return static_cast<DomId>(*value);
}

std::optional<Perm> parse_perm(std::string_view text) {
    if (text.empty()) return std::nullopt;
    std::uint8_t bits = 0;
    switch (text.front()) {
    case 'n':
        bits = kPermNone;
        break;
    case 'r':
        bits = kPermRead;
        break;
    case 'w':
        bits = kPermWrite;
        break;
    case 'b':
        bits = kPermRead | kPermWrite;
        break;
    default:
        return std::nullopt;
    }
    auto id = parse_domid(text.substr(1));
    if (!id) return std::nullopt;
    return Perm{*id, bits};
}

std::string format_perm(Perm perm) {
    static constexpr char kLetters[4] = {'n', 'r', 'w', 'b'};
    std::string out(1, kLetters[perm.bits & (kPermRead | kPermWrite)]);
    out += std::to_string(perm.id);
    return out;
}

std::vector<std::string_view> split_strings(std::string_view payload, std::size_t* trailing) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (start < payload.size()) {
        std::size_t nul = payload.find('\0', start);
        if (nul == std::string_view::npos) break;
        out.push_back(payload.substr(start, nul - start));
        start = nul + 1;
    }
    if (trailing) *trailing = payload.size() - start;
    return out;
}

} // namespace dpnb::hv::sim::xs
