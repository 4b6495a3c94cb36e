// The Engine's control side (dpnb/engine/engine.hpp): creating ports, pools and lcores,
// attaching and detaching vifs through the lcores' command rings, status, events, shutdown
// with leak checks. Everything here runs on the control thread.
#include "dpnb/engine/engine.hpp"

#include <poll.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <iterator>
#include <map>
#include <set>

#include "ctrl_server.hpp"
#include "dpnb/pmd/vfio_dma.hpp"
#include "engine_core.hpp"

namespace dpnb::engine {

using detail::Command;
using detail::EngineCore;
using detail::GuestQueue;
using detail::Lcore;
using detail::NicKind;
using detail::PortState;
using detail::VifShared;

namespace {

std::atomic<unsigned> g_instances{0};

// Daemon RX mbufs of a port beyond what its copy queues' descriptors hold.
constexpr unsigned kRxMbufsInFlight = 1024;

// The names of the offload bits set in `bits` (rte_eth_dev_rx/tx_offload_name).
std::vector<std::string> offload_names(std::uint64_t bits, const char* (*name)(std::uint64_t)) {
    std::vector<std::string> out;
    for (unsigned b = 0; b < 64; ++b)
        if ((bits >> b & 1U) != 0) out.emplace_back(name(std::uint64_t{1} << b));
    return out;
}

int lcore_main(void* arg) {
    return static_cast<Lcore*>(arg)->run();
}

} // namespace

const char* to_string(Stage s) noexcept {
    switch (s) {
#define DPNB_X(name, help)                                                                         \
    case Stage::name:                                                                              \
        return #name;
        DPNB_STAGES(DPNB_X)
#undef DPNB_X
    case Stage::count:
        break;
    }
    return "unknown";
}

namespace {
using CounterStats = LcoreStats;
constexpr auto kLcoreCounters =
    make_counter_table<LcoreStats>({DPNB_LCORE_COUNTERS(DPNB_COUNTER_FIELD)});
} // namespace

std::span<const CounterInfo> lcore_counter_table() noexcept {
    return kLcoreCounters.info;
}

std::uint64_t counter_value(const LcoreStats& s, std::size_t i) noexcept {
    return kLcoreCounters.value(s, i);
}

Status validate(const EngineOptions& o) {
    if (o.burst == 0 || o.burst > detail::kMaxBurst)
        return make_error(Errc::invalid_argument,
                          "burst must be 1.." + std::to_string(detail::kMaxBurst));
    if (o.zc_depth == 0 || o.zc_depth > detail::kRingSize)
        return make_error(Errc::invalid_argument, "zc_depth must be 1..256");
    if (o.map_batch == 0 || o.map_batch > detail::kMaxBurst)
        return make_error(Errc::invalid_argument, "map_batch must be 1..64");
    if (o.reuse_miss == RxMode::reuse)
        return make_error(Errc::invalid_argument, "reuse_miss must be map or copy");
    // The headers of a guest packet must fit (XSA-423): 128 as Linux's XEN_NETBACK_TX_COPY_LEN.
    if (o.tx_copy_len < 128 || o.tx_copy_len > 256)
        return make_error(Errc::invalid_argument, "tx_copy_len must be 128..256");
    if (o.rx_stall_timeout.count() < 0)
        return make_error(Errc::invalid_argument, "rx_stall_timeout must not be negative");
    if (o.tx_copy_slot_max > netif::kPageSize)
        return make_error(Errc::invalid_argument, "tx_copy_slot_max must be 0..4096");
    if (Status st = netif::validate(o.tx_limits); !st) return st;
    if (o.eal.worker_lcores.empty())
        return make_error(Errc::invalid_argument, "at least one worker lcore is needed");
    if (o.ports.empty()) return make_error(Errc::invalid_argument, "no port configured");
    std::set<std::string> names;
    for (const pmd::PortConfig& p : o.ports) {
        if (!names.insert(p.name).second)
            return make_error(Errc::invalid_argument, "port name " + p.name + " used twice");
        if (!p.group.empty() && p.steering != pmd::Steering::dedicated_port)
            return make_error(Errc::invalid_argument,
                              "port " + p.name + ": only dedicated ports belong to a group");
    }
    for (const pmd::PortConfig& p : o.ports) {
        if (!p.group.empty() && names.count(p.group))
            return make_error(Errc::invalid_argument,
                              "group " + p.group + " has the name of a port");
        if (!p.vf_of.empty() && !names.count(p.vf_of))
            return make_error(Errc::invalid_argument,
                              "port " + p.name + ": vf_of names no port: " + p.vf_of);
    }
    return ok();
}

// A vif as the control thread keeps it.
struct VifRecord {
    VifSpec spec;
    std::unique_ptr<VifShared> shared;
    std::unique_ptr<detail::McastFilter> mcast; // shared by its queues, owned by its lcore
    std::vector<std::unique_ptr<GuestQueue>> queues;
    std::vector<GuestQueue*> queue_list; // the same, for GuestQueue::vif_queues
    std::vector<hv::GrantMapping> rings; // per queue: TX ring page, RX ring page
    std::unique_ptr<hv::TranslationTable> iott;
    // Static grants: the table the control ring fills (iott's own persistent_grants(), or
    // null), and the control ring's server (control thread).
    hv::PersistentGrantTable* static_table = nullptr;
    std::unique_ptr<detail::CtrlServer> ctrl;
    // The control ring has requests left after a budgeted serve(), or its channel fired:
    // serve it on the control thread's next pass.
    bool ctrl_ready = false;
    // The control ring's hash state the vif's queues hold (CtrlServer::hash_version()).
    std::uint64_t hash_applied = 0;
    netif::HashConfig hash;
    unsigned lcore = 0;
    std::uint16_t port_index = 0;
    std::optional<std::uint16_t> rx_queue; // dedicated NIC queue
    pmd::MacRules::Rule flow = nullptr;    // mac_flow: the rule steering its MAC to rx_queue
    bool steered = false;                  // in the demux table of the port's shared queue
    bool local = false;         // in every lcore's table of the port's guests (local delivery)
    RxMode mode = RxMode::copy; // what attach settled on (VifShared::rx_mode: in effect now)
    bool zero_copy = false;     // rx_queue allocates from a guest pool
    std::string mode_reason;
    bool reported_disabled = false;
    bool reported_fallback = false;
    std::unique_ptr<Command> pending_detach; // a detach that timed out, still running
};

class Engine::Impl final : public EngineCore {
public:
    Impl(const EngineOptions& o, hv::BackendHypervisor& hv, const pmd::DmaProbe& dma)
        : EngineCore(o), hv_(hv), dma_(dma) {}
    ~Impl() override;

    Status init();
    Status attach(const VifSpec& spec);
    Status detach(const VifId& id);
    Status set_rx_mode(const VifId& id, RxMode mode);
    Status set_rate(const VifId& id, std::optional<netif::RateLimit> rate);
    Status set_mcast_control(const VifId& id, bool on);
    void apply_hash(VifRecord& r);
    VifStatus status_of(const VifRecord& r) const;
    std::optional<DataPlaneEvent> next_event();
    void serve_control_rings();
    Status shutdown();
    LeakReport current_leaks(bool after_stop) const;

    std::map<VifId, std::unique_ptr<VifRecord>> vifs_;
    std::deque<DataPlaneEvent> events_;
    LeakReport last_report_;
    bool launched_ = false;
    bool shut_down_ = false;

private:
    Status run(Lcore& l, Command& cmd, std::chrono::milliseconds timeout);
    Status run_owned(Lcore& l, std::unique_ptr<Command> cmd);
    Status check_pci_probing() const;
    Status check_tx_maps() const;
    // attach: the spec, the port, then kAttachSteps in order, then steering.
    Status check_spec(const VifSpec& spec) const;
    PortState* pick_port(const VifSpec& spec, Status& why);
    using AttachStep = Status (Impl::*)(VifRecord& r, PortState& ps);
    static const AttachStep kAttachSteps[];
    Status pick_nic_queue(VifRecord& r, PortState& ps);
    Status check_rx_buffers(VifRecord& r, PortState& ps);
    Status pick_lcore(VifRecord& r, PortState& ps);
    Status settle_rx_mode(VifRecord& r, PortState& ps);
    Status open_buffer_table(VifRecord& r, PortState& ps);
    Result<std::unique_ptr<hv::TranslationTable>> hypervisor_table(hv::DomId dom,
                                                                   const PortState& ps);
    Status open_control_ring(VifRecord& r, PortState& ps);
    Status map_rings(VifRecord& r, PortState& ps);
    std::unique_ptr<GuestQueue> make_queue(const VifRecord& r, const PortState& ps, std::size_t qi,
                                           std::uint32_t key, netif::TxBackRing tx,
                                           netif::RxBackRing rx);
    Status start_serving(VifRecord& r, PortState& ps);
    void steer_shared(VifRecord& r, const PortState& ps);
    void share_local(VifRecord& r, const PortState& ps);
    Status unshare_local(VifRecord& r, const PortState& ps);
    void set_vf_mac(const VifRecord& r, const PortState& ps);
    void abandon(VifRecord& r, PortState& ps);

