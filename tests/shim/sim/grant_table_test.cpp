// Grant map, unmap and copy against the simulated hypervisor, across processes: the test
// process is the backend (dom0), each guest is a forked process that grants its own pages.
// Every refusal Xen makes is checked with Xen's status code.
#include <sys/mman.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

namespace gntst = netif::gntst;

std::byte pattern(std::uint32_t page, std::size_t i) {
    return static_cast<std::byte>((page * 31 + i * 7) & 0xFF);
}

void fill(std::byte* page, std::uint32_t seed) {
    for (std::size_t i = 0; i < kPageSize; ++i)
        page[i] = pattern(seed, i);
}

bool has_pattern(const std::byte* page, std::uint32_t seed) {
    for (std::size_t i = 0; i < kPageSize; ++i)
        if (page[i] != pattern(seed, i)) return false;
    return true;
}

// A guest process's part: grants `n` new pages to dom0 writable (page i filled with the
// pattern of seed + i), sending each reference over `link`; once told, checks that the
// backend wrote i at byte `marker` of page i, ends access to every grant if `end_access`
// (nothing may remain pinned), and says it is done.
void marked_pages_guest(const std::string& dir, DomId dom, std::uint32_t n, std::uint32_t seed,
                        std::size_t marker, bool end_access, Link& link) {
    auto gh = connect_guest(dir, dom);
    SIM_ASSERT_OK(gh);
    auto pages = (*gh)->alloc_pages(n);
    SIM_ASSERT_OK(pages);
    std::vector<GrantRef> refs;
    for (std::uint32_t i = 0; i < n; ++i) {
        fill(pages->page(i), seed + i);
        auto ref = (*gh)->grant_access(kDom0, pages->page(i), false);
        SIM_ASSERT_OK(ref);
        refs.push_back(*ref);
        link.send(*ref);
    }
    SIM_RECV(link, written);
    for (std::uint32_t i = 0; i < n; ++i)
        EXPECT_EQ(std::to_integer<std::uint32_t>(pages->page(i)[marker]), i) << "page " << i;
    if (end_access)
        for (GrantRef ref : refs)
            SIM_EXPECT_OK((*gh)->end_access(ref));
    link.send(1);
}

// A guest's two pages for a backend to read and write: page 0 filled with the pattern of
// `seed` and granted read-only, page 1 zeroed and granted writable, to dom0; both references
// are sent over `link`.
struct TwoPages {
    GuestPages pages;
    GrantRef ro = 0;
    GrantRef rw = 0;
};
void grant_two_pages(GuestHypervisor& gh, std::uint32_t seed, Link& link, TwoPages& out) {
    auto pages = gh.alloc_pages(2);
    SIM_ASSERT_OK(pages);
    fill(pages->page(0), seed);
    std::memset(pages->page(1), 0, kPageSize);
    auto ro = gh.grant_access(kDom0, pages->page(0), true);
    auto rw = gh.grant_access(kDom0, pages->page(1), false);
    SIM_ASSERT_OK(ro);
    SIM_ASSERT_OK(rw);
    link.send(*ro);
    link.send(*rw);
    out = TwoPages{*pages, *ro, *rw};
}

class SimGrantTableTest : public SimFixture {
protected:
    void SetUp() override {
        SimFixture::SetUp();
        if (HasFatalFailure()) return;
        guest_ = create("guest");
    }

    std::unique_ptr<BackendHypervisor> backend() {
        auto be = connect_backend(dir());
        EXPECT_TRUE(be.has_value()) << be.error().describe();
        return be ? std::move(*be) : nullptr;
    }

    GrantMapping map1(GrantTable& gt, GrantRef ref, bool writable, std::int16_t& status,
                      DomId dom = kDomIdInvalid) {
        const GrantMapRequest req{dom == kDomIdInvalid ? guest_ : dom, ref, writable};
        return gt.map({&req, 1}, {&status, 1});
    }

    DomId guest_ = kDomIdInvalid;
};

