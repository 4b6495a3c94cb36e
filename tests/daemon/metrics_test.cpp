// The Prometheus exposition (families, labels, escaping, promtool's linter on real output)
// and the metrics endpoint's HTTP handling (GET only, bounds, status codes).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include "dpnb/daemon/http_server.hpp"
#include "dpnb/daemon/metrics.hpp"
#include "dpnb/netif/ctrl_handler.hpp"
#include "dpnb/netif/tx_parser.hpp"
#include "loop_helper.hpp"

namespace dpnb::daemon {
namespace {

MetricsSnapshot sample() {
    MetricsSnapshot s;
    control::VifInfo a;
    a.id = {1, 0};
    a.domain_name = "guest\"one\\";
    a.role = control::VifRole::served;
    a.phase = netif::Phase::connected;
    a.attached = true;
    a.port = "uplink";
    a.connects = 2;
    engine::VifStatus st;
    st.id = a.id;
    st.rx_mode = engine::RxMode::reuse;
    st.queues = 2;
    st.lcore = 1;
    st.counters.rx_packets = 100;
    st.counters.tx_packets = 50;
    st.counters.rx_bytes = 150000;
    st.counters.tx_bytes = 75000;
    st.counters.tx_drop_spoofed = 3;
    st.counters.iott_hits = 90;
    st.counters.iott_misses = 10;
    st.tx_errors.assign(netif::tx_error_table().size(), 0);
    st.tx_errors[0] = 4;
    st.control_ring = true;
    st.ctrl_requests = 12;
    st.ctrl_not_supported = 2;
    st.ctrl_invalid = 3;
    st.ctrl_errors.assign(netif::ctrl::kCtrlErrorCount, 0);
    st.ctrl_errors[static_cast<std::size_t>(netif::ctrl::CtrlError::mapping_out_of_range) - 1] = 3;
    st.hash.algorithm = netif::hash_alg::kToeplitz;
    st.hash.mapping_size = 64;
    st.static_grant_iommu = engine::VifStatus::StaticGrantIommu{256, 3, 1, 0};
    a.data_plane = st;
    control::VifInfo b;
    b.id = {2, 1};
    b.role = control::VifRole::served;
    b.phase = netif::Phase::init_wait;
    s.vifs = {a, b};
    engine::LcoreStats l;
    l.lcore = 1;
    l.busy_polls = 10;
    l.idle_polls = 990;
    l.cpu_ns = 2500000000;
    l.queues = 2;
    s.lcores = {l};
    engine::PortStatus p;
    p.name = "uplink";
    p.driver = "net_null";
    p.rx_queues = 1;
    p.queue_owner = {std::nullopt};
    p.stats.ipackets = 5;
    p.dma = pmd::DmaVerdict::copy_only;
    p.dma_inputs = {pmd::DomainType::hvm, pmd::DeviceBus::pci, pmd::DeviceBinding::vfio_iommu,
                    pmd::IovaMode::va};
    s.ports = {p};
    s.control.vifs_by_phase[static_cast<std::size_t>(netif::Phase::connected)] = 1;
    s.control.vifs_by_phase[static_cast<std::size_t>(netif::Phase::init_wait)] = 1;
    s.server.requests_ok["list"] = 3;
    s.process.version = "0.1.0";
    s.process.hypervisor = "sim";
    s.process.dpdk_version = "DPDK 22.11";
    s.process.uptime_seconds = 12.5;
    return s;
}

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, FamiliesAndSamples) {
    const std::string t = render_metrics(sample());
    EXPECT_TRUE(has_line(t, "# TYPE dpnetback_vif_packets_total counter")) << t;
    EXPECT_TRUE(has_line(t, R"(dpnetback_vif_packets_total{vif="vif1.0",direction="rx"} 100)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_vif_packets_total{vif="vif1.0",direction="tx"} 50)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_vif_bytes_total{vif="vif1.0",direction="rx"} 150000)"));
    EXPECT_TRUE(has_line(
        t,
        R"(dpnetback_vif_dropped_packets_total{vif="vif1.0",direction="tx",reason="spoofed"} 3)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_vif_iott_lookups_total{vif="vif1.0",result="hit"} 90)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_vif_iott_hit_ratio{vif="vif1.0"} 0.90000000000000002)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_vif_rx_mode{vif="vif1.0",mode="reuse"} 1)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_vif_phase{vif="vif2.1",phase="init_wait"} 1)"));
    const std::string first_reason = std::string(netif::tx_error_table()[0].name).substr(3);
    EXPECT_NE(
        t.find("dpnetback_vif_tx_errors_total{vif=\"vif1.0\",reason=\"" + first_reason + "\""),
        std::string::npos);
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_polls_total{lcore="1",result="busy"} 10)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_polls_total{lcore="1",result="idle"} 990)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_cpu_seconds_total{lcore="1"} 2.5)"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_port_packets_total{port="uplink",direction="rx"} 5)"));
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_port_dma_info{port="uplink",verdict="copy_only",domain="HVM",bus="pci",)"
           R"(binding="vfio",iova="VA"} 1)"))
        << t;
    EXPECT_TRUE(has_line(t, R"(dpnetback_vifs{phase="connected"} 1)"));
    EXPECT_TRUE(has_line(t, "dpnetback_vifs_connected 1"));
    EXPECT_TRUE(has_line(t, R"(dpnetback_mgmt_requests_total{command="list",result="ok"} 3)"));
    EXPECT_TRUE(has_line(t, "dpnetback_uptime_seconds 12.5"));
    // Label values are escaped.
    EXPECT_NE(t.find(R"(domain="guest\"one\\")"), std::string::npos);
    // A vif without data plane has no counters.
    EXPECT_EQ(t.find(R"(dpnetback_vif_packets_total{vif="vif2.1")"), std::string::npos);
    // The control ring: requests by status, refusals by reason, the hash set.
    EXPECT_TRUE(
        has_line(t, R"(dpnetback_vif_ctrl_requests_total{vif="vif1.0",status="success"} 7)"));
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_vif_ctrl_requests_total{vif="vif1.0",status="invalid_parameter"} 3)"));
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_vif_ctrl_errors_total{vif="vif1.0",reason="mapping_out_of_range"} 3)"));
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_vif_hash_info{vif="vif1.0",algorithm="toeplitz",mapping_size="64"} 1)"));
    // Static grants behind an IOMMU: the control thread's calls, by kind.
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_vif_static_grant_iommu_calls_total{vif="vif1.0",kind="map"} 256)"));
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_vif_static_grant_iommu_calls_total{vif="vif1.0",kind="unmap"} 3)"));
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_vif_static_grant_iommu_failures_total{vif="vif1.0",kind="map"} 1)"));
    EXPECT_TRUE(has_line(
        t, R"(dpnetback_vif_static_grant_iommu_failures_total{vif="vif1.0",kind="unmap"} 0)"));
    // A counter without a family of its own is exported under its own name.
    EXPECT_NE(t.find("dpnetback_vif_rx_out_of_order_total{vif=\"vif1.0\"}"), std::string::npos);
}

