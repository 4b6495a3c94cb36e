// What the lcores share with the control side of the Engine: options, ports (with their
// guest pools and daemon pools), the lcores themselves (to route frames between them) and
// the eventfds through which lcores acknowledge commands and raise events.
#pragma once

#include <rte_flow.h>

#include <memory>
#include <optional>
#include <vector>

#include "dpnb/engine/engine.hpp"
#include "dpnb/pmd/guest_pool.hpp"
#include "dpnb/pmd/port.hpp"
#include "lcore.hpp"

struct rte_mempool;

namespace dpnb::engine::detail {

struct PortState {
    std::unique_ptr<pmd::Port> port;
    std::uint16_t index = 0;
    bool zero_copy = false; // dedicated RX queues use guest pools
    std::string copy_reason;
    rte_mempool* rx_pool = nullptr; // daemon mbufs for copy queues
    // Per RX queue: the guest pool of a zero-copy queue (nullptr otherwise), the vif that
    // owns a dedicated queue.
    std::vector<std::unique_ptr<pmd::GuestBufferPool>> guest_pools;
    std::vector<std::optional<VifId>> owner;
    // RX queues demultiplexed in software, each polled by one lcore (with its own copy of
    // the port's MAC table), and those lcores.
    std::vector<std::pair<std::uint16_t, unsigned>> demux_queues;
    std::vector<unsigned> demux_lcores;
    std::vector<bool> dedicated_queue; // per RX queue: a guest's own queue
    bool single_tx = false;            // one TX queue, used by the lcore of the port's only guest
    std::uint64_t tx_offloads = 0;
    bool tso_ipv6 = false; // the PMD's TSO also segments TCP over IPv6
    // TX may hand the port grant-mapped guest pages: the DMA policy lets its device have
    // guest pages and its PMD sends external buffers (pmd::DriverCaps::tx_external_buffers).
    // Otherwise every slot is grant-copied (check_tx_maps), and a packet drops when no copy
    // mbuf is left.
    bool tx_maps = true;
    // The IOMMU the port's device reaches memory through when the DMA policy wants guest
    // pages DMA-mapped for it (pmd::DmaRule::dma_map: vfio behind an IOMMU), else null: RX
    // map runs and TX slot runs are mapped into it for as long as the device may have them.
    hv::DmaMapper* dma = nullptr;
    std::uint32_t max_frame = 0;
    // vhost-net's workers that appeared while the port was opened and started (its vhost
    // devices'), the CPUs they were given, placements that failed (control thread only).
    std::vector<pid_t> vhost_workers;
    std::string vhost_cpus;
    std::uint64_t vhost_placement_failures = 0;

    bool dedicated() const noexcept {
        return port->config().steering == pmd::Steering::dedicated_port;
    }
    bool has_shared_queue() const noexcept { return !demux_queues.empty(); }
    // The TX queue lcore number `lcore` uses on this port.
    std::uint16_t tx_queue(unsigned lcore) const noexcept {
        return single_tx ? 0 : static_cast<std::uint16_t>(lcore);
    }
};

class EngineCore {
public:
    explicit EngineCore(const EngineOptions& o) : opts(o) {}
    virtual ~EngineCore() = default;

    EngineOptions opts;
    unsigned instance = 0; // distinguishes DPDK object names of engines in one process
    std::vector<std::unique_ptr<PortState>> ports;
    std::vector<std::unique_ptr<Lcore>> lcores;
    int ack_fd = -1;   // lcores: a command is done
    int event_fd = -1; // lcores: a vif was disabled or fell back
    // A dynamic mbuf flag (registered at start) on frames one guest sends another on the same
    // port: the receiving copy pipeline counts them as local (local_rx_*).
    std::uint64_t local_flag = 0;
    pmd::CpuPlacement* placement = nullptr; // IRQs and vhost workers (opts.place_*)
    // The IOMMU of ports whose guest pages are DMA-mapped (PortState::dma): DPDK's vfio
    // container (owned_iommu) unless Engine::create was given one.
    hv::DmaMapper* iommu = nullptr;
    std::unique_ptr<hv::DmaMapper> owned_iommu;

    void ack(Command* cmd) noexcept;
    void raise_event() noexcept;
};

} // namespace dpnb::engine::detail