TEST_F(SimGrantTableTest, MapReadOnlyAndWritableAcrossProcesses) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        TwoPages g;
        ASSERT_NO_FATAL_FAILURE(grant_two_pages(**gh, 1, link, g));
        SIM_RECV(link, written);
        EXPECT_EQ(std::memcmp(g.pages.page(1) + 100, "hello from the backend", 22), 0);
        // Mapped: the hypervisor holds GTF_reading/GTF_writing, revoking is refused.
        SIM_EXPECT_ERRC((*gh)->end_access(g.ro), Errc::busy);
        SIM_EXPECT_ERRC((*gh)->end_access(g.rw), Errc::busy);
        link.send(1);
        SIM_RECV(link, unmapped);
        SIM_EXPECT_OK((*gh)->end_access(g.ro));
        SIM_EXPECT_OK((*gh)->end_access(g.rw));
        link.send(2);
    });

    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);
    SIM_RECV(to_guest, ro);
    SIM_RECV(to_guest, rw);

    std::int16_t st = 1;
    GrantMapping ro_map = map1(**gt, static_cast<GrantRef>(ro), false, st);
    ASSERT_TRUE(ro_map) << "status " << st;
    EXPECT_EQ(st, gntst::kOkay);
    EXPECT_TRUE(has_pattern(ro_map.page(0), 1)) << "the backend sees the guest's bytes";

    GrantMapping rw_map = map1(**gt, static_cast<GrantRef>(rw), true, st);
    ASSERT_TRUE(rw_map) << "status " << st;
    std::memcpy(rw_map.page(0) + 100, "hello from the backend", 22);
    EXPECT_EQ((*gt)->mapped_pages(), 2U);
    to_guest.send(1);
    SIM_RECV(to_guest, checked);

    SIM_EXPECT_OK((*gt)->unmap(ro_map));
    SIM_EXPECT_OK((*gt)->unmap(rw_map));
    EXPECT_FALSE(ro_map);
    EXPECT_EQ((*gt)->mapped_pages(), 0U);
    to_guest.send(2);
    SIM_RECV(to_guest, done);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimGrantTableTest, BatchMapOfManyRefsIsContiguousAndInOrder) {
    constexpr std::uint32_t kPages = 48;
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        marked_pages_guest(dir(), guest_, kPages, 100, kPageSize - 1, false, link);
    });

    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);
    std::vector<GrantMapRequest> reqs;
    for (std::uint32_t i = 0; i < kPages; ++i) {
        SIM_RECV(to_guest, ref);
        // Refs in reverse order of the pages: the mapping follows the request order.
        reqs.insert(reqs.begin(), GrantMapRequest{guest_, static_cast<GrantRef>(ref), true});
    }
    std::vector<std::int16_t> status(kPages, 1);
    GrantMapping m = (*gt)->map(reqs, status);
    ASSERT_TRUE(m);
    EXPECT_EQ(m.count, kPages);
    for (std::uint32_t i = 0; i < kPages; ++i) {
        EXPECT_EQ(status[i], gntst::kOkay);
        const std::uint32_t page = kPages - 1 - i;
        EXPECT_TRUE(has_pattern(m.page(i), 100 + page)) << "slot " << i;
        m.page(i)[kPageSize - 1] = static_cast<std::byte>(page);
    }
    to_guest.send(1);
    SIM_RECV(to_guest, checked);
    SIM_EXPECT_OK((*gt)->unmap(m));
    EXPECT_TRUE(guest.succeeded());
}

int count_mappings() {
    std::ifstream maps("/proc/self/maps");
    int n = 0;
    for (std::string line; std::getline(maps, line);)
        ++n;
    return n;
}

