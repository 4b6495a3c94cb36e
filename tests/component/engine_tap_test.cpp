// The Engine with the kernel in the loop: net_tap ports in the test's network namespace,
// frames injected and captured with AF_PACKET sockets, guests (the test netfront) in their
// own processes, the simulated hypervisor in another.
//   * a tap port per guest (dedicated_port) in each RX mode: frames both ways, every byte
//     checked; in map and reuse modes the frames land in the guest's pages with no copy by
//     the daemon (daemon_copies stays 0);
//   * one tap port shared by two guests (software demux): each gets only its own unicast
//     frames, both get broadcasts;
//   * after the guests detach: no grant pinned, no mbuf missing.
#include <rte_ethdev.h>

#include <poll.h>
#include <thread>
#include <unistd.h>

#include "dpnb/hv/sim.hpp"
#include "dpnb/netfront/payload.hpp"
#include "harness.hpp"

namespace dpnb::component {
namespace {

class EngineTap : public TapEngineFixture {
protected:
    // The DMA probe's twin: every port's device is the PCI device `bdf` bound to `driver`.
    static pmd::FixedDmaProbe pci_probe(pmd::DomainType domain, pmd::IovaMode iova,
                                        pmd::DeviceBinding binding, const char* bdf,
                                        const char* driver) {
        pmd::FixedDmaProbe p;
        p.domain = domain;
        p.iova = iova;
        p.dev = {pmd::DeviceBus::pci, binding, bdf, driver};
        return p;
    }

    // The simulated hypervisor's backend, for a test that creates its engines itself.
    void connect_backend() {
        auto bhv = hv::sim::connect_backend(dir_.path());
        CT_ASSERT_OK(bhv);
        backend_ = std::move(*bhv);
    }

    // Kernel -> guest, paced so that the guest's ring never runs dry.
    void kernel_to_guest(TapPeer& peer, GuestProcess& g, hv::DomId dom, std::uint32_t stream,
                         unsigned count, const netif::MacAddress& dst) {
        const std::uint64_t before = g.report(stream).value_or(GuestReport{}).received;
        for (unsigned i = 0; i < count; ++i) {
            const std::size_t size = 60 + (i * 149) % (1514 - 60 + 1);
            ASSERT_TRUE(peer.send(payload_frame(dst, peer_mac(), i, stream, size)));
            if (i % 16 == 15) {
                auto r = g.wait_received(stream, before + i + 1);
                ASSERT_TRUE(r);
                ASSERT_EQ(r->received, before + i + 1)
                    << describe(dom) << "; guest: " << r->counters;
            }
        }
        auto r = g.wait_received(stream, before + count);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->received, before + count);
        EXPECT_EQ(r->bad, 0u);
        EXPECT_EQ(r->foreign, 0u);
    }

