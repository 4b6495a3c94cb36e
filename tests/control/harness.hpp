// Plumbing for the control plane's tests: the simulated hypervisor in-process (its own
// thread), dom0's xenstore as the toolstack uses it, the control plane over a FakeDataPlane,
// and guests in their own processes (guest.cpp) driven over pipes. Every wait polls the
// control plane's fd, the fake data plane's event channels and the guests' pipes with a
// generous timeout; nothing sleeps to synchronise.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dpnb/control/control_plane.hpp"
#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "dpnb/netfront/toolstack.hpp"
#include "fake_data_plane.hpp"

extern char** environ;

namespace dpnb::control::test {

inline constexpr int kTimeoutMs = 60'000; // generous: a loaded 2-core machine, sanitizers

#define CT_ASSERT_OK(expr)                                                                         \
    do {                                                                                           \
        const auto& ct_result_ = (expr);                                                           \
        ASSERT_TRUE(ct_result_.has_value()) << #expr << ": " << ct_result_.error().describe();     \
    } while (0)

#define CT_EXPECT_OK(expr)                                                                         \
    do {                                                                                           \
        const auto& ct_result_ = (expr);                                                           \
        EXPECT_TRUE(ct_result_.has_value()) << #expr << ": " << ct_result_.error().describe();     \
    } while (0)

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "dpnb-ctl-XXXXXX").string();
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

struct GuestOptions {
    std::uint32_t handle = 0;
    unsigned queues = 1;
    bool split = true;
    bool reconnect = true; // the test netfront comes back when the backend offers InitWait
};

// A guest process (guest.cpp) running the test netfront on domain `dom`.
class GuestProcess {
public:
    GuestProcess(const std::string& dir, hv::DomId dom, const GuestOptions& o) {
        std::vector<std::string> args{DPNB_CONTROL_GUEST_PATH,
                                      "--dir",
                                      dir,
                                      "--domid",
                                      std::to_string(dom),
                                      "--handle",
                                      std::to_string(o.handle),
                                      "--queues",
                                      std::to_string(o.queues)};
        if (!o.split) args.emplace_back("--single-event-channel");
        if (!o.reconnect) args.emplace_back("--no-reconnect");
        std::vector<char*> argv;
        for (std::string& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        int in[2], out[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) std::abort();
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
        const int rc = ::posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(in[0]);
        ::close(out[1]);
        to_ = in[1];
        from_ = out[0];
        if (rc != 0) pid_ = -1;
    }
    ~GuestProcess() {
        kill();
        if (to_ >= 0) ::close(to_);
        if (from_ >= 0) ::close(from_);
    }
    GuestProcess(const GuestProcess&) = delete;
    GuestProcess& operator=(const GuestProcess&) = delete;

    int out_fd() const { return from_; }
    bool send(const std::string& line) {
        const std::string l = line + "\n";
        return ::write(to_, l.data(), l.size()) == static_cast<ssize_t>(l.size());
    }
    // A whole line received already, if any.
    std::optional<std::string> take_line() {
        const auto nl = buffer_.find('\n');
        if (nl == std::string::npos) return std::nullopt;
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
    }
    // Reads what is there. False on EOF.
    bool read_some() {
        char buf[256];
        const ssize_t n = ::read(from_, buf, sizeof(buf));
        if (n <= 0) return false;
        buffer_.append(buf, static_cast<std::size_t>(n));
        return true;
    }
    // A crash: SIGKILL.
    void kill() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    bool running() const { return pid_ > 0; }

private:
    pid_t pid_ = -1;
    int to_ = -1, from_ = -1;
    std::string buffer_;
};

// The backend's features as Linux 6.1 netback offers them in the lab (FINDINGS.md), with four
// queues.
inline netif::BackendCapabilities linux_like_caps() {
    netif::BackendCapabilities c;
    c.max_queues = 4;
    c.ctrl_ring = true;
    c.xdp_headroom = true;
    return c;
}

class ControlFixture : public ::testing::Test {
protected:
    void SetUp() override {
        auto server = hv::sim::Server::start(dir_.path());
        CT_ASSERT_OK(server);
        server_ = std::move(*server);
        auto ts = hv::sim::Toolstack::connect(dir_.path());
        CT_ASSERT_OK(ts);
        toolstack_ = std::move(*ts);
        auto xs = hv::open_xenstore(dir_.path() + "/xenstore-0.sock");
        CT_ASSERT_OK(xs);
        xs_ = std::move(*xs);
        auto hv = hv::sim::connect_backend(dir_.path(), hv::kDom0);
        CT_ASSERT_OK(hv);
        hv_ = std::move(*hv);
        options_.default_port = "uplink0";
        options_.capabilities = linux_like_caps();
    }

