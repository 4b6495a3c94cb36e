// TEST-ONLY plumbing for the process-level tests of dpnetbackd (process_harness.hpp).
#include "process_harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "dpnb/hv/xenstore.hpp"
#include "dpnb/hv/xenstore_client.hpp"

namespace dpnb::daemon_test {

namespace {

using Clock = std::chrono::steady_clock;

std::string g_why = "not checked";
bool g_ready = false;

// Moves the test process into a network namespace of its own (children inherit it), with
// loopback up for the metrics endpoint and IPv6 off so the kernel sends nothing on the tap.
class NetnsEnvironment : public ::testing::Environment {
public:
    void SetUp() override {
        if (::geteuid() != 0) {
            g_why = "not root (the daemon's tap port needs CAP_NET_ADMIN)";
            return;
        }
        if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
            g_why = "no /dev/net/tun";
            return;
        }
        if (::unshare(CLONE_NEWNET) != 0) {
            g_why = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
            return;
        }
        (void)write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        (void)write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
        const bool up = fd >= 0 && ::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 &&
                        (ifr.ifr_flags |= IFF_UP, ::ioctl(fd, SIOCSIFFLAGS, &ifr) == 0);
        if (fd >= 0) ::close(fd);
        if (!up) {
            g_why = std::string("bringing up lo: ") + std::strerror(errno);
            return;
        }
        g_ready = true;
        g_why.clear();
    }
};

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new NetnsEnvironment);

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
    std::vector<char*> v;
    for (const std::string& a : argv)
        v.push_back(const_cast<char*>(a.c_str()));
    v.push_back(nullptr);
    return v;
}

// In the child, before exec: die with the test, and nothing systemd-related inherited.
void child_setup(pid_t parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::unsetenv("JOURNAL_STREAM");
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
    ::unsetenv("LISTEN_FDS");
}

int decode(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

int unique_counter() {
    static int n = 0;
    return n++;
}

} // namespace

bool environment_ready(std::string* why) {
    if (why != nullptr) *why = g_why;
    return g_ready;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

bool write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path);
    f << text;
    return static_cast<bool>(f);
}

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    const auto end = Clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (Clock::now() > end) return false;
        std::this_thread::sleep_for(50ms);
    }
}

std::string RunResult::describe() const {
    return "exit status " + std::to_string(status) + "\n--- stdout:\n" + out + "--- stderr:\n" +
           err;
}

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
              const std::string& input) {
    RunResult r;
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
        return r;
    const pid_t parent = ::getpid();
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return r;
    if (pid == 0) {
        child_setup(parent);
        ::dup2(in[0], STDIN_FILENO);
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err[1], STDERR_FILENO);
        auto v = c_argv(argv);
        ::execv(v[0], v.data());
        std::fprintf(stderr, "exec %s: %s\n", v[0], std::strerror(errno));
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    // The input is small (a metrics scrape at most): written before reading, through a pipe
    // buffer that holds it, or by a writer thread when it does not.
    std::thread writer([fd = in[1], &input] {
        std::size_t done = 0;
        while (done < input.size()) {
            const ssize_t n = ::write(fd, input.data() + done, input.size() - done);
            if (n <= 0) break;
            done += static_cast<std::size_t>(n);
        }
        ::close(fd);
    });
    const auto end = Clock::now() + timeout;
    pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_fds = 2;
    bool killed = false;
    char buf[8192];
    while (open_fds > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
        if (left.count() <= 0 && !killed) {
            ::kill(pid, SIGKILL);
            killed = true;
        }
        const int n = ::poll(p, 2, killed ? 1000 : static_cast<int>(left.count()));
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; ++i) {
            if (p[i].fd < 0 || (p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
            const ssize_t got = ::read(p[i].fd, buf, sizeof buf);
            if (got <= 0) {
                ::close(p[i].fd);
                p[i].fd = -1;
                --open_fds;
            } else {
                (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(got));
            }
        }
        if (n == 0 && killed) break;
    }
    for (auto& fd : p)
        if (fd.fd >= 0) ::close(fd.fd);
    int st = 0;
    ::waitpid(pid, &st, 0);
    writer.join();
    r.status = decode(st);
    if (killed) r.err += "\n[killed after " + std::to_string(timeout.count()) + " ms]\n";
    return r;
}

// --- Process ---------------------------------------------------------------------------------

Process::Process(const std::vector<std::string>& argv, const std::string& out_path,
                 const std::string& err_path)
    : out_path_(out_path), err_path_(err_path) {
    const pid_t parent = ::getpid();
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
        child_setup(parent);
        const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (o < 0 || e < 0 || null < 0) ::_exit(127);
        ::dup2(null, STDIN_FILENO);
        ::dup2(o, STDOUT_FILENO);
        ::dup2(e, STDERR_FILENO);
        auto v = c_argv(argv);
        ::execv(v[0], v.data());
        std::fprintf(stderr, "exec %s: %s\n", v[0], std::strerror(errno));
        ::_exit(127);
    }
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
}

