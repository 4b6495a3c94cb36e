// TEST-ONLY plumbing for the component tests (harness.hpp).
#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "dpnb/hv/xenstore_client.hpp"
#include "dpnb/netfront/payload.hpp"
#include "dpnb/netfront/toolstack.hpp"
#include "dpnb/netif/xenbus_state.hpp"

namespace dpnb::component {

// --- processes -----------------------------------------------------------------------------

TempDir::TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dpnb-ct-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

Link::Link(Link&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}

Link& Link::operator=(Link&& o) noexcept {
    if (this != &o) {
        close();
        fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
}

std::pair<Link, Link> Link::make() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    return {Link(sv[0]), Link(sv[1])};
}

void Link::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

bool Link::send(std::uint64_t v) const {
    return ::send(fd_, &v, sizeof(v), MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof(v));
}

std::optional<std::uint64_t> Link::recv(int timeout_ms) const {
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

bool Link::readable() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

Child::Child(const std::function<void()>& body) {
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
        body();
        std::fflush(nullptr);
        ::_exit(::testing::Test::HasFailure() ? 1 : 0);
    }
}

Child::Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}

Child& Child::operator=(Child&& o) noexcept {
    if (this != &o) {
        kill_now();
        pid_ = std::exchange(o.pid_, -1);
    }
    return *this;
}

Child spawn_linked(Link& link, const std::function<void(const Link&)>& body) {
    auto [mine, theirs] = Link::make();
    link = std::move(mine);
    Link child_link = std::move(theirs);
    Child c([&] {
        link.close();
        body(child_link);
    });
    child_link.close();
    return c;
}

bool Child::succeeded(int timeout_ms) {
    if (pid_ <= 0) return false;
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    pollfd p{pidfd, POLLIN, 0};
    int st = -1;
    if (pidfd >= 0 && ::poll(&p, 1, timeout_ms) <= 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    } else {
        ::waitpid(pid_, &st, 0);
    }
    if (pidfd >= 0) ::close(pidfd);
    pid_ = -1;
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void Child::kill_now() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
}

SimServer::SimServer(const std::string& dir) {
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

int SimServer::stop() {
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

// --- environment ---------------------------------------------------------------------------

namespace {

std::string g_tap_why = "not checked";
bool g_tap_ok = false;

bool write_file(const std::string& path, const std::string& value) {
    std::ofstream f(path);
    f << value;
    return static_cast<bool>(f);
}

// Moves the process into a network namespace of its own, before any thread exists: tap
// interfaces appear there only, with IPv6 off so that the kernel sends nothing on them.
class NetnsEnvironment : public ::testing::Environment {
public:
    void SetUp() override {
        if (::geteuid() != 0) {
            g_tap_why = "not root";
            return;
        }
        if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
            g_tap_why = "no /dev/net/tun";
            return;
        }
        if (::unshare(CLONE_NEWNET) != 0) {
            g_tap_why = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
            return;
        }
        (void)write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        (void)write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        g_tap_ok = true;
        g_tap_why.clear();
    }
};

[[maybe_unused]] ::testing::Environment* const g_env =
    ::testing::AddGlobalTestEnvironment(new NetnsEnvironment);

} // namespace

bool tap_available(std::string* why) {
    if (why != nullptr) *why = g_tap_why;
    return g_tap_ok;
}

std::string tap_name(unsigned n) {
    return "dpnbt" + std::to_string(n);
}

std::string ring_ethdev(const std::string& name, rte_ring* rx, rte_ring* tx) {
    const int port = rte_eth_from_rings(name.c_str(), &rx, 1, &tx, 1, SOCKET_ID_ANY);
    char ethdev[RTE_ETH_NAME_MAX_LEN];
    if (port < 0 || rte_eth_dev_get_name_by_port(static_cast<std::uint16_t>(port), ethdev) != 0)
        return {};
    return ethdev;
}

pmd::EalOptions test_eal() {
    pmd::EalOptions e;
    e.main_lcore = 0;
    e.worker_lcores = {1, 2};
    e.lcore_map = "0@0,1@1,2@1";
    e.no_huge = true;
    e.memory_mb = 512;
    e.no_pci = true;
    e.file_prefix = "dpnb-ct-" + std::to_string(::getpid());
    e.log_level = "notice";
    return e;
}

EngineOptions engine_options(std::vector<pmd::PortConfig> ports) {
    EngineOptions o;
    o.eal = test_eal();
    o.ports = std::move(ports);
    o.rx_mbufs_per_port = 2048;
    o.tx_mbufs_per_lcore = 1024;
    o.idle_polls = 64;
    return o;
}

TapPeer::TapPeer(const std::string& iface) {
    const unsigned idx = ::if_nametoindex(iface.c_str());
    if (idx == 0) return;
    fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0) return;
    sockaddr_ll sa{};
    sa.sll_family = AF_PACKET;
    sa.sll_protocol = htons(ETH_P_ALL);
    sa.sll_ifindex = static_cast<int>(idx);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
        ::close(fd_);
        fd_ = -1;
        return;
    }
    int big = 4 << 20;
    (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    (void)::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
}

