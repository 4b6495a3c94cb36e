// The simulated xenstore server's machinery: sockets, the epoll loop, connection I/O with
// bounded buffers, watch delivery, and domain introduction/release. The request handlers
// live in xs_requests.cpp; the tree in xs_store.cpp.
#include "xenstore/sim_xs_server.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <future>
#include <system_error>

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

// Xen's wire header: message types and the errno names of XS_ERROR replies.
#include <xen/io/xs_wire.h>

namespace dpnb::hv::sim::xs {

namespace {

constexpr std::uint64_t kWakeKey = std::uint64_t{1} << 62;
constexpr std::uint64_t kListenerKey = std::uint64_t{1} << 63;
constexpr std::size_t kHeaderSize = sizeof(xsd_sockmsg);
static_assert(kHeaderSize == 16);
static_assert(kPayloadMax == XENSTORE_PAYLOAD_MAX && kAbsPathMax == XENSTORE_ABS_PATH_MAX &&
              kRelPathMax == XENSTORE_REL_PATH_MAX);
// A client whose unread output passes this stops being read until it catches up.
constexpr std::size_t kOutputPauseBytes = 64 * 1024;
// Messages handled per readiness event of one connection, so that one busy client cannot
// keep the others waiting.
constexpr int kMessagesPerWakeup = 64;
constexpr int kAcceptsPerWakeup = 32;

Error sys_error(std::string what, int err) {
    return make_error(Errc::io, std::move(what) + ": " + std::strerror(err), err);
}

bool fill_sockaddr(const std::string& path, sockaddr_un& addr) {
    std::memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) return false;
    std::memcpy(addr.sun_path, path.data(), path.size());
    return true;
}

std::uint32_t load_u32(const unsigned char* p) {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

} // namespace

// --- start and stop ---------------------------------------------------------------------

Server::Server(std::string socket_dir, const XenstoreQuotas& quotas)
    : socket_dir_(std::move(socket_dir)), store_(quotas) {}

Result<std::unique_ptr<Server>> Server::start(const std::string& socket_dir,
                                              const XenstoreQuotas& quotas) {
    if (socket_dir.empty()) return make_error(Errc::invalid_argument, "empty xenstore folder");
    sockaddr_un probe;
    if (!fill_sockaddr(socket_dir + "/xenstore-65535.sock", probe))
        return make_error(Errc::invalid_argument,
                          "xenstore folder name too long for a UNIX socket: " + socket_dir);
    std::error_code ec;
    std::filesystem::create_directories(socket_dir, ec);
    if (ec) return make_error(Errc::io, "cannot create " + socket_dir + ": " + ec.message());

    std::unique_ptr<Server> server(new Server(socket_dir, quotas));
    server->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (server->epoll_fd_ < 0) return sys_error("epoll_create1", errno);
    server->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (server->wake_fd_ < 0) return sys_error("eventfd", errno);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeKey;
    if (epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->wake_fd_, &ev) != 0)
        return sys_error("epoll_ctl", errno);
    if (Status st = server->open_listener(kDom0); !st) return st.error();

    try {
        server->thread_ = std::thread([s = server.get()] {
            // Signals are for the process's other threads, but for the real-time ones: a
            // process that drops its capabilities asks each thread with one
            // (dpnetbackd's privileges.cpp), and an unhandled one ends the process wherever
            // it is delivered.
            sigset_t all;
            sigfillset(&all);
            for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig)
                sigdelset(&all, sig);
            pthread_sigmask(SIG_SETMASK, &all, nullptr);
            s->loop();
        });
    } catch (const std::system_error& e) {
        return make_error(Errc::io, std::string("cannot start the xenstore thread: ") + e.what(),
                          e.code().value());
    }
    return server;
}

