// Guest-to-guest delivery on one port (docs/datapath.md, "Local delivery"): guests (the test
// netfront, in their own processes) share one net_tap port whose kernel side the test reads.
//   * unicast between guests arrives whole at the other guest and never on the wire, from a
//     guest on the same lcore and on the other lcore, counted per vif (local_*);
//   * a broadcast reaches the wire and every other guest, never its sender; a frame to a MAC
//     no guest of the port has goes to the wire only;
//   * TCP with a partial checksum and TCP GSO reach a guest as Linux's bridge would pass
//     them: the partial checksum and the GSO extra kept; to a frontend without GSO, as
//     segments with their checksums;
//   * with local_delivery = false every frame goes to the wire;
//   * a hostile sender (raw frontend): frames with another guest's source MAC reach neither
//     that guest nor the wire; a packet with a grant it never gave is answered in error,
//     and the other guest goes on receiving.
#include <chrono>
#include <map>
#include <thread>

#include "dpnb/hv/sim.hpp"
#include "dpnb/netfront/payload.hpp"
#include "dpnb/netif/ring.hpp"
#include "harness.hpp"
#include "raw_frontend.hpp"

namespace dpnb::component {
namespace {

netif::MacAddress broadcast_mac() {
    netif::MacAddress m;
    m.bytes = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    return m;
}

// A MAC no guest of the test has (locally administered).
netif::MacAddress unknown_mac() {
    netif::MacAddress m;
    m.bytes = {0x02, 0x00, 0x5e, 0x10, 0x20, 0x30};
    return m;
}

class LocalDelivery : public TapEngineFixture {
protected:
    // Payload frames per stream that the tap's kernel side receives until it stays quiet for
    // `quiet_ms`.
    static std::map<std::uint32_t, unsigned> wire_frames(TapPeer& peer, int quiet_ms = 1000) {
        std::map<std::uint32_t, unsigned> n;
        while (auto f = peer.recv(quiet_ms)) {
            const auto info = netfront::check_payload_frame(*f);
            if (info.result == netfront::PayloadCheck::ok) ++n[info.header.stream];
        }
        return n;
    }

    // `g` sends `count` frames of `size` bytes to `dst` on `stream`, every one answered OK.
    static void send_ok(GuestProcess& g, const netif::MacAddress& dst, std::uint32_t stream,
                        unsigned count, std::uint32_t size) {
        const auto before = g.report(0);
        ASSERT_TRUE(before);
        ASSERT_TRUE(g.send(dst, stream, count, size));
        const auto after = g.report(0);
        ASSERT_TRUE(after);
        EXPECT_EQ(after->tx_ok - before->tx_ok, count);
        EXPECT_EQ(after->tx_failed, before->tx_failed);
    }