Process::~Process() {
    kill_now();
    if (pidfd_ >= 0) ::close(pidfd_);
}

bool Process::running() {
    return !wait(0ms).has_value();
}

void Process::signal(int sig) const {
    if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
    if (status_) return status_;
    if (pid_ <= 0) return -1;
    pollfd p{pidfd_, POLLIN, 0};
    if (pidfd_ >= 0) {
        int n;
        do
            n = ::poll(&p, 1, static_cast<int>(timeout.count()));
        while (n < 0 && errno == EINTR);
        if (n == 0) return std::nullopt;
    }
    int st = 0;
    if (::waitpid(pid_, &st, pidfd_ >= 0 ? 0 : WNOHANG) != pid_) return std::nullopt;
    status_ = decode(st);
    return status_;
}

void Process::kill_now() {
    if (pid_ > 0 && !status_) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        ::waitpid(pid_, &st, 0);
        status_ = decode(st);
    }
}

// --- network ---------------------------------------------------------------------------------

std::optional<std::string> iface_mac(const std::string& iface) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::nullopt;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
    const bool ok = ::ioctl(fd, SIOCGIFHWADDR, &ifr) == 0;
    ::close(fd);
    if (!ok) return std::nullopt;
    char buf[18];
    const auto* m = reinterpret_cast<const unsigned char*>(ifr.ifr_hwaddr.sa_data);
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                  m[5]);
    return std::string(buf);
}

std::string guest_mac(unsigned dom, unsigned handle) {
    char buf[18];
    std::snprintf(buf, sizeof buf, "00:16:3e:%02x:%02x:%02x", (dom >> 8) & 0x7f, dom & 0xff,
                  handle & 0xff);
    return buf;
}

std::string vif_name(unsigned dom, unsigned handle) {
    return "vif" + std::to_string(dom) + "." + std::to_string(handle);
}

std::pair<int, std::string> http_get(std::uint16_t port, const std::string& path) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return {-1, std::strerror(errno)};
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{60, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        const std::string e = std::strerror(errno);
        ::close(fd);
        return {-1, "connect: " + e};
    }
    const std::string req = "GET " + path +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n"
                            "Connection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        ::close(fd);
        return {-1, "send failed"};
    }
    std::string resp;
    char buf[16384];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
        resp.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    const std::size_t sp = resp.find(' ');
    const std::size_t body = resp.find("\r\n\r\n");
    if (resp.rfind("HTTP/1.", 0) != 0 || sp == std::string::npos || body == std::string::npos)
        return {-1, "not an HTTP response: " + resp.substr(0, 200)};
    return {std::atoi(resp.c_str() + sp + 1), resp.substr(body + 4)};
}

std::optional<double> metric(const std::string& text, const std::string& series) {
    const std::string key = "\n" + series + " ";
    const std::size_t at = ("\n" + text).find(key);
    if (at == std::string::npos) return std::nullopt;
    const std::size_t v = at + key.size() - 1; // index into text
    return std::strtod(text.c_str() + v, nullptr);
}

const std::string& promtool_path() {
    static const std::string path = [] {
        for (const char* p : {"/usr/bin/promtool", "/usr/local/bin/promtool"})
            if (::access(p, X_OK) == 0) return std::string(p);
        return std::string();
    }();
    return path;
}

// --- DaemonEnv -------------------------------------------------------------------------------

DaemonEnv::DaemonEnv(DaemonSetup s) : setup(std::move(s)) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dpnb-dt-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir = tmpl;
    sim_dir = dir + "/sim";
    socket = dir + "/ctl.sock";
    config_path = dir + "/dpnetback.toml";
    const int n = unique_counter();
    // In the test's own namespace the name cannot clash; unique anyway (15 characters at most).
    iface = "dpdt" + std::to_string(::getpid() % 100000) + "x" + std::to_string(n);
    file_prefix = "dpnb-dt-" + std::to_string(::getpid()) + "-" + std::to_string(n);
}

