// The driver table (dpnb/pmd/driver_caps.hpp): one row per PMD whose quirks dpnetback knows,
// each quirk with the reason it has (docs/datapath.md, "Constraints", and the PMDs' sources
// in DPDK 22.11).
#include "dpnb/pmd/driver_caps.hpp"

#include <array>

namespace dpnb::pmd {
namespace {

// A NIC with a descriptor ring: it fills the buffers of its ring in ring order, arms its
// queue interrupts, segments TCP over both IP versions, sends frames no rte_flow rule
// matches to queue 0 (RSS is not configured), leaves a frame in the NIC when no buffer
// replaces it.
constexpr DriverCaps kDescriptorRing{
    .rx_buffers = RxBufferUse::in_order,
    .rx_buffers_why = "descriptor ring",
    .rx_interrupt = RxInterrupt::armed,
    .tso_ipv6 = true,
    .equal_rx_tx_queues = false,
    .spreads_unmatched_frames = false,
    .burst_within_ready = false,
};

// A virtual PMD whose RX copies from memory of its own (or hands over a peer's mbufs): copy
// RX only, so the zero-copy quirks do not matter.
constexpr DriverCaps own_memory(std::string_view why, RxInterrupt intr) {
    DriverCaps c;
    c.rx_buffers = RxBufferUse::own_memory;
    c.rx_buffers_why = why;
    c.rx_interrupt = intr;
    return c;
}

constexpr std::array kDrivers = {
    DriverRow{
        "net_tap",
        {
            // Scatter off, readv() fills the head buffer of the queue's chain, and each
            // replacement becomes the new head: the buffers fill in allocation order.
            .rx_buffers = RxBufferUse::in_order,
            .rx_buffers_why =
                "readv() fills the head buffer, replaced in allocation order (RX scatter off)",
            // No rx_queue_intr_enable (-ENOTSUP); the queue's fd is the tun queue's own,
            // readable while frames wait.
            .rx_interrupt = RxInterrupt::level,
            // Its TSO is librte_gso in the PMD, which segments TCP over IPv4 only.
            .tso_ipv6 = false,
            // The tap is created with one tun queue per queue pair.
            .equal_rx_tx_queues = true,
            // The kernel spreads frames over every tun queue by flow hash; rte_flow rules
            // (tc flower) only divert the frames they match.
            .spreads_unmatched_frames = true,
            // tap_rx_pkt readv()s into the head buffer, then allocates its replacement;
            // when that fails it drops the frame (rx_nombuf) and stops reading until the
            // next SIGIO.
            .burst_within_ready = true,
        },
        "eth_tap",
    },
    DriverRow{"net_ixgbe", kDescriptorRing},
    DriverRow{"net_ixgbe_vf", kDescriptorRing},
    DriverRow{"net_i40e", kDescriptorRing},
    DriverRow{"net_i40e_vf", kDescriptorRing},
    DriverRow{"net_iavf", kDescriptorRing},
    DriverRow{"net_ice", kDescriptorRing},
    DriverRow{"net_e1000_igb", kDescriptorRing},
    DriverRow{"net_e1000_igb_vf", kDescriptorRing},
    DriverRow{"net_e1000_em", kDescriptorRing},
    DriverRow{"net_igc", kDescriptorRing},
    // No RX interrupt: the lcore polls it every poll_sleep.
    DriverRow{"net_ring",
              [] {
                  DriverCaps c = own_memory("hands over the peer's mbufs", RxInterrupt::none);
                  c.rx_from_peer = true;
                  return c;
              }(),
              "eth_ring"},
    DriverRow{"net_af_packet",
              own_memory("copies frames from its packet mmap ring", RxInterrupt::armed),
              "eth_af_packet"},
    DriverRow{"net_memif", own_memory("copies frames from the shared region", RxInterrupt::armed)},
    DriverRow{"net_pcap", own_memory("copies frames from libpcap", RxInterrupt::armed), "eth_pcap"},
    DriverRow{"net_null", own_memory("makes up frames", RxInterrupt::none), "eth_null"},
    DriverRow{
        "net_virtio_user",
        {
            // Its vhost backend (the kernel's vhost-net, or a vhost-user process) reaches
            // only the memory virtio_user registers with it, DPDK's own, and spreads a frame
            // over several buffers (mergeable RX buffers).
            .rx_buffers = RxBufferUse::own_memory,
            .rx_buffers_why = "its vhost backend writes only into DPDK's memory (the memory "
                              "table virtio_user gives it), a frame over several buffers",
            // A call eventfd per queue; the PMD arms it by clearing VRING_AVAIL_F_NO_INTERRUPT.
            .rx_interrupt = RxInterrupt::armed,
            // VIRTIO_NET_F_HOST_TSO4 and HOST_TSO6 are both needed for the PMD to offer TSO.
            .tso_ipv6 = true,
            // A queue pair per tap queue; vhost-net's tap spreads frames over them by flow
            // hash, and there is no rte_flow.
            .equal_rx_tx_queues = true,
            .spreads_unmatched_frames = true,
            .burst_within_ready = true,
            // A grant-mapped guest page is not in the memory table vhost translates through.
            .tx_external_buffers = false,
            .tx_external_buffers_why = "its vhost backend reads only DPDK's memory",
            // With /dev/vhost-net as its backend: a worker per queue pair, made when the
            // port is probed (VHOST_SET_OWNER). Over a vhost-user socket the scans find none.
            .vhost_kernel_workers = true,
        },
        "virtio_user",
    },
};

} // namespace

const char* to_string(RxInterrupt kind) noexcept {
    switch (kind) {
    case RxInterrupt::none:
        return "none";
    case RxInterrupt::armed:
        return "armed";
    case RxInterrupt::level:
        return "level";
    }
    return "unknown";
}

std::span<const DriverRow> driver_table() noexcept {
    return kDrivers;
}

const DriverRow* find_driver(std::string_view driver) noexcept {
    for (const DriverRow& r : kDrivers)
        if (r.driver == driver) return &r;
    return nullptr;
}

const DriverRow* find_vdev_driver(std::string_view devargs) noexcept {
    const std::string_view device = devargs.substr(0, devargs.find(','));
    const DriverRow* best = nullptr;
    std::size_t best_len = 0;
    for (const DriverRow& r : kDrivers) {
        for (std::string_view name : {r.driver, r.alias}) {
            if (!name.empty() && name.size() > best_len && device.starts_with(name)) {
                best = &r;
                best_len = name.size();
            }
        }
    }
    return best;
}

const DriverCaps& driver_caps(std::string_view driver) noexcept {
    const DriverRow* r = find_driver(driver);
    return r != nullptr ? r->caps : kUnknownDriver;
}

} // namespace dpnb::pmd
