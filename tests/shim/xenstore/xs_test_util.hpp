// Helpers for the xenstore tests: a fresh simulated server per test in its own temporary
// folder, running code as another domain in a forked child process, waiting for watch
// events through the watch fd with poll() (generous timeouts, never sleeps), and a raw
// xs_wire client for the hostile-client tests.
#pragma once

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dpnb/hv/sim_xenstore_server.hpp"
#include "dpnb/hv/xenstore_client.hpp"

namespace dpnb::hv::test {

inline constexpr int kWaitMs = 20000; // generous: the machine is shared and slow

// A temporary folder, removed with everything in it at the end.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/dpnb-xs-XXXXXX";
        const char* dir = ::mkdtemp(tmpl);
        if (dir) path_ = dir;
    }
    ~TempDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

class XenstoreTest : public ::testing::Test {
protected:
    void SetUp() override { start({}); }

    void start(const sim::XenstoreQuotas& quotas) {
        server_.reset();
        ASSERT_FALSE(dir_.path().empty());
        auto server = sim::XenstoreServer::start(dir_.path(), quotas);
        ASSERT_TRUE(server) << server.error().describe();
        server_ = std::move(*server);
    }

    std::unique_ptr<Xenstore> connect(DomId dom) {
        auto xs = open_xenstore(server_->socket_path(dom));
        EXPECT_TRUE(xs) << xs.error().describe();
        return xs ? std::move(*xs) : nullptr;
    }

    TempDir dir_;
    std::unique_ptr<sim::XenstoreServer> server_;
};

// "ok", or the name of the Errc that failed: children report with strings, the parent
// asserts.
inline std::string describe(const Status& st) {
    return st ? "ok" : std::string(dpnb::errc_name(st.error().code));
}
template <class T>
std::string describe(const Result<T>& r) {
    return r ? "ok" : std::string(dpnb::errc_name(r.error().code));
}

// Runs `body` in a child process and returns the string it produced. The child only talks
// to the server through its own connections and leaves with _exit, so nothing of the
// parent's state (server thread, gtest) is touched there.
inline std::string run_in_child(const std::function<std::string()>& body) {
    int fds[2];
    if (::pipe(fds) != 0) return "pipe failed";
    pid_t pid = ::fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
        ::close(fds[0]);
        std::string out = body();
        const char* p = out.data();
        std::size_t left = out.size();
        while (left > 0) {
            ssize_t n = ::write(fds[1], p, left);
            if (n <= 0) break;
            p += n;
            left -= static_cast<std::size_t>(n);
        }
        ::_exit(0);
    }
    ::close(fds[1]);
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fds[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) out += " [child failed]";
    return out;
}

// The next watch event, waiting on the watch fd with poll(); nullopt after `timeout_ms`.
inline std::optional<XsWatchEvent> next_event(Xenstore& xs, int timeout_ms = kWaitMs) {
    for (;;) {
        auto ev = xs.read_watch();
        if (!ev) {
            ADD_FAILURE() << "read_watch: " << ev.error().describe();
            return std::nullopt;
        }
        if (*ev) return **ev;
        pollfd pfd{xs.watch_fd(), POLLIN, 0};
        int n = ::poll(&pfd, 1, timeout_ms);
        if (n == 0) return std::nullopt;
        if (n < 0 && errno != EINTR) return std::nullopt;
    }
}

// Every event up to (not including) the first one with `token`; that one must come.
inline std::vector<XsWatchEvent> events_until(Xenstore& xs, const std::string& token) {
    std::vector<XsWatchEvent> seen;
    for (;;) {
        auto ev = next_event(xs);
        if (!ev) {
            ADD_FAILURE() << "no event with token " << token;
            return seen;
        }
        if (ev->token == token) return seen;
        seen.push_back(*ev);
    }
}

// A raw xs_wire client: for sending what libxenstore never would.
class RawClient {
public:
    explicit RawClient(const std::string& path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    ~RawClient() {
        if (fd_ >= 0) ::close(fd_);
    }
    bool connected() const { return fd_ >= 0; }
    int fd() const { return fd_; }

    bool send_raw(const void* data, std::size_t len) {
        const char* p = static_cast<const char*>(data);
        while (len > 0) {
            ssize_t n = ::send(fd_, p, len, MSG_NOSIGNAL);
            if (n <= 0) return false;
            p += n;
            len -= static_cast<std::size_t>(n);
        }
        return true;
    }

    static std::string message(std::uint32_t type, std::uint32_t req_id, std::uint32_t tx_id,
                               const std::string& payload) {
        std::uint32_t hdr[4] = {type, req_id, tx_id, static_cast<std::uint32_t>(payload.size())};
        std::string out(reinterpret_cast<const char*>(hdr), sizeof(hdr));
        return out + payload;
    }

    bool send_msg(std::uint32_t type, std::uint32_t req_id, const std::string& payload,
                  std::uint32_t tx_id = 0) {
        std::string msg = message(type, req_id, tx_id, payload);
        return send_raw(msg.data(), msg.size());
    }

    struct Reply {
        std::uint32_t type, req_id, tx_id;
        std::string payload;
    };

    // The next message, or nullopt on EOF/timeout.
    std::optional<Reply> receive(int timeout_ms = kWaitMs) {
        std::uint32_t hdr[4];
        if (!read_exact(hdr, sizeof(hdr), timeout_ms)) return std::nullopt;
        Reply r{hdr[0], hdr[1], hdr[2], std::string(hdr[3], '\0')};
        if (hdr[3] > 4096 || !read_exact(r.payload.data(), hdr[3], timeout_ms)) return std::nullopt;
        return r;
    }

    // True when the server closed the connection (EOF) within the timeout; messages that
    // arrive before the EOF are skipped.
    bool closed_by_server(int timeout_ms = kWaitMs) {
        char buf[4096];
        for (;;) {
            pollfd pfd{fd_, POLLIN, 0};
            int n = ::poll(&pfd, 1, timeout_ms);
            if (n <= 0) return false;
            ssize_t got = ::recv(fd_, buf, sizeof(buf), 0);
            if (got == 0) return true;
            if (got < 0) return errno == ECONNRESET;
        }
    }

private:
    bool read_exact(void* data, std::size_t len, int timeout_ms) {
        char* p = static_cast<char*>(data);
        while (len > 0) {
            pollfd pfd{fd_, POLLIN, 0};
            if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
            ssize_t n = ::recv(fd_, p, len, 0);
            if (n <= 0) return false;
            p += n;
            len -= static_cast<std::size_t>(n);
        }
        return true;
    }

    int fd_ = -1;
};

} // namespace dpnb::hv::test
