// Processes of the benchmark (dpnb-simhv, dpnb-netfront) and the backend's half of the
// xenbus handshake (guests.hpp).
#include "guests.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>
#include <string_view>
#include <thread>
#include <utility>

#include "dpnb/netif/features.hpp"
#include "dpnb/netif/xs_value.hpp"

extern char** environ;

namespace dpnb::bench {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Process::Process(const std::vector<std::string>& argv, bool capture_stdout) {
    std::vector<char*> args;
    for (const std::string& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int pipefd[2] = {-1, -1};
    if (capture_stdout) {
        if (::pipe2(pipefd, O_CLOEXEC) != 0) return;
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    }
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (capture_stdout) {
        ::close(pipefd[1]);
        out_fd_ = pipefd[0];
        (void)::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
    }
    if (rc == 0) pid_ = pid;
}

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), out_fd_(std::exchange(o.out_fd_, -1)),
      out_(std::move(o.out_)), status_(o.status_) {}

Process& Process::operator=(Process&& o) noexcept {
    if (this != &o) {
        (void)wait(0ms);
        pid_ = std::exchange(o.pid_, -1);
        out_fd_ = std::exchange(o.out_fd_, -1);
        out_ = std::move(o.out_);
        status_ = o.status_;
    }
    return *this;
}

Process::~Process() {
    (void)wait(0ms);
}

void Process::signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
}

void Process::drain(bool block) {
    if (out_fd_ < 0) return;
    char buf[4096];
    for (;;) {
        if (block) {
            pollfd p{out_fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) return;
        }
        const ssize_t n = ::read(out_fd_, buf, sizeof(buf));
        if (n > 0) {
            out_.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) {
            ::close(out_fd_);
            out_fd_ = -1;
        }
        return;
    }
}

int Process::wait(std::chrono::milliseconds timeout, std::string* out) {
    if (pid_ > 0) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            drain(false);
            int st = 0;
            const pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                status_ = st;
                pid_ = -1;
                break;
            }
            if (Clock::now() >= deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &st, 0);
                status_ = st;
                pid_ = -1;
                break;
            }
            std::this_thread::sleep_for(5ms);
        }
    }
    while (out_fd_ >= 0)
        drain(true);
    if (out != nullptr) *out = out_;
    return status_;
}

// --- dpnb-simhv --------------------------------------------------------------------------------

SimHv::SimHv(const std::string& simhv_path, const std::string& dir) : dir_(dir) {
    int ready[2];
    if (::pipe(ready) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, ready[0]);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO); // its log
    const std::string fd_arg = std::to_string(ready[1]);
    const char* argv[] = {simhv_path.c_str(), "--dir",        dir.c_str(), "serve",
                          "--ready-fd",       fd_arg.c_str(), nullptr};
    const int rc = posix_spawn(&pid_, simhv_path.c_str(), &fa, nullptr,
                               const_cast<char* const*>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(ready[1]);
    if (rc != 0) {
        pid_ = -1;
        ::close(ready[0]);
        return;
    }
    char buf[16] = {};
    pollfd p{ready[0], POLLIN, 0};
    ready_ = ::poll(&p, 1, 30000) == 1 && ::read(ready[0], buf, sizeof(buf) - 1) > 0 &&
             std::string(buf) == "READY=1\n";
    ::close(ready[0]);
}

SimHv::~SimHv() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + 10s;
    int st = 0;
    while (::waitpid(pid_, &st, WNOHANG) == 0) {
        if (Clock::now() >= deadline) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &st, 0);
            break;
        }
        std::this_thread::sleep_for(5ms);
    }
}

// --- guests ----------------------------------------------------------------------------------

namespace {

netif::KeyReader reader_for(hv::Xenstore& xs, const std::string& folder) {
    return [&xs, folder](std::string_view key) -> Result<std::optional<std::string>> {
        auto v = xs.read(hv::kNoTxn, folder + "/" + std::string(key));
        if (v) return std::optional<std::string>(*v);
        if (v.error().code == Errc::not_found) return std::optional<std::string>();
        return std::move(v).error();
    };
}

const std::string kBackendVifs = "/local/domain/0/backend/vif";

} // namespace