    // Waits for exactly `count` frames of `stream` at `g`.
    static void expect_received(GuestProcess& g, std::uint32_t stream, unsigned count) {
        auto r = g.wait_received(stream, count);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->received, count) << "stream " << stream << "; guest: " << r->counters;
        EXPECT_EQ(r->bad, 0u) << r->counters;
        EXPECT_EQ(r->foreign, 0u);
    }
};

TEST_F(LocalDelivery, GuestsOnOnePortReachEachOtherAndNotTheWire) {
    const hv::DomId a = create_guest("local-a");
    const hv::DomId b = create_guest("local-b");
    const hv::DomId c = create_guest("local-c");
    for (hv::DomId d : {a, b, c})
        CT_ASSERT_OK(plug(d));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    GuestProcess gc(dir_.path(), c, GuestOptions{});
    const std::string iface = tap_name(20);
    start_engine({tap_port("uplink", iface, pmd::Steering::shared)});
    if (!engine_) return;
    // Guests go to the least loaded lcore: a and c on one, b on the other.
    CT_ASSERT_OK(handshake_->connect(a, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(b, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(c, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(ga.wait_connected() && gb.wait_connected() && gc.wait_connected());
    ASSERT_EQ(status(a).lcore, status(c).lcore);
    ASSERT_NE(status(a).lcore, status(b).lcore);
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());

    send_ok(ga, guest_mac(b), 1, 40, 700); // to the other lcore, through its inbox
    expect_received(gb, 1, 40);
    send_ok(ga, guest_mac(c), 2, 40, 1514); // on the same lcore
    expect_received(gc, 2, 40);
    send_ok(gb, guest_mac(a), 3, 40, 60);
    expect_received(ga, 3, 40);
    send_ok(ga, broadcast_mac(), 4, 16, 200);
    expect_received(gb, 4, 16);
    expect_received(gc, 4, 16);
    send_ok(ga, unknown_mac(), 5, 16, 200);

    const auto wire = wire_frames(peer);
    EXPECT_EQ(wire.count(1) + wire.count(2) + wire.count(3), 0u) << "guest-to-guest on the wire";
    EXPECT_EQ(wire.count(4) ? wire.at(4) : 0, 16u) << "broadcasts go out too";
    EXPECT_EQ(wire.count(5) ? wire.at(5) : 0, 16u) << "frames to an unknown MAC go out";
    EXPECT_EQ(ga.report(4)->received, 0u) << "a broadcast never comes back to its sender";
    EXPECT_EQ(gb.report(2)->received + gc.report(1)->received, 0u) << "unicast reached one guest";
    EXPECT_EQ(gb.report(5)->received + gc.report(5)->received, 0u);

    const VifCounters ca = status(a).counters;
    const VifCounters cb = status(b).counters;
    const VifCounters cc = status(c).counters;
    EXPECT_EQ(ca.local_tx_packets, 40u + 40u + 16u) << describe(a);
    EXPECT_EQ(ca.local_tx_bytes, 40u * 700 + 40u * 1514 + 16u * 200);
    EXPECT_EQ(ca.tx_packets, 40u + 40u + 16u + 16u);
    EXPECT_EQ(ca.local_rx_packets, 40u);
    EXPECT_EQ(ca.local_rx_bytes, 40u * 60);
    EXPECT_EQ(cb.local_tx_packets, 40u);
    EXPECT_EQ(cb.local_rx_packets, 40u + 16u) << describe(b);
    EXPECT_EQ(cb.local_rx_bytes, 40u * 700 + 16u * 200);
    EXPECT_EQ(cc.local_rx_packets, 40u + 16u) << describe(c);
    EXPECT_EQ(cc.local_rx_bytes, 40u * 1514 + 16u * 200);
    for (const VifCounters* k : {&ca, &cb, &cc})
        EXPECT_EQ(k->local_rx_drops + k->rx_drop_error + k->tx_drop_error, 0u);
    finish({{&ga, a}, {&gb, b}, {&gc, c}});
}

// TCP as a guest stack sends it: a partial checksum, and GSO packets of 20000 bytes. The
// other guest gets each packet whole, with the partial checksum and the GSO size (its
// frontend takes GSO), as Linux's bridge between two netback vifs passes them.
TEST_F(LocalDelivery, PartialChecksumsAndGsoPassAsTheGuestSentThem) {
    const hv::DomId a = create_guest("tcp-a");
    const hv::DomId b = create_guest("tcp-b");
    for (hv::DomId d : {a, b})
        CT_ASSERT_OK(plug(d));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    const std::string iface = tap_name(21);
    start_engine({tap_port("uplink", iface, pmd::Steering::shared)});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(a, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(b, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(ga.wait_connected() && gb.wait_connected());

    for (const bool v6 : {false, true}) {
        const auto before = gb.report(0);
        ASSERT_TRUE(before);
        ASSERT_TRUE(ga.send_tcp(guest_mac(b), 3, 1200, 0, v6, 5));
        ASSERT_TRUE(ga.send_tcp(guest_mac(b), 2, 20000, 1400, v6, 9));
        GuestReport r;
        for (int i = 0; i < 600; ++i) {
            r = gb.report(0).value_or(GuestReport{});
            if (r.tcp_frames >= before->tcp_frames + 5) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        EXPECT_EQ(r.tcp_frames - before->tcp_frames, 5u) << (v6 ? "IPv6" : "IPv4");
        EXPECT_EQ(r.csum_blank - before->csum_blank, 5u) << "the partial checksums stay";
        EXPECT_EQ(r.gso_frames - before->gso_frames, 2u) << "GSO packets arrive whole";
    }
    const VifCounters cb = status(b).counters;
    EXPECT_EQ(cb.local_rx_packets, 10u) << describe(b);
    EXPECT_EQ(cb.rx_drop_error, 0u);
    finish({{&ga, a}, {&gb, b}});
}

// A frontend that takes no GSO gets a GSO packet from a guest of its port segmented in
// software, every segment with its checksum filled in.
TEST_F(LocalDelivery, GsoToAFrontendWithoutGsoArrivesSegmented) {
    const hv::DomId a = create_guest("seg-a");
    const hv::DomId b = create_guest("seg-b");
    for (hv::DomId d : {a, b})
        CT_ASSERT_OK(plug(d));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestOptions no_gso;
    no_gso.rx_gso = false;
    GuestProcess gb(dir_.path(), b, no_gso);
    const std::string iface = tap_name(24);
    start_engine({tap_port("uplink", iface, pmd::Steering::shared)});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(a, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(b, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(ga.wait_connected() && gb.wait_connected());

    constexpr std::uint32_t kPayload = 20000;
    constexpr std::uint16_t kMss = 1400;
    constexpr unsigned kSegments = (kPayload + kMss - 1) / kMss;
    ASSERT_TRUE(ga.send_tcp(guest_mac(b), 2, kPayload, kMss, false, 3));
    GuestReport r;
    for (int i = 0; i < 600 && r.tcp_frames < 2 * kSegments; ++i) {
        r = gb.report(0).value_or(GuestReport{});
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(r.tcp_frames, 2 * kSegments) << r.counters;
    EXPECT_EQ(r.gso_frames, 0u);
    EXPECT_EQ(r.csum_blank, 0u) << "software segments carry their checksums";
    EXPECT_EQ(status(b).counters.local_rx_packets, 2 * kSegments) << describe(b);
    EXPECT_EQ(status(a).counters.local_tx_packets, 2u) << describe(a);
    finish({{&ga, a}, {&gb, b}});
}

// Between two guests of one lcore a frame takes one grant copy, from the sender's TX grants
// straight into the receiver's RX buffers: the sender's pages are neither mapped (here every
// slot beyond the header would be, tx_copy_slot_max = 0) nor copied into the daemon (its
// grant copies are its headers alone, one per frame), and every byte arrives: single-slot
// frames of several sizes, frames over two slots, TCP GSO packets over several. A frame to a
// guest of the other lcore still arrives (the daemon-mbuf path).
TEST_F(LocalDelivery, GuestsOfOneLcoreTakeOneCopyGrantToGrant) {
    const hv::DomId a = create_guest("one-a");
    const hv::DomId b = create_guest("one-b");
    const hv::DomId c = create_guest("one-c");
    for (hv::DomId d : {a, b, c})
        CT_ASSERT_OK(plug(d));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    GuestProcess gc(dir_.path(), c, GuestOptions{});
    const std::string iface = tap_name(25);
    EngineOptions o = engine_options({tap_port("uplink", iface, pmd::Steering::shared)});
    o.tx_copy_slot_max = 0;
    start_engine(o);
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(a, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(b, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(c, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(ga.wait_connected() && gb.wait_connected() && gc.wait_connected());
    ASSERT_EQ(status(a).lcore, status(c).lcore);

    // The first frame to a guest of the port tells the sender's queue to copy headers apart.
    send_ok(ga, guest_mac(c), 1, 1, 300);
    expect_received(gc, 1, 1);
    const VifCounters a0 = status(a).counters;
    const VifCounters c0 = status(c).counters;
    struct Stream {
        std::uint32_t size;
        std::uint16_t first_offset;
    };
    const Stream streams[] = {{129, 0}, {300, 0}, {1000, 0}, {1514, 0}, {1514, 3500}, {700, 3900}};
    std::uint32_t id = 2;
    std::uint64_t frames = 0;
    std::uint64_t bytes = 0;
    for (const Stream& st : streams) {
        ASSERT_TRUE(ga.send(guest_mac(c), id, 8, st.size, st.first_offset));
        expect_received(gc, id, 8);
        frames += 8;
        bytes += 8U * st.size;
        ++id;
    }
    const auto before = gc.report(0);
    ASSERT_TRUE(before);
    ASSERT_TRUE(ga.send_tcp(guest_mac(c), 3, 20000, 1400, false, 7));
    GuestReport r;
    for (int i = 0; i < 600 && r.tcp_frames < before->tcp_frames + 3; ++i) {
        r = gc.report(0).value_or(GuestReport{});
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(r.tcp_frames - before->tcp_frames, 3u);
    EXPECT_EQ(r.gso_frames - before->gso_frames, 3u) << "GSO packets arrive whole";
    frames += 3;

    const VifCounters a1 = status(a).counters;
    const VifCounters c1 = status(c).counters;
    EXPECT_EQ(a1.grant_map_ops, a0.grant_map_ops) << "the sender's pages were mapped";
    EXPECT_EQ(a1.grant_copy_ops - a0.grant_copy_ops, frames)
        << "the sender's slots were copied into the daemon, not only its headers";
    EXPECT_EQ(a1.tx_drop_error, 0u);
    EXPECT_EQ(a1.local_tx_packets - a0.local_tx_packets, frames);
    EXPECT_EQ(c1.local_rx_packets - c0.local_rx_packets, frames) << describe(c);
    EXPECT_GE(c1.local_rx_bytes - c0.local_rx_bytes, bytes);
    EXPECT_EQ(c1.local_rx_drops + c1.rx_drop_error, 0u);

    send_ok(ga, guest_mac(b), 20, 8, 1514); // the other lcore: through its inbox
    expect_received(gb, 20, 8);
    finish({{&ga, a}, {&gb, b}, {&gc, c}});
}

// local_delivery = false: the port sends everything out, as before local delivery existed
// (the tap's kernel side does not send frames back, so the other guest gets none).
TEST_F(LocalDelivery, OffSendsGuestToGuestFramesToTheWire) {
    const hv::DomId a = create_guest("off-a");
    const hv::DomId b = create_guest("off-b");
    for (hv::DomId d : {a, b})
        CT_ASSERT_OK(plug(d));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    const std::string iface = tap_name(22);
    pmd::PortConfig port = tap_port("uplink", iface, pmd::Steering::shared);
    port.local_delivery = false;
    start_engine({port});
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(a, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(b, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(ga.wait_connected() && gb.wait_connected());
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());

    send_ok(ga, guest_mac(b), 1, 16, 300);
    send_ok(ga, broadcast_mac(), 2, 8, 300);
    const auto wire = wire_frames(peer);
    EXPECT_EQ(wire.count(1) ? wire.at(1) : 0, 16u);
    EXPECT_EQ(wire.count(2) ? wire.at(2) : 0, 8u);
    EXPECT_EQ(gb.report(1)->received, 0u);
    EXPECT_EQ(gb.report(2)->received, 0u);
    EXPECT_EQ(status(a).counters.local_tx_packets, 0u);
    EXPECT_EQ(status(b).counters.local_rx_packets, 0u);
    finish({{&ga, a}, {&gb, b}});
}

using test::RawFrontend;

// The hostile sender: a raw frontend on the port. On each command from the test it sends one
// packet of 200 bytes: 1 with guest `victim`'s source MAC to the victim, 2 the same to
// broadcast, 3 its own MAC to the victim, 4 its own MAC to the victim with a grant it never
// gave in a second slot (within the header copy), 5 the same with 100 more bytes: the bad
// slot beyond the header copy. It answers each with the status of the packet's first
// response.
void hostile_sender(const std::string& dir, hv::DomId dom, hv::DomId victim, const Link& link) {
    RawFrontend f;
    f.open(dir, dom, 3);
    if (::testing::Test::HasFatalFailure()) return;
    f.connect({{"feature-sg", "1"}});
    if (::testing::Test::HasFatalFailure()) return;
    auto data = f.hv->grant_access(hv::kDom0, f.pages.page(2), true);
    ASSERT_TRUE(data.has_value());
    link.send(1);
    std::uint16_t id = 0;
    std::uint64_t seq = 0;
    while (auto cmd = link.recv()) {
        if (*cmd == 0) break;
        const bool spoofed = *cmd <= 2;
        const netif::MacAddress dst = *cmd == 2 ? broadcast_mac() : guest_mac(victim);
        const netif::MacAddress src = spoofed ? guest_mac(victim) : guest_mac(dom);
        const auto frame = payload_frame(dst, src, seq++, static_cast<std::uint32_t>(*cmd), 200);
        std::memcpy(f.pages.page(2), frame.data(), frame.size());
        if (*cmd >= 4) {
            const auto total = static_cast<std::uint16_t>(*cmd == 4 ? 200 : 300);
            EXPECT_TRUE(
                f.tx.put_request(netif::TxRequest{*data, 0, netif::txf::kMoreData, id++, total}));
            EXPECT_TRUE(f.tx.put_request(netif::TxRequest{0x7FFF0, 0, 0, id++, 100}));
        } else {
            EXPECT_TRUE(f.tx.put_request(
                netif::TxRequest{*data, 0, 0, id++, static_cast<std::uint16_t>(frame.size())}));
        }
        if (f.tx.push_requests()) (void)f.ev->notify(f.tx_port);
        const std::uint32_t slots = *cmd >= 4 ? 2 : 1;
        netif::ResponseWindow w{};
        for (int i = 0; i < 6000 && w.available < slots; ++i) {
            w = f.tx.poll_responses();
            if (w.available < slots) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (w.available < slots) {
            link.send(0xDEAD);
            continue;
        }
        const netif::TxResponse rsp = f.tx.copy_response(w.cons);
        f.tx.consume_responses(w.available);
        link.send(static_cast<std::uint16_t>(rsp.status));
    }
}

TEST_F(LocalDelivery, AHostileSenderReachesNoGuestAndHarmsNone) {
    const hv::DomId good = create_guest("victim");
    const hv::DomId bad = create_guest("spoofer");
    CT_ASSERT_OK(plug(good));
    CT_ASSERT_OK(plug(bad));
    GuestProcess g(dir_.path(), good, GuestOptions{});
    Link hostile_link;
    Child hostile = spawn_linked(hostile_link,
                                 [&](const Link& l) { hostile_sender(dir_.path(), bad, good, l); });
    const std::string iface = tap_name(23);
    EngineOptions o = engine_options({tap_port("uplink", iface, pmd::Steering::shared)});
    o.fatal_bad_grants = false; // the bad packet alone is answered in error
    start_engine(o);
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(good, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(g.wait_connected());
    CT_ASSERT_OK(handshake_->connect(bad, 0, "uplink", RxMode::copy));
    ASSERT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(1));
    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());

    const auto okay = static_cast<std::uint64_t>(netif::rsp::kOkay);
    const auto error = static_cast<std::uint64_t>(static_cast<std::uint16_t>(netif::rsp::kError));
    for (int i = 0; i < 8; ++i) {
        ASSERT_TRUE(hostile_link.send(1));
        EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(error));
        ASSERT_TRUE(hostile_link.send(2));
        EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(error));
    }
    ASSERT_TRUE(hostile_link.send(3)); // a legitimate frame arrives
    EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(okay));
    expect_received(g, 3, 1);
    ASSERT_TRUE(hostile_link.send(4));
    EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(error));
    ASSERT_TRUE(hostile_link.send(3)); // and the sender still works
    EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(okay));
    expect_received(g, 3, 2);

    EXPECT_EQ(g.report(1)->received + g.report(2)->received + g.report(4)->received, 0u);
    const auto wire = wire_frames(peer);
    EXPECT_TRUE(wire.empty()) << "spoofed frames on the wire";
    const VifCounters cbad = status(bad).counters;
    EXPECT_EQ(cbad.tx_drop_spoofed, 16u);
    EXPECT_EQ(cbad.tx_drop_error, 1u);
    EXPECT_EQ(cbad.local_tx_packets, 2u);
    const VifStatus sg = status(good);
    EXPECT_EQ(sg.state, VifRunState::running);
    EXPECT_EQ(sg.counters.local_rx_packets, 2u);
    // The victim's own traffic goes on.
    send_ok(g, peer_mac(), 9, 8, 300);
    EXPECT_EQ(wire_frames(peer)[9], 8u);

    hostile_link.send(0);
    EXPECT_TRUE(hostile.succeeded());
    CT_EXPECT_OK(engine_->detach(VifId{bad, 0}));
    EXPECT_EQ(pinned_grants(bad), 0u);
    finish({{&g, good}});
}

// The hostile sender on the victim's lcore, where its frames take one grant copy from its
// grants into the victim's buffers: a packet whose second slot (beyond the header copy) names
// a grant it never gave fails in that copy. The sender hears NETIF_RSP_ERROR for it
// (tx_drop_error), the victim's buffer comes back with an error status (rx_drop_error,
// local_rx_drops) and the victim is not blamed for the sender's grant; both go on exchanging
// frames, and a third guest is untouched.
TEST_F(LocalDelivery, ABadGrantInOneCopyFailsTheSenderOnly) {
    const hv::DomId good = create_guest("victim1");
    const hv::DomId other = create_guest("bystander");
    const hv::DomId bad = create_guest("badgrant");
    for (hv::DomId d : {good, other, bad})
        CT_ASSERT_OK(plug(d));
    GuestProcess g(dir_.path(), good, GuestOptions{});
    GuestProcess go(dir_.path(), other, GuestOptions{});
    Link hostile_link;
    Child hostile = spawn_linked(hostile_link,
                                 [&](const Link& l) { hostile_sender(dir_.path(), bad, good, l); });
    const std::string iface = tap_name(26);
    EngineOptions o = engine_options({tap_port("uplink", iface, pmd::Steering::shared)});
    o.fatal_bad_grants = false; // the bad packet alone is answered in error
    start_engine(o);
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(good, 0, "uplink", RxMode::copy));
    CT_ASSERT_OK(handshake_->connect(other, 0, "uplink", RxMode::copy));
    ASSERT_TRUE(g.wait_connected() && go.wait_connected());
    CT_ASSERT_OK(handshake_->connect(bad, 0, "uplink", RxMode::copy));
    ASSERT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(1));
    ASSERT_EQ(status(good).lcore, status(bad).lcore);

    const auto okay = static_cast<std::uint64_t>(netif::rsp::kOkay);
    const auto error = static_cast<std::uint64_t>(static_cast<std::uint16_t>(netif::rsp::kError));
    for (unsigned i = 1; i <= 2; ++i) {
        ASSERT_TRUE(hostile_link.send(3));
        EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(okay));
        expect_received(g, 3, i);
    }
    const std::uint64_t copies = status(bad).counters.grant_copy_ops;
    ASSERT_TRUE(hostile_link.send(5));
    EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(error));
    EXPECT_EQ(status(bad).counters.grant_copy_ops - copies, 1u) << "its header only";
    VifStatus sg = status(good);
    EXPECT_EQ(sg.state, VifRunState::running);
    EXPECT_EQ(sg.counters.rx_drop_error, 1u) << "the victim's buffer came back in error";
    EXPECT_EQ(sg.counters.local_rx_drops, 1u);
    EXPECT_EQ(status(bad).counters.tx_drop_error, 1u);

    ASSERT_TRUE(hostile_link.send(3)); // both go on
    EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(okay));
    expect_received(g, 3, 3);
    send_ok(g, guest_mac(other), 9, 8, 1000);
    expect_received(go, 9, 8);
    EXPECT_EQ(g.report(4)->received, 0u);
    sg = status(good);
    EXPECT_EQ(sg.counters.local_rx_packets, 3u);
    EXPECT_EQ(status(other).counters.rx_drop_error + status(other).counters.local_rx_drops, 0u);

    hostile_link.send(0);
    EXPECT_TRUE(hostile.succeeded());
    CT_EXPECT_OK(engine_->detach(VifId{bad, 0}));
    EXPECT_EQ(pinned_grants(bad), 0u);
    finish({{&g, good}, {&go, other}});
}

} // namespace
} // namespace dpnb::component