TapPeer::~TapPeer() {
    if (fd_ >= 0) ::close(fd_);
}

bool TapPeer::send(const std::vector<std::byte>& frame) const {
    for (int tries = 0; tries < 1000; ++tries) {
        if (::send(fd_, frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size()))
            return true;
        if (errno != ENOBUFS && errno != EAGAIN && errno != ENETDOWN) {
            ADD_FAILURE() << "AF_PACKET send: " << std::strerror(errno);
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
}

std::optional<std::vector<std::byte>> TapPeer::recv(int timeout_ms) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::vector<std::byte> buf(65536);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0) return std::nullopt;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
        sockaddr_ll from{};
        socklen_t fl = sizeof(from);
        const ssize_t n = ::recvfrom(fd_, buf.data(), buf.size(), MSG_TRUNC,
                                     reinterpret_cast<sockaddr*>(&from), &fl);
        if (n < 14 || from.sll_pkttype == PACKET_OUTGOING) continue;
        const auto type = static_cast<std::uint16_t>(static_cast<unsigned>(buf[12]) << 8 |
                                                     static_cast<unsigned>(buf[13]));
        if (type != netfront::kPayloadEthertype) continue;
        buf.resize(static_cast<std::size_t>(n));
        return buf;
    }
}

// --- guests --------------------------------------------------------------------------------

netif::MacAddress guest_mac(hv::DomId dom, std::uint32_t handle) {
    netif::MacAddress m;
    m.bytes = {0x00,
               0x16,
               0x3e,
               static_cast<std::uint8_t>(dom >> 8),
               static_cast<std::uint8_t>(dom & 0xFF),
               static_cast<std::uint8_t>(handle)};
    return m;
}

netif::MacAddress peer_mac() {
    netif::MacAddress m;
    m.bytes = {0x02, 0x00, 0x00, 0x00, 0x00, 0x99};
    return m;
}

std::vector<std::byte> payload_frame(const netif::MacAddress& dst, const netif::MacAddress& src,
                                     std::uint64_t seq, std::uint32_t stream, std::size_t size) {
    std::vector<std::byte> f(size);
    netfront::PayloadHeader h;
    h.dst = dst;
    h.src = src;
    h.seq = seq;
    h.stream = stream;
    if (!netfront::build_payload_frame(f, h)) f.clear();
    return f;
}

namespace {

// RFC 1071 sum of 16-bit big-endian words, not folded.
std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
    for (std::size_t i = 0; i + 1 < n; i += 2)
        sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    if (n % 2 != 0) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
    return sum;
}

std::uint16_t fold(std::uint32_t sum) {
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return static_cast<std::uint16_t>(sum);
}

void put16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}
void put32(std::uint8_t* p, std::uint32_t v) {
    put16(p, static_cast<std::uint16_t>(v >> 16));
    put16(p + 2, static_cast<std::uint16_t>(v));
}
std::uint16_t get16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}
std::uint32_t get32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(get16(p)) << 16 | get16(p + 2);
}

// The pseudo-header sum for TCP over IPv4 or IPv6 with `l4_len` bytes of TCP.
std::uint32_t pseudo_sum(const std::uint8_t* ip, bool ipv6, std::uint32_t l4_len) {
    std::uint32_t sum = 0;
    if (ipv6) {
        sum = sum16(ip + 8, 32);
        sum += l4_len >> 16;
        sum += l4_len & 0xFFFF;
    } else {
        sum = sum16(ip + 12, 8);
        sum += l4_len;
    }
    return sum + 6; // IPPROTO_TCP
}

} // namespace

namespace {
// Ethernet + IPv4 or IPv6 (no extension headers) + TCP, as tcp_frame builds them.
bool is_tcp_frame(std::span<const std::byte> f) {
    if (f.size() < 54) return false;
    const auto at = [&](std::size_t i) { return std::to_integer<unsigned>(f[i]); };
    const unsigned type = at(12) << 8 | at(13);
    return (type == 0x0800 && at(23) == 6) || (type == 0x86DD && at(20) == 6);
}
} // namespace

