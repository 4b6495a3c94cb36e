// The real IOMMU boundary (dpnb/hv/dma_mapper.hpp): guest pages DMA-mapped into DPDK's own
// vfio container (VFIO_IOMMU_MAP_DMA through rte_vfio_container_dma_map), where DPDK keeps
// its own memory and the passed-through NIC's IOMMU group is. The IOVA is the one the data
// path hands the NIC for the same address (GuestBufferPool::attach, rte_pktmbuf_attach_extbuf):
// the address itself with IOVA as VA (what DPDK picks with an IOMMU): one call per range;
// each page's rte_mem_virt2iova() with IOVA as PA: one call per page, since consecutive
// virtual pages need not be consecutive there. A page whose IOVA cannot be read
// (RTE_BAD_IOVA: not mapped, or /proc/self/pagemap unreadable) fails the map; nothing of
// the range stays mapped.
//
// DPDK keeps every such mapping in a table of its own (VFIO_MAX_USER_MEM_MAPS, 256 in DPDK
// 22.11, per container, adjacent ranges merged); a map beyond it fails like any refused
// map (docs/operations.md, "Deployment matrix").
#pragma once

#include "dpnb/hv/dma_mapper.hpp"

namespace dpnb::pmd {

class VfioDmaMapper final : public hv::DmaMapper {
public:
    Status map(std::uintptr_t va, std::size_t len) override;
    Status unmap(std::uintptr_t va, std::size_t len) override;
};

} // namespace dpnb::pmd