// An unmap really unmaps (the address faults afterwards) and frees the handle for good; a
// steady map/unmap cycle reuses the handle's address window instead of reserving more; a
// batch in page order is mapped as one run, one larger than the window gets its own range.
TEST_F(SimGrantTableTest, UnmapReallyUnmapsAndMappingsReuseTheWindow) {
    constexpr std::uint32_t kPages = 8;
    auto [to_guest, to_backend] = Link::make();
    Child guest(
        [&, &link = to_backend] { marked_pages_guest(dir(), guest_, kPages, 200, 7, true, link); });
    std::vector<GrantMapRequest> reqs;
    for (std::uint32_t i = 0; i < kPages; ++i) {
        SIM_RECV(to_guest, ref);
        reqs.push_back({guest_, static_cast<GrantRef>(ref), true});
    }
    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);

    std::vector<std::int16_t> status(kPages, 1);
    GrantMapping m = (*gt)->map(reqs, status);
    ASSERT_TRUE(m);
    for (std::uint32_t i = 0; i < kPages; ++i) {
        EXPECT_TRUE(has_pattern(m.page(i), 200 + i)) << "slot " << i;
        m.page(i)[7] = static_cast<std::byte>(i);
    }
    const GrantMapping stale = m;
    SIM_ASSERT_OK((*gt)->unmap(m));
    EXPECT_FALSE(m) << "unmap clears the caller's mapping";
    EXPECT_TRUE(killed_by(write_in_child(stale.page(0)), SIGSEGV)) << "still mapped";
    GrantMapping again = (*gt)->map({reqs.data(), 1}, {status.data(), 1});
    ASSERT_TRUE(again);
    GrantMapping copy = stale;
    SIM_EXPECT_ERRC((*gt)->unmap(copy), Errc::invalid_argument); // a handle is good once
    EXPECT_EQ(again.page(0)[8], pattern(200, 8)) << "the refused unmap left the live mapping";
    SIM_ASSERT_OK((*gt)->unmap(again));

    (void)count_mappings(); // its own first allocations may map memory
    const int before = count_mappings();
    for (int i = 0; i < 5000; ++i) {
        GrantMapping one = (*gt)->map({reqs.data() + i % kPages, 1}, {status.data(), 1});
        ASSERT_TRUE(one) << "cycle " << i << ": status " << status[0];
        SIM_ASSERT_OK((*gt)->unmap(one));
    }
    EXPECT_EQ(count_mappings(), before) << "map/unmap cycles left address ranges behind";
    EXPECT_EQ((*gt)->mapped_pages(), 0U);

    // 4097 mappings of one grant: more than the window holds.
    std::vector<GrantMapRequest> many(4097, reqs[3]);
    std::vector<std::int16_t> many_status(many.size(), 1);
    GrantMapping big = (*gt)->map(many, many_status);
    ASSERT_TRUE(big);
    EXPECT_EQ(big.count, 4097U);
    EXPECT_EQ(big.page(4096)[7], std::byte{3}) << "the last page is the grant's page";
    SIM_ASSERT_OK((*gt)->unmap(big));
    EXPECT_EQ(toolstack_->domain_info(guest_)->pinned_grants, 0U);

    to_guest.send(1);
    SIM_RECV(to_guest, ended);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimGrantTableTest, CopyBothDirectionsWithOffsetsAndPerSegmentStatus) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(2);
        SIM_ASSERT_OK(pages);
        fill(pages->page(0), 7);
        std::memset(pages->page(1), 0, kPageSize);
        auto src = (*gh)->grant_access(kDom0, pages->page(0), true);
        auto dst = (*gh)->grant_access(kDom0, pages->page(1), false);
        SIM_ASSERT_OK(src);
        SIM_ASSERT_OK(dst);
        link.send(*src);
        link.send(*dst);
        SIM_RECV(link, copied);
        // Into the writable grant at offset 3000, up to the very end of the page.
        for (std::size_t i = 0; i < kPageSize; ++i) {
            const std::byte want = i >= 3000 ? static_cast<std::byte>(i & 0x7F) : std::byte{0};
            ASSERT_EQ(pages->page(1)[i], want) << "byte " << i;
        }
        // The read-only grant was not written.
        EXPECT_TRUE(has_pattern(pages->page(0), 7));
        // Copies are over: nothing stays pinned.
        SIM_EXPECT_OK((*gh)->end_access(*src));
        SIM_EXPECT_OK((*gh)->end_access(*dst));
        link.send(1);
    });

    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);
    SIM_RECV(to_guest, src);
    SIM_RECV(to_guest, dst);
    const auto src_ref = static_cast<GrantRef>(src);
    const auto dst_ref = static_cast<GrantRef>(dst);

    std::vector<std::byte> from(200);
    std::vector<std::byte> to(1096);
    for (std::size_t i = 0; i < to.size(); ++i)
        to[i] = static_cast<std::byte>((3000 + i) & 0x7F);
    std::vector<std::byte> scratch(64);
    GrantCopySegment segs[] = {
        GrantCopySegment::from_guest(guest_, src_ref, 100, from.data(), 200),
        GrantCopySegment::to_guest(to.data(), guest_, dst_ref, 3000, 1096),
        // Refusals, each with Xen's status.
        GrantCopySegment::from_guest(guest_, src_ref, 4000, scratch.data(), 200),
        GrantCopySegment::to_guest(scratch.data(), guest_, dst_ref, 4090, 7),
        GrantCopySegment::to_guest(scratch.data(), guest_, src_ref, 0, 8),
        GrantCopySegment::from_guest(guest_, 1U << 20, 0, scratch.data(), 8),
        GrantCopySegment::from_guest(static_cast<DomId>(guest_ + 100), src_ref, 0, scratch.data(),
                                     8),
    };
    SIM_ASSERT_OK((*gt)->copy(segs));
    EXPECT_EQ(segs[0].status, gntst::kOkay);
    EXPECT_EQ(segs[1].status, gntst::kOkay);
    EXPECT_EQ(segs[2].status, gntst::kBadCopyArg) << "offset + length beyond the page";
    EXPECT_EQ(segs[3].status, gntst::kBadCopyArg);
    EXPECT_EQ(segs[4].status, gntst::kGeneralError) << "copy into a read-only grant";
    EXPECT_EQ(segs[5].status, gntst::kBadGntref);
    EXPECT_EQ(segs[6].status, gntst::kBadDomain);
    for (std::size_t i = 0; i < from.size(); ++i)
        ASSERT_EQ(from[i], pattern(7, 100 + i)) << "byte " << i;
    to_guest.send(1);
    SIM_RECV(to_guest, done);
    EXPECT_TRUE(guest.succeeded());
}

