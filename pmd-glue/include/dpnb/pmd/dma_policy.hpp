// Which memory a port's device may be given, by the domain dpnetbackd runs in and how the
// device reaches memory: guest pages (zero-copy RX, grant-mapped TX slots), only the daemon's
// own DPDK memory (copy), or none at all (the port is refused). The zero-copy path gives the
// NIC rte_mem_virt2iova() of a grant-mapped page: right where that is the address the device
// uses (a virtual device, whose buffers the CPU writes; a PVH/HVM driver domain whose
// passed-through NIC sees guest-physical addresses; behind an IOMMU once the page is
// DMA-mapped into vfio's container), wrong in a PV domain, where
// /proc/self/pagemap yields pseudo-physical frames and not the machine addresses a device
// needs (docs/operations.md, "Deployment matrix").
//
// The decision is a table of rules, first match wins; pure (no DPDK, no files) so that every
// combination of inputs is unit-tested. dma_probe.hpp reads the inputs from the system.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace dpnb::pmd {

// /sys/hypervisor/guest_type, or not on Xen at all (bare metal or another hypervisor: the
// simulator's guests), or Xen whose domain type could not be read.
enum class DomainType : std::uint8_t { not_xen, pv, pvh, hvm, unknown };
// The DPDK bus of the port's device: "vdev" (a virtual PMD), "pci", anything else.
enum class DeviceBus : std::uint8_t { virtual_device, pci, other };
// How the device reaches memory. A virtual device has no binding (none): its buffers are
// written by the kernel (net_tap, net_af_packet, net_af_xdp, virtio_user on vhost-net) or by
// the process (net_ring, net_memif, net_null) through virtual addresses. A PCI device is
// bound to vfio-pci behind an IOMMU, to vfio-pci in no-IOMMU mode, to a UIO driver
// (uio_pci_generic, igb_uio), or to a kernel driver (a bifurcated PMD such as mlx5).
enum class DeviceBinding : std::uint8_t {
    none,
    vfio_iommu,
    vfio_noiommu,
    uio,
    kernel_driver,
    unknown,
};
// DPDK's IOVA mode (rte_eal_iova_mode()): the addresses it gives devices.
enum class IovaMode : std::uint8_t { pa, va };

enum class DmaVerdict : std::uint8_t {
    zero_copy, // guest pages may be the device's buffers
    copy_only, // only the daemon's DPDK memory: RX mode copy, every TX slot copied
    refused,   // the device cannot be driven correctly here at all: the port does not start
};

struct DmaInputs {
    DomainType domain = DomainType::unknown;
    DeviceBus bus = DeviceBus::other;
    DeviceBinding binding = DeviceBinding::unknown;
    IovaMode iova = IovaMode::va;
};

// One rule: the sets of inputs it matches (bit 1 << value of each enum) and its verdict.
struct DmaRule {
    std::uint8_t domains = 0;
    std::uint8_t buses = 0;
    std::uint8_t bindings = 0;
    std::uint8_t iovas = 0;
    DmaVerdict verdict = DmaVerdict::refused;
    std::string_view reason; // why, in words an operator can act on
    std::string_view works;  // the deployment that gives zero copy (empty for zero_copy)
    // zero_copy only with every guest page DMA-mapped into the device's IOMMU container
    // (hv::DmaMapper) before the device sees it, and unmapped before its grant is.
    bool dma_map = false;
};

// The rules in the order they are tried.
std::span<const DmaRule> dma_rules() noexcept;
// The first rule that matches `in`. Every combination of inputs matches one (tested).
const DmaRule& decide_dma(const DmaInputs& in) noexcept;
bool matches(const DmaRule& rule, const DmaInputs& in) noexcept;
// The rule that refuses every device on `bus` in `domain`, whatever its binding and IOVA
// mode (known before EAL starts: a PCI NIC in a PV domain), or nullptr.
const DmaRule* refuses_bus(DomainType domain, DeviceBus bus) noexcept;

const char* to_string(DomainType t) noexcept;
const char* to_string(DeviceBus b) noexcept;
const char* to_string(DeviceBinding b) noexcept;
const char* to_string(IovaMode m) noexcept;
const char* to_string(DmaVerdict v) noexcept;

} // namespace dpnb::pmd
