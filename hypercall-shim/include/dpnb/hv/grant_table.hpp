// Backend-side grant table operations: batched map/unmap of a guest's grant references and
// batched grant copy, each with a per-operation status (GNTST_*), as libxengnttab offers them.
// Implementations: XenGrantTable (libxengnttab over /dev/xen/gntdev) and SimGrantTable (the
// simulated hypervisor, which validates grants exactly as Xen does).
//
// Thread safety: one GrantTable handle may be used by one thread at a time; each lcore
// opens its own handle.
#pragma once

#include <cstdint>
#include <span>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv {

// One grant to map.
struct GrantMapRequest {
    DomId dom;
    GrantRef ref;
    bool writable;
};

// Pages mapped by one map() call: `count` pages, contiguous from `base`, in request order.
// `handle` belongs to the implementation (e.g. a gntdev index); pass the whole struct back
// to unmap().
struct GrantMapping {
    std::byte* base = nullptr;
    std::uint32_t count = 0;
    std::uint64_t handle = 0;

    std::byte* page(std::uint32_t i) const {
        return base + static_cast<std::size_t>(i) * kPageSize;
    }
    explicit operator bool() const { return base != nullptr; }
};

// Layout-identical to xengnttab_grant_copy_segment_t so that the Xen implementation hands an
// array of these to xengnttab_grant_copy() without conversion.
struct GrantCopySegment {
    union Ptr {
        void* virt; // local buffer (may cross a local page boundary)
        struct {
            GrantRef ref;
            std::uint16_t offset; // offset + len must not exceed the page
            std::uint16_t domid;
        } foreign;
    } source, dest;
    std::uint16_t len;
    std::uint16_t flags; // kSourceGref and/or kDestGref
    std::int16_t status; // out: GNTST_*

    static constexpr std::uint16_t kSourceGref = 1U << 0; // GNTCOPY_source_gref
    static constexpr std::uint16_t kDestGref = 1U << 1;   // GNTCOPY_dest_gref

    static GrantCopySegment to_guest(const void* src, DomId dom, GrantRef ref, std::uint16_t offset,
                                     std::uint16_t len) {
        GrantCopySegment s{};
        s.source.virt = const_cast<void*>(src);
        s.dest.foreign = {ref, offset, dom};
        s.len = len;
        s.flags = kDestGref;
        return s;
    }
    static GrantCopySegment from_guest(DomId dom, GrantRef ref, std::uint16_t offset, void* dst,
                                       std::uint16_t len) {
        GrantCopySegment s{};
        s.source.foreign = {ref, offset, dom};
        s.dest.virt = dst;
        s.len = len;
        s.flags = kSourceGref;
        return s;
    }
};
static_assert(sizeof(GrantCopySegment) == 24);

class GrantTable {
public:
    virtual ~GrantTable() = default;

    // Maps every request, or none. On success returns the mapping and sets every status to
    // GNTST_okay. On failure returns an empty mapping and sets `status[i]` for each request
    // (the failing ones get the reason; the others GNTST_okay or GNTST_general_error when
    // the implementation could not tell). `status.size()` must equal `reqs.size()`.
    // Every request of one batch has the same `writable` (gntdev maps a batch with one
    // protection); the Xen implementation refuses a mixed batch (GNTST_general_error).
    virtual GrantMapping map(std::span<const GrantMapRequest> reqs,
                             std::span<std::int16_t> status) = 0;

    // Unmaps every page of a mapping returned by map(). After this the guest may end access.
    virtual Status unmap(GrantMapping& mapping) = 0;

    // Performs every segment in one hypervisor call; each segment's status tells its result.
    // Returns an error only when the call itself could not be made.
    virtual Status copy(std::span<GrantCopySegment> segs) = 0;

    // Grants currently mapped through this handle (for leak checks and metrics).
    virtual std::uint64_t mapped_pages() const = 0;
};

} // namespace dpnb::hv
