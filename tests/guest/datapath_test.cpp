// The data path, guest and reflector backend in separate processes over the simulated
// hypervisor: frames of 64 .. 9000 bytes (one and several slots, odd first offsets) sent on
// every queue come back byte for byte; one and two queues; split and single event channels;
// copy and reuse RX modes; full and half-page buffers; checksum flags and GSO extras.
#include "traffic.hpp"

namespace dpnb::netfront::test {
namespace {

struct PathCase {
    unsigned queues;
    bool split;
    RxMode mode;
    bool half;
    bool static_grants = false; // reuse through the control ring (stock Xen's way)
};

std::string name_of(const PathCase& c) {
    return std::to_string(c.queues) + "q_" + (c.split ? "split" : "single") + "_" +
           to_string(c.mode) + (c.static_grants ? "_static" : "") + "_" +
           (c.half ? "half" : "full");
}

void PrintTo(const PathCase& c, std::ostream* os) {
    *os << name_of(c);
}

class RoundTrip : public NetfrontFixture, public ::testing::WithParamInterface<PathCase> {};

TEST_P(RoundTrip, FramesComeBackByteForByte) {
    const PathCase c = GetParam();
    ReflectorOptions ro;
    ro.static_grants = c.static_grants;
    ReflectorProcess backend(dir(), ro);
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("rt");
    NF_ASSERT_OK(plug(dom, 0));
    NetfrontOptions opts;
    opts.max_queues = c.queues;
    opts.split_event_channels = c.split;
    opts.rx_mode = c.mode;
    opts.half_page_buffers = c.half;
    opts.hold_depth = 8;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        ASSERT_EQ(nf.num_queues(), c.queues);
        EXPECT_EQ(nf.rx_buffer_size(), c.half ? 2048 : 4096);
        Traffic t(nf);
        if (c.static_grants) {
            // Registered asynchronously over the control ring: let it finish, so that the
            // reposted buffers count as hits.
            ASSERT_TRUE(t.wait_for([&] {
                const PoolStats ps = nf.pool_stats();
                return ps.registered_pages == ps.pages;
            }));
        }
        // The largest frame fits the 18 RX slots a frontend accepts: 64 KiB in full pages,
        // 36 KiB in half pages.
        const std::size_t sizes[] = {64,
                                     65,
                                     1499,
                                     1514,
                                     2047,
                                     2048,
                                     2049,
                                     4095,
                                     4096,
                                     4097,
                                     8192,
                                     9000,
                                     c.half ? 36000U : 60000U};
        std::map<std::uint64_t, std::size_t> expected_segments;
        for (unsigned q = 0; q < c.queues; ++q) {
            for (std::size_t size : sizes) {
                expected_segments[t.next_seq()] =
                    (size + nf.rx_buffer_size() - 1) / nf.rx_buffer_size();
                NF_ASSERT_OK(t.send(size, q));
            }
            // A first slot that starts late in its page: more slots than the size needs.
            TxFrame odd;
            odd.first_offset = 4000;
            expected_segments[t.next_seq()] = 1;
            NF_ASSERT_OK(t.send(1000, q, odd));
        }
        ASSERT_TRUE(t.wait_all()) << "received " << t.received().size() << " of " << t.sent();
        EXPECT_EQ(t.mismatch(), 0U);
        EXPECT_EQ(t.bad(), 0U);
        EXPECT_EQ(t.duplicates(), 0U);
        EXPECT_EQ(t.tx_failed(), 0U);
        for (const auto& [seq, r] : t.received()) {
            if (r.data.size() != 1000) {
                EXPECT_EQ(r.segments, expected_segments[seq])
                    << "frame " << seq << " of " << r.data.size() << " bytes";
            }
        }
        const Counters& k = nf.counters();
        EXPECT_EQ(k[Counter::tx_frames_ok], t.sent());
        EXPECT_EQ(k[Counter::rx_frames], t.sent());
        for (Counter bad : {Counter::rx_error_status, Counter::rx_bad_offset, Counter::rx_bad_id,
                            Counter::rx_bad_extra, Counter::rx_bad_gso, Counter::rx_incomplete,
                            Counter::rx_too_many_slots, Counter::rx_runt, Counter::ring_overflow,
                            Counter::broken, Counter::grant_still_in_use})
            EXPECT_EQ(k[bad], 0U) << counter_table()[static_cast<std::size_t>(bad)].name;
        EXPECT_GT(k[Counter::events], 0U); // the backend's notifications arrive
        EXPECT_GT(k[Counter::notify_tx], 0U);
        EXPECT_EQ(nf.using_static_grants(), c.static_grants);
        EXPECT_EQ(k[Counter::ctrl_errors], 0U);
        if (c.static_grants) {
            EXPECT_GT(k[Counter::ctrl_messages], 0U);
        }
        if (c.mode == RxMode::reuse) {
            EXPECT_GT(k[Counter::reuse_hits], 0U);
            EXPECT_EQ(k[Counter::reuse_misses], k[Counter::pool_pages_added]);
            EXPECT_EQ(k[Counter::reuse_hits] + k[Counter::reuse_misses] +
                          k[Counter::unregistered_posts],
                      k[Counter::rx_posts]);
            if (!c.static_grants) {
                EXPECT_EQ(k[Counter::unregistered_posts], 0U);
            }
        }
        EXPECT_FALSE(nf.broken());
        NF_EXPECT_OK(nf.close(std::chrono::milliseconds(kTimeoutMs)));
        EXPECT_EQ(nf.state(), LinkState::gone);
    });
    EXPECT_TRUE(guest.succeeded());
    auto s = backend.stats();
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->frames, 14U * c.queues);
    if (c.mode == RxMode::reuse)
        EXPECT_GT(s->zero_copy, 0U); // written through the translation table, no grant op
    else
        EXPECT_EQ(s->zero_copy, 0U);
    EXPECT_TRUE(backend.quit());
    // Nothing of the guest stays pinned once both sides let go (and with static grants the
    // hypervisor's translation table was never used).
    auto stats = toolstack_->stats();
    NF_ASSERT_OK(stats);
    EXPECT_EQ(stats->translation_entries, 0U);
}

