// The inputs of the DMA policy (dma_policy.hpp) as the system has them: the domain type
// (/sys/hypervisor/guest_type), DPDK's IOVA mode, and each port's device (its DPDK bus, and
// for a PCI device the kernel driver it is bound to and whether vfio runs it without an
// IOMMU). DmaProbe is the boundary; SystemDmaProbe reads files under a root ("/", or a
// directory a test fills in) and DPDK; FixedDmaProbe is the simulated twin that returns the
// facts it is given (an engine test of a PCI NIC in a PV domain, where no such NIC exists).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "dpnb/pmd/dma_policy.hpp"

namespace dpnb::pmd {

struct DmaDevice {
    DeviceBus bus = DeviceBus::other;
    DeviceBinding binding = DeviceBinding::unknown;
    std::string name;          // the DPDK device name ("net_tap0", "0000:03:00.0")
    std::string kernel_driver; // PCI: the kernel driver bound to it ("" when none or unread)
};

class DmaProbe {
public:
    virtual ~DmaProbe() = default;
    virtual DomainType domain_type() const = 0;
    virtual IovaMode iova_mode() const = 0; // after EAL initialisation
    virtual DmaDevice device(std::uint16_t port_id) const = 0;
};

class SystemDmaProbe final : public DmaProbe {
public:
    explicit SystemDmaProbe(std::filesystem::path root = "/") : root_(std::move(root)) {}
    DomainType domain_type() const override;
    IovaMode iova_mode() const override;
    DmaDevice device(std::uint16_t port_id) const override;

    // The device `name` on DPDK bus `bus`, classified from the files under the root.
    DmaDevice classify(std::string_view bus, std::string_view name) const;

private:
    std::filesystem::path root_;
};

// The system's probe (files under /, DPDK).
const DmaProbe& system_dma_probe();

class FixedDmaProbe final : public DmaProbe {
public:
    DomainType domain = DomainType::not_xen;
    IovaMode iova = IovaMode::va;
    DmaDevice dev; // every port's device

    DomainType domain_type() const override { return domain; }
    IovaMode iova_mode() const override { return iova; }
    DmaDevice device(std::uint16_t) const override { return dev; }
};

// Pure parts of the probe.
// The text of /sys/hypervisor/guest_type ("PV", "PVH", "HVM", with or without a newline).
DomainType parse_guest_type(std::string_view text) noexcept;
// A DPDK bus name: "vdev", "pci", anything else.
DeviceBus parse_bus(std::string_view bus) noexcept;
// A PCI device's binding from its kernel driver ("" when none) and whether its IOMMU group is
// vfio's no-IOMMU group.
DeviceBinding pci_binding(std::string_view kernel_driver, bool noiommu_group) noexcept;

} // namespace dpnb::pmd