DaemonEnv::~DaemonEnv() {
    // Guests first (they would wait for a backend), then the daemon, then the simulator.
    for (auto& [dom, g] : guests)
        g->kill_now();
    if (daemon) daemon->kill_now();
    if (simhv) {
        simhv->signal(SIGTERM);
        if (!simhv->wait(30s)) simhv->kill_now();
    }
    if (::testing::Test::HasFailure()) {
        std::fprintf(stderr, "--- daemon log (%s) ---\n%s\n", dir.c_str(), daemon_log().c_str());
        for (auto& [dom, g] : guests)
            std::fprintf(stderr, "--- guest %u stdout ---\n%s--- guest %u stderr ---\n%s\n", dom,
                         g->out().c_str(), dom, g->err().c_str());
    }
    std::error_code ec;
    if (!::testing::Test::HasFailure() || std::getenv("DPNB_KEEP_TEST_DIR") == nullptr)
        std::filesystem::remove_all(dir, ec);
}

std::string DaemonEnv::config_text() const {
    std::string t;
    t += "# written by tests/daemon (process_harness.cpp)\n";
    t += "[hypervisor]\nkind = \"sim\"\n";
    t += "[hypervisor.sim]\ndir = \"" + sim_dir + "\"\n";
    t += std::string("embedded = ") + (setup.embedded_sim ? "true" : "false") + "\n";
    t += "[log]\nlevel = \"info\"\ntarget = \"stderr\"\n";
    t += "[eal]\nmain_lcore = 0\nworker_lcores = [1]\nno_huge = true\nmemory_mb = 512\n";
    t += "file_prefix = \"" + file_prefix + "\"\n";
    t += "[port.uplink]\ndevice = \"" +
         (setup.device.empty() ? "net_tap0,iface=" + iface : setup.device) + "\"\n";
    t += "[management]\nsocket = \"" + socket + "\"\n";
    if (!setup.management_group.empty()) t += "group = \"" + setup.management_group + "\"\n";
    t += "[metrics]\naddress = \"127.0.0.1\"\nport = " + std::to_string(setup.metrics_port) + "\n";
    t += setup.extra_toml;
    return t;
}

