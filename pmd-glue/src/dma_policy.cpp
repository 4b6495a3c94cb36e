// The DMA rules (dpnb/pmd/dma_policy.hpp), each with the reason it has (docs/operations.md,
// "Deployment matrix").
#include "dpnb/pmd/dma_policy.hpp"

#include <array>

namespace dpnb::pmd {
namespace {

template <class E>
constexpr std::uint8_t bit(E e) {
    return static_cast<std::uint8_t>(1u << static_cast<unsigned>(e));
}
template <class E, class... More>
constexpr std::uint8_t bits(E e, More... more) {
    return static_cast<std::uint8_t>(bit(e) | (0u | ... | bit(more)));
}
constexpr std::uint8_t kAll = 0xff;

using D = DomainType;
using B = DeviceBus;
using K = DeviceBinding;
using I = IovaMode;

constexpr std::uint8_t kDevices = bits(B::pci, B::other);
constexpr std::uint8_t kVerifiable = bits(D::not_xen, D::pvh, D::hvm);
constexpr std::uint8_t kNoIommu = bits(K::uio, K::vfio_noiommu);

constexpr std::string_view kZeroCopyDeployment =
    "a PVH or HVM driver domain with the NIC passed through and bound to vfio-pci behind an "
    "IOMMU, or to uio_pci_generic or vfio-pci in no-IOMMU mode (IOVA as PA)";
constexpr std::string_view kPvWorks =
    "a PVH or HVM driver domain with the NIC passed through (vfio-pci behind an IOMMU, "
    "uio_pci_generic or vfio-pci in no-IOMMU mode: zero copy), or this domain's kernel driver "
    "for the NIC behind a virtual device: net_af_xdp, net_af_packet or virtio_user on "
    "/dev/vhost-net";

constexpr std::array kRules = {
    DmaRule{kAll, bit(B::virtual_device), kAll, kAll, DmaVerdict::zero_copy,
            "a virtual device: no device DMAs; the kernel (net_tap, net_af_packet, net_af_xdp, "
            "virtio_user) or the process writes its buffers at virtual addresses",
            ""},
    DmaRule{bit(D::pv), kDevices, kAll, kAll, DmaVerdict::refused,
            "a device that DMAs, in a PV domain: /proc/self/pagemap gives pseudo-physical "
            "frames, not the machine addresses the device needs (Linux's own drivers go "
            "through swiotlb-xen; DPDK has no Xen PV memory support), so it would DMA to the "
            "wrong pages, DPDK's own rings included",
            kPvWorks},
    DmaRule{bit(D::unknown), kDevices, kAll, kAll, DmaVerdict::refused,
            "a device that DMAs, on Xen, but /sys/hypervisor/guest_type does not say PV, PVH "
            "or HVM: whether the addresses DPDK gives it are machine addresses cannot be told",
            kPvWorks},
    DmaRule{kVerifiable, kDevices, kNoIommu, bit(I::va), DmaVerdict::refused,
            "no IOMMU (uio or vfio no-IOMMU mode) but DPDK's IOVA mode is VA: the device would "
            "be given virtual addresses",
            "EAL option --iova-mode=pa, or vfio-pci behind an IOMMU"},
    DmaRule{bits(D::pvh, D::hvm), bit(B::pci), kNoIommu, bit(I::pa), DmaVerdict::zero_copy,
            "a passed-through device in a PVH/HVM domain sees guest-physical addresses (Xen's "
            "IOMMU translates them), and a grant mapping occupies a guest-physical frame: "
            "/proc/self/pagemap gives the right address",
            ""},
    DmaRule{bit(D::not_xen), bit(B::pci), kNoIommu, bit(I::pa), DmaVerdict::copy_only,
            "not on Xen: guest pages are the simulator's shared memory, neither pinned nor "
            "known to the device",
            kZeroCopyDeployment},
    DmaRule{bits(D::pvh, D::hvm), bit(B::pci), bit(K::vfio_iommu), kAll, DmaVerdict::zero_copy,
            "vfio behind an IOMMU in a PVH/HVM domain: guest pages are DMA-mapped into DPDK's "
            "vfio container per run of grant-mapped pages (map mode, TX slots) and per static "
            "grant (reuse), at the address the NIC is given, before it sees them, and unmapped "
            "before their grants are",
            "", true},
    DmaRule{kVerifiable, kDevices, bit(K::vfio_iommu), kAll, DmaVerdict::copy_only,
            "vfio behind an IOMMU, on a bus other than PCI or not on Xen (guest pages are the "
            "simulator's shared memory, neither pinned nor known to the device): guest pages "
            "are kept from it",
            kZeroCopyDeployment},
    DmaRule{kVerifiable, kDevices, kAll, kAll, DmaVerdict::copy_only,
            "the device is bound to a kernel driver, is on a bus other than PCI, or its "
            "binding could not be read: guest pages are kept from it",
            kZeroCopyDeployment},
};

} // namespace

std::span<const DmaRule> dma_rules() noexcept {
    return kRules;
}

bool matches(const DmaRule& r, const DmaInputs& in) noexcept {
    return (r.domains & bit(in.domain)) != 0 && (r.buses & bit(in.bus)) != 0 &&
           (r.bindings & bit(in.binding)) != 0 && (r.iovas & bit(in.iova)) != 0;
}

const DmaRule& decide_dma(const DmaInputs& in) noexcept {
    for (const DmaRule& r : kRules)
        if (matches(r, in)) return r;
    // Unreachable (the rules cover every combination: dma_policy_test); refuse if not.
    return kRules[1];
}

const DmaRule* refuses_bus(DomainType domain, DeviceBus bus) noexcept {
    const DmaRule* first = nullptr;
    for (unsigned k = 0; k <= static_cast<unsigned>(DeviceBinding::unknown); ++k)
        for (IovaMode iova : {IovaMode::pa, IovaMode::va}) {
            const DmaRule& r = decide_dma({domain, bus, static_cast<DeviceBinding>(k), iova});
            if (r.verdict != DmaVerdict::refused) return nullptr;
            if (first == nullptr) first = &r;
        }
    return first;
}

const char* to_string(DomainType t) noexcept {
    switch (t) {
    case DomainType::not_xen:
        return "not_xen";
    case DomainType::pv:
        return "PV";
    case DomainType::pvh:
        return "PVH";
    case DomainType::hvm:
        return "HVM";
    case DomainType::unknown:
        return "unknown";
    }
    return "unknown";
}

const char* to_string(DeviceBus b) noexcept {
    switch (b) {
    case DeviceBus::virtual_device:
        return "vdev";
    case DeviceBus::pci:
        return "pci";
    case DeviceBus::other:
        return "other";
    }
    return "other";
}

const char* to_string(DeviceBinding b) noexcept {
    switch (b) {
    case DeviceBinding::none:
        return "none";
    case DeviceBinding::vfio_iommu:
        return "vfio";
    case DeviceBinding::vfio_noiommu:
        return "vfio_noiommu";
    case DeviceBinding::uio:
        return "uio";
    case DeviceBinding::kernel_driver:
        return "kernel_driver";
    case DeviceBinding::unknown:
        return "unknown";
    }
    return "unknown";
}

const char* to_string(IovaMode m) noexcept {
    return m == IovaMode::pa ? "PA" : "VA";
}

const char* to_string(DmaVerdict v) noexcept {
    switch (v) {
    case DmaVerdict::zero_copy:
        return "zero_copy";
    case DmaVerdict::copy_only:
        return "copy_only";
    case DmaVerdict::refused:
        return "refused";
    }
    return "refused";
}

} // namespace dpnb::pmd
