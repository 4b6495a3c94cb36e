// The management socket server (mgmt_server.hpp): accept, SO_PEERCRED check, bounded
// request lines, responses written without blocking the event loop, idle timeouts.
#include "dpnb/daemon/mgmt_server.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <grp.h>
#include <sstream>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

#include "dpnb/daemon/logging.hpp"

namespace dpnb::daemon {

namespace {

using Clock = std::chrono::steady_clock;

Error sys_error(const std::string& what) {
    const int err = errno;
    return make_error(err == EACCES || err == EPERM ? Errc::permission_denied : Errc::io,
                      what + ": " + std::strerror(err), err);
}

// The supplementary groups of a process, from /proc/<pid>/status ("Groups: 4 24 27").
std::vector<gid_t> process_groups(pid_t pid) {
    std::vector<gid_t> out;
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Groups:", 0) != 0) continue;
        std::istringstream s(line.substr(7));
        unsigned long g = 0;
        while (s >> g)
            out.push_back(static_cast<gid_t>(g));
        break;
    }
    return out;
}

} // namespace

Result<gid_t> lookup_group(const std::string& name) {
    group gr{};
    group* found = nullptr;
    std::vector<char> buf(16384);
    const int rc = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (rc != 0 || !found)
        return make_error(Errc::not_found, "group \"" + name + "\" does not exist");
    return found->gr_gid;
}

bool peer_allowed(const PeerCred& peer, std::optional<gid_t> group) {
    if (peer.uid == 0 || peer.uid == geteuid()) return true;
    if (!group) return false;
    if (peer.gid == *group) return true;
    for (gid_t g : process_groups(peer.pid))
        if (g == *group) return true;
    return false;
}

Result<std::unique_ptr<ManagementServer>>
ManagementServer::create(EventLoop& loop, const ManagementConfig& config, Handler handler) {
    std::unique_ptr<ManagementServer> s(new ManagementServer(loop, config, std::move(handler)));
    if (!config.group.empty()) {
        auto g = lookup_group(config.group);
        if (!g) return make_error(Errc::not_found, "[management] group: " + g.error().message);
        s->gid_ = *g;
    }
    const std::string& path = config.socket;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return make_error(Errc::invalid_argument, path + ": socket path too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    // The folder: systemd's RuntimeDirectory (or tmpfiles.d) makes it; otherwise we do.
    const std::string dir = path.substr(0, path.rfind('/'));
    if (!dir.empty() && mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        return sys_error("creating " + dir);

    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error("socket");
    s->listen_fd_ = fd;

    // Another daemon answering on the path: refuse. A stale file (nobody listens): replace.
    {
        const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            const bool alive =
                ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
            ::close(probe);
            if (alive)
                return make_error(Errc::exists,
                                  path + ": another dpnetbackd is running (the socket answers)");
        }
        if (unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error("removing " + path);
    }
    // Created 0600 and opened up only after its group is set: no moment where others could
    // connect.
    const mode_t old = umask(0177);
    const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    umask(old);
    if (rc != 0) return sys_error("binding " + path);
    if (s->gid_ && chown(path.c_str(), static_cast<uid_t>(-1), *s->gid_) != 0)
        return sys_error("chown " + path);
    if (chmod(path.c_str(), 0660) != 0) return sys_error("chmod " + path);
    if (::listen(fd, 64) != 0) return sys_error("listen");
    ManagementServer* self = s.get();
    if (Status st = loop.add(fd, EPOLLIN, [self](std::uint32_t) { self->on_accept(); }); !st)
        return st.error();
    logger(Component::mgmt)
        ->info("management socket {} (group {})", path,
               config.group.empty() ? std::string("root only") : config.group);
    return s;
}

ManagementServer::~ManagementServer() {
    stop();
}

void ManagementServer::stop() {
    while (!connections_.empty())
        close_connection(connections_.begin()->first);
    if (listen_fd_ >= 0) {
        loop_.remove(listen_fd_);
        ::close(listen_fd_);
        listen_fd_ = -1;
        unlink(config_.socket.c_str());
    }
}

Status ManagementServer::apply(const ManagementConfig& config) {
    std::optional<gid_t> gid;
    if (!config.group.empty()) {
        auto g = lookup_group(config.group);
        if (!g) return make_error(Errc::not_found, "[management] group: " + g.error().message);
        gid = *g;
    }
    if (gid != gid_ && listen_fd_ >= 0) {
        // Without a group the socket goes back to root's group: root only.
        if (chown(config_.socket.c_str(), static_cast<uid_t>(-1), gid.value_or(0)) != 0) {
            Error e = sys_error("chown " + config_.socket);
            // A daemon started without a group gave CAP_CHOWN up (privileges.hpp).
            if (e.sys_errno == EPERM && !gid_)
                e.message += " (CAP_CHOWN was dropped after start-up, as management.group was "
                             "empty: restart dpnetbackd to set a group)";
            return e;
        }
    }
    gid_ = gid;
    config_.group = config.group;
    config_.timeout = config.timeout;
    config_.max_clients = config.max_clients;
    return ok();
}

void ManagementServer::on_accept() {
    while (true) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                logger(Component::mgmt)->warn("mgmt: accept: {}", std::strerror(errno));
            return;
        }
        ++stats_.connections;
        ucred cred{};
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            ::close(fd);
            continue;
        }
        PeerCred peer{cred.pid, cred.uid, cred.gid};
        auto c = std::make_unique<Connection>();
        c->fd = fd;
        c->peer = peer;
        c->deadline = Clock::now() + config_.timeout;
        if (!peer_allowed(peer, gid_)) {
            ++stats_.denied;
            logger(Component::mgmt)
                ->warn("mgmt: refused pid {} uid {} gid {}: not root{}", peer.pid, peer.uid,
                       peer.gid,
                       config_.group.empty() ? std::string() : " nor in group " + config_.group);
            c->out = mgmt::format_error(nullptr, mgmt::wire_code(Errc::permission_denied),
                                        "permission denied: root" +
                                            (config_.group.empty()
                                                 ? std::string(" only")
                                                 : " or group " + config_.group + " only"));
            c->closing = true;
        } else if (connections_.size() >= config_.max_clients) {
            c->out = mgmt::format_error(nullptr, mgmt::wire_code(Errc::busy),
                                        "too many management connections");
            c->closing = true;
        }
        Connection& ref = *c;
        connections_[fd] = std::move(c);
        ManagementServer* self = this;
        if (!loop_.add(fd, EPOLLIN | EPOLLRDHUP,
                       [self, fd](std::uint32_t ev) { self->on_event(fd, ev); })) {
            connections_.erase(fd);
            ::close(fd);
            continue;
        }
        if (ref.closing) flush(ref);
    }
}