std::vector<std::byte> tcp_frame(const netif::MacAddress& dst, const netif::MacAddress& src,
                                 bool ipv6, std::uint32_t seq, std::size_t payload,
                                 std::uint8_t seed) {
    const std::size_t l3 = ipv6 ? 40 : 20;
    const std::size_t hdr = 14 + l3 + 20;
    std::vector<std::byte> f(hdr + payload);
    auto* d = reinterpret_cast<std::uint8_t*>(f.data());
    std::copy(dst.bytes.begin(), dst.bytes.end(), d);
    std::copy(src.bytes.begin(), src.bytes.end(), d + 6);
    put16(d + 12, ipv6 ? 0x86DD : 0x0800);
    std::uint8_t* ip = d + 14;
    if (ipv6) {
        ip[0] = 0x60;
        put16(ip + 4, static_cast<std::uint16_t>(20 + payload));
        ip[6] = 6;
        ip[7] = 64;
        for (int i = 0; i < 16; ++i) {
            ip[8 + i] = static_cast<std::uint8_t>(i == 0 ? 0xfd : i == 15 ? 2 : 0);
            ip[24 + i] = static_cast<std::uint8_t>(i == 0 ? 0xfd : i == 15 ? 1 : 0);
        }
    } else {
        ip[0] = 0x45;
        put16(ip + 2, static_cast<std::uint16_t>(20 + 20 + payload));
        put16(ip + 4, 0x1234);
        ip[8] = 64;
        ip[9] = 6;
        const std::uint8_t s4[4] = {10, 0, 0, 2}, d4[4] = {10, 0, 0, 1};
        std::copy(s4, s4 + 4, ip + 12);
        std::copy(d4, d4 + 4, ip + 16);
        put16(ip + 10, static_cast<std::uint16_t>(~fold(sum16(ip, 20))));
    }
    std::uint8_t* tcp = ip + l3;
    put16(tcp, 40000);
    put16(tcp + 2, 5001);
    put32(tcp + 4, seq);
    put32(tcp + 8, 1);
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // ACK, PSH
    put16(tcp + 14, 65535);
    // CHECKSUM_PARTIAL: the folded pseudo-header sum, not complemented.
    put16(tcp + 16, fold(pseudo_sum(ip, ipv6, static_cast<std::uint32_t>(20 + payload))));
    for (std::size_t k = 0; k < payload; ++k)
        tcp[20 + k] = static_cast<std::uint8_t>(((seq + k) * 13 + seed) & 0xFF);
    return f;
}

void complete_tcp_checksum(std::span<std::byte> frame) {
    auto* d = reinterpret_cast<std::uint8_t*>(frame.data());
    if (frame.size() < 14 + 20 + 20) return;
    const bool ipv6 = get16(d + 12) == 0x86DD;
    const std::size_t l4 = 14 + (ipv6 ? 40U : 20U);
    if (frame.size() < l4 + 20) return;
    // The field holds the pseudo-header sum: the sum over the TCP bytes with it in place is
    // the whole sum, whose complement is the checksum.
    put16(d + l4 + 16, static_cast<std::uint16_t>(~fold(sum16(d + l4, frame.size() - l4))));
}

TcpSegment check_tcp_frame(const std::vector<std::byte>& frame, bool ipv6, std::uint8_t seed,
                           std::uint32_t seq0, bool partial_csum) {
    TcpSegment r;
    const auto* d = reinterpret_cast<const std::uint8_t*>(frame.data());
    const std::size_t l3 = ipv6 ? 40 : 20;
    if (frame.size() < 14 + l3 + 20) {
        r.why = "short frame";
        return r;
    }
    const std::uint8_t* ip = d + 14;
    std::size_t l4_len = 0;
    if (ipv6) {
        l4_len = get16(ip + 4);
    } else {
        if (fold(sum16(ip, 20)) != 0xFFFF) {
            r.why = "bad IPv4 header checksum";
            return r;
        }
        l4_len = get16(ip + 2) - 20U;
    }
    if (14 + l3 + l4_len != frame.size()) {
        r.why = "IP length " + std::to_string(l4_len) + " does not match the frame";
        return r;
    }
    const std::uint8_t* tcp = ip + l3;
    const std::uint32_t pseudo = pseudo_sum(ip, ipv6, static_cast<std::uint32_t>(l4_len));
    const std::uint32_t sum = sum16(tcp, l4_len, pseudo);
    r.csum = get16(tcp + 16);
    r.pseudo_csum = fold(pseudo);
    if (!partial_csum && fold(sum) != 0xFFFF) {
        r.why = "bad TCP checksum";
        return r;
    }
    r.seq = get32(tcp + 4);
    r.payload = l4_len - 20;
    r.fin_or_psh = (tcp[13] & 0x09) != 0;
    for (std::size_t k = 0; k < r.payload; ++k)
        if (tcp[20 + k] != static_cast<std::uint8_t>(((r.seq + k) * 13 + seed) & 0xFF)) {
            r.why = "payload byte " + std::to_string(k) + " differs";
            return r;
        }
    (void)seq0;
    r.ok = true;
    return r;
}

