// Ports: probe, classify, configure, steer (dpnb/pmd/port.hpp).
#include "dpnb/pmd/port.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "dpnb/netif/features.hpp"
#include "dpnb/pmd/driver_caps.hpp"
#include "dpnb/pmd/guest_pool.hpp"

namespace dpnb::pmd {
namespace {

std::string err_text(int rc) {
    return rte_strerror(rc < 0 ? -rc : rc);
}

Error eth_error(const std::string& what, int rc) {
    return make_error(Errc::io, what + ": " + err_text(rc), rc < 0 ? -rc : rc);
}

netif::MacAddress to_mac(const rte_ether_addr& a) {
    netif::MacAddress m;
    std::copy(std::begin(a.addr_bytes), std::end(a.addr_bytes), m.bytes.begin());
    return m;
}

rte_ether_addr to_ether(const netif::MacAddress& m) {
    rte_ether_addr a;
    std::copy(m.bytes.begin(), m.bytes.end(), std::begin(a.addr_bytes));
    return a;
}

std::string mac_text(const netif::MacAddress& m) {
    char buf[18];
    std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m.bytes[0], m.bytes[1],
                  m.bytes[2], m.bytes[3], m.bytes[4], m.bytes[5]);
    return buf;
}

// virtio_user's backend, checked before DPDK probes the port: DPDK's own failure ("Failed
// to open /dev/vhost-net", EINVAL) does not say what to do about it. Devargs that name no
// virtio_user device, or no path, are left to DPDK.
Status check_vhost_backend(const PortConfig& c) {
    const std::string_view dev = c.device;
    // The devargs' driver as DPDK's vdev bus matches it (name or alias, driver_caps.cpp).
    const DriverRow* row = find_vdev_driver(dev);
    if (row == nullptr || row->driver != "net_virtio_user") return ok();
    const std::string_view name = dev.substr(0, dev.find(','));
    std::string path;
    bool server = false;
    for (std::size_t at = dev.find(','); at != std::string_view::npos;) {
        const std::size_t next = dev.find(',', at + 1);
        const std::string_view kv = dev.substr(at + 1, next - at - 1);
        if (kv.starts_with("path=")) path = kv.substr(5);
        if (kv == "server=1") server = true;
        at = next;
    }
    if (path.empty()) return ok();
    const std::string who = "port " + c.name + " (" + std::string(name) + ")";
    const bool device_node = path.starts_with("/dev/");
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        const int err = errno;
        if (err == ENOENT && device_node)
            return make_error(Errc::unsupported,
                              who + ": " + path +
                                  " does not exist: this kernel has no vhost-net. Load it "
                                  "(modprobe vhost_net), or use a net_tap port (device = "
                                  "\"net_tap0,iface=NAME\")",
                              err);
        if (err == ENOENT && server) return ok(); // virtio_user creates the socket
        if (err == ENOENT)
            return make_error(Errc::not_found,
                              who + ": no vhost-user socket at " + path +
                                  ": start its vhost-user backend first (or use "
                                  "path=/dev/vhost-net)",
                              err);
        return make_error(Errc::io, who + ": " + path + ": " + std::strerror(err), err);
    }
    if (!S_ISCHR(st.st_mode)) return ok(); // a vhost-user socket
    if (const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC); fd >= 0) {
        ::close(fd);
    } else {
        const int err = errno;
        const bool denied = err == EACCES || err == EPERM;
        return make_error(denied ? Errc::permission_denied : Errc::io,
                          who + ": cannot open " + path + ": " + std::strerror(err) +
                              (denied ? ": dpnetbackd needs read-write access to it (root, or "
                                        "a group that has it) and CAP_NET_ADMIN for the tap "
                                        "device virtio_user creates (docs/operations.md)"
                                      : ""),
                          err);
    }
    // vhost-net moves frames to and from a tap device that virtio_user creates.
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
        const int err = errno;
        return make_error(err == ENOENT ? Errc::unsupported : Errc::permission_denied,
                          who + ": vhost-net needs a tap device, and /dev/net/tun " +
                              (err == ENOENT
                                   ? std::string("does not exist (modprobe tun)")
                                   : "cannot be opened: " + std::string(std::strerror(err))),
                          err);
    }
    return ok();
}

} // namespace

