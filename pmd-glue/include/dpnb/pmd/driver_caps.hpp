// What dpnetback must know about a PMD beyond what rte_eth_dev_info reports: how its RX uses
// the buffers it is given, how its RX interrupt behaves, where its offloads have gaps, how it
// spreads frames over queues. (Whether its device may be given guest memory depends on the bus
// and the domain, not on the driver: dma_policy.hpp.)
// One row per driver name (rte_eth_dev_info::driver_name), each quirk with its reason; a
// driver without a row gets kUnknownDriver, the defaults that are safe for any PMD. This is
// the only place that names drivers: the rest of pmd-glue asks PortCaps::driver_caps.
//
// Pure data (no DPDK), so that the table is unit-tested on its own.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace dpnb::pmd {

// How the device's RX relates to the buffers it is given.
enum class RxBufferUse : std::uint8_t {
    in_order,   // writes the buffers it allocated, in allocation order: zero copy possible
    own_memory, // copies from its own memory (or hands over a peer's mbufs): copy only
};

// How an RX queue wakes a sleeping lcore.
enum class RxInterrupt : std::uint8_t {
    none,  // no interrupt: the lcore polls the queue every poll_sleep
    armed, // rte_eth_dev_rx_intr_enable before each sleep, disable after (hardware NICs)
    // The PMD has no enable operation, and its fd is readable while frames wait (net_tap:
    // the tun queue's own fd). The lcore arms it through epoll.
    level,
};
const char* to_string(RxInterrupt kind) noexcept;

struct DriverCaps {
    RxBufferUse rx_buffers = RxBufferUse::own_memory;
    std::string_view rx_buffers_why = "unknown PMD: assumed to copy into its own memory";
    // The interrupt the PMD offers. Port::start() settles each queue: `armed` only when the
    // queue has an fd and the PMD accepts arming it, `level` only when it has an fd;
    // otherwise `none`. `level` is never guessed: an fd that is not readable while frames
    // wait would let the lcore sleep over them.
    RxInterrupt rx_interrupt = RxInterrupt::armed;
    // Its TSO also segments TCP over IPv6 (otherwise IPv6 GSO packets are segmented in
    // software).
    bool tso_ipv6 = false;
    // Configure as many RX queues as TX queues.
    bool equal_rx_tx_queues = false;
    // Frames no rte_flow rule matches are spread over every RX queue (not left on queue 0),
    // so no RX queue can be one guest's alone: mac_flow steering is not used.
    bool spreads_unmatched_frames = true;
    // It reads a frame before it allocates the buffer that replaces it, and drops the frame
    // when that allocation fails: a zero-copy queue asks it for no more frames than the
    // guest pool holds buffers (otherwise a frame the guest has no buffer for is lost
    // instead of waiting in the device).
    bool burst_within_ready = true;
    // RX hands over the mbufs a peer enqueued (net_ring): what the buffers are is the
    // peer's doing. A port whose configuration says the peer fills the RX queue's own
    // buffers (PortConfig::rx_peer_fills_pool) is in order, as a NIC's DMA.
    bool rx_from_peer = false;
    // TX can send guest pages attached to mbufs as external buffers (grant-mapped slots).
    // Otherwise every TX slot is grant-copied into daemon mbufs.
    bool tx_external_buffers = true;
    std::string_view tx_external_buffers_why = "";
    // Over the kernel's vhost-net its queue pairs are served by vhost-net's worker threads,
    // which start when the port is probed or started: the Engine lists them around those
    // steps and places them (EngineOptions::place_vhost_workers). No other PMD makes any,
    // so no other port costs a scan of /proc.
    bool vhost_kernel_workers = false;
};

// Safe for any PMD: copy RX, IPv6 TSO in software, no MAC steering, interrupts only where
// the PMD arms them.
inline constexpr DriverCaps kUnknownDriver{};

struct DriverRow {
    std::string_view driver;
    DriverCaps caps;
    // The other name DPDK's vdev bus knows the driver by (RTE_PMD_REGISTER_ALIAS).
    std::string_view alias = {};
};

std::span<const DriverRow> driver_table() noexcept;
// The row of `driver`, or nullptr.
const DriverRow* find_driver(std::string_view driver) noexcept;
// The row of the virtual device that devargs ("net_tap0,iface=x", "virtio_user0,path=...")
// name, matched as DPDK's vdev bus matches a driver: the device name starts with the
// driver's name or alias (the longest match wins). Known before the device is probed;
// nullptr for a PCI address or a driver without a row.
const DriverRow* find_vdev_driver(std::string_view devargs) noexcept;
// The capabilities of `driver`: its row's, or kUnknownDriver.
const DriverCaps& driver_caps(std::string_view driver) noexcept;

} // namespace dpnb::pmd