namespace {

enum GuestCmd : std::uint64_t { kSend = 1, kReport = 2, kClose = 3, kSendTcp = 4, kSendFrame = 5 };

std::uint64_t pack_mac(const netif::MacAddress& m) {
    std::uint64_t v = 0;
    for (auto b : m.bytes)
        v = v << 8 | b;
    return v;
}

netif::MacAddress unpack_mac(std::uint64_t v) {
    netif::MacAddress m;
    for (int i = 5; i >= 0; --i) {
        m.bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v & 0xFF);
        v >>= 8;
    }
    return m;
}

void guest_main(const std::string& sim_dir, hv::DomId dom, const GuestOptions& options,
                const Link& link) {
    auto hv = hv::sim::connect_guest(sim_dir, dom);
    if (!hv) {
        ADD_FAILURE() << "guest " << dom << ": " << hv.error().describe();
        return;
    }
    netfront::NetfrontOptions no;
    no.handle = options.handle;
    no.rx_mode = options.rx_mode;
    no.half_page_buffers = options.half_page_buffers;
    no.rx_gso_tcpv4 = no.rx_gso_tcpv6 = options.rx_gso;
    no.rx_sg = options.rx_sg;
    no.max_queues = options.max_queues;
    no.hash = options.hash;
    no.auto_reconnect = false;
    auto nf = netfront::Netfront::create(**hv, no);
    if (!nf) {
        ADD_FAILURE() << "guest " << dom << ": " << nf.error().describe();
        return;
    }
    netfront::Netfront& f = **nf;
    std::map<std::uint32_t, std::uint64_t> by_stream;
    std::uint64_t bad = 0, foreign = 0, tx_ok = 0, tx_failed = 0;
    std::uint64_t tcp = 0, csum_blank = 0, gso = 0;
    std::uint64_t tcp_good = 0, tcp_payload = 0, tcp_longest = 0, tcp_validated = 0;
    std::uint64_t gso_size = 0, gso_type = 0, hash_extras = 0, hash_sum = 0;
    std::array<std::uint64_t, GuestReport::kQueues> tcp_by_queue{};
    std::vector<std::byte> buf(70000);
    netfront::Handlers h;
    h.on_rx = [&](const netfront::RxFrameView& v) {
        const std::size_t n = v.copy_to(buf);
        if (v.hash) {
            ++hash_extras;
            hash_sum += v.hash_value | std::uint64_t{v.hash_type} << 32;
        }
        const auto info = netfront::check_payload_frame(std::span(buf.data(), n));
        if (info.result != netfront::PayloadCheck::ok && is_tcp_frame(std::span(buf.data(), n))) {
            ++tcp;
            csum_blank += v.csum_blank ? 1 : 0;
            gso += v.gso_type != 0 ? 1 : 0;
            tcp_validated += v.data_validated ? 1 : 0;
            if (v.gso_type != 0) {
                gso_size = v.gso_size;
                gso_type = v.gso_type;
            }
            tcp_longest = std::max<std::uint64_t>(tcp_longest, n);
            if (v.queue < tcp_by_queue.size()) ++tcp_by_queue[v.queue];
            std::vector<std::byte> frame(buf.begin(), buf.begin() + static_cast<long>(n));
            if (v.csum_blank) complete_tcp_checksum(frame);
            const bool v6 = std::to_integer<unsigned>(frame[12]) == 0x86;
            const TcpSegment s = check_tcp_frame(frame, v6, options.tcp_seed, 0);
            if (s.ok) {
                ++tcp_good;
                tcp_payload += s.payload;
            }
        } else if (info.result != netfront::PayloadCheck::ok)
            ++bad;
        else if (info.header.dst == f.mac() || info.header.dst.is_multicast())
            ++by_stream[info.header.stream];
        else
            ++foreign; // another guest's unicast frame: isolation is broken
    };
    h.on_tx = [&](const netfront::TxCompletion& c) {
        if (c.status == netfront::TxStatus::okay)
            ++tx_ok;
        else
            ++tx_failed;
    };
    if (Status st = f.wait_connected(std::chrono::milliseconds(kTimeoutMs), h); !st) {
        ADD_FAILURE() << "guest " << dom << ": " << st.error().describe();
        link.send(0);
        return;
    }
    link.send(1); // connected
    for (;;) {
        if (Status st = f.poll(std::chrono::milliseconds(5), h); !st) {
            ADD_FAILURE() << "guest " << dom << ": poll: " << st.error().describe();
            return;
        }
        if (!link.readable()) continue;
        auto cmd = link.recv();
        if (!cmd) return; // the test went away
        if (*cmd == kSend) {
            const auto dst = unpack_mac(link.recv().value_or(0));
            const auto stream = static_cast<std::uint32_t>(link.recv().value_or(0));
            const std::uint64_t count = link.recv().value_or(0);
            const auto size = static_cast<std::uint32_t>(link.recv().value_or(64));
            const auto offset = static_cast<std::uint16_t>(link.recv().value_or(0));
            const bool wait_done = link.recv().value_or(1) != 0;
            const std::uint64_t done_before = tx_ok + tx_failed;
            std::uint64_t sent = 0;
            const auto deadline =
                std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
            while (sent < count && std::chrono::steady_clock::now() < deadline) {
                const auto frame = payload_frame(dst, f.mac(), sent, stream, size);
                netfront::TxFrame tf;
                tf.data = frame;
                tf.first_offset = offset;
                Status st = f.send(0, tf);
                if (st) {
                    ++sent;
                    continue;
                }
                if (st.error().code != Errc::busy) {
                    ADD_FAILURE() << "guest " << dom << ": send: " << st.error().describe();
                    break;
                }
                (void)f.poll(std::chrono::milliseconds(1), h);
            }
            while (wait_done && tx_ok + tx_failed - done_before < sent &&
                   std::chrono::steady_clock::now() < deadline)
                (void)f.poll(std::chrono::milliseconds(5), h);
            link.send(sent);
        } else if (*cmd == kSendTcp) {
            const auto dst = unpack_mac(link.recv().value_or(0));
            const std::uint64_t count = link.recv().value_or(0);
            const auto payload = static_cast<std::uint32_t>(link.recv().value_or(0));
            const auto mss = static_cast<std::uint16_t>(link.recv().value_or(0));
            const bool v6 = link.recv().value_or(0) != 0;
            const auto seed = static_cast<std::uint8_t>(link.recv().value_or(0));
            const std::uint64_t done_before = tx_ok + tx_failed;
            std::uint64_t sent = 0;
            const auto deadline =
                std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
            while (sent < count && std::chrono::steady_clock::now() < deadline) {
                const auto frame = tcp_frame(
                    dst, f.mac(), v6, static_cast<std::uint32_t>(sent * 100000), payload, seed);
                netfront::TxFrame tf;
                tf.data = frame;
                tf.csum_partial = true;
                if (mss != 0) {
                    tf.gso_type = v6 ? netif::gso::kTcpV6 : netif::gso::kTcpV4;
                    tf.gso_size = mss;
                }
                Status st = f.send(0, tf);
                if (st) {
                    ++sent;
                    continue;
                }
                if (st.error().code != Errc::busy) {
                    ADD_FAILURE() << "guest " << dom << ": send: " << st.error().describe();
                    break;
                }
                (void)f.poll(std::chrono::milliseconds(1), h);
            }
            while (tx_ok + tx_failed - done_before < sent &&
                   std::chrono::steady_clock::now() < deadline)
                (void)f.poll(std::chrono::milliseconds(5), h);
            link.send(sent);
        } else if (*cmd == kSendFrame) {
            const std::uint64_t size = link.recv().value_or(0);
            const auto offset = static_cast<std::uint16_t>(link.recv().value_or(0));
            const bool partial = link.recv().value_or(0) != 0;
            std::vector<std::byte> frame(std::min<std::uint64_t>(size, 65536));
            for (std::size_t i = 0; i < frame.size(); i += 8) {
                const std::uint64_t w = link.recv().value_or(0);
                for (std::size_t b = 0; b < 8 && i + b < frame.size(); ++b)
                    frame[i + b] = static_cast<std::byte>(w >> (8 * b));
            }
            netfront::TxFrame tf;
            tf.data = frame;
            tf.first_offset = offset;
            tf.csum_partial = partial;
            const std::uint64_t done_before = tx_ok + tx_failed;
            const std::uint64_t ok_before = tx_ok;
            const auto deadline =
                std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
            Status st = f.send(0, tf);
            while (!st && st.error().code == Errc::busy &&
                   std::chrono::steady_clock::now() < deadline) {
                (void)f.poll(std::chrono::milliseconds(1), h);
                st = f.send(0, tf);
            }
            if (!st) ADD_FAILURE() << "guest " << dom << ": send: " << st.error().describe();
            while (st && tx_ok + tx_failed == done_before &&
                   std::chrono::steady_clock::now() < deadline)
                (void)f.poll(std::chrono::milliseconds(1), h);
            link.send(!st ? 0 : tx_ok != ok_before ? 1 : 2);
        } else if (*cmd == kReport) {
            const auto stream = static_cast<std::uint32_t>(link.recv().value_or(0));
            link.send(by_stream[stream]);
            link.send(bad);
            link.send(foreign);
            link.send(tx_ok);
            link.send(tx_failed);
            link.send(f.broken() ? 1 : 0);
            link.send(f.counters()[netfront::Counter::reuse_hits]);
            link.send(f.rx_buffer_size());
            link.send(tcp);
            link.send(csum_blank);
            link.send(gso);
            for (std::uint64_t v : {tcp_good, tcp_payload, tcp_longest, tcp_validated, gso_size,
                                    gso_type, hash_extras, hash_sum})
                link.send(v);
            for (std::uint64_t v : tcp_by_queue)
                link.send(v);
            link.send(f.hash_accepted() ? 1 : 0);
            std::string diag;
            for (const auto& info : netfront::counter_table())
                if (const auto v = f.counters()[info.counter]; v != 0)
                    diag += std::string(info.name) + "=" + std::to_string(v) + " ";
            link.send(diag.size());
            for (char c : diag)
                link.send(static_cast<unsigned char>(c));
        } else if (*cmd == kClose) {
            const Status st = f.close(std::chrono::milliseconds(kTimeoutMs));
            link.send(st ? 1 : 0);
            if (!st) ADD_FAILURE() << "guest " << dom << ": close: " << st.error().describe();
            return;
        }
    }
}

} // namespace