    // Guest -> kernel: every byte of every frame as the guest built it.
    void guest_to_kernel(TapPeer& peer, GuestProcess& g, hv::DomId dom, std::uint32_t stream,
                         unsigned count, std::uint32_t size, std::uint16_t first_offset) {
        ASSERT_TRUE(g.send(peer_mac(), stream, count, size, first_offset)) << describe(dom);
        for (unsigned i = 0; i < count; ++i) {
            auto f = peer.recv();
            ASSERT_TRUE(f) << "frame " << i << " of stream " << stream << " not seen; "
                           << describe(dom);
            const auto want = payload_frame(peer_mac(), guest_mac(dom), i, stream, size);
            ASSERT_EQ(f->size(), want.size()) << "frame " << i;
            EXPECT_TRUE(*f == want) << "frame " << i << " differs";
        }
    }
};

struct ModeCase {
    RxMode mode;
    netfront::RxMode guest;
    const char* name;
    bool half_pages = false; // dpnetback's sub-page buffers (feature-rx-buffer-offset)
};

void PrintTo(const ModeCase& c, std::ostream* os) {
    *os << c.name;
}

class EngineTapModes : public EngineTap, public ::testing::WithParamInterface<ModeCase> {};

TEST_P(EngineTapModes, FramesBothWaysOnAPortOfItsOwn) {
    const ModeCase mc = GetParam();
    const hv::DomId dom = create_guest("tapguest");
    CT_ASSERT_OK(plug(dom));
    GuestProcess g(dir_.path(), dom, GuestOptions{mc.guest, 0, mc.half_pages});
    const std::string iface = tap_name(1);
    start_engine({tap_port("tap1", iface, pmd::Steering::dedicated_port)});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "tap1", mc.mode));
    ASSERT_TRUE(g.wait_connected());
    VifStatus st = status(dom);
    EXPECT_EQ(st.rx_mode, mc.mode) << st.rx_mode_reason;
    EXPECT_EQ(st.rx_queue, std::optional<std::uint16_t>(0));
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    warm_up(peer, dom);

    // What the lcores made of system and hypervisor calls (docs/metrics.md, "System calls
    // per packet"), summed over the lcores.
    auto calls = [&] {
        LcoreStats sum;
        for (const LcoreStats& l : engine_->lcore_stats()) {
#define DPNB_X(name, help) sum.name += l.name;
            DPNB_LCORE_COUNTERS(DPNB_X)
#undef DPNB_X
        }
        return sum;
    };
    const bool io_accounting = ::access("/proc/self/io", R_OK) == 0;
    const LcoreStats c0 = calls();

    constexpr unsigned kFrames = 160;
    kernel_to_guest(peer, g, dom, 1, kFrames, guest_mac(dom));
    const VifCounters rx = status(dom).counters;
    const LcoreStats c1 = calls();
    // One batch per burst at most: never more grant calls than frames, and some.
    if (mc.mode == RxMode::copy) {
        EXPECT_GE(c1.grant_copy_calls - c0.grant_copy_calls, 1u);
        EXPECT_LE(c1.grant_copy_calls - c0.grant_copy_calls, kFrames);
    }
    if (mc.mode == RxMode::map) {
        EXPECT_GE(c1.grant_map_calls - c0.grant_map_calls, 1u);
        EXPECT_LE(c1.grant_map_calls - c0.grant_map_calls, kFrames);
    }
    EXPECT_GE(c1.notify_calls - c0.notify_calls, 1u);
    EXPECT_LE(c1.notify_calls - c0.notify_calls, kFrames);
    // net_tap reads one frame per readv: the kernel counted at least one read per frame.
    if (io_accounting) {
        EXPECT_GE(c1.read_syscalls - c0.read_syscalls, kFrames);
    }
    if (mc.mode == RxMode::copy) {
        EXPECT_GE(rx.daemon_copies, kFrames);
    } else {
        // Zero copy: the device wrote every frame into the guest's own buffer.
        EXPECT_EQ(rx.daemon_copies, 0u);
        EXPECT_EQ(rx.grant_copy_ops, 0u);
    }
    if (mc.mode == RxMode::map) {
        EXPECT_GE(rx.grant_map_ops, kFrames);
    }
    if (mc.mode == RxMode::reuse) {
        EXPECT_GE(rx.iott_hits, kFrames);
        EXPECT_EQ(rx.grant_map_ops, 0u);
    }
    EXPECT_EQ(rx.rx_drop_error, 0u);
    EXPECT_EQ(rx.rx_bad_request, 0u);
    // The netfront checks that each response's offset and length stay in the buffer it
    // posted (rx_bad_offset): with half pages, a frame written at the page's start instead
    // of at the request's offset would fail that check or the payload check.
    auto got = g.report(1);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->rx_buffer_size, mc.half_pages ? 2048u : 4096u) << got->counters;

    // Guest -> kernel: one slot, and frames crossing a page boundary (two slots).
    guest_to_kernel(peer, g, dom, 2, 50, 60, 0);
    guest_to_kernel(peer, g, dom, 3, 50, 1514, 0);
    guest_to_kernel(peer, g, dom, 4, 50, 1000, 3500);
    const VifCounters tx = status(dom).counters;
    EXPECT_EQ(tx.tx_packets, 150u);
    // ... and writes one per writev.
    if (io_accounting) {
        EXPECT_GE(calls().write_syscalls - c1.write_syscalls, 150u);
    }
    EXPECT_EQ(tx.tx_drop_error + tx.tx_drop_protocol + tx.tx_drop_spoofed, 0u);
    auto rep = g.report(1);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->tx_ok, 150u);
    EXPECT_EQ(rep->tx_failed, 0u);
    EXPECT_EQ(rep->broken, 0u);
    finish({{&g, dom}});
}

