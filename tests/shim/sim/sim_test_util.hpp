// Helpers for the simulated hypervisor's tests: a temporary server folder, forked child
// processes that run gtest assertions and report through their exit status, and Links
// (socketpairs) over which processes hand each other numbers (domain ids, grant
// references, ports) and wait for each other, with generous timeouts instead of sleeps.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "dpnb/hv/sim.hpp"

namespace dpnb::hv::sim::test {

inline constexpr int kTimeoutMs = 60'000; // generous: the machine is small and shared

#define SIM_ASSERT_OK(expr)                                                                        \
    do {                                                                                           \
        const auto& sim_result_ = (expr);                                                          \
        ASSERT_TRUE(sim_result_.has_value()) << #expr << ": " << sim_result_.error().describe();   \
    } while (0)

#define SIM_EXPECT_OK(expr)                                                                        \
    do {                                                                                           \
        const auto& sim_result_ = (expr);                                                          \
        EXPECT_TRUE(sim_result_.has_value()) << #expr << ": " << sim_result_.error().describe();   \
    } while (0)

#define SIM_EXPECT_ERRC(expr, errc)                                                                \
    do {                                                                                           \
        const auto& sim_result_ = (expr);                                                          \
        ASSERT_FALSE(sim_result_.has_value()) << #expr << " succeeded";                            \
        EXPECT_EQ(sim_result_.error().code, (errc))                                                \
            << #expr << ": " << sim_result_.error().describe();                                    \
    } while (0)

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "dpnb-sim-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// One end of a socketpair between two processes of a test.
class Link {
public:
    Link() = default;
    explicit Link(int fd) : fd_(fd) {}
    Link(Link&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Link& operator=(Link&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~Link() { close(); }

    static std::pair<Link, Link> make() {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
        return {Link(sv[0]), Link(sv[1])};
    }

    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    bool send(std::uint64_t v) const {
        return ::send(fd_, &v, sizeof(v), MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof(v));
    }
    // The next number, or nullopt on timeout or when the peer went away.
    std::optional<std::uint64_t> recv() const {
        std::uint64_t v;
        std::size_t got = 0;
        while (got < sizeof(v)) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, kTimeoutMs) <= 0) return std::nullopt;
            const ssize_t n = ::recv(fd_, reinterpret_cast<char*>(&v) + got, sizeof(v) - got, 0);
            if (n <= 0) return std::nullopt;
            got += static_cast<std::size_t>(n);
        }
        return v;
    }
    int fd() const { return fd_; }

private:
    int fd_ = -1;
};

// Receives a number or fails the current test (and returns from it).
#define SIM_RECV(link, var)                                                                        \
    [[maybe_unused]] std::uint64_t var = 0;                                                        \
    do {                                                                                           \
        auto sim_v_ = (link).recv();                                                               \
        ASSERT_TRUE(sim_v_.has_value()) << "no message from the peer process";                     \
        var = *sim_v_;                                                                             \
    } while (0)

// A forked child that runs `body`; its exit status is 0 when no assertion failed in it.
class Child {
public:
    Child() = default;
    explicit Child(const std::function<void()>& body) {
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) std::abort();
        if (pid_ == 0) {
            body();
            std::fflush(nullptr);
            ::_exit(::testing::Test::HasFailure() ? 1 : 0);
        }
        pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    }
    Child(Child&& o) noexcept
        : pid_(std::exchange(o.pid_, -1)), pidfd_(std::exchange(o.pidfd_, -1)) {}
    Child& operator=(Child&&) = delete;
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            (void)wait();
        }
    }

    pid_t pid() const { return pid_; }

    // The wait status (waitpid), or -1 on timeout (the child is then killed).
    int wait() {
        if (pid_ <= 0) return status_;
        pollfd p{pidfd_, POLLIN, 0};
        if (pidfd_ >= 0 && ::poll(&p, 1, kTimeoutMs) <= 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            status_ = -1;
        } else {
            int st = 0;
            ::waitpid(pid_, &st, 0);
            status_ = st;
        }
        if (pidfd_ >= 0) ::close(pidfd_);
        pidfd_ = -1;
        pid_ = -1;
        return status_;
    }

    // Waits; true when the child exited with status 0.
    bool succeeded() {
        const int st = wait();
        return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }

private:
    pid_t pid_ = -1;
    int pidfd_ = -1;
    int status_ = -1;
};

