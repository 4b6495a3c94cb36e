// Process plumbing for the netfront tests: the simulated hypervisor (dpnb-simhv) in its own
// process, the reflector backend in a forked process driven by commands over a socketpair,
// guests in forked processes that report through their exit status and over socketpairs.
// Every wait has a generous timeout and none is used as synchronisation: processes tell
// each other when they are ready.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "dpnb/netfront/toolstack.hpp"
#include "reflector.hpp"

namespace dpnb::netfront::test {

inline constexpr int kTimeoutMs = 120'000; // generous: small shared machine, sanitizers

#define NF_ASSERT_OK(expr)                                                                         \
    do {                                                                                           \
        const auto& nf_result_ = (expr);                                                           \
        ASSERT_TRUE(nf_result_.has_value()) << #expr << ": " << nf_result_.error().describe();     \
    } while (0)

#define NF_EXPECT_OK(expr)                                                                         \
    do {                                                                                           \
        const auto& nf_result_ = (expr);                                                           \
        EXPECT_TRUE(nf_result_.has_value()) << #expr << ": " << nf_result_.error().describe();     \
    } while (0)

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "dpnb-nf-XXXXXX").string();
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

// One end of a socketpair: numbers one way or the other, with a timeout.
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
    int fd() const { return fd_; }
    bool send(std::uint64_t v) const {
        return ::send(fd_, &v, sizeof(v), MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof(v));
    }
    std::optional<std::uint64_t> recv(int timeout_ms = kTimeoutMs) const {
        std::uint64_t v;
        std::size_t got = 0;
        while (got < sizeof(v)) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
            const ssize_t n = ::recv(fd_, reinterpret_cast<char*>(&v) + got, sizeof(v) - got, 0);
            if (n <= 0) return std::nullopt;
            got += static_cast<std::size_t>(n);
        }
        return v;
    }

private:
    int fd_ = -1;
};

// A forked process running `body`; exit status 0 when no gtest assertion failed in it.
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
    }
    Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), status_(o.status_) {}
    Child& operator=(Child&& o) noexcept {
        if (this != &o) {
            kill_now();
            pid_ = std::exchange(o.pid_, -1);
            status_ = o.status_;
        }
        return *this;
    }
    Child(const Child&) = delete;
    ~Child() { kill_now(); }

    pid_t pid() const { return pid_; }
    // Waits for the exit; -1 on timeout (then killed).
    int wait(int timeout_ms = kTimeoutMs) {
        if (pid_ <= 0) return status_;
        const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
        pollfd p{pidfd, POLLIN, 0};
        if (pidfd >= 0 && ::poll(&p, 1, timeout_ms) <= 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            status_ = -1;
        } else {
            int st = 0;
            ::waitpid(pid_, &st, 0);
            status_ = st;
        }
        if (pidfd >= 0) ::close(pidfd);
        pid_ = -1;
        return status_;
    }
    bool succeeded(int timeout_ms = kTimeoutMs) {
        const int st = wait(timeout_ms);
        return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    void kill_now() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }

private:
    pid_t pid_ = -1;
    int status_ = -1;
};