INSTANTIATE_TEST_SUITE_P(
    RxModes, EngineTapModes,
    ::testing::Values(ModeCase{RxMode::copy, netfront::RxMode::copy, "copy"},
                      ModeCase{RxMode::map, netfront::RxMode::copy, "map"},
                      ModeCase{RxMode::reuse, netfront::RxMode::reuse, "reuse"},
                      ModeCase{RxMode::copy, netfront::RxMode::copy, "copy_half_pages", true},
                      ModeCase{RxMode::map, netfront::RxMode::copy, "map_half_pages", true},
                      ModeCase{RxMode::reuse, netfront::RxMode::reuse, "reuse_half_pages", true}),
    [](const auto& p) { return std::string(p.param.name); });

// net_tap has no RX interrupt arming, but its queue's fd is readable while frames wait
// (pmd::RxInterrupt::level): an idle lcore sleeps on it for up to max_sleep instead of
// waking every poll_sleep to poll the tap, and a frame from the kernel wakes it at once.
// In copy mode (daemon mbufs) and in reuse mode (the guest's buffers, posted ahead).
class EngineTapIdle : public EngineTap, public ::testing::WithParamInterface<RxMode> {};

TEST_P(EngineTapIdle, SleepsOnTheTapUntilAFrameComes) {
    const RxMode mode = GetParam();
    const hv::DomId dom = create_guest("idleguest");
    CT_ASSERT_OK(plug(dom));
    GuestProcess g(
        dir_.path(), dom,
        GuestOptions{mode == RxMode::reuse ? netfront::RxMode::reuse : netfront::RxMode::copy, 0});
    const std::string iface = tap_name(4);
    EngineOptions o = engine_options({tap_port("tap4", iface, pmd::Steering::dedicated_port)});
    o.max_sleep = std::chrono::milliseconds(5000);
    start_engine(o);
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "tap4", mode));
    ASSERT_TRUE(g.wait_connected());
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    warm_up(peer, dom);

    auto sleeps = [&] {
        std::uint64_t n = 0;
        for (const LcoreStats& l : engine_->lcore_stats())
            n += l.sleeps;
        return n;
    };
    auto cpu_ns = [&] {
        std::uint64_t n = 0;
        for (const LcoreStats& l : engine_->lcore_stats())
            n += l.cpu_ns;
        return n;
    };
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const std::uint64_t before = sleeps();
    const std::uint64_t cpu_before = cpu_ns();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    // Polling the tap every poll_sleep (500 us) would be about 1700 sleeps in that second;
    // the kernel's own frames on the tap (IPv6 autoconfiguration) may wake it a few times.
    EXPECT_LT(sleeps() - before, 50u) << describe(dom);
    // The lcore's CPU time counts its work (the handshake, the warm-up), not its sleep.
    EXPECT_GT(cpu_before, 0u);
    EXPECT_LT(cpu_ns() - cpu_before, 250'000'000u) << "asleep for most of the second";

    const auto sent = std::chrono::steady_clock::now();
    ASSERT_TRUE(peer.send(payload_frame(guest_mac(dom), peer_mac(), 0, 7, 100)));
    auto r = g.wait_received(7, 1);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, 1u) << describe(dom);
    EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::milliseconds(2500))
        << "the frame waited for max_sleep (5 s) to end: the tap's fd did not wake the lcore";
    finish({{&g, dom}});
}

