// The persistent-grant table (reuse mode's translation table on stock Xen) with a fake
// mapper in place of gntdev: add/remove/lookup, all-or-nothing adds, busy refusal, limits,
// close, and the race between a data-path lcore and the control plane.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "dpnb/hv/persistent_grant_table.hpp"

namespace dpnb::hv {
namespace {

using S = StaticGrantStatus;
constexpr DomId kGuest = 7;
constexpr std::uint32_t kRefs = 64; // refs the fake can map: 0 .. kRefs-1

// One page per grant ref, always at the same address, with a flag that says whether it is
// mapped right now: a page handed out while its flag is false is a use after unmap.
class FakeMapper final : public GrantTable {
public:
    struct alignas(4096) Page {
        std::byte bytes[4096];
    };

    std::set<GrantRef> bad;      // map fails (GNTST_bad_gntref)
    std::set<GrantRef> readonly; // granted read-only: a writable map fails
    bool fail_unmap = false;
    std::vector<GrantMapRequest> requests; // every map request seen

    FakeMapper() : pages_(new Page[kRefs]) {}

    bool is_mapped(GrantRef ref) const { return mapped_[ref].load(std::memory_order_seq_cst); }
    std::byte* page_of(GrantRef ref) const { return pages_[ref].bytes; }

    GrantMapping map(std::span<const GrantMapRequest> reqs,
                     std::span<std::int16_t> status) override {
        EXPECT_EQ(reqs.size(), 1U) << "persistent grants are mapped one by one";
        const GrantMapRequest& r = reqs[0];
        requests.push_back(r);
        EXPECT_EQ(r.dom, kGuest);
        if (r.ref >= kRefs || bad.contains(r.ref)) {
            status[0] = netif::gntst::kBadGntref;
            return {};
        }
        if (r.writable && readonly.contains(r.ref)) {
            status[0] = netif::gntst::kPermissionDenied;
            return {};
        }
        mapped_[r.ref].store(true, std::memory_order_seq_cst);
        count_.fetch_add(1);
        status[0] = netif::gntst::kOkay;
        return GrantMapping{pages_[r.ref].bytes, 1, r.ref};
    }

    Status unmap(GrantMapping& m) override {
        if (fail_unmap) return make_error(Errc::io, "fake unmap failure");
        EXPECT_EQ(m.count, 1U);
        EXPECT_EQ(m.base, pages_[m.handle].bytes);
        EXPECT_TRUE(mapped_[m.handle].load()) << "double unmap of ref " << m.handle;
        mapped_[m.handle].store(false, std::memory_order_seq_cst);
        count_.fetch_sub(1);
        m = {};
        return ok();
    }

    Status copy(std::span<GrantCopySegment>) override {
        return make_error(Errc::unsupported, "fake");
    }
    std::uint64_t mapped_pages() const override { return count_.load(); }

private:
    std::unique_ptr<Page[]> pages_;
    std::array<std::atomic<bool>, kRefs> mapped_{};
    std::atomic<std::uint64_t> count_{0};
};

struct Fixture {
    FakeMapper* mapper = nullptr; // owned by the table
    std::unique_ptr<PersistentGrantTable> table;

    explicit Fixture(PersistentGrantLimits limits = {16, kRefs, std::chrono::milliseconds(5000)}) {
        auto m = std::make_unique<FakeMapper>();
        mapper = m.get();
        auto t = PersistentGrantTable::create(std::move(m), kGuest, limits);
        EXPECT_TRUE(t) << t.error().describe();
        table = std::move(*t);
    }