Server::~Server() {
    if (thread_.joinable()) {
        stop_.store(true);
        std::uint64_t one = 1;
        ssize_t n = ::write(wake_fd_, &one, sizeof(one));
        (void)n;
        thread_.join();
    }
    std::vector<std::uint64_t> keys;
    for (const auto& [key, conn] : connections_)
        keys.push_back(key);
    for (auto key : keys)
        close_connection(key);
    for (auto& [dom, domain] : domains_) {
        if (domain.listen_fd >= 0) ::close(domain.listen_fd);
        ::unlink(domain.socket_path.c_str());
    }
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

std::string Server::socket_path(DomId dom) const {
    return socket_dir_ + "/xenstore-" + std::to_string(dom) + ".sock";
}

Status Server::run_on_loop(std::function<Status()> task) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto done = promise->get_future();
    {
        std::lock_guard lock(tasks_mutex_);
        if (loop_dead_) return make_error(Errc::closed, "xenstore server thread has stopped");
        tasks_.emplace_back([promise, task = std::move(task)] { promise->set_value(task()); });
    }
    std::uint64_t one = 1;
    if (::write(wake_fd_, &one, sizeof(one)) != sizeof(one)) {
        // The counter is far from overflowing; only a closed fd could get here.
        return sys_error("eventfd write", errno);
    }
    return done.get();
}

void Server::run_tasks() {
    std::uint64_t count;
    ssize_t n = ::read(wake_fd_, &count, sizeof(count));
    (void)n;
    std::deque<std::function<void()>> batch;
    {
        std::lock_guard lock(tasks_mutex_);
        batch.swap(tasks_);
    }
    for (auto& task : batch)
        task();
}

Status Server::introduce_domain(DomId dom, std::string_view name) {
    std::string copy(name);
    return run_on_loop([this, dom, copy] { return introduce(dom, copy, true); });
}

Status Server::release_domain(DomId dom) {
    return run_on_loop([this, dom] { return release(dom, true); });
}

// --- the loop ---------------------------------------------------------------------------

void Server::loop() {
    std::array<epoll_event, 64> events;
    while (!stop_.load()) {
        int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::critical("xenstore: epoll_wait failed: {}; server stops", std::strerror(errno));
            break;
        }
        for (int i = 0; i < n; ++i) {
            std::uint64_t key = events[static_cast<std::size_t>(i)].data.u64;
            std::uint32_t what = events[static_cast<std::size_t>(i)].events;
            if (key == kWakeKey) {
                run_tasks();
            } else if (key & kListenerKey) {
                auto it = domains_.find(static_cast<DomId>(key & 0xFFFF));
                if (it != domains_.end()) accept_on(it->second);
            } else {
                auto it = connections_.find(key);
                if (it == connections_.end()) continue; // closed earlier in this batch
                Connection& conn = *it->second;
                if (conn.doomed) continue;
                if (what & (EPOLLERR | EPOLLHUP)) {
                    // Gone (or broken): nobody is left to read replies.
                    doom(conn, {});
                    continue;
                }
                if (what & EPOLLOUT) flush(conn);
                if (what & EPOLLIN) on_readable(conn);
                if (!conn.doomed) update_interest(conn);
            }
        }
        reap();
    }
    std::deque<std::function<void()>> left;
    {
        std::lock_guard lock(tasks_mutex_);
        loop_dead_ = true;
        left.swap(tasks_);
    }
    // Callers waiting for these get their answer (the state is still consistent).
    for (auto& task : left)
        task();
}

// --- domains and sockets ----------------------------------------------------------------

Status Server::open_listener(DomId dom) {
    std::string path = socket_path(dom);
    sockaddr_un addr;
    if (!fill_sockaddr(path, addr))
        return make_error(Errc::invalid_argument, "socket path too long: " + path);

    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return make_error(Errc::exists, path + " exists and is not a socket");
        // A live server answers; a stale socket from a crashed one does not.
        int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) return sys_error("socket", errno);
        bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
        ::close(probe);
        if (live) return make_error(Errc::busy, "another xenstore server listens on " + path);
        ::unlink(path.c_str());
    }

    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error("socket", errno);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        int err = errno;
        ::close(fd);
        return sys_error("bind " + path, err);
    }
    if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd, 64) != 0) {
        int err = errno;
        ::close(fd);
        ::unlink(path.c_str());
        return sys_error("listen " + path, err);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerKey | dom;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int err = errno;
        ::close(fd);
        ::unlink(path.c_str());
        return sys_error("epoll_ctl", err);
    }
    DomainEntry& domain = domains_[dom];
    domain.id = dom;
    domain.listen_fd = fd;
    domain.socket_path = std::move(path);
    return ok();
}

