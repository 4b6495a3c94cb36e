// Our grant-copy segment, GNTST codes and copy flags against libxengnttab's and Xen's
// headers: XenGrantTable passes GrantCopySegment arrays to xengnttab_grant_copy() as they are.
#include <gtest/gtest.h>
extern "C" { // the Xen libraries' headers have no C++ guards
#include <xengnttab.h>
}

#include <cstddef>
#include <cstring>

#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/translation_table.hpp"
#include "xen/grant_table.hpp"

namespace dpnb::hv {
namespace {

using LibSeg = xengnttab_grant_copy_segment_t;

static_assert(sizeof(GrantCopySegment) == sizeof(LibSeg));
static_assert(offsetof(GrantCopySegment, source.foreign.domid) ==
              offsetof(LibSeg, source.foreign.domid));
static_assert(offsetof(GrantCopySegment, dest.foreign.offset) ==
              offsetof(LibSeg, dest.foreign.offset));
static_assert(offsetof(GrantCopySegment, status) == offsetof(LibSeg, status));

TEST(XenLayout, CopySegmentFieldsLandWhereTheLibraryReadsThem) {
    std::byte local[16];
    GrantCopySegment ours = GrantCopySegment::to_guest(local, 7, 0x1234, 100, 50);
    ours.status = -3;
    LibSeg lib{};
    static_assert(sizeof lib == sizeof ours);
    std::memcpy(&lib, &ours, sizeof lib);
    EXPECT_EQ(lib.source.virt, static_cast<void*>(local));
    EXPECT_EQ(lib.dest.foreign.ref, 0x1234U);
    EXPECT_EQ(lib.dest.foreign.offset, 100);
    EXPECT_EQ(lib.dest.foreign.domid, 7);
    EXPECT_EQ(lib.len, 50);
    EXPECT_EQ(lib.flags, GNTCOPY_dest_gref);
    EXPECT_EQ(lib.status, -3);

    GrantCopySegment back = GrantCopySegment::from_guest(9, 77, 8, local, 12);
    std::memcpy(&lib, &back, sizeof lib);
    EXPECT_EQ(lib.flags, GNTCOPY_source_gref);
    EXPECT_EQ(lib.source.foreign.ref, 77U);
    EXPECT_EQ(lib.source.foreign.offset, 8);
    EXPECT_EQ(lib.source.foreign.domid, 9);
    EXPECT_EQ(lib.dest.virt, static_cast<void*>(local));
}

TEST(XenLayout, GrantStatusCodesMatchXen) {
    EXPECT_EQ(netif::gntst::kOkay, GNTST_okay);
    EXPECT_EQ(netif::gntst::kGeneralError, GNTST_general_error);
    EXPECT_EQ(netif::gntst::kBadGntref, GNTST_bad_gntref);
    EXPECT_EQ(netif::gntst::kPermissionDenied, GNTST_permission_denied);
    EXPECT_EQ(netif::gntst::kBadCopyArg, GNTST_bad_copy_arg);
}

TEST(XenCopySegment, KernelRulesAreCheckedBeforeTheCall) {
    std::byte local[4096];
    using xen::copy_segment_valid;
    EXPECT_TRUE(copy_segment_valid(GrantCopySegment::to_guest(local, 1, 2, 0, 4096)));
    EXPECT_TRUE(copy_segment_valid(GrantCopySegment::to_guest(local, 1, 2, 4000, 96)));
    EXPECT_FALSE(copy_segment_valid(GrantCopySegment::to_guest(local, 1, 2, 4000, 97)));
    EXPECT_FALSE(copy_segment_valid(GrantCopySegment::from_guest(1, 2, 4095, local, 2)));
    EXPECT_TRUE(copy_segment_valid(GrantCopySegment::from_guest(1, 2, 0, local, 0)));

    GrantCopySegment local_to_local = GrantCopySegment::to_guest(local, 1, 2, 0, 8);
    local_to_local.flags = 0;
    EXPECT_FALSE(copy_segment_valid(local_to_local));
    GrantCopySegment unknown_flag = GrantCopySegment::to_guest(local, 1, 2, 0, 8);
    unknown_flag.flags |= 1U << 2;
    EXPECT_FALSE(copy_segment_valid(unknown_flag));

    // Grant to grant: both offsets are checked.
    GrantCopySegment both{};
    both.source.foreign = {3, 10, 1};
    both.dest.foreign = {4, 4090, 1};
    both.len = 10;
    both.flags = GrantCopySegment::kSourceGref | GrantCopySegment::kDestGref;
    EXPECT_FALSE(copy_segment_valid(both));
    both.dest.foreign.offset = 4086;
    EXPECT_TRUE(copy_segment_valid(both));
}

TEST(XenTranslationView, NullDmaBaseGivesTheEntryAddressItself) {
    alignas(16) IottEntry entry{};
    std::uint32_t status = 0;
    alignas(4096) static std::byte page[4096];
    entry.addr = reinterpret_cast<std::uintptr_t>(page);
    entry.flags = IottEntry::kValid | IottEntry::kWritable;
    TranslationTableView view{&entry, &status, 1, nullptr};
    EXPECT_EQ(view.acquire(0, true), page);
    EXPECT_EQ(view.in_flight(0), 1U);
    view.release(0);
    EXPECT_EQ(view.in_flight(0), 0U);
}

} // namespace
} // namespace dpnb::hv
