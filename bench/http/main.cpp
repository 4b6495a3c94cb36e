// dpnb-bench-http: the metrics endpoint's HTTP server against the libraries Debian ships for
// it, under hostile clients (docs/metrics.md, "The HTTP server"). Servers, all on 127.0.0.1
// serving the same exposition:
//   handwritten     dpnetbackd's MetricsServer on its event loop (one thread)
//   prometheus-cpp  prometheus::Exposer 1.0.1 (civetweb), its default two worker threads
//   cpp-httplib     httplib::Server 0.11.4, its default thread pool
// For each: scrape latency alone; scrapes while K slow-loris clients trickle one header byte
// every 500 ms and never finish their request; scrapes while M clients hold idle
// connections. A scrape fails after 10 s (Prometheus' default scrape timeout). Prints a
// table (or --json); no assertion: figures, not a test.
#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <httplib.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "dpnb/daemon/event_loop.hpp"
#include "dpnb/daemon/http_server.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kScrapeTimeout = 10s;

// About what a daemon with 64 vifs exposes: 64 vifs x 30 series.
std::vector<prometheus::MetricFamily> families() {
    std::vector<prometheus::MetricFamily> out;
    for (int f = 0; f < 30; ++f) {
        prometheus::MetricFamily fam;
        fam.name = "dpnetback_bench_family_" + std::to_string(f) + "_total";
        fam.help = "A family of the benchmark's exposition.";
        fam.type = prometheus::MetricType::Counter;
        for (int v = 0; v < 64; ++v) {
            prometheus::ClientMetric m;
            m.label.push_back({"vif", "vif" + std::to_string(v + 1) + ".0"});
            m.counter.value = 1e6 * (v + 1) + f;
            fam.metric.push_back(m);
        }
        out.push_back(std::move(fam));
    }
    return out;
}

const std::string& exposition() {
    static const std::string text = prometheus::TextSerializer().Serialize(families());
    return text;
}

class StaticCollectable : public prometheus::Collectable {
public:
    std::vector<prometheus::MetricFamily> Collect() const override { return families(); }
};

// --- the servers -------------------------------------------------------------------------

struct Server {
    virtual ~Server() = default;
    virtual std::uint16_t port() const = 0;
};

struct Handwritten : Server {
    std::unique_ptr<dpnb::daemon::EventLoop> loop;
    std::unique_ptr<dpnb::daemon::MetricsServer> server;
    std::atomic<bool> stop{false};
    std::thread thread;
    explicit Handwritten(unsigned max_clients) {
        auto l = dpnb::daemon::EventLoop::create();
        loop = std::move(*l);
        dpnb::daemon::MetricsConfig c;
        c.port = 0;
        c.max_clients = max_clients;
        auto s = dpnb::daemon::MetricsServer::create(*loop, c, [] { return exposition(); });
        server = std::move(*s);
        // As the daemon's control thread: the loop, and expire() every 250 ms.
        thread = std::thread([this] {
            auto next = Clock::now();
            while (!stop.load()) {
                (void)loop->run_once(50ms);
                if (Clock::now() >= next) {
                    server->expire();
                    next = Clock::now() + 250ms;
                }
            }
        });
    }
    ~Handwritten() override {
        stop.store(true);
        thread.join();
    }
    std::uint16_t port() const override { return server->port(); }
};

struct PrometheusCpp : Server {
    std::shared_ptr<StaticCollectable> collectable = std::make_shared<StaticCollectable>();
    prometheus::Exposer exposer{"127.0.0.1:0"};
    PrometheusCpp() { exposer.RegisterCollectable(collectable); }
    std::uint16_t port() const override {
        return static_cast<std::uint16_t>(
            const_cast<prometheus::Exposer&>(exposer).GetListeningPorts().at(0));
    }
};

struct CppHttplib : Server {
    httplib::Server server;
    int bound = 0;
    std::thread thread;
    CppHttplib() {
        server.Get("/metrics", [](const httplib::Request&, httplib::Response& res) {
            res.set_content(exposition(), "text/plain; version=0.0.4; charset=utf-8");
        });
        bound = server.bind_to_any_port("127.0.0.1");
        thread = std::thread([this] { server.listen_after_bind(); });
        while (!server.is_running())
            std::this_thread::sleep_for(1ms);
    }
    ~CppHttplib() override {
        server.stop();
        thread.join();
    }
    std::uint16_t port() const override { return static_cast<std::uint16_t>(bound); }
};

// --- the clients -------------------------------------------------------------------------

int connect_to(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

struct Scrape {
    bool ok = false;
    std::string what; // "200", "503", "timeout", "closed", "refused"
    double ms = 0;
};

// One Prometheus-like scrape: HTTP/1.1, closes after the answer, 10 s at most.
Scrape scrape(std::uint16_t port) {
    const auto t0 = Clock::now();
    Scrape s;
    const int fd = connect_to(port);
    if (fd < 0) {
        s.what = "refused";
        return s;
    }
    const std::string req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n"
                            "Connection: close\r\n\r\n";
    (void)!::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string in;
    char buf[65536];
    const auto deadline = t0 + kScrapeTimeout;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            s.what = "timeout";
            break;
        }
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            s.what = in.empty() ? "closed" : in.substr(9, 3);
            s.ok = in.rfind("HTTP/1.1 200", 0) == 0 && in.size() > exposition().size();
            break;
        }
        in.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    s.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    return s;
}

struct Phase {
    std::string name;
    int ok = 0, failed = 0;
    double worst_ms = 0, median_ms = 0;
    std::map<std::string, int> failures;
    int held_closed_by_server = -1; // of the hostile connections, closed by the server
    double recovered_s = -1;        // first good scrape after the hostile clients came
};

