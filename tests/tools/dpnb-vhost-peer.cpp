// dpnb-vhost-peer: the far side of a virtio_user port where /dev/vhost-net is missing (this
// development machine; CI). DPDK's net_vhost PMD serves a vhost-user socket that a
// virtio_user port connects to (path=SOCKET), in a process of its own: its own EAL, file
// prefix and memory, as the kernel's vhost-net is outside the daemon. A test drives it over
// a SOCK_SEQPACKET socket (vhost_peer_protocol.hpp):
//   * `send` transmits a frame with DPDK offload fields: an mbuf marked for TSO
//     (RTE_MBUF_F_TX_TCP_SEG, tso_segsz) leaves as one GSO packet with its virtio-net
//     header, which the virtio PMD hands to the daemon as an LRO frame;
//   * every packet the port receives goes back as a `frame`, with the flags the vhost
//     library set from the virtio-net header: a TSO chain from the daemon arrives as one
//     packet with RTE_MBUF_F_RX_LRO and tso_segsz, not as segments.
//
//   dpnb-vhost-peer --socket PATH --control-fd FD [--queues N] [--memory MB]
//
// It runs until the control socket closes (or SIGTERM). Exit status 0; 2 when the set-up
// failed (the reason also goes to the control socket as an `error`).
#include <CLI/CLI.hpp>
#include <poll.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "vhost_peer_protocol.hpp"

namespace {

using namespace dpnb::vhost_peer;
using Clock = std::chrono::steady_clock;

constexpr int kExitSetup = 2;
constexpr std::uint16_t kDataRoom = 9216; // a jumbo frame in one mbuf; larger ones chain
constexpr unsigned kBurst = 32;

std::atomic<bool> g_stop{false};
void on_signal(int) {
    g_stop.store(true);
}

struct Peer {
    int ctl = -1;
    std::uint16_t port = 0;
    std::uint16_t queues = 1;
    rte_mempool* pool = nullptr;
    std::vector<std::byte> buf = std::vector<std::byte>(kMaxMessage);

    bool reply(MsgHeader h, const void* data = nullptr) const {
        iovec iov[2] = {{&h, sizeof(h)}, {const_cast<void*>(data), h.len}};
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = data != nullptr && h.len != 0 ? 2 : 1;
        return ::sendmsg(ctl, &m, MSG_NOSIGNAL) >= 0;
    }

    int fail(const std::string& why) const {
        std::fprintf(stderr, "dpnb-vhost-peer: %s\n", why.c_str());
        MsgHeader h;
        h.kind = MsgKind::error;
        h.len = static_cast<std::uint32_t>(why.size());
        (void)reply(h, why.data());
        return kExitSetup;
    }

    // Builds an mbuf chain holding `len` bytes of `data` with the header's offload fields.
    rte_mbuf* build(const MsgHeader& h, const std::byte* data) const {
        rte_mbuf* head = nullptr;
        std::uint32_t off = 0;
        while (off < h.len || head == nullptr) {
            rte_mbuf* m = rte_pktmbuf_alloc(pool);
            if (m == nullptr) break;
            const auto take = static_cast<std::uint16_t>(
                std::min<std::uint32_t>(h.len - off, rte_pktmbuf_tailroom(m)));
            std::memcpy(rte_pktmbuf_append(m, take), data + off, take);
            off += take;
            if (head == nullptr) {
                head = m;
            } else if (rte_pktmbuf_chain(head, m) != 0) {
                rte_pktmbuf_free(m);
                break;
            }
        }
        if (head == nullptr || off < h.len) {
            if (head != nullptr) rte_pktmbuf_free(head);
            return nullptr;
        }
        head->ol_flags = h.ol_flags;
        head->tso_segsz = h.tso_segsz;
        head->l2_len = h.l2_len;
        head->l3_len = h.l3_len;
        head->l4_len = h.l4_len;
        return head;
    }

