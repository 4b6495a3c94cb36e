// The metrics endpoint's HTTP handling (http_server.hpp).
#include "dpnb/daemon/http_server.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dpnb/daemon/logging.hpp"

namespace dpnb::daemon {

namespace {

using Clock = std::chrono::steady_clock;

bool is_token_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

std::string response(int code, std::string_view reason, std::string_view content_type,
                     std::string_view body, std::string_view extra = {}) {
    std::string r = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) + "\r\n";
    r += "Content-Type: " + std::string(content_type) + "\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    r += "Connection: close\r\n";
    r += "Cache-Control: no-store\r\n";
    r += extra;
    r += "\r\n";
    r += body;
    return r;
}

std::string error_page(int code, std::string_view reason, std::string_view extra = {}) {
    return response(code, reason, "text/plain; charset=utf-8",
                    std::to_string(code) + " " + std::string(reason) + "\n", extra);
}

} // namespace

Result<HttpRequestHead> parse_http_head(std::string_view head) {
    const std::size_t eol = head.find("\r\n");
    const std::string_view line = head.substr(0, eol == std::string_view::npos ? head.size() : eol);
    const std::size_t sp1 = line.find(' ');
    const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
        line.find(' ', sp2 + 1) != std::string_view::npos)
        return make_error(Errc::invalid_argument, "malformed request line");
    HttpRequestHead h;
    h.method = std::string(line.substr(0, sp1));
    if (h.method.empty() || h.method.size() > 16 ||
        !std::all_of(h.method.begin(), h.method.end(), is_token_char))
        return make_error(Errc::invalid_argument, "malformed method");
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (version == "HTTP/1.0")
        h.minor_version = 0;
    else if (version == "HTTP/1.1")
        h.minor_version = 1;
    else
        return make_error(Errc::invalid_argument, "unsupported HTTP version");
    if (target.empty() || target.front() != '/')
        return make_error(Errc::invalid_argument, "request target must be a path");
    for (char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            return make_error(Errc::invalid_argument, "bad character in the path");
    if (const std::size_t q = target.find('?'); q != std::string_view::npos)
        target = target.substr(0, q);
    h.path = std::string(target);
    // Header lines: only their shape is checked; none changes the answer.
    std::size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
    while (pos < head.size()) {
        const std::size_t e = head.find("\r\n", pos);
        if (e == std::string_view::npos) return make_error(Errc::invalid_argument, "unterminated");
        const std::string_view h_line = head.substr(pos, e - pos);
        if (h_line.empty()) break;
        const std::size_t colon = h_line.find(':');
        if (colon == 0 || colon == std::string_view::npos)
            return make_error(Errc::invalid_argument, "malformed header line");
        pos = e + 2;
    }
    return h;
}

Result<std::unique_ptr<MetricsServer>>
MetricsServer::create(EventLoop& loop, const MetricsConfig& config, Renderer render) {
    std::unique_ptr<MetricsServer> s(new MetricsServer(loop, config, std::move(render)));
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family = AF_INET;
    if (config.address.find(':') != std::string::npos) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(config.port);
        if (inet_pton(AF_INET6, config.address.c_str(), &a6->sin6_addr) != 1)
            return make_error(Errc::invalid_argument, "[metrics] address: \"" + config.address +
                                                          "\" is not an IPv6 address");
        len = sizeof(sockaddr_in6);
        family = AF_INET6;
    } else {
        auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
        a4->sin_family = AF_INET;
        a4->sin_port = htons(config.port);
        if (inet_pton(AF_INET, config.address.c_str(), &a4->sin_addr) != 1)
            return make_error(Errc::invalid_argument, "[metrics] address: \"" + config.address +
                                                          "\" is not an IPv4 address");
        len = sizeof(sockaddr_in);
    }
    const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return make_error(Errc::io, std::string("socket: ") + std::strerror(errno), errno);
    s->listen_fd_ = fd;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        const int err = errno;
        return make_error(err == EADDRINUSE ? Errc::busy : Errc::io,
                          "metrics endpoint " + config.address + ":" + std::to_string(config.port) +
                              ": " + std::strerror(err),
                          err);
    }
    if (::listen(fd, 64) != 0)
        return make_error(Errc::io, std::string("listen: ") + std::strerror(errno), errno);
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
    s->port_ = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    MetricsServer* self = s.get();
    if (Status st = loop.add(fd, EPOLLIN, [self](std::uint32_t) { self->on_accept(); }); !st)
        return st.error();
    logger(Component::mgmt)
        ->info("metrics: http://{}{}{}:{}/metrics", family == AF_INET6 ? "[" : "", config.address,
               family == AF_INET6 ? "]" : "", s->port_);
    return s;
}

