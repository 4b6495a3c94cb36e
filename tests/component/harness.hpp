// TEST-ONLY plumbing for the component tests: the simulated hypervisor (dpnb-simhv) in its
// own process, simulated guests in forked processes (the test netfront, driven over a
// socketpair), a small stand-in for the control plane's side of the xenstore handshake,
// the tap interfaces' kernel side (AF_PACKET sockets in a network namespace of the test's
// own), and the Engine options every test of one process shares (EAL runs once per process).
//
// Guests are forked before the Engine starts when a test can (ctest runs each test in its
// own process, so that is always the case there); every wait has a generous timeout and
// none is used as synchronisation.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dpnb/engine/engine.hpp"
#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xenstore.hpp"
#include "dpnb/netfront/netfront.hpp"
#include "dpnb/netif/features.hpp"

struct rte_ring;

namespace dpnb::component {

using namespace dpnb::engine;

inline constexpr int kTimeoutMs = 60'000;

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
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// One end of a socketpair carrying 64-bit words.
class Link {
public:
    Link() = default;
    explicit Link(int fd) : fd_(fd) {}
    Link(Link&& o) noexcept;
    Link& operator=(Link&& o) noexcept;
    ~Link() { close(); }
    static std::pair<Link, Link> make();
    void close();
    int fd() const { return fd_; }
    bool send(std::uint64_t v) const;
    std::optional<std::uint64_t> recv(int timeout_ms = kTimeoutMs) const;
    bool readable() const;

private:
    int fd_ = -1;
};

// A forked process running `body`; it exits 0 when no gtest assertion failed in it.
class Child {
public:
    Child() = default;
    explicit Child(const std::function<void()>& body);
    Child(Child&& o) noexcept;
    Child& operator=(Child&& o) noexcept;
    ~Child() { kill_now(); }
    bool succeeded(int timeout_ms = kTimeoutMs);
    void kill_now();

private:
    int pid_ = -1;
};

// Forks `body` with one end of a new link; the caller keeps the other end in `link`.
Child spawn_linked(Link& link, const std::function<void(const Link&)>& body);

// dpnb-simhv serving a folder, in its own process.
class SimServer {
public:
    explicit SimServer(const std::string& dir);
    ~SimServer() { (void)stop(); }
    bool ready() const { return ready_; }
    int stop();

private:
    int pid_ = -1;
    bool ready_ = false;
    int status_ = -1;
};

// --- environment -------------------------------------------------------------------------

// The EAL options of this test process: main lcore 0, two worker lcores sharing CPU 1,
// no hugepages, no PCI, a unique file prefix.
pmd::EalOptions test_eal();
EngineOptions engine_options(std::vector<pmd::PortConfig> ports);
// A net_ring ethdev over one RX ring (what a port receives) and one TX ring (what it sends),
// as rte_eth_from_rings makes it: its name, or empty.
std::string ring_ethdev(const std::string& name, rte_ring* rx, rte_ring* tx);

// Whether tap tests can run: root, /dev/net/tun, and the private network namespace this
// process moved into at start (so that tap interfaces are quiet and invisible to others).
bool tap_available(std::string* why);
std::string tap_name(unsigned n); // a unique interface name for this process

// The kernel side of a tap interface: an AF_PACKET socket bound to it.
class TapPeer {
public:
    explicit TapPeer(const std::string& iface);
    ~TapPeer();
    bool ok() const { return fd_ >= 0; }
    bool send(const std::vector<std::byte>& frame) const;
    // The next frame the interface received with our test ethertype, or nullopt on timeout.
    std::optional<std::vector<std::byte>> recv(int timeout_ms = kTimeoutMs) const;

private:
    int fd_ = -1;
};

// --- guests --------------------------------------------------------------------------------

netif::MacAddress guest_mac(hv::DomId dom, std::uint32_t handle = 0);
netif::MacAddress peer_mac();
std::vector<std::byte> payload_frame(const netif::MacAddress& dst, const netif::MacAddress& src,
                                     std::uint64_t seq, std::uint32_t stream, std::size_t size);

// A TCP segment over IPv4 or IPv6 as a guest stack hands it to netfront with a partial
// checksum (the pseudo-header sum in the TCP checksum field). Payload byte k of the stream
// is (k * 13 + seed) & 0xFF, so segments can be checked without the original.
std::vector<std::byte> tcp_frame(const netif::MacAddress& dst, const netif::MacAddress& src,
                                 bool ipv6, std::uint32_t seq, std::size_t payload,
                                 std::uint8_t seed);
struct TcpSegment {
    bool ok = false;
    std::string why;
    std::uint32_t seq = 0;
    std::size_t payload = 0;
    bool fin_or_psh = false;
    std::uint16_t csum = 0;        // the TCP checksum field
    std::uint16_t pseudo_csum = 0; // a partial checksum's value: the pseudo-header over the length
};
// Checks a frame the engine sent: IPv4 header checksum, TCP checksum, the payload pattern.
// `partial_csum`: the TCP checksum field holds the pseudo-header sum of a packet whose
// checksum is still to be filled in (CHECKSUM_PARTIAL, csum_blank): it is not checked.
TcpSegment check_tcp_frame(const std::vector<std::byte>& frame, bool ipv6, std::uint8_t seed,
                           std::uint32_t seq0, bool partial_csum = false);
// Fills in the TCP checksum of a frame whose checksum is partial (the pseudo-header sum in
// the field: NETRXF_csum_blank), as the receiving guest's stack does (Ethernet + IPv4 or IPv6
// without extension headers + TCP, as tcp_frame builds them).
void complete_tcp_checksum(std::span<std::byte> frame);

struct GuestOptions {
    netfront::RxMode rx_mode = netfront::RxMode::copy;
    std::uint32_t handle = 0;
    bool half_page_buffers = false; // two RX buffers per page, if the backend offers offsets
    bool rx_gso = true;             // feature-gso-tcpv4 and -tcpv6 offered to the backend
    bool rx_sg = true;              // feature-sg: frames larger than a page span several slots
    unsigned max_queues = 1;        // queues asked for (the backend's offer caps them)
    std::optional<netfront::HashRequest> hash{}; // receive hashing asked over the control ring
    std::uint8_t tcp_seed = 0;                   // tcp_frame()'s seed of the frames it checks
};

struct GuestReport {
    std::uint64_t received = 0; // valid payload frames
    std::uint64_t bad = 0;      // frames that failed the payload check
    std::uint64_t foreign = 0;  // valid frames unicast to another MAC (isolation broken)
    std::uint64_t tx_ok = 0;
    std::uint64_t tx_failed = 0;
    std::uint64_t broken = 0;
    std::uint64_t reuse_hits = 0;
    std::uint64_t rx_buffer_size = 0; // bytes per posted RX buffer
    // Frames that are not payload frames, by what the backend said of them (any stream).
    std::uint64_t tcp_frames = 0; // TCP over IPv4 or IPv6
    std::uint64_t csum_blank = 0; // of which NETRXF_csum_blank
    std::uint64_t gso_frames = 0; // of which with a GSO extra
    // Of the TCP frames: right (checksums, once a partial one is completed, and every payload
    // byte of tcp_frame()'s pattern with GuestOptions::tcp_seed), their payload bytes, the
    // longest frame, NETRXF_data_validated, the last GSO extra's size and type; how many
    // came on each of the first kQueues RX queues.
    static constexpr unsigned kQueues = 4;
    std::uint64_t tcp_good = 0;
    std::uint64_t tcp_payload = 0;
    std::uint64_t tcp_longest = 0;
    std::uint64_t tcp_validated = 0;
    std::uint64_t gso_size = 0;
    std::uint64_t gso_type = 0;
    std::array<std::uint64_t, kQueues> tcp_by_queue{};
    // Frames with a hash extra-info slot, and the sum of their value | type << 32.
    std::uint64_t hash_extras = 0;
    std::uint64_t hash_sum = 0;
    bool hash_accepted = false; // the backend took every hash message of GuestOptions::hash
    std::string counters;       // the netfront's non-zero counters, for failure messages
};

// A netfront in a forked process, driven by commands. Received frames are checked with the
// payload check (every byte) and counted by stream.
class GuestProcess {
public:
    GuestProcess(const std::string& sim_dir, hv::DomId dom, const GuestOptions& options);
    bool started() const { return started_; }
    // The guest reports when its netfront reached Connected (after the handshake).
    bool wait_connected();
    // Sends `count` payload frames of `size` bytes to `dst`; `first_offset` places the
    // frame in its first page (frames crossing a page boundary use several slots).
    // With `wait_done`, returns once the backend answered every frame.
    bool send(const netif::MacAddress& dst, std::uint32_t stream, std::uint64_t count,
              std::uint32_t size, std::uint16_t first_offset = 0, bool wait_done = true);
    // Sends `count` TCP frames with `payload` bytes each and a partial checksum, as GSO
    // packets of MSS `gso_size` when it is not 0; frame i starts at sequence i * 100000.
    bool send_tcp(const netif::MacAddress& dst, std::uint64_t count, std::uint32_t payload,
                  std::uint16_t gso_size, bool ipv6, std::uint8_t seed);
    // Sends one frame as given (any bytes), starting at `first_offset` in its first page
    // (a frame crossing the page's end takes a second slot there), and waits for the
    // backend's answer: true for OKAY, false for an error, nullopt when it could not send.
    std::optional<bool> send_frame(const std::vector<std::byte>& frame,
                                   std::uint16_t first_offset = 0, bool csum_partial = false);
    // Waits until `count` valid frames of `stream` arrived (in total), up to `timeout_ms`.
    std::optional<GuestReport> wait_received(std::uint32_t stream, std::uint64_t count,
                                             int timeout_ms = kTimeoutMs);
    std::optional<GuestReport> report(std::uint32_t stream);
    // Closing needs the backend's side of the handshake: ask, run it, then collect.
    bool request_close();
    bool close_result();
    bool succeeded() { return child_.succeeded(); }

private:
    Link link_;
    Child child_;
    bool started_ = false;
};

// --- the control plane's side of the handshake (until the daemon's exists) ----------------

class BackendHandshake {
public:
    BackendHandshake(hv::Xenstore& xs, DataPlane& dp) : xs_(xs), dp_(dp) {}
    netif::BackendCapabilities caps;
    // InitWait, wait for the frontend's Connected, parse its keys, attach, Connected.
    Status connect(hv::DomId dom, std::uint32_t handle, const std::string& port, RxMode mode,
                   int timeout_ms = kTimeoutMs);
    // Waits for the frontend's Closing, detaches, Closed.
    Status disconnect(hv::DomId dom, std::uint32_t handle, int timeout_ms = kTimeoutMs);

private:
    Result<std::string> frontend_state(const std::string& fe);
    hv::Xenstore& xs_;
    DataPlane& dp_;
};

// A vif's state, RX mode and non-zero counters, for failure messages.
std::string describe(const VifStatus& s);

// A simulated hypervisor, its toolstack and dom0's xenstore for one test.
class SimFixture : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;
    hv::DomId create_guest(const std::string& name);
    Status plug(hv::DomId dom, std::uint32_t handle = 0);
    std::uint64_t pinned_grants(hv::DomId dom);
    std::uint64_t total_pinned();

