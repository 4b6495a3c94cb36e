// Encoding and validation of management requests and responses (protocol.hpp). JSON is
// parsed without exceptions (nlohmann's `allow_exceptions = false`) and its nesting is bounded
// before it is parsed, so a hostile client costs at most kMaxRequest bytes of work.
#include "dpnb/mgmt/protocol.hpp"

#include <charconv>

#include "dpnb/netif/xs_value.hpp"

namespace dpnb::mgmt {

namespace {

constexpr int kMaxDepth = 16;

// Nesting depth of a JSON text (brackets outside strings); the parser and the destructor of
// deep documents recurse, so deep ones are refused before parsing.
bool too_deep(std::string_view text) {
    int depth = 0;
    bool in_string = false;
    bool escape = false;
    for (char c : text) {
        if (in_string) {
            if (escape)
                escape = false;
            else if (c == '\\')
                escape = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > kMaxDepth) return true;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return false;
}

Result<Json> parse_json(std::string_view line, std::string_view what, std::size_t limit) {
    if (line.size() > limit)
        return make_error(Errc::invalid_argument,
                          std::string(what) + " longer than " + std::to_string(limit) + " bytes");
    if (too_deep(line))
        return make_error(Errc::invalid_argument,
                          std::string(what) + " nested deeper than " + std::to_string(kMaxDepth));
    Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded())
        return make_error(Errc::invalid_argument, std::string(what) + " is not valid JSON");
    if (!j.is_object())
        return make_error(Errc::invalid_argument, std::string(what) + " is not a JSON object");
    return j;
}

bool valid_command(std::string_view s) {
    if (s.empty() || s.size() > 32) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || c == '-' || c == '_')) return false;
    return true;
}

// Unsigned decimal without sign or leading zeros, at most `max`.
std::optional<std::uint32_t> number(std::string_view s, std::uint32_t max) {
    if (s.empty() || s.size() > 10 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > max) return std::nullopt;
    return static_cast<std::uint32_t>(v);
}

} // namespace

std::string_view wire_code(Errc code) noexcept {
    return errc_name(code);
}

Result<Request> parse_request(std::string_view line) {
    auto j = parse_json(line, "request", kMaxRequest);
    if (!j) return j.error();
    Request r;
    for (auto& [key, value] : j->items()) {
        if (key == "command") {
            if (!value.is_string() || !valid_command(value.get_ref<const std::string&>()))
                return make_error(Errc::invalid_argument,
                                  "\"command\" must be a command name (lower case letters, '-')");
            r.command = value.get<std::string>();
        } else if (key == "args") {
            if (!value.is_object())
                return make_error(Errc::invalid_argument, "\"args\" must be an object");
            r.args = value;
        } else if (key == "id") {
            if (!(value.is_number_integer() || value.is_string() || value.is_null()) ||
                (value.is_string() && value.get_ref<const std::string&>().size() > 64))
                return make_error(Errc::invalid_argument,
                                  "\"id\" must be an integer or a short string");
            r.id = value;
        } else if (key == "version") {
            if (!value.is_number_integer() || value.get<std::int64_t>() != kProtocolVersion)
                return make_error(Errc::unsupported, "protocol version " + value.dump() +
                                                         " is not " +
                                                         std::to_string(kProtocolVersion));
        } else {
            return make_error(Errc::invalid_argument,
                              "unknown request field \"" + key.substr(0, 32) + "\"");
        }
    }
    if (r.command.empty()) return make_error(Errc::invalid_argument, "no \"command\"");
    return r;
}

std::string format_request(const Request& request) {
    Json j = {{"version", kProtocolVersion}, {"command", request.command}, {"args", request.args}};
    if (!request.id.is_null()) j["id"] = request.id;
    return j.dump() + "\n";
}

Result<Response> parse_response(std::string_view line) {
    auto j = parse_json(line, "response", kMaxResponse);
    if (!j) return j.error();
    Response r;
    auto ok = j->find("ok");
    if (ok == j->end() || !ok->is_boolean())
        return make_error(Errc::protocol, "response without a boolean \"ok\"");
    r.ok = ok->get<bool>();
    if (auto id = j->find("id"); id != j->end()) r.id = *id;
    if (r.ok) {
        if (auto res = j->find("result"); res != j->end()) r.result = *res;
        return r;
    }
    auto err = j->find("error");
    if (err == j->end() || !err->is_object())
        return make_error(Errc::protocol, "error response without an \"error\" object");
    auto code = err->find("code");
    auto msg = err->find("message");
    if (code == err->end() || !code->is_string() || msg == err->end() || !msg->is_string())
        return make_error(Errc::protocol, "error response without a code and a message");
    r.error_code = code->get<std::string>();
    r.error_message = msg->get<std::string>();
    return r;
}

std::string format_ok(const Json& id, const Json& result) {
    Json j = {{"ok", true}, {"result", result}};
    if (!id.is_null()) j["id"] = id;
    // Strings that came from xenstore may hold invalid UTF-8: replace rather than throw.
    return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string format_error(const Json& id, std::string_view code, std::string_view message) {
    Json j = {{"ok", false},
              {"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
    if (!id.is_null()) j["id"] = id;
    return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

Result<engine::VifId> parse_vif_ref(std::string_view text) {
    if (!text.empty() && text.front() == '/') {
        auto p = netif::parse_backend_path(text);
        if (!p) return p.error();
        return engine::VifId{p->frontend, p->handle};
    }
    const std::string_view original = text;
    const auto bad = [&] {
        return make_error(Errc::invalid_argument,
                          "\"" + std::string(original.substr(0, 64)) +
                              "\" is not a vif name (vif<domid>.<handle>, e.g. vif3.0) or a "
                              "backend path");
    };
    if (text.substr(0, 3) != "vif") return bad();
    text.remove_prefix(3);
    const std::size_t dot = text.find('.');
    if (dot == std::string_view::npos) return bad();
    auto dom = number(text.substr(0, dot), netif::kDomIdFirstReserved - 1);
    auto handle = number(text.substr(dot + 1), netif::kMaxVifHandle);
    if (!dom || !handle) return bad();
    return engine::VifId{static_cast<netif::DomId>(*dom), *handle};
}

Result<std::string> arg_string(const Json& args, std::string_view name) {
    auto it = args.find(name);
    if (it == args.end())
        return make_error(Errc::invalid_argument, "missing argument \"" + std::string(name) + "\"");
    if (!it->is_string())
        return make_error(Errc::invalid_argument,
                          "argument \"" + std::string(name) + "\" must be a string");
    return it->get<std::string>();
}

Result<std::optional<std::string>> arg_optional_string(const Json& args, std::string_view name) {
    auto it = args.find(name);
    if (it == args.end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string())
        return make_error(Errc::invalid_argument,
                          "argument \"" + std::string(name) + "\" must be a string");
    return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<std::uint64_t>> arg_optional_uint(const Json& args, std::string_view name,
                                                       std::uint64_t max) {
    auto it = args.find(name);
    if (it == args.end() || it->is_null()) return std::optional<std::uint64_t>();
    if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<std::int64_t>() >= 0))
        return make_error(Errc::invalid_argument,
                          "argument \"" + std::string(name) + "\" must be a non-negative integer");
    const std::uint64_t v = it->get<std::uint64_t>();
    if (v > max)
        return make_error(Errc::invalid_argument, "argument \"" + std::string(name) +
                                                      "\": " + std::to_string(v) +
                                                      " is out of range 0.." + std::to_string(max));
    return std::optional<std::uint64_t>(v);
}

} // namespace dpnb::mgmt
