// One DPDK port (ethdev) as the engine uses it: probed from devargs or found by name,
// classified by the driver table (driver_caps.hpp), configured with RX queues
// for its steering method and one TX queue per worker lcore (so no TX locks), offloads
// negotiated against what the PMD has, MTU, MAC, promiscuous mode, RX interrupts, rte_flow
// MAC rules, and the ixgbe PF's VF MAC when that PMD is loaded.
//
// Steering: how a guest gets its own RX queue (docs/datapath.md):
//   dedicated_port  a port per guest (an SR-IOV VF; in tests a virtual port per guest);
//   mac_flow        rte_flow "eth dst is <guest MAC> -> queue N" on a shared port, queue 0
//                   staying the shared default queue;
//   shared          every guest on queue 0: software demultiplexing by destination MAC.
//
// Control-thread only; the data path uses the port id and queue ids directly.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/netif/xs_value.hpp"
#include "dpnb/pmd/dma_probe.hpp"
#include "dpnb/pmd/driver_caps.hpp"
#include "dpnb/pmd/guest_pool.hpp"
#include "dpnb/pmd/mac_rules.hpp"
#include "dpnb/util/result.hpp"

struct rte_mempool;

namespace dpnb::pmd {

enum class Steering : std::uint8_t { dedicated_port, mac_flow, shared };
const char* to_string(Steering s) noexcept;
Result<Steering> parse_steering(std::string_view text);

struct PortConfig {
    std::string name; // what VifSpec::port names
    // devargs for rte_dev_probe ("net_tap0,iface=dpnb0", "0000:03:10.0",
    // "virtio_user0,path=/dev/vhost-net,queues=2,queue_size=1024,iface=vhost0"), or the name
    // of an ethdev that exists already (probed by EAL from its allow list or --vdev).
    std::string device;
    std::string group; // dedicated ports: a vif asking for the group gets a free member
    Steering steering = Steering::shared;
    std::uint16_t rx_queues = 1; // mac_flow: queue 0 (shared) plus one per guest
    std::uint16_t rx_desc = 256;
    std::uint16_t tx_desc = 512;
    std::uint32_t mtu = 1500;
    std::optional<netif::MacAddress> mac; // set on the port
    bool promiscuous = true; // needed for frames to several guest MACs (shared, mac_flow)
    bool zero_copy = true;   // allow zero-copy RX where the PMD can
    // A PMD that hands over its peer's mbufs (net_ring, DriverCaps::rx_from_peer) whose peer
    // plays a NIC: it takes the buffers the RX queue's mempool hands out (the guest-buffer
    // pool of a zero-copy queue), writes one frame into each and enqueues them in the order
    // it took them, as a NIC's DMA fills the descriptors its PMD posted. The port can then
    // serve zero copy. The peer gives every buffer it took back through the ring before a
    // guest on the port detaches (net_ring's stop does not free what its ring holds).
    bool rx_peer_fills_pool = false;
    // mac_flow: where the port's MAC rules go. Null: rte_flow on the PMD. A test whose
    // net_ring peer plays a NIC that steers by MAC gives a SimMacRules and reads it (with
    // rx_peer_fills_pool: the port then counts as a NIC that keeps unmatched frames on
    // queue 0).
    std::shared_ptr<MacRules> mac_rules;
    bool rx_checksum = true; // RX checksum offload when the PMD has it
    bool tx_checksum = true; // TX checksum offload when the PMD has it
    bool tso = true;         // TCP segmentation offload when the PMD has it
    // Large receive offload (RTE_ETH_RX_OFFLOAD_TCP_LRO) when the PMD has it and RX copies:
    // a virtio_user port then takes the kernel's GSO packets whole (up to 64 KiB).
    bool lro = true;
    bool rx_interrupts = true; // sleep on RX interrupts when the PMD has them
    // Frames between guests on this port are delivered by the daemon, as a VEB does, never
    // sent on the wire (docs/datapath.md, "Local delivery"); false sends them all out, for a
    // NIC's switch or an external one to see every frame.
    bool local_delivery = true;
    // ixgbe VF (dedicated_port): the PF port (by PortConfig name) and VF index whose MAC the
    // PF sets to the guest's with rte_pmd_ixgbe_set_vf_mac_addr when a guest attaches.
    std::string vf_of;
    std::uint16_t vf_index = 0;
};

struct PortCaps {
    std::uint16_t port_id = 0;
    std::string driver;
    netif::MacAddress mac;
    std::uint16_t max_rx_queues = 0;
    std::uint16_t max_tx_queues = 0;
    std::uint32_t max_rx_pktlen = 0;
    std::uint64_t rx_offload_capa = 0;
    std::uint64_t tx_offload_capa = 0;
    // The driver's quirks (driver_caps.hpp): its row of the driver table, or the defaults
    // for an unknown PMD.
    DriverCaps driver_caps;
    // The device as the DMA policy sees it (dma_policy.hpp), the policy's inputs and the rule
    // that decided whether the device may be given guest pages.
    DmaDevice device;
    DmaInputs dma_inputs;
    const DmaRule* dma = nullptr;
};

// What configure() settled on.
struct PortSetup {
    bool zero_copy = false;  // RX queues take guest buffers
    std::string copy_reason; // why not, when zero_copy is false
    bool flow_rules = false; // mac_flow: the PMD accepted a validated MAC rule
    std::string flow_reason; // why not
    std::uint64_t rx_offloads = 0;
    std::uint64_t tx_offloads = 0;
    std::uint16_t nb_rx = 0;
    std::uint16_t nb_tx = 0;
    std::uint32_t max_frame = 0;      // largest frame (Ethernet header + VLAN tag + MTU)
    std::vector<RxInterrupt> rx_intr; // per RX queue, settled at start (none until then)
};

// A frame of at most this many bytes fits one guest buffer of `buffer_size` bytes (a page,
// or a frontend's sub-page buffer) after the mbuf headroom; 0 if the headroom fills it.
std::uint32_t
zero_copy_frame_limit(std::uint32_t buffer_size = GuestBufferPool::kBufferSize) noexcept;

class Port {
public:
    // Probes (or finds) the device and reads its capabilities. Does not configure it.
    // Errc::unsupported, naming the deployments that work, when the DMA policy refuses the
    // device in this domain (a PCI NIC in a PV domain).
    static Result<std::unique_ptr<Port>> open(const PortConfig& config,
                                              const DmaProbe& dma = system_dma_probe());
    // Stops and closes the port; removes the device if open() probed it.
    ~Port();
    Port(const Port&) = delete;
    Port& operator=(const Port&) = delete;