Status Server::introduce(DomId dom, std::string_view name, bool create_home) {
    if (dom == kDom0 || dom >= kDomIdFirstReserved)
        return make_error(Errc::invalid_argument, "cannot introduce domain " + std::to_string(dom));
    if (domains_.count(dom))
        return make_error(Errc::exists, "domain " + std::to_string(dom) + " already introduced");
    if (name.size() > kPayloadMax / 2)
        return make_error(Errc::invalid_argument, "domain name too long");
    if (Status st = open_listener(dom); !st) return st;

    if (create_home) {
        // The layout libxl__domain_make writes: the home folder, device and control are
        // owned by dom0 and readable by the guest; the guest owns the rest.
        const Caller toolstack{kDom0, true, std::nullopt};
        const PermList readable{Perm{kDom0, kPermNone}, Perm{dom, kPermRead}};
        const PermList guest_owned{Perm{dom, kPermNone}};
        const std::string home = home_path(dom);
        Events events;
        View& tree = store_.global();
        int err = store_.rm(tree, toolstack, home, events); // a stale one
        auto node = [&](const std::string& sub, const PermList& perms) {
            if (err) return;
            std::string path = sub.empty() ? home : home + "/" + sub;
            if (!(err = store_.mkdir(tree, toolstack, path, events)))
                err = store_.set_perms(tree, toolstack, path, perms, events);
        };
        auto value = [&](const char* sub, std::string_view text) {
            if (!err) err = store_.write(tree, toolstack, home + "/" + sub, text, events);
        };
        node("", readable);
        value("name", name);
        value("domid", std::to_string(dom));
        node("device", readable);
        node("control", readable);
        for (const char* sub : {"control/shutdown", "data", "drivers", "feature", "attr", "error"})
            node(sub, guest_owned);
        fire(events);
        if (err) {
            Events undo;
            (void)store_.rm(tree, toolstack, home, undo);
            fire(undo);
            DomainEntry& domain = domains_[dom];
            epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, domain.listen_fd, nullptr);
            ::close(domain.listen_fd);
            ::unlink(domain.socket_path.c_str());
            domains_.erase(dom);
            return make_error(Errc::io, "cannot create " + home + ": " + std::strerror(err), err);
        }
    }
    fire_special("@introduceDomain");
    return ok();
}

Status Server::release(DomId dom, bool remove_home) {
    if (dom == kDom0) return make_error(Errc::invalid_argument, "dom0 cannot be released");
    auto it = domains_.find(dom);
    if (it == domains_.end())
        return make_error(Errc::not_found, "domain " + std::to_string(dom) + " not introduced");

    const Caller toolstack{kDom0, true, std::nullopt};
    Events events;
    if (remove_home) (void)store_.rm(store_.global(), toolstack, home_path(dom), events);
    fire(events);

    std::vector<std::uint64_t> keys;
    for (const auto& [key, conn] : connections_)
        if (conn->dom == dom) keys.push_back(key);
    for (auto key : keys)
        close_connection(key);
    DomainEntry& domain = it->second;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, domain.listen_fd, nullptr);
    ::close(domain.listen_fd);
    ::unlink(domain.socket_path.c_str());
    domains_.erase(it);
    for (auto& [id, other] : domains_)
        if (other.target == dom) other.target.reset();

    events.clear();
    store_.remove_domain(dom, events);
    fire(events);
    fire_special("@releaseDomain");
    return ok();
}

