// The DMA policy's inputs read from the system (dpnb/pmd/dma_probe.hpp).
#include "dpnb/pmd/dma_probe.hpp"

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_ethdev.h>

#include <fstream>
#include <system_error>

namespace dpnb::pmd {
namespace {

namespace fs = std::filesystem;

// The first line of a small sysfs file, "" when it cannot be read.
std::string first_line(const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    if (in) std::getline(in, line);
    return line;
}

bool present(const fs::path& p) {
    std::error_code ec;
    return fs::exists(p, ec);
}

// The path `p` relative to the probe's root (p is absolute).
fs::path under(const fs::path& root, std::string_view p) {
    return root / fs::path(p).relative_path();
}

} // namespace

DomainType parse_guest_type(std::string_view text) noexcept {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.remove_suffix(1);
    if (text == "PV") return DomainType::pv;
    if (text == "PVH") return DomainType::pvh;
    if (text == "HVM") return DomainType::hvm;
    return DomainType::unknown;
}

DeviceBus parse_bus(std::string_view bus) noexcept {
    if (bus == "vdev") return DeviceBus::virtual_device;
    if (bus == "pci") return DeviceBus::pci;
    return DeviceBus::other;
}

DeviceBinding pci_binding(std::string_view kernel_driver, bool noiommu_group) noexcept {
    if (kernel_driver == "vfio-pci")
        return noiommu_group ? DeviceBinding::vfio_noiommu : DeviceBinding::vfio_iommu;
    if (kernel_driver == "uio_pci_generic" || kernel_driver == "igb_uio") return DeviceBinding::uio;
    if (kernel_driver.empty()) return DeviceBinding::unknown;
    return DeviceBinding::kernel_driver;
}

DomainType SystemDmaProbe::domain_type() const {
    const DomainType t = parse_guest_type(first_line(under(root_, "/sys/hypervisor/guest_type")));
    if (t != DomainType::unknown) return t;
    // Xen without the guest_type file (an old kernel, or no CONFIG_XEN_SYS_HYPERVISOR) is
    // "unknown", never "not_xen": a PV domain must not pass for bare metal.
    if (first_line(under(root_, "/sys/hypervisor/type")) == "xen" ||
        present(under(root_, "/proc/xen")) || present(under(root_, "/dev/xen")))
        return DomainType::unknown;
    return DomainType::not_xen;
}

IovaMode SystemDmaProbe::iova_mode() const {
    return rte_eal_iova_mode() == RTE_IOVA_PA ? IovaMode::pa : IovaMode::va;
}

DmaDevice SystemDmaProbe::classify(std::string_view bus, std::string_view name) const {
    DmaDevice d;
    d.bus = parse_bus(bus);
    d.name = name;
    if (d.bus == DeviceBus::virtual_device) {
        d.binding = DeviceBinding::none;
        return d;
    }
    if (d.bus != DeviceBus::pci || name.empty() || name.find('/') != std::string_view::npos)
        return d; // unknown binding
    const fs::path dev = under(root_, "/sys/bus/pci/devices") / std::string(name);
    std::error_code ec;
    const fs::path driver = fs::read_symlink(dev / "driver", ec);
    if (!ec) d.kernel_driver = driver.filename().string();
    // vfio-pci runs a device without an IOMMU only when the module allows it and the device
    // is in vfio's no-IOMMU group; anything less certain counts as behind an IOMMU (copy).
    const bool noiommu =
        first_line(under(root_, "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode")) == "Y" &&
        first_line(dev / "iommu_group" / "name") == "vfio-noiommu";
    d.binding = pci_binding(d.kernel_driver, noiommu);
    return d;
}

DmaDevice SystemDmaProbe::device(std::uint16_t port_id) const {
    rte_eth_dev_info info{};
    if (rte_eth_dev_info_get(port_id, &info) != 0 || info.device == nullptr) return DmaDevice{};
    const rte_bus* bus = rte_dev_bus(info.device);
    const char* bus_name = bus != nullptr ? rte_bus_name(bus) : nullptr;
    const char* dev_name = rte_dev_name(info.device);
    return classify(bus_name != nullptr ? bus_name : "", dev_name != nullptr ? dev_name : "");
}

const DmaProbe& system_dma_probe() {
    static const SystemDmaProbe probe;
    return probe;
}

} // namespace dpnb::pmd