INSTANTIATE_TEST_SUITE_P(RxModes, EngineTapIdle, ::testing::Values(RxMode::copy, RxMode::reuse),
                         [](const auto& p) { return std::string(to_string(p.param)); });

// The DMA policy at engine start (docs/operations.md, "Deployment matrix"). A PCI NIC in a
// PV domain is refused: DPDK would give it pseudo-physical addresses. The probe's twin says
// "PCI, uio, PV" of a tap port (no PCI NIC here); the refused port is closed and removed, so
// the same device then starts with the system's probe, which finds a virtual device.
TEST_F(EngineTap, APciNicInAPvDomainIsRefusedAtStartNamingWhatWorks) {
    const pmd::FixedDmaProbe pv =
        pci_probe(pmd::DomainType::pv, pmd::IovaMode::pa, pmd::DeviceBinding::uio, "0000:00:04.0",
                  "uio_pci_generic");
    connect_backend();
    const EngineOptions o =
        engine_options({tap_port("tapd", tap_name(40), pmd::Steering::dedicated_port)});
    // EAL probing PCI devices is refused before EAL starts (else it would start here with
    // the PCI bus, and the engines below, without it, could not).
    EngineOptions with_pci = o;
    with_pci.eal.no_pci = false;
    auto probing = Engine::create(with_pci, *backend_, pv);
    ASSERT_FALSE(probing.has_value());
    EXPECT_NE(probing.error().message.find("eal.no_pci = false in a PV domain"), std::string::npos)
        << probing.error().message;

    auto refused = Engine::create(o, *backend_, pv);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, Errc::unsupported);
    const std::string& msg = refused.error().message;
    for (const char* want :
         {"port tapd", "0000:00:04.0", "PV domain", "pseudo-physical", "PVH or HVM driver domain",
          "net_af_xdp", "net_af_packet", "vhost-net"})
        EXPECT_NE(msg.find(want), std::string::npos) << want << " not in: " << msg;

    start_engine(o);
    if (!engine_) return;
    const PortStatus p = engine_->ports().front();
    EXPECT_EQ(p.dma, pmd::DmaVerdict::zero_copy) << p.dma_reason;
    EXPECT_EQ(p.dma_inputs.bus, pmd::DeviceBus::virtual_device);
    EXPECT_EQ(p.dma_inputs.binding, pmd::DeviceBinding::none);
    EXPECT_EQ(p.dma_inputs.domain, pmd::SystemDmaProbe().domain_type());
    EXPECT_TRUE(p.zero_copy) << p.copy_reason;
}

// A device the policy keeps from guest pages (bound to a kernel driver in an HVM domain, as a
// bifurcated mlx5 NIC: nothing maps guest pages for it) gets the daemon's memory only: a vif that
// asks for reuse receives in copy mode, with the reason; and an engine that would hand it
// grant-mapped TX slots does not start.
TEST_F(EngineTap, ADeviceKeptFromGuestPagesCopiesBothWays) {
    const pmd::FixedDmaProbe hvm =
        pci_probe(pmd::DomainType::hvm, pmd::IovaMode::va, pmd::DeviceBinding::kernel_driver,
                  "0000:00:05.0", "mlx5_core");
    connect_backend();
    const std::string iface = tap_name(41);
    EngineOptions o = engine_options({tap_port("tapv", iface, pmd::Steering::dedicated_port)});
    o.tx_copy_slot_max = 0;
    auto maps = Engine::create(o, *backend_, hvm);
    ASSERT_FALSE(maps.has_value());
    EXPECT_NE(maps.error().message.find("tx_copy_slot_max = 0"), std::string::npos)
        << maps.error().message;

    o.tx_copy_slot_max = 4096;
    auto e = Engine::create(o, *backend_, hvm);
    CT_ASSERT_OK(e);
    engine_ = std::move(*e);
    handshake_ = std::make_unique<BackendHandshake>(*xs_, *engine_);
    const PortStatus p = engine_->ports().front();
    EXPECT_EQ(p.dma, pmd::DmaVerdict::copy_only);
    EXPECT_FALSE(p.zero_copy);
    EXPECT_NE(p.copy_reason.find("bound to a kernel driver"), std::string::npos) << p.copy_reason;

    const hv::DomId dom = create_guest("dmaguest");
    CT_ASSERT_OK(plug(dom));
    GuestProcess g(dir_.path(), dom, GuestOptions{netfront::RxMode::reuse});
    CT_ASSERT_OK(handshake_->connect(dom, 0, "tapv", RxMode::reuse));
    ASSERT_TRUE(g.wait_connected());
    const VifStatus st = status(dom);
    EXPECT_EQ(st.rx_mode, RxMode::copy);
    EXPECT_NE(st.rx_mode_reason.find("bound to a kernel driver"), std::string::npos)
        << st.rx_mode_reason;
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    kernel_to_guest(peer, g, dom, 1, 32, guest_mac(dom));
    EXPECT_GE(status(dom).counters.daemon_copies, 32u);
    guest_to_kernel(peer, g, dom, 2, 16, 1514, 0);
    finish({{&g, dom}});
}