Caller Server::caller_of(const Connection& conn) const {
    Caller caller{conn.dom, conn.privileged, std::nullopt};
    auto it = domains_.find(conn.dom);
    if (it != domains_.end()) caller.target = it->second.target;
    return caller;
}

void Server::accept_on(DomainEntry& domain) {
    for (int i = 0; i < kAcceptsPerWakeup; ++i) {
        int fd = ::accept4(domain.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                // Level-triggered: stop listening until a connection closes.
                log_violation(domain.id, "cannot accept: out of file descriptors");
                epoll_event ev{};
                ev.data.u64 = kListenerKey | domain.id;
                epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, domain.listen_fd, &ev);
                domain.accept_paused = true;
            }
            return; // EAGAIN, or an aborted connection
        }
        const bool privileged = domain.id == kDom0;
        const std::size_t limit = privileged ? store_.quotas().privileged_connections
                                             : store_.quotas().connections_per_domain;
        if (domain.connections >= limit) {
            log_violation(domain.id, "too many connections");
            ::close(fd);
            continue;
        }
        auto conn = std::make_unique<Connection>();
        conn->key = next_key_++;
        conn->fd = fd;
        conn->dom = domain.id;
        conn->privileged = privileged;
        conn->epoll_events = EPOLLIN;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = conn->key;
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            ::close(fd);
            continue;
        }
        ++domain.connections;
        connections_.emplace(conn->key, std::move(conn));
    }
}

// --- connection I/O ---------------------------------------------------------------------

void Server::on_readable(Connection& conn) {
    for (int i = 0; i < kMessagesPerWakeup; ++i) {
        if (conn.doomed || conn.out_bytes > kOutputPauseBytes) return;
        if (!read_message(conn)) return;
    }
}

// Reads what is available of the current message; handles it once complete. False when
// nothing more can be read now (or the connection is doomed).
bool Server::read_message(Connection& conn) {
    auto receive = [&](void* buf, std::size_t len) -> ssize_t {
        for (;;) {
            ssize_t n = ::recv(conn.fd, buf, len, MSG_DONTWAIT);
            if (n > 0) return n;
            if (n == 0) {
                // A client may go away at any time, also in the middle of a message.
                doom(conn, {});
                return -1;
            }
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) doom(conn, {});
            return -1;
        }
    };

    if (!conn.in_payload) {
        ssize_t n = receive(conn.header.data() + conn.header_used, kHeaderSize - conn.header_used);
        if (n < 0) return false;
        conn.header_used += static_cast<std::size_t>(n);
        if (conn.header_used < kHeaderSize) return false;
        std::uint32_t len = load_u32(conn.header.data() + 12);
        if (len > kPayloadMax) {
            // As xenstored: the stream cannot be trusted any more.
            log_violation(conn.dom, "message longer than XENSTORE_PAYLOAD_MAX");
            doom(conn, "oversized message");
            return false;
        }
        conn.pending.type = load_u32(conn.header.data());
        conn.pending.req_id = load_u32(conn.header.data() + 4);
        conn.pending.tx_id = load_u32(conn.header.data() + 8);
        conn.payload.assign(len, '\0');
        conn.payload_used = 0;
        conn.in_payload = true;
    }
    if (conn.payload_used < conn.payload.size()) {
        ssize_t n = receive(conn.payload.data() + conn.payload_used,
                            conn.payload.size() - conn.payload_used);
        if (n < 0) return false;
        conn.payload_used += static_cast<std::size_t>(n);
        if (conn.payload_used < conn.payload.size()) return false;
    }
    conn.in_payload = false;
    conn.header_used = 0;
    Request req = conn.pending;
    std::string payload = std::move(conn.payload);
    conn.payload.clear();
    req.payload = payload;
    process(conn, req);
    return true;
}

