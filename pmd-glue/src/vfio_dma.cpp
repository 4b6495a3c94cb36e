// Guest pages into DPDK's vfio container (dpnb/pmd/vfio_dma.hpp).
#include "dpnb/pmd/vfio_dma.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_memory.h>
#include <rte_vfio.h>

#include <string>

namespace dpnb::pmd {
namespace {

Error vfio_error(const char* what, std::uintptr_t va, std::size_t len) {
    const int err = rte_errno;
    return make_error(Errc::io,
                      std::string(what) + " of " + std::to_string(len) + " bytes at " +
                          std::to_string(va) + ": " + rte_strerror(err),
                      err);
}

// A page whose IOVA rte_mem_virt2iova cannot give (IOVA as PA): rte_errno says nothing then.
Error no_iova_error(const char* what, std::uintptr_t va) {
    return make_error(Errc::io, std::string(what) + ": no IOVA for the page at " +
                                    std::to_string(va) +
                                    " (not mapped, or /proc/self/pagemap unreadable)");
}

bool iova_is_va() {
    return rte_eal_iova_mode() == RTE_IOVA_VA;
}

} // namespace

Status VfioDmaMapper::map(std::uintptr_t va, std::size_t len) {
    if (iova_is_va()) {
        if (rte_vfio_container_dma_map(RTE_VFIO_DEFAULT_CONTAINER_FD, va, va, len) != 0)
            return vfio_error("vfio DMA map", va, len);
        return ok();
    }
    for (std::size_t off = 0; off < len; off += hv::kPageSize) {
        const rte_iova_t iova = rte_mem_virt2iova(reinterpret_cast<const void*>(va + off));
        const bool mapped =
            iova != RTE_BAD_IOVA && rte_vfio_container_dma_map(RTE_VFIO_DEFAULT_CONTAINER_FD,
                                                               va + off, iova, hv::kPageSize) == 0;
        if (mapped) continue;
        Error e = iova == RTE_BAD_IOVA ? no_iova_error("vfio DMA map", va + off)
                                       : vfio_error("vfio DMA map", va + off, hv::kPageSize);
        if (off != 0) (void)unmap(va, off); // what this call mapped goes
        return e;
    }
    return ok();
}

Status VfioDmaMapper::unmap(std::uintptr_t va, std::size_t len) {
    if (iova_is_va()) {
        if (rte_vfio_container_dma_unmap(RTE_VFIO_DEFAULT_CONTAINER_FD, va, va, len) != 0)
            return vfio_error("vfio DMA unmap", va, len);
        return ok();
    }
    Status result = ok();
    for (std::size_t off = 0; off < len; off += hv::kPageSize) {
        const rte_iova_t iova = rte_mem_virt2iova(reinterpret_cast<const void*>(va + off));
        if (iova == RTE_BAD_IOVA)
            result = no_iova_error("vfio DMA unmap", va + off);
        else if (rte_vfio_container_dma_unmap(RTE_VFIO_DEFAULT_CONTAINER_FD, va + off, iova,
                                              hv::kPageSize) != 0)
            result = vfio_error("vfio DMA unmap", va + off, hv::kPageSize);
    }
    return result;
}

} // namespace dpnb::pmd
