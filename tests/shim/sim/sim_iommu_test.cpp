// The simulated IOMMU (dpnb/hv/dma_mapper.hpp), the twin that engine and persistent-grant
// tests check DMA mappings against: what it records, what it refuses, what it counts.
#include <gtest/gtest.h>

#include "dpnb/hv/dma_mapper.hpp"

namespace dpnb::hv {
namespace {

constexpr std::uintptr_t kBase = 0x7f0000000000;
constexpr std::size_t kPage = kPageSize;

TEST(SimIommu, RecordsMappedRangesAndAnswersWhetherARangeIsMapped) {
    SimIommu io;
    ASSERT_TRUE(io.map(kBase, 4 * kPage));
    EXPECT_EQ(io.ranges(), 1U);
    EXPECT_TRUE(io.mapped(kBase, 4 * kPage));
    EXPECT_TRUE(io.mapped(kBase + kPage + 100, 2000));
    EXPECT_FALSE(io.mapped(kBase + 3 * kPage, kPage + 1)) << "runs past the end";
    EXPECT_FALSE(io.mapped(kBase - 1, 2)) << "starts before";
    EXPECT_FALSE(io.mapped(kBase + 8 * kPage, 1));
    ASSERT_TRUE(io.unmap(kBase, 4 * kPage));
    EXPECT_FALSE(io.mapped(kBase, 1));
    EXPECT_EQ(io.ranges(), 0U);
    EXPECT_EQ(io.map_calls(), 1U);
    EXPECT_EQ(io.unmap_calls(), 1U);
    EXPECT_EQ(io.refused(), 0U);
}

TEST(SimIommu, RefusesOverlapsAndUnmapsOfWhatIsNotMapped) {
    SimIommu io;
    ASSERT_TRUE(io.map(kBase + 2 * kPage, 2 * kPage));
    EXPECT_FALSE(io.map(kBase + 3 * kPage, kPage)) << "inside";
    EXPECT_FALSE(io.map(kBase, 3 * kPage)) << "overlaps the start";
    EXPECT_FALSE(io.map(kBase + 3 * kPage, 4 * kPage)) << "overlaps the end";
    EXPECT_TRUE(io.map(kBase, 2 * kPage)) << "adjacent before";
    EXPECT_TRUE(io.map(kBase + 4 * kPage, kPage)) << "adjacent after";
    EXPECT_FALSE(io.map(kBase + 10 * kPage, 100)) << "not whole pages";
    EXPECT_FALSE(io.unmap(kBase + 2 * kPage, kPage)) << "part of a range";
    EXPECT_FALSE(io.unmap(kBase + 20 * kPage, kPage)) << "never mapped";
    EXPECT_EQ(io.refused(), 6U);
    EXPECT_EQ(io.ranges(), 3U);
    EXPECT_TRUE(io.mapped(kBase, 5 * kPage) == false) << "three ranges, not one";
}

TEST(SimIommu, InjectedFailuresRefuseTheNextCallsOnly) {
    SimIommu io;
    io.fail_next_maps(2);
    EXPECT_FALSE(io.map(kBase, kPage));
    EXPECT_FALSE(io.map(kBase, kPage));
    ASSERT_TRUE(io.map(kBase, kPage));
    io.fail_next_unmaps(1);
    EXPECT_FALSE(io.unmap(kBase, kPage));
    EXPECT_TRUE(io.mapped(kBase, kPage)) << "a refused unmap leaves the range mapped";
    EXPECT_TRUE(io.unmap(kBase, kPage));
    EXPECT_EQ(io.map_calls(), 3U);
    EXPECT_EQ(io.unmap_calls(), 2U);
    EXPECT_EQ(io.refused(), 3U);
}

} // namespace
} // namespace dpnb::hv