// One copy batch over two guests, their domains alternating from segment to segment and an
// unknown domain in between: each segment reads its own guest's page (the batch keeps the
// domain a side used last, as Xen does, and never hands one guest's memory to another's
// segment), and a guest-to-guest segment writes the other guest's page.
TEST_F(SimGrantTableTest, CopyBatchAlternatingDomainsReadsEachGuestsOwnPage) {
    const DomId second = create("second");
    auto guest_part = [&](DomId dom, std::uint32_t seed, Link& link) {
        auto gh = connect_guest(dir(), dom);
        SIM_ASSERT_OK(gh);
        TwoPages g;
        ASSERT_NO_FATAL_FAILURE(grant_two_pages(**gh, seed, link, g));
        SIM_RECV(link, copied);
        // The other guest's first 64 bytes, at offset 0 of the writable page.
        const std::uint32_t other = seed == 11 ? 22 : 11;
        for (std::size_t i = 0; i < 64; ++i)
            ASSERT_EQ(g.pages.page(1)[i], pattern(other, i)) << "byte " << i;
        SIM_EXPECT_OK((*gh)->end_access(g.ro));
        SIM_EXPECT_OK((*gh)->end_access(g.rw));
        link.send(1);
    };
    auto [to_a, from_a] = Link::make();
    auto [to_b, from_b] = Link::make();
    Child a([&, &link = from_a] { guest_part(guest_, 11, link); });
    Child b([&, &link = from_b] { guest_part(second, 22, link); });
    SIM_RECV(to_a, a_ro);
    SIM_RECV(to_a, a_rw);
    SIM_RECV(to_b, b_ro);
    SIM_RECV(to_b, b_rw);
    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);

    std::vector<std::byte> out(5 * 64);
    const auto ra = static_cast<GrantRef>(a_ro);
    const auto rb = static_cast<GrantRef>(b_ro);
    const auto unknown = static_cast<DomId>(second + 100);
    GrantCopySegment guest_to_guest[2];
    guest_to_guest[0] = GrantCopySegment::from_guest(guest_, ra, 0, nullptr, 64);
    guest_to_guest[0].flags |= GrantCopySegment::kDestGref;
    guest_to_guest[0].dest.foreign = {static_cast<GrantRef>(b_rw), 0, second};
    guest_to_guest[1] = GrantCopySegment::from_guest(second, rb, 0, nullptr, 64);
    guest_to_guest[1].flags |= GrantCopySegment::kDestGref;
    guest_to_guest[1].dest.foreign = {static_cast<GrantRef>(a_rw), 0, guest_};
    GrantCopySegment segs[] = {
        GrantCopySegment::from_guest(guest_, ra, 0, out.data(), 64),
        GrantCopySegment::from_guest(second, rb, 0, out.data() + 64, 64),
        GrantCopySegment::from_guest(unknown, ra, 0, out.data() + 128, 64),
        GrantCopySegment::from_guest(guest_, ra, 64, out.data() + 192, 64),
        guest_to_guest[0],
        guest_to_guest[1],
    };
    SIM_ASSERT_OK((*gt)->copy(segs));
    EXPECT_EQ(segs[0].status, gntst::kOkay);
    EXPECT_EQ(segs[1].status, gntst::kOkay);
    EXPECT_EQ(segs[2].status, gntst::kBadDomain);
    EXPECT_EQ(segs[3].status, gntst::kOkay);
    EXPECT_EQ(segs[4].status, gntst::kOkay);
    EXPECT_EQ(segs[5].status, gntst::kOkay);
    for (std::size_t i = 0; i < 64; ++i) {
        ASSERT_EQ(out[i], pattern(11, i)) << "byte " << i;
        ASSERT_EQ(out[64 + i], pattern(22, i)) << "byte " << i;
        ASSERT_EQ(out[192 + i], pattern(11, 64 + i)) << "byte " << i;
    }
    to_a.send(1);
    to_b.send(1);
    SIM_RECV(to_a, a_done);
    SIM_RECV(to_b, b_done);
    EXPECT_TRUE(a.succeeded());
    EXPECT_TRUE(b.succeeded());
}