void add(Phase& p, const Scrape& s, std::vector<double>& lat) {
    if (s.ok) {
        ++p.ok;
        lat.push_back(s.ms);
    } else {
        ++p.failed;
        ++p.failures[s.what];
    }
    p.worst_ms = std::max(p.worst_ms, s.ms);
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

bool closed_by_peer(int fd) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char c;
    return (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0 ||
           ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

// Scrapes once a second for `seconds` while `hostile` connections are held (and, for
// slow-loris, fed one byte every 500 ms).
Phase under_attack(const std::string& name, std::uint16_t port, int clients, bool trickle,
                   int seconds) {
    Phase p;
    p.name = name;
    std::vector<int> fds;
    for (int i = 0; i < clients; ++i)
        if (const int fd = connect_to(port); fd >= 0) fds.push_back(fd);
    std::atomic<bool> stop{false};
    std::thread feeder([&] {
        if (!trickle) return;
        const std::string head = "GET /metrics HTTP/1.1\r\nX-Slow: ";
        for (int fd : fds)
            (void)!::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
        while (!stop.load()) {
            for (int fd : fds)
                (void)!::send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            std::this_thread::sleep_for(500ms);
        }
    });
    std::this_thread::sleep_for(1s);
    std::vector<double> lat;
    const auto t0 = Clock::now();
    while (Clock::now() - t0 < std::chrono::seconds(seconds)) {
        const auto start = Clock::now();
        const Scrape s = scrape(port);
        add(p, s, lat);
        if (s.ok && p.recovered_s < 0)
            p.recovered_s = std::chrono::duration<double>(Clock::now() - t0).count() + 1.0;
        std::this_thread::sleep_until(start + 1s);
    }
    stop.store(true);
    feeder.join();
    p.held_closed_by_server = 0;
    for (int fd : fds) {
        p.held_closed_by_server += closed_by_peer(fd) ? 1 : 0;
        ::close(fd);
    }
    p.median_ms = median(lat);
    // Let the server notice the closed connections before the next phase.
    std::this_thread::sleep_for(1s);
    return p;
}

Phase alone(std::uint16_t port, int n) {
    Phase p;
    p.name = "alone";
    std::vector<double> lat;
    for (int i = 0; i < n; ++i)
        add(p, scrape(port), lat);
    p.median_ms = median(lat);
    return p;
}

int threads_now() {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
        (void)e;
        ++n;
    }
    return n;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"dpnb-bench-http: the metrics endpoint's HTTP server against libraries"};
    int seconds = 35;
    std::vector<int> slow = {2, 16};
    int idle = 500;
    bool json = false;
    std::vector<std::string> only;
    app.add_option("--seconds", seconds, "Scraping time under each attack (default 35)");
    app.add_option("--slow", slow, "Slow-loris client counts (default 2 16)");
    app.add_option("--idle", idle, "Idle connections held in the last phase (default 500)");
    app.add_option("--server", only, "handwritten, prometheus-cpp, cpp-httplib (default all)");
    app.add_flag("--json", json, "Print JSON");
    CLI11_PARSE(app, argc, argv);
    signal(SIGPIPE, SIG_IGN);

    nlohmann::json report = nlohmann::json::array();
    const std::vector<std::string> names = {"handwritten", "prometheus-cpp", "cpp-httplib"};
    for (const std::string& name : names) {
        if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) continue;
        const int threads_before = threads_now();
        std::unique_ptr<Server> server;
        if (name == "handwritten")
            server = std::make_unique<Handwritten>(dpnb::daemon::MetricsConfig{}.max_clients);
        else if (name == "prometheus-cpp")
            server = std::make_unique<PrometheusCpp>();
        else
            server = std::make_unique<CppHttplib>();
        const int threads = threads_now() - threads_before;
        std::vector<Phase> phases;
        phases.push_back(alone(server->port(), 20));
        for (int k : slow)
            phases.push_back(
                under_attack("slow-loris x" + std::to_string(k), server->port(), k, true, seconds));
        phases.push_back(
            under_attack("idle x" + std::to_string(idle), server->port(), idle, false, seconds));
        nlohmann::json s = {
            {"server", name}, {"threads", threads}, {"phases", nlohmann::json::array()}};
        for (const Phase& p : phases) {
            nlohmann::json j = {{"phase", p.name},
                                {"ok", p.ok},
                                {"failed", p.failed},
                                {"failures", p.failures},
                                {"median_ms", p.median_ms},
                                {"worst_ms", p.worst_ms},
                                {"first_ok_s", p.recovered_s}};
            if (p.held_closed_by_server >= 0)
                j["hostile_closed_by_server"] = p.held_closed_by_server;
            s["phases"].push_back(j);
        }
        report.push_back(s);
        if (!json) {
            std::printf("%-15s threads %d\n", name.c_str(), threads);
            for (const Phase& p : phases) {
                std::string f;
                for (const auto& [what, n] : p.failures)
                    f += (f.empty() ? "" : ",") + what + ":" + std::to_string(n);
                std::printf("  %-16s ok %3d failed %3d %-22s median %8.1f ms worst %8.1f ms",
                            p.name.c_str(), p.ok, p.failed, f.empty() ? "" : f.c_str(), p.median_ms,
                            p.worst_ms);
                if (p.held_closed_by_server >= 0)
                    std::printf("  first ok %5.1f s  hostile closed by server %d", p.recovered_s,
                                p.held_closed_by_server);
                std::printf("\n");
            }
            std::fflush(stdout);
        }
    }
    if (json) std::printf("%s\n", report.dump(2).c_str());
    return 0;
}
