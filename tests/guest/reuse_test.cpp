// Grant reuse (reuse mode): pages registered in the translation table when they join the
// pool, hits and misses, the pool shrinking with removals refused while the backend has a
// buffer in flight (and retried until they succeed), nothing left registered after a close,
// and half-page buffers reusing more than full pages for the same workload.
#include "traffic.hpp"

namespace dpnb::netfront::test {
namespace {

class Reuse : public NetfrontFixture {};

// One guest running `frames` frames of `size` bytes through the reflector with the stack
// holding `hold` frames; returns hits/posts in millionths over the link.
struct Workload {
    bool half;
    std::uint32_t hold;
    std::uint32_t frames;
    std::size_t size;
};

Child run_workload(const std::string& dir, hv::DomId dom, const Workload& w, Link& out) {
    NetfrontOptions opts;
    opts.rx_mode = RxMode::reuse;
    opts.half_page_buffers = w.half;
    opts.hold_depth = w.hold;
    return run_guest(dir, dom, opts, [&out, w](Netfront& nf, hv::GuestHypervisor&) {
        ASSERT_EQ(nf.rx_buffer_size(), w.half ? 2048 : 4096);
        Traffic t(nf);
        for (std::uint32_t i = 0; i < w.frames; ++i) {
            NF_ASSERT_OK(t.send(w.size, 0));
            if (i % 64 == 63) {
                ASSERT_TRUE(t.wait_all());
            }
        }
        ASSERT_TRUE(t.wait_all());
        EXPECT_EQ(t.mismatch(), 0U);
        const Counters& k = nf.counters();
        // Every post is a hit or a miss; a miss is a page joining the pool.
        EXPECT_EQ(k[Counter::reuse_hits] + k[Counter::reuse_misses], k[Counter::rx_posts]);
        EXPECT_EQ(k[Counter::reuse_misses], k[Counter::pool_pages_added]);
        EXPECT_EQ(k[Counter::unregistered_posts], 0U);
        // The ring (256 buffers) and the held frames need that many buffers at least.
        const std::uint32_t per_page = w.half ? 2 : 1;
        EXPECT_GE(k[Counter::reuse_misses] * per_page, 256U + w.hold);
        const PoolStats ps = nf.pool_stats();
        EXPECT_EQ(ps.registered_pages, ps.active_pages);
        out.send(static_cast<std::uint64_t>(nf.reuse_rate() * 1e6));
        out.send(k[Counter::reuse_misses]);
        out.send(ps.registered_pages);
        (void)out.recv(); // keep the pool while the test looks at the hypervisor
        NF_EXPECT_OK(nf.close(std::chrono::milliseconds(kTimeoutMs)));
    });
}

TEST_F(Reuse, HalfPagesReuseMoreThanFullPages) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    std::uint64_t rate[2] = {0, 0};
    for (int half = 0; half < 2; ++half) {
        const hv::DomId dom = create_guest(half ? "reuse-half" : "reuse-full");
        NF_ASSERT_OK(plug(dom, 0));
        auto [test_end, guest_end] = Link::make();
        Child guest = run_workload(dir(), dom, Workload{half == 1, 64, 1200, 1000}, guest_end);
        auto r = test_end.recv();
        auto misses = test_end.recv();
        auto registered = test_end.recv();
        ASSERT_TRUE(r && misses && registered);
        rate[half] = *r;
        // The hypervisor holds exactly the pages the pool registered.
        auto stats = toolstack_->stats();
        NF_ASSERT_OK(stats);
        EXPECT_EQ(stats->translation_entries, *registered);
        test_end.send(1);
        EXPECT_TRUE(guest.succeeded());
        auto after = toolstack_->stats();
        NF_ASSERT_OK(after);
        EXPECT_EQ(after->translation_entries, 0U) << "pages left registered after close";
        std::printf("reuse rate, %s pages: %.4f (%llu misses)\n", half ? "half" : "full",
                    static_cast<double>(*r) / 1e6, static_cast<unsigned long long>(*misses));
    }
    EXPECT_GT(rate[0], 500000U);
    EXPECT_GT(rate[1], rate[0]) << "half pages should reuse more than full pages";
    auto s = backend.stats();
    ASSERT_TRUE(s.has_value());
    EXPECT_GT(s->zero_copy, 0U);
    EXPECT_TRUE(backend.quit());
}

constexpr std::uint32_t kRxRingSlots = 256;

class Shrink : public NetfrontFixture, public ::testing::WithParamInterface<bool> {};

TEST_P(Shrink, RefusedWhileBuffersAreInFlightThenCompletes) {
    const bool static_grants = GetParam();
    ReflectorOptions ro;
    ro.static_grants = static_grants;
    ReflectorProcess backend(dir(), ro);
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("shrink");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    NetfrontOptions opts;
    opts.rx_mode = RxMode::reuse;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        ASSERT_EQ(nf.using_static_grants(), static_grants);
        Traffic t(nf);
        // More frames than the ring holds fill the pool; then every page is registered.
        for (int i = 0; i < 300; ++i)
            NF_ASSERT_OK(t.send(600, 0));
        ASSERT_TRUE(t.wait_all());
        ASSERT_TRUE(t.wait_for([&] {
            const PoolStats ps = nf.pool_stats();
            return ps.registered_pages == ps.pages;
        }));
        // The backend looks a buffer up in its table once, when it takes the request, and
        // static grants are registered asynchronously: a buffer taken before its page's
        // ADD_GREF_MAPPING was served stays outside the table until a frame fills it. One
        // more turn of the ring replaces every posted buffer by one posted after this guest
        // saw its registration answered, so the backend takes each through its table.
        for (std::uint32_t i = 0; i < kRxRingSlots; ++i)
            NF_ASSERT_OK(t.send(600, 0));
        ASSERT_TRUE(t.wait_all());
        guest_end.send(1);
        ASSERT_TRUE(guest_end.recv().has_value()); // the backend holds every posted buffer

        const std::uint64_t refused_before = nf.counters()[Counter::pool_removals_refused];
        const std::uint32_t pages_before = nf.pool_stats().active_pages;
        ASSERT_GE(pages_before, kRxRingSlots);
        nf.set_pool_target_pages(8);
        const PoolStats ps = nf.pool_stats();
        EXPECT_EQ(ps.active_pages, 8U);
        EXPECT_GT(ps.retiring_pages, 0U);
        // The backend counts the posted buffers in flight: the removal of their registrations
        // is refused (at once by the hypervisor, or in the control ring's answer).
        EXPECT_TRUE(t.wait_for(
            [&] { return nf.counters()[Counter::pool_removals_refused] > refused_before; }));

        // Traffic brings the buffers back (the backend releases each before answering); the
        // removals are retried and succeed, and the retiring pages are freed.
        for (int i = 0; i < 400; ++i)
            NF_ASSERT_OK(t.send(600, 0));
        ASSERT_TRUE(t.wait_all());
        EXPECT_EQ(t.mismatch(), 0U);
        // Every refused removal was retried until it went through, and every registration
        // asked for since has been answered.
        EXPECT_TRUE(t.wait_for([&] {
            const PoolStats now = nf.pool_stats();
            return now.retiring_pages == 0 && now.registered_pages == now.pages;
        }));
        EXPECT_GE(nf.counters()[Counter::pool_pages_removed], pages_before - 8);
        guest_end.send(nf.pool_stats().registered_pages);
        (void)guest_end.recv();
        NF_EXPECT_OK(nf.close(std::chrono::milliseconds(kTimeoutMs)));
    });
    ASSERT_TRUE(test_end.recv().has_value());
    // Wait until the reflector has taken (acquired) the whole ring.
    bool all_in_flight = false;
    for (int i = 0; i < 600 && !all_in_flight; ++i) {
        auto s = backend.stats();
        ASSERT_TRUE(s.has_value());
        all_in_flight = s->in_flight >= kRxRingSlots;
        if (!all_in_flight) ::usleep(100'000); // polling a counter, not synchronising on time
    }
    ASSERT_TRUE(all_in_flight) << "the reflector did not take the posted buffers";
    test_end.send(1);
    auto registered = test_end.recv();
    ASSERT_TRUE(registered.has_value());
    auto stats = toolstack_->stats();
    NF_ASSERT_OK(stats);
    auto s = backend.stats();
    ASSERT_TRUE(s.has_value());
    // The pages the pool counts as registered are exactly the entries the backend can use.
    EXPECT_EQ(static_grants ? s->static_entries : stats->translation_entries, *registered);
    EXPECT_EQ(static_grants ? stats->translation_entries : s->static_entries, 0U);
    test_end.send(1);
    EXPECT_TRUE(guest.succeeded());
    auto after = toolstack_->stats();
    NF_ASSERT_OK(after);
    EXPECT_EQ(after->translation_entries, 0U);
    EXPECT_TRUE(backend.quit());
}