GuestProcess::GuestProcess(const std::string& sim_dir, hv::DomId dom, const GuestOptions& options) {
    auto [mine, theirs] = Link::make();
    link_ = std::move(mine);
    Link child_link = std::move(theirs);
    child_ = Child([&] {
        link_.close();
        guest_main(sim_dir, dom, options, child_link);
    });
    child_link.close();
    started_ = true;
}

bool GuestProcess::send_tcp(const netif::MacAddress& dst, std::uint64_t count,
                            std::uint32_t payload, std::uint16_t gso_size, bool ipv6,
                            std::uint8_t seed) {
    if (!link_.send(kSendTcp) || !link_.send(pack_mac(dst)) || !link_.send(count) ||
        !link_.send(payload) || !link_.send(gso_size) || !link_.send(ipv6 ? 1 : 0) ||
        !link_.send(seed))
        return false;
    auto sent = link_.recv();
    return sent && *sent == count;
}

std::optional<bool> GuestProcess::send_frame(const std::vector<std::byte>& frame,
                                             std::uint16_t first_offset, bool csum_partial) {
    if (!link_.send(kSendFrame) || !link_.send(frame.size()) || !link_.send(first_offset) ||
        !link_.send(csum_partial ? 1 : 0))
        return std::nullopt;
    for (std::size_t i = 0; i < frame.size(); i += 8) {
        std::uint64_t w = 0;
        for (std::size_t b = 0; b < 8 && i + b < frame.size(); ++b)
            w |= static_cast<std::uint64_t>(frame[i + b]) << (8 * b);
        if (!link_.send(w)) return std::nullopt;
    }
    auto r = link_.recv();
    if (!r || *r == 0) return std::nullopt;
    return *r == 1;
}

