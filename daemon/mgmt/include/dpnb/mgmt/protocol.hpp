// The management protocol between dpnetbackd and dpnetbackctl (docs/cli.md): JSON over a
// UNIX stream socket, one request and one response per line.
//
//   request   {"command": "show", "args": {"vif": "vif1.0"}, "id": 7}
//   response  {"ok": true, "id": 7, "result": {...}}
//             {"ok": false, "id": 7, "error": {"code": "not_found", "message": "..."}}
//
// A connection may carry several requests, one after the other. A request line is at most
// kMaxRequest bytes; a response line at most kMaxResponse. Both ends validate what they
// read: the daemon treats the client as untrusted input (it may be any process in the
// socket's group), the client the same for the daemon's answers.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "dpnb/engine/data_plane.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::mgmt {

inline constexpr int kProtocolVersion = 1;
inline constexpr std::size_t kMaxRequest = 64 * 1024;
inline constexpr std::size_t kMaxResponse = 16 * 1024 * 1024;
inline constexpr std::string_view kDefaultSocket = "/run/dpnetback/dpnetbackd.sock";

using Json = nlohmann::json;

// Error codes on the wire: the names of dpnb::Errc ("not_found", "invalid_argument", ...)
// plus "bad_request" (not JSON, wrong types) and "unknown_command".
std::string_view wire_code(Errc code) noexcept;
inline constexpr std::string_view kBadRequest = "bad_request";
inline constexpr std::string_view kUnknownCommand = "unknown_command";

struct Request {
    std::string command;
    Json args = Json::object();
    Json id; // echoed back; null when the client sent none
};

// A line (without its '\n') -> Request. Errors: Errc::invalid_argument with the reason.
Result<Request> parse_request(std::string_view line);
std::string format_request(const Request& request); // with the trailing '\n'

struct Response {
    bool ok = false;
    Json id;
    Json result;            // ok
    std::string error_code; // !ok
    std::string error_message;
};
Result<Response> parse_response(std::string_view line);
std::string format_ok(const Json& id, const Json& result);
std::string format_error(const Json& id, std::string_view code, std::string_view message);

// "vif<dom>.<handle>" (Linux's netdev name) or a backend path
// "/local/domain/<backend>/backend/vif/<dom>/<handle>"; numbers without leading zeros.
Result<engine::VifId> parse_vif_ref(std::string_view text);

// Typed access to request arguments, with messages that name the argument.
Result<std::string> arg_string(const Json& args, std::string_view name);
Result<std::optional<std::string>> arg_optional_string(const Json& args, std::string_view name);
Result<std::optional<std::uint64_t>> arg_optional_uint(const Json& args, std::string_view name,
                                                       std::uint64_t max);

// The client side: one connection to the daemon.
class Client {
public:
    // Errors: Errc::not_found (no socket: the daemon is not running), Errc::closed (nobody
    // listens on it), Errc::permission_denied, Errc::io.
    static Result<Client> connect(const std::string& path, std::chrono::milliseconds timeout);
    Client(Client&& other) noexcept;
    Client& operator=(Client&& other) noexcept;
    ~Client();

    // Sends a request and waits for its response (or the timeout: Errc::again).
    Result<Response> call(const Request& request);

private:
    Client(int fd, std::chrono::milliseconds timeout) : fd_(fd), timeout_(timeout) {}
    int fd_ = -1;
    std::chrono::milliseconds timeout_;
    std::string buffer_;
};

} // namespace dpnb::mgmt