    // Transmits one frame; the virtio side may not have posted buffers yet: retry a while.
    bool transmit(const MsgHeader& h, const std::byte* data) const {
        rte_mbuf* m = build(h, data);
        if (m == nullptr) return false;
        const auto deadline = Clock::now() + std::chrono::seconds(20);
        const std::uint16_t q = h.queue < queues ? h.queue : 0;
        while (rte_eth_tx_burst(port, q, &m, 1) == 0) {
            if (Clock::now() >= deadline || g_stop.load()) {
                rte_pktmbuf_free(m);
                return false;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return true;
    }

    // Serves one control message; false when the control socket closed.
    bool serve_control() {
        const ssize_t n = ::recv(ctl, buf.data(), buf.size(), 0);
        if (n <= 0) return false;
        if (static_cast<std::size_t>(n) < sizeof(MsgHeader)) return true;
        MsgHeader h;
        std::memcpy(&h, buf.data(), sizeof(h));
        if (h.kind != MsgKind::send || sizeof(h) + h.len != static_cast<std::size_t>(n))
            return true;
        MsgHeader r;
        r.kind = MsgKind::sent;
        r.queue = h.queue;
        r.len = transmit(h, buf.data() + sizeof(h)) ? 1 : 0;
        return reply(r);
    }

    // Forwards what the port received; true when there was something.
    bool forward_received() {
        bool any = false;
        for (std::uint16_t q = 0; q < queues; ++q) {
            rte_mbuf* pkts[kBurst];
            const std::uint16_t n = rte_eth_rx_burst(port, q, pkts, kBurst);
            for (std::uint16_t i = 0; i < n; ++i) {
                rte_mbuf* m = pkts[i];
                MsgHeader h;
                h.kind = MsgKind::frame;
                h.queue = q;
                h.nb_segs = m->nb_segs;
                h.ol_flags = m->ol_flags;
                h.tso_segsz = m->tso_segsz;
                h.len = std::min<std::uint32_t>(m->pkt_len, kMaxFrame);
                const void* p = rte_pktmbuf_read(m, 0, h.len, buf.data());
                (void)reply(h, p);
                rte_pktmbuf_free(m);
            }
            any = any || n != 0;
        }
        return any;
    }
};

// EAL's main lcore may run on any CPU this process may use.
std::string lcore_map() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::string cpus;
    if (::sched_getaffinity(0, sizeof(set), &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) cpus += (cpus.empty() ? "" : ",") + std::to_string(c);
    return "0@(" + (cpus.empty() ? std::string("0") : cpus) + ")";
}

} // namespace

int main(int argc, char** argv) {
    std::string socket_path;
    int ctl_fd = -1;
    unsigned queues = 1;
    unsigned memory_mb = 256;
    CLI::App app{"dpnb-vhost-peer: net_vhost on a vhost-user socket, driven by a test"};
    app.add_option("--socket", socket_path, "vhost-user socket to serve")->required();
    app.add_option("--control-fd", ctl_fd, "SOCK_SEQPACKET socket of the test")->required();
    app.add_option("--queues", queues, "queue pairs")->check(CLI::Range(1, 8));
    app.add_option("--memory", memory_mb, "MiB of EAL memory (no hugepages)")
        ->check(CLI::Range(64, 4096));
    CLI11_PARSE(app, argc, argv);

    Peer peer;
    peer.ctl = ctl_fd;
    peer.queues = static_cast<std::uint16_t>(queues);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);

    const std::string prefix = "dpnb-vhost-peer-" + std::to_string(::getpid());
    const std::string vdev =
        "net_vhost0,iface=" + socket_path + ",queues=" + std::to_string(queues) + ",tso=1";
    std::vector<std::string> args{"dpnb-vhost-peer",
                                  "--lcores",
                                  lcore_map(),
                                  "--no-huge",
                                  "-m",
                                  std::to_string(memory_mb),
                                  "--no-pci",
                                  "--file-prefix",
                                  prefix,
                                  "--vdev",
                                  vdev,
                                  "--no-telemetry",
                                  "--log-level",
                                  "notice"};
    std::vector<char*> eal_argv;
    for (auto& a : args)
        eal_argv.push_back(a.data());
    eal_argv.push_back(nullptr);
    if (rte_eal_init(static_cast<int>(args.size()), eal_argv.data()) < 0)
        return peer.fail(std::string("rte_eal_init: ") + rte_strerror(rte_errno));

    if (rte_eth_dev_get_port_by_name("net_vhost0", &peer.port) != 0)
        return peer.fail("no net_vhost0 port after EAL start-up");
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(peer.port, &info); rc != 0)
        return peer.fail(std::string("rte_eth_dev_info_get: ") + rte_strerror(-rc));
    peer.pool = rte_pktmbuf_pool_create("vhost_peer", 8191, 256, 0,
                                        kDataRoom + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
    if (peer.pool == nullptr)
        return peer.fail(std::string("mbuf pool: ") + rte_strerror(rte_errno));
    rte_eth_conf conf{};
    // The checksum offloads leave a partial checksum as it came (RTE_MBUF_F_RX_L4_CKSUM_NONE)
    // instead of the PMD completing it in software: the test sees what the sender wrote.
    conf.rxmode.offloads =
        info.rx_offload_capa & (RTE_ETH_RX_OFFLOAD_TCP_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
    conf.txmode.offloads =
        info.tx_offload_capa & (RTE_ETH_TX_OFFLOAD_MULTI_SEGS | RTE_ETH_TX_OFFLOAD_TCP_CKSUM |
                                RTE_ETH_TX_OFFLOAD_UDP_CKSUM);
    // net_vhost creates and listens on the socket here.
    if (int rc = rte_eth_dev_configure(peer.port, peer.queues, peer.queues, &conf); rc != 0)
        return peer.fail(std::string("rte_eth_dev_configure: ") + rte_strerror(-rc));
    for (std::uint16_t q = 0; q < peer.queues; ++q) {
        if (int rc = rte_eth_rx_queue_setup(peer.port, q, 1024, SOCKET_ID_ANY, nullptr, peer.pool);
            rc != 0)
            return peer.fail("RX queue set-up: " + std::string(rte_strerror(-rc)));
        if (int rc = rte_eth_tx_queue_setup(peer.port, q, 1024, SOCKET_ID_ANY, nullptr); rc != 0)
            return peer.fail("TX queue set-up: " + std::string(rte_strerror(-rc)));
    }
    if (int rc = rte_eth_dev_start(peer.port); rc != 0)
        return peer.fail(std::string("rte_eth_dev_start: ") + rte_strerror(-rc));
    MsgHeader ready;
    ready.kind = MsgKind::ready;
    ready.queue = peer.queues;
    if (!peer.reply(ready)) return kExitSetup;

    while (!g_stop.load()) {
        const bool any = peer.forward_received();
        pollfd p{peer.ctl, POLLIN, 0};
        if (::poll(&p, 1, any ? 0 : 1) > 0 && !peer.serve_control()) break;
    }
    (void)rte_eth_dev_stop(peer.port);
    (void)rte_eth_dev_close(peer.port);
    (void)rte_eal_cleanup();
    return 0;
}