    Status release_nic_queue(VifRecord& r);
    std::optional<std::vector<pid_t>> vhost_snapshot(const pmd::DriverCaps* driver) const;
    void vhost_found(PortState& ps, const std::optional<std::vector<pid_t>>& before);
    void place_vhost(PortState& ps);
    void free_record(VifRecord& r);
    void push_event(DataPlaneEvent e);

    hv::BackendHypervisor& hv_;
    const pmd::DmaProbe& dma_;           // during init()
    std::unique_ptr<hv::GrantTable> gt_; // ring pages, control rings, their gref lists
    // The control thread's event channels (control rings), and what events_fd() returns: an
    // epoll set of it and event_fd.
    std::unique_ptr<hv::EventChannels> ctl_ev_;
    // Queue keys: a free slot below detail::kMaxQueueKeys with its next generation.
    Result<std::uint32_t> take_key();
    void give_key(std::uint32_t key);
    std::vector<std::uint16_t> key_generation_ = std::vector<std::uint16_t>(detail::kMaxQueueKeys);
    std::vector<bool> key_used_ = std::vector<bool>(detail::kMaxQueueKeys);

public:
    int epoll_fd_ = -1;
};

Engine::Impl::~Impl() {
    if (!shut_down_) (void)shutdown();
    if (ack_fd >= 0) ::close(ack_fd);
    if (event_fd >= 0) ::close(event_fd);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

Status Engine::Impl::init() {
    if (Status st = validate(opts); !st) return st;
    if (Status st = check_pci_probing(); !st) return st;
    if (Status st = pmd::init_eal(opts.eal); !st) return st;
    if (rte_lcore_id() != rte_get_main_lcore())
        return make_error(Errc::invalid_argument,
                          "the Engine must be created on DPDK's main lcore thread");
    instance = g_instances.fetch_add(1);
    static const rte_mbuf_dynflag kLocalFlag = {"dpnb_local_frame", 0};
    const int local_bit = rte_mbuf_dynflag_register(&kLocalFlag);
    if (local_bit < 0)
        return make_error(Errc::io,
                          std::string("registering an mbuf flag: ") + rte_strerror(rte_errno));
    local_flag = std::uint64_t{1} << local_bit;
    ack_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    event_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ack_fd < 0 || event_fd < 0) return make_error(Errc::io, "eventfd", errno);
    auto gt = hv_.open_grant_table();
    if (!gt) return std::move(gt).error();
    gt_ = std::move(*gt);
    auto ev = hv_.open_event_channels();
    if (!ev) return std::move(ev).error();
    ctl_ev_ = std::move(*ev);
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return make_error(Errc::io, "epoll_create1", errno);
    for (int fd : {event_fd, ctl_ev_->fd()}) {
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = fd;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) != 0)
            return make_error(Errc::io, "epoll_ctl", errno);
    }

    // Lcores first: ports need their count (a TX queue each).
    for (unsigned i = 0; i < opts.eal.worker_lcores.size(); ++i)
        lcores.push_back(std::make_unique<Lcore>(*this, i, opts.eal.worker_lcores[i]));
    const auto nl = static_cast<std::uint16_t>(lcores.size());

    for (std::size_t pi = 0; pi < opts.ports.size(); ++pi) {
        const pmd::PortConfig& pc = opts.ports[pi];
        auto ps = std::make_unique<PortState>();
        ps->index = static_cast<std::uint16_t>(pi);
        const pmd::DriverRow* vdev = pmd::find_vdev_driver(pc.device);
        const auto vhost_before = vhost_snapshot(vdev != nullptr ? &vdev->caps : nullptr);
        auto port = pmd::Port::open(pc, dma_);
        if (!port) return std::move(port).error();
        ps->port = std::move(*port);
        pmd::Port& port_ref = *ps->port;
        ps->zero_copy = port_ref.can_zero_copy(&ps->copy_reason);
        if (!ps->zero_copy) spdlog::info("port {}: RX copies frames: {}", pc.name, ps->copy_reason);
        // Queues: a dedicated port is used by one guest, hence one lcore: one TX queue.
        // Other ports get a TX queue per lcore. A PMD may want as many RX queues as TX
        // queues; one that spreads frames over all of them makes every one a shared queue.
        const pmd::DriverCaps& dc = port_ref.caps().driver_caps;
        ps->single_tx = ps->dedicated();
        std::uint16_t nb_tx = ps->single_tx ? 1 : nl;
        std::uint16_t nb_rx = pc.rx_queues;
        if (dc.equal_rx_tx_queues) nb_rx = nb_tx = std::max(nb_rx, nb_tx);
        ps->dedicated_queue.assign(nb_rx, false);
        if (ps->dedicated()) {
            ps->dedicated_queue[0] = true;
        } else if (pc.steering == pmd::Steering::mac_flow && !dc.spreads_unmatched_frames) {
            for (std::uint16_t q = 1; q < nb_rx; ++q)
                ps->dedicated_queue[q] = true;
        }
        const int socket = rte_eth_dev_socket_id(port_ref.id());
        const int sock = socket < 0 ? SOCKET_ID_ANY : socket;
        const std::string rx_name = "dpnb" + std::to_string(instance) + "_rx" + std::to_string(pi);
        // Copy queues keep their descriptors filled with these mbufs: leave room beyond that
        // for the frames (and chains: jumbo, LRO) on their way to guests.
        const unsigned rx_mbufs =
            std::max(opts.rx_mbufs_per_port, unsigned{nb_rx} * pc.rx_desc + kRxMbufsInFlight);
        if (rx_mbufs != opts.rx_mbufs_per_port)
            spdlog::info("port {}: {} RX mbufs ({} queues of {} descriptors)", pc.name, rx_mbufs,
                         nb_rx, pc.rx_desc);
        ps->rx_pool = rte_pktmbuf_pool_create(rx_name.c_str(), rx_mbufs, 256, 0,
                                              RTE_MBUF_DEFAULT_BUF_SIZE, sock);
        if (ps->rx_pool == nullptr)
            return make_error(Errc::io,
                              "port " + pc.name + ": RX mbuf pool: " + rte_strerror(rte_errno));
        ps->guest_pools.resize(nb_rx);
        ps->owner.assign(nb_rx, std::nullopt);
        std::vector<rte_mempool*> pools(nb_rx, ps->rx_pool);
        for (std::uint16_t q = 0; q < nb_rx && ps->zero_copy; ++q) {
            if (!ps->dedicated_queue[q]) continue;
            pmd::GuestPoolConfig gc;
            gc.name = "dpnb" + std::to_string(instance) + "_g" + std::to_string(pi) + "_" +
                      std::to_string(q);
            // Start-up placeholders, then a header kept by each post slot of the zero-copy
            // pipeline (ZeroCopyRx::headers).
            gc.headers = pc.rx_desc + detail::kRingSize + 2 * detail::kMaxBurst;
            gc.placeholders = pc.rx_desc + detail::kMaxBurst;
            gc.bounce_buffers = opts.zc_depth + detail::kMaxBurst;
            gc.socket = sock;
            auto gp = pmd::GuestBufferPool::create(gc);
            if (!gp) return std::move(gp).error();
            ps->guest_pools[q] = std::move(*gp);
            pools[q] = ps->guest_pools[q]->mempool();
        }
        if (Status st = port_ref.configure(pools, nb_tx, ps->zero_copy); !st) return st;
        if (Status st = port_ref.start(); !st) return st;
        for (auto& gp : ps->guest_pools)
            if (gp) gp->set_start_mode(false); // placeholders only while the queues start
        ps->tx_offloads = port_ref.setup().tx_offloads;
        ps->tso_ipv6 = dc.tso_ipv6;
        ps->tx_maps =
            dc.tx_external_buffers && port_ref.caps().dma->verdict == pmd::DmaVerdict::zero_copy;
        if (port_ref.caps().dma->dma_map) {
            if (iommu == nullptr) {
                owned_iommu = std::make_unique<pmd::VfioDmaMapper>();
                iommu = owned_iommu.get();
            }
            ps->dma = iommu;
            spdlog::info("port {}: guest pages are DMA-mapped into the device's IOMMU "
                         "container while the device has them",
                         pc.name);
        }
        ps->max_frame = port_ref.setup().max_frame;
        vhost_found(*ps, vhost_before);
        if (pc.steering == pmd::Steering::mac_flow && !port_ref.setup().flow_rules)
            spdlog::warn("port {}: no rte_flow MAC rules: guests share the port's queue(s) and "
                         "copy",
                         pc.name);
        else if (pc.steering == pmd::Steering::mac_flow && ps->zero_copy)
            // docs/datapath.md, "Broadcast and multicast": responses go out in request order.
            spdlog::warn("port {}: a guest on a MAC-steered zero-copy queue gets broadcasts and "
                         "other guests' frames only behind the buffers posted to its queue: "
                         "an ARP request for it waits until the wire sends it traffic of its "
                         "own (a VF or VMDq pool per guest, or RX mode copy, avoids this)",
                         pc.name);
        ports.push_back(std::move(ps));
    }
    if (Status st = check_tx_maps(); !st) return st;
    for (auto& l : lcores)
        if (Status st = l->init(hv_, opts.tx_mbufs_per_lcore); !st) return st;
    // Shared queues: each polled and demultiplexed by one lcore, spread over the lcores.
    unsigned next = 0;
    for (auto& ps : ports) {
        for (std::uint16_t q = 0; q < ps->dedicated_queue.size(); ++q) {
            if (ps->dedicated_queue[q]) continue;
            const unsigned li = next++ % lcores.size();
            ps->demux_queues.emplace_back(q, li);
            if (std::find(ps->demux_lcores.begin(), ps->demux_lcores.end(), li) ==
                ps->demux_lcores.end())
                ps->demux_lcores.push_back(li);
            lcores[li]->add_demux(ps->index, ps->port->id(), q, ps->port->rx_interrupt_fd(q),
                                  ps->port->rx_interrupt(q) == pmd::RxInterrupt::level);
        }
    }
    for (auto& ps : ports)
        place_vhost(*ps);
    for (auto& l : lcores) {
        if (int rc = rte_eal_remote_launch(lcore_main, l.get(), l->lcore_id()); rc != 0)
            return make_error(Errc::io, "launching lcore " + std::to_string(l->lcore_id()) + ": " +
                                            rte_strerror(-rc));
    }
    launched_ = true;
    spdlog::info("engine: {} lcore(s), {} port(s)", lcores.size(), ports.size());
    return ok();
}