void ManagementServer::on_event(int fd, std::uint32_t events) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    Connection& c = *it->second;
    if (events & EPOLLOUT) {
        flush(c);
        if (!connections_.count(fd)) return;
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) && !c.closing) {
        char buf[8192];
        while (true) {
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                c.in.append(buf, static_cast<std::size_t>(n));
                if (c.in.size() > mgmt::kMaxRequest + 1) break;
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                // The client is gone (or half-closed after its last request): answer what
                // is complete, then close.
                handle_lines(c);
                c.closing = true;
                if (c.out.empty())
                    close_connection(fd);
                else
                    flush(c);
                return;
            }
            if (errno == EAGAIN) break;
        }
        handle_lines(c);
        if (connections_.count(fd)) flush(c);
    } else if (events & (EPOLLHUP | EPOLLERR)) {
        close_connection(fd);
    }
}

void ManagementServer::handle_lines(Connection& c) {
    while (!c.closing) {
        const std::size_t nl = c.in.find('\n');
        if (nl == std::string::npos) {
            if (c.in.size() > mgmt::kMaxRequest) {
                ++stats_.bad_requests;
                c.out += mgmt::format_error(nullptr, mgmt::kBadRequest,
                                            "request longer than " +
                                                std::to_string(mgmt::kMaxRequest) + " bytes");
                c.closing = true;
            }
            return;
        }
        const std::string line = c.in.substr(0, nl);
        c.in.erase(0, nl + 1);
        c.deadline = Clock::now() + config_.timeout;
        auto req = mgmt::parse_request(line);
        if (!req) {
            ++stats_.bad_requests;
            c.out += mgmt::format_error(nullptr,
                                        req.error().code == Errc::unsupported
                                            ? mgmt::wire_code(Errc::unsupported)
                                            : mgmt::kBadRequest,
                                        req.error().message);
            c.closing = true; // the stream cannot be trusted any more
            return;
        }
        const mgmt::Response r = handler_(*req, c.peer);
        if (r.ok) {
            ++stats_.ok[req->command];
            c.out += mgmt::format_ok(req->id, r.result);
        } else {
            ++stats_.failed[req->command];
            c.out += mgmt::format_error(req->id, r.error_code, r.error_message);
        }
    }
}

void ManagementServer::flush(Connection& c) {
    const int fd = c.fd;
    while (!c.out.empty()) {
        const ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out.erase(0, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            (void)loop_.modify(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
            return;
        }
        close_connection(fd);
        return;
    }
    if (c.closing) {
        close_connection(fd);
        return;
    }
    (void)loop_.modify(fd, EPOLLIN | EPOLLRDHUP);
}

void ManagementServer::close_connection(int fd) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    loop_.remove(fd);
    ::close(fd);
    connections_.erase(it);
}

void ManagementServer::expire() {
    const auto now = Clock::now();
    std::vector<int> late;
    for (auto& [fd, c] : connections_)
        if (now > c->deadline) late.push_back(fd);
    for (int fd : late) {
        ++stats_.timeouts;
        close_connection(fd);
    }
}

} // namespace dpnb::daemon
