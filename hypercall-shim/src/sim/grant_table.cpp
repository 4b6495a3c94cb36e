// SimGrantTable: grant map, unmap and copy for a backend process, performed by
// hypervisor-side code in that process (as Xen's runs beside the caller), with Xen's
// validation and status codes (xen/common/grant_table.c):
//   GNTST_bad_domain      the domain does not exist or is dying
//   GNTST_bad_gntref      ref beyond the guest's grant table
//   GNTST_general_error   entry not GTF_permit_access for us (revoked, wrong domain),
//                         writable map or copy into a GTF_readonly grant, unstable entry,
//                         a mixed read-only/writable map batch (as the Xen implementation)
//   GNTST_bad_page        the entry names a frame outside the guest's memory
//   GNTST_bad_copy_arg    offset + length beyond the page
// A mapping is a real mmap of the guest's page (PROT_READ for read-only maps, so a write
// through it faults); a batch is mapped contiguously into one reserved region.
#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <cstring>
#include <unordered_map>
#include <vector>

#include "sim/client.hpp"

namespace dpnb::hv::sim {
namespace {

namespace gntst = netif::gntst;

class SimGrantTable final : public GrantTable {
public:
    explicit SimGrantTable(std::shared_ptr<BackendCore> core) : core_(std::move(core)) {}
    ~SimGrantTable() override;

    GrantMapping map(std::span<const GrantMapRequest> reqs,
                     std::span<std::int16_t> status) override;
    Status unmap(GrantMapping& mapping) override;
    Status copy(std::span<GrantCopySegment> segs) override;
    std::uint64_t mapped_pages() const override { return mapped_pages_; }

private:
    struct Pin {
        std::shared_ptr<ForeignDomain> dom;
        GrantRef ref;
        std::uint32_t frame;
    };
    struct Record {
        std::byte* base;
        std::uint32_t count;
        bool writable;
        std::vector<Pin> pins;
    };

    // The domain of the previous lookup is kept for the rest of one call: batches usually
    // name one guest.
    std::shared_ptr<ForeignDomain> lookup(DomId dom, std::int16_t& st) {
        if (last_ && last_->dom == dom) return last_;
        last_ = core_->foreign(dom, st);
        return last_;
    }
    void unpin_all(const std::vector<Pin>& pins, bool writable) {
        for (const Pin& p : pins)
            core_->unpin(*p.dom, p.ref, writable);
    }
    std::int16_t copy_one(GrantCopySegment& seg);

    std::shared_ptr<BackendCore> core_;
    std::shared_ptr<ForeignDomain> last_;
    std::unordered_map<std::uint64_t, Record> mappings_;
    std::uint64_t next_handle_ = 1;
    std::uint64_t mapped_pages_ = 0;
};

SimGrantTable::~SimGrantTable() {
    // Like closing /dev/xen/gntdev: what is still mapped is unmapped and unpinned.
    if (!mappings_.empty())
        spdlog::warn("sim grant table closed with {} page(s) still mapped", mapped_pages_);
    for (auto& [handle, rec] : mappings_) {
        ::munmap(rec.base, std::size_t{rec.count} * kPageSize);
        unpin_all(rec.pins, rec.writable);
    }
}

GrantMapping SimGrantTable::map(std::span<const GrantMapRequest> reqs,
                                std::span<std::int16_t> status) {
    last_.reset();
    const std::size_t n = std::min(reqs.size(), status.size());
    if (reqs.size() != status.size() || reqs.empty() || reqs.size() > UINT32_MAX / kPageSize) {
        for (std::size_t i = 0; i < n; ++i)
            status[i] = gntst::kGeneralError;
        return {};
    }
    const bool writable = reqs[0].writable;
    for (const GrantMapRequest& r : reqs) {
        if (r.writable != writable) {
            std::fill(status.begin(), status.end(), gntst::kGeneralError);
            return {};
        }
    }

    std::vector<Pin> pins;
    pins.reserve(reqs.size());
    bool failed = false;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        std::int16_t st = gntst::kOkay;
        auto dom = lookup(reqs[i].dom, st);
        PinResult pin{st, 0};
        if (dom) pin = core_->pin(*dom, reqs[i].ref, writable);
        status[i] = pin.status;
        if (pin.status != gntst::kOkay) {
            failed = true;
            continue;
        }
        pins.push_back({dom, reqs[i].ref, pin.frame});
    }
    last_.reset();
    if (failed) {
        unpin_all(pins, writable);
        return {};
    }