Status Engine::Impl::run(Lcore& l, Command& cmd, std::chrono::milliseconds timeout) {
    if (!l.post(&cmd)) return make_error(Errc::busy, "lcore command ring full");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cmd.done.load(std::memory_order_acquire)) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return make_error(Errc::again, "lcore " + std::to_string(l.lcore_id()) +
                                               " did not acknowledge a command in " +
                                               std::to_string(timeout.count()) + " ms");
        pollfd p{ack_fd, POLLIN, 0};
        (void)::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
        std::uint64_t v;
        (void)!::read(ack_fd, &v, sizeof(v));
    }
    return cmd.result;
}

// A command whose object must outlive a timeout (the lcore may complete it later).
Status Engine::Impl::run_owned(Lcore& l, std::unique_ptr<Command> cmd) {
    Status st = run(l, *cmd, opts.command_timeout);
    if (!st && st.error().code == Errc::again) {
        spdlog::error("{}", st.error().message);
        (void)cmd.release(); // still queued on the lcore: leak rather than free under it
        return make_error(Errc::internal, st.error().message);
    }
    return st;
}

void Engine::Impl::push_event(DataPlaneEvent e) {
    events_.push_back(std::move(e));
    raise_event();
}

PortState* Engine::Impl::pick_port(const VifSpec& spec, Status& why) {
    for (auto& ps : ports) {
        const pmd::PortConfig& pc = ps->port->config();
        if (pc.name != spec.port) continue;
        if (ps->dedicated() && ps->owner[0]) {
            why = make_error(Errc::busy,
                             "port " + pc.name + " already serves " + to_string(*ps->owner[0]));
            return nullptr;
        }
        return ps.get();
    }
    bool group = false;
    for (auto& ps : ports) {
        const pmd::PortConfig& pc = ps->port->config();
        if (pc.group != spec.port) continue;
        group = true;
        if (!ps->owner[0]) return ps.get();
    }
    why = group ? make_error(Errc::busy, "every port of group " + spec.port + " is in use")
                : make_error(Errc::not_found, "no port or group named " + spec.port);
    return nullptr;
}

// Attaching: the steps after the port is picked, in order. A step that fails leaves what the
// earlier ones made to one rollback (abandon): the MAC rule removed, the record's tables,
// control ring, mappings and completion rings freed.
const Engine::Impl::AttachStep Engine::Impl::kAttachSteps[] = {
    &Impl::pick_nic_queue,    &Impl::check_rx_buffers,  &Impl::pick_lcore, &Impl::settle_rx_mode,
    &Impl::open_buffer_table, &Impl::open_control_ring, &Impl::map_rings,  &Impl::start_serving,
};

Status Engine::Impl::attach(const VifSpec& spec) {
    if (Status st = check_spec(spec); !st) return st;
    Status why = ok();
    PortState* ps = pick_port(spec, why);
    if (ps == nullptr) return why;
    auto rec = std::make_unique<VifRecord>();
    rec->spec = spec;
    rec->shared = std::make_unique<VifShared>();
    rec->mcast = std::make_unique<detail::McastFilter>();
    rec->mcast->enabled = spec.frontend.multicast_control;
    rec->port_index = ps->index;

    for (AttachStep step : kAttachSteps) {
        if (Status st = (this->*step)(*rec, *ps); !st) {
            abandon(*rec, *ps);
            return st;
        }
    }
    if (rec->rx_queue) ps->owner[*rec->rx_queue] = spec.id;
    steer_shared(*rec, *ps);
    share_local(*rec, *ps);
    set_vf_mac(*rec, *ps);

    const std::string name = to_string(spec.id);
    spdlog::info("{}: attached on lcore {}, port {} {}, {} queue(s), RX {}{}", name,
                 lcores[rec->lcore]->lcore_id(), ps->port->config().name,
                 rec->rx_queue ? "queue " + std::to_string(*rec->rx_queue)
                               : std::string("shared queue"),
                 rec->queues.size(), to_string(rec->mode),
                 rec->mode_reason.empty() ? "" : " (" + rec->mode_reason + ")");
    if (rec->mode != spec.rx_mode)
        push_event(DataPlaneEvent{DataPlaneEvent::Kind::mode_fallback, spec.id,
                                  std::string("RX mode ") + to_string(spec.rx_mode) + " -> " +
                                      to_string(rec->mode) + ": " + rec->mode_reason});
    const bool has_ctrl = rec->ctrl != nullptr;
    vifs_.emplace(spec.id, std::move(rec));
    if (has_ctrl) raise_event();
    return ok();
}

// With eal.no_pci = false EAL probes PCI devices itself, and a PMD may set its device DMAing
// at probe (an admin queue): in a domain where no PCI device can be given the right
// addresses (PV), the engine stops before EAL starts.
Status Engine::Impl::check_pci_probing() const {
    if (opts.eal.no_pci) return ok();
    const pmd::DomainType domain = dma_.domain_type();
    const pmd::DmaRule* refused = pmd::refuses_bus(domain, pmd::DeviceBus::pci);
    if (refused == nullptr) return ok();
    const std::string msg =
        std::string("eal.no_pci = false in a ") + pmd::to_string(domain) +
        " domain: EAL would probe PCI devices, refused: " + std::string(refused->reason) +
        ". What works: " + std::string(refused->works);
    spdlog::error("{}", msg);
    return make_error(Errc::unsupported, msg);
}

// Guest TX slots longer than tx_copy_slot_max are grant-mapped and handed to the port as
// they are: a port whose device may not be given guest pages needs every slot copied.
Status Engine::Impl::check_tx_maps() const {
    if (opts.tx_copy_slot_max >= netif::kPageSize) return ok();
    for (const auto& ps : ports) {
        if (ps->tx_maps) continue;
        const pmd::DmaRule& dma = *ps->port->caps().dma;
        const pmd::DriverCaps& dc = ps->port->caps().driver_caps;
        const std::string why =
            dma.verdict != pmd::DmaVerdict::zero_copy
                ? "its device may not be given guest pages (" + std::string(dma.reason) + ")"
                : ps->port->caps().driver + " cannot send guest pages (" +
                      std::string(dc.tx_external_buffers_why) + ")";
        return make_error(Errc::invalid_argument,
                          "port " + ps->port->config().name + ": " + why +
                              ", but tx_copy_slot_max = " + std::to_string(opts.tx_copy_slot_max) +
                              " would hand it grant-mapped TX slots: set it to 4096");
    }
    return ok();
}

// What the spec says on its own: the engine runs, the vif is new, its queue count and MAC
// are usable.
Status Engine::Impl::check_spec(const VifSpec& spec) const {
    if (shut_down_ || !launched_) return make_error(Errc::closed, "the engine is shut down");
    const std::string name = to_string(spec.id);
    if (vifs_.count(spec.id)) return make_error(Errc::exists, name + " is attached already");
    const auto& fq = spec.frontend.queues;
    if (fq.empty() || fq.size() > netif::kMaxQueuesLimit)
        return make_error(Errc::invalid_argument, name + ": bad queue count");
    if (spec.mac.is_multicast() || spec.mac.is_zero())
        return make_error(Errc::invalid_argument, name + ": the vif MAC must be unicast");
    if (spec.ip.size() > detail::kMaxIpAllowed)
        return make_error(Errc::invalid_argument,
                          name + ": \"ip\" lists " + std::to_string(spec.ip.size()) +
                              " addresses, more than " + std::to_string(detail::kMaxIpAllowed));
    return ok();
}