// A zero-copy queue receives each frame whole into one posted buffer: a frontend whose
// sub-page buffers cannot hold the port's frames is refused at attach, with the sizes. A
// 1024-byte buffer holds 896 bytes after the NIC's headroom; the tap's frames are 1518.
TEST_F(EngineTap, ZeroCopyRefusesBuffersTooSmallForThePortsFrames) {
    start_engine({tap_port("tap5", tap_name(5), pmd::Steering::dedicated_port)});
    if (!engine_) return;
    ASSERT_TRUE(engine_->ports().front().zero_copy) << engine_->ports().front().copy_reason;
    VifSpec spec;
    spec.id = VifId{7, 0};
    spec.mac = guest_mac(7);
    spec.port = "tap5";
    spec.rx_mode = RxMode::reuse;
    spec.frontend.queues.resize(1);
    spec.frontend.rx_buffer_offset = true;
    spec.frontend.rx_buffer_size = 1024;
    auto refused = engine_->attach(spec);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, Errc::unsupported) << refused.error().describe();
    for (const char* part : {"rx-buffer-size 1024", "frames of 896 bytes", "frames of 1518 bytes"})
        EXPECT_NE(refused.error().message.find(part), std::string::npos) << refused.error().message;
    EXPECT_FALSE(engine_->status(spec.id).has_value()) << "nothing of the vif stays attached";
}

