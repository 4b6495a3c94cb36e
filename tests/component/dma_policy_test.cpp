// The DMA policy (dpnb/pmd/dma_policy.hpp) over every combination of its inputs, against a
// model written separately from its rule table; and the probe's pure parts and its reading of
// a system tree (dpnb/pmd/dma_probe.hpp) laid out in a temporary directory. No EAL.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "dpnb/pmd/dma_policy.hpp"
#include "dpnb/pmd/dma_probe.hpp"

namespace dpnb::pmd {
namespace {

namespace fs = std::filesystem;

constexpr DomainType kDomains[] = {DomainType::not_xen, DomainType::pv, DomainType::pvh,
                                   DomainType::hvm, DomainType::unknown};
constexpr DeviceBus kBuses[] = {DeviceBus::virtual_device, DeviceBus::pci, DeviceBus::other};
constexpr DeviceBinding kBindings[] = {DeviceBinding::none,          DeviceBinding::vfio_iommu,
                                       DeviceBinding::vfio_noiommu,  DeviceBinding::uio,
                                       DeviceBinding::kernel_driver, DeviceBinding::unknown};
constexpr IovaMode kIovas[] = {IovaMode::pa, IovaMode::va};

// The deployment matrix of docs/operations.md, written as plain conditions.
DmaVerdict model(const DmaInputs& in) {
    if (in.bus == DeviceBus::virtual_device) return DmaVerdict::zero_copy;
    if (in.domain == DomainType::pv || in.domain == DomainType::unknown) return DmaVerdict::refused;
    const bool no_iommu =
        in.binding == DeviceBinding::uio || in.binding == DeviceBinding::vfio_noiommu;
    if (no_iommu && in.iova == IovaMode::va) return DmaVerdict::refused;
    const bool pvh_hvm = in.domain == DomainType::pvh || in.domain == DomainType::hvm;
    if (no_iommu && in.bus == DeviceBus::pci && pvh_hvm) return DmaVerdict::zero_copy;
    // Behind an IOMMU: zero copy with the pages DMA-mapped into vfio's container.
    if (in.binding == DeviceBinding::vfio_iommu && in.bus == DeviceBus::pci && pvh_hvm)
        return DmaVerdict::zero_copy;
    return DmaVerdict::copy_only;
}

// Which verdicts need guest pages DMA-mapped for the device.
bool model_dma_map(const DmaInputs& in) {
    return model(in) == DmaVerdict::zero_copy && in.binding == DeviceBinding::vfio_iommu &&
           in.bus == DeviceBus::pci;
}

std::string describe(const DmaInputs& in) {
    return std::string(to_string(in.domain)) + "/" + to_string(in.bus) + "/" +
           to_string(in.binding) + "/" + to_string(in.iova);
}

TEST(DmaPolicy, EveryCombinationGetsTheMatrixVerdict) {
    std::set<const DmaRule*> used;
    unsigned n = 0;
    for (DomainType d : kDomains)
        for (DeviceBus b : kBuses)
            for (DeviceBinding k : kBindings)
                for (IovaMode i : kIovas) {
                    const DmaInputs in{d, b, k, i};
                    const DmaRule* first = nullptr;
                    for (const DmaRule& r : dma_rules())
                        if (matches(r, in)) {
                            first = &r;
                            break;
                        }
                    ASSERT_NE(first, nullptr) << describe(in) << " matches no rule";
                    const DmaRule& got = decide_dma(in);
                    EXPECT_EQ(&got, first) << describe(in);
                    EXPECT_EQ(got.verdict, model(in))
                        << describe(in) << ": " << to_string(got.verdict) << " (" << got.reason
                        << ")";
                    EXPECT_EQ(got.dma_map, model_dma_map(in)) << describe(in);
                    used.insert(&got);
                    ++n;
                }
    EXPECT_EQ(n, 5u * 3u * 6u * 2u);
    EXPECT_EQ(used.size(), dma_rules().size()) << "a rule no input reaches";
}

TEST(DmaPolicy, EveryRuleSaysWhyAndWhatWorks) {
    for (const DmaRule& r : dma_rules()) {
        EXPECT_FALSE(r.reason.empty());
        EXPECT_EQ(r.works.empty(), r.verdict == DmaVerdict::zero_copy) << r.reason;
    }
}

TEST(DmaPolicy, APciNicInAPvDomainIsRefusedNamingTheDeploymentsThatWork) {
    for (DeviceBinding k : kBindings)
        for (IovaMode i : kIovas) {
            const DmaRule& r = decide_dma({DomainType::pv, DeviceBus::pci, k, i});
            ASSERT_EQ(r.verdict, DmaVerdict::refused) << to_string(k) << "/" << to_string(i);
            EXPECT_NE(r.reason.find("pseudo-physical"), std::string_view::npos);
            EXPECT_NE(r.works.find("PVH or HVM driver domain"), std::string_view::npos);
            EXPECT_NE(r.works.find("net_af_xdp"), std::string_view::npos);
            EXPECT_NE(r.works.find("net_af_packet"), std::string_view::npos);
            EXPECT_NE(r.works.find("vhost-net"), std::string_view::npos);
        }
}

TEST(DmaPolicy, VirtualDevicesWorkEverywhere) {
    for (DomainType d : kDomains)
        for (IovaMode i : kIovas)
            EXPECT_EQ(decide_dma({d, DeviceBus::virtual_device, DeviceBinding::none, i}).verdict,
                      DmaVerdict::zero_copy)
                << to_string(d);
}

TEST(DmaPolicy, PassedThroughNicsInPvhAndHvmDomains) {
    for (DomainType d : {DomainType::pvh, DomainType::hvm}) {
        for (DeviceBinding k : {DeviceBinding::uio, DeviceBinding::vfio_noiommu}) {
            EXPECT_EQ(decide_dma({d, DeviceBus::pci, k, IovaMode::pa}).verdict,
                      DmaVerdict::zero_copy);
            const DmaRule& va = decide_dma({d, DeviceBus::pci, k, IovaMode::va});
            EXPECT_EQ(va.verdict, DmaVerdict::refused);
            EXPECT_NE(va.works.find("--iova-mode=pa"), std::string_view::npos);
        }
        // Behind an IOMMU: zero copy, each run or static grant DMA-mapped into the container
        // (whatever the IOVA mode: VA maps the address, PA each page's guest-physical one).
        for (IovaMode i : kIovas) {
            const DmaRule& r = decide_dma({d, DeviceBus::pci, DeviceBinding::vfio_iommu, i});
            EXPECT_EQ(r.verdict, DmaVerdict::zero_copy);
            EXPECT_TRUE(r.dma_map);
            EXPECT_NE(r.reason.find("DMA-mapped into DPDK's vfio container"),
                      std::string_view::npos);
            EXPECT_NE(r.reason.find("per run"), std::string_view::npos) << r.reason;
            EXPECT_NE(r.reason.find("per static grant"), std::string_view::npos) << r.reason;
        }
        // Other bindings never need the mapper.
        for (DeviceBinding k : kBindings) {
            if (k == DeviceBinding::vfio_iommu) continue;
            for (IovaMode i : kIovas)
                EXPECT_FALSE(decide_dma({d, DeviceBus::pci, k, i}).dma_map);
        }
        EXPECT_EQ(
            decide_dma({d, DeviceBus::pci, DeviceBinding::kernel_driver, IovaMode::va}).verdict,
            DmaVerdict::copy_only);
    }
}

TEST(DmaPolicy, WithoutXenAPciNicCopies) {
    const DmaRule& r =
        decide_dma({DomainType::not_xen, DeviceBus::pci, DeviceBinding::uio, IovaMode::pa});
    EXPECT_EQ(r.verdict, DmaVerdict::copy_only);
    EXPECT_NE(r.reason.find("simulator"), std::string_view::npos);
    // Behind an IOMMU too: the simulator's guest memory is not handed to a real device.
    for (IovaMode i : kIovas) {
        const DmaRule& v =
            decide_dma({DomainType::not_xen, DeviceBus::pci, DeviceBinding::vfio_iommu, i});
        EXPECT_EQ(v.verdict, DmaVerdict::copy_only);
        EXPECT_FALSE(v.dma_map);
        EXPECT_NE(v.reason.find("simulator"), std::string_view::npos);
        EXPECT_NE(v.works.find("vfio-pci behind an IOMMU"), std::string_view::npos);
    }
}

TEST(DmaPolicy, UnknownXenDomainRefusesDevices) {
    EXPECT_EQ(
        decide_dma({DomainType::unknown, DeviceBus::pci, DeviceBinding::uio, IovaMode::pa}).verdict,
        DmaVerdict::refused);
    EXPECT_EQ(
        decide_dma({DomainType::unknown, DeviceBus::other, DeviceBinding::unknown, IovaMode::va})
            .verdict,
        DmaVerdict::refused);
}

// Known before EAL starts: whether every PCI device would be refused in this domain.
TEST(DmaPolicy, ABusRefusedWhateverTheBindingAndIovaMode) {
    for (DomainType d : {DomainType::pv, DomainType::unknown}) {
        const DmaRule* r = refuses_bus(d, DeviceBus::pci);
        ASSERT_NE(r, nullptr) << to_string(d);
        EXPECT_EQ(r->verdict, DmaVerdict::refused);
        EXPECT_EQ(r, &decide_dma({d, DeviceBus::pci, DeviceBinding::uio, IovaMode::pa}));
    }
    for (DomainType d : {DomainType::not_xen, DomainType::pvh, DomainType::hvm})
        EXPECT_EQ(refuses_bus(d, DeviceBus::pci), nullptr) << to_string(d);
    for (DomainType d : kDomains)
        EXPECT_EQ(refuses_bus(d, DeviceBus::virtual_device), nullptr) << to_string(d);
}

TEST(DmaPolicy, Names) {
    EXPECT_STREQ(to_string(DomainType::pvh), "PVH");
    EXPECT_STREQ(to_string(DeviceBus::virtual_device), "vdev");
    EXPECT_STREQ(to_string(DeviceBinding::vfio_noiommu), "vfio_noiommu");
    EXPECT_STREQ(to_string(IovaMode::pa), "PA");
    EXPECT_STREQ(to_string(DmaVerdict::copy_only), "copy_only");
}

TEST(DmaProbe, GuestTypeText) {
    EXPECT_EQ(parse_guest_type("PV\n"), DomainType::pv);
    EXPECT_EQ(parse_guest_type("PVH\n"), DomainType::pvh);
    EXPECT_EQ(parse_guest_type("HVM"), DomainType::hvm);
    for (const char* t : {"", "pv", "PV2", "\n", "PVHVM", " PV"})
        EXPECT_EQ(parse_guest_type(t), DomainType::unknown) << t;
}

TEST(DmaProbe, BusNames) {
    EXPECT_EQ(parse_bus("vdev"), DeviceBus::virtual_device);
    EXPECT_EQ(parse_bus("pci"), DeviceBus::pci);
    for (const char* b : {"", "auxiliary", "vmbus", "PCI"})
        EXPECT_EQ(parse_bus(b), DeviceBus::other) << b;
}

TEST(DmaProbe, PciBindings) {
    EXPECT_EQ(pci_binding("vfio-pci", false), DeviceBinding::vfio_iommu);
    EXPECT_EQ(pci_binding("vfio-pci", true), DeviceBinding::vfio_noiommu);
    EXPECT_EQ(pci_binding("uio_pci_generic", false), DeviceBinding::uio);
    EXPECT_EQ(pci_binding("igb_uio", false), DeviceBinding::uio);
    EXPECT_EQ(pci_binding("mlx5_core", false), DeviceBinding::kernel_driver);
    EXPECT_EQ(pci_binding("ixgbe", true), DeviceBinding::kernel_driver);
    EXPECT_EQ(pci_binding("", false), DeviceBinding::unknown);
}

// A system tree under a temporary root.
class DmaProbeFiles : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() /
                ("dpnb-dma-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root_);
        fs::create_directories(root_);
    }
    void TearDown() override { fs::remove_all(root_); }
    void write(const std::string& rel, const std::string& text) {
        const fs::path p = root_ / rel;
        fs::create_directories(p.parent_path());
        std::ofstream(p) << text;
    }
    // A PCI device bound to `driver` (a symlink into the drivers directory, as sysfs has it).
    void pci_device(const std::string& bdf, const std::string& driver) {
        const fs::path dev = root_ / "sys/bus/pci/devices" / bdf;
        fs::create_directories(dev);
        fs::create_directories(root_ / "sys/bus/pci/drivers" / driver);
        fs::create_directory_symlink("../../../../bus/pci/drivers/" + driver, dev / "driver");
    }
    fs::path root_;
};

TEST_F(DmaProbeFiles, DomainType) {
    SystemDmaProbe probe(root_);
    EXPECT_EQ(probe.domain_type(), DomainType::not_xen) << "nothing says Xen";
    write("sys/hypervisor/type", "xen\n");
    EXPECT_EQ(probe.domain_type(), DomainType::unknown) << "Xen without guest_type";
    write("sys/hypervisor/guest_type", "PV\n");
    EXPECT_EQ(probe.domain_type(), DomainType::pv);
    write("sys/hypervisor/guest_type", "PVH\n");
    EXPECT_EQ(probe.domain_type(), DomainType::pvh);
    write("sys/hypervisor/guest_type", "HVM\n");
    EXPECT_EQ(probe.domain_type(), DomainType::hvm);
    write("sys/hypervisor/guest_type", "something new\n");
    EXPECT_EQ(probe.domain_type(), DomainType::unknown);
}

TEST_F(DmaProbeFiles, XenWithoutSysHypervisorIsNeverBareMetal) {
    fs::create_directories(root_ / "proc/xen");
    EXPECT_EQ(SystemDmaProbe(root_).domain_type(), DomainType::unknown);
}

TEST_F(DmaProbeFiles, Devices) {
    SystemDmaProbe probe(root_);
    const DmaDevice tap = probe.classify("vdev", "net_tap0");
    EXPECT_EQ(tap.bus, DeviceBus::virtual_device);
    EXPECT_EQ(tap.binding, DeviceBinding::none);
    EXPECT_EQ(tap.name, "net_tap0");

    pci_device("0000:00:04.0", "uio_pci_generic");
    DmaDevice d = probe.classify("pci", "0000:00:04.0");
    EXPECT_EQ(d.bus, DeviceBus::pci);
    EXPECT_EQ(d.kernel_driver, "uio_pci_generic");
    EXPECT_EQ(d.binding, DeviceBinding::uio);

    pci_device("0000:00:05.0", "vfio-pci");
    EXPECT_EQ(probe.classify("pci", "0000:00:05.0").binding, DeviceBinding::vfio_iommu);
    // No-IOMMU needs both the module parameter and vfio's no-IOMMU group.
    write("sys/bus/pci/devices/0000:00:05.0/iommu_group/name", "vfio-noiommu\n");
    EXPECT_EQ(probe.classify("pci", "0000:00:05.0").binding, DeviceBinding::vfio_iommu);
    write("sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "Y\n");
    EXPECT_EQ(probe.classify("pci", "0000:00:05.0").binding, DeviceBinding::vfio_noiommu);
    write("sys/bus/pci/devices/0000:00:05.0/iommu_group/name", "\n");
    EXPECT_EQ(probe.classify("pci", "0000:00:05.0").binding, DeviceBinding::vfio_iommu);

    pci_device("0000:00:06.0", "mlx5_core");
    EXPECT_EQ(probe.classify("pci", "0000:00:06.0").binding, DeviceBinding::kernel_driver);
    EXPECT_EQ(probe.classify("pci", "0000:00:07.0").binding, DeviceBinding::unknown)
        << "no such device";
    EXPECT_EQ(probe.classify("pci", "../../../etc").binding, DeviceBinding::unknown);
    const DmaDevice other = probe.classify("auxiliary", "mlx5_core.eth.0");
    EXPECT_EQ(other.bus, DeviceBus::other);
    EXPECT_EQ(other.binding, DeviceBinding::unknown);
}

} // namespace
} // namespace dpnb::pmd
