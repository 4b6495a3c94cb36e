// XenGrantTable: GrantTable over libxengnttab (/dev/xen/gntdev), as a backend in dom0 or a
// driver domain maps and copies its guests' grants.
//
// map(): one xengnttab_map_grant_refs() per batch, one protection per batch (gntdev fixes
// the protection of a whole mapping at mmap time; a mixed batch is refused). gntdev reports
// a failed batch only as EINVAL, so the per-grant statuses are found afterwards by
// map_status.hpp's probing.
//
// unmap(): removes the pages from our address space at once. If the kernel still holds a
// reference on a page (a copy in progress, a pinned DMA mapping such as VFIO's), gntdev
// defers the hypervisor unmap until that reference drops (gnttab_unmap_refs_async), so
// the guest's end of access keeps failing until then: Xen stays safe. A NIC writing into
// the page through an IOMMU mapping keeps writing into the guest's frame, though, so the
// data plane unmaps only buffers the NIC has given back (map mode: after the frame was
// received; reuse mode: the translation table's in-flight count).
//
// Not used: gntdev's unmap notification (xengnttab_map_grant_ref_notify: clear a byte
// and/or signal an event channel when the mapping goes away, also when the process dies).
// It would let a frontend notice a crashed backend on its ring pages without waiting for the
// toolstack; dpnetback relies on xenstore for that today.
//
// copy(): our GrantCopySegment array goes to xengnttab_grant_copy() as it is (same layout,
// checked at compile time). Segments the kernel would refuse, failing the whole call
// (offset + len past the page, no grant side, unknown flags), get GNTST_bad_copy_arg and
// are left out; the others are copied in as few calls as the gaps allow.
//
// Destroying the handle does not unmap outstanding mappings: they stay in the address
// space (a page the NIC may still write is never unmapped behind the data plane's back).
#pragma once

extern "C" { // the Xen libraries' headers have no C++ guards
#include <xengnttab.h>
}

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "dpnb/hv/grant_table.hpp"
#include "xen/map_status.hpp"
#include "xen/xen_log.hpp"

namespace dpnb::hv::xen {

class XenGrantTable final : public GrantTable, private BatchMapper {
public:
    // Largest batch map() accepts (Linux gntdev's default `limit` per mapping request).
    static constexpr std::uint32_t kMaxBatch = 64 * 1024;

    // `max_grants`: xengnttab_set_max_grants(); 0 leaves the kernel's default.
    static Result<std::unique_ptr<XenGrantTable>> open(std::uint32_t max_grants);
    ~XenGrantTable() override;
    XenGrantTable(const XenGrantTable&) = delete;
    XenGrantTable& operator=(const XenGrantTable&) = delete;

    GrantMapping map(std::span<const GrantMapRequest> reqs,
                     std::span<std::int16_t> status) override;
    Status unmap(GrantMapping& mapping) override;
    Status copy(std::span<GrantCopySegment> segs) override;
    std::uint64_t mapped_pages() const override { return mapped_.load(std::memory_order_relaxed); }

private:
    XenGrantTable() = default;

    void* map_batch(std::span<const std::uint32_t> domids, std::span<const std::uint32_t> refs,
                    bool writable, int& err) override;
    void unmap_batch(void* addr, std::uint32_t count) override;
    Status copy_run(std::span<GrantCopySegment> run);
    std::uint64_t tag() const { return reinterpret_cast<std::uintptr_t>(this); }

    QuietLogger log_;
    xengnttab_handle* h_ = nullptr;
    std::vector<std::uint32_t> domids_; // scratch for map(), reserved at open
    std::vector<std::uint32_t> refs_;
    std::atomic<std::uint64_t> mapped_{0};
};

// Would the kernel accept this segment? (gntdev_grant_copy_seg's checks.)
bool copy_segment_valid(const GrantCopySegment& seg) noexcept;

} // namespace dpnb::hv::xen