void Server::flush(Connection& conn) {
    while (!conn.out.empty() && !conn.doomed) {
        const std::string& msg = conn.out.front();
        ssize_t n = ::send(conn.fd, msg.data() + conn.out_offset, msg.size() - conn.out_offset,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) doom(conn, {});
            return;
        }
        conn.out_offset += static_cast<std::size_t>(n);
        if (conn.out_offset < msg.size()) return;
        conn.out_bytes -= msg.size();
        conn.out_offset = 0;
        conn.out.pop_front();
    }
}

void Server::update_interest(Connection& conn) {
    std::uint32_t want = 0;
    if (conn.out_bytes <= kOutputPauseBytes) want |= EPOLLIN;
    if (!conn.out.empty()) want |= EPOLLOUT;
    if (want == conn.epoll_events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = conn.key;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev) != 0) {
        doom(conn, {});
        return;
    }
    conn.epoll_events = want;
}

void Server::doom(Connection& conn, std::string_view why) {
    if (!why.empty()) spdlog::debug("xenstore: dom{} connection closed: {}", conn.dom, why);
    conn.doomed = true;
}

void Server::reap() {
    std::vector<std::uint64_t> doomed;
    for (const auto& [key, conn] : connections_)
        if (conn->doomed) doomed.push_back(key);
    for (auto key : doomed)
        close_connection(key);
}

void Server::close_connection(std::uint64_t key) {
    auto it = connections_.find(key);
    if (it == connections_.end()) return;
    Connection& conn = *it->second;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conn.fd, nullptr);
    ::close(conn.fd);
    auto dom = domains_.find(conn.dom);
    if (dom != domains_.end()) {
        DomainEntry& domain = dom->second;
        --domain.connections;
        domain.watches -= conn.watches.size();
        domain.transaction_bytes -= conn.transaction_bytes;
    }
    connections_.erase(it);
    // Listeners of other domains paused for lack of fds may go on.
    for (auto& [id, domain] : domains_) {
        if (!domain.accept_paused) continue;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kListenerKey | domain.id;
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, domain.listen_fd, &ev) == 0)
            domain.accept_paused = false;
    }
}

// --- messages ---------------------------------------------------------------------------

void Server::send(Connection& conn, std::uint32_t type, std::uint32_t req_id, std::uint32_t tx_id,
                  std::string_view payload) {
    if (conn.doomed) return;
    xsd_sockmsg hdr{type, req_id, tx_id, static_cast<std::uint32_t>(payload.size())};
    std::string msg(kHeaderSize + payload.size(), '\0');
    std::memcpy(msg.data(), &hdr, kHeaderSize);
    std::memcpy(msg.data() + kHeaderSize, payload.data(), payload.size());
    const std::size_t limit = conn.privileged
                                  ? store_.quotas().privileged_output_bytes_per_connection
                                  : store_.quotas().output_bytes_per_connection;
    if (conn.out_bytes + msg.size() > limit) {
        // Replies are throttled by not reading; only watch events can pile up like this:
        // the client does not read what it asked for.
        log_violation(conn.dom, "does not read its watch events");
        doom(conn, "output queue full");
        return;
    }
    conn.out_bytes += msg.size();
    conn.out.push_back(std::move(msg));
    if (conn.out.size() == 1) flush(conn);
    if (!conn.doomed) update_interest(conn);
}

void Server::reply(Connection& conn, const Request& req, std::string_view payload) {
    if (payload.size() > kPayloadMax) {
        send_error(conn, req, E2BIG);
        return;
    }
    send(conn, req.type, req.req_id, req.tx_id, payload);
}

void Server::ack(Connection& conn, const Request& req) {
    reply(conn, req, std::string_view("OK", 3));
}

void Server::send_error(Connection& conn, const Request& req, int err) {
    const char* name = xsd_errors[0].errstring; // EINVAL, as xenstored for the unknown
    for (const auto& entry : xsd_errors)
        if (entry.errnum == err) name = entry.errstring;
    send(conn, XS_ERROR, req.req_id, req.tx_id, std::string_view(name, std::strlen(name) + 1));
}