INSTANTIATE_TEST_SUITE_P(Layouts, RoundTrip,
                         ::testing::Values(PathCase{1, true, RxMode::copy, false},
                                           PathCase{1, false, RxMode::copy, false},
                                           PathCase{2, true, RxMode::copy, false},
                                           PathCase{2, false, RxMode::reuse, false},
                                           PathCase{1, true, RxMode::reuse, false},
                                           PathCase{1, true, RxMode::reuse, true},
                                           PathCase{2, true, RxMode::copy, true},
                                           PathCase{1, true, RxMode::reuse, false, true},
                                           PathCase{2, true, RxMode::reuse, true, true}),
                         [](const auto& tp) { return name_of(tp.param); });

class Volume : public NetfrontFixture {};

// Thousands of frames on two queues: the rings wrap many times, buffers are reused many
// times, and the stack holds frames while the pool grows and shrinks.
TEST_F(Volume, ManyRingWrapsEveryFrameVerified) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("volume");
    NF_ASSERT_OK(plug(dom, 0));
    NetfrontOptions opts;
    opts.max_queues = 2;
    opts.rx_mode = RxMode::reuse;
    opts.half_page_buffers = true;
    opts.hold_depth = 48;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        Traffic t(nf);
        constexpr int kFrames = 3000;
        for (int i = 0; i < kFrames; ++i) {
            const std::size_t size = 60 + static_cast<std::size_t>(i * 37) % 5000;
            NF_ASSERT_OK(t.send(size, static_cast<unsigned>(i % 2)));
            if (i % 200 == 199) {
                ASSERT_TRUE(t.wait_all());
            }
        }
        ASSERT_TRUE(t.wait_all());
        EXPECT_EQ(t.received().size(), static_cast<std::size_t>(kFrames));
        EXPECT_EQ(t.mismatch(), 0U);
        EXPECT_EQ(t.duplicates(), 0U);
        const Counters& k = nf.counters();
        EXPECT_EQ(k[Counter::rx_frames], static_cast<std::uint64_t>(kFrames));
        EXPECT_GT(nf.reuse_rate(), 0.5);
        EXPECT_EQ(k[Counter::broken], 0U);
        NF_EXPECT_OK(nf.close(std::chrono::milliseconds(kTimeoutMs)));
    });
    EXPECT_TRUE(guest.succeeded());
    auto s = backend.stats();
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->frames, 3000U);
    EXPECT_TRUE(backend.quit());
}

class Offloads : public NetfrontFixture {};