// The vif's NIC queue: the whole port (dedicated_port), a queue a MAC rule steers to
// (mac_flow, when one is free and the PMD takes the rule), or none: the port's shared
// queue, with the reason in r.mode_reason. Errors only for a queue the operator named.
Status Engine::Impl::pick_nic_queue(VifRecord& r, PortState& ps) {
    const pmd::PortConfig& pc = ps.port->config();
    const std::string name = to_string(r.spec.id);
    std::optional<std::uint16_t> nicq;
    if (ps.dedicated()) {
        nicq = 0;
    } else if (pc.steering == pmd::Steering::mac_flow) {
        if (r.spec.rx_queue) {
            const std::uint16_t q = *r.spec.rx_queue;
            if (q >= ps.dedicated_queue.size() || !ps.dedicated_queue[q])
                return make_error(Errc::invalid_argument, name + ": RX queue " + std::to_string(q) +
                                                              " is not a dedicated "
                                                              "queue of port " +
                                                              pc.name);
            if (ps.owner[q])
                return make_error(Errc::busy, name + ": RX queue " + std::to_string(q) +
                                                  " of port " + pc.name + " serves " +
                                                  to_string(*ps.owner[q]));
            nicq = q;
        } else {
            for (std::uint16_t q = 0; q < ps.dedicated_queue.size() && !nicq; ++q)
                if (ps.dedicated_queue[q] && !ps.owner[q]) nicq = q;
        }
        if (!nicq) {
            r.mode_reason = "no free dedicated queue on port " + pc.name + ": shared queue";
        } else if (!ps.port->setup().flow_rules) {
            r.mode_reason = "port " + pc.name + " has no MAC steering rules (" +
                            ps.port->setup().flow_reason + "): shared queue";
            nicq.reset();
        } else if (auto flow = ps.port->add_mac_rule(r.spec.mac, *nicq); !flow) {
            spdlog::warn("{}: {}: the guest uses the shared queue", name, flow.error().message);
            r.mode_reason = flow.error().message + ": shared queue";
            nicq.reset();
        } else {
            r.flow = *flow;
        }
    }
    r.rx_queue = nicq;
    r.zero_copy = nicq && ps.guest_pools[*nicq] != nullptr;
    return ok();
}

// A zero-copy queue's NIC writes each frame whole into one posted buffer, after its headroom:
// the frontend's buffers must hold the port's largest frame.
Status Engine::Impl::check_rx_buffers(VifRecord& r, PortState& ps) {
    const std::uint32_t size = r.spec.frontend.rx_buffer_size;
    if (!r.zero_copy || ps.max_frame <= pmd::zero_copy_frame_limit(size)) return ok();
    return make_error(Errc::unsupported, to_string(r.spec.id) +
                                             ": the frontend's RX buffers (rx-buffer-size " +
                                             std::to_string(size) + ") hold frames of " +
                                             std::to_string(pmd::zero_copy_frame_limit(size)) +
                                             " bytes after the NIC's headroom, and port " +
                                             ps.port->config().name + " receives frames of " +
                                             std::to_string(ps.max_frame) + " bytes into them");
}

// The lcore with the fewest guest queues.
Status Engine::Impl::pick_lcore(VifRecord& r, PortState&) {
    r.lcore = 0;
    for (unsigned i = 1; i < lcores.size(); ++i)
        if (lcores[i]->queue_count() < lcores[r.lcore]->queue_count()) r.lcore = i;
    return ok();
}

// The RX mode in effect: the one asked for, or copy when the vif has no zero-copy NIC queue.
Status Engine::Impl::settle_rx_mode(VifRecord& r, PortState& ps) {
    r.mode = r.spec.rx_mode;
    if (r.mode == RxMode::copy || r.zero_copy) return ok();
    if (r.mode_reason.empty())
        r.mode_reason = r.rx_queue
                            ? ps.copy_reason
                            : "frames come from the shared queue of port " + ps.port->config().name;
    r.mode = RxMode::copy;
    return ok();
}

// Where the vif's RX buffers are looked up: a persistent-grant table of its own when the
// frontend registers them over the control ring (static grants), else the hypervisor's
// translation table in reuse mode (map when it has none, or keeps none).
Status Engine::Impl::open_buffer_table(VifRecord& r, PortState& ps) {
    const VifSpec& spec = r.spec;
    if (spec.frontend.static_grants) {
        // A table of our own, whatever the hypervisor keeps, since this frontend's
        // registrations arrive here and nowhere else (docs/protocol.md).
        auto mapper = hv_.open_grant_table();
        auto t = mapper ? hv::PersistentGrantTable::create(std::move(*mapper), spec.id.dom,
                                                           opts.static_grants)
                        : Result<std::unique_ptr<hv::PersistentGrantTable>>(mapper.error());
        if (!t)
            return make_error(t.error().code,
                              to_string(spec.id) + ": static grants: " + t.error().message);
        r.static_table = t->get();
        // Behind an IOMMU the registered pages are DMA-mapped while registered, when the
        // vif's NIC queue may be handed them (a copy vif's device never is).
        if (r.zero_copy) r.static_table->set_dma_mapper(ps.dma);
        r.iott = std::move(*t);
        return ok();
    }
    if (r.mode != RxMode::reuse) return ok();
    auto t = hypervisor_table(spec.id.dom, ps);
    if (!t) {
        r.mode_reason = t.error().message;
        r.mode = RxMode::map;
    } else {
        r.iott = std::move(*t);
    }
    return ok();
}

// The translation table the hypervisor keeps for a guest (reuse without static grants), or
// why there is none to use (Errc::unsupported).
Result<std::unique_ptr<hv::TranslationTable>> Engine::Impl::hypervisor_table(hv::DomId dom,
                                                                             const PortState& ps) {
    // A table the hypervisor keeps (the simulator's) names pages nobody DMA-maps.
    if (ps.dma != nullptr)
        return make_error(Errc::unsupported,
                          "the hypervisor's translation table pages are not DMA-mapped for a "
                          "device behind an IOMMU (reuse needs static grants there)");
    auto t = hv_.open_translation_table(dom);
    if (!t) return make_error(Errc::unsupported, "no I/O translation table: " + t.error().message);
    // Stock Xen keeps no table: only a frontend that registers its buffers (static grants)
    // fills one; without them every lookup would miss.
    if ((*t)->persistent_grants() != nullptr)
        return make_error(Errc::unsupported,
                          "the frontend did not negotiate static grants (feature-static-grants), "
                          "and this hypervisor keeps no translation table");
    return t;
}

// The frontend's control ring (static grants), served on the control thread.
Status Engine::Impl::open_control_ring(VifRecord& r, PortState&) {
    const VifSpec& spec = r.spec;
    if (!spec.frontend.ctrl_ring) return ok();
    auto c = detail::CtrlServer::open(
        *gt_, *ctl_ev_, spec.id.dom, *spec.frontend.ctrl_ring, r.static_table,
        static_cast<std::uint32_t>(spec.frontend.queues.size()), to_string(spec.id));
    if (!c) return std::move(c).error();
    r.ctrl = std::move(*c);
    // Requests the frontend put on the ring before the channel was bound sent no event we
    // could see: look at the ring once on the next pass.
    r.ctrl_ready = true;
    return ok();
}

// Both ring pages of each queue mapped with one call, and the queue the lcore will own.
Status Engine::Impl::map_rings(VifRecord& r, PortState& ps) {
    const VifSpec& spec = r.spec;
    const std::string name = to_string(spec.id);
    const auto& fq = spec.frontend.queues;
    for (std::size_t qi = 0; qi < fq.size(); ++qi) {
        const netif::QueueConfig& qc = fq[qi];
        const hv::GrantMapRequest reqs[2] = {{spec.id.dom, qc.tx_ring_ref, true},
                                             {spec.id.dom, qc.rx_ring_ref, true}};
        std::int16_t status[2] = {0, 0};
        hv::GrantMapping m = gt_->map(reqs, status);
        if (!m)
            return make_error(Errc::protocol,
                              name + ": mapping ring grants " + std::to_string(qc.tx_ring_ref) +
                                  "/" + std::to_string(qc.rx_ring_ref) + " of queue " +
                                  std::to_string(qi) + ": GNTST " + std::to_string(status[0]) +
                                  "/" + std::to_string(status[1]));
        r.rings.push_back(m);
        auto tx = netif::TxBackRing::attach(m.page(0));
        auto rx = netif::RxBackRing::attach(m.page(1));
        if (!tx || !rx)
            return make_error(Errc::protocol, name + ": queue " + std::to_string(qi) + ": " +
                                                  (!tx ? tx.error().message : rx.error().message));
        auto key = take_key();
        if (!key) return make_error(key.error().code, name + ": " + key.error().message);
        r.queues.push_back(make_queue(r, ps, qi, *key, *tx, *rx));
        GuestQueue& q = *r.queues.back();
        const std::string rn = "dpnb" + std::to_string(instance) + "_d" + std::to_string(q.key);
        q.tx_done = rte_ring_create_elem(rn.c_str(), sizeof(std::uint32_t), 2 * detail::kRingSize,
                                         SOCKET_ID_ANY, RING_F_SC_DEQ);
        if (q.tx_done == nullptr)
            return make_error(Errc::io, name + ": completion ring: " + rte_strerror(rte_errno));
    }
    for (auto& q : r.queues)
        r.queue_list.push_back(q.get());
    for (auto& q : r.queues) {
        q->vif_queues = r.queue_list.data();
        q->n_vif_queues = static_cast<std::uint32_t>(r.queue_list.size());
    }
    return ok();
}

