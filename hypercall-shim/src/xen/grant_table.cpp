// XenGrantTable: batched map/unmap and grant copy over libxengnttab (see grant_table.hpp).
#include "xen/grant_table.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <string>

#include "xen/xen_errors.hpp"

namespace dpnb::hv::xen {

namespace gntst = netif::gntst;

// Our GrantCopySegment is handed to the library without conversion.
using LibSeg = xengnttab_grant_copy_segment_t;
static_assert(sizeof(GrantCopySegment) == sizeof(LibSeg));
static_assert(alignof(GrantCopySegment) == alignof(LibSeg));
static_assert(offsetof(GrantCopySegment, source) == offsetof(LibSeg, source));
static_assert(offsetof(GrantCopySegment, dest) == offsetof(LibSeg, dest));
static_assert(offsetof(GrantCopySegment, source.virt) == offsetof(LibSeg, source.virt));
static_assert(offsetof(GrantCopySegment, source.foreign.ref) ==
              offsetof(LibSeg, source.foreign.ref));
static_assert(offsetof(GrantCopySegment, source.foreign.offset) ==
              offsetof(LibSeg, source.foreign.offset));
static_assert(offsetof(GrantCopySegment, source.foreign.domid) ==
              offsetof(LibSeg, source.foreign.domid));
static_assert(offsetof(GrantCopySegment, dest.virt) == offsetof(LibSeg, dest.virt));
static_assert(offsetof(GrantCopySegment, dest.foreign.ref) == offsetof(LibSeg, dest.foreign.ref));
static_assert(offsetof(GrantCopySegment, dest.foreign.offset) ==
              offsetof(LibSeg, dest.foreign.offset));
static_assert(offsetof(GrantCopySegment, dest.foreign.domid) ==
              offsetof(LibSeg, dest.foreign.domid));
static_assert(offsetof(GrantCopySegment, len) == offsetof(LibSeg, len));
static_assert(offsetof(GrantCopySegment, flags) == offsetof(LibSeg, flags));
static_assert(offsetof(GrantCopySegment, status) == offsetof(LibSeg, status));
static_assert(sizeof(GrantCopySegment::source.foreign.ref) == sizeof(LibSeg::source.foreign.ref));
static_assert(sizeof(GrantCopySegment::len) == sizeof(LibSeg::len));
static_assert(sizeof(GrantCopySegment::status) == sizeof(LibSeg::status));
static_assert(GrantCopySegment::kSourceGref == GNTCOPY_source_gref);
static_assert(GrantCopySegment::kDestGref == GNTCOPY_dest_gref);

Result<std::unique_ptr<XenGrantTable>> XenGrantTable::open(std::uint32_t max_grants) {
    std::unique_ptr<XenGrantTable> t(new XenGrantTable());
    t->h_ = xengnttab_open(t->log_.get(), 0);
    if (t->h_ == nullptr) {
        const int err = errno;
        return device_error(kGntdevPath, "xengnttab_open", err, t->log_.last());
    }
    // Must come before any other call on the handle.
    if (max_grants != 0 && xengnttab_set_max_grants(t->h_, max_grants) != 0) {
        const int err = errno;
        return call_error(Errc::io, "xengnttab_set_max_grants(" + std::to_string(max_grants) + ")",
                          err, t->log_.last());
    }
    // Bursts are far below this; map() grows the scratch only for a larger batch.
    t->domids_.reserve(512);
    t->refs_.reserve(512);
    return t;
}

XenGrantTable::~XenGrantTable() {
    if (h_ != nullptr) xengnttab_close(h_);
}

void* XenGrantTable::map_batch(std::span<const std::uint32_t> domids,
                               std::span<const std::uint32_t> refs, bool writable, int& err) {
    // The library takes non-const arrays but only reads them.
    void* p = xengnttab_map_grant_refs(
        h_, static_cast<std::uint32_t>(refs.size()), const_cast<std::uint32_t*>(domids.data()),
        const_cast<std::uint32_t*>(refs.data()), writable ? (PROT_READ | PROT_WRITE) : PROT_READ);
    err = p == nullptr ? errno : 0;
    return p;
}

void XenGrantTable::unmap_batch(void* addr, std::uint32_t count) {
    // A probe mapping that we just made: unmapping it cannot fail unless gntdev is broken,
    // in which case the pages stay mapped (a leak, never a use-after-unmap).
    (void)xengnttab_unmap(h_, addr, count);
}

GrantMapping XenGrantTable::map(std::span<const GrantMapRequest> reqs,
                                std::span<std::int16_t> status) {
    auto set_all = [&](std::int16_t st) {
        for (auto& s : status)
            s = st;
    };
    const std::size_t n = reqs.size();
    if (status.size() != n || n == 0 || n > kMaxBatch) {
        set_all(gntst::kGeneralError);
        return {};
    }

    const bool writable = reqs[0].writable;
    domids_.clear();
    refs_.clear();
    for (const GrantMapRequest& r : reqs) {
        if (r.writable != writable) { // gntdev maps a batch with one protection
            set_all(gntst::kGeneralError);
            return {};
        }
        domids_.push_back(r.dom);
        refs_.push_back(r.ref);
    }

    int err = 0;
    void* p = map_batch(domids_, refs_, writable, err);
    if (p != nullptr) {
        mapped_.fetch_add(n, std::memory_order_relaxed);
        set_all(gntst::kOkay);
        return GrantMapping{static_cast<std::byte*>(p), static_cast<std::uint32_t>(n), tag()};
    }
    if (err == EINVAL)
        discover_map_status(*this, domids_, refs_, writable, status); // Xen refused a grant
    else
        set_all(gntst::kGeneralError); // ENOMEM and friends: not the guest's doing
    return {};
}

Status XenGrantTable::unmap(GrantMapping& mapping) {
    if (!mapping || mapping.count == 0)
        return make_error(Errc::invalid_argument, "unmap of an empty grant mapping");
    if (mapping.handle != tag())
        return make_error(Errc::invalid_argument, "grant mapping was not made by this handle");
    if (xengnttab_unmap(h_, mapping.base, mapping.count) != 0) {
        const int err = errno;
        return call_error(Errc::io,
                          "xengnttab_unmap of " + std::to_string(mapping.count) + " pages", err,
                          log_.last());
    }
    mapped_.fetch_sub(mapping.count, std::memory_order_relaxed);
    mapping = GrantMapping{};
    return ok();
}

bool copy_segment_valid(const GrantCopySegment& seg) noexcept {
    constexpr std::uint16_t kBoth = GrantCopySegment::kSourceGref | GrantCopySegment::kDestGref;
    if ((seg.flags & kBoth) == 0 || (seg.flags & ~kBoth) != 0) return false;
    if ((seg.flags & GrantCopySegment::kSourceGref) != 0 &&
        std::size_t{seg.source.foreign.offset} + seg.len > kPageSize)
        return false;
    if ((seg.flags & GrantCopySegment::kDestGref) != 0 &&
        std::size_t{seg.dest.foreign.offset} + seg.len > kPageSize)
        return false;
    return true;
}

Status XenGrantTable::copy_run(std::span<GrantCopySegment> run) {
    if (run.empty()) return ok();
    if (xengnttab_grant_copy(h_, static_cast<std::uint32_t>(run.size()),
                             reinterpret_cast<LibSeg*>(run.data())) != 0) {
        const int err = errno;
        return call_error(Errc::io,
                          "xengnttab_grant_copy of " + std::to_string(run.size()) + " segments",
                          err, log_.last());
    }
    return ok();
}

Status XenGrantTable::copy(std::span<GrantCopySegment> segs) {
    std::size_t run_start = 0;
    for (std::size_t i = 0; i < segs.size(); ++i) {
        if (copy_segment_valid(segs[i])) continue;
        segs[i].status = gntst::kBadCopyArg;
        Status st = copy_run(segs.subspan(run_start, i - run_start));
        if (!st) return st;
        run_start = i + 1;
    }
    return copy_run(segs.subspan(run_start));
}

} // namespace dpnb::hv::xen
