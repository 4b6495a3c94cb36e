// The metrics endpoint: a small HTTP/1.0-1.1 server on the event loop that answers
// GET /metrics with the Prometheus text format (and nothing else). It is on loopback by
// default; whoever can reach it sees counters, never changes anything.
//
// Robustness over features: the request head is bounded (kMaxHead), must arrive within the
// timeout, and every response closes the connection (no keep-alive, no pipelining, no
// request bodies). Methods other than GET get 405, other paths 404, malformed heads 400,
// too many connections 503.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "dpnb/daemon/config.hpp"
#include "dpnb/daemon/event_loop.hpp"

namespace dpnb::daemon {

inline constexpr std::size_t kMaxHead = 8192;

struct HttpRequestHead {
    std::string method;
    std::string path; // without the query string
    int minor_version = 0;
};
// Parses a request head (up to and including the blank line). Errors: invalid_argument.
Result<HttpRequestHead> parse_http_head(std::string_view head);

class MetricsServer {
public:
    using Renderer = std::function<std::string()>;

    struct Stats {
        std::uint64_t scrapes = 0;
        std::uint64_t rejected = 0; // 4xx/5xx answers, timeouts
    };

    static Result<std::unique_ptr<MetricsServer>>
    create(EventLoop& loop, const MetricsConfig& config, Renderer render);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    void expire();
    // The address and port actually bound (port 0 in the config picks one; tests use it).
    std::uint16_t port() const noexcept { return port_; }
    const MetricsConfig& config() const noexcept { return config_; }
    // Timeout and max_clients can change without rebinding.
    void apply_limits(const MetricsConfig& config);
    const Stats& stats() const noexcept { return stats_; }

private:
    struct Connection {
        int fd = -1;
        std::string in;
        std::string out;
        std::chrono::steady_clock::time_point deadline;
        bool responded = false;
    };
    MetricsServer(EventLoop& loop, const MetricsConfig& config, Renderer render)
        : loop_(loop), config_(config), render_(std::move(render)) {}
    void on_accept();
    void on_event(int fd, std::uint32_t events);
    void respond(Connection& c, std::string_view head);
    void flush(Connection& c);
    void close_connection(int fd);

    EventLoop& loop_;
    MetricsConfig config_;
    Renderer render_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::map<int, std::unique_ptr<Connection>> connections_;
    Stats stats_;
};

} // namespace dpnb::daemon