inline bool killed_by(int status, int sig) {
    return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

// Writes one byte at `p` in a child with the default SIGSEGV action (not the sanitizer's
// report), and returns the child's wait status.
inline int write_in_child(volatile std::byte* p) {
    Child child([p] {
        struct sigaction sa {};
        sa.sa_handler = SIG_DFL;
        ::sigaction(SIGSEGV, &sa, nullptr);
        ::sigaction(SIGBUS, &sa, nullptr);
        *p = std::byte{0x5A};
        ::_exit(0);
    });
    return child.wait();
}

inline int count_open_fds() {
    int n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) return -1;
    while (dirent* e = ::readdir(d))
        n += e->d_name[0] != '.';
    ::closedir(d);
    return n - 1; // the directory's own descriptor
}

// Waits until `fd` is readable; false on timeout.
inline bool wait_readable(int fd, int timeout_ms = kTimeoutMs) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

// Runs dpnb-simhv (the server binary) on `dir` in its own process, and stops it. The test
// process then holds none of the server's descriptors, and has no thread of it when it
// forks guests.
class SimhvProcess {
public:
    explicit SimhvProcess(const std::string& dir) {
        int ready[2];
        if (::pipe2(ready, O_CLOEXEC) != 0) std::abort();
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) std::abort();
        if (pid_ == 0) {
            const int fd = ::dup(ready[1]); // without O_CLOEXEC: survives the exec
            const std::string fd_arg = std::to_string(fd);
            ::execl(DPNB_SIMHV_PATH, "dpnb-simhv", "--dir", dir.c_str(), "serve", "--ready-fd",
                    fd_arg.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(ready[1]);
        char buf[16] = {};
        pollfd p{ready[0], POLLIN, 0};
        ready_ = ::poll(&p, 1, kTimeoutMs) == 1 && ::read(ready[0], buf, sizeof(buf) - 1) > 0 &&
                 std::string(buf) == "READY=1\n";
        ::close(ready[0]);
    }
    ~SimhvProcess() { (void)stop(); }
    SimhvProcess(const SimhvProcess&) = delete;
    SimhvProcess& operator=(const SimhvProcess&) = delete;

    bool ready() const { return ready_; }

    // SIGTERM, then the exit status (0: clean exit, no sanitizer report), -1 on timeout.
    int stop() {
        if (pid_ <= 0) return status_;
        ::kill(pid_, SIGTERM);
        const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
        pollfd p{pidfd, POLLIN, 0};
        if (pidfd < 0 || ::poll(&p, 1, kTimeoutMs) != 1) ::kill(pid_, SIGKILL);
        if (pidfd >= 0) ::close(pidfd);
        int st = 0;
        ::waitpid(pid_, &st, 0);
        status_ = st;
        pid_ = -1;
        return status_;
    }

private:
    pid_t pid_ = -1;
    int status_ = -1;
    bool ready_ = false;
};

// A fresh folder, the server (dpnb-simhv) and a toolstack connection for one test.
class SimFixture : public ::testing::Test {
protected:
    void SetUp() override {
        simhv_ = std::make_unique<SimhvProcess>(dir_.path());
        ASSERT_TRUE(simhv_->ready()) << "dpnb-simhv did not start";
        auto ts = Toolstack::connect(dir_.path());
        ASSERT_TRUE(ts.has_value()) << ts.error().describe();
        toolstack_ = std::move(*ts);
    }
    void TearDown() override {
        toolstack_.reset();
        const int st = simhv_->stop();
        EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            << "dpnb-simhv did not exit cleanly (status " << st << ")";
    }

    DomId create(const std::string& name, std::uint32_t pages = 64, bool destroy_on_exit = true) {
        DomainConfig config;
        config.name = name;
        config.memory_pages = pages;
        config.grant_frames = 2;
        config.destroy_when_guest_exits = destroy_on_exit;
        auto dom = toolstack_->create_domain(config);
        EXPECT_TRUE(dom.has_value()) << dom.error().describe();
        return dom.value_or(kDomIdInvalid);
    }

    ServerStats stats() {
        auto s = toolstack_->stats();
        EXPECT_TRUE(s.has_value()) << s.error().describe();
        return s.value_or(ServerStats{});
    }

    const std::string& dir() const { return dir_.path(); }

    TempDir dir_;
    std::unique_ptr<SimhvProcess> simhv_;
    std::unique_ptr<Toolstack> toolstack_;
};

} // namespace dpnb::hv::sim::test