void Server::process(Connection& conn, const Request& req) {
    const auto& table = handlers();
    if (req.type >= table.size() || !table[req.type].handler) {
        send_error(conn, req, ENOSYS);
        return;
    }
    const HandlerEntry& entry = table[req.type];
    if (entry.privileged_only && !conn.privileged) {
        send_error(conn, req, EACCES);
        return;
    }
    Transaction* txn = nullptr;
    if (!entry.ignores_transaction && req.tx_id != 0) {
        auto it = conn.transactions.find(req.tx_id);
        if (it == conn.transactions.end()) {
            send_error(conn, req, ENOENT);
            return;
        }
        txn = it->second.get();
    }
    if (int err = (this->*entry.handler)(conn, req, txn)) send_error(conn, req, err);
}

void Server::fire(Events& events) {
    for (const WatchEvent& event : events) {
        for (auto& [key, conn] : connections_) {
            if (conn->doomed || conn->watches.empty()) continue;
            const Caller caller = caller_of(*conn);
            bool readable = false;
            for (const auto& perms : event.readable_if_any)
                if (perm_for(caller, perms) & kPermRead) readable = true;
            if (!readable) continue;
            for (const Watch& watch : conn->watches) {
                bool match =
                    event.exact ? event.path == watch.node : is_child(event.path, watch.node);
                if (!match) continue;
                std::string_view path = event.path;
                if (watch.relative_prefix && path.size() > watch.relative_prefix) {
                    path.remove_prefix(watch.relative_prefix);
                    if (path.front() == '/') path.remove_prefix(1);
                }
                std::string body(path);
                body += '\0';
                body += watch.token;
                body += '\0';
                if (body.size() <= kPayloadMax) send(*conn, XS_WATCH_EVENT, 0, 0, body);
            }
        }
    }
    events.clear();
}

void Server::fire_special(std::string_view name) {
    for (auto& [key, conn] : connections_) {
        if (conn->doomed || conn->watches.empty()) continue;
        if (!store_.special_readable(caller_of(*conn), name)) continue;
        for (const Watch& watch : conn->watches) {
            if (!is_child(name, watch.node)) continue;
            std::string body(name);
            body += '\0';
            body += watch.token;
            body += '\0';
            if (body.size() <= kPayloadMax) send(*conn, XS_WATCH_EVENT, 0, 0, body);
        }
    }
}

void Server::log_violation(DomId dom, std::string_view what) {
    // Rate-limited: a hostile guest must not be able to flood dom0's log.
    std::uint64_t count = 0;
    auto it = domains_.find(dom);
    if (it != domains_.end()) count = it->second.violations++;
    if (count < 16 || count % 1024 == 0)
        spdlog::warn("xenstore: dom{}: {} (violation {})", dom, what, count + 1);
}

// --- the public face --------------------------------------------------------------------

} // namespace dpnb::hv::sim::xs

namespace dpnb::hv::sim {

Result<std::unique_ptr<XenstoreServer>> XenstoreServer::start(const std::string& socket_dir) {
    return start(socket_dir, XenstoreQuotas{});
}

Result<std::unique_ptr<XenstoreServer>> XenstoreServer::start(const std::string& socket_dir,
                                                              const XenstoreQuotas& quotas) {
    auto server = xs::Server::start(socket_dir, quotas);
    if (!server) return std::move(server).error();
    std::unique_ptr<XenstoreServer> out(new XenstoreServer());
    out->server_ = std::move(*server);
    return out;
}

XenstoreServer::~XenstoreServer() = default;

Status XenstoreServer::introduce_domain(DomId dom, std::string_view name) {
    return server_->introduce_domain(dom, name);
}

Status XenstoreServer::release_domain(DomId dom) {
    return server_->release_domain(dom);
}

std::string XenstoreServer::socket_path(DomId dom) const {
    return server_->socket_path(dom);
}

} // namespace dpnb::hv::sim
