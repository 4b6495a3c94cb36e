// The guest side's gntalloc bookkeeping: one grant per page, held out by grant_access()
// and taken back by end_access(); pages are freed only as whole allocations with no grant
// held out.
#include <gtest/gtest.h>

#include <vector>

#include "xen/shared_pages.hpp"

namespace dpnb::hv::xen {
namespace {

struct alignas(4096) Pages {
    std::byte bytes[4 * 4096];
};

TEST(SharedPages, EachPageHasItsOwnGrant) {
    static Pages mem;
    SharedPages sp;
    const std::vector<GrantRef> refs{40, 41, 42, 43};
    ASSERT_TRUE(sp.add(mem.bytes, refs));
    for (int i = 0; i < 4; ++i) {
        auto r = sp.grant(mem.bytes + i * 4096);
        ASSERT_TRUE(r) << r.error().describe();
        EXPECT_EQ(*r, refs[i]);
    }
    EXPECT_EQ(sp.held_out(), 4U);
    auto again = sp.grant(mem.bytes);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, Errc::exists);

    ASSERT_TRUE(sp.end(40));
    EXPECT_EQ(sp.end(40).error().code, Errc::invalid_argument) << "not held out any more";
    EXPECT_EQ(sp.end(99).error().code, Errc::not_found);
    auto regrant = sp.grant(mem.bytes);
    ASSERT_TRUE(regrant);
    EXPECT_EQ(*regrant, 40U) << "gntalloc gives the page the same grant again";
}

TEST(SharedPages, OnlyOurPagesCanBeGranted) {
    static Pages mem;
    static Pages other;
    SharedPages sp;
    ASSERT_TRUE(sp.add(mem.bytes, std::vector<GrantRef>{1, 2}));
    EXPECT_FALSE(sp.grant(other.bytes));
    EXPECT_FALSE(sp.grant(mem.bytes + 2 * 4096)) << "past the allocation";
    EXPECT_FALSE(sp.grant(mem.bytes + 100)) << "not page-aligned";
    EXPECT_FALSE(sp.add(mem.bytes, std::vector<GrantRef>{7})) << "recorded twice";
    EXPECT_FALSE(sp.add(mem.bytes + 2 * 4096, std::vector<GrantRef>{2})) << "grant reused";
}

TEST(SharedPages, FreeingNeedsTheWholeAllocationAndNoGrantHeldOut) {
    static Pages mem;
    SharedPages sp;
    ASSERT_TRUE(sp.add(mem.bytes, std::vector<GrantRef>{5, 6}));
    ASSERT_TRUE(sp.add(mem.bytes + 2 * 4096, std::vector<GrantRef>{7, 8}));
    EXPECT_EQ(sp.allocations(), 2U);
    EXPECT_EQ(sp.remove(mem.bytes, 1).error().code, Errc::invalid_argument);
    EXPECT_EQ(sp.remove(mem.bytes + 4096, 1).error().code, Errc::invalid_argument);

    ASSERT_TRUE(sp.grant(mem.bytes + 4096));
    EXPECT_EQ(sp.remove(mem.bytes, 2).error().code, Errc::busy);
    ASSERT_TRUE(sp.end(6));
    ASSERT_TRUE(sp.remove(mem.bytes, 2));
    EXPECT_EQ(sp.allocations(), 1U);
    EXPECT_EQ(sp.end(5).error().code, Errc::not_found) << "forgotten with its allocation";
    auto all = sp.all();
    ASSERT_EQ(all.size(), 1U);
    EXPECT_EQ(all[0].first, mem.bytes + 2 * 4096);
    EXPECT_EQ(all[0].second, 2U);
}

} // namespace
} // namespace dpnb::hv::xen
