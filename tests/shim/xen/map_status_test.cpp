// Finding which grant of a failed batch map was bad, against a fake all-or-nothing mapper.
#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <vector>

#include "dpnb/netif/wire.hpp"
#include "xen/map_status.hpp"

namespace dpnb::hv::xen {
namespace {

namespace gntst = netif::gntst;

// Fails a batch with EINVAL when it holds a bad ref, or a read-only ref asked for writing.
class FakeBatchMapper final : public BatchMapper {
public:
    std::set<std::uint32_t> bad;
    std::set<std::uint32_t> readonly;
    int fail_errno = 0; // when set, every call fails with it
    int calls = 0;
    int live = 0; // mapped and not yet unmapped

    void* map_batch(std::span<const std::uint32_t> domids, std::span<const std::uint32_t> refs,
                    bool writable, int& err) override {
        ++calls;
        EXPECT_EQ(domids.size(), refs.size());
        if (fail_errno != 0) {
            err = fail_errno;
            return nullptr;
        }
        for (const std::uint32_t r : refs) {
            if (bad.contains(r) || (writable && readonly.contains(r))) {
                err = EINVAL;
                return nullptr;
            }
        }
        ++live;
        return &page_;
    }
    void unmap_batch(void* addr, std::uint32_t) override {
        EXPECT_EQ(addr, &page_);
        --live;
    }

private:
    std::byte page_[1]{};
};

struct Batch {
    std::vector<std::uint32_t> domids, refs;
    std::vector<std::int16_t> status;
    explicit Batch(std::uint32_t n) : domids(n, 5), refs(n), status(n, 99) {
        for (std::uint32_t i = 0; i < n; ++i)
            refs[i] = 100 + i;
    }
};

TEST(MapStatus, FindsTheOneBadGrantWithFewProbes) {
    FakeBatchMapper m;
    m.bad = {117};
    Batch b(32);
    discover_map_status(m, b.domids, b.refs, true, b.status);
    for (std::uint32_t i = 0; i < 32; ++i)
        EXPECT_EQ(b.status[i], b.refs[i] == 117 ? gntst::kBadGntref : gntst::kOkay) << i;
    EXPECT_EQ(m.live, 0) << "every successful probe is unmapped";
    // Two probes per level of the halving (5 levels for 32), plus the read-only try.
    EXPECT_LE(m.calls, 2 * 5 + 1);
}

TEST(MapStatus, TellsAReadOnlyGrantFromABadOne) {
    FakeBatchMapper m;
    m.bad = {101};
    m.readonly = {102};
    Batch b(4);
    discover_map_status(m, b.domids, b.refs, true, b.status);
    EXPECT_EQ(b.status[0], gntst::kOkay);
    EXPECT_EQ(b.status[1], gntst::kBadGntref);
    EXPECT_EQ(b.status[2], gntst::kPermissionDenied);
    EXPECT_EQ(b.status[3], gntst::kOkay);
    EXPECT_EQ(m.live, 0);
}

TEST(MapStatus, ReadOnlyBatchesDoNotProbeTwice) {
    FakeBatchMapper m;
    m.bad = {100};
    m.readonly = {101}; // fine when asked read-only
    Batch b(2);
    discover_map_status(m, b.domids, b.refs, false, b.status);
    EXPECT_EQ(b.status[0], gntst::kBadGntref);
    EXPECT_EQ(b.status[1], gntst::kOkay);
    EXPECT_EQ(m.calls, 2);
}

TEST(MapStatus, EveryGrantBadStaysWithinTwoNCalls) {
    FakeBatchMapper m;
    Batch b(16);
    for (auto r : b.refs)
        m.bad.insert(r);
    discover_map_status(m, b.domids, b.refs, false, b.status);
    for (auto s : b.status)
        EXPECT_EQ(s, gntst::kBadGntref);
    EXPECT_LE(m.calls, 2 * 16 - 1);
}

TEST(MapStatus, NoGrantFailingAloneMeansGeneralError) {
    FakeBatchMapper m; // everything maps now: the guest changed its grants in between
    Batch b(8);
    discover_map_status(m, b.domids, b.refs, true, b.status);
    for (auto s : b.status)
        EXPECT_EQ(s, gntst::kGeneralError);
    EXPECT_EQ(m.live, 0);
}

TEST(MapStatus, ResourceFailuresAreNotBlamedOnGrants) {
    FakeBatchMapper m;
    m.fail_errno = ENOMEM;
    Batch b(8);
    discover_map_status(m, b.domids, b.refs, true, b.status);
    for (auto s : b.status)
        EXPECT_EQ(s, gntst::kGeneralError);
    EXPECT_EQ(m.calls, 2) << "one probe per half, no recursion on ENOMEM";
}

TEST(MapStatus, SingleGrantBatch) {
    FakeBatchMapper m;
    m.readonly = {100};
    Batch b(1);
    discover_map_status(m, b.domids, b.refs, true, b.status);
    EXPECT_EQ(b.status[0], gntst::kPermissionDenied);
    EXPECT_EQ(m.calls, 1) << "the failed batch was this grant: only the read-only try";

    FakeBatchMapper bad;
    bad.bad = {100};
    discover_map_status(bad, b.domids, b.refs, false, b.status);
    EXPECT_EQ(b.status[0], gntst::kBadGntref);
    EXPECT_EQ(bad.calls, 0);
}

} // namespace
} // namespace dpnb::hv::xen