std::string pair_mac(unsigned i) {
    netif::MacAddress m;
    m.bytes = {
        0x02, 0x00, 0x00, 0x4c, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
    return netif::format_mac(m);
}

GuestSet::~GuestSet() {
    stop();
}

Status GuestSet::start(const GuestConfig& config, unsigned count,
                       const std::vector<std::string>& ports, engine::RxMode mode) {
    std::set<hv::DomId> known;
    if (auto d = xs_.directory(hv::kNoTxn, kBackendVifs); d)
        for (const std::string& s : *d)
            known.insert(static_cast<hv::DomId>(std::stoul(s)));
    for (unsigned i = 0; i < count; ++i) {
        std::vector<std::string> argv = {config.netfront_path,
                                         "--sim-dir",
                                         config.sim_dir,
                                         "--rx-mode",
                                         config.rx_mode,
                                         "--buffer",
                                         config.buffer,
                                         "--hold",
                                         std::to_string(config.hold),
                                         "--connect-timeout",
                                         "60",
                                         "--json",
                                         "--log-level",
                                         "error",
                                         "--memory-pages",
                                         "4096"};
        if (config.pool_target != 0) {
            argv.push_back("--pool-target");
            argv.push_back(std::to_string(config.pool_target));
        }
        if (config.pool_shrink_every > 0) {
            argv.push_back("--pool-shrink-every");
            argv.push_back(std::to_string(config.pool_shrink_every));
        }
        if (config.pairs) argv.insert(argv.end(), {"--mac", pair_mac(i)});
        if (config.send != 0) {
            const std::string dst = config.pairs ? pair_mac((i + 1) % count) : config.dst_mac;
            argv.insert(argv.end(),
                        {"--send", std::to_string(config.send), "--size",
                         std::to_string(config.size), "--dst-mac", dst, "--duration", "3600"});
        } else if (config.echo) {
            argv.push_back("--echo");
        } else {
            argv.insert(argv.end(), {"--duration", "3600"});
        }
        Guest g;
        g.process = Process(argv, true);
        if (!g.process.started())
            return make_error(Errc::io, "cannot start " + config.netfront_path);
        // Its vif appears in the backend folder: the new domain's.
        const auto deadline = Clock::now() + 60s;
        for (;;) {
            std::optional<hv::DomId> fresh;
            if (auto d = xs_.directory(hv::kNoTxn, kBackendVifs); d)
                for (const std::string& s : *d) {
                    const auto dom = static_cast<hv::DomId>(std::stoul(s));
                    if (!known.contains(dom)) fresh = dom;
                }
            if (fresh) {
                // The toolstack writes the folder in one transaction; `mac` is in it.
                known.insert(*fresh);
                g.dom = *fresh;
                break;
            }
            if (Clock::now() >= deadline) return make_error(Errc::again, "no vif plugged");
            std::this_thread::sleep_for(5ms);
        }
        guests_.push_back(std::move(g));
        if (Status st = connect(guests_.back(), ports[i % ports.size()], mode); !st) return st;
    }
    return {};
}

Status GuestSet::connect(Guest& g, const std::string& port, engine::RxMode mode) {
    const netif::BackendPath bp{hv::kDom0, g.dom, 0};
    const std::string be = netif::format_backend_path(bp);
    auto tc = netif::parse_toolstack_config(reader_for(xs_, be), bp);
    if (!tc) return std::move(tc).error();
    g.mac = tc->mac;
    const std::string fe = netif::format_frontend_path(tc->frontend);
    netif::BackendCapabilities caps;
    auto entries = netif::backend_feature_entries(caps);
    if (!entries) return std::move(entries).error();
    for (const netif::XsEntry& e : *entries)
        if (Status st = xs_.write(hv::kNoTxn, be + "/" + e.key, e.value); !st) return st;
    if (Status st = xs_.write(hv::kNoTxn, be + "/state", "2"); !st) return st;
    const auto deadline = Clock::now() + 60s;
    for (;;) {
        auto s = xs_.read(hv::kNoTxn, fe + "/state");
        if (s && *s == "4") break;
        if (Clock::now() >= deadline)
            return make_error(Errc::again, fe + " did not reach Connected");
        std::this_thread::sleep_for(2ms);
    }
    auto cfg = netif::parse_frontend_config(reader_for(xs_, fe), caps);
    if (!cfg) return std::move(cfg).error();
    if (!cfg->queues.empty()) g.rx_ring_ref = cfg->queues.front().rx_ring_ref;
    g.rx_buffer_bytes = cfg->rx_buffer_size - cfg->xdp_headroom;
    engine::VifSpec spec;
    spec.id = engine::VifId{g.dom, 0};
    spec.mac = tc->mac;
    spec.rx_mode = mode;
    spec.port = port;
    spec.frontend = *cfg;
    if (Status st = dp_.attach(spec); !st) {
        (void)xs_.write(hv::kNoTxn, be + "/state", "5");
        return st;
    }
    g.attached = true;
    return xs_.write(hv::kNoTxn, be + "/state", "4");
}

void GuestSet::stop() {
    for (Guest& g : guests_)
        g.process.signal(SIGTERM);
    for (Guest& g : guests_) {
        if (!g.attached) continue;
        const std::string be = netif::format_backend_path(netif::BackendPath{hv::kDom0, g.dom, 0});
        const std::string fe = netif::format_frontend_path(netif::FrontendPath{g.dom, 0});
        const auto deadline = Clock::now() + 8s;
        for (;;) {
            auto s = xs_.read(hv::kNoTxn, fe + "/state");
            if (!s || *s == "5" || *s == "6" || Clock::now() >= deadline) break;
            std::this_thread::sleep_for(2ms);
        }
        (void)dp_.detach(engine::VifId{g.dom, 0});
        (void)xs_.write(hv::kNoTxn, be + "/state", "6");
        g.attached = false;
    }
    for (Guest& g : guests_) {
        std::string out;
        (void)g.process.wait(12s, &out);
        // The summary is its last line that is a JSON object.
        std::size_t end = out.size();
        while (end > 0) {
            const std::size_t nl = end >= 2 ? out.rfind('\n', end - 2) : std::string::npos;
            const std::size_t begin = nl == std::string::npos ? 0 : nl + 1;
            if (out.compare(begin, 1, "{") == 0) {
                g.summary_json = out.substr(begin, end - begin);
                break;
            }
            if (nl == std::string::npos) break;
            end = nl + 1;
        }
    }
}

// --- resources -------------------------------------------------------------------------------

namespace {

// A "Key:   N kB" line of /proc/self/status, in bytes.
std::uint64_t status_kib(std::string_view key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.starts_with(key)) return std::stoull(line.substr(key.size())) * 1024;
    return 0;
}

} // namespace

std::uint64_t resident_bytes() {
    return status_kib("VmRSS:");
}

std::uint64_t resident_peak_bytes() {
    return status_kib("VmHWM:");
}

double cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

} // namespace dpnb::bench
