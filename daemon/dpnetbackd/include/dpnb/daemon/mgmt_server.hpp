// The management socket (docs/cli.md): a UNIX stream socket, mode 0660, owner root (the
// daemon's user), group from the configuration. Each connection's peer is checked with
// SO_PEERCRED (root, the daemon's own user, or a member of the group), and then sends
// request lines that the handler answers, one at a time, on the event loop's thread.
//
// The client is untrusted input: requests are bounded (mgmt::kMaxRequest), a connection
// that does not send a whole request within the timeout is closed, and at most
// max_clients connections are open at once (more are answered "busy" and closed).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/types.h>

#include "dpnb/daemon/config.hpp"
#include "dpnb/daemon/event_loop.hpp"
#include "dpnb/mgmt/protocol.hpp"

namespace dpnb::daemon {

struct PeerCred {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

// Whether `peer` may use the socket: uid 0, the daemon's effective uid, or (if `group` is
// set) a member of it, by primary or supplementary group (read from /proc/<pid>/status).
bool peer_allowed(const PeerCred& peer, std::optional<gid_t> group);

class ManagementServer {
public:
    // Returns the response (its id is filled in here).
    using Handler = std::function<mgmt::Response(const mgmt::Request&, const PeerCred&)>;

    struct Stats {
        std::uint64_t connections = 0;
        std::uint64_t denied = 0;       // peers refused by SO_PEERCRED
        std::uint64_t bad_requests = 0; // unparsable or oversized requests
        std::uint64_t timeouts = 0;
        std::map<std::string, std::uint64_t> ok;     // by command
        std::map<std::string, std::uint64_t> failed; // by command
    };

    // Binds the socket (creating its folder, mode 0755, if missing). Refuses when another
    // daemon answers on the path; a stale socket file is replaced.
    static Result<std::unique_ptr<ManagementServer>>
    create(EventLoop& loop, const ManagementConfig& config, Handler handler);
    // Closes every connection and removes the socket file.
    ~ManagementServer();
    ManagementServer(const ManagementServer&) = delete;
    ManagementServer& operator=(const ManagementServer&) = delete;

    // Reload: group (the socket's group is changed), timeout, max_clients. The path is
    // structural.
    Status apply(const ManagementConfig& config);
    // Closes connections idle past the timeout. Called from the daemon's timer.
    void expire();
    // Stops accepting (shutdown); connections in progress are closed.
    void stop();

    const Stats& stats() const noexcept { return stats_; }
    const std::string& path() const noexcept { return config_.socket; }

private:
    struct Connection {
        int fd = -1;
        PeerCred peer;
        std::string in;
        std::string out;
        std::chrono::steady_clock::time_point deadline;
        bool closing = false; // close once `out` is written
    };
    ManagementServer(EventLoop& loop, const ManagementConfig& config, Handler handler)
        : loop_(loop), config_(config), handler_(std::move(handler)) {}
    void on_accept();
    void on_event(int fd, std::uint32_t events);
    void handle_lines(Connection& c);
    void flush(Connection& c);
    void close_connection(int fd);

    EventLoop& loop_;
    ManagementConfig config_;
    Handler handler_;
    std::optional<gid_t> gid_;
    int listen_fd_ = -1;
    std::map<int, std::unique_ptr<Connection>> connections_;
    Stats stats_;
};

// The group id of a group name; Errc::not_found if there is no such group.
Result<gid_t> lookup_group(const std::string& name);

} // namespace dpnb::daemon