INSTANTIATE_TEST_SUITE_P(Registration, Shrink, ::testing::Values(false, true),
                         [](const auto& tp) { return tp.param ? "static_grants" : "iott"; });

TEST_F(Reuse, CopyModeGrantsPerPostAndRegistersNothing) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("copy");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    Child guest = run_guest(dir(), dom, NetfrontOptions{}, [&](Netfront& nf, hv::GuestHypervisor&) {
        Traffic t(nf);
        for (int i = 0; i < 100; ++i)
            NF_ASSERT_OK(t.send(1500, 0));
        ASSERT_TRUE(t.wait_all());
        const Counters& k = nf.counters();
        EXPECT_EQ(k[Counter::reuse_hits], 0U);
        EXPECT_EQ(k[Counter::reuse_misses], 0U);
        EXPECT_EQ(nf.pool_stats().registered_pages, 0U);
        EXPECT_EQ(nf.reuse_rate(), 0.0);
        guest_end.send(1);
        (void)guest_end.recv();
    });
    ASSERT_TRUE(test_end.recv().has_value());
    auto stats = toolstack_->stats();
    NF_ASSERT_OK(stats);
    EXPECT_EQ(stats->translation_entries, 0U);
    test_end.send(1);
    EXPECT_TRUE(guest.succeeded());
    auto s = backend.stats();
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->zero_copy, 0U);
    EXPECT_GE(s->grant_copied, 100U);
    EXPECT_TRUE(backend.quit());
}

} // namespace
} // namespace dpnb::netfront::test