const char* to_string(Steering s) noexcept {
    switch (s) {
    case Steering::dedicated_port:
        return "dedicated_port";
    case Steering::mac_flow:
        return "mac_flow";
    case Steering::shared:
        return "shared";
    }
    return "unknown";
}

Result<Steering> parse_steering(std::string_view text) {
    if (text == "dedicated_port") return Steering::dedicated_port;
    if (text == "mac_flow") return Steering::mac_flow;
    if (text == "shared") return Steering::shared;
    return make_error(Errc::invalid_argument,
                      "steering must be dedicated_port, mac_flow or shared, not " +
                          netif::quote(text));
}

std::uint32_t zero_copy_frame_limit(std::uint32_t buffer_size) noexcept {
    return buffer_size > RTE_PKTMBUF_HEADROOM ? buffer_size - RTE_PKTMBUF_HEADROOM : 0;
}

Result<std::unique_ptr<Port>> Port::open(const PortConfig& config, const DmaProbe& dma) {
    if (config.name.empty()) return make_error(Errc::invalid_argument, "a port needs a name");
    if (config.device.empty())
        return make_error(Errc::invalid_argument, "port " + config.name + ": no device");
    if (config.rx_queues == 0 || (config.steering != Steering::mac_flow && config.rx_queues != 1))
        return make_error(Errc::invalid_argument,
                          "port " + config.name + ": " + to_string(config.steering) +
                              " ports have one RX queue; mac_flow ports at least one");
    if (config.mtu < netif::kMinMtu || config.mtu > 9600)
        return make_error(Errc::invalid_argument, "port " + config.name + ": MTU " +
                                                      std::to_string(config.mtu) +
                                                      " out of range 68..9600");
    std::unique_ptr<Port> p(new Port(config));
    if (Status st = p->probe(dma); !st) return st.error();
    return p;
}