TEST_F(EngineTap, SharedPortDemultiplexesByMac) {
    const hv::DomId a = create_guest("shared-a");
    const hv::DomId b = create_guest("shared-b");
    CT_ASSERT_OK(plug(a));
    CT_ASSERT_OK(plug(b));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    const std::string iface = tap_name(2);
    start_engine({tap_port("uplink", iface, pmd::Steering::shared)});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(a, 0, "uplink", RxMode::map));
    CT_ASSERT_OK(handshake_->connect(b, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(ga.wait_connected());
    ASSERT_TRUE(gb.wait_connected());
    // A shared queue copies: map is not possible there, and the engine says why.
    const VifStatus sa = status(a);
    EXPECT_EQ(sa.rx_mode, RxMode::copy);
    EXPECT_FALSE(sa.rx_mode_reason.empty());
    EXPECT_FALSE(sa.rx_queue.has_value());
    bool fallback_event = false;
    while (auto e = engine_->next_event())
        fallback_event = fallback_event ||
                         (e->kind == DataPlaneEvent::Kind::mode_fallback && e->vif == VifId{a, 0});
    EXPECT_TRUE(fallback_event);

    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    kernel_to_guest(peer, ga, a, 1, 64, guest_mac(a));
    kernel_to_guest(peer, gb, b, 2, 64, guest_mac(b));
    netif::MacAddress bcast;
    bcast.bytes = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    for (unsigned i = 0; i < 16; ++i)
        ASSERT_TRUE(peer.send(payload_frame(bcast, peer_mac(), i, 3, 100 + i)));
    auto ra = ga.wait_received(3, 16);
    auto rb = gb.wait_received(3, 16);
    ASSERT_TRUE(ra && rb);
    EXPECT_EQ(ra->received, 16u);
    EXPECT_EQ(rb->received, 16u);
    // Isolation: neither saw the other's unicast stream.
    EXPECT_EQ(ga.report(2)->received, 0u);
    EXPECT_EQ(gb.report(1)->received, 0u);
    EXPECT_EQ(ra->foreign, 0u);
    EXPECT_EQ(rb->foreign, 0u);
    // Both transmit through the shared port.
    guest_to_kernel(peer, ga, a, 4, 20, 700, 0);
    guest_to_kernel(peer, gb, b, 5, 20, 700, 0);
    finish({{&ga, a}, {&gb, b}});
}

TEST_F(EngineTap, ADedicatedPortServesGuestsOneAfterAnother) {
    const hv::DomId a = create_guest("first");
    const hv::DomId b = create_guest("second");
    CT_ASSERT_OK(plug(a));
    CT_ASSERT_OK(plug(b));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    const std::string iface = tap_name(3);
    start_engine({tap_port("tap3", iface, pmd::Steering::dedicated_port)});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(a, 0, "tap3", RxMode::map));
    ASSERT_TRUE(ga.wait_connected());

    // The port is taken; the vif is attached already; no such port.
    VifSpec spec;
    spec.id = VifId{b, 0};
    spec.mac = guest_mac(b);
    spec.port = "tap3";
    spec.frontend.queues.resize(1);
    auto busy = engine_->attach(spec);
    ASSERT_FALSE(busy.has_value());
    EXPECT_EQ(busy.error().code, Errc::busy) << busy.error().describe();
    spec.port = "no-such-port";
    auto missing = engine_->attach(spec);
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, Errc::not_found);
    spec.id = VifId{a, 0};
    spec.port = "tap3";
    auto twice = engine_->attach(spec);
    ASSERT_FALSE(twice.has_value());
    EXPECT_EQ(twice.error().code, Errc::exists);

    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    warm_up(peer, a);
    kernel_to_guest(peer, ga, a, 1, 48, guest_mac(a));
    // The guest leaves while the NIC holds one of its mapped buffers: detach takes it back.
    ASSERT_TRUE(ga.request_close());
    CT_EXPECT_OK(handshake_->disconnect(a, 0));
    EXPECT_TRUE(ga.close_result());
    EXPECT_TRUE(ga.succeeded());
    EXPECT_EQ(pinned_grants(a), 0u);
    EXPECT_EQ(engine_->leaks().mapped_grants, 0u);

    // The next guest gets the port, zero copy again.
    CT_ASSERT_OK(handshake_->connect(b, 0, "tap3", RxMode::map));
    ASSERT_TRUE(gb.wait_connected());
    warm_up(peer, b);
    kernel_to_guest(peer, gb, b, 2, 48, guest_mac(b));
    EXPECT_EQ(status(b).counters.daemon_copies, 0u);
    guest_to_kernel(peer, gb, b, 3, 10, 500, 0);
    finish({{&gb, b}});
}

TEST_F(EngineTap, RxModeChangesWhileTheGuestRuns) {
    const hv::DomId dom = create_guest("modes");
    CT_ASSERT_OK(plug(dom));
    GuestProcess g(dir_.path(), dom, GuestOptions{netfront::RxMode::reuse, 0});
    const std::string iface = tap_name(4);
    start_engine({tap_port("tap4", iface, pmd::Steering::dedicated_port)});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "tap4", RxMode::copy));
    ASSERT_TRUE(g.wait_connected());
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    warm_up(peer, dom);
    kernel_to_guest(peer, g, dom, 1, 32, guest_mac(dom));
    const VifCounters before = status(dom).counters;
    EXPECT_GE(before.daemon_copies, 32u);
    EXPECT_EQ(before.iott_hits, 0u);

    // Buffers posted in copy mode still get copies; new ones come from the table.
    CT_ASSERT_OK(engine_->set_rx_mode(VifId{dom, 0}, RxMode::reuse));
    EXPECT_EQ(status(dom).rx_mode, RxMode::reuse);
    kernel_to_guest(peer, g, dom, 2, 160, guest_mac(dom));
    const VifCounters after = status(dom).counters;
    EXPECT_GE(after.iott_hits, 160u - 64u) << "at most zc_depth buffers were posted before";
    EXPECT_LE(after.daemon_copies - before.daemon_copies, 64u);
    finish({{&g, dom}});
}