    const std::size_t bytes = reqs.size() * kPageSize;
    void* region =
        ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    bool mapped = region != MAP_FAILED;
    auto* base = static_cast<std::byte*>(region);
    const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    for (std::size_t i = 0; mapped && i < pins.size(); ++i) {
        void* page =
            ::mmap(base + i * kPageSize, kPageSize, prot, MAP_SHARED | MAP_FIXED,
                   writable ? pins[i].dom->memory_fd.get() : pins[i].dom->memory_ro_fd.get(),
                   static_cast<off_t>(std::uint64_t{pins[i].frame} * kPageSize));
        mapped = page != MAP_FAILED;
    }
    if (!mapped) {
        if (region != MAP_FAILED) ::munmap(region, bytes);
        unpin_all(pins, writable);
        std::fill(status.begin(), status.end(), gntst::kGeneralError);
        return {};
    }
    const std::uint64_t handle = next_handle_++;
    const auto count = static_cast<std::uint32_t>(reqs.size());
    mappings_.emplace(handle, Record{base, count, writable, std::move(pins)});
    mapped_pages_ += count;
    return {base, count, handle};
}

Status SimGrantTable::unmap(GrantMapping& mapping) {
    auto it = mappings_.find(mapping.handle);
    if (it == mappings_.end() || it->second.base != mapping.base ||
        it->second.count != mapping.count)
        return make_error(Errc::invalid_argument, "not a mapping of this grant table");
    Record& rec = it->second;
    // Unmap before unpinning: once the guest can end access, we must not reach the page.
    if (::munmap(rec.base, std::size_t{rec.count} * kPageSize) != 0)
        return sys_error(Errc::io, "munmap grant mapping");
    unpin_all(rec.pins, rec.writable);
    mapped_pages_ -= rec.count;
    mappings_.erase(it);
    mapping = {};
    return ok();
}

std::int16_t SimGrantTable::copy_one(GrantCopySegment& seg) {
    constexpr std::uint16_t kKnown = GrantCopySegment::kSourceGref | GrantCopySegment::kDestGref;
    if ((seg.flags & ~kKnown) != 0) return gntst::kGeneralError;
    const bool src_gref = (seg.flags & GrantCopySegment::kSourceGref) != 0;
    const bool dst_gref = (seg.flags & GrantCopySegment::kDestGref) != 0;
    if ((src_gref && seg.source.foreign.offset + std::size_t{seg.len} > kPageSize) ||
        (dst_gref && seg.dest.foreign.offset + std::size_t{seg.len} > kPageSize))
        return gntst::kBadCopyArg;

    struct Side {
        std::shared_ptr<ForeignDomain> dom;
        GrantRef ref = 0;
        bool pinned = false;
        std::byte* ptr = nullptr;
    } src, dst;
    std::int16_t st = gntst::kOkay;
    auto acquire = [&](Side& side, const GrantCopySegment::Ptr& p, bool writable) {
        side.dom = lookup(p.foreign.domid, st);
        if (!side.dom) return false;
        const PinResult r = core_->pin(*side.dom, p.foreign.ref, writable);
        st = r.status;
        if (st != gntst::kOkay) return false;
        side.ref = p.foreign.ref;
        side.pinned = true;
        side.ptr = side.dom->memory.data() + std::size_t{r.frame} * kPageSize + p.foreign.offset;
        return true;
    };
    bool ok_src = true;
    bool ok_dst = true;
    if (src_gref)
        ok_src = acquire(src, seg.source, false);
    else
        src.ptr = static_cast<std::byte*>(seg.source.virt);
    if (ok_src) {
        if (dst_gref)
            ok_dst = acquire(dst, seg.dest, true);
        else
            dst.ptr = static_cast<std::byte*>(seg.dest.virt);
    }
    if (ok_src && ok_dst && seg.len != 0) std::memmove(dst.ptr, src.ptr, seg.len);
    if (dst.pinned) core_->unpin(*dst.dom, dst.ref, true);
    if (src.pinned) core_->unpin(*src.dom, src.ref, false);
    return st;
}

Status SimGrantTable::copy(std::span<GrantCopySegment> segs) {
    last_.reset();
    for (GrantCopySegment& seg : segs)
        seg.status = copy_one(seg);
    last_.reset();
    return ok();
}

} // namespace

std::unique_ptr<GrantTable> make_grant_table(std::shared_ptr<BackendCore> core) {
    return std::make_unique<SimGrantTable>(std::move(core));
}

} // namespace dpnb::hv::sim