Status Port::probe(const DmaProbe& dma) {
    const std::string devname = config_.device.substr(0, config_.device.find(','));
    std::uint16_t id = 0;
    if (rte_eth_dev_get_port_by_name(devname.c_str(), &id) != 0) {
        if (Status st = check_vhost_backend(config_); !st) return st;
        if (int rc = rte_dev_probe(config_.device.c_str()); rc != 0)
            return eth_error("port " + config_.name + ": probing " + config_.device, rc);
        probed_here_ = true;
        if (rte_eth_dev_get_port_by_name(devname.c_str(), &id) != 0)
            return make_error(Errc::not_found, "port " + config_.name + ": probing " +
                                                   config_.device + " made no ethdev named " +
                                                   devname);
    }
    caps_.port_id = id;
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(id, &info); rc != 0)
        return eth_error("port " + config_.name + ": rte_eth_dev_info_get", rc);
    caps_.driver = info.driver_name != nullptr ? info.driver_name : "";
    caps_.max_rx_queues = info.max_rx_queues;
    caps_.max_tx_queues = info.max_tx_queues;
    caps_.max_rx_pktlen = info.max_rx_pktlen;
    caps_.rx_offload_capa = info.rx_offload_capa;
    caps_.tx_offload_capa = info.tx_offload_capa;
    rte_ether_addr mac{};
    if (rte_eth_macaddr_get(id, &mac) == 0) caps_.mac = to_mac(mac);
    caps_.driver_caps = driver_caps(caps_.driver);
    if (config_.rx_peer_fills_pool) {
        if (!caps_.driver_caps.rx_from_peer)
            return make_error(Errc::invalid_argument,
                              "port " + config_.name + ": rx_peer_fills_pool, but " + caps_.driver +
                                  " does not hand over a peer's mbufs");
        // The peer took each buffer before it wrote a frame into it: nothing is allocated
        // in the burst, so a burst may return more frames than the pool holds posted.
        caps_.driver_caps.rx_buffers = RxBufferUse::in_order;
        caps_.driver_caps.rx_buffers_why = "its peer fills the RX queue's buffers in order";
        caps_.driver_caps.burst_within_ready = false;
        // A peer that reads the port's MAC rules (a SimMacRules given) steers as a NIC with
        // flow rules does: a frame no rule matches goes to queue 0, never to a guest's.
        if (config_.mac_rules) caps_.driver_caps.spreads_unmatched_frames = false;
    }
    if (config_.rx_queues > caps_.max_rx_queues)
        return make_error(Errc::invalid_argument,
                          "port " + config_.name + ": " + std::to_string(config_.rx_queues) +
                              " RX queues asked, " + caps_.driver + " has " +
                              std::to_string(caps_.max_rx_queues));
    spdlog::info("port {}: {} (ethdev {}, port id {}), MAC {}, {} RX / {} TX queues at most, RX "
                 "buffers: {}{}",
                 config_.name, caps_.driver, devname, id, mac_text(caps_.mac), caps_.max_rx_queues,
                 caps_.max_tx_queues,
                 caps_.driver_caps.rx_buffers == RxBufferUse::in_order ? "in order" : "own memory",
                 find_driver(caps_.driver) != nullptr ? "" : " (unknown PMD: safe defaults)");

    caps_.device = dma.device(id);
    caps_.dma_inputs =
        DmaInputs{dma.domain_type(), caps_.device.bus, caps_.device.binding, dma.iova_mode()};
    caps_.dma = &decide_dma(caps_.dma_inputs);
    const std::string device =
        std::string(to_string(caps_.device.bus)) + " device " + caps_.device.name +
        (caps_.device.kernel_driver.empty() ? "" : " (" + caps_.device.kernel_driver + ")") +
        ", binding " + to_string(caps_.device.binding) + ", " + to_string(caps_.dma_inputs.domain) +
        " domain, IOVA as " + to_string(caps_.dma_inputs.iova);
    if (caps_.dma->verdict == DmaVerdict::refused) {
        const std::string msg = "port " + config_.name + " (" + caps_.driver + ", " + device +
                                ") refused: " + std::string(caps_.dma->reason) +
                                ". What works: " + std::string(caps_.dma->works);
        spdlog::error("{}", msg);
        return make_error(Errc::unsupported, msg);
    }
    spdlog::info("port {}: {}: DMA {} ({})", config_.name, device, to_string(caps_.dma->verdict),
                 caps_.dma->reason);
    return ok();
}

bool Port::can_zero_copy(std::string* why) const {
    auto no = [&](std::string reason) {
        if (why != nullptr) *why = std::move(reason);
        return false;
    };
    if (!config_.zero_copy) return no("zero copy disabled in the port's configuration");
    if (config_.steering == Steering::shared)
        return no("shared steering: frames are demultiplexed in software and copied");
    const DriverCaps& dc = caps_.driver_caps;
    if (dc.rx_buffers != RxBufferUse::in_order)
        return no(caps_.driver + ": " + std::string(dc.rx_buffers_why));
    if (caps_.dma->verdict != DmaVerdict::zero_copy)
        return no(caps_.driver + " on " + caps_.device.name + ": " +
                  std::string(caps_.dma->reason) + " (zero copy: " + std::string(caps_.dma->works) +
                  ")");
    const std::uint32_t frame = config_.mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;
    if (frame > zero_copy_frame_limit())
        return no("MTU " + std::to_string(config_.mtu) + " needs frames of " +
                  std::to_string(frame) + " bytes, more than one guest buffer holds (" +
                  std::to_string(zero_copy_frame_limit()) +
                  "): RX scatter would fill out of order");
    return true;
}