bool GuestProcess::wait_connected() {
    auto v = link_.recv();
    return v && *v == 1;
}

bool GuestProcess::send(const netif::MacAddress& dst, std::uint32_t stream, std::uint64_t count,
                        std::uint32_t size, std::uint16_t first_offset, bool wait_done) {
    if (!link_.send(kSend) || !link_.send(pack_mac(dst)) || !link_.send(stream) ||
        !link_.send(count) || !link_.send(size) || !link_.send(first_offset) ||
        !link_.send(wait_done ? 1 : 0))
        return false;
    auto sent = link_.recv();
    return sent && *sent == count;
}

std::optional<GuestReport> GuestProcess::report(std::uint32_t stream) {
    if (!link_.send(kReport) || !link_.send(stream)) return std::nullopt;
    GuestReport r;
    std::uint64_t* fields[] = {&r.received,    &r.bad,         &r.foreign,       &r.tx_ok,
                               &r.tx_failed,   &r.broken,      &r.reuse_hits,    &r.rx_buffer_size,
                               &r.tcp_frames,  &r.csum_blank,  &r.gso_frames,    &r.tcp_good,
                               &r.tcp_payload, &r.tcp_longest, &r.tcp_validated, &r.gso_size,
                               &r.gso_type,    &r.hash_extras, &r.hash_sum};
    for (std::uint64_t* f : fields) {
        auto v = link_.recv();
        if (!v) return std::nullopt;
        *f = *v;
    }
    for (std::uint64_t& q : r.tcp_by_queue) {
        auto v = link_.recv();
        if (!v) return std::nullopt;
        q = *v;
    }
    auto accepted = link_.recv();
    if (!accepted) return std::nullopt;
    r.hash_accepted = *accepted != 0;
    const std::uint64_t n = link_.recv().value_or(0);
    for (std::uint64_t i = 0; i < n; ++i)
        r.counters += static_cast<char>(link_.recv().value_or('?'));
    return r;
}