    TempDir dir_;
    std::unique_ptr<SimServer> server_;
    std::unique_ptr<hv::sim::Toolstack> toolstack_;
    std::unique_ptr<hv::Xenstore> xs_;
};

// SimFixture plus an Engine: helpers to start it, read and describe a vif, and end with every
// guest closed, no leak and no grant pinned.
class EngineFixture : public SimFixture {
protected:
    // `placement`: a simulated kernel for IRQs and vhost workers; the system's when null.
    void start_engine(const EngineOptions& options, pmd::CpuPlacement* placement = nullptr);
    VifStatus status(hv::DomId dom);
    std::string describe(hv::DomId dom); // state, RX mode and non-zero counters
    void finish(std::vector<std::pair<GuestProcess*, hv::DomId>> guests);

    std::unique_ptr<hv::BackendHypervisor> backend_;
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<BackendHandshake> handshake_;
};

// An EngineFixture on net_tap ports: skipped without tap support; a helper to get past a
// zero-copy queue's start-up placeholders.
class TapEngineFixture : public EngineFixture {
protected:
    void SetUp() override;
    static pmd::PortConfig tap_port(const std::string& name, const std::string& iface,
                                    pmd::Steering steering);
    using EngineFixture::start_engine;
    void start_engine(std::vector<pmd::PortConfig> ports);
    // The first frame a zero-copy queue receives after its port started lands in a
    // start-up placeholder and is dropped: send warm-up frames until one is accounted for.
    void warm_up(TapPeer& peer, hv::DomId dom);
};

} // namespace dpnb::component