Status Port::configure(std::span<rte_mempool* const> rx_pools, std::uint16_t nb_tx,
                       bool zero_copy) {
    const std::uint16_t id = caps_.port_id;
    const std::string who = "port " + config_.name;
    if (started_) (void)stop();
    if (rx_pools.empty() || rx_pools.size() > caps_.max_rx_queues)
        return make_error(Errc::invalid_argument,
                          who + ": " + std::to_string(rx_pools.size()) + " RX queues needed, " +
                              caps_.driver + " has " + std::to_string(caps_.max_rx_queues) +
                              " (virtio_user: queues= in the device string)");
    if (nb_tx == 0 || nb_tx > caps_.max_tx_queues)
        return make_error(Errc::invalid_argument, who + ": " + std::to_string(nb_tx) +
                                                      " TX queues needed (one per worker "
                                                      "lcore), " +
                                                      caps_.driver + " has " +
                                                      std::to_string(caps_.max_tx_queues) +
                                                      " (virtio_user: queues= in the device "
                                                      "string)");

    setup_ = PortSetup{};
    setup_.zero_copy = zero_copy;
    if (!zero_copy) (void)can_zero_copy(&setup_.copy_reason);
    std::uint64_t rx = 0;
    if (config_.rx_checksum) rx |= caps_.rx_offload_capa & RTE_ETH_RX_OFFLOAD_CHECKSUM;
    // A frame must land in one guest buffer: scatter would fill buffers out of order. A
    // copy queue takes chains: jumbo frames, and large received ones (LRO) up to 64 KiB.
    if (!zero_copy) {
        rx |= caps_.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER;
        if (config_.lro) rx |= caps_.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TCP_LRO;
    }
    std::uint64_t tx = caps_.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
    if (config_.tx_checksum)
        tx |= caps_.tx_offload_capa & (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM |
                                       RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
    if (config_.tso) tx |= caps_.tx_offload_capa & RTE_ETH_TX_OFFLOAD_TCP_TSO;

    rte_eth_conf conf{};
    conf.rxmode.mtu = config_.mtu;
    conf.rxmode.offloads = rx;
    conf.txmode.offloads = tx;
    conf.intr_conf.rxq = config_.rx_interrupts ? 1 : 0;
    const auto nb_rx = static_cast<std::uint16_t>(rx_pools.size());
    int rc = rte_eth_dev_configure(id, nb_rx, nb_tx, &conf);
    if (rc != 0 && conf.intr_conf.rxq) {
        // Some PMDs refuse RX interrupts at configure time: poll those.
        conf.intr_conf.rxq = 0;
        rc = rte_eth_dev_configure(id, nb_rx, nb_tx, &conf);
    }
    if (rc != 0)
        return eth_error(who + ": rte_eth_dev_configure (MTU " + std::to_string(config_.mtu) +
                             ", largest frame " + std::to_string(caps_.max_rx_pktlen) + ")",
                         rc);
    configured_ = true;
    setup_.rx_offloads = rx;
    setup_.tx_offloads = tx;
    setup_.nb_rx = nb_rx;
    setup_.nb_tx = nb_tx;
    setup_.max_frame = config_.mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;
    rx_intr_configured_ = conf.intr_conf.rxq != 0;
    setup_.rx_intr.assign(nb_rx, RxInterrupt::none);

    if (config_.mac) {
        rte_ether_addr a = to_ether(*config_.mac);
        if (int r = rte_eth_dev_default_mac_addr_set(id, &a); r != 0)
            return eth_error(who + ": setting MAC " + mac_text(*config_.mac), r);
        caps_.mac = *config_.mac;
    }
    std::uint16_t rx_desc = config_.rx_desc, tx_desc = config_.tx_desc;
    if (int r = rte_eth_dev_adjust_nb_rx_tx_desc(id, &rx_desc, &tx_desc); r != 0)
        return eth_error(who + ": adjusting descriptor counts", r);
    const int socket = rte_eth_dev_socket_id(id);
    for (std::uint16_t q = 0; q < nb_rx; ++q) {
        if (int r = rte_eth_rx_queue_setup(id, q, rx_desc, socket < 0 ? SOCKET_ID_ANY : socket,
                                           nullptr, rx_pools[q]);
            r != 0)
            return eth_error(who + ": RX queue " + std::to_string(q) + " set-up", r);
    }
    for (std::uint16_t q = 0; q < nb_tx; ++q) {
        if (int r = rte_eth_tx_queue_setup(id, q, tx_desc, socket < 0 ? SOCKET_ID_ANY : socket,
                                           nullptr);
            r != 0)
            return eth_error(who + ": TX queue " + std::to_string(q) + " set-up", r);
    }
    if (config_.promiscuous) {
        if (int r = rte_eth_promiscuous_enable(id); r != 0 && r != -ENOTSUP)
            return eth_error(who + ": promiscuous mode", r);
    }
    if (config_.steering == Steering::mac_flow) probe_flow_rules();
    spdlog::info("{}: {} RX queue(s) ({} descriptors), {} TX queue(s), MTU {}, RX {}{}, offloads "
                 "RX {:#x} TX {:#x}",
                 who, nb_rx, rx_desc, nb_tx, config_.mtu, zero_copy ? "zero copy" : "copy",
                 zero_copy ? "" : " (" + setup_.copy_reason + ")", rx, tx);
    return ok();
}

void Port::probe_flow_rules() {
    if (caps_.driver_caps.spreads_unmatched_frames) {
        setup_.flow_reason = caps_.driver +
                             (find_driver(caps_.driver) != nullptr
                                  ? " spreads frames no rule matches over every RX queue"
                                  : " (an unknown PMD) may spread frames no rule matches over "
                                    "every RX queue") +
                             ", so a queue cannot be a guest's alone";
        return;
    }
    if (setup_.nb_rx < 2) {
        setup_.flow_reason = "a mac_flow port needs at least two RX queues";
        return;
    }
    const Status st = mac_rules().validate(caps_.port_id, 1);
    setup_.flow_rules = st.has_value();
    if (!st) {
        setup_.flow_reason = st.error().message;
        spdlog::warn("port {}: {} refuses MAC steering rules ({}): every guest uses the shared "
                     "queue",
                     config_.name, caps_.driver, setup_.flow_reason);
    }
}

Result<MacRules::Rule> Port::add_mac_rule(const netif::MacAddress& mac, std::uint16_t q) {
    auto rule = mac_rules().add(caps_.port_id, mac, q);
    if (!rule)
        return make_error(rule.error().code, "port " + config_.name + ": MAC rule eth dst " +
                                                 mac_text(mac) + " -> queue " + std::to_string(q) +
                                                 ": " + rule.error().message);
    return *rule;
}

Status Port::remove_rule(MacRules::Rule rule) {
    if (Status st = mac_rules().remove(caps_.port_id, rule); !st)
        return make_error(st.error().code,
                          "port " + config_.name + ": removing a MAC rule: " + st.error().message);
    return ok();
}

Status Port::set_vf_mac(std::uint16_t vf, const netif::MacAddress& mac) {
    // librte_net_ixgbe is a plugin loaded by EAL; its PMD-specific API is looked up rather
    // than linked so that dpnetback runs where the PMD is absent.
    using Fn = int (*)(std::uint16_t, std::uint16_t, rte_ether_addr*);
    void* lib = ::dlopen("librte_net_ixgbe.so.23", RTLD_NOW | RTLD_NOLOAD);
    auto fn = lib != nullptr ? reinterpret_cast<Fn>(::dlsym(lib, "rte_pmd_ixgbe_set_vf_mac_addr"))
                             : nullptr;
    if (lib != nullptr) ::dlclose(lib);
    if (fn == nullptr)
        return make_error(Errc::unsupported,
                          "port " + config_.name + ": rte_pmd_ixgbe_set_vf_mac_addr not available");
    rte_ether_addr a = to_ether(mac);
    if (int rc = fn(caps_.port_id, vf, &a); rc != 0)
        return eth_error("port " + config_.name + ": setting VF " + std::to_string(vf) + " MAC",
                         rc);
    return ok();
}

Status Port::start() {
    if (started_) return ok();
    if (int rc = rte_eth_dev_start(caps_.port_id); rc != 0)
        return eth_error("port " + config_.name + ": rte_eth_dev_start", rc);
    started_ = true;
    setup_.rx_intr.assign(setup_.nb_rx, RxInterrupt::none);
    const RxInterrupt offered = caps_.driver_caps.rx_interrupt;
    for (std::uint16_t q = 0; q < setup_.nb_rx && rx_intr_configured_; ++q) {
        // A queue has usable interrupts when it has an fd and, for an armed one, the PMD
        // accepts arming it.
        const int fd = rte_eth_dev_rx_intr_ctl_q_get_fd(caps_.port_id, q);
        if (fd < 0 || offered == RxInterrupt::none) continue;
        if (offered == RxInterrupt::level) {
            setup_.rx_intr[q] = RxInterrupt::level;
        } else if (rte_eth_dev_rx_intr_enable(caps_.port_id, q) == 0) {
            (void)rte_eth_dev_rx_intr_disable(caps_.port_id, q);
            setup_.rx_intr[q] = RxInterrupt::armed;
        }
        spdlog::debug("port {}: RX queue {}: interrupt {}", config_.name, q,
                      to_string(setup_.rx_intr[q]));
    }
    return ok();
}

Status Port::stop() {
    if (!started_) return ok();
    started_ = false;
    if (int rc = rte_eth_dev_stop(caps_.port_id); rc != 0)
        return eth_error("port " + config_.name + ": rte_eth_dev_stop", rc);
    return ok();
}

Status Port::setup_rx_queue(std::uint16_t q, rte_mempool* pool) {
    if (started_) return make_error(Errc::busy, "port " + config_.name + " is started");
    std::uint16_t rx_desc = config_.rx_desc, tx_desc = config_.tx_desc;
    (void)rte_eth_dev_adjust_nb_rx_tx_desc(caps_.port_id, &rx_desc, &tx_desc);
    const int socket = rte_eth_dev_socket_id(caps_.port_id);
    if (int r = rte_eth_rx_queue_setup(caps_.port_id, q, rx_desc,
                                       socket < 0 ? SOCKET_ID_ANY : socket, nullptr, pool);
        r != 0)
        return eth_error("port " + config_.name + ": RX queue " + std::to_string(q) + " set-up", r);
    return ok();
}

int Port::rx_interrupt_fd(std::uint16_t q) const noexcept {
    if (rx_interrupt(q) == RxInterrupt::none) return -1;
    return rte_eth_dev_rx_intr_ctl_q_get_fd(caps_.port_id, q);
}

RxInterrupt Port::rx_interrupt(std::uint16_t q) const noexcept {
    if (!started_ || q >= setup_.rx_intr.size()) return RxInterrupt::none;
    return setup_.rx_intr[q];
}

Port::Stats Port::stats() const {
    rte_eth_stats s{};
    Stats out;
    if (rte_eth_stats_get(caps_.port_id, &s) != 0) return out;
    out.ipackets = s.ipackets;
    out.opackets = s.opackets;
    out.ibytes = s.ibytes;
    out.obytes = s.obytes;
    out.imissed = s.imissed;
    out.ierrors = s.ierrors;
    out.oerrors = s.oerrors;
    out.rx_nombuf = s.rx_nombuf;
    return out;
}

Port::~Port() {
    const std::uint16_t id = caps_.port_id;
    if (started_) (void)rte_eth_dev_stop(id);
    rte_eth_dev_info info{};
    rte_device* dev = nullptr; // a probe that failed left no port to ask
    if ((configured_ || probed_here_) && rte_eth_dev_info_get(id, &info) == 0) dev = info.device;
    if (configured_ || probed_here_) (void)rte_eth_dev_close(id);
    if (probed_here_ && dev != nullptr) {
        if (int rc = rte_dev_remove(dev); rc != 0)
            spdlog::warn("port {}: removing {}: {}", config_.name, config_.device, err_text(rc));
    }
}

} // namespace dpnb::pmd
