// A zero-copy tap queue flooded from the kernel side faster than its guest posts buffers.
//
// net_tap reads a frame before it allocates the buffer that replaces it; when the guest pool
// had nothing posted it dropped the frame, marked its RX trigger signal as seen, and then
// read nothing more until the kernel signalled a newly queued frame, which a full tun queue
// never does: the queue stalled for good although the guest re-posted (docs/benchmarks.md,
// "overload stall"). The lcore now asks the PMD for no more frames than it can replace.
//   * a flood of back-to-back frames into a queue that may post only 4 buffers ahead; then
//     frames reach the guest again (probes, sent one at a time until one arrives, as the
//     kernel drops silently on a full tun queue), then paced frames of another stream must
//     all arrive, and every frame the guest got (flood or not) is byte-exact and its own;
//   * in map and reuse modes (both have the device write into guest buffers).
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "dpnb/hv/sim.hpp"
#include "dpnb/netfront/payload.hpp"
#include "harness.hpp"

namespace dpnb::component {
namespace {

// Frames the flood offers: several times what the tun queue (500 frames) and the guest's
// ring (256 requests) hold together, so that the queue is full while the guest lags.
constexpr unsigned kFloodFrames = 4000;
constexpr unsigned kAfterFrames = 200;

// An AF_PACKET socket that never waits: the flood must not slow down when the tun queue is
// full (TapPeer::send retries on ENOBUFS, which paces).
class Flooder {
public:
    explicit Flooder(const std::string& iface) {
        const unsigned idx = ::if_nametoindex(iface.c_str());
        if (idx == 0) return;
        fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
        if (fd_ < 0) return;
        sockaddr_ll sa{};
        sa.sll_family = AF_PACKET;
        sa.sll_protocol = htons(ETH_P_ALL);
        sa.sll_ifindex = static_cast<int>(idx);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    ~Flooder() {
        if (fd_ >= 0) ::close(fd_);
    }
    Flooder(const Flooder&) = delete;
    Flooder& operator=(const Flooder&) = delete;
    bool ok() const { return fd_ >= 0; }
    // True when the kernel took the frame (it may still drop it on a full tun queue).
    bool offer(const std::vector<std::byte>& frame) const {
        return ::send(fd_, frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size());
    }

private:
    int fd_ = -1;
};

struct FloodCase {
    RxMode mode;
    netfront::RxMode guest;
    const char* name;
};

void PrintTo(const FloodCase& c, std::ostream* os) {
    *os << c.name;
}

class TapFlood : public TapEngineFixture, public ::testing::WithParamInterface<FloodCase> {
protected:
    void start_engine(const std::string& iface) {
        EngineOptions o = engine_options({tap_port("tapf", iface, pmd::Steering::dedicated_port)});
        o.zc_depth = 4; // the guest's buffers run out early in the flood
        TapEngineFixture::start_engine(o);
    }
};

TEST_P(TapFlood, FramesFlowAgainAfterTheGuestRanOutOfBuffers) {
    const FloodCase fc = GetParam();
    const hv::DomId dom = create_guest("floodguest");
    CT_ASSERT_OK(plug(dom));
    GuestProcess g(dir_.path(), dom, GuestOptions{fc.guest, 0});
    const std::string iface = tap_name(1);
    start_engine(iface);
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "tapf", fc.mode));
    ASSERT_TRUE(g.wait_connected());
    ASSERT_EQ(engine_->status(VifId{dom, 0}).value_or(VifStatus{}).rx_mode, fc.mode);
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    Flooder flood(iface);
    ASSERT_TRUE(flood.ok());
    warm_up(peer, dom);

    // Stream 1: back to back, sizes across the whole range; the kernel drops what does not
    // fit in the tun queue.
    unsigned offered = 0;
    for (unsigned i = 0; i < kFloodFrames; ++i) {
        const std::size_t size = 60 + (i * 149) % (1514 - 60 + 1);
        if (flood.offer(payload_frame(guest_mac(dom), peer_mac(), i, 1, size))) ++offered;
    }
    ASSERT_GT(offered, 0u);

    // The kernel drops frames silently while the tun queue is full (the AF_PACKET send
    // succeeds at the qdisc). Probe (stream 3) one frame at a time until one arrives: the
    // queue then holds little beyond it, so nothing of stream 2 is dropped.
    bool flowing = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (std::uint64_t i = 0; !flowing && std::chrono::steady_clock::now() < deadline; ++i) {
        ASSERT_TRUE(peer.send(payload_frame(guest_mac(dom), peer_mac(), i, 3, 60)));
        auto r = g.wait_received(3, 1, 500);
        flowing = r && r->received != 0;
    }
    ASSERT_TRUE(flowing) << "no frame reaches the guest after the flood: " << describe(dom);

    // Stream 2, paced: every frame must get through.
    for (unsigned i = 0; i < kAfterFrames; ++i) {
        const std::size_t size = 60 + (i * 211) % (1514 - 60 + 1);
        ASSERT_TRUE(peer.send(payload_frame(guest_mac(dom), peer_mac(), i, 2, size)));
        if (i % 16 == 15) {
            auto r = g.wait_received(2, i + 1);
            ASSERT_TRUE(r);
            ASSERT_EQ(r->received, i + 1) << describe(dom) << "; guest: " << r->counters;
        }
    }
    auto after = g.wait_received(2, kAfterFrames);
    ASSERT_TRUE(after);
    EXPECT_EQ(after->received, kAfterFrames) << describe(dom);
    EXPECT_EQ(after->bad, 0u);
    EXPECT_EQ(after->foreign, 0u);

    // The flood frames the guest got came before stream 2 in the tun queue, so all of them
    // have arrived by now: each one intact.
    auto probes = g.report(3);
    ASSERT_TRUE(probes);
    EXPECT_EQ(probes->bad, 0u);
    auto flooded = g.report(1);
    ASSERT_TRUE(flooded);
    EXPECT_GT(flooded->received, 0u);
    EXPECT_LE(flooded->received, offered);
    EXPECT_EQ(flooded->bad, 0u);
    EXPECT_EQ(flooded->foreign, 0u);
    EXPECT_EQ(flooded->broken, 0u);

    const VifCounters c = status(dom).counters;
    EXPECT_EQ(c.daemon_copies, 0u) << "zero copy expected: " << describe(dom);
    EXPECT_EQ(c.rx_drop_error, 0u) << describe(dom);
    finish({{&g, dom}});
}

INSTANTIATE_TEST_SUITE_P(RxModes, TapFlood,
                         ::testing::Values(FloodCase{RxMode::map, netfront::RxMode::copy, "map"},
                                           FloodCase{RxMode::reuse, netfront::RxMode::reuse,
                                                     "reuse"}),
                         [](const auto& p) { return std::string(p.param.name); });

} // namespace
} // namespace dpnb::component