TEST_F(EngineTap, AGuestThatDiesIsReleased) {
    const hv::DomId dom = create_guest("crash");
    CT_ASSERT_OK(plug(dom));
    auto g = std::make_unique<GuestProcess>(dir_.path(), dom, GuestOptions{});
    const std::string iface = tap_name(5);
    start_engine({tap_port("tap5", iface, pmd::Steering::dedicated_port)});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "tap5", RxMode::map));
    ASSERT_TRUE(g->wait_connected());
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    warm_up(peer, dom);
    kernel_to_guest(peer, *g, dom, 1, 16, guest_mac(dom));
    EXPECT_GT(pinned_grants(dom), 0u) << "rings and posted buffers are mapped";
    g.reset(); // SIGKILL: the guest's domain is destroyed with grants still mapped
    for (int i = 0; i < 20; ++i)
        ASSERT_TRUE(peer.send(payload_frame(guest_mac(dom), peer_mac(), i, 2, 300)));
    CT_EXPECT_OK(engine_->detach(VifId{dom, 0}));
    EXPECT_EQ(engine_->leaks().mapped_grants, 0u);
    CT_EXPECT_OK(engine_->shutdown());
    for (const auto& d : engine_->leaks().details)
        ADD_FAILURE() << d;
    engine_.reset();
    backend_.reset();
    EXPECT_EQ(total_pinned(), 0u);
}

TEST_F(EngineTap, ReuseThroughStaticGrantsOnTheControlRing) {
    const hv::DomId dom = create_guest("static");
    CT_ASSERT_OK(plug(dom));
    GuestProcess g(dir_.path(), dom, GuestOptions{netfront::RxMode::reuse, 0});
    const std::string iface = tap_name(6);
    start_engine({tap_port("tap6", iface, pmd::Steering::dedicated_port)});
    if (!engine_) return;
    // The frontend registers its RX pool over the control ring instead of the simulated
    // hypervisor's table, as it must on stock Xen.
    handshake_->caps.ctrl_ring = true;
    handshake_->caps.static_grants = true;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "tap6", RxMode::reuse));
    ASSERT_TRUE(g.wait_connected());
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_TRUE(st->control_ring);
    EXPECT_EQ(st->rx_mode, RxMode::reuse) << st->rx_mode_reason;
    // The control ring is served on the control thread, from next_event(): pump it (the
    // daemon's event loop does this when events_fd() is readable) until the pool is in.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    std::uint32_t registered = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{engine_->events_fd(), POLLIN, 0};
        (void)::poll(&p, 1, 100);
        while (engine_->next_event()) {
        }
        registered = status(dom).static_grants;
        if (registered >= 64) break;
    }
    ASSERT_GE(registered, 64u) << "the frontend's RX pool was not registered; " << describe(dom);
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    warm_up(peer, dom);
    const VifCounters before = status(dom).counters;
    kernel_to_guest(peer, g, dom, 1, 200, guest_mac(dom));
    const VifCounters after = status(dom).counters;
    // Buffers posted after their page was registered come from the table: no per-packet
    // map and no copy.
    EXPECT_GE(after.iott_hits - before.iott_hits, 100u);
    EXPECT_EQ(after.daemon_copies, 0u);
    EXPECT_LE(after.grant_map_ops - before.grant_map_ops, 100u);
    finish({{&g, dom}});
}

} // namespace
} // namespace dpnb::component
