// A hostile backend: the reflector misbehaves once, and the netfront must count it, never
// crash, drop only what is wrong, and disable the vif (as Linux's `broken`) only for the
// violations that leave it no safe way on: an impossible response index or id, or a grant the
// backend keeps using after answering.
#include "traffic.hpp"

namespace dpnb::netfront::test {
namespace {

struct HostileCase {
    Mischief mischief;
    Counter counter;
    bool fatal;
    bool half;
    const char* name;
    bool static_grants = false; // reuse mode through the control ring
};

void PrintTo(const HostileCase& c, std::ostream* os) {
    *os << c.name;
}

class Hostile : public NetfrontFixture, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(Hostile, CountedNeverFatalToTheGuest) {
    const HostileCase c = GetParam();
    ReflectorOptions ro;
    ro.mischief = c.mischief;
    ro.mischief_at = 5;
    ro.static_grants = c.static_grants;
    ReflectorProcess backend(dir(), ro);
    ASSERT_TRUE(backend.ready());
    const hv::DomId dom = create_guest("hostile");
    NF_ASSERT_OK(plug(dom, 0));
    auto [test_end, guest_end] = Link::make();
    NetfrontOptions opts;
    opts.half_page_buffers = c.half;
    if (c.static_grants) opts.rx_mode = RxMode::reuse;
    Child guest = run_guest(dir(), dom, opts, [&](Netfront& nf, hv::GuestHypervisor&) {
        Traffic t(nf);
        const Counters& k = nf.counters();
        constexpr int kFrames = 20;
        int lost = 0;
        for (int i = 0; i < kFrames; ++i) {
            const std::uint64_t seq = t.next_seq();
            Status st = t.send(300 + static_cast<std::size_t>(i), 0);
            if (!st) {
                EXPECT_TRUE(c.fatal) << st.error().describe();
                EXPECT_EQ(st.error().code, Errc::closed);
                break;
            }
            // This frame comes back, or it is the one the backend spoilt.
            const std::uint64_t before = k[c.counter];
            ASSERT_TRUE(t.wait_for([&] {
                return (t.received().count(seq) && t.tx_done() == t.sent()) ||
                       k[c.counter] != before || nf.broken();
            })) << "frame "
                << seq;
            if (!t.received().count(seq)) ++lost;
        }
        EXPECT_GE(k[c.counter], 1U) << counter_table()[static_cast<std::size_t>(c.counter)].name;
        EXPECT_EQ(t.mismatch(), 0U); // nothing wrong ever reaches the stack
        EXPECT_EQ(t.bad(), 0U);
        EXPECT_EQ(nf.broken(), c.fatal);
        if (c.fatal) {
            EXPECT_FALSE(nf.last_error().empty());
            EXPECT_EQ(k[Counter::broken], 1U);
        } else {
            EXPECT_EQ(k[c.counter], 1U);
            EXPECT_LE(lost, 1);
            EXPECT_GE(t.received().size(), static_cast<std::size_t>(kFrames - 1));
        }
        if (c.mischief == Mischief::rx_keep_mapping) {
            EXPECT_GT(nf.grants_pending_release(), 0U);
            guest_end.send(1);
            ASSERT_TRUE(guest_end.recv().has_value()); // the backend let go
            EXPECT_TRUE(t.wait_for([&] { return nf.grants_pending_release() == 0; }));
        }
        NF_EXPECT_OK(nf.close(std::chrono::milliseconds(kTimeoutMs)));
    });
    if (c.mischief == Mischief::rx_keep_mapping) {
        ASSERT_TRUE(test_end.recv().has_value());
        ASSERT_TRUE(backend.command(ReflectorProcess::kRelease));
        test_end.send(1);
    }
    EXPECT_TRUE(guest.succeeded());
    EXPECT_TRUE(backend.quit());
}

INSTANTIATE_TEST_SUITE_P(
    Mischiefs, Hostile,
    ::testing::Values(
        HostileCase{Mischief::rx_offset_overflow, Counter::rx_bad_offset, false, false,
                    "rx_offset_overflow"},
        HostileCase{Mischief::rx_offset_overflow, Counter::rx_bad_offset, false, true,
                    "rx_offset_into_other_half"},
        HostileCase{Mischief::rx_bad_id, Counter::rx_bad_id, false, false, "rx_bad_id"},
        HostileCase{Mischief::rx_error_status, Counter::rx_error_status, false, false,
                    "rx_error_status"},
        HostileCase{Mischief::rx_bad_extra, Counter::rx_bad_extra, false, false, "rx_bad_extra"},
        HostileCase{Mischief::rx_incomplete, Counter::rx_incomplete, false, false, "rx_incomplete"},
        HostileCase{Mischief::tx_bad_status, Counter::tx_frames_bad_status, false, false,
                    "tx_bad_status"},
        HostileCase{Mischief::rx_prod_overflow, Counter::ring_overflow, true, false,
                    "rx_prod_overflow"},
        HostileCase{Mischief::tx_bad_id, Counter::tx_bad_response, true, false, "tx_bad_id"},
        HostileCase{Mischief::rx_keep_mapping, Counter::grant_still_in_use, true, false,
                    "rx_keep_mapping"},
        // Static grants end for the connection; frames go on, by grant copy.
        HostileCase{Mischief::ctrl_bad_id, Counter::ctrl_errors, false, false, "ctrl_bad_id",
                    true}),
    [](const auto& tp) { return std::string(tp.param.name); });

} // namespace
} // namespace dpnb::netfront::test