// Queue `qi` of the vif as its lcore will see it: rings, channels, negotiated features,
// limits, egress port, NIC queue (the first queue only: netfront takes RX frames on any
// queue), RX mode, buffer table, rate.
std::unique_ptr<GuestQueue> Engine::Impl::make_queue(const VifRecord& r, const PortState& ps,
                                                     std::size_t qi, std::uint32_t key,
                                                     netif::TxBackRing tx, netif::RxBackRing rx) {
    const VifSpec& spec = r.spec;
    const netif::QueueConfig& qc = spec.frontend.queues[qi];
    auto q = std::make_unique<GuestQueue>();
    q->key = key;
    q->vif = spec.id;
    q->index = static_cast<unsigned>(qi);
    q->dom = spec.id.dom;
    q->mac = spec.mac;
    q->shared = r.shared.get();
    q->tx = tx;
    q->rx = rx;
    q->tx_remote = qc.tx_evtchn;
    q->rx_remote = qc.rx_evtchn;
    q->split_evtchn = qc.split_event_channels;
    q->rx_notify = spec.frontend.rx_notify;
    q->mcast = r.mcast.get();
    q->rx_features = netif::RxFeatures{spec.frontend.gso_tcpv4, spec.frontend.gso_tcpv6};
    q->rx_sg = spec.frontend.sg;
    q->rx_buffers = netif::RxBufferLayout{spec.frontend.rx_buffer_offset,
                                          spec.frontend.rx_buffer_size, spec.frontend.xdp_headroom};
    q->tx_limits = opts.tx_limits;
    if (q->tx_limits.max_frame_len == 0) q->tx_limits.max_frame_len = ps.max_frame;
    q->anti_spoofing = opts.anti_spoofing;
    if (opts.ip_anti_spoofing) { // check_spec bounded the list
        std::copy(spec.ip.begin(), spec.ip.end(), q->ip_allowed.begin());
        q->n_ip_allowed = static_cast<std::uint32_t>(spec.ip.size());
    }
    q->fatal_bad_grants = opts.fatal_bad_grants;
    q->out_port_index = ps.index;
    if (qi == 0 && r.rx_queue) {
        const std::uint16_t nq = *r.rx_queue;
        q->nic.kind = r.zero_copy ? NicKind::guest_pool : NicKind::daemon;
        q->nic.port_index = ps.index;
        q->nic.port_id = ps.port->id();
        q->nic.queue = nq;
        q->nic.pool = r.zero_copy ? ps.guest_pools[nq].get() : nullptr;
        if (r.zero_copy) q->zc = std::make_unique<detail::ZeroCopyRx>(*q->nic.pool);
        q->nic.intr_fd = ps.port->rx_interrupt_fd(nq);
        q->nic.intr_level = ps.port->rx_interrupt(nq) == pmd::RxInterrupt::level;
    }
    q->mode = qi == 0 ? r.mode : RxMode::copy;
    q->reuse_miss = opts.reuse_miss;
    if (r.iott) {
        q->view = r.iott->view();
        q->have_view = true;
    }
    if (spec.rate && spec.rate->bytes != 0 && spec.rate->usec != 0) {
        q->rate.on = true;
        q->rate.credit_bytes = spec.rate->bytes;
        q->rate.period_tsc = detail::usec_to_tsc(spec.rate->usec);
        q->rate.next_refill = rte_get_tsc_cycles() + q->rate.period_tsc;
        q->rate.max_credit = std::max<std::uint64_t>(spec.rate->bytes, 131072);
        q->rate.remaining = spec.rate->bytes;
    }
    return q;
}

// The lcore binds the event channels and starts serving the queues.
Status Engine::Impl::start_serving(VifRecord& r, PortState&) {
    auto cmd = std::make_unique<Command>();
    cmd->kind = Command::Kind::attach;
    for (auto& q : r.queues)
        cmd->queues.push_back(q.get());
    return run_owned(*lcores[r.lcore], std::move(cmd));
}

// On a port with shared queues, each lcore that demultiplexes one learns the guest: unicast
// to its MAC (when no rule steers it) and every broadcast or multicast. A failure leaves the
// guest without frames from the shared queues, and is logged.
void Engine::Impl::steer_shared(VifRecord& r, const PortState& ps) {
    if (!ps.has_shared_queue()) return;
    for (unsigned dl : ps.demux_lcores) {
        auto steer = std::make_unique<Command>();
        steer->kind = Command::Kind::steer_add;
        steer->port_index = ps.index;
        steer->mac = r.spec.mac;
        steer->key = r.queues[0]->key;
        steer->target_lcore = r.lcore;
        if (Status st = run_owned(*lcores[dl], std::move(steer)); !st)
            spdlog::error("{}: steering on port {}: {}", to_string(r.spec.id),
                          ps.port->config().name, st.error().describe());
        else
            r.steered = true;
    }
}

// Guest-to-guest delivery (docs/datapath.md, "Local delivery"): every lcore learns the guest,
// since a guest of the port on any lcore may send to it. A port with one guest per port
// (dedicated_port) has nobody to deliver to; a port with local_delivery off sends every frame
// out. A failure leaves the guest reachable through the wire only, and is logged.
void Engine::Impl::share_local(VifRecord& r, const PortState& ps) {
    if (ps.dedicated() || !ps.port->config().local_delivery) return;
    for (auto& l : lcores) {
        auto c = std::make_unique<Command>();
        c->kind = Command::Kind::local_add;
        c->port_index = ps.index;
        c->mac = r.spec.mac;
        c->key = r.queues[0]->key;
        c->target_lcore = r.lcore;
        c->rx_features = r.queues[0]->rx_features;
        if (Status st = run_owned(*l, std::move(c)); !st) {
            spdlog::error("{}: guest-to-guest delivery on port {}: {}", to_string(r.spec.id),
                          ps.port->config().name, st.error().describe());
            (void)unshare_local(r, ps);
            return;
        }
        r.local = true;
    }
}

// Before the guest's queues leave their lcore: no lcore hands it another frame.
Status Engine::Impl::unshare_local(VifRecord& r, const PortState& ps) {
    if (!r.local) return ok();
    for (auto& l : lcores) {
        auto c = std::make_unique<Command>();
        c->kind = Command::Kind::local_remove;
        c->port_index = ps.index;
        c->key = r.queues[0]->key;
        if (Status st = run_owned(*l, std::move(c)); !st) return st;
    }
    r.local = false;
    return ok();
}

// A VF port (vf_of): its PF gives the VF the guest's MAC.
void Engine::Impl::set_vf_mac(const VifRecord& r, const PortState& ps) {
    const pmd::PortConfig& pc = ps.port->config();
    if (pc.vf_of.empty()) return;
    for (auto& pf : ports)
        if (pf->port->config().name == pc.vf_of) {
            if (Status st = pf->port->set_vf_mac(pc.vf_index, r.spec.mac); !st)
                spdlog::warn("{}: {}", to_string(r.spec.id), st.error().message);
        }
}

// Rollback of a failed attach: the MAC rule and everything the record holds.
void Engine::Impl::abandon(VifRecord& r, PortState& ps) {
    if (r.flow != nullptr) {
        if (Status st = ps.port->remove_rule(r.flow); !st)
            spdlog::warn("{}: {}", to_string(r.spec.id), st.error().message);
        r.flow = nullptr;
    }
    free_record(r);
}

// --- vhost-net's workers --------------------------------------------------------------------
// A virtio_user port over /dev/vhost-net has a kernel worker per vhost device (a queue pair),
// named vhost-<id of the thread that set the device's owner> like every other port's: the
// control thread's (it probes the ports). A port's workers are those that appear while it is
// opened and started, one port at a time; a device made by EAL at start (eal.vdevs) has its
// workers before any port and is not placed. Only a PMD whose driver row says it makes
// workers (DriverCaps::vhost_kernel_workers) is scanned for them: each scan reads every
// process's comm in /proc.

