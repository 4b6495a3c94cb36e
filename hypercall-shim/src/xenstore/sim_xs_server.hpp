// Inside the simulated xenstore server: one epoll thread that owns the tree (xs_store.hpp),
// the per-domain listening sockets, the connections with their watches and transactions,
// and the xs_wire request handlers (xs_requests.cpp, a table indexed by message type).
//
// Threading: everything below is touched by the server thread only. The public methods
// (introduce_domain, release_domain) are queued to that thread through an eventfd and
// waited for, so the inside needs no locks.
//
// A connection's rights come from the socket it connected through: xenstore-<dom>.sock
// makes it domain <dom>; dom0's is privileged. Misbehaviour that desynchronises the stream
// (an oversized header length) or exhausts a quota that cannot be answered with an error
// (unread output) disconnects that client only.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dpnb/hv/sim_xenstore_server.hpp"
#include "xenstore/xs_store.hpp"

namespace dpnb::hv::sim::xs {

struct Watch {
    std::string node; // canonical path, or a special name ("@releaseDomain")
    std::string token;
    std::size_t relative_prefix = 0; // registered relative: strip this much from event paths
};

struct Request {
    std::uint32_t type = 0;
    std::uint32_t req_id = 0;
    std::uint32_t tx_id = 0;
    std::string_view payload;
};

struct Connection {
    std::uint64_t key = 0; // epoll key
    int fd = -1;
    DomId dom = 0;
    bool privileged = false;

    // Input: the 16-byte xsd_sockmsg header, then at most kPayloadMax bytes of payload.
    std::array<unsigned char, 16> header{};
    std::size_t header_used = 0;
    bool in_payload = false;
    Request pending;
    std::string payload;
    std::size_t payload_used = 0;

    // Output: whole messages; the first one possibly partly sent.
    std::deque<std::string> out;
    std::size_t out_offset = 0;
    std::size_t out_bytes = 0;
    std::uint32_t epoll_events = 0;

    std::vector<Watch> watches;
    std::map<std::uint32_t, std::unique_ptr<Transaction>> transactions;
    std::uint32_t next_transaction_id = 1;
    std::size_t transaction_bytes = 0;

    bool doomed = false; // closed at the end of the current loop iteration
};

struct DomainEntry {
    DomId id = 0;
    int listen_fd = -1;
    std::string socket_path;
    std::optional<DomId> target; // XS_SET_TARGET
    std::size_t connections = 0;
    std::size_t watches = 0;
    std::size_t transaction_bytes = 0;
    std::uint64_t violations = 0; // for rate-limited logging
    bool accept_paused = false;   // out of file descriptors
};

class Server {
public:
    static Result<std::unique_ptr<Server>> start(const std::string& socket_dir,
                                                 const XenstoreQuotas& quotas);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Thread-safe: run on the server thread.
    Status introduce_domain(DomId dom, std::string_view name);
    Status release_domain(DomId dom);
    std::string socket_path(DomId dom) const;

private:
    using Handler = int (Server::*)(Connection&, const Request&, Transaction*);
    struct HandlerEntry {
        const char* name = nullptr;
        Handler handler = nullptr;
        bool ignores_transaction = false; // XS_FLAG_NOTID
        bool privileged_only = false;     // XS_FLAG_PRIV
    };
    static const std::array<HandlerEntry, 23>& handlers();

    Server(std::string socket_dir, const XenstoreQuotas& quotas);
    Status run_on_loop(std::function<Status()> task);
    void loop();
    void run_tasks();

    // Domains and sockets.
    Status open_listener(DomId dom);
    Status introduce(DomId dom, std::string_view name, bool create_home);
    Status release(DomId dom, bool remove_home);
    void accept_on(DomainEntry& domain);
    Caller caller_of(const Connection& conn) const;

    // Connection I/O.
    void on_readable(Connection& conn);
    bool read_message(Connection& conn);
    void flush(Connection& conn);
    void update_interest(Connection& conn);
    void doom(Connection& conn, std::string_view why);
    void reap();
    void close_connection(std::uint64_t key);

    // Messages.
    void process(Connection& conn, const Request& req);
    void send(Connection& conn, std::uint32_t type, std::uint32_t req_id, std::uint32_t tx_id,
              std::string_view payload);
    void reply(Connection& conn, const Request& req, std::string_view payload);
    void ack(Connection& conn, const Request& req);
    void send_error(Connection& conn, const Request& req, int err);
    void fire(Events& events);
    void fire_special(std::string_view name);
    void forget_transaction(Connection& conn, std::uint32_t id);

    // Request handlers (xs_requests.cpp); each returns 0 after replying, or an errno.
    int op_read(Connection&, const Request&, Transaction*);
    int op_write(Connection&, const Request&, Transaction*);
    int op_mkdir(Connection&, const Request&, Transaction*);
    int op_rm(Connection&, const Request&, Transaction*);
    int op_directory(Connection&, const Request&, Transaction*);
    int op_directory_part(Connection&, const Request&, Transaction*);
    int op_get_perms(Connection&, const Request&, Transaction*);
    int op_set_perms(Connection&, const Request&, Transaction*);
    int op_watch(Connection&, const Request&, Transaction*);
    int op_unwatch(Connection&, const Request&, Transaction*);
    int op_reset_watches(Connection&, const Request&, Transaction*);
    int op_transaction_start(Connection&, const Request&, Transaction*);
    int op_transaction_end(Connection&, const Request&, Transaction*);
    int op_get_domain_path(Connection&, const Request&, Transaction*);
    int op_introduce(Connection&, const Request&, Transaction*);
    int op_release(Connection&, const Request&, Transaction*);
    int op_is_domain_introduced(Connection&, const Request&, Transaction*);
    int op_resume(Connection&, const Request&, Transaction*);
    int op_set_target(Connection&, const Request&, Transaction*);
    int op_control(Connection&, const Request&, Transaction*);

    // Runs a tree operation in the request's transaction or on the global tree, keeping
    // the domain's transaction memory accounted and firing (or queueing) its events.
    int with_view(Connection& conn, Transaction* txn, const std::function<int(View&, Events&)>& op);
    std::optional<std::string> node_path(const Connection& conn, std::string_view path) const;
    void log_violation(DomId dom, std::string_view what);

    const std::string socket_dir_;
    Store store_;
    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    std::thread thread_;
    std::atomic<bool> stop_{false};

    std::mutex tasks_mutex_;
    std::deque<std::function<void()>> tasks_;
    bool loop_dead_ = false; // under tasks_mutex_

    std::map<DomId, DomainEntry> domains_;
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
    std::uint64_t next_key_ = 1;
};

} // namespace dpnb::hv::sim::xs