std::optional<GuestReport> GuestProcess::wait_received(std::uint32_t stream, std::uint64_t count,
                                                       int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto r = report(stream);
        if (!r || r->received >= count || std::chrono::steady_clock::now() >= deadline) return r;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

bool GuestProcess::request_close() {
    return link_.send(kClose);
}

bool GuestProcess::close_result() {
    auto r = link_.recv();
    return r && *r == 1;
}

// --- handshake -----------------------------------------------------------------------------

namespace {

netif::KeyReader reader_for(hv::Xenstore& xs, const std::string& folder) {
    return [&xs, folder](std::string_view key) -> Result<std::optional<std::string>> {
        auto v = xs.read(hv::kNoTxn, folder + "/" + std::string(key));
        if (v) return std::optional<std::string>(*v);
        if (v.error().code == Errc::not_found) return std::optional<std::string>();
        return std::move(v).error();
    };
}

} // namespace

Result<std::string> BackendHandshake::frontend_state(const std::string& fe) {
    return xs_.read(hv::kNoTxn, fe + "/state");
}

Status BackendHandshake::connect(hv::DomId dom, std::uint32_t handle, const std::string& port,
                                 RxMode mode, int timeout_ms) {
    const netif::BackendPath bp{hv::kDom0, dom, handle};
    const std::string be = netif::format_backend_path(bp);
    auto tc = netif::parse_toolstack_config(reader_for(xs_, be), bp);
    if (!tc) return std::move(tc).error();
    const std::string fe = netif::format_frontend_path(tc->frontend);
    auto entries = netif::backend_feature_entries(caps);
    if (!entries) return std::move(entries).error();
    for (const netif::XsEntry& e : *entries)
        if (Status st = xs_.write(hv::kNoTxn, be + "/" + e.key, e.value); !st) return st;
    if (Status st = xs_.write(hv::kNoTxn, be + "/hotplug-status", "connected"); !st) return st;
    if (Status st = xs_.write(hv::kNoTxn, be + "/state", "2"); !st) return st;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto s = frontend_state(fe);
        if (s && *s == "4") break;
        if (std::chrono::steady_clock::now() >= deadline)
            return make_error(Errc::again, fe + " did not reach Connected (state " +
                                               (s ? *s : std::string("?")) + ")");
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto cfg = netif::parse_frontend_config(reader_for(xs_, fe), caps);
    if (!cfg) return std::move(cfg).error();
    VifSpec spec;
    spec.id = VifId{dom, handle};
    spec.mac = tc->mac;
    spec.rx_mode = mode;
    spec.port = port;
    spec.frontend = *cfg;
    spec.rate = tc->rate;
    spec.ip = tc->ip;
    if (Status st = dp_.attach(spec); !st) {
        (void)xs_.write(hv::kNoTxn, be + "/state", "5");
        return st;
    }
    return xs_.write(hv::kNoTxn, be + "/state", "4");
}

Status BackendHandshake::disconnect(hv::DomId dom, std::uint32_t handle, int timeout_ms) {
    const netif::BackendPath bp{hv::kDom0, dom, handle};
    const std::string be = netif::format_backend_path(bp);
    const std::string fe = netif::format_frontend_path(netif::FrontendPath{dom, handle});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto s = frontend_state(fe);
        if (!s || *s == "5" || *s == "6") break;
        if (std::chrono::steady_clock::now() >= deadline)
            return make_error(Errc::again, fe + " did not close");
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Status st = dp_.detach(VifId{dom, handle});
    (void)xs_.write(hv::kNoTxn, be + "/state", "6");
    return st;
}

// --- fixture -------------------------------------------------------------------------------

void SimFixture::SetUp() {
    server_ = std::make_unique<SimServer>(dir_.path());
    ASSERT_TRUE(server_->ready()) << "dpnb-simhv did not start";
    auto ts = hv::sim::Toolstack::connect(dir_.path());
    CT_ASSERT_OK(ts);
    toolstack_ = std::move(*ts);
    auto xs = hv::open_xenstore(dir_.path() + "/xenstore-0.sock");
    CT_ASSERT_OK(xs);
    xs_ = std::move(*xs);
}

void SimFixture::TearDown() {
    xs_.reset();
    toolstack_.reset();
    if (server_) {
        const int st = server_->stop();
        EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            << "dpnb-simhv did not exit cleanly (status " << st << ")";
    }
}

hv::DomId SimFixture::create_guest(const std::string& name) {
    hv::sim::DomainConfig c;
    c.name = name;
    c.memory_pages = 4096;
    c.grant_frames = 16;
    auto dom = toolstack_->create_domain(c);
    EXPECT_TRUE(dom.has_value()) << dom.error().describe();
    return dom.value_or(hv::kDomIdInvalid);
}

Status SimFixture::plug(hv::DomId dom, std::uint32_t handle) {
    netfront::VifConfig v;
    v.guest = dom;
    v.backend = hv::kDom0;
    v.handle = handle;
    v.mac = guest_mac(dom, handle);
    return netfront::add_vif(*xs_, v);
}

std::uint64_t SimFixture::pinned_grants(hv::DomId dom) {
    auto info = toolstack_->domain_info(dom);
    return info ? info->pinned_grants : 0;
}

std::uint64_t SimFixture::total_pinned() {
    auto s = toolstack_->stats();
    return s ? s->pinned_grants : ~0ULL;
}

// --- TapEngineFixture ----------------------------------------------------------------------

void TapEngineFixture::SetUp() {
    std::string why;
    if (!tap_available(&why)) GTEST_SKIP() << "tap tests need " << why;
    SimFixture::SetUp();
}

pmd::PortConfig TapEngineFixture::tap_port(const std::string& name, const std::string& iface,
                                           pmd::Steering steering) {
    pmd::PortConfig p;
    p.name = name;
    p.device = "net_tap_" + name + ",iface=" + iface;
    p.steering = steering;
    p.rx_desc = 32;
    return p;
}

void TapEngineFixture::start_engine(std::vector<pmd::PortConfig> ports) {
    start_engine(engine_options(std::move(ports)));
}

void EngineFixture::start_engine(const EngineOptions& options, pmd::CpuPlacement* placement) {
    auto bhv = hv::sim::connect_backend(dir_.path());
    CT_ASSERT_OK(bhv);
    backend_ = std::move(*bhv);
    auto e = Engine::create(options, *backend_, pmd::system_dma_probe(), placement);
    CT_ASSERT_OK(e);
    engine_ = std::move(*e);
    handshake_ = std::make_unique<BackendHandshake>(*xs_, *engine_);
}

VifStatus EngineFixture::status(hv::DomId dom) {
    auto s = engine_->status(VifId{dom, 0});
    EXPECT_TRUE(s.has_value()) << s.error().describe();
    return s.value_or(VifStatus{});
}

std::string EngineFixture::describe(hv::DomId dom) {
    return component::describe(status(dom));
}

std::string describe(const VifStatus& s) {
    std::string out =
        to_string(s.id) +
        (s.state == VifRunState::disabled ? " disabled (" + s.disabled_reason + ")" : " running") +
        ", RX " + to_string(s.rx_mode);
    if (s.stalled_queues != 0) out += ", stalled queues " + std::to_string(s.stalled_queues);
    const auto table = vif_counter_table();
    for (std::size_t i = 0; i < table.size(); ++i)
        if (const auto v = counter_value(s.counters, i); v != 0)
            out += ", " + std::string(table[i].name) + "=" + std::to_string(v);
    return out;
}

void TapEngineFixture::warm_up(TapPeer& peer, hv::DomId dom) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (std::uint64_t i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
        const VifCounters c = status(dom).counters;
        if (c.rx_drop_placeholder + c.rx_packets != 0) return;
        ASSERT_TRUE(peer.send(payload_frame(guest_mac(dom), peer_mac(), i, 99, 60)));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "no frame reached the engine";
}

void EngineFixture::finish(std::vector<std::pair<GuestProcess*, hv::DomId>> guests) {
    for (auto& [g, dom] : guests) {
        ASSERT_TRUE(g->request_close());
        CT_EXPECT_OK(handshake_->disconnect(dom, 0));
        EXPECT_TRUE(g->close_result());
    }
    for (auto& [g, dom] : guests)
        EXPECT_TRUE(g->succeeded());
    CT_EXPECT_OK(engine_->shutdown());
    const LeakReport leaks = engine_->leaks();
    EXPECT_TRUE(leaks.clean()) << leaks.details.size() << " leak(s)";
    for (const auto& d : leaks.details)
        ADD_FAILURE() << d;
    engine_.reset();
    backend_.reset();
    EXPECT_EQ(total_pinned(), 0u);
}

} // namespace dpnb::component
