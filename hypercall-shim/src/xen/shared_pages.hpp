// The guest side's bookkeeping of pages shared through gntalloc: which grant belongs to
// which page, and which grants the caller currently holds out to the backend.
//
// gntalloc creates the page and its grant together, for one peer domain and with one
// access mode, and ends the grant only when the page is freed. The GuestHypervisor
// interface, written after Xen's in-kernel API, separates allocating from granting, so
// grant_access() hands out the grant the page was born with (one grant per page: a second
// grant_access() before end_access() is refused) and end_access() takes it back.
// Thread safety: none; XenGuestHypervisor holds a mutex around it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv::xen {

class SharedPages {
public:
    // Records `count` pages from `base` whose grants are `refs` (one per page).
    Status add(std::byte* base, std::span<const GrantRef> refs);
    // Forgets the allocation that starts at `base` with `count` pages. Errc::invalid_argument
    // if there is none; Errc::busy while one of its grants is held out.
    Status remove(const std::byte* base, std::uint32_t count);

    // The grant of the page at `page` (page-aligned, inside an allocation), now held out.
    // Errc::invalid_argument for a page we did not share, Errc::exists if held out already.
    Result<GrantRef> grant(const std::byte* page);
    // Takes back a grant held out. Errc::not_found for a ref we do not know,
    // Errc::invalid_argument for one not held out.
    Status end(GrantRef ref);

    std::size_t allocations() const { return by_base_.size(); }
    std::size_t held_out() const { return held_out_; }
    // Every allocation as (base, count), for unsharing at the end.
    std::vector<std::pair<std::byte*, std::uint32_t>> all() const;

private:
    struct Allocation {
        std::byte* base;
        std::vector<GrantRef> refs;
        std::vector<bool> held;
    };
    struct Where {
        std::uintptr_t base;
        std::uint32_t index;
    };

    std::map<std::uintptr_t, Allocation> by_base_;
    std::unordered_map<GrantRef, Where> by_ref_;
    std::size_t held_out_ = 0;
};

} // namespace dpnb::hv::xen
