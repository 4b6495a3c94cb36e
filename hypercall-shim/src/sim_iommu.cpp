// The simulated IOMMU (dpnb/hv/dma_mapper.hpp).
#include <cerrno>
#include <iterator>

#include "dpnb/hv/dma_mapper.hpp"

namespace dpnb::hv {

Status SimIommu::map(std::uintptr_t va, std::size_t len) {
    const std::lock_guard lock(mu_);
    ++maps_;
    if (fail_maps_ != 0) {
        --fail_maps_;
        ++refused_;
        return make_error(Errc::io, "simulated IOMMU: map refused (injected)", ENOSPC);
    }
    if (len == 0 || va % kPageSize != 0 || len % kPageSize != 0) {
        ++refused_;
        return make_error(Errc::invalid_argument, "simulated IOMMU: unaligned map");
    }
    // Overlap: the first range starting at or after va, and the one before it.
    auto next = ranges_.lower_bound(va);
    const bool hits_next = next != ranges_.end() && next->first < va + len;
    const bool hits_prev =
        next != ranges_.begin() && std::prev(next)->first + std::prev(next)->second > va;
    if (hits_next || hits_prev) {
        ++refused_;
        return make_error(Errc::exists, "simulated IOMMU: map overlaps a mapped range");
    }
    ranges_.emplace(va, len);
    return ok();
}

Status SimIommu::unmap(std::uintptr_t va, std::size_t len) {
    const std::lock_guard lock(mu_);
    ++unmaps_;
    if (fail_unmaps_ != 0) {
        --fail_unmaps_;
        ++refused_;
        return make_error(Errc::io, "simulated IOMMU: unmap refused (injected)");
    }
    auto it = ranges_.find(va);
    if (it == ranges_.end() || it->second != len) {
        ++refused_;
        return make_error(Errc::not_found, "simulated IOMMU: unmap of a range not mapped");
    }
    ranges_.erase(it);
    return ok();
}

bool SimIommu::mapped(std::uint64_t iova, std::size_t len) const {
    const std::lock_guard lock(mu_);
    auto it = ranges_.upper_bound(iova);
    if (it == ranges_.begin()) return false;
    --it;
    return iova >= it->first && iova + len <= it->first + it->second;
}

std::size_t SimIommu::ranges() const {
    const std::lock_guard lock(mu_);
    return ranges_.size();
}

std::uint64_t SimIommu::map_calls() const {
    const std::lock_guard lock(mu_);
    return maps_;
}

std::uint64_t SimIommu::unmap_calls() const {
    const std::lock_guard lock(mu_);
    return unmaps_;
}

std::uint64_t SimIommu::refused() const {
    const std::lock_guard lock(mu_);
    return refused_;
}

void SimIommu::fail_next_maps(unsigned n) {
    const std::lock_guard lock(mu_);
    fail_maps_ = n;
}

void SimIommu::fail_next_unmaps(unsigned n) {
    const std::lock_guard lock(mu_);
    fail_unmaps_ = n;
}

} // namespace dpnb::hv
