// The driver table (dpnb/pmd/driver_caps.hpp): lookups by driver name and by the devargs of
// a virtual device, the conservative defaults an unknown PMD gets, and the quirks of the PMDs
// the tests and the lab run on (which of them has vhost-net workers to place). Pure data: no
// EAL.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "dpnb/pmd/driver_caps.hpp"

namespace dpnb::pmd {
namespace {

TEST(DriverTable, EveryRowNamesOneDriverWithAReason) {
    std::set<std::string_view> seen;
    for (const DriverRow& r : driver_table()) {
        EXPECT_EQ(r.driver.rfind("net_", 0), 0u) << r.driver << ": ethdev driver names start so";
        EXPECT_TRUE(seen.insert(r.driver).second) << r.driver << " has two rows";
        EXPECT_FALSE(r.caps.rx_buffers_why.empty()) << r.driver;
        EXPECT_TRUE(r.caps.tx_external_buffers || !r.caps.tx_external_buffers_why.empty())
            << r.driver << ": a driver that cannot send guest pages says why";
        EXPECT_EQ(find_driver(r.driver), &r);
        EXPECT_EQ(&driver_caps(r.driver), &r.caps);
    }
}

TEST(DriverTable, AnUnknownDriverGetsTheConservativeDefaults) {
    for (const std::string name : {"net_unheard_of", "", "net_TAP", "net_tap "}) {
        EXPECT_EQ(find_driver(name), nullptr) << name;
        const DriverCaps& c = driver_caps(name);
        EXPECT_EQ(&c, &kUnknownDriver) << name;
        // Copy RX: a PMD not known to fill our buffers in order never gets guest buffers.
        EXPECT_EQ(c.rx_buffers, RxBufferUse::own_memory);
        EXPECT_NE(c.rx_buffers_why.find("unknown"), std::string_view::npos);
        // Interrupts only where the PMD arms them itself; a level fd is never assumed.
        EXPECT_EQ(c.rx_interrupt, RxInterrupt::armed);
        EXPECT_FALSE(c.tso_ipv6) << "IPv6 GSO is segmented in software";
        EXPECT_FALSE(c.equal_rx_tx_queues);
        EXPECT_TRUE(c.spreads_unmatched_frames) << "no queue is assumed to be a guest's alone";
        EXPECT_TRUE(c.burst_within_ready);
        EXPECT_TRUE(c.tx_external_buffers);
    }
}

TEST(DriverTable, NetTap) {
    const DriverCaps& c = driver_caps("net_tap");
    EXPECT_NE(find_driver("net_tap"), nullptr);
    EXPECT_EQ(c.rx_buffers, RxBufferUse::in_order);
    EXPECT_EQ(c.rx_interrupt, RxInterrupt::level);
    EXPECT_FALSE(c.tso_ipv6) << "librte_gso segments TCP over IPv4 only";
    EXPECT_TRUE(c.equal_rx_tx_queues);
    EXPECT_TRUE(c.spreads_unmatched_frames);
    EXPECT_TRUE(c.burst_within_ready);
}

TEST(DriverTable, DescriptorRingNics) {
    for (const char* name : {"net_ixgbe", "net_ixgbe_vf", "net_i40e", "net_iavf", "net_ice"}) {
        const DriverCaps& c = driver_caps(name);
        EXPECT_NE(find_driver(name), nullptr) << name;
        EXPECT_EQ(c.rx_buffers, RxBufferUse::in_order) << name;
        EXPECT_EQ(c.rx_interrupt, RxInterrupt::armed) << name;
        EXPECT_TRUE(c.tso_ipv6) << name;
        EXPECT_FALSE(c.spreads_unmatched_frames) << name;
        EXPECT_FALSE(c.burst_within_ready) << name;
    }
}

TEST(DriverTable, VirtualPmdsThatCopy) {
    for (const char* name : {"net_ring", "net_null", "net_af_packet", "net_memif", "net_pcap"}) {
        const DriverCaps& c = driver_caps(name);
        EXPECT_NE(find_driver(name), nullptr) << name;
        EXPECT_EQ(c.rx_buffers, RxBufferUse::own_memory) << name;
    }
    EXPECT_EQ(driver_caps("net_ring").rx_interrupt, RxInterrupt::none);
    EXPECT_EQ(driver_caps("net_null").rx_interrupt, RxInterrupt::none);
}

// virtio_user over vhost-net (or vhost-user): copy RX, TSO over both IP versions, a queue
// pair per tap queue with frames spread over all, and no guest pages on TX.
TEST(DriverTable, VirtioUser) {
    const DriverCaps& c = driver_caps("net_virtio_user");
    EXPECT_NE(find_driver("net_virtio_user"), nullptr);
    EXPECT_EQ(c.rx_buffers, RxBufferUse::own_memory);
    EXPECT_EQ(c.rx_interrupt, RxInterrupt::armed);
    EXPECT_TRUE(c.tso_ipv6) << "virtio offers TSO only with HOST_TSO4 and HOST_TSO6";
    EXPECT_TRUE(c.equal_rx_tx_queues);
    EXPECT_TRUE(c.spreads_unmatched_frames);
    EXPECT_FALSE(c.tx_external_buffers) << "vhost reads only DPDK's memory";
    EXPECT_NE(c.tx_external_buffers_why.find("vhost"), std::string_view::npos);
    EXPECT_TRUE(c.vhost_kernel_workers);
}

// What the Engine asks before it probes a port: the row its devargs name, as DPDK's vdev bus
// finds the driver (name or alias as a prefix of the device name).
TEST(DriverTable, VdevDevargsFindTheirRow) {
    struct Case {
        const char* devargs;
        const char* driver; // nullptr: no row
    };
    for (const Case& c : {
             Case{"virtio_user0,path=/dev/vhost-net,queues=2,iface=vhost0", "net_virtio_user"},
             Case{"net_virtio_user1,path=/tmp/vhost.sock", "net_virtio_user"},
             Case{"net_tap0,iface=dpnb0", "net_tap"},
             Case{"net_tap_ctshared,iface=x", "net_tap"},
             Case{"eth_tap1", "net_tap"},
             Case{"net_ring0", "net_ring"},
             Case{"eth_null0,size=64", "net_null"},
             Case{"net_af_packet0,iface=veth0", "net_af_packet"},
             Case{"net_e1000_igb_vf0", "net_e1000_igb_vf"}, // the longer name wins
             Case{"0000:03:10.0", nullptr},
             Case{"ctring", nullptr}, // an ethdev rte_eth_from_rings named
             Case{"net_af_xdp0,iface=eth0", nullptr},
             Case{"", nullptr},
         }) {
        const DriverRow* r = find_vdev_driver(c.devargs);
        if (c.driver == nullptr) {
            EXPECT_EQ(r, nullptr) << c.devargs << ": " << (r != nullptr ? r->driver : "");
        } else {
            ASSERT_NE(r, nullptr) << c.devargs;
            EXPECT_EQ(r->driver, c.driver) << c.devargs;
        }
    }
}

// Only virtio_user has vhost-net workers: no other port costs the Engine a scan of /proc.
TEST(DriverTable, OnlyVirtioUserHasVhostKernelWorkers) {
    for (const DriverRow& r : driver_table())
        EXPECT_EQ(r.caps.vhost_kernel_workers, r.driver == "net_virtio_user") << r.driver;
    EXPECT_FALSE(kUnknownDriver.vhost_kernel_workers);
    const DriverRow* vu = find_vdev_driver("virtio_user0,path=/dev/vhost-net");
    ASSERT_NE(vu, nullptr);
    EXPECT_TRUE(vu->caps.vhost_kernel_workers);
    for (const char* dev : {"net_tap0,iface=x", "net_ring0"})
        EXPECT_FALSE(find_vdev_driver(dev)->caps.vhost_kernel_workers) << dev;
}

TEST(DriverTable, InterruptKindNames) {
    EXPECT_STREQ(to_string(RxInterrupt::none), "none");
    EXPECT_STREQ(to_string(RxInterrupt::armed), "armed");
    EXPECT_STREQ(to_string(RxInterrupt::level), "level");
}

} // namespace
} // namespace dpnb::pmd