// The workers before a port of `driver` (its row's capabilities; nullptr: no row) opens or
// starts; nullopt when none are to be looked for.
std::optional<std::vector<pid_t>>
Engine::Impl::vhost_snapshot(const pmd::DriverCaps* driver) const {
    if (!opts.place_vhost_workers || driver == nullptr || !driver->vhost_kernel_workers)
        return std::nullopt;
    auto w = placement->vhost_workers(::gettid());
    if (!w) {
        spdlog::warn("vhost-net workers: {}", w.error().describe());
        return std::nullopt;
    }
    return std::move(*w);
}

// After the port (re)started: keep its workers still alive, add those that appeared.
void Engine::Impl::vhost_found(PortState& ps, const std::optional<std::vector<pid_t>>& before) {
    if (!before) return;
    auto after = placement->vhost_workers(::gettid());
    if (!after) {
        spdlog::warn("port {}: vhost-net workers: {}", ps.port->config().name,
                     after.error().describe());
        ++ps.vhost_placement_failures;
        return;
    }
    std::vector<pid_t> kept;
    std::set_intersection(ps.vhost_workers.begin(), ps.vhost_workers.end(), after->begin(),
                          after->end(), std::back_inserter(kept));
    std::set_difference(after->begin(), after->end(), before->begin(), before->end(),
                        std::back_inserter(kept));
    std::sort(kept.begin(), kept.end());
    kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
    ps.vhost_workers = std::move(kept);
}

// A worker moves frames of one queue pair both ways between the port's rings and the tap;
// which pair is not visible from outside, so every worker of the port gets the CPUs of every
// lcore that polls one of its RX queues (or of every lcore while none does: dedicated queues
// go to lcores as guests attach). Those lcores sleep when idle, and the worker's wake-up
// of them (an RX interrupt) then stays on their CPU.
void Engine::Impl::place_vhost(PortState& ps) {
    if (!opts.place_vhost_workers || ps.vhost_workers.empty()) return;
    std::vector<unsigned> which = ps.demux_lcores;
    if (which.empty())
        for (const auto& l : lcores)
            which.push_back(l->index());
    std::vector<pmd::CpuSet> sets;
    for (unsigned li : which)
        sets.push_back(lcores[li]->cpus());
    const pmd::CpuSet cpus = pmd::cpu_union(sets);
    if (cpus.empty()) return;
    unsigned placed = 0;
    for (pid_t t : ps.vhost_workers) {
        if (Status st = placement->set_thread_cpus(t, cpus); !st) {
            ++ps.vhost_placement_failures;
            spdlog::warn("port {}: vhost-net worker {} not moved to CPU(s) {}: {}",
                         ps.port->config().name, t, pmd::cpu_list_text(cpus),
                         st.error().describe());
            continue;
        }
        ++placed;
    }
    ps.vhost_cpus = placed != 0 ? pmd::cpu_list_text(cpus) : "";
    spdlog::info("port {}: {} of {} vhost-net worker(s) on CPU(s) {}", ps.port->config().name,
                 placed, ps.vhost_workers.size(), pmd::cpu_list_text(cpus));
}

// A zero-copy NIC queue still holds guest buffers: re-create it (its PMD frees them into
// the pool), with placeholders while it starts again.
Status Engine::Impl::release_nic_queue(VifRecord& r) {
    PortState& ps = *ports[r.port_index];
    const std::uint16_t q = *r.rx_queue;
    pmd::GuestBufferPool& pool = *ps.guest_pools[q];
    // Every lcore stops touching the port while it is stopped (a dedicated port is used by
    // its guest's lcore only, which detached already).
    std::vector<unsigned> paused;
    if (!ps.dedicated()) {
        for (auto& l : lcores) {
            auto c = std::make_unique<Command>();
            c->kind = Command::Kind::port_pause;
            c->port_index = ps.index;
            if (Status st = run_owned(*l, std::move(c)); !st) return st;
            paused.push_back(l->index());
        }
    }
    const auto vhost_before = vhost_snapshot(&ps.port->caps().driver_caps);
    Status st = ps.port->stop();
    pool.set_start_mode(true);
    if (st) st = ps.port->setup_rx_queue(q, pool.mempool());
    if (st) st = ps.port->start();
    pool.set_start_mode(false);
    if (st) {
        vhost_found(ps, vhost_before);
        place_vhost(ps);
    }
    for (unsigned i : paused) {
        auto c = std::make_unique<Command>();
        c->kind = Command::Kind::port_resume;
        c->port_index = ps.index;
        (void)run_owned(*lcores[i], std::move(c));
    }
    if (!st) return st;
    auto c = std::make_unique<Command>();
    c->kind = Command::Kind::release_nic;
    for (auto& gq : r.queues)
        c->queues.push_back(gq.get());
    return run_owned(*lcores[r.lcore], std::move(c));
}

Status Engine::Impl::detach(const VifId& id) {
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, to_string(id) + " is not attached");
    VifRecord& r = *it->second;
    PortState& ps = *ports[r.port_index];
    const std::string name = to_string(id);
    if (r.steered) {
        for (unsigned dl : ps.demux_lcores) {
            auto c = std::make_unique<Command>();
            c->kind = Command::Kind::steer_remove;
            c->port_index = ps.index;
            c->key = r.queues[0]->key;
            if (Status st = run_owned(*lcores[dl], std::move(c)); !st) return st;
        }
        r.steered = false;
    }
    if (Status st = unshare_local(r, ps); !st) return st;
    if (r.flow != nullptr) {
        if (Status st = ps.port->remove_rule(r.flow); !st)
            spdlog::warn("{}: {}", name, st.error().message);
        r.flow = nullptr;
    }
    // Stop serving; the lcore answers once the PMDs gave back every TX buffer.
    if (!r.pending_detach) {
        r.pending_detach = std::make_unique<Command>();
        r.pending_detach->kind = Command::Kind::detach;
        for (auto& q : r.queues)
            r.pending_detach->queues.push_back(q.get());
        if (!lcores[r.lcore]->post(r.pending_detach.get())) {
            r.pending_detach.reset();
            return make_error(Errc::busy, "lcore command ring full");
        }
    }
    Command& cmd = *r.pending_detach;
    const auto deadline = std::chrono::steady_clock::now() + opts.drain_timeout;
    while (!cmd.done.load(std::memory_order_acquire)) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return make_error(Errc::busy, name + ": a PMD still holds TX buffers of the guest "
                                                 "(detach again later)");
        pollfd p{ack_fd, POLLIN, 0};
        (void)::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
        std::uint64_t v;
        (void)!::read(ack_fd, &v, sizeof(v));
    }
    if (cmd.nic_held) {
        if (Status st = release_nic_queue(r); !st) {
            spdlog::error("{}: releasing its NIC queue: {}", name, st.error().describe());
            return st;
        }
    }
    if (r.rx_queue) ps.owner[*r.rx_queue].reset();
    free_record(r);
    spdlog::info("{}: detached", name);
    vifs_.erase(it);
    return ok();
}

void Engine::Impl::free_record(VifRecord& r) {
    const std::string name = to_string(r.spec.id);
    if (r.ctrl) {
        const netif::ctrl::CtrlCounters& c = r.ctrl->counters();
        const hv::CtrlGrantCounts& g = r.ctrl->grants();
        spdlog::info("{}: control ring: {} request(s), {} hash change(s), {} grant(s) registered, "
                     "{} removed, {} removal(s) refused in flight, {} invalid, {} not supported",
                     name, c.requests, c.hash_changes, g.added, g.removed, g.busy, c.invalid,
                     c.not_supported);
        r.ctrl.reset();
    }
    if (r.static_table != nullptr) {
        // Every queue is detached: nothing is in flight, so close() unmaps everything.
        const hv::PersistentGrantCloseReport rep = r.static_table->close();
        if (!rep.clean())
            spdlog::error("{}: static grants: {} still in flight, {} unmap failure(s): left "
                          "mapped",
                          name, rep.leaked_in_flight, rep.unmap_failures);
        r.static_table = nullptr;
    }
    for (hv::GrantMapping& m : r.rings)
        if (m) {
            if (Status st = gt_->unmap(m); !st)
                spdlog::error("{}: unmapping rings: {}", to_string(r.spec.id),
                              st.error().describe());
        }
    r.rings.clear();
    for (auto& q : r.queues) {
        if (q->tx_done != nullptr) {
            rte_ring_free(q->tx_done);
            q->tx_done = nullptr;
        }
        give_key(q->key);
    }
    r.queues.clear();
    r.queue_list.clear();
    r.iott.reset();
}

Result<std::uint32_t> Engine::Impl::take_key() {
    for (std::uint32_t slot = 0; slot < detail::kMaxQueueKeys; ++slot) {
        if (key_used_[slot]) continue;
        key_used_[slot] = true;
        return slot | std::uint32_t{++key_generation_[slot]} << 16;
    }
    return make_error(Errc::busy, "the engine serves " + std::to_string(detail::kMaxQueueKeys) +
                                      " queues already");
}

void Engine::Impl::give_key(std::uint32_t key) {
    key_used_[detail::queue_key_slot(key)] = false;
}