    Status add(std::vector<StaticGrant> grants, std::vector<S>* out = nullptr) {
        std::vector<S> st(grants.size(), S::closed);
        Status r = table->add(grants, st);
        if (out != nullptr) *out = st;
        return r;
    }
    Status add_rw(std::initializer_list<GrantRef> refs, std::vector<S>* out = nullptr) {
        std::vector<StaticGrant> g;
        for (GrantRef r : refs)
            g.push_back({r, false});
        return add(g, out);
    }
    std::vector<S> remove(std::vector<GrantRef> refs, std::uint32_t* removed = nullptr) {
        std::vector<S> st(refs.size(), S::closed);
        auto r = table->remove(refs, st);
        EXPECT_TRUE(r);
        if (removed != nullptr) *removed = r ? *r : 0;
        return st;
    }
    std::uint32_t flags(GrantRef ref) const {
        const TranslationTableView v = table->view();
        return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(v.entries[ref].flags))
            .load();
    }
    std::uint32_t gen(GrantRef ref) const { return table->view().entries[ref].gen; }
};

TEST(PersistentGrants, AddedGrantsAreFoundThroughTheView) {
    Fixture f;
    ASSERT_TRUE(f.add({{3, false}, {9, true}}));
    EXPECT_EQ(f.table->valid_entries(), 2U);
    EXPECT_EQ(f.mapper->mapped_pages(), 2U);
    EXPECT_EQ(f.table->guest(), kGuest);
    EXPECT_EQ(f.table->persistent_grants(), f.table.get());
    EXPECT_FALSE(f.table->dma_counts().has_value()) << "no IOMMU: no IOMMU calls to count";

    ASSERT_EQ(f.mapper->requests.size(), 2U);
    EXPECT_TRUE(f.mapper->requests[0].writable);
    EXPECT_FALSE(f.mapper->requests[1].writable) << "a read-only static grant is mapped read-only";

    const TranslationTableView v = f.table->view();
    EXPECT_EQ(v.size, kRefs);
    EXPECT_EQ(v.dma_base, nullptr);
    std::byte* p = v.acquire(3, true);
    EXPECT_EQ(p, f.mapper->page_of(3));
    EXPECT_EQ(v.in_flight(3), 1U);
    v.release(3);

    EXPECT_EQ(v.acquire(9, true), nullptr) << "read-only entry is never writable";
    EXPECT_EQ(v.in_flight(9), 0U) << "a miss leaves no count behind";
    std::byte* ro = v.acquire(9, false);
    EXPECT_EQ(ro, f.mapper->page_of(9));
    v.release(9);

    EXPECT_EQ(v.acquire(4, false), nullptr) << "never registered";
    EXPECT_EQ(v.acquire(kRefs, false), nullptr) << "beyond the index";
}

TEST(PersistentGrants, RemoveUnmapsAndBumpsTheGeneration) {
    Fixture f;
    ASSERT_TRUE(f.add_rw({5}));
    const std::uint32_t g_added = f.gen(5);
    std::uint32_t removed = 0;
    EXPECT_EQ(f.remove({5}, &removed), std::vector<S>{S::ok});
    EXPECT_EQ(removed, 1U);
    EXPECT_FALSE(f.mapper->is_mapped(5));
    EXPECT_EQ(f.table->valid_entries(), 0U);
    EXPECT_EQ(f.table->view().acquire(5, false), nullptr);
    EXPECT_NE(f.gen(5), g_added);

    // The same ref may come back, mapped again, with a new generation.
    const std::uint32_t g_removed = f.gen(5);
    ASSERT_TRUE(f.add_rw({5}));
    EXPECT_NE(f.gen(5), g_removed);
    EXPECT_TRUE(f.mapper->is_mapped(5));
    EXPECT_NE(f.table->view().acquire(5, true), nullptr);
    f.table->view().release(5);
}

TEST(PersistentGrants, InFlightEntryIsRefusedAndStaysValid) {
    Fixture f;
    ASSERT_TRUE(f.add_rw({1, 2}));
    const TranslationTableView v = f.table->view();
    ASSERT_NE(v.acquire(1, true), nullptr);

    std::uint32_t removed = 0;
    EXPECT_EQ(f.remove({1, 2}, &removed), (std::vector<S>{S::busy, S::ok}));
    EXPECT_EQ(removed, 1U);
    EXPECT_TRUE(f.mapper->is_mapped(1));
    EXPECT_EQ(f.flags(1), IottEntry::kValid | IottEntry::kWritable) << "flags restored";
    EXPECT_EQ(f.table->valid_entries(), 1U);

    // Still usable by the data path while it is registered.
    ASSERT_NE(v.acquire(1, true), nullptr);
    v.release(1);
    v.release(1);
    EXPECT_EQ(f.remove({1}), std::vector<S>{S::ok});
    EXPECT_FALSE(f.mapper->is_mapped(1));
}

TEST(PersistentGrants, UnknownAndOutOfRangeRefsAreReportedPerEntry) {
    Fixture f;
    ASSERT_TRUE(f.add_rw({4}));
    std::uint32_t removed = 9;
    EXPECT_EQ(f.remove({8, kRefs + 100, 4, 4}, &removed),
              (std::vector<S>{S::not_found, S::out_of_range, S::ok, S::not_found}));
    EXPECT_EQ(removed, 1U);
    for (S s : {S::ok, S::busy, S::not_found, S::out_of_range}) {
        EXPECT_EQ(to_ctrl_status(s), s == S::ok ? 0 : 2) << to_string(s);
    }
}

TEST(PersistentGrants, AddIsAllOrNothing) {
    Fixture f;
    f.mapper->bad = {12};
    std::vector<S> st;
    Status r = f.add_rw({10, 11, 12, 13}, &st);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_EQ(st, (std::vector<S>{S::rolled_back, S::rolled_back, S::map_failed, S::rolled_back}));
    EXPECT_EQ(f.mapper->mapped_pages(), 0U) << "grants mapped before the failure are unmapped";
    EXPECT_EQ(f.table->valid_entries(), 0U);
    for (GrantRef ref : {10U, 11U, 12U, 13U})
        EXPECT_EQ(f.table->view().acquire(ref, false), nullptr);

    // A read-only grant registered as writable cannot be mapped either.
    f.mapper->readonly = {20};
    EXPECT_FALSE(f.add_rw({20}, &st));
    EXPECT_EQ(st, std::vector<S>{S::map_failed});
    EXPECT_TRUE(f.add({{20, true}}));
}

TEST(PersistentGrants, DuplicatesAreRefused) {
    Fixture f;
    ASSERT_TRUE(f.add_rw({5}));
    std::vector<S> st;
    EXPECT_FALSE(f.add_rw({6, 5}, &st));
    EXPECT_EQ(st, (std::vector<S>{S::rolled_back, S::duplicate}));
    EXPECT_FALSE(f.add_rw({6, 6}, &st));
    EXPECT_EQ(st, (std::vector<S>{S::rolled_back, S::duplicate}));
    EXPECT_EQ(f.table->valid_entries(), 1U);
    EXPECT_EQ(f.mapper->mapped_pages(), 1U);
    EXPECT_TRUE(f.mapper->requests.size() == 1U) << "nothing mapped for refused requests";
}

TEST(PersistentGrants, CapacityAndRangeLimits) {
    Fixture f(PersistentGrantLimits{4, 32, std::chrono::milliseconds(5000)});
    std::vector<S> st;
    ASSERT_TRUE(f.add_rw({0, 1, 2}));
    EXPECT_FALSE(f.add_rw({3, 4}, &st));
    EXPECT_EQ(st, (std::vector<S>{S::no_space, S::no_space}));
    EXPECT_EQ(f.table->valid_entries(), 3U);
    ASSERT_TRUE(f.add_rw({31}));
    EXPECT_FALSE(f.add_rw({32}, &st));
    EXPECT_EQ(st, std::vector<S>{S::out_of_range});
    EXPECT_EQ(f.table->view().size, 32U);

    EXPECT_EQ(f.remove({0}), std::vector<S>{S::ok});
    EXPECT_TRUE(f.add_rw({3})) << "room again after a removal";
}

TEST(PersistentGrants, CreateValidatesItsLimits) {
    auto make = [](PersistentGrantLimits l, DomId guest = kGuest) {
        return PersistentGrantTable::create(std::make_unique<FakeMapper>(), guest, l);
    };
    EXPECT_FALSE(make({16, 0}));
    EXPECT_FALSE(make({16, PersistentGrantLimits::kMaxRefLimit + 1}));
    EXPECT_FALSE(make({0, 64}));
    EXPECT_FALSE(make({65, 64}));
    EXPECT_FALSE(make({16, 64}, kDomIdSelf));
    EXPECT_FALSE(PersistentGrantTable::create(nullptr, kGuest, {}));

    // The largest index space costs address space only.
    auto big = make({16, PersistentGrantLimits::kMaxRefLimit});
    ASSERT_TRUE(big);
    const TranslationTableView v = (*big)->view();
    EXPECT_EQ(v.acquire(PersistentGrantLimits::kMaxRefLimit - 1, false), nullptr);
}

TEST(PersistentGrants, SizeMismatchIsRefusedWithoutSideEffects) {
    Fixture f;
    std::vector<StaticGrant> g{{1, false}};
    std::vector<S> none;
    EXPECT_FALSE(f.table->add(g, none));
    std::vector<GrantRef> refs{1};
    EXPECT_FALSE(f.table->remove(refs, none));
    EXPECT_EQ(f.mapper->mapped_pages(), 0U);
}

TEST(PersistentGrants, FailedUnmapLeavesTheEntryInvalid) {
    Fixture f;
    ASSERT_TRUE(f.add_rw({2}));
    f.mapper->fail_unmap = true;
    std::uint32_t removed = 9;
    EXPECT_EQ(f.remove({2}, &removed), std::vector<S>{S::unmap_failed});
    EXPECT_EQ(removed, 0U);
    EXPECT_EQ(f.table->valid_entries(), 0U);
    EXPECT_EQ(f.table->view().acquire(2, false), nullptr);
    EXPECT_EQ(f.remove({2}), std::vector<S>{S::not_found});
    f.mapper->fail_unmap = false;
    const PersistentGrantCloseReport r = f.table->close();
    EXPECT_EQ(r.unmapped, 0U);
}

// The IOMMU of a device behind vfio, checking at each call the order the header promises:
// a page is DMA-mapped after its grant map and before its entry is valid, and unmapped after
// its entry is invalid and not in flight, before its grant unmap.
class OrderCheckingIommu final : public DmaMapper {
public:
    explicit OrderCheckingIommu(Fixture& f) : f_(f) {}
    SimIommu sim;
    unsigned misordered = 0;

