// Unit tests without processes: the RX buffer pool over a scripted GuestHypervisor (hits,
// misses, half pages, the hold FIFO, shrinking, refused removals, failed registrations,
// grants the backend still holds), the verifiable payload, and the counter table.
#include <cstddef>
#include <cstdint>

extern "C" { // Xen's headers need the fixed-width types first
#include <xen/grant_table.h>
#include <xen/io/netif.h>
}

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>

#include "dpnb/netfront/ctrl_ring.hpp"
#include "dpnb/netfront/payload.hpp"
#include "dpnb/netfront/rx_pool.hpp"

namespace dpnb::netfront::test {
namespace {

class ScriptedGuest final : public hv::GuestHypervisor {
public:
    ~ScriptedGuest() override {
        for (auto& [p, n] : pages_)
            std::free(p);
    }
    std::string_view kind() const override { return "scripted"; }
    hv::DomId self() const override { return 7; }
    Result<hv::GuestPages> alloc_pages(std::uint32_t count) override {
        auto* p = static_cast<std::byte*>(std::aligned_alloc(4096, count * 4096UL));
        pages_[p] = count;
        return hv::GuestPages{p, count};
    }
    Status free_pages(hv::GuestPages pages) override {
        auto it = pages_.find(pages.base);
        if (it == pages_.end()) return make_error(Errc::invalid_argument, "not ours");
        std::free(it->first);
        pages_.erase(it);
        return ok();
    }
    Result<hv::GrantRef> grant_access(hv::DomId, const std::byte*, bool) override {
        granted_.insert(next_);
        return next_++;
    }
    Status end_access(hv::GrantRef ref) override {
        if (in_use_.count(ref) || registered_.count(ref)) return make_error(Errc::busy, "in use");
        if (!granted_.erase(ref)) return make_error(Errc::invalid_argument, "not granted");
        return ok();
    }
    Status iott_add(hv::DomId, hv::GrantRef ref) override {
        if (refuse_add) return make_error(Errc::unsupported, "no table");
        registered_.insert(ref);
        return ok();
    }
    Status iott_remove(hv::DomId, hv::GrantRef ref) override {
        if (!registered_.count(ref)) return make_error(Errc::not_found, "not registered");
        if (in_flight.count(ref)) return make_error(Errc::busy, "in flight");
        registered_.erase(ref);
        return ok();
    }
    Result<std::unique_ptr<hv::EventChannels>> open_event_channels() override {
        return make_error(Errc::unsupported, "scripted");
    }
    Result<std::unique_ptr<hv::Xenstore>> open_xenstore() override {
        return make_error(Errc::unsupported, "scripted");
    }

    std::size_t pages() const { return pages_.size(); }
    std::size_t registered() const { return registered_.size(); }
    std::size_t granted() const { return granted_.size(); }
    void hold_grant(hv::GrantRef r) { in_use_.insert(r); }
    void drop_grant(hv::GrantRef r) { in_use_.erase(r); }