::testing::AssertionResult DaemonEnv::start_simhv() {
    std::filesystem::create_directories(sim_dir);
    simhv = std::make_unique<Process>(
        std::vector<std::string>{DPNB_SIMHV_PATH, "--dir", sim_dir, "serve"}, dir + "/simhv.out",
        dir + "/simhv.err");
    if (!wait_for([&] {
            return read_file(dir + "/simhv.out").find("serving") != std::string::npos ||
                   !simhv->running();
        }) ||
        !simhv->running())
        return ::testing::AssertionFailure()
               << "dpnb-simhv did not start: " << read_file(dir + "/simhv.err");
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult DaemonEnv::start_daemon() {
    if (::testing::AssertionResult spawned = spawn_daemon(); !spawned) return spawned;
    return wait_daemon_ready();
}

::testing::AssertionResult DaemonEnv::spawn_daemon() {
    if (!write_file(config_path, config_text()))
        return ::testing::AssertionFailure() << "cannot write " << config_path;
    ++daemon_starts;
    std::vector<std::string> argv = setup.launcher;
    argv.insert(argv.end(), {DPNB_DAEMON_PATH, "--foreground", "--config", config_path});
    daemon = std::make_unique<Process>(argv, dir + "/daemon.out", dir + "/daemon.log");
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult DaemonEnv::wait_daemon_ready() {
    // Each start appends to the same log; "ready" is counted, not just found.
    const auto ready_lines = [&] {
        const std::string log = daemon_log();
        int n = 0;
        for (std::size_t at = 0; (at = log.find("dpnetbackd ready", at)) != std::string::npos; ++at)
            ++n;
        return n;
    };
    if (!wait_for([&] { return ready_lines() >= daemon_starts || !daemon->running(); }))
        return ::testing::AssertionFailure() << "dpnetbackd not ready in time:\n" << daemon_log();
    if (!daemon->running())
        return ::testing::AssertionFailure() << "dpnetbackd exited during start-up (status "
                                             << daemon->wait(0ms).value_or(-1) << "):\n"
                                             << daemon_log();
    return ::testing::AssertionSuccess();
}

std::string DaemonEnv::daemon_log() const {
    return read_file(dir + "/daemon.log");
}

RunResult DaemonEnv::ctl(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{DPNB_CTL_PATH, "--socket", socket};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
}

Json DaemonEnv::ctl_json(const std::vector<std::string>& args) const {
    std::vector<std::string> a{"--json"};
    a.insert(a.end(), args.begin(), args.end());
    const RunResult r = ctl(a);
    const Json j = Json::parse(r.out, nullptr, false);
    if (r.status != 0 || j.is_discarded() || !j.value("ok", false)) {
        ADD_FAILURE() << "dpnetbackctl " << args.front() << ": " << r.describe();
        return nullptr;
    }
    return j["result"];
}

Json DaemonEnv::vif_entry(const std::string& vif) const {
    const RunResult r = ctl({"--json", "list"});
    const Json j = Json::parse(r.out, nullptr, false);
    if (r.status != 0 || j.is_discarded() || !j.value("ok", false)) return nullptr;
    for (const Json& v : j["result"]["vifs"])
        if (v.value("vif", "") == vif) return v;
    return nullptr;
}

bool DaemonEnv::vif_connected(const std::string& vif) const {
    const Json v = vif_entry(vif);
    return v.is_object() && v.value("phase", "") == "connected" && v.value("attached", false) &&
           v.value("state", "") == "running";
}

::testing::AssertionResult DaemonEnv::wait_connected(const std::vector<std::string>& vifs,
                                                     std::chrono::milliseconds timeout) const {
    const bool ok = wait_for(
        [&] {
            for (const std::string& v : vifs)
                if (!vif_connected(v)) return false;
            return true;
        },
        timeout);
    if (ok) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "vifs not connected in time; list:\n"
                                         << ctl({"list"}).describe();
}

RunResult DaemonEnv::simhv_cmd(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{DPNB_SIMHV_PATH, "--dir", sim_dir};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
}

std::optional<unsigned> DaemonEnv::create_domain(const std::string& name) const {
    const RunResult r = simhv_cmd({"create", name});
    if (r.status != 0) {
        ADD_FAILURE() << "dpnb-simhv create " << name << ": " << r.describe();
        return std::nullopt;
    }
    return static_cast<unsigned>(std::stoul(r.out));
}

Process& DaemonEnv::start_guest(unsigned dom, const std::vector<std::string>& args) {
    std::vector<std::string> argv{DPNB_NETFRONT_PATH,  "--sim-dir",         sim_dir, "--domid",
                                  std::to_string(dom), "--connect-timeout", "300"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string base = dir + "/guest" + std::to_string(dom);
    auto p = std::make_unique<Process>(argv, base + ".out", base + ".err");
    Process& ref = *p;
    guests[dom] = std::move(p);
    return ref;
}

std::optional<std::string> DaemonEnv::xenstore_read(const std::string& path) const {
    auto xs = hv::open_xenstore(sim_dir + "/xenstore-0.sock");
    if (!xs) return std::nullopt;
    auto v = (*xs)->read(hv::kNoTxn, path);
    if (!v) return std::nullopt;
    return *v;
}

RunResult DaemonEnv::peer(const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout) const {
    std::vector<std::string> argv{DPNB_PEER_PATH, "--iface", iface, "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, timeout);
}

std::unique_ptr<Process> DaemonEnv::start_peer(const std::vector<std::string>& args,
                                               const std::string& name) {
    std::vector<std::string> argv{DPNB_PEER_PATH, "--iface", iface, "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string base = dir + "/peer-" + name + "-" + std::to_string(peers_++);
    return std::make_unique<Process>(argv, base + ".out", base + ".err");
}

std::uint16_t DaemonEnv::metrics_port() const {
    const Json s = ctl_json({"stats"});
    if (!s.is_object()) return 0;
    const Json& m = s["management"]["metrics_endpoint"];
    return m.is_object() ? m.value("port", std::uint16_t{0}) : std::uint16_t{0};
}

std::string DaemonEnv::scrape() const {
    const std::uint16_t port = metrics_port();
    if (port == 0) {
        ADD_FAILURE() << "no metrics endpoint in `dpnetbackctl stats`";
        return {};
    }
    auto [status, body] = http_get(port, "/metrics");
    if (status != 200) ADD_FAILURE() << "GET /metrics: " << status << " " << body;
    return body;
}

} // namespace dpnb::daemon_test