    Status map(std::uintptr_t va, std::size_t len) override {
        const GrantRef ref = ref_of(va);
        EXPECT_EQ(len, kPageSize);
        if (!f_.mapper->is_mapped(ref) || f_.flags(ref) != 0) ++misordered;
        return sim.map(va, len);
    }
    Status unmap(std::uintptr_t va, std::size_t len) override {
        const GrantRef ref = ref_of(va);
        if (!f_.mapper->is_mapped(ref) || f_.flags(ref) != 0 ||
            f_.table->view().in_flight(ref) != 0)
            ++misordered;
        return sim.unmap(va, len);
    }

private:
    GrantRef ref_of(std::uintptr_t va) const {
        return static_cast<GrantRef>(
            (va - reinterpret_cast<std::uintptr_t>(f_.mapper->page_of(0))) / kPageSize);
    }
    Fixture& f_;
};

TEST(PersistentGrants, BehindAnIommuEachEntryIsDmaMappedWhileValid) {
    Fixture f;
    OrderCheckingIommu io(f);
    f.table->set_dma_mapper(&io);
    ASSERT_TRUE(f.add_rw({1, 2, 3}));
    EXPECT_EQ(io.sim.map_calls(), 3U) << "one map per static grant";
    EXPECT_EQ(io.sim.ranges(), 3U);
    const TranslationTableView v = f.table->view();
    for (GrantRef r : {1U, 2U, 3U}) {
        std::byte* p = v.acquire(r, true);
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(io.sim.mapped(reinterpret_cast<std::uintptr_t>(p), kPageSize)) << r;
        v.release(r);
    }
    // No call on lookups: only add, remove and close reach the IOMMU.
    EXPECT_EQ(io.sim.map_calls(), 3U);

    // In flight: remove refuses and leaves both mappings in place.
    ASSERT_NE(v.acquire(2, true), nullptr);
    EXPECT_EQ(f.remove({1, 2}), (std::vector<S>{S::ok, S::busy}));
    EXPECT_FALSE(io.sim.mapped(reinterpret_cast<std::uintptr_t>(f.mapper->page_of(1)), 1));
    EXPECT_TRUE(io.sim.mapped(reinterpret_cast<std::uintptr_t>(f.mapper->page_of(2)), 1));
    v.release(2);

    const PersistentGrantCloseReport r = f.table->close();
    EXPECT_TRUE(r.clean());
    EXPECT_EQ(r.unmapped, 2U);
    EXPECT_EQ(io.sim.ranges(), 0U) << "nothing stays DMA-mapped";
    EXPECT_EQ(io.sim.unmap_calls(), 3U);
    EXPECT_EQ(io.sim.refused(), 0U);
    EXPECT_EQ(io.misordered, 0U);
    EXPECT_EQ(f.mapper->mapped_pages(), 0U);
    const auto c = f.table->dma_counts();
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->maps, 3U);
    EXPECT_EQ(c->unmaps, 3U);
    EXPECT_EQ(c->map_failures + c->unmap_failures, 0U);
}