Status Engine::Impl::set_rx_mode(const VifId& id, RxMode mode) {
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, to_string(id) + " is not attached");
    VifRecord& r = *it->second;
    GuestQueue& q0 = *r.queues[0];
    if (mode != RxMode::copy && q0.nic.kind != NicKind::guest_pool) {
        const PortState& ps = *ports[r.port_index];
        std::string why = r.mode_reason;
        if (why.empty())
            why = !r.rx_queue
                      ? "its frames come from the shared queue of port " + ps.port->config().name
                      : ps.copy_reason;
        return make_error(Errc::unsupported, to_string(id) + ": RX mode " + to_string(mode) +
                                                 " needs a zero-copy NIC queue: " + why);
    }
    auto c = std::make_unique<Command>();
    c->kind = Command::Kind::set_mode;
    c->mode = mode;
    if (mode == RxMode::reuse && !r.iott) {
        auto t = hypervisor_table(id.dom, *ports[r.port_index]);
        if (!t)
            return make_error(t.error().code,
                              to_string(id) + ": RX mode reuse: " + t.error().message);
        r.iott = std::move(*t);
    }
    if (r.iott) {
        c->view = r.iott->view();
        c->have_view = true;
    }
    c->queues.push_back(&q0);
    if (Status st = run_owned(*lcores[r.lcore], std::move(c)); !st) return st;
    r.mode_reason.clear();
    return ok();
}

Status Engine::Impl::set_mcast_control(const VifId& id, bool on) {
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, to_string(id) + " is not attached");
    VifRecord& r = *it->second;
    auto c = std::make_unique<Command>();
    c->kind = Command::Kind::set_mcast_control;
    c->flag = on;
    c->queues.push_back(r.queues.front().get()); // the filter is the vif's: one queue names it
    if (Status st = run_owned(*lcores[r.lcore], std::move(c)); !st) return st;
    r.spec.frontend.multicast_control = on;
    return ok();
}

Status Engine::Impl::set_rate(const VifId& id, std::optional<netif::RateLimit> rate) {
    auto it = vifs_.find(id);
    if (it == vifs_.end()) return make_error(Errc::not_found, to_string(id) + " is not attached");
    VifRecord& r = *it->second;
    auto c = std::make_unique<Command>();
    c->kind = Command::Kind::set_rate;
    c->rate = rate;
    for (auto& q : r.queues)
        c->queues.push_back(q.get());
    if (Status st = run_owned(*lcores[r.lcore], std::move(c)); !st) return st;
    r.spec.rate = rate;
    return ok();
}

VifStatus Engine::Impl::status_of(const VifRecord& r) const {
    VifStatus s;
    s.id = r.spec.id;
    const bool disabled = r.shared->disabled.load(std::memory_order_acquire);
    s.state = disabled ? VifRunState::disabled : VifRunState::running;
    if (disabled) s.disabled_reason = r.shared->disabled_reason;
    s.rx_mode = static_cast<RxMode>(r.shared->rx_mode.load(std::memory_order_relaxed));
    if (r.shared->fallback.load(std::memory_order_acquire))
        s.rx_mode_reason = r.shared->fallback_reason;
    else if (s.rx_mode != r.spec.rx_mode || !r.mode_reason.empty())
        s.rx_mode_reason = r.mode_reason;
    s.port = ports[r.port_index]->port->config().name;
    s.rx_queue = r.rx_queue;
    s.lcore = lcores[r.lcore]->lcore_id();
    s.queues = static_cast<unsigned>(r.queues.size());
    s.stalled_queues = r.shared->stalled_queues.load(std::memory_order_relaxed);
    s.control_ring = r.ctrl != nullptr;
    s.static_grants = r.static_table != nullptr ? r.static_table->valid_entries() : 0;
    if (const auto d = r.static_table != nullptr ? r.static_table->dma_counts() : std::nullopt)
        s.static_grant_iommu =
            VifStatus::StaticGrantIommu{d->maps, d->unmaps, d->map_failures, d->unmap_failures};
    s.ctrl_errors.assign(netif::ctrl::kCtrlErrorCount, 0);
    if (r.ctrl) {
        const netif::ctrl::CtrlCounters& m = r.ctrl->counters();
        s.ctrl_requests = m.requests;
        s.ctrl_not_supported = m.not_supported;
        s.ctrl_invalid = m.invalid;
        s.ctrl_errors.assign(m.errors.begin(), m.errors.end());
    }
    s.hash = r.hash;
    s.tx_errors.assign(detail::kTxErrorCount, 0);
    for (const auto& q : r.queues) {
        const detail::QueueCounters& c = q->counters;
#define DPNB_X(name, help) s.counters.name += detail::read_counter(c.c.name);
        DPNB_VIF_COUNTERS(DPNB_X)
#undef DPNB_X
        for (std::size_t i = 0; i < detail::kTxErrorCount; ++i)
            s.tx_errors[i] += detail::read_counter(c.tx_errors[i]);
        s.rx_backlog_frames += detail::read_counter(q->backlog_frames);
        s.rx_backlog_bytes += detail::read_counter(q->backlog_bytes);
        QueueIrqs qi;
        for (int irq : q->irq)
            if (irq >= 0) qi.irqs.push_back(static_cast<unsigned>(irq));
        qi.placement = pmd::to_string(q->irq_placement);
        if (q->irq_placement == pmd::IrqPlacement::placed)
            qi.cpus = pmd::cpu_list_text(lcores[r.lcore]->cpus());
        s.queue_irqs.push_back(std::move(qi));
    }
    return s;
}

// Control rings are served here, on the control thread, when their channels fire (the
// control plane calls next_event() whenever events_fd() is readable). Each ready ring gets
// one budgeted serve() per call; a ring left with requests stays ready and events_fd() is
// made readable again, so the control thread comes back to it after the rest of its loop
// (xenstore, other vifs) without waiting for an event the frontend will not send.
void Engine::Impl::serve_control_rings() {
    if (!ctl_ev_) return;
    for (int i = 0; i < 4096; ++i) {
        auto p = ctl_ev_->pending();
        if (!p) {
            spdlog::error("control rings: reading pending ports: {}", p.error().describe());
            break;
        }
        if (!*p) break;
        const hv::EvtchnPort port = **p;
        (void)ctl_ev_->unmask(port);
        for (auto& [id, r] : vifs_) {
            if (r->ctrl && r->ctrl->port() == port) {
                r->ctrl_ready = true;
                break;
            }
        }
    }
    bool again = false;
    for (auto& [id, r] : vifs_) {
        if (!r->ctrl_ready || !r->ctrl) continue;
        auto more = r->ctrl->serve();
        r->ctrl_ready = more && *more;
        again = again || r->ctrl_ready;
        if (!more && !r->reported_disabled) {
            spdlog::warn("{}", more.error().message);
            r->reported_disabled = true;
            events_.push_back(
                DataPlaneEvent{DataPlaneEvent::Kind::vif_disabled, id, more.error().message});
        }
        if (r->ctrl->hash_version() != r->hash_applied) apply_hash(*r);
    }
    if (again) raise_event();
}

// The vif's queues get the control ring's hash configuration as an immutable copy (the RX
// pipelines read it on their lcore).
void Engine::Impl::apply_hash(VifRecord& r) {
    auto c = std::make_unique<Command>();
    c->kind = Command::Kind::set_hash;
    c->hash = r.ctrl->hash();
    for (auto& q : r.queues)
        c->queues.push_back(q.get());
    if (Status st = run_owned(*lcores[r.lcore], std::move(c)); !st) {
        spdlog::error("{}: handing the hash configuration to lcore {}: {}", to_string(r.spec.id),
                      lcores[r.lcore]->lcore_id(), st.error().describe());
        return;
    }
    r.hash_applied = r.ctrl->hash_version();
    r.hash = r.ctrl->hash();
}

std::optional<DataPlaneEvent> Engine::Impl::next_event() {
    std::uint64_t v;
    (void)!::read(event_fd, &v, sizeof(v));
    serve_control_rings();
    for (auto& [id, r] : vifs_) {
        if (!r->reported_disabled && r->shared->disabled.load(std::memory_order_acquire)) {
            r->reported_disabled = true;
            events_.push_back(
                DataPlaneEvent{DataPlaneEvent::Kind::vif_disabled, id, r->shared->disabled_reason});
        }
        if (!r->reported_fallback && r->shared->fallback.load(std::memory_order_acquire)) {
            r->reported_fallback = true;
            events_.push_back(DataPlaneEvent{DataPlaneEvent::Kind::mode_fallback, id,
                                             r->shared->fallback_reason});
        }
    }
    if (events_.empty()) return std::nullopt;
    DataPlaneEvent e = std::move(events_.front());
    events_.pop_front();
    if (!events_.empty()) raise_event(); // stay readable while events are queued
    return e;
}