    void TearDown() override {
        cp_.reset();
        dp_.reset();
        guests_.clear();
        hv_.reset();
        xs_.reset();
        toolstack_.reset();
        server_.reset();
    }

    // A data plane and a control plane (a daemon) with options_. Without `map_rings` the data
    // plane maps nothing, so a frontend scripted by the test needs no real rings.
    void start_daemon(bool map_rings = true) {
        auto dp = FakeDataPlane::create(map_rings ? hv_.get() : nullptr);
        CT_ASSERT_OK(dp);
        dp_ = std::move(*dp);
        auto cp = ControlPlane::create(options_, *hv_, *dp_);
        CT_ASSERT_OK(cp);
        cp_ = std::move(*cp);
    }
    // A crash of the daemon: the control plane goes without shutdown(), then the data plane.
    void stop_daemon() {
        cp_.reset();
        dp_.reset();
    }

    hv::DomId create_guest(const std::string& name) {
        hv::sim::DomainConfig c;
        c.name = name;
        c.memory_pages = 2048;
        c.grant_frames = 8;
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

    // `xl network-attach` (libxl's keys, empty hotplug-status).
    Status plug(hv::DomId dom, std::uint32_t handle = 0,
                const std::function<void(netfront::VifConfig&)>& tweak = {}) {
        netfront::VifConfig v;
        v.guest = dom;
        v.backend = hv::kDom0;
        v.handle = handle;
        v.mac = mac_for(dom, handle);
        if (tweak) tweak(v);
        return netfront::add_vif(*xs_, v);
    }

    GuestProcess& spawn_guest(hv::DomId dom, const GuestOptions& o = {}) {
        guests_.push_back(std::make_unique<GuestProcess>(dir_.path(), dom, o));
        GuestProcess& g = *guests_.back();
        EXPECT_TRUE(g.running());
        auto ready = read_line(g);
        EXPECT_EQ(ready, "ready");
        return g;
    }

    // One round of the daemon: wait (at most `ms`) for the control plane, the fake data
    // plane's event channels or `extra`, then process both.
    void pump_once(int ms, int extra = -1, bool* extra_ready = nullptr) {
        std::vector<pollfd> p;
        if (cp_) p.push_back({cp_->fd(), POLLIN, 0});
        if (dp_ && dp_->serve_fd() >= 0) p.push_back({dp_->serve_fd(), POLLIN, 0});
        if (extra >= 0) p.push_back({extra, POLLIN, 0});
        (void)::poll(p.data(), p.size(), ms);
        if (extra_ready) *extra_ready = extra >= 0 && p.back().revents != 0;
        if (cp_) {
            Status st = cp_->process();
            EXPECT_TRUE(st.has_value()) << st.error().describe();
        }
        if (dp_) dp_->serve();
    }

    // Runs the daemon until `done` holds; false after `timeout_ms`.
    bool pump_until(const std::function<bool()>& done, int timeout_ms = kTimeoutMs) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            pump_once(50);
        }
        return true;
    }