    bool refuse_add = false;
    std::set<hv::GrantRef> in_flight; // the backend counts these in flight

private:
    std::map<std::byte*, std::uint32_t> pages_;
    std::set<hv::GrantRef> granted_, registered_, in_use_;
    hv::GrantRef next_ = 8;
};

// A pool in reuse mode that registers through the (scripted) translation table.
struct ReusePool {
    ReusePool(ScriptedGuest& g, Counters& k, const RxPoolConfig& c)
        : registrar(g, 0), pool(g, c, k) {
        pool.set_registrar(&registrar);
    }
    IottRegistrar registrar;
    RxBufferPool pool;
};

RxPoolConfig reuse_config(std::uint16_t size = 4096, std::uint32_t target = 0,
                          std::uint32_t hold = 0) {
    RxPoolConfig c;
    c.reuse = true;
    c.buffer_size = size;
    c.target_pages = target;
    c.hold_depth = hold;
    return c;
}

TEST(RxPool, FullPagesMissThenHit) {
    ScriptedGuest g;
    Counters k;
    ReusePool rp(g, k, reuse_config());
    RxBufferPool& pool = rp.pool;
    std::vector<BufferId> ids;
    for (int i = 0; i < 3; ++i) {
        auto id = pool.take();
        ASSERT_TRUE(id.has_value());
        ids.push_back(*id);
        EXPECT_NE(pool.page_gref(*id), hv::kGrantRefInvalid);
        EXPECT_TRUE(pool.registered(*id));
    }
    EXPECT_EQ(k[Counter::reuse_misses], 3U);
    EXPECT_EQ(k[Counter::reuse_hits], 0U);
    EXPECT_EQ(g.registered(), 3U);
    for (BufferId id : ids)
        pool.give_back(id);
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(pool.take().has_value());
    EXPECT_EQ(k[Counter::reuse_hits], 3U);
    EXPECT_EQ(k[Counter::rx_posts], 6U);
    EXPECT_EQ(g.pages(), 3U);
}

TEST(RxPool, HalfPagesShareAPageAndItsGrant) {
    ScriptedGuest g;
    Counters k;
    ReusePool rp(g, k, reuse_config(2048));
    RxBufferPool& pool = rp.pool;
    auto a = pool.take(), b = pool.take();
    ASSERT_TRUE(a && b);
    EXPECT_EQ(pool.buffer(*a).page, pool.buffer(*b).page);
    EXPECT_EQ(pool.buffer(*a).offset, 0);
    EXPECT_EQ(pool.buffer(*b).offset, 2048);
    EXPECT_EQ(pool.buffer(*a).size, 2048);
    EXPECT_EQ(pool.page_gref(*a), pool.page_gref(*b));
    EXPECT_EQ(k[Counter::reuse_misses], 1U); // one page joined ...
    EXPECT_EQ(k[Counter::reuse_hits], 1U);   // ... and served two posts
    EXPECT_EQ(g.pages(), 1U);
}

TEST(RxPool, HoldKeepsTheNewestFrames) {
    ScriptedGuest g;
    Counters k;
    ReusePool rp(g, k, reuse_config(4096, 0, 2));
    RxBufferPool& pool = rp.pool;
    std::vector<BufferId> ids;
    for (int i = 0; i < 3; ++i)
        ids.push_back(*pool.take());
    pool.hold(std::span(&ids[0], 1));
    pool.hold(std::span(&ids[1], 1));
    EXPECT_EQ(pool.stats().buffers_out, 3U);
    pool.hold(std::span(&ids[2], 1)); // the oldest comes back
    EXPECT_EQ(pool.stats().buffers_out, 2U);
    EXPECT_EQ(pool.stats().held_frames, 2U);
    EXPECT_FALSE(pool.buffer(ids[0]).out);
    pool.drop_held();
    EXPECT_EQ(pool.stats().buffers_out, 0U);
    pool.give_back(ids[0]); // twice is ignored
    EXPECT_EQ(pool.stats().buffers_free, 3U);
}

TEST(RxPool, ShrinksOnItsOwnOnlyByIdlePages) {
    ScriptedGuest g;
    Counters k;
    ReusePool rp(g, k, reuse_config(4096, 2));
    RxBufferPool& pool = rp.pool;
    std::vector<BufferId> ids;
    for (int i = 0; i < 4; ++i)
        ids.push_back(*pool.take());
    pool.maintain();
    EXPECT_EQ(pool.stats().active_pages, 4U); // every page in use
    pool.give_back(ids[0]);
    pool.give_back(ids[1]);
    pool.maintain();
    EXPECT_EQ(pool.stats().active_pages, 2U);
    EXPECT_EQ(k[Counter::pool_pages_removed], 2U);
    EXPECT_EQ(g.pages(), 2U);
    EXPECT_EQ(g.registered(), 2U);
    EXPECT_EQ(g.granted(), 2U);
}

TEST(RxPool, LoweringTheTargetRetiresPagesRemovalRefusedWhileInFlight) {
    ScriptedGuest g;
    Counters k;
    ReusePool rp(g, k, reuse_config(4096, 4));
    RxBufferPool& pool = rp.pool;
    std::vector<BufferId> ids;
    for (int i = 0; i < 4; ++i)
        ids.push_back(*pool.take());
    // The backend has two of the posted buffers in flight.
    g.in_flight.insert(pool.page_gref(ids[0]));
    g.in_flight.insert(pool.page_gref(ids[1]));
    pool.set_target_pages(0);
    PoolStats s = pool.stats();
    EXPECT_EQ(s.active_pages, 0U);
    EXPECT_EQ(s.retiring_pages, 4U);
    EXPECT_EQ(k[Counter::pool_removals_refused], 2U);
    EXPECT_EQ(g.registered(), 2U); // the two idle entries are gone at once
    // Buffers of retiring pages are not handed out again.
    for (BufferId id : ids)
        pool.give_back(id);
    EXPECT_EQ(k[Counter::pool_pages_removed], 2U);
    EXPECT_EQ(pool.stats().buffers_free, 0U);
    pool.maintain(); // still in flight: refused again
    EXPECT_EQ(k[Counter::pool_removals_refused], 4U);
    EXPECT_EQ(pool.stats().retiring_pages, 2U);
    g.in_flight.clear();
    pool.maintain();
    EXPECT_EQ(pool.stats().pages, 0U);
    EXPECT_EQ(k[Counter::pool_pages_removed], 4U);
    EXPECT_EQ(g.pages(), 0U);
    EXPECT_EQ(g.granted(), 0U);
    // A take now is a miss again.
    ASSERT_TRUE(pool.take().has_value());
    EXPECT_EQ(k[Counter::reuse_misses], 5U);
}

TEST(RxPool, RefusedRegistrationServesThePageByGrantCopy) {
    ScriptedGuest g;
    g.refuse_add = true;
    Counters k;
    ReusePool rp(g, k, reuse_config());
    RxBufferPool& pool = rp.pool;
    auto id = pool.take();
    ASSERT_TRUE(id.has_value());
    EXPECT_NE(pool.page_gref(*id), hv::kGrantRefInvalid); // posted with the page's grant
    EXPECT_FALSE(pool.registered(*id));
    EXPECT_EQ(k[Counter::pool_register_failures], 1U);
    EXPECT_EQ(k[Counter::reuse_misses], 1U);
    pool.give_back(*id);
    ASSERT_TRUE(pool.take().has_value());
    EXPECT_EQ(k[Counter::unregistered_posts], 1U); // not a hit: the backend copies
    EXPECT_EQ(k[Counter::reuse_hits], 0U);
    EXPECT_EQ(g.granted(), 1U);
    EXPECT_EQ(g.registered(), 0U);
}

// A registrar whose answers come later (the control ring).
class LateRegistrar final : public PageRegistrar {
public:
    Outcome add(hv::GrantRef ref) override {
        asked.push_back({ref, true, Outcome::pending});
        return Outcome::pending;
    }
    Outcome remove(hv::GrantRef ref) override {
        asked.push_back({ref, false, Outcome::pending});
        return Outcome::pending;
    }
    void collect(std::vector<Completion>& out) override {
        out.insert(out.end(), answers.begin(), answers.end());
        answers.clear();
    }
    std::vector<Completion> asked, answers;
};

TEST(RxPool, LateRegistrationsAndRefusedRemovalsAreFollowedUp) {
    using Outcome = PageRegistrar::Outcome;
    ScriptedGuest g;
    Counters k;
    LateRegistrar late;
    RxBufferPool pool(g, reuse_config(4096, 4), k);
    pool.set_registrar(&late);
    auto a = pool.take(), b = pool.take();
    ASSERT_TRUE(a && b);
    ASSERT_EQ(late.asked.size(), 2U);
    EXPECT_FALSE(pool.registered(*a)); // asked, not answered: served by grant copy meanwhile
    late.answers = {{pool.page_gref(*a), true, Outcome::done},
                    {pool.page_gref(*b), true, Outcome::failed}};
    pool.maintain();
    EXPECT_TRUE(pool.registered(*a));
    EXPECT_FALSE(pool.registered(*b));
    EXPECT_EQ(k[Counter::pool_register_failures], 1U);
    pool.give_back(*a);
    pool.give_back(*b);
    pool.set_target_pages(0); // both pages retire; only `a` needs a removal
    ASSERT_EQ(late.asked.size(), 3U);
    EXPECT_FALSE(late.asked[2].add);
    EXPECT_EQ(pool.stats().retiring_pages, 1U); // `b` went at once
    late.answers = {{late.asked[2].ref, false, Outcome::busy}};
    pool.maintain(); // refused (in flight): asked again
    EXPECT_EQ(k[Counter::pool_removals_refused], 1U);
    ASSERT_EQ(late.asked.size(), 4U);
    late.answers = {{late.asked[3].ref, false, Outcome::done}};
    pool.maintain();
    EXPECT_EQ(pool.stats().pages, 0U);
    EXPECT_EQ(g.pages(), 0U);
    EXPECT_EQ(g.granted(), 0U);
}

TEST(RxPool, PageWhoseGrantIsStillHeldIsFreedLater) {
    ScriptedGuest g;
    Counters k;
    ReusePool rp(g, k, reuse_config());
    RxBufferPool& pool = rp.pool;
    auto id = pool.take();
    ASSERT_TRUE(id.has_value());
    const hv::GrantRef ref = pool.page_gref(*id);
    pool.give_back(*id);
    g.hold_grant(ref); // e.g. the backend still maps the page
    pool.release_all();
    EXPECT_EQ(pool.stats().retiring_pages, 1U);
    EXPECT_EQ(g.pages(), 1U);
    EXPECT_GE(k[Counter::grants_deferred], 1U);
    g.drop_grant(ref);
    pool.maintain();
    EXPECT_EQ(pool.stats().pages, 0U);
    EXPECT_EQ(g.pages(), 0U);
}

TEST(RxPool, CopyModeNeverRegisters) {
    ScriptedGuest g;
    Counters k;
    RxPoolConfig c;
    c.reuse = false;
    RxBufferPool pool(g, c, k);
    auto id = pool.take();
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ(pool.page_gref(*id), hv::kGrantRefInvalid); // the queue grants per post
    EXPECT_EQ(g.registered(), 0U);
    EXPECT_EQ(k[Counter::reuse_misses] + k[Counter::reuse_hits], 0U);
    EXPECT_EQ(k[Counter::rx_posts], 1U);
}

TEST(Payload, RoundTripAndEveryCorruptionIsCaught) {
    for (std::size_t size :
         {kPayloadMinFrame, std::size_t{64}, std::size_t{1514}, std::size_t{9000}}) {
        std::vector<std::byte> f(size);
        PayloadHeader h;
        h.dst.bytes = {2, 0, 0, 0, 0, 1};
        h.src.bytes = {2, 0, 0, 0, 0, 2};
        h.seq = 123456789;
        h.stream = 42;
        ASSERT_TRUE(build_payload_frame(f, h));
        PayloadInfo info = check_payload_frame(f);
        ASSERT_EQ(info.result, PayloadCheck::ok) << size;
        EXPECT_EQ(info.header.seq, h.seq);
        EXPECT_EQ(info.header.stream, 42U);
        EXPECT_EQ(info.header.dst, h.dst);
        // Flip each byte after the MACs in turn: every flip is detected.
        for (std::size_t i = 12; i < size; i += (size > 200 ? 97 : 1)) {
            f[i] ^= std::byte{0x40};
            EXPECT_NE(check_payload_frame(f).result, PayloadCheck::ok) << "byte " << i;
            f[i] ^= std::byte{0x40};
        }
        // A truncated frame says its length was different.
        EXPECT_EQ(check_payload_frame(std::span(f).first(size - 1)).result,
                  size - 1 < kPayloadMinFrame ? PayloadCheck::too_short : PayloadCheck::bad_length);
        swap_macs(f);
        info = check_payload_frame(f);
        EXPECT_EQ(info.result, PayloadCheck::ok);
        EXPECT_EQ(info.header.src, h.dst);
    }
    std::vector<std::byte> tiny(kPayloadMinFrame - 1);
    EXPECT_FALSE(build_payload_frame(tiny, PayloadHeader{}));
}

TEST(CtrlWire, LayoutIsXensNetifH) {
    EXPECT_EQ(sizeof(ctrl::Request), sizeof(xen_netif_ctrl_request));
    EXPECT_EQ(sizeof(ctrl::Response), sizeof(xen_netif_ctrl_response));
    EXPECT_EQ(sizeof(ctrl::Gref), sizeof(xen_netif_gref));
    EXPECT_EQ(offsetof(ctrl::Request, data), offsetof(xen_netif_ctrl_request, data));
    EXPECT_EQ(offsetof(ctrl::Response, status), offsetof(xen_netif_ctrl_response, status));
    EXPECT_EQ(offsetof(ctrl::Response, data), offsetof(xen_netif_ctrl_response, data));
    EXPECT_EQ(offsetof(ctrl::Gref, status), offsetof(xen_netif_gref, status));
    EXPECT_EQ(ctrl::kTypeGetGrefMappingSize, XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE);
    EXPECT_EQ(ctrl::kTypeAddGrefMapping, XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING);
    EXPECT_EQ(ctrl::kTypeDelGrefMapping, XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING);
    EXPECT_EQ(ctrl::kStatusInvalidParameter, XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER);
    EXPECT_EQ(ctrl::kGrefReadonly, XEN_NETIF_CTRLF_GREF_readonly);
    EXPECT_EQ(ctrl::FrontRing::kSize,
              static_cast<std::uint32_t>(__CONST_RING_SIZE(xen_netif_ctrl, 4096)));
}

TEST(Counters, TableNamesEveryCounterOnce) {
    std::set<std::string_view> names;
    for (std::size_t i = 0; i < counter_table().size(); ++i) {
        const CounterInfo& ci = counter_table()[i];
        EXPECT_EQ(static_cast<std::size_t>(ci.counter), i);
        EXPECT_FALSE(ci.help.empty());
        EXPECT_TRUE(names.insert(ci.name).second) << ci.name;
    }
    EXPECT_EQ(names.size(), kCounterCount);
}

} // namespace
} // namespace dpnb::netfront::test