TEST(Metrics, EachFamilyOnceAndContiguous) {
    const std::string t = render_metrics(sample());
    std::map<std::string, int> types;
    std::string current;
    std::set<std::string> closed;
    std::istringstream in(t);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("# TYPE ", 0) == 0) {
            const std::string name = line.substr(7, line.find(' ', 7) - 7);
            EXPECT_EQ(++types[name], 1) << name;
            if (!current.empty()) closed.insert(current);
            current = name;
            continue;
        }
        if (line.rfind("#", 0) == 0) continue;
        const std::string name = line.substr(0, line.find_first_of("{ "));
        EXPECT_EQ(name, current) << "sample outside its family: " << line;
        EXPECT_FALSE(closed.count(name)) << line;
    }
}

// The counter samples of `text` that carry `label` (`vif="vif1.0"`) and end in " value".
std::vector<std::string> counter_samples(const std::string& text, const std::string& label,
                                         std::uint64_t value) {
    std::set<std::string> counters;
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    const std::string tail = " " + std::to_string(value);
    while (std::getline(in, line)) {
        if (line.rfind("# TYPE ", 0) == 0 && line.size() > 8 &&
            line.substr(line.size() - 8) == " counter")
            counters.insert(line.substr(7, line.size() - 15));
        if (line.empty() || line[0] == '#' || line.find(label) == std::string::npos) continue;
        const std::string family = line.substr(0, line.find_first_of("{ "));
        if (counters.count(family) && line.size() > tail.size() &&
            line.substr(line.size() - tail.size()) == tail)
            out.push_back(line);
    }
    return out;
}