// Passes calls on, and has the IOMMU refuse the `fail_at`-th map.
class FailNthMap final : public DmaMapper {
public:
    FailNthMap(OrderCheckingIommu& inner, unsigned fail_at) : inner_(inner), fail_at_(fail_at) {}
    Status map(std::uintptr_t va, std::size_t len) override {
        if (++n_ == fail_at_) inner_.sim.fail_next_maps(1);
        return inner_.map(va, len);
    }
    Status unmap(std::uintptr_t va, std::size_t len) override { return inner_.unmap(va, len); }

private:
    OrderCheckingIommu& inner_;
    unsigned fail_at_;
    unsigned n_ = 0;
};

TEST(PersistentGrants, ARefusedDmaMapRollsTheWholeAddBack) {
    Fixture f;
    OrderCheckingIommu io(f);
    FailNthMap third(io, 4); // ref 4's map, then the third page of the next request
    f.table->set_dma_mapper(&third);
    ASSERT_TRUE(f.add_rw({4}));
    std::vector<S> out;
    EXPECT_FALSE(f.add_rw({5, 6, 7, 8}, &out));
    EXPECT_EQ(out,
              (std::vector<S>{S::rolled_back, S::rolled_back, S::dma_map_failed, S::rolled_back}));
    EXPECT_EQ(to_ctrl_status(S::dma_map_failed), to_ctrl_status(S::map_failed));
    EXPECT_EQ(io.sim.ranges(), 1U) << "only ref 4's page";
    EXPECT_EQ(f.mapper->mapped_pages(), 1U) << "the request's grants are unmapped";
    EXPECT_EQ(f.table->valid_entries(), 1U);
    for (GrantRef r : {5U, 6U, 7U, 8U})
        EXPECT_EQ(f.table->view().acquire(r, false), nullptr) << r;
    ASSERT_TRUE(f.table->dma_counts().has_value());
    EXPECT_EQ(f.table->dma_counts()->map_failures, 1U);
    EXPECT_EQ(io.misordered, 0U);
    EXPECT_EQ(io.sim.unmap_calls(), 2U) << "the request's two DMA-mapped pages";
    EXPECT_TRUE(f.table->close().clean());
    EXPECT_EQ(io.sim.ranges(), 0U);
}