MetricsServer::~MetricsServer() {
    while (!connections_.empty())
        close_connection(connections_.begin()->first);
    if (listen_fd_ >= 0) {
        loop_.remove(listen_fd_);
        ::close(listen_fd_);
    }
}

void MetricsServer::apply_limits(const MetricsConfig& config) {
    config_.timeout = config.timeout;
    config_.max_clients = config.max_clients;
}

void MetricsServer::on_accept() {
    while (true) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        auto c = std::make_unique<Connection>();
        c->fd = fd;
        c->deadline = Clock::now() + config_.timeout;
        Connection& ref = *c;
        const bool full = connections_.size() >= config_.max_clients;
        connections_[fd] = std::move(c);
        MetricsServer* self = this;
        if (!loop_.add(fd, EPOLLIN | EPOLLRDHUP,
                       [self, fd](std::uint32_t ev) { self->on_event(fd, ev); })) {
            connections_.erase(fd);
            ::close(fd);
            continue;
        }
        if (full) {
            ++stats_.rejected;
            ref.out = error_page(503, "Service Unavailable");
            ref.responded = true;
            flush(ref);
        }
    }
}

void MetricsServer::on_event(int fd, std::uint32_t events) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    Connection& c = *it->second;
    if (c.responded) {
        if (events & EPOLLOUT)
            flush(c);
        else if (events & (EPOLLHUP | EPOLLERR))
            close_connection(fd);
        else {
            // Discard anything else the client sends after its request.
            char sink[4096];
            const ssize_t n = ::recv(fd, sink, sizeof sink, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) close_connection(fd);
        }
        return;
    }
    char buf[4096];
    while (c.in.size() <= kMaxHead) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            c.in.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        // Closed before a whole head arrived.
        close_connection(fd);
        return;
    }
    std::size_t end = c.in.find("\r\n\r\n");
    std::size_t skip = 4;
    if (end == std::string::npos) {
        // Be lenient with bare LF line ends (netcat, some scripts): normalise.
        end = c.in.find("\n\n");
        skip = 2;
    }
    if (end == std::string::npos) {
        if (c.in.size() > kMaxHead) {
            ++stats_.rejected;
            c.out = error_page(431, "Request Header Fields Too Large");
            c.responded = true;
            flush(c);
        }
        return;
    }
    std::string head = c.in.substr(0, end + skip);
    if (skip == 2) {
        std::string fixed;
        for (char ch : head) {
            if (ch == '\n' && (fixed.empty() || fixed.back() != '\r')) fixed += '\r';
            fixed += ch;
        }
        head = fixed;
    }
    respond(c, head);
}

void MetricsServer::respond(Connection& c, std::string_view head) {
    c.responded = true;
    auto h = parse_http_head(head);
    if (!h) {
        ++stats_.rejected;
        c.out = error_page(400, "Bad Request");
    } else if (h->method != "GET") {
        ++stats_.rejected;
        c.out = error_page(405, "Method Not Allowed", "Allow: GET\r\n");
    } else if (h->path == "/metrics") {
        ++stats_.scrapes;
        c.out = response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_());
    } else if (h->path == "/") {
        c.out = response(200, "OK", "text/plain; charset=utf-8",
                         "dpnetbackd: Prometheus metrics at /metrics\n");
    } else {
        ++stats_.rejected;
        c.out = error_page(404, "Not Found");
    }
    flush(c);
}

void MetricsServer::flush(Connection& c) {
    const int fd = c.fd;
    while (!c.out.empty()) {
        const ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out.erase(0, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            (void)loop_.modify(fd, EPOLLOUT | EPOLLRDHUP);
            return;
        }
        break;
    }
    // Everything written (or the peer is gone): half-close so the client sees the end.
    ::shutdown(fd, SHUT_WR);
    close_connection(fd);
}

void MetricsServer::close_connection(int fd) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    loop_.remove(fd);
    ::close(fd);
    connections_.erase(it);
}

void MetricsServer::expire() {
    const auto now = Clock::now();
    std::vector<int> late;
    for (auto& [fd, c] : connections_)
        if (now > c->deadline) late.push_back(fd);
    for (int fd : late) {
        ++stats_.rejected;
        close_connection(fd);
    }
}

} // namespace dpnb::daemon