    std::optional<std::string> read_line(GuestProcess& g, int timeout_ms = kTimeoutMs) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            if (auto line = g.take_line()) return line;
            if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
            bool ready = false;
            pump_once(50, g.out_fd(), &ready);
            if (ready && !g.read_some()) return std::nullopt;
        }
    }

    // Sends a command to a guest and runs the daemon until it answers.
    std::optional<std::string> ask(GuestProcess& g, const std::string& command) {
        if (!g.send(command)) return std::nullopt;
        return read_line(g);
    }
    bool guest_connected(GuestProcess& g) {
        return ask(g, "wait connected " + std::to_string(kTimeoutMs)) == "ok";
    }

    // A guest with one vif, plugged, hotplug script done, Connected on both sides.
    struct Running {
        hv::DomId dom = hv::kDomIdInvalid;
        GuestProcess* guest = nullptr;
        engine::VifId id() const { return {dom, 0}; }
    };
    Running run_guest(const std::string& name, const GuestOptions& o = {}) {
        Running r;
        r.dom = create_guest(name);
        Status st = plug(r.dom, o.handle);
        EXPECT_TRUE(st.has_value()) << st.error().describe();
        st = hotplug_done(r.dom, o.handle);
        EXPECT_TRUE(st.has_value()) << st.error().describe();
        r.guest = &spawn_guest(r.dom, o);
        EXPECT_TRUE(guest_connected(*r.guest)) << name << " did not connect";
        EXPECT_TRUE(backend_state_is(r.dom, "4", o.handle));
        return r;
    }

    std::optional<std::string> read(const std::string& path) {
        auto v = xs_->read(hv::kNoTxn, path);
        if (!v) return std::nullopt;
        return *v;
    }
    std::set<std::string> keys(const std::string& path) {
        auto d = xs_->directory(hv::kNoTxn, path);
        return d ? std::set<std::string>(d->begin(), d->end()) : std::set<std::string>{};
    }
    static std::string backend_path(hv::DomId dom, std::uint32_t handle = 0) {
        return "/local/domain/0/backend/vif/" + std::to_string(dom) + "/" + std::to_string(handle);
    }
    static std::string frontend_path(hv::DomId dom, std::uint32_t handle = 0) {
        return "/local/domain/" + std::to_string(dom) + "/device/vif/" + std::to_string(handle);
    }
    static std::string error_path(hv::DomId dom, std::uint32_t handle = 0) {
        return "/local/domain/0/error/backend/vif/" + std::to_string(dom) + "/" +
               std::to_string(handle) + "/error";
    }
    bool backend_state_is(hv::DomId dom, const char* state, std::uint32_t handle = 0) {
        return pump_until([&] { return read(backend_path(dom, handle) + "/state") == state; });
    }
    // The vif script's last step.
    Status hotplug_done(hv::DomId dom, std::uint32_t handle = 0) {
        return xs_->write(hv::kNoTxn, backend_path(dom, handle) + "/hotplug-status", "connected");
    }
    std::optional<VifInfo> vif(hv::DomId dom, std::uint32_t handle = 0) {
        auto v = cp_->vif({dom, handle});
        if (!v) return std::nullopt;
        return *v;
    }
    // The domain is freed: nobody maps or copies its pages any more (a backend that kept a
    // grant mapped would keep it dying).
    bool domain_freed(hv::DomId dom) {
        return pump_until([&] {
            auto s = toolstack_->stats(); // frees what can be freed first
            auto info = toolstack_->domain_info(dom);
            return s && s->dying_domains == 0 && !info && info.error().code == Errc::not_found;
        });
    }

    TempDir dir_;
    std::unique_ptr<hv::sim::Server> server_;
    std::unique_ptr<hv::sim::Toolstack> toolstack_;
    std::unique_ptr<hv::Xenstore> xs_; // dom0's, as the toolstack uses it
    std::unique_ptr<hv::BackendHypervisor> hv_;
    ControlOptions options_;
    std::unique_ptr<FakeDataPlane> dp_;
    std::unique_ptr<ControlPlane> cp_;
    std::vector<std::unique_ptr<GuestProcess>> guests_;
};

} // namespace dpnb::control::test