TEST(PersistentGrants, ARefusedDmaUnmapKeepsTheGrantMapped) {
    Fixture f;
    OrderCheckingIommu io(f);
    f.table->set_dma_mapper(&io);
    ASSERT_TRUE(f.add_rw({1, 2}));
    io.sim.fail_next_unmaps(1);
    EXPECT_EQ(f.remove({1}), std::vector<S>{S::unmap_failed});
    EXPECT_TRUE(f.mapper->is_mapped(1)) << "the device may still reach the page";
    EXPECT_EQ(f.table->view().acquire(1, false), nullptr) << "but the entry is gone";
    io.sim.fail_next_unmaps(1);
    const PersistentGrantCloseReport r = f.table->close();
    EXPECT_EQ(r.unmap_failures, 1U);
    EXPECT_TRUE(f.mapper->is_mapped(2));
    ASSERT_TRUE(f.table->dma_counts().has_value());
    EXPECT_EQ(f.table->dma_counts()->unmap_failures, 2U);
    EXPECT_EQ(io.misordered, 0U);
}

TEST(PersistentGrants, CloseUnmapsEverythingAndRefusesMore) {
    Fixture f;
    ASSERT_TRUE(f.add_rw({1, 2, 3}));
    const PersistentGrantCloseReport r = f.table->close();
    EXPECT_TRUE(r.clean());
    EXPECT_EQ(r.unmapped, 3U);
    EXPECT_EQ(f.mapper->mapped_pages(), 0U);
    EXPECT_EQ(f.table->valid_entries(), 0U);
    EXPECT_EQ(f.table->view().acquire(1, false), nullptr);

    std::vector<S> st;
    Status a = f.add_rw({4}, &st);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, Errc::closed);
    EXPECT_EQ(st, std::vector<S>{S::closed});
    EXPECT_EQ(f.remove({1}), std::vector<S>{S::closed});
    EXPECT_EQ(f.table->close().unmapped, 0U) << "idempotent";
}