// dpnb-simhv serving `dir`, in its own process.
class SimServer {
public:
    explicit SimServer(const std::string& dir) {
        int ready[2];
        if (::pipe2(ready, O_CLOEXEC) != 0) std::abort();
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) std::abort();
        if (pid_ == 0) {
            const int fd = ::dup(ready[1]);
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
    ~SimServer() { (void)stop(); }
    SimServer(const SimServer&) = delete;
    SimServer& operator=(const SimServer&) = delete;
    bool ready() const { return ready_; }
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

// The reflector backend in a forked process. Commands over a socketpair.
class ReflectorProcess {
public:
    enum Cmd : std::uint64_t { kStats = 1, kDetach = 2, kRelease = 3, kQuit = 4 };

    ReflectorProcess(const std::string& dir, const ReflectorOptions& options) {
        auto [mine, theirs] = Link::make();
        link_ = std::move(mine);
        Link child_link = std::move(theirs);
        child_ = Child([&] {
            link_.close();
            auto r = Reflector::start(dir, options);
            if (!r) {
                ADD_FAILURE() << "reflector: " << r.error().describe();
                return;
            }
            child_link.send(0); // ready
            for (;;) {
                pollfd p[2] = {{(*r)->fd(), POLLIN, 0}, {child_link.fd(), POLLIN, 0}};
                (void)::poll(p, 2, 100);
                if (Status st = (*r)->poll(std::chrono::milliseconds(0)); !st) {
                    ADD_FAILURE() << "reflector poll: " << st.error().describe();
                    return;
                }
                if (p[1].revents == 0) continue;
                auto cmd = child_link.recv(1000);
                if (!cmd) return; // the test went away
                if (*cmd == kStats) {
                    const ReflectorStats s = (*r)->stats();
                    for (std::uint64_t v :
                         {s.frames, s.zero_copy, s.grant_copied, s.dropped,
                          std::uint64_t{s.connected_vifs}, s.in_flight, s.static_entries})
                        child_link.send(v);
                } else if (*cmd == kDetach) {
                    (*r)->detach_all();
                    child_link.send(0);
                } else if (*cmd == kRelease) {
                    (*r)->release_kept_mappings();
                    child_link.send(0);
                } else if (*cmd == kQuit) {
                    r->reset();
                    child_link.send(0);
                    return;
                }
            }
        });
        child_link.close();
        ready_ = link_.recv().has_value();
    }

    bool ready() const { return ready_; }
    std::optional<ReflectorStats> stats() {
        if (!link_.send(kStats)) return std::nullopt;
        ReflectorStats s;
        std::uint64_t v[7];
        for (auto& x : v) {
            auto got = link_.recv();
            if (!got) return std::nullopt;
            x = *got;
        }
        s.frames = v[0];
        s.zero_copy = v[1];
        s.grant_copied = v[2];
        s.dropped = v[3];
        s.connected_vifs = static_cast<std::uint32_t>(v[4]);
        s.in_flight = v[5];
        s.static_entries = v[6];
        return s;
    }
    bool command(Cmd c) { return link_.send(c) && link_.recv().has_value(); }
    // An orderly stop: the daemon's shutdown (xenstore left as it is).
    bool quit() { return command(kQuit) && child_.succeeded(); }
    // A crash.
    void kill() { child_.kill_now(); }
    bool succeeded() { return child_.succeeded(); }

private:
    Link link_;
    Child child_;
    bool ready_ = false;
};

// A server, a toolstack connection and dom0's xenstore for one test. The parent process uses
// xenstore without watches until the end, so that it has no extra thread when it forks.
class NetfrontFixture : public ::testing::Test {
protected:
    void SetUp() override {
        server_ = std::make_unique<SimServer>(dir_.path());
        ASSERT_TRUE(server_->ready()) << "dpnb-simhv did not start";
        auto ts = hv::sim::Toolstack::connect(dir_.path());
        NF_ASSERT_OK(ts);
        toolstack_ = std::move(*ts);
        auto xs = hv::open_xenstore(dir_.path() + "/xenstore-0.sock");
        NF_ASSERT_OK(xs);
        xs_ = std::move(*xs);
    }
    void TearDown() override {
        xs_.reset();
        toolstack_.reset();
        const int st = server_->stop();
        EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            << "dpnb-simhv did not exit cleanly (status " << st << ")";
    }

    hv::DomId create_guest(const std::string& name, std::uint32_t pages = 4096,
                           bool destroy_on_exit = true) {
        hv::sim::DomainConfig c;
        c.name = name;
        c.memory_pages = pages;
        c.grant_frames = 16;
        c.destroy_when_guest_exits = destroy_on_exit;
        auto dom = toolstack_->create_domain(c);
        EXPECT_TRUE(dom.has_value()) << dom.error().describe();
        return dom.value_or(hv::kDomIdInvalid);
    }

    static netif::MacAddress mac_for(hv::DomId dom, std::uint32_t handle) {
        netif::MacAddress m;
        m.bytes = {0x00,
                   0x16,
                   0x3e,
                   0x00,
                   static_cast<std::uint8_t>(dom),
                   static_cast<std::uint8_t>(handle)};
        return m;
    }

    Status plug(hv::DomId dom, std::uint32_t handle = 0) {
        VifConfig v;
        v.guest = dom;
        v.backend = hv::kDom0;
        v.handle = handle;
        v.mac = mac_for(dom, handle);
        return add_vif(*xs_, v);
    }

    std::optional<std::string> read(const std::string& path) {
        auto v = xs_->read(hv::kNoTxn, path);
        if (!v) return std::nullopt;
        return *v;
    }

    const std::string& dir() const { return dir_.path(); }

    TempDir dir_;
    std::unique_ptr<SimServer> server_;
    std::unique_ptr<hv::sim::Toolstack> toolstack_;
    std::unique_ptr<hv::Xenstore> xs_;
};

} // namespace dpnb::netfront::test
