// Hostile guests against the Engine: a raw frontend (rings and grants written by hand, in
// its own process) connects next to a well-behaved netfront guest, then misbehaves:
//   too many TX slots, a TX grant it never gave, an impossible TX or RX producer index, a
// posted RX buffer it revokes before the frame arrives, an RX buffer it never granted
// (map mode), a sub-page buffer offset beyond its page (copy and map modes). Each time the
// hostile vif is disabled (status, event, reason), its grants
// are all released on detach, and the good guest's traffic goes on; the daemon runs on.
// In map mode the guest also finds it cannot revoke a buffer the engine has mapped.
// A raw frontend whose second RX buffer cannot be written, on an engine that tolerates bad
// grants: that request alone is answered in error, in its turn (copy and bounce pipelines).
// A second raw frontend misbehaves on the netif control ring: malformed static-grant
// messages, every hash message with hostile values (the XSA-270 edge among them), a full
// ring announced with one event, a ring kept full, an impossible producer index.
#include <poll.h>

#include <cstring>
#include <thread>

#include "dpnb/hv/sim.hpp"
#include "dpnb/netfront/payload.hpp"
#include "dpnb/netif/ctrl_handler.hpp"
#include "dpnb/netif/ctrl_ring.hpp"
#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/wire.hpp"
#include "dpnb/netif/xs_value.hpp"
#include "harness.hpp"
#include "raw_frontend.hpp"