TEST(PersistentGrants, CloseWaitsForBuffersInFlight) {
    Fixture f;
    ASSERT_TRUE(f.add_rw({1, 2}));
    const TranslationTableView v = f.table->view();
    ASSERT_NE(v.acquire(2, true), nullptr);

    PersistentGrantCloseReport r;
    std::thread closer([&] { r = f.table->close(); });
    // Once close() has invalidated the entries, no acquire succeeds; then let go of ours.
    while (f.flags(2) != 0)
        std::this_thread::yield();
    EXPECT_EQ(v.acquire(1, false), nullptr);
    EXPECT_TRUE(f.mapper->is_mapped(2)) << "never unmapped while in flight";
    v.release(2);
    closer.join();
    EXPECT_TRUE(r.clean());
    EXPECT_EQ(r.unmapped, 2U);
    EXPECT_EQ(f.mapper->mapped_pages(), 0U);
}

TEST(PersistentGrants, CloseGivesUpOnBuffersThatNeverComeBack) {
    Fixture f(PersistentGrantLimits{16, kRefs, std::chrono::milliseconds(20)});
    ASSERT_TRUE(f.add_rw({1, 2}));
    const TranslationTableView v = f.table->view();
    ASSERT_NE(v.acquire(1, true), nullptr);
    const PersistentGrantCloseReport r = f.table->close();
    EXPECT_FALSE(r.clean());
    EXPECT_EQ(r.leaked_in_flight, 1U);
    EXPECT_EQ(r.unmapped, 1U);
    EXPECT_TRUE(f.mapper->is_mapped(1)) << "left mapped: the NIC may still write it";
    EXPECT_FALSE(f.mapper->is_mapped(2));
    v.release(1);
}