LeakReport Engine::Impl::current_leaks(bool after_stop) const {
    LeakReport rep;
    rep.mapped_grants = gt_ ? gt_->mapped_pages() : 0;
    for (const auto& l : lcores) {
        rep.mapped_grants += l->mapped_grants();
        if (after_stop) {
            const std::uint64_t m = l->missing_mbufs();
            rep.mbufs_missing += m;
            if (m != 0)
                rep.details.push_back("lcore " + std::to_string(l->lcore_id()) + ": " +
                                      std::to_string(m) + " TX mbufs not back");
        }
    }
    if (rep.mapped_grants != 0)
        rep.details.push_back(std::to_string(rep.mapped_grants) + " grant page(s) still mapped");
    for (const auto& ps : ports) {
        if (after_stop && ps->rx_pool != nullptr) {
            const std::uint64_t m = ps->rx_pool->size - rte_mempool_avail_count(ps->rx_pool);
            rep.mbufs_missing += m;
            if (m != 0)
                rep.details.push_back("port " + ps->port->config().name + ": " + std::to_string(m) +
                                      " RX mbufs not back");
        }
        for (const auto& gp : ps->guest_pools) {
            if (!gp || !after_stop) continue;
            const pmd::GuestPoolCounts c = gp->counts();
            const std::uint64_t m = (c.headers - c.headers_free) +
                                    (c.placeholders - c.placeholders_free) +
                                    (c.bounce - c.bounce_free);
            rep.guest_headers_missing += m;
            if (m != 0)
                rep.details.push_back("guest pool " + gp->name() + ": " +
                                      std::to_string(c.headers - c.headers_free) + " headers, " +
                                      std::to_string(c.placeholders - c.placeholders_free) +
                                      " placeholders, " + std::to_string(c.bounce - c.bounce_free) +
                                      " bounce buffers not back");
        }
    }
    return rep;
}

Status Engine::Impl::shutdown() {
    if (shut_down_) return last_report_.clean() ? ok() : make_error(Errc::busy, "leaks");
    shut_down_ = true;
    std::vector<VifId> ids;
    for (auto& [id, r] : vifs_)
        ids.push_back(id);
    bool stuck = false;
    for (const VifId& id : ids) {
        if (Status st = detach(id); !st) {
            spdlog::error("shutdown: {}: {}", to_string(id), st.error().describe());
            stuck = true;
        }
    }
    if (launched_) {
        for (auto& l : lcores) {
            auto c = std::make_unique<Command>();
            c->kind = Command::Kind::stop;
            (void)run_owned(*l, std::move(c));
        }
        for (auto& l : lcores)
            (void)rte_eal_wait_lcore(l->lcore_id());
        launched_ = false;
    }
    // Closing a port releases its queues: their mbufs go back to the pools first.
    for (auto& ps : ports)
        ps->port.reset();
    // Ports are gone; keep their names for the report.
    last_report_ = LeakReport{};
    last_report_.mapped_grants = gt_ ? gt_->mapped_pages() : 0;
    for (const auto& l : lcores) {
        last_report_.mapped_grants += l->mapped_grants();
        const std::uint64_t m = l->missing_mbufs();
        last_report_.mbufs_missing += m;
        if (m != 0)
            last_report_.details.push_back("lcore " + std::to_string(l->lcore_id()) + ": " +
                                           std::to_string(m) + " TX mbufs not back");
    }
    for (std::size_t pi = 0; pi < ports.size(); ++pi) {
        PortState& ps = *ports[pi];
        const std::string pname = opts.ports[pi].name;
        if (ps.rx_pool != nullptr) {
            const std::uint64_t m = ps.rx_pool->size - rte_mempool_avail_count(ps.rx_pool);
            last_report_.mbufs_missing += m;
            if (m != 0)
                last_report_.details.push_back("port " + pname + ": " + std::to_string(m) +
                                               " RX mbufs not back");
        }
        for (const auto& gp : ps.guest_pools) {
            if (!gp) continue;
            const pmd::GuestPoolCounts c = gp->counts();
            const std::uint64_t m = (c.headers - c.headers_free) +
                                    (c.placeholders - c.placeholders_free) +
                                    (c.bounce - c.bounce_free);
            last_report_.guest_headers_missing += m;
            if (m != 0)
                last_report_.details.push_back("guest pool " + gp->name() + ": " +
                                               std::to_string(m) + " objects not back");
        }
    }
    if (last_report_.mapped_grants != 0)
        last_report_.details.push_back(std::to_string(last_report_.mapped_grants) +
                                       " grant page(s) still mapped");
    if (stuck) last_report_.details.push_back("some vifs could not be detached");
    // Vifs that could not be detached keep their memory: a PMD may still call back into it.
    for (auto& [id, r] : vifs_)
        (void)r.release();
    vifs_.clear();
    if (!stuck) {
        for (auto& ps : ports) {
            ps->guest_pools.clear();
            if (ps->rx_pool != nullptr) rte_mempool_free(ps->rx_pool);
            ps->rx_pool = nullptr;
        }
        lcores.clear();
    }
    gt_.reset();
    if (!last_report_.clean() || stuck) {
        std::string text;
        for (const auto& d : last_report_.details)
            text += (text.empty() ? "" : "; ") + d;
        spdlog::error("engine shutdown: {}", text);
        return make_error(Errc::busy, "engine shutdown: " + text);
    }
    spdlog::info("engine: shut down cleanly");
    return ok();
}

// --- Engine --------------------------------------------------------------------------------

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::create(const EngineOptions& options,
                                               hv::BackendHypervisor& hv, const pmd::DmaProbe& dma,
                                               pmd::CpuPlacement* placement, hv::DmaMapper* iommu) {
    auto impl = std::make_unique<Impl>(options, hv, dma);
    impl->placement = placement != nullptr ? placement : &pmd::system_cpu_placement();
    impl->iommu = iommu;
    if (Status st = impl->init(); !st) return st.error();
    return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Status Engine::attach(const VifSpec& spec) {
    return impl_->attach(spec);
}
Status Engine::detach(const VifId& id) {
    return impl_->detach(id);
}
Status Engine::set_rx_mode(const VifId& id, RxMode mode) {
    return impl_->set_rx_mode(id, mode);
}
Status Engine::set_mcast_control(const VifId& id, bool on) {
    return impl_->set_mcast_control(id, on);
}

Status Engine::set_rate(const VifId& id, std::optional<netif::RateLimit> rate) {
    return impl_->set_rate(id, rate);
}

std::vector<VifStatus> Engine::list() const {
    std::vector<VifStatus> out;
    for (const auto& [id, r] : impl_->vifs_)
        out.push_back(impl_->status_of(*r));
    return out;
}

Result<VifStatus> Engine::status(const VifId& id) const {
    auto it = impl_->vifs_.find(id);
    if (it == impl_->vifs_.end())
        return make_error(Errc::not_found, to_string(id) + " is not attached");
    return impl_->status_of(*it->second);
}

int Engine::events_fd() const {
    return impl_->epoll_fd_;
}

std::optional<DataPlaneEvent> Engine::next_event() {
    return impl_->next_event();
}

Status Engine::shutdown() {
    return impl_->shutdown();
}

LeakReport Engine::leaks() const {
    return impl_->shut_down_ ? impl_->last_report_ : impl_->current_leaks(false);
}

std::vector<LcoreStats> Engine::lcore_stats() const {
    std::vector<LcoreStats> out;
    for (const auto& l : impl_->lcores)
        out.push_back(l->stats());
    return out;
}

std::vector<PortStatus> Engine::ports() const {
    std::vector<PortStatus> out;
    for (const auto& ps : impl_->ports) {
        if (!ps->port) continue;
        PortStatus s;
        s.name = ps->port->config().name;
        s.driver = ps->port->caps().driver;
        s.port_id = ps->port->id();
        s.steering = ps->port->config().steering;
        s.zero_copy = ps->zero_copy;
        s.copy_reason = ps->copy_reason;
        const pmd::PortCaps& caps = ps->port->caps();
        s.dma_inputs = caps.dma_inputs;
        s.dma = caps.dma->verdict;
        s.dma_reason = caps.dma->reason;
        s.flow_rules = ps->port->setup().flow_rules;
        s.rx_queues = ps->port->setup().nb_rx;
        s.mtu = ps->port->config().mtu;
        s.rx_offloads = offload_names(ps->port->setup().rx_offloads, rte_eth_dev_rx_offload_name);
        s.tx_offloads = offload_names(ps->port->setup().tx_offloads, rte_eth_dev_tx_offload_name);
        s.queue_owner = ps->owner;
        for (const auto& gp : ps->guest_pools)
            s.rx_pools.emplace_back(gp ? gp->mempool()->name : ps->rx_pool->name);
        s.vhost_workers.assign(ps->vhost_workers.begin(), ps->vhost_workers.end());
        s.vhost_cpus = ps->vhost_cpus;
        s.vhost_placement_failures = ps->vhost_placement_failures;
        s.stats = ps->port->stats();
        out.push_back(std::move(s));
    }
    return out;
}

} // namespace dpnb::engine
