// The IOMMU boundary: making pages reachable by a device behind an IOMMU (vfio) and taking
// them away again. A PCI NIC bound to vfio-pci behind an IOMMU reaches only what was
// DMA-mapped into its container; DPDK maps its own memory there, and guest pages the NIC is
// handed (grant-mapped RX buffers, TX slots, static grants) must be mapped by us, before the
// NIC sees them, and unmapped before their grants are (with vfio pinning the page, gntdev's
// unmap would wait on it). Interface only, with addresses as plain numbers, so that the
// persistent-grant table (hypercall-shim) uses it without depending on DPDK.
//
// Implementations: pmd::VfioDmaMapper (DPDK's vfio container; pmd-glue) and SimIommu below,
// the simulated twin that records what is mapped and checks every call.
//
// Thread safety: every implementation may be called from several threads at once (each lcore
// maps its own runs; the control thread maps static grants).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv {

class DmaMapper {
public:
    virtual ~DmaMapper() = default;
    // Makes the page-aligned range [va, va + len) reachable by the device at the IOVAs the
    // data path gives it for those addresses (the address itself with IOVA as VA, each
    // page's rte_mem_virt2iova() with IOVA as PA). All or nothing.
    virtual Status map(std::uintptr_t va, std::size_t len) = 0;
    // Takes back exactly a range map() made. On failure the range stays mapped (the device
    // may still reach it): the caller must not release the pages.
    virtual Status unmap(std::uintptr_t va, std::size_t len) = 0;
};

// The simulated IOMMU: IOVA = VA (DPDK's mode with an IOMMU, and the tests' mode without
// hugepages). Refuses a map that overlaps a mapped range and an unmap of anything but a
// mapped range, counts calls, can fail the next maps or unmaps on purpose, and answers
// whether a range is mapped.
class SimIommu final : public DmaMapper {
public:
    Status map(std::uintptr_t va, std::size_t len) override;
    Status unmap(std::uintptr_t va, std::size_t len) override;

    // True when every byte of [iova, iova + len) lies in one mapped range.
    bool mapped(std::uint64_t iova, std::size_t len) const;
    std::size_t ranges() const; // mapped ranges now
    std::uint64_t map_calls() const;
    std::uint64_t unmap_calls() const;
    // Calls refused: overlaps, unmaps of what is not mapped, injected failures.
    std::uint64_t refused() const;
    // The next `n` map (unmap) calls fail as an IOMMU out of entries would.
    void fail_next_maps(unsigned n);
    void fail_next_unmaps(unsigned n);

private:
    mutable std::mutex mu_;
    std::map<std::uint64_t, std::size_t> ranges_; // start -> length
    std::uint64_t maps_ = 0, unmaps_ = 0, refused_ = 0;
    unsigned fail_maps_ = 0, fail_unmaps_ = 0;
};

} // namespace dpnb::hv