// Every counter of the engine's vif and lcore counter tables reaches the exposition: each
// gets a value of its own, and exactly one counter sample of its vif or lcore carries it.
TEST(Metrics, EveryCounterOfTheCounterTablesIsExported) {
    MetricsSnapshot s = sample();
    engine::VifCounters& vc = s.vifs[0].data_plane->counters;
    std::uint64_t v = 7001;
#define DPNB_X(name, help) vc.name = v++;
    DPNB_VIF_COUNTERS(DPNB_X)
#undef DPNB_X
    engine::LcoreStats& lc = s.lcores[0];
#define DPNB_X(name, help) lc.name = v++;
    DPNB_LCORE_COUNTERS(DPNB_X)
#undef DPNB_X
    const std::string t = render_metrics(s);

    const auto vifs = engine::vif_counter_table();
    ASSERT_FALSE(vifs.empty());
    for (std::size_t i = 0; i < vifs.size(); ++i) {
        const auto found = counter_samples(t, R"(vif="vif1.0")", engine::counter_value(vc, i));
        EXPECT_EQ(found.size(), 1u) << "vif counter " << vifs[i].name;
    }
    const auto lcores = engine::lcore_counter_table();
    ASSERT_FALSE(lcores.empty());
    for (std::size_t i = 0; i < lcores.size(); ++i) {
        const auto found = counter_samples(t, R"(lcore="1")", engine::counter_value(lc, i));
        EXPECT_EQ(found.size(), 1u) << "lcore counter " << lcores[i].name;
    }
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_inbox_drops_total{lcore="1"} )" +
                                std::to_string(lc.inbox_drops)));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_tx_nic_drops_total{lcore="1"} )" +
                                std::to_string(lc.tx_nic_drops)));
    // System calls per packet come from these (docs/operations.md).
    EXPECT_TRUE(
        has_line(t, R"(dpnetback_lcore_hypervisor_calls_total{lcore="1",kind="grant_copy"} )" +
                        std::to_string(lc.grant_copy_calls)))
        << t;
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_hypervisor_calls_total{lcore="1",kind="notify"} )" +
                                std::to_string(lc.notify_calls)));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_syscalls_total{lcore="1",kind="write"} )" +
                                std::to_string(lc.write_syscalls)));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_iommu_calls_total{lcore="1",kind="map"} )" +
                                std::to_string(lc.dma_map_calls)));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_iommu_calls_total{lcore="1",kind="unmap"} )" +
                                std::to_string(lc.dma_unmap_calls)));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_iommu_failures_total{lcore="1",kind="map"} )" +
                                std::to_string(lc.dma_map_failures)));
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_iommu_failures_total{lcore="1",kind="unmap"} )" +
                                std::to_string(lc.dma_unmap_failures)));
}

TEST(Metrics, LcoreGauges) {
    MetricsSnapshot s = sample();
    s.lcores[0].nic_queues = 3;
    const std::string t = render_metrics(s);
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_nic_queues{lcore="1"} 3)")) << t;
    EXPECT_TRUE(has_line(t, R"(dpnetback_lcore_guest_queues{lcore="1"} 2)"));
}

// promtool (package prometheus) lints the exposition as Prometheus would.
void promtool_check(const std::string& text) {
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
    char path[] = "/tmp/dpnb-metrics-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
    const std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p))
        out += buf;
    const int status = pclose(p);
    unlink(path);
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, "") << out;
}

TEST(Metrics, PromtoolAcceptsIt) {
    promtool_check(render_metrics(sample()));
}

TEST(Metrics, PromtoolAcceptsAnEmptyDaemon) {
    promtool_check(render_metrics(MetricsSnapshot{}));
}

TEST(Http, ParseHead) {
    auto h = parse_http_head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->method, "GET");
    EXPECT_EQ(h->path, "/metrics");
    EXPECT_EQ(h->minor_version, 1);
    EXPECT_TRUE(parse_http_head("GET / HTTP/1.0\r\n\r\n"));
    for (const char* bad :
         {"GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
          "GET /metrics HTTP/2.0\r\n\r\n", "G3T /metrics HTTP/1.1\r\n\r\n",
          "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", "GET /a\x01 HTTP/1.1\r\n\r\n"})
        EXPECT_FALSE(parse_http_head(bad)) << bad;
}