// One lcore acquires and releases in a loop while the control plane removes and re-adds the
// same entries. Whatever the interleaving, a page handed out is mapped for as long as it is
// held, and a successful removal is never followed by a hit before the entry comes back.
TEST(PersistentGrants, AcquireNeverSeesAPageAfterItsRemoval) {
    Fixture f(PersistentGrantLimits{16, kRefs, std::chrono::milliseconds(5000)});
    const std::vector<GrantRef> refs{1, 2, 3, 4, 5, 6, 7, 8};
    std::vector<StaticGrant> all;
    for (GrantRef r : refs)
        all.push_back({r, false});
    ASSERT_TRUE(f.add(all));
    const TranslationTableView view = f.table->view();

    // Both sides run until each has made enough progress while the other was running, so
    // that the test means the same on an idle machine and on a loaded one. The cap on
    // attempts only turns a broken acquire() into a failure instead of a hang.
    constexpr std::uint64_t kMinHits = 200000;
    constexpr std::uint64_t kMinRemovals = 20000;
    constexpr std::uint64_t kMaxRounds = 50'000'000;
    std::atomic<bool> stop{false};
    std::atomic<bool> writer_gave_up{false};
    std::atomic<std::uint64_t> hits{0};
    std::atomic<std::uint64_t> removals{0};
    std::atomic<std::uint64_t> violations{0};
    std::thread lcore([&] {
        for (std::uint64_t round = 0; round < kMaxRounds; ++round) {
            if (hits.load() >= kMinHits && removals.load() >= kMinRemovals) break;
            if (writer_gave_up.load()) break;
            for (GrantRef r : refs) {
                std::byte* p = view.acquire(r, true);
                if (p == nullptr) continue;
                if (p != f.mapper->page_of(r) || !f.mapper->is_mapped(r)) violations++;
                std::memset(p, static_cast<int>(round), 4096); // the NIC writing a frame
                if (!f.mapper->is_mapped(r)) violations++;
                view.release(r);
                hits++;
            }
        }
        stop = true;
    });

    std::uint64_t busy = 0;
    std::set<GrantRef> present(refs.begin(), refs.end());
    bool control_ok = true; // no ASSERT while the lcore thread runs
    while (!stop.load() && control_ok) {
        std::vector<GrantRef> del(present.begin(), present.end());
        std::vector<S> st(del.size());
        auto removed = f.table->remove(del, st);
        control_ok = removed.has_value();
        for (std::size_t i = 0; control_ok && i < del.size(); ++i) {
            if (st[i] == S::ok) {
                present.erase(del[i]);
                ++removals;
                // Removed: no lookup may hit until it is added again.
                if (view.acquire(del[i], false) != nullptr) violations++;
                if (f.mapper->is_mapped(del[i])) violations++;
            } else {
                control_ok = st[i] == S::busy;
                ++busy;
            }
        }
        std::vector<StaticGrant> back;
        for (GrantRef r : refs)
            if (!present.contains(r)) back.push_back({r, false});
        std::vector<S> ast(back.size());
        control_ok = control_ok && f.table->add(back, ast).has_value();
        for (const StaticGrant& g : back)
            present.insert(g.ref);
    }
    writer_gave_up = !control_ok;
    lcore.join();
    EXPECT_TRUE(control_ok);

    EXPECT_EQ(violations.load(), 0U);
    EXPECT_GE(hits.load(), kMinHits);
    EXPECT_GE(removals.load(), kMinRemovals);
    for (GrantRef r : refs)
        EXPECT_EQ(view.in_flight(r), 0U) << "every count released";
    const PersistentGrantCloseReport r = f.table->close();
    EXPECT_TRUE(r.clean());
    EXPECT_EQ(f.mapper->mapped_pages(), 0U);
    std::printf("race: %llu hits, %llu removals, %llu refused busy\n",
                static_cast<unsigned long long>(hits.load()),
                static_cast<unsigned long long>(removals.load()),
                static_cast<unsigned long long>(busy));
}

} // namespace
} // namespace dpnb::hv