namespace dpnb::component {
namespace {

enum class Mischief : std::uint8_t {
    tx_too_many_slots,
    tx_bad_gref,
    tx_ring_overflow,
    rx_ring_overflow,
    rx_revoked_buffer, // copy mode: revoked after posting, before the frame
    rx_bad_gref,       // map mode: a gref it never granted
    rx_bad_offset,     // sub-page buffers: a request whose buffer leaves its page
};

struct HostileCase {
    Mischief mischief;
    RxMode mode;
    const char* name;
    const char* reason; // expected in the disabled reason
};

void PrintTo(const HostileCase& c, std::ostream* os) {
    *os << c.name;
}

using test::RawFrontend;

// The hostile guest: sets up one queue by hand, connects, then does its mischief when told.
// Reports over the link: 1 connected; after the mischief, 1 done; for rx_revoked_buffer and
// rx_bad_gref, the result of trying to end access to a posted buffer (0 ok, 1 busy).
void hostile_main(const std::string& dir, hv::DomId dom, Mischief mischief, const Link& link) {
    RawFrontend f;
    f.open(dir, dom, 2 + 64);
    if (::testing::Test::HasFatalFailure()) return;
    if (mischief == Mischief::rx_bad_offset)
        f.connect(
            {{"feature-sg", "1"}, {"feature-rx-buffer-offset", "1"}, {"rx-buffer-size", "2048"}});
    else
        f.connect({{"feature-sg", "1"}});
    if (::testing::Test::HasFatalFailure()) return;
    link.send(1);

    // Buffers for RX: pages 2.., granted writable.
    auto post_rx = [&](unsigned n, bool bad, std::uint16_t offset = 0) {
        std::vector<netif::GrantRef> refs;
        for (unsigned i = 0; i < n; ++i) {
            netif::GrantRef ref = 0x7FFF0 + i; // never granted
            if (!bad) {
                auto r = f.hv->grant_access(hv::kDom0, f.pages.page(2 + i), false);
                EXPECT_TRUE(r.has_value());
                ref = r.value_or(0);
            }
            refs.push_back(ref);
            EXPECT_TRUE(
                f.rx.put_request(netif::RxRequest{static_cast<std::uint16_t>(i), offset, ref}));
        }
        if (f.rx.push_requests()) (void)f.ev->notify(f.rx_port);
        return refs;
    };
    auto cmd = link.recv();
    if (!cmd) return;
    switch (mischief) {
    case Mischief::tx_too_many_slots: {
        // 30 chained slots: more than fatal_slots (20).
        auto data = f.hv->grant_access(hv::kDom0, f.pages.page(2), true);
        ASSERT_TRUE(data.has_value());
        for (std::uint16_t i = 0; i < 30; ++i) {
            netif::TxRequest r{*data, 0, i + 1 < 30 ? netif::txf::kMoreData : std::uint16_t{0}, i,
                               static_cast<std::uint16_t>(i == 0 ? 30 * 64 : 64)};
            EXPECT_TRUE(f.tx.put_request(r));
        }
        if (f.tx.push_requests()) (void)f.ev->notify(f.tx_port);
        break;
    }
    case Mischief::tx_bad_gref: {
        netif::TxRequest r{0x7FFF0, 0, 0, 1, 60};
        EXPECT_TRUE(f.tx.put_request(r));
        if (f.tx.push_requests()) (void)f.ev->notify(f.tx_port);
        break;
    }
    case Mischief::tx_ring_overflow: {
        auto* hdr = reinterpret_cast<netif::SharedRingHeader*>(f.pages.page(0));
        std::atomic_ref<netif::RingIdx>(hdr->req_prod).store(300, std::memory_order_release);
        (void)f.ev->notify(f.tx_port);
        break;
    }
    case Mischief::rx_ring_overflow: {
        // First: buffers the engine maps (map mode) cannot be revoked under it.
        auto refs = post_rx(8, false);
        link.send(2); // posted
        if (!link.recv()) return;
        link.send(f.hv->end_access(refs[0]) ? 0 : 1);
        auto* hdr = reinterpret_cast<netif::SharedRingHeader*>(f.pages.page(1));
        std::atomic_ref<netif::RingIdx>(hdr->req_prod).store(1000, std::memory_order_release);
        (void)f.ev->notify(f.rx_port);
        break;
    }
    case Mischief::rx_revoked_buffer: {
        auto refs = post_rx(8, false);
        std::this_thread::sleep_for(std::chrono::milliseconds(200)); // let the engine post them
        bool busy = false;
        for (netif::GrantRef r : refs) {
            auto st = f.hv->end_access(r);
            busy = busy || !st;
        }
        link.send(busy ? 1 : 0);
        break;
    }
    case Mischief::rx_bad_gref:
        (void)post_rx(4, true);
        break;
    case Mischief::rx_bad_offset:
        (void)post_rx(4, false, 3000); // 3000 + 2048 bytes: past the page's end
        break;
    }
    link.send(1);
    (void)link.recv(); // stay alive until the test is done with us
}

// The good guest's traffic both ways through its own tap port.
void good_traffic(GuestProcess& g, TapPeer& good_peer, hv::DomId good, std::uint32_t stream) {
    ASSERT_TRUE(g.send(peer_mac(), stream, 20, 300, 0));
    for (unsigned i = 0; i < 20; ++i) {
        auto f = good_peer.recv();
        ASSERT_TRUE(f);
        EXPECT_TRUE(*f == payload_frame(peer_mac(), guest_mac(good), i, stream, 300));
    }
    // Kernel -> guest; the first frame after start may land in a placeholder.
    const std::uint64_t before = g.report(stream + 100)->received;
    for (unsigned i = 0; i < 16 && g.report(stream + 100)->received < before + 8; ++i) {
        ASSERT_TRUE(
            good_peer.send(payload_frame(guest_mac(good), peer_mac(), i, stream + 100, 200)));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    auto r = g.wait_received(stream + 100, before + 8);
    ASSERT_TRUE(r);
    EXPECT_GE(r->received, before + 8);
}

// These tests run an Engine of their own: from the fixture, the tap skip and tap_port.
class HostileFixture : public TapEngineFixture {
protected:
    // After the hostile vif was cut off: the good guest does not notice; detaching the
    // hostile vif releases every grant of it; then the good guest closes, the hostile one is
    // let go, and the engine shuts down with nothing leaked.
    void detach_hostile_and_close(Engine& engine, BackendHandshake& hs, GuestProcess& g,
                                  TapPeer& good_peer, hv::DomId good, hv::DomId bad,
                                  const Link& hostile_link, Child& hostile) {
        good_traffic(g, good_peer, good, 2);
        EXPECT_EQ(engine.status(VifId{good, 0})->state, VifRunState::running);
        CT_EXPECT_OK(engine.detach(VifId{bad, 0}));
        EXPECT_EQ(pinned_grants(bad), 0u);
        good_traffic(g, good_peer, good, 3);

        ASSERT_TRUE(g.request_close());
        CT_EXPECT_OK(hs.disconnect(good, 0));
        EXPECT_TRUE(g.close_result());
        EXPECT_TRUE(g.succeeded());
        hostile_link.send(0);
        EXPECT_TRUE(hostile.succeeded());
        CT_EXPECT_OK(engine.shutdown());
        for (const auto& d : engine.leaks().details)
            ADD_FAILURE() << d;
    }
};

class Hostile : public HostileFixture, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(Hostile, IsCutOffWhileAGoodGuestKeepsItsTraffic) {
    const HostileCase hc = GetParam();
    const hv::DomId good = create_guest("good");
    const hv::DomId bad = create_guest("hostile");
    CT_ASSERT_OK(plug(good));
    CT_ASSERT_OK(plug(bad));
    GuestProcess g(dir_.path(), good, GuestOptions{netfront::RxMode::reuse, 0});
    auto [mine, theirs] = Link::make();
    Link hostile_link = std::move(mine);
    Link child_link = std::move(theirs);
    Child hostile([&] {
        hostile_link.close();
        hostile_main(dir_.path(), bad, hc.mischief, child_link);
    });
    child_link.close();

    auto bhv = hv::sim::connect_backend(dir_.path());
    CT_ASSERT_OK(bhv);
    auto e = Engine::create(
        engine_options({tap_port("good", tap_name(10), pmd::Steering::dedicated_port),
                        tap_port("bad", tap_name(11), pmd::Steering::dedicated_port)}),
        **bhv);
    CT_ASSERT_OK(e);
    Engine& engine = **e;
    BackendHandshake hs(*xs_, engine);
    CT_ASSERT_OK(hs.connect(good, 0, "good", RxMode::reuse));
    ASSERT_TRUE(g.wait_connected());
    CT_ASSERT_OK(hs.connect(bad, 0, "bad", hc.mode));
    ASSERT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(1));
    TapPeer good_peer(tap_name(10));
    TapPeer bad_peer(tap_name(11));
    ASSERT_TRUE(good_peer.ok() && bad_peer.ok());

    good_traffic(g, good_peer, good, 1);

    ASSERT_TRUE(hostile_link.send(1)); // go
    std::optional<std::uint64_t> revoke_busy;
    if (hc.mischief == Mischief::rx_revoked_buffer) revoke_busy = hostile_link.recv();
    if (hc.mischief == Mischief::rx_ring_overflow) {
        ASSERT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(2));
        for (int i = 0; i < 6000 && engine.status(VifId{bad, 0})->counters.grant_map_ops < 8; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        ASSERT_GE(engine.status(VifId{bad, 0})->counters.grant_map_ops, 8u);
        ASSERT_TRUE(hostile_link.send(1));
        EXPECT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(1))
            << "a buffer the engine maps cannot be revoked (end_access: busy)";
    }
    ASSERT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(1));
    if (revoke_busy) {
        EXPECT_EQ(*revoke_busy, 0u) << "copy mode maps nothing: revoking works";
    }
    if (hc.mischief == Mischief::rx_revoked_buffer ||
        (hc.mischief == Mischief::rx_bad_offset && hc.mode == RxMode::copy)) {
        // The frame that needs the bad buffer (copy mode reads a request when a frame comes).
        for (unsigned i = 0; i < 50; ++i) {
            if (engine.status(VifId{bad, 0})->state == VifRunState::disabled) break;
            ASSERT_TRUE(bad_peer.send(payload_frame(guest_mac(bad), peer_mac(), i, 9, 100)));
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    // Disabled, with the reason, and an event for the control plane.
    VifStatus st;
    for (int i = 0; i < 3000; ++i) {
        st = engine.status(VifId{bad, 0}).value_or(VifStatus{});
        if (st.state == VifRunState::disabled) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(st.state, VifRunState::disabled);
    EXPECT_NE(st.disabled_reason.find(hc.reason), std::string::npos) << st.disabled_reason;
    bool event = false;
    while (auto ev = engine.next_event())
        event =
            event || (ev->kind == DataPlaneEvent::Kind::vif_disabled && ev->vif == VifId{bad, 0});
    EXPECT_TRUE(event);
    if (hc.mischief == Mischief::rx_bad_offset) {
        EXPECT_EQ(st.counters.rx_bad_request, 1u);
        EXPECT_EQ(st.counters.rx_packets, 0u) << "nothing was written past the page";
    }
    if (hc.mischief == Mischief::tx_too_many_slots) {
        const auto i = static_cast<std::size_t>(netif::TxError::too_many_slots_fatal) - 1;
        ASSERT_LT(i, st.tx_errors.size());
        EXPECT_EQ(st.tx_errors[i], 1u);
    }

    detach_hostile_and_close(engine, hs, g, good_peer, good, bad, hostile_link, hostile);
    if (HasFatalFailure()) return;
    e->reset();
    bhv->reset();
    EXPECT_EQ(total_pinned(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Mischief, Hostile,
    ::testing::Values(
        HostileCase{Mischief::tx_too_many_slots, RxMode::copy, "tx_too_many_slots",
                    "tx_slot_fatal"},
        HostileCase{Mischief::tx_bad_gref, RxMode::copy, "tx_bad_gref", "grant refused"},
        HostileCase{Mischief::tx_ring_overflow, RxMode::copy, "tx_ring_overflow",
                    "TX ring overflow"},
        HostileCase{Mischief::rx_ring_overflow, RxMode::map, "rx_ring_overflow",
                    "RX ring overflow"},
        HostileCase{Mischief::rx_revoked_buffer, RxMode::copy, "rx_revoked_buffer",
                    "grant refused"},
        HostileCase{Mischief::rx_bad_gref, RxMode::map, "rx_bad_gref", "grant refused"},
        HostileCase{Mischief::rx_bad_offset, RxMode::copy, "rx_bad_offset_copy", "beyond its page"},
        HostileCase{Mischief::rx_bad_offset, RxMode::map, "rx_bad_offset_map", "beyond its page"}),
    [](const auto& p) { return std::string(p.param.name); });

// A guest whose RX buffer cannot be written, on an engine that does not cut it off for that
// (fatal_bad_grants off): the copy into it fails and only that request is answered in error,
// in its turn among the others. Both pipelines copy: a shared queue (the copy pipeline) and a
// guest's own queue in copy mode (the zero-copy pipeline's bounce buffers).
void rx_copy_failure_main(const std::string& dir, hv::DomId dom, const Link& link) {
    RawFrontend f;
    f.open(dir, dom, 2 + 6);
    if (::testing::Test::HasFatalFailure()) return;
    f.connect({{"feature-sg", "1"}});
    if (::testing::Test::HasFatalFailure()) return;
    link.send(1);
    if (!link.recv()) return;
    // Six buffers; the second names a grant that was never given. Only the first four are
    // checked: a NIC may hold the buffer after the last one it filled (net_tap reads into a
    // buffer before it takes the next).
    for (std::uint16_t i = 0; i < 6; ++i) {
        netif::GrantRef ref = 0x7FFF0;
        if (i != 1) {
            auto r = f.hv->grant_access(hv::kDom0, f.pages.page(2 + i), false);
            ASSERT_TRUE(r.has_value());
            ref = *r;
        }
        ASSERT_TRUE(f.rx.put_request(netif::RxRequest{i, 0, ref}));
    }
    if (f.rx.push_requests()) (void)f.ev->notify(f.rx_port);
    link.send(2);
    // Each of the first four responses in ring order: id << 40 | status << 8 | (the buffer
    // holds a whole payload frame).
    unsigned got = 0;
    for (int tries = 0; tries < 2000 && got < 4; ++tries) {
        const netif::ResponseWindow w = f.rx.poll_responses();
        EXPECT_FALSE(w.overflow);
        for (std::uint32_t k = 0; k < w.available; ++k) {
            const netif::RxResponse r = f.rx.copy_response(w.cons + k);
            bool whole = false;
            if (got >= 4) continue;
            if (r.status > 0 && r.id < 6 &&
                std::size_t{r.offset} + static_cast<std::size_t>(r.status) <= netif::kPageSize) {
                const std::span frame(f.pages.page(2 + r.id) + r.offset,
                                      static_cast<std::size_t>(r.status));
                whole = netfront::check_payload_frame(frame).result == netfront::PayloadCheck::ok;
            }
            link.send(std::uint64_t{r.id} << 40 | std::uint64_t{std::uint16_t(r.status)} << 8 |
                      (whole ? 1U : 0U));
            ++got;
        }
        f.rx.consume_responses(w.available);
        if (got < 4) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    (void)link.recv(); // stay alive until the test is done with us
}

class HostileRxCopy : public HostileFixture, public ::testing::WithParamInterface<pmd::Steering> {};

TEST_P(HostileRxCopy, AFailedCopyAnswersOnlyItsOwnRequestInError) {
    const pmd::Steering steering = GetParam();
    const hv::DomId dom = create_guest("unwritable");
    CT_ASSERT_OK(plug(dom));
    auto [mine, theirs] = Link::make();
    Link link = std::move(mine);
    Link child_link = std::move(theirs);
    Child guest([&] {
        link.close();
        rx_copy_failure_main(dir_.path(), dom, child_link);
    });
    child_link.close();

    EngineOptions o = engine_options({tap_port("port", tap_name(14), steering)});
    o.fatal_bad_grants = false;
    start_engine(o);
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "port", RxMode::copy));
    ASSERT_EQ(link.recv(), std::optional<std::uint64_t>(1));
    TapPeer peer(tap_name(14));
    ASSERT_TRUE(peer.ok());
    ASSERT_TRUE(link.send(1));
    ASSERT_EQ(link.recv(), std::optional<std::uint64_t>(2)); // posted

    // Frames until the four requests are answered (on the guest's own queue the first frame
    // after start lands in a start-up placeholder and is dropped).
    std::vector<std::uint64_t> answers;
    for (unsigned i = 0; i < 40 && answers.size() < 4; ++i) {
        ASSERT_TRUE(peer.send(payload_frame(guest_mac(dom), peer_mac(), i, 7, 200)));
        while (link.readable() && answers.size() < 4)
            answers.push_back(link.recv().value_or(0));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    while (answers.size() < 4) {
        auto v = link.recv(5000);
        if (!v) break;
        answers.push_back(*v);
    }
    ASSERT_EQ(answers.size(), 4u) << describe(dom);
    for (std::uint64_t k = 0; k < 4; ++k) {
        const std::uint64_t a = answers[k];
        EXPECT_EQ(a >> 40, k) << "responses in ring order";
        const auto status = static_cast<std::int16_t>(static_cast<std::uint16_t>(a >> 8));
        if (k == 1) {
            EXPECT_EQ(status, netif::rsp::kError) << "the unwritable buffer";
        } else {
            EXPECT_EQ(status, 200) << "request " << k;
            EXPECT_EQ(a & 1, 1u) << "request " << k << " holds its frame whole";
        }
    }
    const VifStatus st = status(dom);
    EXPECT_EQ(st.state, VifRunState::running) << st.disabled_reason;
    EXPECT_EQ(st.counters.rx_drop_error, 1u) << describe(dom);
    // Frames sent after the fourth answer may fill the extra buffers.
    EXPECT_GE(st.counters.daemon_copies, 3u) << describe(dom);
    EXPECT_GE(st.counters.grant_copy_ops, 4u) << describe(dom);
    link.send(0);
    EXPECT_TRUE(guest.succeeded());
    CT_EXPECT_OK(engine_->detach(VifId{dom, 0}));
    EXPECT_EQ(pinned_grants(dom), 0u);
    CT_EXPECT_OK(engine_->shutdown());
    for (const auto& d : engine_->leaks().details)
        ADD_FAILURE() << d;
}

INSTANTIATE_TEST_SUITE_P(Pipelines, HostileRxCopy,
                         ::testing::Values(pmd::Steering::shared, pmd::Steering::dedicated_port),
                         [](const auto& p) {
                             return std::string(p.param == pmd::Steering::shared ? "copy_pipeline"
                                                                                 : "bounce");
                         });

} // namespace
} // namespace dpnb::component

namespace dpnb::component {
namespace {

namespace ctrl = netif::ctrl;

// The control-ring hostile guest: rings by hand as hostile_main, plus a control ring (page
// 2), a list page (3) and static grants negotiated. Steps, each on a command from the test:
//   1  malformed messages, then one good ADD: reports each response's status;
//   2  keeps the ring full of ADDs until told to stop or 20 s passed: reports 1 when
//      stopped by the test, 2 when it gave up (the engine never came back to the test);
//   3  a producer index 1000 requests ahead of the responses;
//   4  hash messages, hostile ones between the good set-up (key in page 3, an all-zero
//      mapping in page 4): reports id << 48 | status << 32 | data for each;
//   5  a full ring of requests announced with one event and never again: reports how many
//      were answered within 20 s (all of them only if the engine comes back on its own).
void ctrl_hostile_main(const std::string& dir, hv::DomId dom, const Link& link) {
    RawFrontend f;
    f.open(dir, dom, 5);
    if (::testing::Test::HasFatalFailure()) return;
    test::XsKeys keys = f.open_ctrl_ring(2);
    auto list_ref = f.hv->grant_access(hv::kDom0, f.pages.page(3), false);
    auto data_ref = f.hv->grant_access(hv::kDom0, f.pages.page(4), false);
    ASSERT_TRUE(list_ref && data_ref && !keys.empty());
    keys.emplace_back("feature-static-grants", "1");
    f.connect(keys);
    if (::testing::Test::HasFatalFailure()) return;
    link.send(1);
    auto* list = reinterpret_cast<ctrl::Gref*>(f.pages.page(3));
    ctrl::FrontRing* cr = &f.ctrl;
    auto push = [&] { f.push_ctrl(); };
    // Collects `n` responses (the test pumps the engine meanwhile).
    auto responses = [&](unsigned n) {
        std::vector<ctrl::Response> out;
        for (int i = 0; i < 2000 && out.size() < n; ++i) {
            const netif::ResponseWindow w = cr->poll_responses();
            EXPECT_FALSE(w.overflow);
            for (std::uint32_t k = 0; k < w.available; ++k)
                out.push_back(cr->copy_response(w.cons + k));
            cr->consume_responses(w.available);
            if (out.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return out;
    };

    for (auto cmd = link.recv(); cmd && *cmd != 0; cmd = link.recv()) {
        if (*cmd == 1) {
            list[0] = ctrl::Gref{*data_ref, 0x80, 0}; // an unknown flag
            const ctrl::Request reqs[] = {
                {1, ctrl::kTypeAddGrefMapping, {0, *list_ref, 0}}, // no entries
                {2, ctrl::kTypeAddGrefMapping, {0, *list_ref, ctrl::kMaxGrefsPerMessage + 1}},
                {3, ctrl::kTypeAddGrefMapping, {0, 0x7FFF0, 1}},   // a list never granted
                {4, ctrl::kTypeAddGrefMapping, {0, *list_ref, 1}}, // the unknown flag
                {5, ctrl::kTypeGetGrefMappingSize, {5, 0, 0}},     // a queue it lacks
                {6, 99, {0, 0, 0}},                                // no such message
            };
            for (const ctrl::Request& r : reqs)
                EXPECT_TRUE(cr->put_request(r));
            push();
            for (const ctrl::Response& r : responses(6))
                link.send((std::uint64_t{r.id} << 32) | r.status);
            // Then a good ADD: the ring still serves.
            list[0] = ctrl::Gref{*data_ref, 0, 0};
            EXPECT_TRUE(cr->put_request({7, ctrl::kTypeAddGrefMapping, {0, *list_ref, 1}}));
            push();
            for (const ctrl::Response& r : responses(1))
                link.send((std::uint64_t{r.id} << 32) | r.status);
        } else if (*cmd == 2) {
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            std::uint16_t id = 100;
            while (!link.readable() && std::chrono::steady_clock::now() < deadline) {
                const netif::ResponseWindow w = cr->poll_responses();
                cr->consume_responses(w.available);
                // ADDs of the page already registered: each costs the engine a grant copy
                // of the list (and is refused), more than the guest spends producing it,
                // so the ring never runs dry while the flood lasts.
                while (cr->put_request({id++, ctrl::kTypeAddGrefMapping, {0, *list_ref, 1}})) {
                }
                push();
            }
            const bool stopped = link.readable();
            if (stopped) (void)link.recv();
            (void)responses(cr->req_prod_pvt() - cr->rsp_cons()); // drain what is left
            link.send(stopped ? 1 : 2);
        } else if (*cmd == 4) {
            const std::uint8_t key[40] = {
                0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
                0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
                0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};
            std::memcpy(f.pages.page(3), key, sizeof(key));
            std::memset(f.pages.page(4), 0, 64);
            const std::uint32_t never = 0x7FFF0; // a grant reference never granted
            const ctrl::Request reqs[] = {
                {1, ctrl::kTypeSetHashAlgorithm, {2, 0, 0}},
                {2, ctrl::kTypeSetHashFlags, {netif::hash_flag::kIpv4, 0, 0}}, // no algorithm
                {3, ctrl::kTypeSetHashAlgorithm, {netif::hash_alg::kToeplitz, 0, 0}},
                {4, ctrl::kTypeSetHashFlags, {0x10, 0, 0}},
                {5, ctrl::kTypeSetHashKey, {*list_ref, 41, 0}},
                {6, ctrl::kTypeSetHashKey, {never, 40, 0}},
                {7, ctrl::kTypeSetHashMappingSize, {129, 0, 0}},
                {8, ctrl::kTypeSetHashMappingSize, {8, 0, 0}},
                {9, ctrl::kTypeSetHashMapping, {*data_ref, 2, 0xFFFFFFFF}}, // XSA-270
                {10, ctrl::kTypeSetHashMapping, {*data_ref, 1, 8}},
                {11, ctrl::kTypeSetHashMapping, {*list_ref, 8, 0}}, // queues >= 1 of 1
                {12, ctrl::kTypeSetHashMapping, {never, 8, 0}},
                {13, ctrl::kTypeSetHashFlags, {netif::hash_flag::kAll, 0, 0}},
                {14, ctrl::kTypeSetHashKey, {*list_ref, 40, 0}},
                {15, ctrl::kTypeSetHashMapping, {*data_ref, 8, 0}},
                {16, ctrl::kTypeGetHashFlags, {0, 0, 0}},
                {17, ctrl::kTypeGetHashMappingSize, {0, 0, 0}},
            };
            for (const ctrl::Request& r : reqs)
                EXPECT_TRUE(cr->put_request(r));
            push();
            for (const ctrl::Response& r : responses(std::size(reqs)))
                link.send(std::uint64_t{r.id} << 48 | std::uint64_t{r.status} << 32 | r.data);
        } else if (*cmd == 5) {
            std::uint16_t id = 1000;
            while (cr->put_request({id++, ctrl::kTypeGetHashMappingSize, {0, 0, 0}})) {
            }
            push();
            const std::uint32_t n = ctrl::FrontRing::kSize;
            std::uint32_t answered = 0;
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            while (answered < n && std::chrono::steady_clock::now() < deadline) {
                const netif::ResponseWindow w = cr->poll_responses();
                for (std::uint32_t k = 0; k < w.available; ++k)
                    answered += cr->copy_response(w.cons + k).status == ctrl::kStatusSuccess;
                cr->consume_responses(w.available);
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
            link.send(answered);
        } else if (*cmd == 3) {
            auto* hdr = reinterpret_cast<netif::SharedRingHeader*>(f.pages.page(2));
            std::atomic_ref<netif::RingIdx>(hdr->req_prod)
                .store(cr->rsp_cons() + 1000, std::memory_order_release);
            (void)f.ev->notify(f.ctrl_port);
            link.send(1);
        }
    }
}

class HostileControlRing : public HostileFixture {};

TEST_F(HostileControlRing, MischiefIsAnsweredServedInBoundedSharesThenCutOff) {
    const hv::DomId good = create_guest("good");
    const hv::DomId bad = create_guest("hostile");
    CT_ASSERT_OK(plug(good));
    CT_ASSERT_OK(plug(bad));
    GuestProcess g(dir_.path(), good, GuestOptions{netfront::RxMode::reuse, 0});
    auto [mine, theirs] = Link::make();
    Link hostile_link = std::move(mine);
    Link child_link = std::move(theirs);
    Child hostile([&] {
        hostile_link.close();
        ctrl_hostile_main(dir_.path(), bad, child_link);
    });
    child_link.close();

    auto bhv = hv::sim::connect_backend(dir_.path());
    CT_ASSERT_OK(bhv);
    auto e = Engine::create(
        engine_options({tap_port("good", tap_name(12), pmd::Steering::dedicated_port),
                        tap_port("bad", tap_name(13), pmd::Steering::dedicated_port)}),
        **bhv);
    CT_ASSERT_OK(e);
    Engine& engine = **e;
    BackendHandshake hs(*xs_, engine);
    hs.caps.ctrl_ring = true;
    hs.caps.static_grants = true;
    CT_ASSERT_OK(hs.connect(good, 0, "good", RxMode::reuse));
    ASSERT_TRUE(g.wait_connected());
    CT_ASSERT_OK(hs.connect(bad, 0, "bad", RxMode::copy));
    ASSERT_EQ(hostile_link.recv(), std::optional<std::uint64_t>(1));
    ASSERT_TRUE(engine.status(VifId{bad, 0})->control_ring);
    TapPeer good_peer(tap_name(12));
    ASSERT_TRUE(good_peer.ok());

    // The control thread's loop, as the daemon's: next_event() only when events_fd() is
    // readable.
    std::vector<DataPlaneEvent> events;
    auto pump = [&](int ms) {
        pollfd p{engine.events_fd(), POLLIN, 0};
        if (::poll(&p, 1, ms) != 1) return;
        while (auto ev = engine.next_event())
            events.push_back(*ev);
    };
    // Waits for the hostile guest's next report, serving the control rings meanwhile.
    auto report = [&]() -> std::optional<std::uint64_t> {
        for (int i = 0; i < 3000 && !hostile_link.readable(); ++i)
            pump(10);
        return hostile_link.recv(100);
    };
    good_traffic(g, good_peer, good, 1);

    // 1. Malformed messages: answered, counted, the vif lives.
    ASSERT_TRUE(hostile_link.send(1));
    const std::uint32_t want[] = {ctrl::kStatusInvalidParameter, ctrl::kStatusInvalidParameter,
                                  ctrl::kStatusInvalidParameter, ctrl::kStatusInvalidParameter,
                                  ctrl::kStatusInvalidParameter, ctrl::kStatusNotSupported,
                                  ctrl::kStatusSuccess};
    for (std::uint32_t k = 0; k < 7; ++k) {
        auto r = report();
        ASSERT_TRUE(r) << "no response to request " << k + 1;
        EXPECT_EQ(*r >> 32, k + 1);
        EXPECT_EQ(*r & 0xFFFFFFFFu, want[k]) << "request " << k + 1;
    }
    EXPECT_EQ(engine.status(VifId{bad, 0})->state, VifRunState::running);
    EXPECT_EQ(engine.status(VifId{bad, 0})->static_grants, 1u);

    // 4. Hash messages: every hostile one is refused with its reason counted, the good
    //    set-up is taken, and the vif's queues get it.
    ASSERT_TRUE(hostile_link.send(4));
    struct Want {
        std::uint32_t status;
        std::uint32_t data;
    };
    const Want hash_want[] = {
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusSuccess, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusSuccess, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusInvalidParameter, 0},
        {ctrl::kStatusSuccess, 0},
        {ctrl::kStatusSuccess, 0},
        {ctrl::kStatusSuccess, 0},
        {ctrl::kStatusSuccess, netif::hash_flag::kAll},
        {ctrl::kStatusSuccess, netif::kMaxHashMappingSize},
    };
    for (std::uint32_t k = 0; k < std::size(hash_want); ++k) {
        auto r = report();
        ASSERT_TRUE(r) << "no response to hash request " << k + 1;
        EXPECT_EQ(*r >> 48, k + 1);
        EXPECT_EQ((*r >> 32) & 0xFFFF, hash_want[k].status) << "hash request " << k + 1;
        EXPECT_EQ(*r & 0xFFFFFFFFu, hash_want[k].data) << "hash request " << k + 1;
    }
    VifStatus hs_st = engine.status(VifId{bad, 0}).value_or(VifStatus{});
    EXPECT_EQ(hs_st.state, VifRunState::running);
    auto refused = [&](netif::ctrl::CtrlError why) {
        return hs_st.ctrl_errors.at(static_cast<std::size_t>(why) - 1);
    };
    EXPECT_EQ(refused(netif::ctrl::CtrlError::bad_hash_algorithm), 1u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::hash_off), 1u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::bad_hash_flags), 1u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::hash_key_too_long), 1u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::hash_key_unreadable), 1u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::mapping_size_too_big), 1u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::mapping_out_of_range), 2u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::mapping_bad_queue), 1u);
    EXPECT_EQ(refused(netif::ctrl::CtrlError::mapping_unreadable), 1u);
    // What the lcore holds for the vif's queues (status reports it once the lcore took it).
    EXPECT_EQ(hs_st.hash.algorithm, netif::hash_alg::kToeplitz);
    EXPECT_EQ(hs_st.hash.flags, netif::hash_flag::kAll);
    EXPECT_EQ(hs_st.hash.mapping_size, 8u);
    EXPECT_EQ(hs_st.hash.key[0], 0x6d);
    EXPECT_EQ(hs_st.hash.key[39], 0xfa);
    EXPECT_EQ(engine.status(VifId{good, 0})->hash.algorithm, netif::hash_alg::kNone);