    const PortConfig& config() const noexcept { return config_; }
    const PortCaps& caps() const noexcept { return caps_; }
    const PortSetup& setup() const noexcept { return setup_; }
    std::uint16_t id() const noexcept { return caps_.port_id; }

    // Whether RX queues of this port can take guest buffers with the configured MTU (a frame
    // must fit one buffer: RX scatter off) and the DMA policy lets its device have guest
    // pages, and why not.
    bool can_zero_copy(std::string* why) const;

    // rte_eth_dev_configure with the negotiated offloads, MTU, RX interrupts; MAC and
    // promiscuous mode; then every RX queue with its pool (rx_pools.size() queues) and
    // `nb_tx` TX queues. `zero_copy` says whether the RX pools are guest pools (no scatter).
    // Probes rte_flow MAC rules for mac_flow ports. Does not start the port.
    Status configure(std::span<rte_mempool* const> rx_pools, std::uint16_t nb_tx, bool zero_copy);
    Status start();
    Status stop();
    bool started() const noexcept { return started_; }
    // Re-creates RX queue `q` with `pool` (the old queue is released and its mbufs freed).
    // The port must be stopped.
    Status setup_rx_queue(std::uint16_t q, rte_mempool* pool);

    // RX interrupts (after start): the fd to sleep on, and its kind (the lcore arms an
    // `armed` queue with rte_eth_dev_rx_intr_enable itself).
    int rx_interrupt_fd(std::uint16_t q) const noexcept; // -1 when none
    RxInterrupt rx_interrupt(std::uint16_t q) const noexcept;

    // mac_flow: frames to `mac` go to RX queue `q`.
    Result<MacRules::Rule> add_mac_rule(const netif::MacAddress& mac, std::uint16_t q);
    Status remove_rule(MacRules::Rule rule);

    // ixgbe PF: sets VF `vf`'s MAC (dedicated VF ports). Errc::unsupported without the PMD.
    Status set_vf_mac(std::uint16_t vf, const netif::MacAddress& mac);

    struct Stats {
        std::uint64_t ipackets = 0, opackets = 0, ibytes = 0, obytes = 0;
        std::uint64_t imissed = 0, ierrors = 0, oerrors = 0, rx_nombuf = 0;
    };
    Stats stats() const;

private:
    explicit Port(const PortConfig& c) : config_(c) {}
    Status probe(const DmaProbe& dma);
    void probe_flow_rules();
    MacRules& mac_rules() const noexcept {
        return config_.mac_rules ? *config_.mac_rules : rte_flow_mac_rules();
    }

    PortConfig config_;
    PortCaps caps_;
    PortSetup setup_;
    bool probed_here_ = false; // rte_dev_probe by us: rte_dev_remove at close
    bool configured_ = false;
    bool started_ = false;
    bool rx_intr_configured_ = false; // intr_conf.rxq was accepted at configure
};

} // namespace dpnb::pmd