class HttpServer : public ::testing::Test {
protected:
    void SetUp() override {
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop);
        loop_ = std::move(*loop);
        config_.port = 0; // any free port
    }
    void start() {
        auto s = MetricsServer::create(*loop_, config_, [] { return std::string("m 1\n"); });
        ASSERT_TRUE(s) << s.error().message;
        server_ = std::move(*s);
    }
    std::string exchange(const std::string& request) {
        const std::uint16_t port = server_->port();
        return test::run_with_loop(*loop_, [request, port] {
            const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return std::string();
            ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
            std::string in;
            char buf[4096];
            ssize_t n;
            while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
                in.append(buf, static_cast<size_t>(n));
            ::close(fd);
            return in;
        });
    }
    std::unique_ptr<EventLoop> loop_;
    MetricsConfig config_;
    std::unique_ptr<MetricsServer> server_;
};

TEST_F(HttpServer, ServesMetrics) {
    start();
    ASSERT_NE(server_->port(), 0);
    const std::string r = exchange("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
    EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
              std::string::npos);
    EXPECT_NE(r.find("Content-Length: 4\r\n"), std::string::npos);
    EXPECT_EQ(r.substr(r.size() - 4), "m 1\n");
    EXPECT_EQ(server_->stats().scrapes, 1u);
    // HTTP/1.0 and bare LF line ends (scripts) work too.
    EXPECT_EQ(exchange("GET /metrics HTTP/1.0\n\n").rfind("HTTP/1.1 200 OK", 0), 0u);
}

TEST_F(HttpServer, StatusCodes) {
    start();
    EXPECT_EQ(
        exchange("POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405 Method Not Allowed", 0), 0u);
    EXPECT_NE(exchange("HEAD /metrics HTTP/1.1\r\n\r\n").find("Allow: GET\r\n"), std::string::npos);
    EXPECT_EQ(exchange("GET /other HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404 Not Found", 0), 0u);
    EXPECT_EQ(exchange("hello\r\n\r\n").rfind("HTTP/1.1 400 Bad Request", 0), 0u);
    EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n" + std::string(kMaxHead + 10, 'x'))
                  .rfind("HTTP/1.1 431", 0),
              0u);
    EXPECT_EQ(server_->stats().scrapes, 0u);
}

TEST_F(HttpServer, TooManyClientsGet503) {
    config_.max_clients = 1;
    start();
    const std::uint16_t port = server_->port();
    // One client holds its connection open without a request; the next one is refused.
    const int hold = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(hold, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    // The server accepts it (the first event) before the second one comes.
    ASSERT_TRUE(loop_->run_once(std::chrono::milliseconds(60'000)));
    EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 503", 0), 0u);
    ::close(hold);
}

// A slow-loris client (a request head that never ends) holds one connection slot, never the
// server: scrapes are answered while it trickles, and expire() closes it at its deadline.
TEST_F(HttpServer, ASlowClientNeitherStopsScrapesNorOutlivesItsTimeout) {
    config_.timeout = std::chrono::milliseconds(300);
    start();
    const int slow = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server_->port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(slow, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string part = "GET /metrics HTTP/1.1\r\nX-Slow: a";
    ASSERT_EQ(::send(slow, part.data(), part.size(), 0), static_cast<ssize_t>(part.size()));
    ASSERT_TRUE(loop_->run_once(std::chrono::milliseconds(60'000))); // accepted
    EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200 OK", 0), 0u);
    // Past its deadline the slow client is closed: its next read sees the end.
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    server_->expire();
    char c;
    const ssize_t n = ::recv(slow, &c, 1, 0);
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n;
    EXPECT_EQ(server_->stats().rejected, 1u);
    EXPECT_EQ(server_->stats().scrapes, 1u);
    ::close(slow);
}

TEST_F(HttpServer, BusyPortIsAClearError) {
    start();
    MetricsConfig c = config_;
    c.port = server_->port();
    auto second = MetricsServer::create(*loop_, c, [] { return std::string(); });
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, Errc::busy);
    EXPECT_EQ(second.error().message,
              "metrics endpoint 127.0.0.1:" + std::to_string(c.port) + ": Address already in use");
}

} // namespace
} // namespace dpnb::daemon