    // 5. A full ring announced with one event: the engine answers a budget per pass and
    //    comes back by itself (events_fd() readable again) until every request is answered.
    ASSERT_TRUE(hostile_link.send(5));
    EXPECT_EQ(report(), std::optional<std::uint64_t>(ctrl::FrontRing::kSize))
        << "the engine stopped at its budget and did not come back";

    // 2. A ring kept full: each next_event() serves at most a budget of requests and returns,
    //    so the control thread gets back to its other work (here: telling the guest to stop).
    ASSERT_TRUE(hostile_link.send(2));
    for (int i = 0; i < 20; ++i)
        pump(10);
    ASSERT_TRUE(hostile_link.send(1)); // stop
    EXPECT_EQ(report(), std::optional<std::uint64_t>(1))
        << "the flood ended by itself: the engine did not return to the control thread";

    // 3. An impossible producer index: the vif is reported disabled, with the reason.
    ASSERT_TRUE(hostile_link.send(3));
    ASSERT_EQ(report(), std::optional<std::uint64_t>(1));
    bool disabled = false;
    for (int i = 0; i < 300 && !disabled; ++i) {
        pump(10);
        for (const DataPlaneEvent& ev : events)
            if (ev.kind == DataPlaneEvent::Kind::vif_disabled && ev.vif == VifId{bad, 0}) {
                disabled = true;
                EXPECT_NE(ev.detail.find("control ring"), std::string::npos) << ev.detail;
            }
    }
    EXPECT_TRUE(disabled);

    detach_hostile_and_close(engine, hs, g, good_peer, good, bad, hostile_link, hostile);
    if (HasFatalFailure()) return;
    e->reset();
    bhv->reset();
    EXPECT_EQ(total_pinned(), 0u);
}

} // namespace
} // namespace dpnb::component
