// The management client: connects to dpnetbackd's socket, sends one request line, reads
// one response line, with a deadline on the whole exchange.
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dpnb/mgmt/protocol.hpp"

namespace dpnb::mgmt {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1 << 30));
}

} // namespace

Result<Client> Client::connect(const std::string& path, std::chrono::milliseconds timeout) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return make_error(Errc::invalid_argument, "socket path \"" + path + "\" is too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return make_error(Errc::io, std::string("socket: ") + std::strerror(errno), errno);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        ::close(fd);
        switch (err) {
        case ENOENT:
            return make_error(Errc::not_found, path + ": no such socket (is dpnetbackd running?)",
                              err);
        case ECONNREFUSED:
            return make_error(Errc::closed,
                              path + ": connection refused (dpnetbackd is not running)", err);
        case EACCES:
        case EPERM:
            return make_error(Errc::permission_denied,
                              path + ": permission denied (root or the configured group only)",
                              err);
        default:
            return make_error(Errc::io, path + ": " + std::strerror(err), err);
        }
    }
    return Client(fd, timeout);
}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), timeout_(other.timeout_),
      buffer_(std::move(other.buffer_)) {}

Client& Client::operator=(Client&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        timeout_ = other.timeout_;
        buffer_ = std::move(other.buffer_);
    }
    return *this;
}

Client::~Client() {
    if (fd_ >= 0) ::close(fd_);
}

Result<Response> Client::call(const Request& request) {
    if (fd_ < 0) return make_error(Errc::closed, "not connected");
    const auto deadline = Clock::now() + timeout_;
    const std::string out = format_request(request);
    std::size_t sent = 0;
    while (sent < out.size()) {
        pollfd p{fd_, POLLOUT, 0};
        const int n = ::poll(&p, 1, remaining_ms(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return make_error(Errc::again, "timed out sending the request");
        const ssize_t w = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            // The daemon may have answered and closed before it read the request (it
            // refuses a peer at accept: permission denied, too many clients): read that
            // answer below rather than report the closed socket.
            if (errno == EPIPE || errno == ECONNRESET) break;
            return make_error(Errc::io, std::string("send: ") + std::strerror(errno), errno);
        }
        sent += static_cast<std::size_t>(w);
    }
    while (true) {
        if (const std::size_t nl = buffer_.find('\n'); nl != std::string::npos) {
            std::string line = buffer_.substr(0, nl);
            buffer_.erase(0, nl + 1);
            return parse_response(line);
        }
        if (buffer_.size() > kMaxResponse)
            return make_error(Errc::protocol, "response longer than the limit");
        pollfd p{fd_, POLLIN, 0};
        const int n = ::poll(&p, 1, remaining_ms(deadline));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return make_error(Errc::again, "timed out waiting for the daemon's answer");
        char buf[16384];
        const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            if (errno != ECONNRESET)
                return make_error(Errc::io, std::string("recv: ") + std::strerror(errno), errno);
        }
        if (r <= 0)
            return make_error(Errc::closed,
                              "the daemon closed the connection without answering (permission "
                              "denied or shutting down)");
        buffer_.append(buf, static_cast<std::size_t>(r));
    }
}

} // namespace dpnb::mgmt
