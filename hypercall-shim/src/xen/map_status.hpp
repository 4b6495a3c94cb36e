// Per-grant statuses for a batch map that libxengnttab can only do all or nothing.
//
// gntdev maps a batch inside mmap(): when Xen refuses any grant of the batch, mmap fails
// with EINVAL and the per-grant GNTST_* codes are lost. The caller still has to learn which
// grant was bad (to answer that one request with an error and keep the others), so the
// batch is mapped again by halves, down to single grants, and every probe that succeeds is
// unmapped at once. A failing single grant asked for writable is tried read-only, which
// tells a read-only grant (GNTST_permission_denied) from a bad one (GNTST_bad_gntref).
// This runs only after a failure; its cost is about 2 * bad * log2(n) map calls, at most
// 2n - 1 plus one per failing writable grant.
#pragma once

#include <cstdint>
#include <span>

namespace dpnb::hv::xen {

// A raw, all-or-nothing batch map (libxengnttab's xengnttab_map_grant_refs).
class BatchMapper {
public:
    virtual ~BatchMapper() = default;
    // Maps the grants, all with one protection, to contiguous pages. On failure returns
    // nullptr and sets `err` (an errno value: EINVAL when Xen refused some grant).
    virtual void* map_batch(std::span<const std::uint32_t> domids,
                            std::span<const std::uint32_t> refs, bool writable, int& err) = 0;
    virtual void unmap_batch(void* addr, std::uint32_t count) = 0;
};

// Fills `status` (GNTST_*) for a batch whose map just failed with EINVAL. Every status is
// written. If no grant fails on its own (the guest changed its grants in between), every
// status is GNTST_general_error, so that the caller never sees an all-okay failure.
void discover_map_status(BatchMapper& mapper, std::span<const std::uint32_t> domids,
                         std::span<const std::uint32_t> refs, bool writable,
                         std::span<std::int16_t> status);

} // namespace dpnb::hv::xen