TEST_F(Offloads, ChecksumFlagsAndGsoExtrasRoundTrip) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("offload");
    NF_ASSERT_OK(plug(dom, 0));
    Child guest = run_guest(dir(), dom, NetfrontOptions{}, [&](Netfront& nf, hv::GuestHypervisor&) {
        ASSERT_TRUE(nf.backend_features().gso_tcpv4);
        Traffic t(nf);
        TxFrame partial;
        partial.csum_partial = true;
        NF_ASSERT_OK(t.send(1514, 0, partial)); // seq 0
        TxFrame validated;
        validated.data_validated = true;
        NF_ASSERT_OK(t.send(1514, 0, validated)); // seq 1
        NF_ASSERT_OK(t.send(1514, 0));            // seq 2: no flags
        TxFrame gso4;
        gso4.csum_partial = true;
        gso4.gso_type = netif::gso::kTcpV4;
        gso4.gso_size = 1448;
        NF_ASSERT_OK(t.send(9000, 0, gso4)); // seq 3
        TxFrame gso6 = gso4;
        gso6.gso_type = netif::gso::kTcpV6;
        gso6.gso_size = 1428;
        NF_ASSERT_OK(t.send(30000, 0, gso6)); // seq 4
        ASSERT_TRUE(t.wait_all());
        EXPECT_EQ(t.mismatch(), 0U);
        const auto& r = t.received();
        ASSERT_EQ(r.size(), 5U);
        EXPECT_TRUE(r.at(0).meta.csum_blank);
        EXPECT_TRUE(r.at(0).meta.data_validated);
        EXPECT_FALSE(r.at(1).meta.csum_blank);
        EXPECT_TRUE(r.at(1).meta.data_validated);
        EXPECT_FALSE(r.at(2).meta.csum_blank);
        EXPECT_FALSE(r.at(2).meta.data_validated);
        EXPECT_EQ(r.at(2).meta.gso_type, 0);
        EXPECT_EQ(r.at(3).meta.gso_type, netif::gso::kTcpV4);
        EXPECT_EQ(r.at(3).meta.gso_size, 1448);
        EXPECT_EQ(r.at(4).meta.gso_type, netif::gso::kTcpV6);
        EXPECT_EQ(r.at(4).meta.gso_size, 1428);
        // The RX slot that carried each GSO extra held no data: its buffer went back on the
        // ring as it was.
        EXPECT_EQ(nf.counters()[Counter::rx_reposts], 2U);
        EXPECT_EQ(nf.counters()[Counter::rx_bad_gso], 0U);
        // Frames the protocol cannot carry are refused before anything is granted.
        std::vector<std::byte> tiny(13), huge(70000);
        TxFrame f;
        f.data = tiny;
        EXPECT_EQ(nf.send(0, f).error().code, Errc::invalid_argument);
        f.data = huge;
        EXPECT_EQ(nf.send(0, f).error().code, Errc::invalid_argument);
        f.data = std::span<const std::byte>(huge.data(), 100);
        f.gso_type = netif::gso::kTcpV4;
        f.gso_size = 0;
        EXPECT_EQ(nf.send(0, f).error().code, Errc::invalid_argument);
        EXPECT_EQ(nf.send(5, f).error().code, Errc::invalid_argument);
    });
    EXPECT_TRUE(guest.succeeded());
    EXPECT_TRUE(backend.quit());
}

TEST_F(Offloads, FullTxRingPushesBackAndEverythingArrives) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("full");
    NF_ASSERT_OK(plug(dom, 0));
    Child guest = run_guest(dir(), dom, NetfrontOptions{}, [&](Netfront& nf, hv::GuestHypervisor&) {
        Traffic t(nf);
        // 4-slot frames without polling: the 256-slot ring fills after 64 of them.
        std::vector<std::byte> frame(16000);
        PayloadHeader h;
        h.src = h.dst = nf.mac();
        std::size_t queued = 0;
        bool saw_busy = false;
        for (int i = 0; i < 100; ++i) {
            h.seq = 1000 + static_cast<std::uint64_t>(i);
            build_payload_frame(frame, h);
            TxFrame f;
            f.data = frame;
            Status st = nf.send(0, f);
            if (!st) {
                EXPECT_EQ(st.error().code, Errc::busy);
                saw_busy = true;
                break;
            }
            ++queued;
        }
        EXPECT_TRUE(saw_busy);
        EXPECT_EQ(queued, 64U);
        EXPECT_GT(nf.counters()[Counter::tx_ring_full], 0U);
        EXPECT_TRUE(t.wait_for([&] { return nf.counters()[Counter::rx_frames] == queued; }));
        EXPECT_EQ(nf.tx_in_flight(), 0U);
    });
    EXPECT_TRUE(guest.succeeded());
    EXPECT_TRUE(backend.quit());
}

} // namespace
} // namespace dpnb::netfront::test