// A grant names one domain: another domain's map and copy are refused; that domain (here a
// driver domain acting as backend) gets it.
TEST_F(SimGrantTableTest, GrantForOneDomainIsRefusedToAnother) {
    const DomId driver = create("driver");
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(2);
        SIM_ASSERT_OK(pages);
        fill(pages->page(0), 3);
        fill(pages->page(1), 4);
        auto for_dom0 = (*gh)->grant_access(kDom0, pages->page(0), false);
        auto for_driver = (*gh)->grant_access(driver, pages->page(1), false);
        SIM_ASSERT_OK(for_dom0);
        SIM_ASSERT_OK(for_driver);
        link.send(*for_dom0);
        link.send(*for_driver);
        SIM_RECV(link, done);
    });
    SIM_RECV(to_guest, for_dom0);
    SIM_RECV(to_guest, for_driver);

    auto dom0 = backend();
    ASSERT_TRUE(dom0);
    auto gt0 = dom0->open_grant_table();
    SIM_ASSERT_OK(gt0);
    std::int16_t st = 1;
    EXPECT_FALSE(map1(**gt0, static_cast<GrantRef>(for_driver), false, st));
    EXPECT_EQ(st, gntst::kGeneralError);
    std::byte buf[16];
    auto seg = GrantCopySegment::from_guest(guest_, static_cast<GrantRef>(for_driver), 0, buf, 16);
    SIM_ASSERT_OK((*gt0)->copy({&seg, 1}));
    EXPECT_EQ(seg.status, gntst::kGeneralError);

    auto drv = connect_backend(dir(), driver);
    SIM_ASSERT_OK(drv);
    auto gtd = (*drv)->open_grant_table();
    SIM_ASSERT_OK(gtd);
    GrantMapping m = map1(**gtd, static_cast<GrantRef>(for_driver), false, st);
    ASSERT_TRUE(m) << "status " << st;
    EXPECT_TRUE(has_pattern(m.page(0), 4));
    SIM_EXPECT_OK((*gtd)->unmap(m));
    EXPECT_FALSE(map1(**gtd, static_cast<GrantRef>(for_dom0), false, st));
    EXPECT_EQ(st, gntst::kGeneralError);

    // The right domain with the wrong guest's table: ref names nothing granted to us there.
    const DomId other = create("other");
    EXPECT_FALSE(map1(**gt0, static_cast<GrantRef>(for_dom0), false, st, other));
    EXPECT_EQ(st, gntst::kGeneralError);
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimGrantTableTest, RevokedGrantCannotBeMapped) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(1);
        SIM_ASSERT_OK(pages);
        auto ref = (*gh)->grant_access(kDom0, pages->page(0), false);
        SIM_ASSERT_OK(ref);
        SIM_ASSERT_OK((*gh)->end_access(*ref));
        SIM_EXPECT_ERRC((*gh)->end_access(*ref), Errc::invalid_argument);
        link.send(*ref);
        SIM_RECV(link, done);
    });
    SIM_RECV(to_guest, ref);
    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);
    std::int16_t st = 1;
    EXPECT_FALSE(map1(**gt, static_cast<GrantRef>(ref), false, st));
    EXPECT_EQ(st, gntst::kGeneralError);
    std::byte buf[8];
    auto seg = GrantCopySegment::from_guest(guest_, static_cast<GrantRef>(ref), 0, buf, 8);
    SIM_ASSERT_OK((*gt)->copy({&seg, 1}));
    EXPECT_EQ(seg.status, gntst::kGeneralError);
    EXPECT_EQ((*gt)->mapped_pages(), 0U);
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimGrantTableTest, ReadOnlyGrantRefusesWritesAndItsMappingFaults) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(1);
        SIM_ASSERT_OK(pages);
        fill(pages->page(0), 9);
        auto ref = (*gh)->grant_access(kDom0, pages->page(0), true);
        SIM_ASSERT_OK(ref);
        link.send(*ref);
        SIM_RECV(link, done);
        EXPECT_TRUE(has_pattern(pages->page(0), 9)) << "the read-only page was changed";
        link.send(1);
    });
    SIM_RECV(to_guest, ref);
    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);
    std::int16_t st = 1;
    EXPECT_FALSE(map1(**gt, static_cast<GrantRef>(ref), true, st)) << "writable map of r/o";
    EXPECT_EQ(st, gntst::kGeneralError);
    std::byte buf[8] = {};
    auto seg = GrantCopySegment::to_guest(buf, guest_, static_cast<GrantRef>(ref), 0, 8);
    SIM_ASSERT_OK((*gt)->copy({&seg, 1}));
    EXPECT_EQ(seg.status, gntst::kGeneralError) << "copy into r/o";

    GrantMapping m = map1(**gt, static_cast<GrantRef>(ref), false, st);
    ASSERT_TRUE(m) << "status " << st;
    EXPECT_TRUE(has_pattern(m.page(0), 9));
    // A write through the read-only mapping faults (in a child that inherited the mapping).
    EXPECT_TRUE(killed_by(write_in_child(m.page(0) + 10), SIGSEGV));
    // ... and the mapping cannot be made writable.
    EXPECT_NE(::mprotect(m.page(0), kPageSize, PROT_READ | PROT_WRITE), 0);
    SIM_EXPECT_OK((*gt)->unmap(m));
    to_guest.send(1);
    SIM_RECV(to_guest, checked);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimGrantTableTest, RefOutOfRangeUnknownDomainAndMalformedBatches) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(2);
        SIM_ASSERT_OK(pages);
        auto a = (*gh)->grant_access(kDom0, pages->page(0), false);
        auto b = (*gh)->grant_access(kDom0, pages->page(1), false);
        SIM_ASSERT_OK(a);
        SIM_ASSERT_OK(b);
        link.send(*a);
        link.send(*b);
        SIM_RECV(link, done);
        // The failed batches left nothing pinned.
        SIM_EXPECT_OK((*gh)->end_access(*a));
        SIM_EXPECT_OK((*gh)->end_access(*b));
        link.send(1);
    });
    SIM_RECV(to_guest, a);
    SIM_RECV(to_guest, b);
    auto be = backend();
    ASSERT_TRUE(be);
    auto gt = be->open_grant_table();
    SIM_ASSERT_OK(gt);

    auto info = toolstack_->domain_info(guest_);
    SIM_ASSERT_OK(info);
    std::int16_t st = 1;
    EXPECT_FALSE(map1(**gt, info->grant_entries, false, st));
    EXPECT_EQ(st, gntst::kBadGntref);
    EXPECT_FALSE(map1(**gt, 1, false, st, static_cast<DomId>(guest_ + 50)));
    EXPECT_EQ(st, gntst::kBadDomain);
    EXPECT_FALSE(map1(**gt, 1, false, st, kDom0));
    EXPECT_EQ(st, gntst::kBadDomain) << "dom0 has no grant table here";

    // One bad request fails the whole batch; the good one reports okay and is not mapped.
    GrantMapRequest reqs[] = {{guest_, static_cast<GrantRef>(a), true},
                              {guest_, info->grant_entries + 5, true}};
    std::int16_t status[2] = {1, 1};
    EXPECT_FALSE((*gt)->map(reqs, status));
    EXPECT_EQ(status[0], gntst::kOkay);
    EXPECT_EQ(status[1], gntst::kBadGntref);
    // A batch mixing read-only and writable is refused, as by the Xen implementation.
    GrantMapRequest mixed[] = {{guest_, static_cast<GrantRef>(a), true},
                               {guest_, static_cast<GrantRef>(b), false}};
    EXPECT_FALSE((*gt)->map(mixed, status));
    EXPECT_EQ(status[0], gntst::kGeneralError);
    EXPECT_EQ(status[1], gntst::kGeneralError);
    EXPECT_EQ((*gt)->mapped_pages(), 0U);

    GrantMapping bogus{reinterpret_cast<std::byte*>(0x10000), 1, 77};
    SIM_EXPECT_ERRC((*gt)->unmap(bogus), Errc::invalid_argument);
    to_guest.send(1);
    SIM_RECV(to_guest, ended);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimGrantTableTest, SeveralMappingsOfOneGrantKeepItPinnedUntilTheLast) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(1);
        SIM_ASSERT_OK(pages);
        auto ref = (*gh)->grant_access(kDom0, pages->page(0), false);
        SIM_ASSERT_OK(ref);
        link.send(*ref);
        for (;;) {
            SIM_RECV(link, step);
            if (step == 0) break;
            const Status st = (*gh)->end_access(*ref);
            link.send(st ? 0 : static_cast<std::uint64_t>(st.error().code) + 1);
        }
    });
    SIM_RECV(to_guest, ref);
    auto be = backend();
    ASSERT_TRUE(be);
    auto gt1 = be->open_grant_table();
    auto gt2 = be->open_grant_table();
    SIM_ASSERT_OK(gt1);
    SIM_ASSERT_OK(gt2);
    std::int16_t st = 1;
    GrantMapping w = map1(**gt1, static_cast<GrantRef>(ref), true, st);
    GrantMapping r = map1(**gt2, static_cast<GrantRef>(ref), false, st);
    ASSERT_TRUE(w);
    ASSERT_TRUE(r);
    w.page(0)[0] = std::byte{0x42};
    EXPECT_EQ(r.page(0)[0], std::byte{0x42}) << "both map the same guest page";
    EXPECT_EQ(toolstack_->domain_info(guest_)->pinned_grants, 2U);

    auto try_revoke = [&] {
        to_guest.send(1);
        auto v = to_guest.recv();
        return v.value_or(999);
    };
    EXPECT_EQ(try_revoke(), static_cast<std::uint64_t>(Errc::busy) + 1);
    SIM_EXPECT_OK((*gt1)->unmap(w));
    EXPECT_EQ(try_revoke(), static_cast<std::uint64_t>(Errc::busy) + 1) << "still mapped once";
    SIM_EXPECT_OK((*gt2)->unmap(r));
    EXPECT_EQ(try_revoke(), 0U) << "revoked after the last unmap";
    EXPECT_EQ(toolstack_->domain_info(guest_)->pinned_grants, 0U);
    to_guest.send(0);
    EXPECT_TRUE(guest.succeeded());
}

} // namespace
} // namespace dpnb::hv::sim::test
