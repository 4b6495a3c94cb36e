// The Engine with an in-process peer: a net_ring port whose rings the test fills and
// drains (net_ring hands mbufs over, so RX copies: the copy path with multi-slot frames).
//   * frames of 64..9000 bytes both ways, every byte checked (RX spans up to 3 guest
//     buffers; TX has up to 3 slots, mapped and chained as external buffers);
//   * the PMD's "free" of a TX packet happens on another thread (the test's drainer), which
//     is what the external-buffer callback and the completion ring are for;
//   * TCP with a partial checksum and TCP GSO over IPv4 and IPv6 on a port with no
//     offloads: checksums and segmentation done in software, every segment checked;
//   * after detach: the test's mbufs all back, no grant pinned, the engine's pools full;
//   * the lcore counters that need a NIC or an lcore in trouble: a TX ring the peer does not
//     drain (tx_nic_drops), an lcore that stops taking frames from its inbox (inbox_drops),
//     and the NIC queues each lcore polls (nic_queues);
//   * RX over a 4-queue guest's queues by flow hash (one flow one queue, 64 flows every
//     queue, the port's RSS hash, the frontend's mapping) and the hash extra-info slot only
//     when the frontend asked for hashes over its control ring;
//   * large receives (mbufs flagged RTE_MBUF_F_RX_LRO with an MSS, as vhost-net's or a NIC's
//     LRO delivers them, built here since net_ring carries whatever it is given): 64 KiB TCP
//     over IPv4 and IPv6 to a GSO frontend as one packet with its GSO extra, and to frontends
//     without GSO or without feature-sg as segments with their checksums;
//   * a second net_ring port whose peer plays the NIC (rx_peer_fills_pool): it fills the
//     buffers the engine posted, and map and reuse are zero copy;
//   * mac_flow steering on a 3-queue net_ring port whose peer plays a NIC with MAC rules
//     (pmd::SimMacRules): a dedicated zero-copy queue and a rule per guest for as long as
//     it stays, broadcasts through the default queue, local delivery between guests on
//     dedicated queues, and a NIC that refuses rules.
#include <dirent.h>
#include <poll.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <thread>
#include <tuple>
#include <unistd.h>
#include <utility>

#include "dpnb/hv/dma_mapper.hpp"
#include "dpnb/hv/sim.hpp"
#include "dpnb/netfront/toolstack.hpp"
#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/pmd/cpu_placement.hpp"
#include "dpnb/pmd/eal.hpp"
#include "dpnb/pmd/mac_rules.hpp"
#include "harness.hpp"
#include "raw_frontend.hpp"

namespace dpnb::component {
namespace {

// Holds one thread of this process (and only it) in a signal handler until released: an
// lcore that falls behind, as when its CPU is taken away.
int g_hold[2] = {-1, -1}; // the handler waits for a byte on g_hold[0]
int g_held[2] = {-1, -1}; // and writes one to g_held[1] when it starts waiting

void hold_thread(int) {
    const int saved = errno;
    char c = 1;
    (void)!::write(g_held[1], &c, 1);
    while (::read(g_hold[0], &c, 1) < 0 && errno == EINTR) {
    }
    errno = saved;
}

class LcoreHold {
public:
    // EAL names the thread of worker lcore N "rte-worker-N".
    explicit LcoreHold(unsigned lcore_id) {
        const std::string want = "rte-worker-" + std::to_string(lcore_id);
        if (DIR* d = ::opendir("/proc/self/task")) {
            while (dirent* e = ::readdir(d)) {
                std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
                std::string name;
                if (std::getline(comm, name) && name == want) tid_ = std::atoi(e->d_name);
            }
            ::closedir(d);
        }
        if (::pipe(g_hold) != 0 || ::pipe(g_held) != 0) tid_ = -1;
        struct sigaction sa {};
        sa.sa_handler = hold_thread;
        ::sigemptyset(&sa.sa_mask);
        ::sigaction(SIGUSR2, &sa, &old_);
    }
    ~LcoreHold() {
        release();
        ::sigaction(SIGUSR2, &old_, nullptr);
        for (int* p : {g_hold, g_held})
            for (int i = 0; i < 2; ++i)
                if (p[i] >= 0) ::close(std::exchange(p[i], -1));
    }
    bool found() const { return tid_ > 0; }
    // True once the thread waits in the handler.
    bool hold() {
        if (::syscall(SYS_tgkill, ::getpid(), tid_, SIGUSR2) != 0) return false;
        char c;
        held_ = ::read(g_held[0], &c, 1) == 1;
        return held_;
    }
    void release() {
        if (!std::exchange(held_, false)) return;
        const char c = 1;
        (void)!::write(g_hold[1], &c, 1);
    }

private:
    int tid_ = -1;
    bool held_ = false;
    struct sigaction old_ {};
};

// The simulated hypervisor's event channels as Linux's evtchn driver shows them: each port
// bound gets IRQs (`per_bind`, normally 1) named "evtchn:" and the opening thread's name in
// a simulated kernel, and loses them when unbound.
class IrqEventChannels final : public hv::EventChannels {
public:
    IrqEventChannels(std::unique_ptr<hv::EventChannels> inner, pmd::SimCpuPlacement& sim,
                     unsigned per_bind)
        : inner_(std::move(inner)), sim_(sim), per_bind_(per_bind) {
        char comm[17] = {};
        (void)::prctl(PR_GET_NAME, comm);
        action_ = std::string("evtchn:") + comm;
    }
    Result<hv::EvtchnPort> bind_interdomain(hv::DomId remote, hv::EvtchnPort port) override {
        auto p = inner_->bind_interdomain(remote, port);
        if (p)
            for (unsigned i = 0; i < per_bind_; ++i)
                irqs_[*p].push_back(sim_.add_irq(action_));
        return p;
    }
    Result<hv::EvtchnPort> bind_unbound(hv::DomId remote) override {
        return inner_->bind_unbound(remote);
    }
    Status unbind(hv::EvtchnPort local) override {
        for (unsigned irq : irqs_[local])
            sim_.remove_irq(irq);
        irqs_.erase(local);
        return inner_->unbind(local);
    }
    Status notify(hv::EvtchnPort local) override { return inner_->notify(local); }
    int fd() const override { return inner_->fd(); }
    Result<std::optional<hv::EvtchnPort>> pending() override { return inner_->pending(); }
    Status unmask(hv::EvtchnPort local) override { return inner_->unmask(local); }
    std::optional<std::string> irq_action() const override { return action_; }

private:
    std::unique_ptr<hv::EventChannels> inner_;
    pmd::SimCpuPlacement& sim_;
    unsigned per_bind_;
    std::string action_;
    std::map<hv::EvtchnPort, std::vector<unsigned>> irqs_;
};

class IrqBackend final : public hv::BackendHypervisor {
public:
    IrqBackend(std::unique_ptr<hv::BackendHypervisor> inner, pmd::SimCpuPlacement& sim,
               unsigned per_bind)
        : inner_(std::move(inner)), sim_(sim), per_bind_(per_bind) {}
    std::string_view kind() const override { return inner_->kind(); }
    hv::DomId self() const override { return inner_->self(); }
    Result<std::unique_ptr<hv::GrantTable>> open_grant_table() override {
        return inner_->open_grant_table();
    }
    Result<std::unique_ptr<hv::EventChannels>> open_event_channels() override {
        auto e = inner_->open_event_channels();
        if (!e) return std::move(e).error();
        return std::unique_ptr<hv::EventChannels>(
            std::make_unique<IrqEventChannels>(std::move(*e), sim_, per_bind_));
    }
    Result<std::unique_ptr<hv::Xenstore>> open_xenstore() override {
        return inner_->open_xenstore();
    }
    hv::Domains& domains() override { return inner_->domains(); }
    Result<std::unique_ptr<hv::TranslationTable>> open_translation_table(hv::DomId g) override {
        return inner_->open_translation_table(g);
    }

private:
    std::unique_ptr<hv::BackendHypervisor> inner_;
    pmd::SimCpuPlacement& sim_;
    unsigned per_bind_;
};

// How EngineRing::connect_guests serves its guests.
struct Serve {
    std::string port = "ctring"; // the ring port's peer (EngineRing::start_ring_engine)
    unsigned max_queues = 1;     // the Engine's offer
    bool drain = true;           // start the drainer once the guests are connected
};

class EngineRing : public SimFixture {
protected:
    void TearDown() override {
        stop_drainer();
        engine_.reset();
        backend_.reset();
        if (pool_ != nullptr) rte_mempool_free(pool_);
        for (rte_ring* r : rings_)
            rte_ring_free(r);
        SimFixture::TearDown();
    }

    // The peer: one RX ring (the engine receives what the test puts there), a TX ring per
    // lcore (the engine sends there), and a mempool for what the test injects.
    void make_ring_port(const std::string& name) {
        CT_ASSERT_OK(pmd::init_eal(eal_));
        rx_ = rte_ring_create((name + "_rx").c_str(), 1024, SOCKET_ID_ANY,
                              RING_F_SP_ENQ | RING_F_SC_DEQ);
        ASSERT_NE(rx_, nullptr);
        rings_.push_back(rx_);
        for (int i = 0; i < 2; ++i) {
            rte_ring* t = rte_ring_create((name + "_tx" + std::to_string(i)).c_str(), tx_ring_size_,
                                          SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
            ASSERT_NE(t, nullptr);
            rings_.push_back(t);
            tx_.push_back(t);
        }
        const int port = rte_eth_from_rings(name.c_str(), &rx_, 1, tx_.data(), 2, SOCKET_ID_ANY);
        ASSERT_GE(port, 0);
        char ethdev[RTE_ETH_NAME_MAX_LEN];
        ASSERT_EQ(rte_eth_dev_get_name_by_port(static_cast<std::uint16_t>(port), ethdev), 0);
        ethdev_ = ethdev;
        // Cache 0: mbufs are freed by the engine's lcores and by the drainer thread.
        pool_ = rte_pktmbuf_pool_create((name + "_pool").c_str(), pool_mbufs_, 0, 0,
                                        pool_data_room_, SOCKET_ID_ANY);
        ASSERT_NE(pool_, nullptr);
    }

    // A second port, "zc", for one guest (dedicated_port): an RX ring the test's "NIC"
    // fills with the buffers the engine posted (rx_peer_fills_pool), a TX ring nobody reads;
    // the peer's rings named after `prefix`, the rings in zc_rx_ and zc_tx_. Added to the next
    // start_engine().
    void add_peer_fills_port(const std::string& prefix) {
        rte_ring* nic = rte_ring_create((prefix + "_rx").c_str(), 1024, SOCKET_ID_ANY,
                                        RING_F_SP_ENQ | RING_F_SC_DEQ);
        rte_ring* out = rte_ring_create((prefix + "_tx").c_str(), 1024, SOCKET_ID_ANY,
                                        RING_F_SP_ENQ | RING_F_SC_DEQ);
        ASSERT_NE(nic, nullptr);
        ASSERT_NE(out, nullptr);
        rings_.push_back(nic);
        rings_.push_back(out);
        pmd::PortConfig zc;
        zc.name = "zc";
        zc.device = ring_ethdev(prefix, nic, out);
        ASSERT_FALSE(zc.device.empty());
        zc.steering = pmd::Steering::dedicated_port;
        zc.rx_peer_fills_pool = true;
        extra_ports_.push_back(zc);
        zc_rx_ = nic;
        zc_tx_ = out;
    }

    void start_engine() {
        auto bhv = hv::sim::connect_backend(dir_.path());
        CT_ASSERT_OK(bhv);
        backend_ = std::move(*bhv);
        if (irq_sim_ != nullptr)
            backend_ = std::make_unique<IrqBackend>(std::move(backend_), *irq_sim_, irqs_per_bind_);
        pmd::PortConfig p;
        p.name = "ring";
        p.device = ethdev_;
        p.steering = pmd::Steering::shared;
        p.mtu = 9000;
        std::vector<pmd::PortConfig> ports = {p};
        ports.insert(ports.end(), extra_ports_.begin(), extra_ports_.end());
        EngineOptions o = engine_options(std::move(ports));
        o.tx_copy_slot_max = tx_copy_slot_max_;
        o.map_batch = map_batch_;
        o.rx_stall_timeout = rx_stall_timeout_;
        o.ip_anti_spoofing = ip_anti_spoofing_;
        o.eal = eal_;
        o.place_interrupts = place_interrupts_;
        o.place_vhost_workers = place_vhost_workers_;
        auto e = Engine::create(o, *backend_,
                                dma_probe_ != nullptr ? *dma_probe_ : pmd::system_dma_probe(),
                                irq_sim_, iommu_);
        CT_ASSERT_OK(e);
        engine_ = std::move(*e);
        handshake_ = std::make_unique<BackendHandshake>(*xs_, *engine_);
    }

    // Waits for the peer's pool as for the ring, as a wire waits for the NIC: under CPU
    // contention the engine may hold a burst's mbufs a moment longer than the loop takes to
    // send a pool's worth (the stress stage found "no mbuf" here).
    bool inject(const std::vector<std::byte>& frame) {
        rte_mbuf* m = rte_pktmbuf_alloc(pool_);
        for (int tries = 0; m == nullptr && tries < 10000; ++tries) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            m = rte_pktmbuf_alloc(pool_);
        }
        if (m == nullptr) return false;
        auto* d = rte_pktmbuf_append(m, static_cast<std::uint16_t>(frame.size()));
        if (d == nullptr) {
            rte_pktmbuf_free(m);
            return false;
        }
        std::memcpy(d, frame.data(), frame.size());
        while (rte_ring_sp_enqueue(rx_, m) != 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return true;
    }

    // A guest's domain, created and its vif plugged. Its process is forked next, before the
    // Engine starts, as every guest here.
    hv::DomId plugged_guest(const std::string& name) {
        const hv::DomId dom = create_guest(name);
        CT_EXPECT_OK(plug(dom));
        return dom;
    }

    // The ring port (its peer's rings named after `port`) and the Engine; false after a
    // failure the test recorded.
    bool start_ring_engine(const std::string& port = "ctring") {
        make_ring_port(port);
        if (HasFatalFailure()) return false;
        start_engine();
        return engine_ != nullptr;
    }

    // The ring port, the Engine, and `guests` (their processes forked before) attached to the
    // ring port in RX mode copy, in order, then each connected; then the drainer. The test
    // returns on a fatal failure or without an Engine.
    void connect_guests(const std::vector<std::pair<GuestProcess*, hv::DomId>>& guests,
                        const Serve& s = {}) {
        if (!start_ring_engine(s.port)) return;
        handshake_->caps.max_queues = s.max_queues;
        for (auto [g, dom] : guests)
            CT_ASSERT_OK(handshake_->connect(dom, 0, "ring", RxMode::copy));
        for (auto [g, dom] : guests)
            ASSERT_TRUE(g->wait_connected()) << "guest " << dom;
        if (s.drain) start_drainer();
    }
    void connect_guest(GuestProcess& g, hv::DomId dom, const Serve& s = {}) {
        connect_guests({{&g, dom}}, s);
    }

    // A frame as a port receives it: a chain of the peer's mbufs, with the RX metadata a NIC
    // or vhost-net sets (offload flags, the MSS of a large receive, an RSS hash).
    bool inject_rx(const std::vector<std::byte>& frame, std::uint64_t ol_flags,
                   std::uint16_t mss = 0, std::optional<std::uint32_t> rss = std::nullopt) {
        rte_mbuf* head = nullptr;
        for (std::size_t off = 0; off < frame.size();) {
            rte_mbuf* m = rte_pktmbuf_alloc(pool_);
            if (m == nullptr) {
                rte_pktmbuf_free(head);
                return false;
            }
            const auto n = static_cast<std::uint16_t>(
                std::min<std::size_t>(frame.size() - off, rte_pktmbuf_tailroom(m)));
            std::memcpy(rte_pktmbuf_append(m, n), frame.data() + off, n);
            off += n;
            if (head == nullptr) {
                head = m;
            } else if (rte_pktmbuf_chain(head, m) != 0) {
                rte_pktmbuf_free(m);
                rte_pktmbuf_free(head);
                return false;
            }
        }
        head->ol_flags = ol_flags;
        head->tso_segsz = mss;
        if (rss) {
            head->ol_flags |= RTE_MBUF_F_RX_RSS_HASH;
            head->hash.rss = *rss;
        }
        while (rte_ring_sp_enqueue(rx_, head) != 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return true;
    }

    // A thread that is not a DPDK lcore takes what the engine sends, keeps a copy, and
    // frees the mbufs: the engine's TX completions come from here.
    void start_drainer() {
        stop_ = false;
        drainer_ = std::thread([this] {
            while (!stop_.load()) {
                bool any = false;
                for (rte_ring* t : tx_) {
                    void* objs[32];
                    const unsigned n = rte_ring_sc_dequeue_burst(t, objs, 32, nullptr);
                    for (unsigned i = 0; i < n; ++i) {
                        auto* m = static_cast<rte_mbuf*>(objs[i]);
                        std::vector<std::byte> f(m->pkt_len);
                        const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, f.data());
                        if (p != f.data()) std::memcpy(f.data(), p, m->pkt_len);
                        {
                            std::lock_guard lock(mu_);
                            sent_.push_back(std::move(f));
                            segs_.push_back(m->nb_segs);
                            first_lens_.push_back(m->data_len);
                        }
                        rte_pktmbuf_free(m);
                    }
                    any = any || n != 0;
                }
                if (!any) std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        });
    }
    void stop_drainer() {
        stop_ = true;
        if (drainer_.joinable()) drainer_.join();
    }
    // The drainer stopped, the Engine shut down, and nothing of it leaked.
    void shut_down_clean() {
        stop_drainer();
        CT_EXPECT_OK(engine_->shutdown());
        for (const auto& d : engine_->leaks().details)
            ADD_FAILURE() << d;
    }
    std::vector<std::vector<std::byte>> take_sent(std::size_t want) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
        for (;;) {
            {
                std::lock_guard lock(mu_);
                if (sent_.size() >= want || std::chrono::steady_clock::now() >= deadline) {
                    auto out = std::move(sent_);
                    sent_.clear();
                    return out;
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    std::unique_ptr<hv::BackendHypervisor> backend_;
    std::unique_ptr<Engine> engine_;
    std::unique_ptr<BackendHandshake> handshake_;
    std::vector<rte_ring*> rings_;
    rte_ring* rx_ = nullptr;
    std::vector<rte_ring*> tx_;
    rte_mempool* pool_ = nullptr;
    std::string ethdev_;
    std::thread drainer_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::vector<std::vector<std::byte>> sent_;
    std::vector<unsigned> segs_;
    std::vector<unsigned> first_lens_; // bytes in the first segment: where a NIC reads headers
    std::uint16_t tx_copy_slot_max_ = 4096;
    std::chrono::milliseconds rx_stall_timeout_{60000};
    bool ip_anti_spoofing_ = false;
    pmd::EalOptions eal_ = test_eal();
    // Placement: a simulated kernel (IRQs, vhost workers) instead of the system's, the IRQs
    // each bind makes in it (2: another handle of the same name binding at once).
    pmd::SimCpuPlacement* irq_sim_ = nullptr;
    pmd::SimCpuPlacement sim_; // what irq_sim_ points at: outlives the engine (TearDown)
    unsigned irqs_per_bind_ = 1;
    bool place_interrupts_ = true;
    bool place_vhost_workers_ = true;
    unsigned tx_ring_size_ = 1024; // the peer's TX rings (what the engine sends into)
    unsigned pool_mbufs_ = 1023;   // the peer's mbufs, for what the test injects
    std::uint16_t pool_data_room_ = 9216 + RTE_PKTMBUF_HEADROOM;
    std::vector<pmd::PortConfig> extra_ports_; // after the ring port
    rte_ring* zc_rx_ = nullptr;                // add_peer_fills_port's rings
    rte_ring* zc_tx_ = nullptr;
    // The DMA policy's view of the ports (the system's when null) and the IOMMU guest pages
    // are DMA-mapped into for ports behind one (DPDK's vfio container when null).
    const pmd::DmaProbe* dma_probe_ = nullptr;
    hv::DmaMapper* iommu_ = nullptr;
    unsigned map_batch_ = 1;

    // Placement through sim_ (the Engine's and the event channels' IRQs) from the next
    // start_engine().
    pmd::SimCpuPlacement& simulated_placement() {
        irq_sim_ = &sim_;
        return sim_;
    }
    // The IRQs of the one queue of `dom`'s vif; empty ones (the failure recorded) otherwise.
    QueueIrqs one_queue_irqs(hv::DomId dom) {
        auto st = engine_->status(VifId{dom, 0});
        CT_EXPECT_OK(st);
        if (!st || st->queue_irqs.size() != 1) {
            ADD_FAILURE() << "no vif of one queue";
            return QueueIrqs{};
        }
        return st->queue_irqs[0];
    }

    std::vector<LcoreStats>
    lcore_stats_after(std::function<bool(const std::vector<LcoreStats>&)> done) const {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
        for (;;) {
            auto s = engine_->lcore_stats();
            if (done(s) || std::chrono::steady_clock::now() >= deadline) return s;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    void jumbo_frames_both_ways(std::uint16_t tx_copy_slot_max);
    void inject_jumbo_frames(GuestProcess& g, hv::DomId dom, unsigned count);
    void close_and_check(GuestProcess& g, hv::DomId dom) { close_and_check({{&g, dom}}); }
    void close_and_check(std::vector<std::pair<GuestProcess*, hv::DomId>> guests);
};

// The i-th frame of inject_jumbo_frames: 64..9000 bytes, the first 9000.
std::size_t jumbo_frame_size(unsigned i) {
    return i == 0 ? 9000 : 64 + (i * 977) % (9000 - 64 + 1);
}

// Peer -> guest on stream 1, paced by the guest's receipts; every frame arrives intact.
void EngineRing::inject_jumbo_frames(GuestProcess& g, hv::DomId dom, unsigned count) {
    for (unsigned i = 0; i < count; ++i) {
        ASSERT_TRUE(inject(payload_frame(guest_mac(dom), peer_mac(), i, 1, jumbo_frame_size(i))));
        if (i % 16 == 15) {
            auto r = g.wait_received(1, i + 1);
            ASSERT_TRUE(r);
            ASSERT_EQ(r->received, i + 1) << r->counters;
        }
    }
    auto r = g.wait_received(1, count);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, count);
    EXPECT_EQ(r->bad, 0u);
}

// The guests close, the engine shuts down: nothing leaked, every mbuf back, no grant pinned.
void EngineRing::close_and_check(std::vector<std::pair<GuestProcess*, hv::DomId>> guests) {
    for (auto [g, dom] : guests) {
        ASSERT_TRUE(g->request_close());
        CT_EXPECT_OK(handshake_->disconnect(dom, 0));
        EXPECT_TRUE(g->close_result());
        EXPECT_TRUE(g->succeeded());
    }
    shut_down_clean();
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_->size) << "every injected mbuf came back";
    engine_.reset();
    backend_.reset();
    EXPECT_EQ(total_pinned(), 0u);
}

// Jumbo frames both ways, TCP with a partial checksum and GSO segmented in software. TX runs
// twice: with every slot grant-copied into daemon mbufs (tx_copy_slot_max = 4096, the
// default) and with every piece beyond the header grant-mapped (0).
void EngineRing::jumbo_frames_both_ways(std::uint16_t tx_copy_slot_max) {
    tx_copy_slot_max_ = tx_copy_slot_max;
    const hv::DomId dom = plugged_guest("ringguest");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom);
    if (HasFatalFailure() || !engine_) return;

    // Peer -> guest: 64..9000 bytes, paced.
    constexpr unsigned kFrames = 96;
    inject_jumbo_frames(g, dom, kFrames);
    if (HasFatalFailure()) return;
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.rx_packets, kFrames);
    EXPECT_GT(st->counters.grant_copy_ops, kFrames) << "jumbo frames span several buffers";

    // Guest -> peer: 9000 bytes in three slots, and a frame crossing into a second page.
    ASSERT_TRUE(g.send(peer_mac(), 2, 24, 9000, 0));
    ASSERT_TRUE(g.send(peer_mac(), 3, 24, 2000, 3000));
    auto out = take_sent(48);
    ASSERT_EQ(out.size(), 48u);
    for (unsigned i = 0; i < 48; ++i) {
        const bool first = i < 24;
        const auto want = payload_frame(peer_mac(), guest_mac(dom), first ? i : i - 24,
                                        first ? 2 : 3, first ? 9000 : 2000);
        EXPECT_TRUE(out[i] == want) << "frame " << i << " differs";
    }
    {
        std::lock_guard lock(mu_);
        EXPECT_GE(*std::max_element(segs_.begin(), segs_.end()), 3u)
            << "a slot per segment behind the copied header";
    }
    st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    if (tx_copy_slot_max == 0) {
        EXPECT_GE(st->counters.grant_map_ops, 48u) << "the slots beyond the header are mapped";
    } else {
        EXPECT_EQ(st->counters.grant_map_ops, 0u) << "every slot is copied";
        EXPECT_GE(st->counters.grant_copy_ops, kFrames + 48u * 3);
    }

    // TCP with a partial checksum, and GSO, on a port with no offloads.
    ASSERT_TRUE(g.send_tcp(peer_mac(), 4, 1200, 0, false, 7));
    auto plain = take_sent(4);
    ASSERT_EQ(plain.size(), 4u);
    for (unsigned i = 0; i < 4; ++i) {
        const TcpSegment s = check_tcp_frame(plain[i], false, 7, i * 100000);
        EXPECT_TRUE(s.ok) << "frame " << i << ": " << s.why;
        EXPECT_EQ(s.payload, 1200u);
    }
    for (const bool v6 : {false, true}) {
        constexpr std::uint32_t kPayload = 20000;
        constexpr std::uint16_t kMss = 1400;
        ASSERT_TRUE(g.send_tcp(peer_mac(), 2, kPayload, kMss, v6, 11));
        const std::size_t per = (kPayload + kMss - 1) / kMss;
        auto segs = take_sent(2 * per);
        ASSERT_EQ(segs.size(), 2 * per) << (v6 ? "IPv6" : "IPv4");
        for (unsigned p = 0; p < 2; ++p) {
            std::size_t total = 0;
            for (std::size_t k = 0; k < per; ++k) {
                const TcpSegment s = check_tcp_frame(segs[p * per + k], v6, 11, p * 100000);
                EXPECT_TRUE(s.ok) << (v6 ? "IPv6" : "IPv4") << " segment " << k << ": " << s.why;
                EXPECT_EQ(s.seq, p * 100000 + k * kMss);
                EXPECT_LE(s.payload, kMss);
                EXPECT_EQ(s.fin_or_psh, k + 1 == per) << "PSH only on the last segment";
                total += s.payload;
            }
            EXPECT_EQ(total, kPayload);
        }
    }
    st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.tx_drop_error + st->counters.tx_drop_protocol, 0u);
    auto rep = g.report(1);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->tx_failed, 0u);

    close_and_check(g, dom);
}

TEST_F(EngineRing, JumboFramesBothWaysAndSoftwareOffloadsTxCopied) {
    jumbo_frames_both_ways(4096);
}

TEST_F(EngineRing, JumboFramesBothWaysAndSoftwareOffloadsTxMapped) {
    jumbo_frames_both_ways(0);
}

// XSA-423: a guest splits a TCP packet's headers across two slots at every byte of the first
// 128 (its frame starts that many bytes before its page's end), over IPv4 and IPv6, plain and
// with a partial checksum, on a queue that maps everything beyond the header copy (pages the
// guest can still write). (A first slot shorter than an Ethernet header is refused by the TX
// parser, as Linux does: tx_short_first_slot in the parser's tests; netfront never sends
// one.) From 14 bytes on, every packet reaches the port whole, with all its headers in the
// first segment (the daemon's copy). A packet whose
// headers run past tx_copy_len (IPv6 extension headers of 160 bytes) is dropped and
// counted, and the queue goes on.
TEST_F(EngineRing, SplitHeadersAreLinearisedBeforeTheNic) {
    tx_copy_slot_max_ = 0;
    const hv::DomId dom = plugged_guest("ringguest");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom);
    if (HasFatalFailure() || !engine_) return;

    constexpr std::uint32_t kSplits = 128;
    struct Sent {
        std::vector<std::byte> frame;
        bool v6, partial;
        std::uint8_t seed;
    };
    std::vector<Sent> sent;
    for (std::uint32_t at = netif::kEthHeaderLen; at <= kSplits; ++at)
        for (const bool v6 : {false, true}) {
            const bool partial = at % 2 == 0;
            const auto seed = static_cast<std::uint8_t>(at);
            auto frame = tcp_frame(peer_mac(), guest_mac(dom), v6, at, 300, seed);
            const auto ok = g.send_frame(frame, static_cast<std::uint16_t>(4096 - at), partial);
            ASSERT_TRUE(ok.has_value());
            EXPECT_TRUE(*ok) << "split at " << at << (v6 ? " IPv6" : " IPv4");
            sent.push_back({std::move(frame), v6, partial, seed});
        }
    auto out = take_sent(sent.size());
    ASSERT_EQ(out.size(), sent.size());
    std::vector<unsigned> first_lens;
    {
        std::lock_guard lock(mu_);
        first_lens = first_lens_;
    }
    ASSERT_EQ(first_lens.size(), sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i) {
        const Sent& s = sent[i];
        const std::uint32_t at = static_cast<std::uint32_t>(i / 2 + 14);
        const unsigned headers = s.v6 ? 14 + 40 + 20 : 14 + 20 + 20;
        EXPECT_GE(first_lens[i], headers)
            << "split at " << at << (s.v6 ? " IPv6" : " IPv4") << ": headers reach the NIC split";
        if (s.partial) {
            const TcpSegment seg = check_tcp_frame(out[i], s.v6, s.seed, at);
            EXPECT_TRUE(seg.ok) << "split at " << at << ": " << seg.why;
        } else {
            EXPECT_TRUE(out[i] == s.frame) << "split at " << at << " differs";
        }
    }

    // Headers beyond the copy: IPv6 with a 160-byte hop-by-hop header, in a 600-byte packet.
    auto long_headers = tcp_frame(peer_mac(), guest_mac(dom), true, 1, 600, 3);
    std::vector<std::byte> hbh(160, std::byte{0});
    hbh[0] = std::byte{6};               // next: TCP
    hbh[1] = std::byte{160 / 8 - 1};     // length in 8-byte units beyond the first
    long_headers[14 + 6] = std::byte{0}; // IPv6 next header: hop-by-hop
    long_headers.insert(long_headers.begin() + 14 + 40, hbh.begin(), hbh.end());
    const auto dropped = g.send_frame(long_headers, 0, false);
    ASSERT_TRUE(dropped.has_value());
    EXPECT_FALSE(*dropped) << "headers beyond tx_copy_len must not reach the NIC";
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.tx_drop_headers, 1u);
    EXPECT_EQ(st->counters.tx_drop_protocol, 0u);
    EXPECT_EQ(st->counters.tx_packets, sent.size());
    EXPECT_EQ(st->counters.tx_drop_spoofed + st->counters.tx_drop_error, 0u);
    // The queue goes on.
    ASSERT_EQ(g.send_frame(sent[0].frame, 4000, false), std::optional<bool>(true));
    EXPECT_EQ(take_sent(1).size(), 1u);

    close_and_check(g, dom);
}

// An Ethernet/IPv4 ARP request from `src` claiming `sender`.
std::vector<std::byte> arp_frame(const netif::MacAddress& src, std::array<std::uint8_t, 4> sender) {
    std::vector<std::uint8_t> f(6, 0xFF);
    f.insert(f.end(), src.bytes.begin(), src.bytes.end());
    f.insert(f.end(), {0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1});
    f.insert(f.end(), src.bytes.begin(), src.bytes.end());
    f.insert(f.end(), sender.begin(), sender.end());
    f.insert(f.end(), 6, 0);
    f.insert(f.end(), {10, 0, 0, 1});
    f.resize(60, 0);
    std::vector<std::byte> out(f.size());
    std::memcpy(out.data(), f.data(), f.size());
    return out;
}

// Spoofing, with engine.ip_anti_spoofing on: guest A (toolstack "ip" 10.0.0.2) sends its own
// traffic and frames with a foreign source MAC, guest B's MAC, an IPv4 source not its own, an
// ARP sender not its own; only its own traffic (and DHCP from 0.0.0.0, an ARP probe) reaches
// the port, each drop counted by reason. Guest B has no "ip" key: its frames from any IPv4
// address pass, as Xen's vif scripts do without ip=.
TEST_F(EngineRing, SpoofedSourcesNeverReachThePort) {
    ip_anti_spoofing_ = true;
    const hv::DomId a = plugged_guest("a");
    const hv::DomId b = plugged_guest("b");
    auto paths = netfront::vif_paths(*xs_, a, hv::kDom0, 0);
    CT_ASSERT_OK(paths);
    CT_ASSERT_OK(xs_->write(hv::kNoTxn, paths->backend + "/ip", "10.0.0.2 192.168.1.2"));
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    connect_guests({{&ga, a}, {&gb, b}});
    if (HasFatalFailure() || !engine_) return;

    auto with_ipv4_source = [](std::vector<std::byte> f, std::array<std::uint8_t, 4> src) {
        for (unsigned i = 0; i < 4; ++i)
            f[14 + 12 + i] = std::byte{src[i]};
        return f;
    };
    const auto own = tcp_frame(peer_mac(), guest_mac(a), false, 1, 100, 1); // from 10.0.0.2
    auto dhcp = with_ipv4_source(own, {0, 0, 0, 0});
    dhcp[14 + 9] = std::byte{17}; // UDP 68 -> 67
    dhcp[34] = std::byte{0};
    dhcp[35] = std::byte{68};
    dhcp[36] = std::byte{0};
    dhcp[37] = std::byte{67};
    const std::vector<std::pair<std::vector<std::byte>, bool>> sent = {
        {own, true},
        {payload_frame(peer_mac(), peer_mac(), 0, 7, 100), false},   // a foreign source MAC
        {payload_frame(peer_mac(), guest_mac(b), 1, 7, 100), false}, // the other guest's MAC
        {with_ipv4_source(own, {10, 0, 0, 3}), false},
        {with_ipv4_source(own, {192, 168, 1, 2}), true},
        {arp_frame(guest_mac(a), {10, 0, 0, 9}), false},
        {arp_frame(guest_mac(a), {10, 0, 0, 2}), true},
        {arp_frame(guest_mac(a), {0, 0, 0, 0}), true}, // a probe
        {dhcp, true},
    };
    std::vector<std::vector<std::byte>> want;
    for (const auto& [frame, pass] : sent) {
        // Split across two slots too: the checks read the header copy, whole.
        for (const std::uint16_t offset : {0, 4096 - 20}) {
            EXPECT_EQ(ga.send_frame(frame, offset), std::optional<bool>(pass));
            if (pass) want.push_back(frame);
        }
    }
    // B has no "ip": an address that is not A's passes from B.
    const auto b_frame = tcp_frame(peer_mac(), guest_mac(b), false, 2, 100, 2); // 10.0.0.2
    EXPECT_EQ(gb.send_frame(with_ipv4_source(b_frame, {10, 0, 0, 77})), std::optional<bool>(true));
    want.push_back(with_ipv4_source(b_frame, {10, 0, 0, 77}));

    auto out = take_sent(want.size());
    ASSERT_EQ(out.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i)
        EXPECT_TRUE(out[i] == want[i]) << "frame " << i << " differs";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_TRUE(take_sent(0).empty()) << "nothing else reached the port";
    const VifStatus sa = engine_->status(VifId{a, 0}).value_or(VifStatus{});
    EXPECT_EQ(sa.counters.tx_drop_spoofed, 4u) << describe(sa);
    EXPECT_EQ(sa.counters.tx_drop_ip_spoofed, 4u) << describe(sa);
    EXPECT_EQ(sa.counters.tx_packets, 10u) << describe(sa);
    const VifStatus sb = engine_->status(VifId{b, 0}).value_or(VifStatus{});
    EXPECT_EQ(sb.counters.tx_drop_ip_spoofed + sb.counters.tx_drop_spoofed, 0u) << describe(sb);

    ASSERT_TRUE(gb.request_close());
    CT_EXPECT_OK(handshake_->disconnect(b, 0));
    EXPECT_TRUE(gb.close_result());
    EXPECT_TRUE(gb.succeeded());
    close_and_check(ga, a);
}

// A guest that posts no RX buffer until told to (its rings written by hand): reports 1 once
// connected; on a count, posts that many buffers (pages 2..) and reports 1; then stays until
// told to go.
void unposting_guest_main(const std::string& dir, hv::DomId dom, const Link& link) {
    test::RawFrontend f;
    f.open(dir, dom, 2 + 16);
    if (::testing::Test::HasFatalFailure()) return;
    f.connect({{"feature-sg", "1"}});
    if (::testing::Test::HasFatalFailure()) return;
    link.send(1);
    const auto n = link.recv();
    if (!n || *n == 0) return;
    for (std::uint16_t i = 0; i < *n && i < 16; ++i) {
        auto ref = f.hv->grant_access(hv::kDom0, f.pages.page(2U + i), false);
        ASSERT_TRUE(ref.has_value());
        EXPECT_TRUE(f.rx.put_request(netif::RxRequest{i, 0, *ref}));
    }
    if (f.rx.push_requests()) (void)f.ev->notify(f.rx_port);
    link.send(1);
    (void)link.recv();
}

// XSA-392's class: a guest that never posts RX buffers while frames for it keep coming. Its
// frames wait for it (the backlog) until its queue stalls after rx_stall_timeout (counted,
// shown in its status): then the backlog goes, and from then on its frames are dropped as
// they come, unstaged: under a flood of 3000 frames the peer's mbufs all come back at once
// (nothing waits for it). A guest on the same port keeps its traffic. Once the guest posts,
// it recovers and gets frames again.
TEST_F(EngineRing, AGuestThatStopsPostingStallsAndRecovers) {
    rx_stall_timeout_ = std::chrono::milliseconds(300);
    const hv::DomId good = plugged_guest("good");
    const hv::DomId bad = plugged_guest("unposting");
    GuestProcess g(dir_.path(), good, GuestOptions{});
    Link bad_link;
    Child bad_guest =
        spawn_linked(bad_link, [&](const Link& l) { unposting_guest_main(dir_.path(), bad, l); });
    connect_guest(g, good, {.drain = false});
    if (HasFatalFailure() || !engine_) return;
    CT_ASSERT_OK(handshake_->connect(bad, 0, "ring", RxMode::copy));
    ASSERT_EQ(bad_link.recv(), std::optional<std::uint64_t>(1));
    start_drainer();
    auto bad_status = [&] { return engine_->status(VifId{bad, 0}).value_or(VifStatus{}); };

    // Frames keep coming, no buffer: stalled once the timeout passed, not before.
    std::uint64_t seq = 0;
    ASSERT_TRUE(inject(payload_frame(guest_mac(bad), peer_mac(), seq++, 5, 100)));
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t backlog_seen = 0, backlog_bytes_seen = 0;
    for (VifStatus now = bad_status();
         now.stalled_queues == 0 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(20);
         now = bad_status()) {
        if (now.rx_backlog_frames > backlog_seen) {
            backlog_seen = now.rx_backlog_frames;
            backlog_bytes_seen = now.rx_backlog_bytes;
        }
        ASSERT_TRUE(inject(payload_frame(guest_mac(bad), peer_mac(), seq++, 5, 100)));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    VifStatus st = bad_status();
    ASSERT_EQ(st.stalled_queues, 1u) << describe(st);
    // Until then they waited (the backlog, shown in the status until the round that drops it).
    EXPECT_GE(backlog_seen, 1u);
    EXPECT_EQ(backlog_bytes_seen, backlog_seen * 100u);
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
    EXPECT_EQ(st.counters.rx_stalls, 1u);
    const std::uint64_t staged_drops = st.counters.rx_drop_no_buffer;
    EXPECT_EQ(staged_drops, 0u) << "before the stall, frames wait for buffers: none dropped";
    // The stall dropped the backlog (in the round that found it, a moment after the status).
    for (int i = 0; i < 2000 && bad_status().counters.rx_drop_stalled == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    st = bad_status();
    EXPECT_GE(st.counters.rx_drop_stalled, 1u) << describe(st);
    EXPECT_EQ(st.rx_backlog_frames, 0u) << "the stall dropped the backlog";
    EXPECT_EQ(st.rx_backlog_bytes, 0u);

    // The flood: dropped as they come. The peer's pool holds 1023 mbufs: 3000 frames go
    // through only if the engine keeps none of them for the stalled guest.
    constexpr unsigned kFlood = 3000;
    const std::uint64_t before = st.counters.rx_drop_stalled;
    for (unsigned i = 0; i < kFlood; ++i)
        ASSERT_TRUE(inject(payload_frame(guest_mac(bad), peer_mac(), seq++, 5, 1000)));
    for (int i = 0; i < 2000 && bad_status().counters.rx_drop_stalled < before + kFlood; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    st = bad_status();
    EXPECT_EQ(st.counters.rx_drop_stalled, before + kFlood) << describe(st);
    EXPECT_EQ(st.counters.rx_drop_no_buffer, staged_drops) << "a stalled queue stages nothing";
    EXPECT_EQ(st.counters.rx_stalls, 1u);
    for (int i = 0; i < 2000 && rte_mempool_avail_count(pool_) != pool_->size; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_->size) << "nothing held for the stalled guest";

    // The good guest on the same port is not affected.
    for (unsigned i = 0; i < 16; ++i)
        ASSERT_TRUE(inject(payload_frame(guest_mac(good), peer_mac(), i, 1, 300)));
    auto r = g.wait_received(1, 16);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, 16u);
    EXPECT_EQ(engine_->status(VifId{good, 0})->stalled_queues, 0u);

    // Frames from the good guest of the same port (local delivery) are dropped as they come
    // too, and count as local frames dropped at the receiver; the sender's are answered.
    constexpr unsigned kLocal = 12;
    const std::uint64_t stalled_before = bad_status().counters.rx_drop_stalled;
    const auto sent_before = g.report(0);
    ASSERT_TRUE(sent_before);
    ASSERT_TRUE(g.send(guest_mac(bad), 6, kLocal, 400));
    const auto sent_after = g.report(0);
    ASSERT_TRUE(sent_after);
    EXPECT_EQ(sent_after->tx_ok - sent_before->tx_ok, kLocal);
    for (int i = 0; i < 2000 && bad_status().counters.local_rx_drops < kLocal; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    st = bad_status();
    EXPECT_EQ(st.counters.local_rx_drops, kLocal) << describe(st);
    EXPECT_EQ(st.counters.rx_drop_stalled, stalled_before + kLocal);
    EXPECT_EQ(engine_->status(VifId{good, 0})->counters.local_tx_packets, kLocal);

    // The guest posts: no longer stalled (with no frame needed to notice), then gets frames.
    ASSERT_TRUE(bad_link.send(8));
    ASSERT_EQ(bad_link.recv(), std::optional<std::uint64_t>(1));
    for (int i = 0; i < 2000 && bad_status().stalled_queues != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(bad_status().stalled_queues, 0u);
    for (unsigned i = 0; i < 4; ++i)
        ASSERT_TRUE(inject(payload_frame(guest_mac(bad), peer_mac(), seq++, 5, 100)));
    for (int i = 0; i < 2000 && bad_status().counters.rx_packets < 4; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    st = bad_status();
    EXPECT_EQ(st.counters.rx_packets, 4u) << describe(st);
    EXPECT_EQ(st.counters.rx_stalls, 1u);

    CT_EXPECT_OK(engine_->detach(VifId{bad, 0}));
    bad_link.send(0);
    EXPECT_TRUE(bad_guest.succeeded());
    close_and_check(g, good);
}

// A guest of the port on the sender's lcore with no RX buffer posted: frames the sender puts
// in one grant copy towards it find no request, are dropped and counted there (no buffer,
// local), and the sender hears exactly one OKAY per frame.
TEST_F(EngineRing, OneCopyToAGuestWithoutBuffersDropsAndAnswersOnce) {
    const hv::DomId a = plugged_guest("sender");
    const hv::DomId other = plugged_guest("other");
    const hv::DomId bad = plugged_guest("nobuffers");
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess go(dir_.path(), other, GuestOptions{});
    Link bad_link;
    Child bad_guest =
        spawn_linked(bad_link, [&](const Link& l) { unposting_guest_main(dir_.path(), bad, l); });
    connect_guests({{&ga, a}, {&go, other}}, {.drain = false});
    if (HasFatalFailure() || !engine_) return;
    CT_ASSERT_OK(handshake_->connect(bad, 0, "ring", RxMode::copy));
    ASSERT_EQ(bad_link.recv(), std::optional<std::uint64_t>(1));
    start_drainer();
    auto vif = [&](hv::DomId d) { return engine_->status(VifId{d, 0}).value_or(VifStatus{}); };
    ASSERT_EQ(vif(a).lcore, vif(bad).lcore);

    // The first frame makes the sender's queue copy headers apart (and is dropped too).
    ASSERT_TRUE(ga.send(guest_mac(bad), 1, 1, 1000));
    const VifCounters a0 = vif(a).counters;
    const auto r0 = ga.report(0);
    ASSERT_TRUE(r0);
    constexpr unsigned kFrames = 20;
    ASSERT_TRUE(ga.send(guest_mac(bad), 1, kFrames, 1000));
    const auto r1 = ga.report(0);
    ASSERT_TRUE(r1);
    EXPECT_EQ(r1->tx_ok - r0->tx_ok, kFrames);
    EXPECT_EQ(r1->tx_failed, 0u);
    EXPECT_EQ(r1->broken, 0u) << "a response the sender did not expect";
    const VifCounters a1 = vif(a).counters;
    EXPECT_EQ(a1.grant_copy_ops - a0.grant_copy_ops, kFrames) << "headers only: one copy";
    EXPECT_EQ(a1.local_tx_packets - a0.local_tx_packets, kFrames);
    const VifStatus sb = vif(bad);
    EXPECT_EQ(sb.counters.rx_drop_no_buffer, kFrames + 1) << describe(sb);
    EXPECT_EQ(sb.counters.local_rx_drops, kFrames + 1);
    EXPECT_EQ(sb.counters.rx_packets, 0u);

    // The sender's other traffic goes on.
    ASSERT_TRUE(ga.send(guest_mac(other), 2, 8, 1000));
    auto r = go.wait_received(2, 8);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, 8u);

    CT_EXPECT_OK(engine_->detach(VifId{bad, 0}));
    bad_link.send(0);
    EXPECT_TRUE(bad_guest.succeeded());
    close_and_check({{&ga, a}, {&go, other}});
}

// A guest behind on its RX buffers loses nothing while it is less than a backlog behind (as
// Linux netback queues skbs for a vif): 300 frames come before it posts any; the first 256
// wait (kMaxPendingFrames, within kRxBacklogBytes), the other 44 are dropped and counted;
// once it posts 16 buffers the first 16 frames reach them, in order, and the rest keep
// waiting. Detached, the queue gives every waiting mbuf back to the port's pool.
TEST_F(EngineRing, FramesWaitForAGuestBehindOnBuffers) {
    const hv::DomId dom = plugged_guest("behind");
    Link link;
    Child guest =
        spawn_linked(link, [&](const Link& l) { unposting_guest_main(dir_.path(), dom, l); });
    if (!start_ring_engine("ctbehind")) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "ring", RxMode::copy));
    ASSERT_EQ(link.recv(), std::optional<std::uint64_t>(1));
    start_drainer();
    auto status = [&] { return engine_->status(VifId{dom, 0}).value_or(VifStatus{}); };

    constexpr unsigned kFrames = 300;
    constexpr unsigned kMaxPendingFrames = 256; // a queue's frames waiting (guest_queue.hpp)
    for (unsigned i = 0; i < kFrames; ++i)
        ASSERT_TRUE(inject(payload_frame(guest_mac(dom), peer_mac(), i, 5, 1000)));
    for (int i = 0; i < 2000 && status().counters.rx_drop_no_buffer < kFrames - kMaxPendingFrames;
         ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    VifStatus st = status();
    EXPECT_EQ(st.counters.rx_drop_no_buffer, kFrames - kMaxPendingFrames) << describe(st);
    EXPECT_EQ(st.counters.rx_packets, 0u);
    EXPECT_EQ(st.stalled_queues, 0u);
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_->size - kMaxPendingFrames)
        << "the backlog holds one mbuf per waiting frame";

    ASSERT_TRUE(link.send(16)); // the guest posts 16 buffers
    ASSERT_EQ(link.recv(), std::optional<std::uint64_t>(1));
    for (int i = 0; i < 2000 && status().counters.rx_packets < 16; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    st = status();
    EXPECT_EQ(st.counters.rx_packets, 16u) << describe(st);
    EXPECT_EQ(st.counters.rx_bytes, 16u * 1000u);
    EXPECT_EQ(st.counters.rx_drop_no_buffer, kFrames - kMaxPendingFrames);

    CT_EXPECT_OK(engine_->detach(VifId{dom, 0}));
    for (int i = 0; i < 2000 && rte_mempool_avail_count(pool_) != pool_->size; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_->size) << "the backlog went back to the pool";
    link.send(0);
    EXPECT_TRUE(guest.succeeded());
}

// A raw guest with request-multicast-control = 1 and 32 RX buffers posted. On a count n it
// subscribes 01:00:5e:00:01:00..n-1 (one multicast-add control request each, in one push),
// waits for their answers and reports how many were OKAY, then how many ERROR.
void mcast_guest_main(const std::string& dir, hv::DomId dom, const Link& link) {
    test::RawFrontend f;
    f.open(dir, dom, 2 + 32);
    if (::testing::Test::HasFatalFailure()) return;
    f.connect({{"feature-sg", "1"}, {"request-multicast-control", "1"}});
    if (::testing::Test::HasFatalFailure()) return;
    for (std::uint16_t i = 0; i < 32; ++i) {
        auto ref = f.hv->grant_access(hv::kDom0, f.pages.page(2U + i), false);
        ASSERT_TRUE(ref.has_value());
        EXPECT_TRUE(f.rx.put_request(netif::RxRequest{i, 0, *ref}));
    }
    if (f.rx.push_requests()) (void)f.ev->notify(f.rx_port);
    link.send(1);
    for (;;) {
        const auto n = link.recv();
        if (!n || *n == 0) return;
        for (std::uint16_t i = 0; i < *n; ++i) {
            EXPECT_TRUE(f.tx.put_request(netif::TxRequest{0, 0, netif::txf::kExtraInfo, i, 0}));
            netif::ExtraInfo e{};
            e.type = netif::extra::kMcastAdd;
            const std::uint8_t mac[6] = {0x01, 0x00, 0x5e,
                                         0x00, 0x01, static_cast<std::uint8_t>(i)};
            std::memcpy(e.u.mcast.addr, mac, sizeof(mac));
            EXPECT_TRUE(f.tx.put_extra(e));
        }
        if (f.tx.push_requests()) (void)f.ev->notify(f.tx_port);
        std::uint64_t ok = 0, err = 0;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (ok + err < *n && std::chrono::steady_clock::now() < deadline) {
            const netif::ResponseWindow w = f.tx.poll_responses();
            for (std::uint32_t k = 0; k < w.available; ++k) {
                const netif::TxResponse r = f.tx.copy_response(w.cons + k);
                if (r.status == netif::rsp::kNull) continue; // the extra's slot
                (r.status == netif::rsp::kOkay ? ok : err) += 1;
            }
            f.tx.consume_responses(w.available);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        link.send(ok);
        link.send(err);
    }
}

// Multicast control: a frontend that asked for it gets only the groups it subscribed to (and
// every broadcast); the list holds 64 addresses per vif, the 65th is refused; turned off
// (request-multicast-control = 0, as the control plane relays it) every multicast passes,
// turned on again the list filters again.
TEST_F(EngineRing, MulticastFilterFollowsTheFrontend) {
    const hv::DomId dom = plugged_guest("mcast");
    Link link;
    Child guest = spawn_linked(link, [&](const Link& l) { mcast_guest_main(dir_.path(), dom, l); });
    if (!start_ring_engine()) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "ring", RxMode::copy));
    ASSERT_EQ(link.recv(), std::optional<std::uint64_t>(1));
    start_drainer();
    const VifId id{dom, 0};

    // 64 groups fit, the 65th does not.
    ASSERT_TRUE(link.send(64));
    EXPECT_EQ(link.recv(), std::optional<std::uint64_t>(64));
    EXPECT_EQ(link.recv(), std::optional<std::uint64_t>(0));
    ASSERT_TRUE(link.send(65)); // 64 again (already there: OKAY), and one more
    EXPECT_EQ(link.recv(), std::optional<std::uint64_t>(64));
    EXPECT_EQ(link.recv(), std::optional<std::uint64_t>(1));

    const netif::MacAddress in_list{{0x01, 0x00, 0x5e, 0x00, 0x01, 0x07}};
    const netif::MacAddress not_in_list{{0x01, 0x00, 0x5e, 0x00, 0x02, 0x07}};
    const netif::MacAddress broadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    auto delivered_after = [&](const netif::MacAddress& dst, std::uint64_t want) {
        ASSERT_TRUE(inject(payload_frame(dst, peer_mac(), 0, 3, 100)));
        // A broadcast behind it (always delivered, in order) tells when it was handled.
        ASSERT_TRUE(inject(payload_frame(broadcast, peer_mac(), 0, 3, 100)));
        std::uint64_t got = 0;
        for (int i = 0; i < 2000; ++i) {
            got = engine_->status(id)->counters.rx_packets;
            if (got >= want) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        EXPECT_EQ(engine_->status(id)->counters.rx_packets, want);
    };
    delivered_after(in_list, 2);
    delivered_after(not_in_list, 3); // the broadcast only
    CT_ASSERT_OK(engine_->set_mcast_control(id, false));
    delivered_after(not_in_list, 5);
    CT_ASSERT_OK(engine_->set_mcast_control(id, true));
    delivered_after(not_in_list, 6);
    delivered_after(in_list, 8);

    CT_EXPECT_OK(engine_->detach(id));
    link.send(0);
    EXPECT_TRUE(guest.succeeded());
    shut_down_clean();
}

// dpnetback's sub-page buffers (feature-rx-buffer-offset): two RX buffers per page, each
// request naming its half. A jumbo frame spans up to five half pages, each chunk copied to
// its own request's offset; the netfront checks every response's offset and length against
// the buffer it posted, and the payload check every byte.
TEST_F(EngineRing, JumboFramesIntoHalfPageBuffers) {
    const hv::DomId dom = plugged_guest("ringguest");
    GuestOptions o;
    o.half_page_buffers = true;
    GuestProcess g(dir_.path(), dom, o);
    connect_guest(g, dom);
    if (HasFatalFailure() || !engine_) return;

    constexpr unsigned kFrames = 96;
    inject_jumbo_frames(g, dom, kFrames);
    if (HasFatalFailure()) return;
    std::uint64_t half_pages = 0, whole_pages = 0; // buffers the frames fill
    for (unsigned i = 0; i < kFrames; ++i) {
        half_pages += (jumbo_frame_size(i) + 2047) / 2048;
        whole_pages += (jumbo_frame_size(i) + 4095) / 4096;
    }
    auto rr = g.report(1);
    ASSERT_TRUE(rr);
    EXPECT_EQ(rr->rx_buffer_size, 2048u) << "the netfront fell back to whole pages";
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.rx_packets, kFrames);
    EXPECT_EQ(st->counters.rx_drop_error + st->counters.rx_bad_request, 0u);
    // A copy segment per buffer at least (more where the mbuf chain splits a chunk).
    EXPECT_GE(st->counters.grant_copy_ops, half_pages);
    EXPECT_GT(half_pages, whole_pages);

    close_and_check(g, dom);
}

// A net_ring port whose peer plays the NIC (PortConfig::rx_peer_fills_pool): the peer takes
// the buffers the engine posted from the queue's guest-buffer pool, writes a frame into each
// and enqueues them in the order it took them. The guest gets every frame without a copy:
// mapped pages (map), pages its translation table names (reuse), whole pages and half pages.
struct PeerFillsCase {
    RxMode mode;
    netfront::RxMode guest;
    bool half_pages;
    const char* name;
};
void PrintTo(const PeerFillsCase& c, std::ostream* os) {
    *os << c.name;
}
class EngineRingPeerFills : public EngineRing,
                            public ::testing::WithParamInterface<PeerFillsCase> {};

TEST_P(EngineRingPeerFills, FramesLandInThePostedBuffers) {
    const PeerFillsCase pc = GetParam();
    const hv::DomId dom = plugged_guest("ringzc");
    GuestProcess g(dir_.path(), dom, GuestOptions{pc.guest, 0, pc.half_pages});
    make_ring_port("ctring");
    if (HasFatalFailure()) return;
    add_peer_fills_port("ctzc");
    if (HasFatalFailure()) return;
    rte_ring* const nic = zc_rx_;
    start_engine();
    if (!engine_) return;
    CT_ASSERT_OK(handshake_->connect(dom, 0, "zc", pc.mode));
    ASSERT_TRUE(g.wait_connected());
    start_drainer();
    VifStatus st0 = *engine_->status(VifId{dom, 0});
    EXPECT_EQ(st0.rx_mode, pc.mode) << st0.rx_mode_reason;
    rte_mempool* posted = nullptr;
    for (const PortStatus& ps : engine_->ports())
        if (ps.name == "zc") {
            EXPECT_TRUE(ps.zero_copy) << ps.copy_reason;
            ASSERT_EQ(ps.rx_pools.size(), 1u);
            posted = rte_mempool_lookup(ps.rx_pools[0].c_str());
        }
    ASSERT_NE(posted, nullptr);

    // The NIC: frames of 64..1514 bytes, each into the next buffer posted, paced by the
    // guest's receipts (it re-posts what it got).
    constexpr unsigned kFrames = 300;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    for (unsigned i = 0; i < kFrames; ++i) {
        void* obj = nullptr;
        while (rte_mempool_get(posted, &obj) != 0) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline)
                << "no buffer posted, frame " << i;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        auto* m = static_cast<rte_mbuf*>(obj);
        const auto f = payload_frame(guest_mac(dom), peer_mac(), i, 1, 64 + (i * 97) % 1451);
        ASSERT_LE(f.size() + m->data_off, m->buf_len) << "a posted buffer holds a frame";
        std::memcpy(rte_pktmbuf_mtod(m, void*), f.data(), f.size());
        m->data_len = static_cast<std::uint16_t>(f.size());
        m->pkt_len = static_cast<std::uint32_t>(f.size());
        ASSERT_EQ(rte_ring_sp_enqueue(nic, m), 0);
    }
    auto r = g.wait_received(1, kFrames);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, kFrames) << r->counters;
    EXPECT_EQ(r->bad, 0u);
    EXPECT_EQ(rte_ring_count(nic), 0u);
    const VifCounters c = engine_->status(VifId{dom, 0})->counters;
    EXPECT_EQ(c.rx_packets, kFrames);
    EXPECT_EQ(c.daemon_copies, 0u) << "the NIC wrote every frame into the guest's buffer";
    EXPECT_EQ(c.grant_copy_ops, 0u);
    EXPECT_EQ(c.rx_out_of_order, 0u);
    EXPECT_EQ(c.rx_drop_error + c.rx_bad_request, 0u);
    if (pc.mode == RxMode::map) {
        EXPECT_GE(c.grant_map_ops, kFrames);
    }
    if (pc.mode == RxMode::reuse) {
        EXPECT_GE(c.iott_hits, kFrames);
        EXPECT_EQ(c.grant_map_ops, 0u);
    }
    auto rep = g.report(1);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->rx_buffer_size, pc.half_pages ? 2048u : 4096u) << rep->counters;

    close_and_check(g, dom);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, EngineRingPeerFills,
    ::testing::Values(PeerFillsCase{RxMode::map, netfront::RxMode::copy, false, "map"},
                      PeerFillsCase{RxMode::reuse, netfront::RxMode::reuse, false, "reuse"},
                      PeerFillsCase{RxMode::reuse, netfront::RxMode::reuse, true, "reuse_half"}),
    [](const auto& p) { return std::string(p.param.name); });

// A PCI NIC behind vfio with an IOMMU in an HVM driver domain, played by the net_ring port
// whose peer fills the posted buffers, with the simulated IOMMU: every buffer the device is
// handed lies in a DMA-mapped range when it gets it (RX: the pool's buffers the peer takes;
// TX: the external segments the TX ring carries), map runs cost one IOMMU call each (not one
// per page), static grants (reuse) are mapped at registration and cost none per packet, a
// refused IOMMU map bounces RX buffers and drops TX packets without losing any, and nothing
// stays mapped after detach.
struct IommuCase {
    RxMode mode;
    unsigned map_batch;
    const char* name;
};
void PrintTo(const IommuCase& c, std::ostream* os) {
    *os << c.name;
}
class EngineRingIommu : public EngineRing, public ::testing::WithParamInterface<IommuCase> {};

TEST_P(EngineRingIommu, EveryBufferTheDeviceGetsIsDmaMapped) {
    const IommuCase ic = GetParam();
    const bool reuse = ic.mode == RxMode::reuse;
    pmd::FixedDmaProbe probe;
    probe.domain = pmd::DomainType::hvm;
    probe.iova = pmd::IovaMode::va;
    probe.dev.bus = pmd::DeviceBus::pci;
    probe.dev.binding = pmd::DeviceBinding::vfio_iommu;
    probe.dev.kernel_driver = "vfio-pci";
    hv::SimIommu iommu;
    dma_probe_ = &probe;
    iommu_ = &iommu;
    tx_copy_slot_max_ = 0; // TX slots beyond the header copy are handed over as they are
    map_batch_ = ic.map_batch;

    const hv::DomId dom = plugged_guest("ringiommu");
    GuestProcess g(dir_.path(), dom,
                   GuestOptions{reuse ? netfront::RxMode::reuse : netfront::RxMode::copy});
    make_ring_port("ctring");
    if (HasFatalFailure()) return;
    add_peer_fills_port("ctio");
    if (HasFatalFailure()) return;
    rte_ring* const nic = zc_rx_;
    rte_ring* const out = zc_tx_;
    start_engine();
    if (!engine_) return;
    rte_mempool* posted = nullptr;
    for (const PortStatus& ps : engine_->ports()) {
        EXPECT_EQ(ps.dma, pmd::DmaVerdict::zero_copy) << ps.name << ": " << ps.dma_reason;
        EXPECT_NE(ps.dma_reason.find("DMA-mapped"), std::string::npos) << ps.dma_reason;
        if (ps.name == "zc") {
            EXPECT_TRUE(ps.zero_copy) << ps.copy_reason;
            ASSERT_EQ(ps.rx_pools.size(), 1u);
            posted = rte_mempool_lookup(ps.rx_pools[0].c_str());
        }
    }
    ASSERT_NE(posted, nullptr);
    EXPECT_EQ(iommu.ranges(), 0u) << "nothing of a guest is mapped before it attaches";
    if (reuse) {
        handshake_->caps.ctrl_ring = true;
        handshake_->caps.static_grants = true;
    }
    CT_ASSERT_OK(handshake_->connect(dom, 0, "zc", ic.mode));
    ASSERT_TRUE(g.wait_connected());
    start_drainer();
    EXPECT_EQ(engine_->status(VifId{dom, 0})->rx_mode, ic.mode);
    if (!reuse) {
        EXPECT_FALSE(engine_->status(VifId{dom, 0})->static_grant_iommu.has_value());
        // Without static grants reuse would look buffers up in the hypervisor's table,
        // whose pages nobody DMA-maps: refused, and the vif keeps its mode.
        const Status to_reuse = engine_->set_rx_mode(VifId{dom, 0}, RxMode::reuse);
        ASSERT_FALSE(to_reuse.has_value());
        EXPECT_EQ(to_reuse.error().code, Errc::unsupported);
        EXPECT_NE(to_reuse.error().message.find("static grants"), std::string::npos)
            << to_reuse.error().message;
        EXPECT_EQ(engine_->status(VifId{dom, 0})->rx_mode, ic.mode);
    }
    std::uint32_t registered = 0;
    if (reuse) {
        // The control ring is served from next_event(): pump it until the whole pool (a
        // full-page buffer per RX ring slot) is in.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (std::chrono::steady_clock::now() < deadline && registered < netif::kRxRingSize) {
            pollfd p{engine_->events_fd(), POLLIN, 0};
            (void)::poll(&p, 1, 100);
            while (engine_->next_event()) {
            }
            registered = engine_->status(VifId{dom, 0})->static_grants;
        }
        ASSERT_EQ(registered, netif::kRxRingSize) << "the frontend's RX pool was not registered";
        EXPECT_GE(iommu.ranges(), registered) << "each static grant's page is DMA-mapped";
        const auto sg = engine_->status(VifId{dom, 0})->static_grant_iommu;
        ASSERT_TRUE(sg.has_value()) << "the control thread's IOMMU calls are reported";
        EXPECT_EQ(sg->maps, registered);
        EXPECT_EQ(sg->map_failures + sg->unmaps + sg->unmap_failures, 0u);
        // A buffer posted before its page was registered may be mid-map on the lcore: a
        // command it answers between two loop iterations waits for that to finish.
        CT_ASSERT_OK(engine_->set_rate(VifId{dom, 0}, std::nullopt));
    }
    auto lcore_sum = [&](std::uint64_t LcoreStats::*field) {
        std::uint64_t v = 0;
        for (const LcoreStats& l : engine_->lcore_stats())
            v += l.*field;
        return v;
    };
    // The lcore keeps mapping (reposted buffers, TX) while the test reads its counters, and
    // it counts a grant-map call before that run's IOMMU call: a grant-map count read before
    // the IOMMU count and one read after it bound it, whatever ran in between, if every
    // IOMMU call is one grant-map run's.
    auto expect_one_iommu_call_per_run = [&] {
        const std::uint64_t runs_before = lcore_sum(&LcoreStats::grant_map_calls);
        const std::uint64_t calls = lcore_sum(&LcoreStats::dma_map_calls);
        const std::uint64_t runs_after = lcore_sum(&LcoreStats::grant_map_calls);
        EXPECT_LE(calls, runs_after) << "an IOMMU call per grant-map run at most";
        EXPECT_GE(calls + 1, runs_before) << "an IOMMU call for every grant-map run";
    };
    // The vif's counters once `done` holds for them, or when kTimeoutMs ran out.
    auto counters_when = [&](auto done) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
        VifCounters c = engine_->status(VifId{dom, 0})->counters;
        while (!done(c) && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            c = engine_->status(VifId{dom, 0})->counters;
        }
        return c;
    };
    // The frontend fills its RX ring at connect and the lcore posts zc_depth of its requests
    // to the NIC; in map mode each of those is mapped before the test counts from here.
    const unsigned depth = EngineOptions{}.zc_depth;
    const VifCounters c0 =
        counters_when([&](const VifCounters& c) { return reuse || c.grant_map_ops >= depth; });
    if (!reuse) {
        ASSERT_EQ(c0.grant_map_ops, depth) << "the first posts";
    }
    const std::uint64_t rx_calls0 = lcore_sum(&LcoreStats::dma_map_calls);

    // RX: the "NIC" takes each posted buffer; it must be DMA-mapped right then.
    unsigned unmapped = 0;
    std::map<std::uint32_t, unsigned> next_index; // per stream
    auto nic_receive = [&](unsigned count, std::uint32_t stream) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
        for (unsigned k = 0; k < count; ++k) {
            const unsigned i = next_index[stream]++;
            void* obj = nullptr;
            while (rte_mempool_get(posted, &obj) != 0) {
                ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no buffer posted";
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            auto* m = static_cast<rte_mbuf*>(obj);
            const bool bounce = pmd::GuestBufferPool::info(m).kind == pmd::GuestBufKind::bounce;
            // A bounce buffer is the daemon's DPDK memory, which DPDK maps itself.
            if (!bounce && !iommu.mapped(m->buf_iova, m->buf_len)) ++unmapped;
            const auto f =
                payload_frame(guest_mac(dom), peer_mac(), i, stream, 64 + (i * 97) % 1451);
            std::memcpy(rte_pktmbuf_mtod(m, void*), f.data(), f.size());
            m->data_len = static_cast<std::uint16_t>(f.size());
            m->pkt_len = static_cast<std::uint32_t>(f.size());
            ASSERT_EQ(rte_ring_sp_enqueue(nic, m), 0);
        }
    };
    // With map_batch > 1 the last frames of a stream may wait in a group not filled yet:
    // more frames (stream 6) fill it.
    auto flush_groups = [&](std::uint32_t stream, unsigned count) {
        for (int k = 0; k < 50 && ic.map_batch > 1; ++k) {
            auto done = g.wait_received(stream, count, 100);
            if (done && done->received == count) break;
            nic_receive(ic.map_batch, 6);
            if (HasFatalFailure()) return;
        }
    };
    constexpr unsigned kFrames = 300;
    nic_receive(kFrames, 1);
    if (HasFatalFailure()) return;
    flush_groups(1, kFrames);
    if (HasFatalFailure()) return;
    auto r = g.wait_received(1, kFrames);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, kFrames) << r->counters;
    EXPECT_EQ(r->bad, 0u);
    EXPECT_EQ(unmapped, 0u) << "buffers handed to the device outside any DMA-mapped range";
    // IOMMU calls read before the pages mapped: a run's pages are counted after its call.
    const std::uint64_t rx_calls = lcore_sum(&LcoreStats::dma_map_calls) - rx_calls0;
    // The guest re-posts each buffer it got and the lcore posts it (mapping it, or finding
    // it among the static grants) some time after: wait until it has done so for all, so
    // that no RX map runs beside what follows (the refusal injected for TX below).
    std::uint64_t consumed = 0;
    for (std::uint32_t stream : {1U, 6U}) {
        auto rep = g.report(stream);
        ASSERT_TRUE(rep);
        consumed += rep->received;
    }
    VifCounters c1 = counters_when([&](const VifCounters& c) {
        return (reuse ? c.iott_hits - c0.iott_hits : c.grant_map_ops - c0.grant_map_ops) >=
               consumed;
    });
    EXPECT_EQ(c1.daemon_copies, 0u);
    if (reuse) {
        // With the pool registered every buffer posted comes from the static grants.
        EXPECT_GE(c1.iott_hits - c0.iott_hits, kFrames) << "from the static grants";
        EXPECT_EQ(c1.grant_map_ops - c0.grant_map_ops, 0u);
        EXPECT_EQ(rx_calls, 0u) << "no IOMMU call per packet";
    } else {
        // One IOMMU call per grant-map run (map_batch pages at most), not one per page.
        expect_one_iommu_call_per_run();
        if (ic.map_batch > 1) {
            EXPECT_LT(rx_calls, c1.grant_map_ops - c0.grant_map_ops);
        }
        EXPECT_GE(c1.grant_map_ops - c0.grant_map_ops, kFrames);
    }

    // TX: frames in two slots (crossing a page); the external segments the port's TX ring
    // carries must be DMA-mapped while the device holds them.
    auto drain_out = [&](unsigned want, std::vector<std::vector<std::byte>>& got) {
        unsigned ext = 0;
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
        while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
            void* obj = nullptr;
            if (rte_ring_sc_dequeue(out, &obj) != 0) {
                std::this_thread::sleep_for(std::chrono::microseconds(200));
                continue;
            }
            auto* m = static_cast<rte_mbuf*>(obj);
            for (rte_mbuf* seg = m; seg != nullptr; seg = seg->next) {
                if (!RTE_MBUF_HAS_EXTBUF(seg)) continue; // daemon memory
                ++ext;
                if (!iommu.mapped(seg->buf_iova + seg->data_off, seg->data_len)) ++unmapped;
            }
            std::vector<std::byte> f(m->pkt_len);
            const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, f.data());
            if (p != f.data()) std::memcpy(f.data(), p, m->pkt_len);
            got.push_back(std::move(f));
            rte_pktmbuf_free(m);
        }
        return ext;
    };
    const std::uint64_t tx_pages0 = engine_->status(VifId{dom, 0})->counters.grant_map_ops;
    const std::uint64_t tx_calls0 = lcore_sum(&LcoreStats::dma_map_calls);
    ASSERT_TRUE(g.send(peer_mac(), 2, 24, 1400, 3500, false));
    std::vector<std::vector<std::byte>> sent;
    const unsigned ext = drain_out(24, sent);
    ASSERT_EQ(sent.size(), 24u);
    for (unsigned i = 0; i < 24; ++i)
        EXPECT_TRUE(sent[i] == payload_frame(peer_mac(), guest_mac(dom), i, 2, 1400)) << i;
    EXPECT_GE(ext, 24u) << "the slots beyond the header copy are the guest's pages";
    EXPECT_EQ(unmapped, 0u) << "TX segments handed to the device outside any DMA-mapped range";
    expect_one_iommu_call_per_run();
    // Each frame maps two pages and a burst's are one run: fewer calls than pages, whatever
    // RX maps beside them (a page per call at least).
    const std::uint64_t tx_calls = lcore_sum(&LcoreStats::dma_map_calls) - tx_calls0;
    c1 = engine_->status(VifId{dom, 0})->counters;
    EXPECT_LT(tx_calls, c1.grant_map_ops - tx_pages0) << "not one IOMMU call per page";

    // A refused IOMMU map: TX packets of that run drop (answered in error), RX buffers of
    // that run are bounced (copied); nothing is lost, and the next runs are mapped again.
    // The guest takes the first answer after its frame for the frame's: the 24 frames' come
    // first (the device held their buffers until drained above).
    const auto answers_deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    for (;;) {
        auto rep = g.report(2);
        ASSERT_TRUE(rep);
        if (rep->tx_ok + rep->tx_failed >= 24) break;
        ASSERT_LT(std::chrono::steady_clock::now(), answers_deadline) << rep->counters;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::uint64_t fail0 = lcore_sum(&LcoreStats::dma_map_failures);
    iommu.fail_next_maps(1);
    const auto answer = g.send_frame(payload_frame(peer_mac(), guest_mac(dom), 0, 3, 1400), 3500);
    ASSERT_TRUE(answer.has_value());
    EXPECT_FALSE(*answer) << "the packet's run could not be DMA-mapped";
    EXPECT_EQ(lcore_sum(&LcoreStats::dma_map_failures) - fail0, 1u);
    EXPECT_EQ(engine_->status(VifId{dom, 0})->counters.tx_drop_error - c1.tx_drop_error, 1u);
    ASSERT_TRUE(g.send(peer_mac(), 4, 4, 1400, 3500, false));
    sent.clear();
    (void)drain_out(4, sent);
    EXPECT_EQ(sent.size(), 4u) << "TX maps again after a refusal";
    if (!reuse) {
        iommu.fail_next_maps(1);
        nic_receive(100, 5);
        if (HasFatalFailure()) return;
        flush_groups(5, 100);
        if (HasFatalFailure()) return;
        auto r5 = g.wait_received(5, 100);
        ASSERT_TRUE(r5);
        EXPECT_EQ(r5->received, 100u) << r5->counters;
        EXPECT_EQ(lcore_sum(&LcoreStats::dma_map_failures) - fail0, 2u);
    }
    EXPECT_EQ(unmapped, 0u);
    EXPECT_TRUE(engine_->status(VifId{dom, 0})->disabled_reason.empty());

    close_and_check(g, dom);
    EXPECT_EQ(iommu.ranges(), 0u) << "nothing stays DMA-mapped after detach";
    EXPECT_EQ(iommu.refused(), reuse ? 1u : 2u) << "only the injected refusals";
    EXPECT_EQ(iommu.map_calls() - iommu.refused(), iommu.unmap_calls());
}

INSTANTIATE_TEST_SUITE_P(Modes, EngineRingIommu,
                         ::testing::Values(IommuCase{RxMode::map, 1, "map"},
                                           IommuCase{RxMode::map, 4, "map_batch4"},
                                           IommuCase{RxMode::reuse, 1, "reuse_static_grants"}),
                         [](const auto& p) { return std::string(p.param.name); });

// mac_flow steering on a net_ring port whose peer plays a NIC that steers by MAC
// (pmd::SimMacRules, the twin of rte_flow): queue 0 is the port's shared default queue,
// queues 1 and 2 are dedicated. The NIC sends each frame from the wire to the queue its
// MAC rule names, into the next buffer the engine posted there, or to queue 0 in one of the
// peer's mbufs where no rule matches (broadcast, unknown unicast), as a NIC with flow rules
// does. No PMD here has usable MAC rules (net_tap spreads unmatched frames, net_ring and
// virtio_user have none), so this is where mac_flow's rules, its dedicated zero-copy queues
// and local delivery into them are exercised.
class EngineRingMacFlow : public EngineRing {
protected:
    static constexpr std::uint16_t kQueues = 3;

    void make_flow_port() {
        for (std::uint16_t q = 0; q < kQueues; ++q) {
            rte_ring* r = rte_ring_create(("ctmf_rx" + std::to_string(q)).c_str(), 1024,
                                          SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
            ASSERT_NE(r, nullptr);
            rings_.push_back(r);
            mf_rx_.push_back(r);
        }
        std::vector<rte_ring*> tx;
        for (int i = 0; i < 2; ++i) {
            rte_ring* t = rte_ring_create(("ctmf_tx" + std::to_string(i)).c_str(), 1024,
                                          SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
            ASSERT_NE(t, nullptr);
            rings_.push_back(t);
            tx.push_back(t);
            tx_.push_back(t); // the drainer keeps what the flow port sends: the wire
        }
        const int port =
            rte_eth_from_rings("ctmf", mf_rx_.data(), kQueues, tx.data(), 2, SOCKET_ID_ANY);
        ASSERT_GE(port, 0);
        mf_port_ = static_cast<std::uint16_t>(port);
        char ethdev[RTE_ETH_NAME_MAX_LEN];
        ASSERT_EQ(rte_eth_dev_get_name_by_port(mf_port_, ethdev), 0);
        pmd::PortConfig mf;
        mf.name = "mf";
        mf.device = ethdev;
        mf.steering = pmd::Steering::mac_flow;
        mf.rx_queues = kQueues;
        mf.rx_peer_fills_pool = true;
        mf.mac_rules = rules_;
        extra_ports_.push_back(mf);
    }

    // Two guests on the flow port: `a` in RX mode map (an unmodified frontend's buffers),
    // `b` in reuse (its translation table); each must get a dedicated queue of its own.
    // The engine over the ring port and the port that steers by MAC.
    void start_ports() {
        make_ring_port("ctring");
        if (HasFatalFailure()) return;
        make_flow_port();
        if (HasFatalFailure()) return;
        start_engine();
    }
    void start_two(GuestProcess& ga, hv::DomId a, GuestProcess& gb, hv::DomId b) {
        start_ports();
        if (HasFatalFailure() || !engine_) return;
        CT_ASSERT_OK(handshake_->connect(a, 0, "mf", RxMode::map));
        CT_ASSERT_OK(handshake_->connect(b, 0, "mf", RxMode::reuse));
        ASSERT_TRUE(ga.wait_connected());
        ASSERT_TRUE(gb.wait_connected());
        start_drainer();
        for (const PortStatus& ps : engine_->ports())
            if (ps.name == "mf") {
                EXPECT_TRUE(ps.flow_rules);
                EXPECT_TRUE(ps.zero_copy) << ps.copy_reason;
                ASSERT_EQ(ps.rx_pools.size(), kQueues);
                for (const std::string& name : ps.rx_pools)
                    pools_.push_back(rte_mempool_lookup(name.c_str()));
            }
        ASSERT_EQ(pools_.size(), kQueues);
    }

    // The NIC takes a frame from the wire.
    void nic_receive(const std::vector<std::byte>& frame) {
        netif::MacAddress dst;
        std::memcpy(dst.bytes.data(), frame.data(), dst.bytes.size());
        const std::uint16_t q = rules_->queue_for(mf_port_, dst);
        ASSERT_LT(q, kQueues);
        rte_mbuf* m = nullptr;
        if (q == 0) {
            m = rte_pktmbuf_alloc(pool_);
            ASSERT_NE(m, nullptr);
        } else {
            void* obj = nullptr;
            const auto deadline =
                std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
            while (rte_mempool_get(pools_[q], &obj) != 0) {
                ASSERT_LT(std::chrono::steady_clock::now(), deadline)
                    << "queue " << q << ": no buffer posted";
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            m = static_cast<rte_mbuf*>(obj);
        }
        ASSERT_LE(frame.size() + m->data_off, m->buf_len);
        std::memcpy(rte_pktmbuf_mtod(m, void*), frame.data(), frame.size());
        m->data_len = static_cast<std::uint16_t>(frame.size());
        m->pkt_len = static_cast<std::uint32_t>(frame.size());
        while (rte_ring_sp_enqueue(mf_rx_[q], m) != 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    // `count` payload frames of `stream` to `dst` from the wire, paced by `g`'s receipts.
    void nic_send(GuestProcess& g, const netif::MacAddress& dst, std::uint32_t stream,
                  unsigned count, std::uint64_t before = 0) {
        for (unsigned i = 0; i < count; ++i) {
            nic_receive(payload_frame(dst, peer_mac(), i, stream, 64 + (i * 97) % 1451));
            if (HasFatalFailure()) return;
            if (i % 16 == 15) {
                ASSERT_TRUE(g.wait_received(stream, before + i + 1));
            }
        }
    }

    // Frames that do not come through a guest's dedicated queue (broadcasts from the default
    // queue, frames from another guest) are copied into its requests after those posted to
    // the device, and a frontend takes responses in request order (docs/datapath.md, "RX,
    // dedicated queue"): they reach the guest once the NIC has filled the buffers posted
    // before them. Sends frames from the wire to `dst` (stream 9) until `g` has `count`
    // frames of `stream`; returns how many it took (at most a queue's posts and then some).
    unsigned fill_until(GuestProcess& g, const netif::MacAddress& dst, std::uint32_t stream,
                        std::uint64_t count) {
        unsigned sent = 0;
        for (; sent < kFillLimit; ++sent) {
            auto r = g.report(stream);
            if (r && r->received >= count) return sent;
            nic_receive(payload_frame(dst, peer_mac(), sent, 9, 100));
            if (HasFatalFailure()) return sent;
            if (sent % 8 == 7) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        auto r = g.wait_received(stream, count, 1000);
        return r && r->received >= count ? sent : kFillLimit + 1;
    }
    static constexpr unsigned kFillLimit = 4 * 64 + 64; // 4 zc_depth's worth and more

    std::shared_ptr<pmd::SimMacRules> rules_ = std::make_shared<pmd::SimMacRules>();
    std::uint16_t mf_port_ = 0;
    std::vector<rte_ring*> mf_rx_;
    std::vector<rte_mempool*> pools_; // per queue: the shared pool, then the guest pools
};

TEST_F(EngineRingMacFlow, EachGuestGetsItsQueueAndItsRuleUntilItLeaves) {
    const hv::DomId a = plugged_guest("mfa");
    const hv::DomId b = plugged_guest("mfb");
    GuestProcess ga(dir_.path(), a, GuestOptions{netfront::RxMode::copy});
    GuestProcess gb(dir_.path(), b, GuestOptions{netfront::RxMode::reuse});
    start_two(ga, a, gb, b);
    if (HasFatalFailure() || !engine_) return;

    // A queue each, zero copy, a rule each naming it.
    const VifStatus sa = *engine_->status(VifId{a, 0});
    const VifStatus sb = *engine_->status(VifId{b, 0});
    EXPECT_EQ(sa.rx_mode, RxMode::map) << sa.rx_mode_reason;
    EXPECT_EQ(sb.rx_mode, RxMode::reuse) << sb.rx_mode_reason;
    ASSERT_TRUE(sa.rx_queue.has_value()) << sa.rx_mode_reason;
    ASSERT_TRUE(sb.rx_queue.has_value()) << sb.rx_mode_reason;
    EXPECT_NE(*sa.rx_queue, 0u);
    EXPECT_NE(*sb.rx_queue, 0u);
    EXPECT_NE(*sa.rx_queue, *sb.rx_queue);
    EXPECT_EQ(rules_->rules(mf_port_), 2u);
    EXPECT_EQ(rules_->queue_for(mf_port_, guest_mac(a)), *sa.rx_queue);
    EXPECT_EQ(rules_->queue_for(mf_port_, guest_mac(b)), *sb.rx_queue);

    // Each guest's frames land in its own posted buffers.
    constexpr unsigned kFrames = 96;
    nic_send(ga, guest_mac(a), 1, kFrames);
    nic_send(gb, guest_mac(b), 2, kFrames);
    if (HasFatalFailure()) return;
    // Broadcasts and unknown unicast reach the default queue: the broadcasts are copied into
    // both guests' requests behind those posted to the device, the rest is dropped.
    constexpr unsigned kBroadcasts = 8;
    for (unsigned i = 0; i < kBroadcasts; ++i) {
        nic_receive(payload_frame(netif::MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
                                  peer_mac(), i, 3, 200));
        nic_receive(
            payload_frame(netif::MacAddress{{0x02, 0, 0, 0, 0x77, 0x77}}, peer_mac(), i, 4, 200));
    }
    if (HasFatalFailure()) return;
    for (auto [g, dom, stream] : {std::tuple{&ga, a, 1U}, std::tuple{&gb, b, 2U}}) {
        auto own = g->wait_received(stream, kFrames);
        ASSERT_TRUE(own);
        EXPECT_EQ(own->received, kFrames) << own->counters;
        const unsigned fill = fill_until(*g, guest_mac(dom), 3, kBroadcasts);
        if (HasFatalFailure()) return;
        EXPECT_LE(fill, kFillLimit) << "guest " << dom << " never got the broadcasts";
        auto bc = g->report(3);
        ASSERT_TRUE(bc);
        EXPECT_EQ(bc->received, kBroadcasts) << bc->counters;
        EXPECT_EQ(bc->bad, 0u);
        EXPECT_EQ(bc->foreign, 0u) << "guest " << dom << " got another guest's frames";
        EXPECT_EQ(g->report(4)->received, 0u) << "unknown unicast reached guest " << dom;
        const VifCounters c = engine_->status(VifId{dom, 0})->counters;
        EXPECT_EQ(c.rx_out_of_order, 0u);
        EXPECT_EQ(c.rx_drop_error + c.rx_bad_request, 0u);
        // Only the broadcasts were copied; the NIC wrote the rest into the guest's buffers.
        EXPECT_EQ(c.daemon_copies, kBroadcasts);
        EXPECT_GE(c.rx_packets, kFrames + kBroadcasts + fill);
    }
    EXPECT_GE(engine_->status(VifId{a, 0})->counters.grant_map_ops, kFrames);
    EXPECT_GE(engine_->status(VifId{b, 0})->counters.iott_hits, kFrames);

    // A leaves (B stays, so not close_and_check, which shuts the engine down): its rule
    // goes, B keeps its own and its traffic.
    ASSERT_TRUE(ga.request_close());
    CT_EXPECT_OK(handshake_->disconnect(a, 0));
    EXPECT_TRUE(ga.close_result());
    EXPECT_TRUE(ga.succeeded());
    EXPECT_EQ(rules_->rules(mf_port_), 1u);
    EXPECT_EQ(rules_->queue_for(mf_port_, guest_mac(a)), 0u);
    nic_send(gb, guest_mac(b), 2, 32, kFrames);
    if (HasFatalFailure()) return;
    auto more = gb.wait_received(2, kFrames + 32);
    ASSERT_TRUE(more);
    EXPECT_EQ(more->received, kFrames + 32);
    close_and_check(gb, b);
    EXPECT_EQ(rules_->rules(mf_port_), 0u);
}

// Local delivery between guests on dedicated zero-copy queues of one port: a frame from A to
// B never reaches the wire, and B (reuse) takes it as it takes a broadcast, behind the
// buffers posted to its NIC queue; the other way into A (map) likewise; a multicast frame
// goes to the wire and to the other guest.
TEST_F(EngineRingMacFlow, GuestsOnDedicatedQueuesReachEachOtherLocally) {
    const hv::DomId a = plugged_guest("mfla");
    const hv::DomId b = plugged_guest("mflb");
    GuestProcess ga(dir_.path(), a, GuestOptions{netfront::RxMode::copy});
    GuestProcess gb(dir_.path(), b, GuestOptions{netfront::RxMode::reuse});
    start_two(ga, a, gb, b);
    if (HasFatalFailure() || !engine_) return;
    ASSERT_TRUE(engine_->status(VifId{a, 0})->rx_queue.has_value());
    ASSERT_TRUE(engine_->status(VifId{b, 0})->rx_queue.has_value());

    // Each receiver takes the other's frames once its NIC has filled the buffers posted
    // before them (the frontends answer in request order); the senders hear OKAY at once.
    constexpr unsigned kAb = 40, kBa = 30;
    ASSERT_TRUE(ga.send(guest_mac(b), 5, kAb, 300));
    EXPECT_LE(fill_until(gb, guest_mac(b), 5, kAb), kFillLimit);
    ASSERT_TRUE(gb.send(guest_mac(a), 6, kBa, 1200));
    EXPECT_LE(fill_until(ga, guest_mac(a), 6, kBa), kFillLimit);
    const netif::MacAddress group{{0x01, 0x00, 0x5e, 0x00, 0x00, 0x09}};
    ASSERT_TRUE(ga.send(group, 7, 1, 100));
    EXPECT_LE(fill_until(gb, guest_mac(b), 7, 1), kFillLimit);
    if (HasFatalFailure()) return;
    for (auto [g, stream, count] :
         {std::tuple{&gb, 5U, kAb}, std::tuple{&ga, 6U, kBa}, std::tuple{&gb, 7U, 1U}}) {
        auto r = g->report(stream);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->received, count) << "stream " << stream << ": " << r->counters;
        EXPECT_EQ(r->bad, 0u);
        EXPECT_EQ(r->foreign, 0u);
    }

    // The wire saw the multicast frame only.
    auto wire = take_sent(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto late = take_sent(0);
    wire.insert(wire.end(), late.begin(), late.end());
    unsigned between = 0, multicast = 0;
    for (const auto& f : wire) {
        netif::MacAddress dst;
        std::memcpy(dst.bytes.data(), f.data(), dst.bytes.size());
        between += dst == guest_mac(a) || dst == guest_mac(b) ? 1 : 0;
        multicast += dst == group ? 1 : 0;
    }
    EXPECT_EQ(between, 0u) << "frames between the guests went to the wire";
    EXPECT_EQ(multicast, 1u);
    const VifCounters ca = engine_->status(VifId{a, 0})->counters;
    const VifCounters cb = engine_->status(VifId{b, 0})->counters;
    EXPECT_EQ(ca.local_tx_packets, kAb + 1);
    EXPECT_EQ(cb.local_rx_packets, kAb + 1);
    EXPECT_EQ(cb.local_tx_packets, kBa);
    EXPECT_EQ(ca.local_rx_packets, kBa);
    EXPECT_EQ(ca.local_rx_drops + cb.local_rx_drops, 0u);
    close_and_check({{&ga, a}, {&gb, b}});
    EXPECT_EQ(rules_->rules(mf_port_), 0u);
}

// A NIC that refuses MAC rules: the port says why and every guest shares queue 0 (copy).
TEST_F(EngineRingMacFlow, ANicWithoutRulesSharesTheDefaultQueue) {
    rules_->refuse(true);
    const hv::DomId a = plugged_guest("mfra");
    GuestProcess ga(dir_.path(), a, GuestOptions{netfront::RxMode::copy});
    start_ports();
    if (HasFatalFailure() || !engine_) return;
    CT_ASSERT_OK(handshake_->connect(a, 0, "mf", RxMode::map));
    ASSERT_TRUE(ga.wait_connected());
    start_drainer();
    for (const PortStatus& ps : engine_->ports())
        if (ps.name == "mf") {
            EXPECT_FALSE(ps.flow_rules);
        }
    const VifStatus sa = *engine_->status(VifId{a, 0});
    EXPECT_FALSE(sa.rx_queue.has_value());
    EXPECT_EQ(sa.rx_mode, RxMode::copy);
    EXPECT_NE(sa.rx_mode_reason.find("no MAC steering rules"), std::string::npos)
        << sa.rx_mode_reason;
    for (unsigned i = 0; i < 20; ++i)
        nic_receive(payload_frame(guest_mac(a), peer_mac(), i, 1, 500));
    auto r = ga.wait_received(1, 20);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, 20u);
    close_and_check(ga, a);
}

TEST_F(EngineRing, RateLimitHoldsTransmitsUntilLifted) {
    const hv::DomId dom = plugged_guest("rateguest");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom, {.port = "ctrate"});
    if (HasFatalFailure() || !engine_) return;
    // A byte per hour: the first packet already exceeds the credit.
    CT_ASSERT_OK(engine_->set_rate(VifId{dom, 0}, netif::RateLimit{1, 4'000'000'000U}));
    ASSERT_TRUE(g.send(peer_mac(), 1, 5, 300, 0, false));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    {
        std::lock_guard lock(mu_);
        EXPECT_TRUE(sent_.empty()) << "the rate limit let " << sent_.size() << " packet(s) out";
    }
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.tx_packets, 0u);
    CT_ASSERT_OK(engine_->set_rate(VifId{dom, 0}, std::nullopt));
    auto out = take_sent(5);
    ASSERT_EQ(out.size(), 5u);
    for (unsigned i = 0; i < 5; ++i)
        EXPECT_TRUE(out[i] == payload_frame(peer_mac(), guest_mac(dom), i, 1, 300));

    // A frontend whose ring grants are bad is refused with Errc::protocol; the port stays.
    VifSpec spec;
    spec.id = VifId{dom, 7};
    spec.mac = guest_mac(dom, 7);
    spec.port = "ring";
    netif::QueueConfig qc;
    qc.tx_ring_ref = 4000;
    qc.rx_ring_ref = 4001;
    qc.tx_evtchn = qc.rx_evtchn = 5;
    spec.frontend.queues.push_back(qc);
    auto bad = engine_->attach(spec);
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, Errc::protocol) << bad.error().describe();
    EXPECT_EQ(engine_->list().size(), 1u);

    ASSERT_TRUE(g.request_close());
    CT_EXPECT_OK(handshake_->disconnect(dom, 0));
    EXPECT_TRUE(g.close_result());
    EXPECT_TRUE(g.succeeded());
    shut_down_clean();
}

// The peer stops draining its TX ring: what the ring cannot take is dropped and counted on
// the sending lcore (tx_nic_drops), and nothing else is. (The guest's 64-byte packets are
// copied whole, so their slots were answered before the NIC refused them.)
TEST_F(EngineRing, AFullTxQueueCountsNicDrops) {
    tx_ring_size_ = 256; // holds 255: fewer than the lcore's TX mbufs
    const hv::DomId dom = plugged_guest("txfull");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom, {.port = "cttxfull", .drain = false});
    if (HasFatalFailure() || !engine_) return;

    constexpr unsigned kFrames = 600;
    ASSERT_TRUE(g.send(peer_mac(), 1, kFrames, 64));
    unsigned in_rings = 0;
    for (rte_ring* t : tx_)
        in_rings += rte_ring_count(t);
    EXPECT_EQ(in_rings, tx_ring_size_ - 1) << "the ring the lcore sends into is full";
    std::uint64_t drops = 0;
    for (const LcoreStats& l : engine_->lcore_stats())
        drops += l.tx_nic_drops;
    EXPECT_EQ(drops, kFrames - in_rings);
    auto rep = g.report(1);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->tx_ok, kFrames);
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.tx_packets, kFrames) << "the vif sent them all; the NIC refused some";

    start_drainer(); // the ring's mbufs come home
    close_and_check(g, dom);
}

// An lcore that stops taking frames from its inbox: another lcore's demultiplexing hands it
// frames until the inbox is full, then drops and counts them (inbox_drops, on the lcore that
// demultiplexes); once the lcore runs again it takes what waited (inbox_frames).
TEST_F(EngineRing, AFullInboxCountsInboxDrops) {
    pool_mbufs_ = 8191; // the inbox holds 4095 of them
    pool_data_room_ = 2048 + RTE_PKTMBUF_HEADROOM;
    const hv::DomId a = plugged_guest("inboxa");
    const hv::DomId b = plugged_guest("inboxb");
    GuestProcess ga(dir_.path(), a, GuestOptions{});
    GuestProcess gb(dir_.path(), b, GuestOptions{});
    // The shared queue is demultiplexed by the first lcore; the first guest goes to the
    // first lcore too (both are idle), the second to the other one: its frames cross.
    connect_guests({{&ga, a}, {&gb, b}}, {.port = "ctinbox"});
    if (HasFatalFailure() || !engine_) return;
    auto sb = engine_->status(VifId{b, 0});
    CT_ASSERT_OK(sb);
    const auto lcores = engine_->lcore_stats();
    ASSERT_EQ(lcores.size(), 2u);
    ASSERT_EQ(sb->lcore, lcores[1].lcore) << "the second guest is on the second lcore";

    // A frame crosses while both lcores run.
    ASSERT_TRUE(inject(payload_frame(guest_mac(b), peer_mac(), 0, 1, 64)));
    ASSERT_TRUE(gb.wait_received(1, 1));

    LcoreHold hold(lcores[1].lcore);
    ASSERT_TRUE(hold.found()) << "no thread named rte-worker-" << lcores[1].lcore;
    ASSERT_TRUE(hold.hold());
    constexpr unsigned kInbox = 4095; // rte_ring of 4096 slots
    constexpr unsigned kFrames = kInbox + 500;
    for (unsigned i = 1; i <= kFrames; ++i)
        ASSERT_TRUE(inject(payload_frame(guest_mac(b), peer_mac(), i, 1, 64)));
    auto s = lcore_stats_after([&](const std::vector<LcoreStats>& v) {
        return v[0].inbox_drops >= kFrames - kInbox && rte_ring_count(rx_) == 0;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    s = engine_->lcore_stats();
    EXPECT_EQ(s[0].inbox_drops, kFrames - kInbox) << "the demultiplexing lcore counts them";
    EXPECT_EQ(s[1].inbox_drops, 0u);
    EXPECT_EQ(s[1].inbox_frames, 1u) << "the held lcore took nothing more";
    hold.release();

    s = lcore_stats_after(
        [&](const std::vector<LcoreStats>& v) { return v[1].inbox_frames == 1 + kInbox; });
    EXPECT_EQ(s[1].inbox_frames, 1 + kInbox) << "what waited in the inbox is taken";
    EXPECT_EQ(s[0].inbox_drops, kFrames - kInbox);

    close_and_check({{&ga, a}, {&gb, b}});
}

// nic_queues is the NIC RX queues each lcore polls: the shared queues spread over the lcores
// at start, and a guest's dedicated queue while it is attached.
TEST_F(EngineRing, NicQueuesAreTheQueuesEachLcorePolls) {
    const hv::DomId dom = plugged_guest("nicq");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    pmd::PortConfig shared;
    shared.name = "nulls";
    shared.device = "net_null_nqs,no-rx=1";
    shared.steering = pmd::Steering::shared;
    pmd::PortConfig dedicated;
    dedicated.name = "nulld";
    dedicated.device = "net_null_nqd,no-rx=1";
    dedicated.steering = pmd::Steering::dedicated_port;
    extra_ports_ = {shared, dedicated};
    if (!start_ring_engine("ctnicq")) return;
    // The ring port's queue goes to the first lcore, the shared null port's to the second;
    // the dedicated port has no guest yet.
    auto s = engine_->lcore_stats();
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].nic_queues, 1u);
    EXPECT_EQ(s[1].nic_queues, 1u);

    CT_ASSERT_OK(handshake_->connect(dom, 0, "nulld", RxMode::copy));
    ASSERT_TRUE(g.wait_connected());
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    ASSERT_EQ(st->rx_queue, std::optional<std::uint16_t>(0));
    s = engine_->lcore_stats();
    const std::size_t mine = st->lcore == s[0].lcore ? 0 : 1;
    EXPECT_EQ(s[mine].nic_queues, 2u) << "the guest's lcore polls its dedicated queue too";
    EXPECT_EQ(s[1 - mine].nic_queues, 1u);
    EXPECT_EQ(s[mine].queues, 1u);

    ASSERT_TRUE(g.request_close());
    CT_EXPECT_OK(handshake_->disconnect(dom, 0));
    EXPECT_TRUE(g.close_result());
    EXPECT_TRUE(g.succeeded());
    s = engine_->lcore_stats();
    EXPECT_EQ(s[0].nic_queues, 1u);
    EXPECT_EQ(s[1].nic_queues, 1u);
    shut_down_clean();
}

// --- RX over a multi-queue guest, hash extras, large receives -------------------------------

// TCP payload pattern seed of the frames below, and their payload bytes.
constexpr std::uint8_t kSeed = 5;
constexpr std::size_t kFlowPayload = 300;

// A TCP frame of flow `sport` (IPv4 10.0.0.2:sport -> 10.0.0.1:5001, or IPv6) to the guest,
// its checksum partial as a port marks it (RTE_MBUF_F_RX_L4_CKSUM_NONE).
std::vector<std::byte> flow_frame(hv::DomId dom, std::uint16_t sport, std::uint32_t seq,
                                  bool v6 = false, std::size_t payload = kFlowPayload) {
    auto f = tcp_frame(guest_mac(dom), peer_mac(), v6, seq, payload, kSeed);
    const std::size_t tcp = 14 + (v6 ? 40U : 20U);
    f[tcp] = static_cast<std::byte>(sport >> 8);
    f[tcp + 1] = static_cast<std::byte>(sport & 0xFF);
    return f;
}

// The guest's report once it has `tcp` TCP frames (or the timeout).
GuestReport wait_tcp(GuestProcess& g, std::uint64_t tcp) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    for (;;) {
        auto r = g.report(0);
        if (!r) {
            ADD_FAILURE() << "no report from the guest";
            return {};
        }
        if (r->tcp_frames >= tcp || std::chrono::steady_clock::now() >= deadline) return *r;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

std::array<std::uint64_t, GuestReport::kQueues> queue_delta(const GuestReport& before,
                                                            const GuestReport& after) {
    std::array<std::uint64_t, GuestReport::kQueues> d{};
    for (unsigned q = 0; q < d.size(); ++q)
        d[q] = after.tcp_by_queue[q] - before.tcp_by_queue[q];
    return d;
}

std::string show(const std::array<std::uint64_t, GuestReport::kQueues>& by_queue) {
    std::string s;
    for (std::uint64_t v : by_queue)
        s += std::to_string(v) + " ";
    return s;
}

constexpr std::uint64_t kPartial = RTE_MBUF_F_RX_L4_CKSUM_NONE;

// A 4-queue guest that asked for no hashing: each flow's frames all land on one queue (Linux:
// skb_get_hash % queues), 64 flows reach every queue, a frame the port gave an RSS hash goes
// to that hash's queue, and no frame carries a hash extra.
TEST_F(EngineRing, FlowsSpreadOverEveryQueueOfTheGuest) {
    const hv::DomId dom = plugged_guest("ringguest");
    GuestOptions go;
    go.max_queues = 4;
    go.tcp_seed = kSeed;
    GuestProcess g(dir_.path(), dom, go);
    connect_guest(g, dom, {.max_queues = 4});
    if (HasFatalFailure() || !engine_) return;
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    ASSERT_EQ(st->queues, 4u);

    // One flow: one queue.
    for (std::uint32_t i = 0; i < 32; ++i)
        ASSERT_TRUE(inject_rx(flow_frame(dom, 40000, i * 1000), kPartial));
    const GuestReport one = wait_tcp(g, 32);
    ASSERT_EQ(one.tcp_frames, 32u) << one.counters;
    EXPECT_EQ(one.tcp_good, 32u) << "partial checksums completed, every byte right";
    unsigned used = 0;
    for (std::uint64_t v : one.tcp_by_queue)
        used += v != 0 ? 1 : 0;
    EXPECT_EQ(used, 1u) << "one flow on one queue: " << show(one.tcp_by_queue);

    // 64 flows, two frames each: every queue.
    for (std::uint16_t f = 0; f < 64; ++f)
        for (std::uint32_t i = 0; i < 2; ++i)
            ASSERT_TRUE(
                inject_rx(flow_frame(dom, static_cast<std::uint16_t>(41000 + f), i), kPartial));
    const GuestReport many = wait_tcp(g, 32 + 128);
    ASSERT_EQ(many.tcp_frames, 160u) << many.counters;
    EXPECT_EQ(many.tcp_good, 160u);
    const auto spread = queue_delta(one, many);
    for (unsigned q = 0; q < spread.size(); ++q)
        EXPECT_GT(spread[q], 0u) << "queue " << q << ": " << show(spread);

    // The port's RSS hash picks the queue (hash % 4), whatever the flow.
    for (std::uint32_t h = 0; h < 4; ++h)
        ASSERT_TRUE(inject_rx(flow_frame(dom, 40000, 500000 + h), kPartial, 0, 4 * 1000 + h));
    const GuestReport rss = wait_tcp(g, 164);
    ASSERT_EQ(rss.tcp_frames, 164u);
    const auto by_rss = queue_delta(many, rss);
    for (unsigned q = 0; q < by_rss.size(); ++q)
        EXPECT_EQ(by_rss[q], 1u) << "RSS hash " << q << ": " << show(by_rss);

    EXPECT_EQ(rss.hash_extras, 0u) << "no hash extra without the frontend asking";
    EXPECT_EQ(rss.bad + rss.foreign, 0u);
    st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.rx_packets, 164u);
    close_and_check(g, dom);
}

// A 4-queue guest that set Toeplitz hashing over its control ring (IPv4 and IPv4+TCP, the
// RSS key, a mapping of 8 entries): each frame goes to mapping[hash % 8] and carries a hash
// extra with its hash and type; frames of types it did not ask for (IPv6, not IP) carry none.
TEST_F(EngineRing, FrontendHashMappingAndHashExtra) {
    const hv::DomId dom = plugged_guest("ringguest");
    netfront::HashRequest hr;
    hr.flags = netif::hash_flag::kIpv4 | netif::hash_flag::kIpv4Tcp;
    hr.key = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
              0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
              0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};
    hr.mapping = {3, 1, 3, 2, 3, 0, 3, 1};
    GuestOptions go;
    go.max_queues = 4;
    go.tcp_seed = kSeed;
    go.hash = hr;
    GuestProcess g(dir_.path(), dom, go);
    connect_guest(g, dom, {.max_queues = 4});
    if (HasFatalFailure() || !engine_) return;

    // The control ring is served from next_event() (the daemon's loop): pump it until the
    // guest heard every message accepted; the vif's queues then hold its configuration (the
    // engine hands it to the lcore right after serving the ring).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    for (;;) {
        while (engine_->next_event()) {
        }
        auto rep = g.report(0);
        ASSERT_TRUE(rep);
        if (rep->hash_accepted) break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << rep->counters;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    const netif::HashConfig want = st->hash;
    ASSERT_TRUE(want.active());
    EXPECT_EQ(want.flags, hr.flags);
    ASSERT_EQ(want.mapping_size, hr.mapping.size());
    for (unsigned i = 0; i < hr.mapping.size(); ++i)
        ASSERT_EQ(want.mapping[i], hr.mapping[i]) << "mapping entry " << i;

    // 64 IPv4 TCP flows: the queue the mapping names, the hash in the extra.
    std::array<std::uint64_t, GuestReport::kQueues> expect{};
    std::uint64_t hash_sum = 0;
    for (std::uint16_t f = 0; f < 64; ++f) {
        const auto frame = flow_frame(dom, static_cast<std::uint16_t>(1024 + f * 977), f);
        const auto h = netif::flow_hash(
            want, std::span(reinterpret_cast<const std::uint8_t*>(frame.data()), frame.size()));
        ASSERT_TRUE(h);
        ASSERT_EQ(h->type, netif::hash_type::kIpv4Tcp);
        ++expect[netif::hash_queue(want, h->value, 4)];
        hash_sum += h->value | std::uint64_t{h->type} << 32;
        ASSERT_TRUE(inject_rx(frame, kPartial, 0, f)); // an RSS hash of the port's is not used
    }
    unsigned mapped = 0;
    for (std::uint64_t n : expect)
        mapped += n != 0 ? 1 : 0;
    ASSERT_GE(mapped, 3u) << "the flows cover the mapping: " << show(expect);
    const GuestReport v4 = wait_tcp(g, 64);
    ASSERT_EQ(v4.tcp_frames, 64u) << v4.counters;
    EXPECT_EQ(v4.tcp_good, 64u);
    EXPECT_EQ(v4.tcp_by_queue, expect) << show(v4.tcp_by_queue) << "vs " << show(expect);
    EXPECT_EQ(v4.hash_extras, 64u);
    EXPECT_EQ(v4.hash_sum, hash_sum) << "each frame's own hash and type";

    // IPv6 (no IPv6 type asked for) and a frame that is not IP: no hash extra; hash 0 picks
    // mapping[0] = queue 3.
    ASSERT_TRUE(inject_rx(flow_frame(dom, 43000, 0, true), kPartial));
    ASSERT_TRUE(inject(payload_frame(guest_mac(dom), peer_mac(), 0, 1, 200)));
    const GuestReport other = wait_tcp(g, 65);
    ASSERT_EQ(other.tcp_frames, 65u);
    EXPECT_EQ(other.tcp_by_queue[3], v4.tcp_by_queue[3] + 1);
    auto r = g.wait_received(1, 1);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->received, 1u);
    EXPECT_EQ(r->hash_extras, 64u) << "only the frames of the types asked for";
    close_and_check(g, dom);
}

// 64 KiB TCP large receives (RTE_MBUF_F_RX_LRO, MSS 1448, a partial checksum as vhost-net
// marks them) over IPv4 and IPv6.
constexpr std::size_t kLroPayload = 65000;
constexpr std::uint16_t kLroMss = 1448;

// To a frontend with GSO: one packet each, its GSO extra (type, MSS), csum_blank and
// data_validated, every byte right once the guest completes the checksum.
TEST_F(EngineRing, LargeReceivesReachAGsoFrontendWhole) {
    const hv::DomId dom = plugged_guest("ringguest");
    GuestOptions go;
    go.tcp_seed = kSeed;
    GuestProcess g(dir_.path(), dom, go);
    connect_guest(g, dom);
    if (HasFatalFailure() || !engine_) return;

    for (const bool v6 : {false, true}) {
        const auto frame = flow_frame(dom, 40000, 0, v6, kLroPayload);
        ASSERT_TRUE(inject_rx(frame, kPartial | RTE_MBUF_F_RX_LRO, kLroMss));
        const GuestReport r = wait_tcp(g, v6 ? 2 : 1);
        ASSERT_EQ(r.tcp_frames, v6 ? 2u : 1u) << r.counters;
        EXPECT_EQ(r.gso_frames, r.tcp_frames) << "one packet with its GSO extra";
        EXPECT_EQ(r.gso_type, v6 ? netif::gso::kTcpV6 : netif::gso::kTcpV4);
        EXPECT_EQ(r.gso_size, kLroMss);
        EXPECT_EQ(r.csum_blank, r.tcp_frames);
        EXPECT_EQ(r.tcp_validated, r.tcp_frames) << "csum_blank comes with data_validated";
        EXPECT_EQ(r.tcp_good, r.tcp_frames) << r.counters;
        EXPECT_EQ(r.tcp_longest, frame.size());
    }
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    EXPECT_EQ(st->counters.rx_packets, 2u);
    EXPECT_EQ(st->counters.rx_gso_segmented, 0u);
    EXPECT_GE(st->counters.grant_copy_ops, 2u * 16) << "16 page-sized slots each";
    close_and_check(g, dom);
}

// To a frontend without GSO, and to one with GSO but without feature-sg: segments of at most
// the MSS with their checksums filled in, every byte of the payload there.
TEST_F(EngineRing, LargeReceivesAreSegmentedForFrontendsWithoutGso) {
    const hv::DomId no_gso = plugged_guest("nogso");
    const hv::DomId no_sg = plugged_guest("nosg");
    GuestOptions a;
    a.tcp_seed = kSeed;
    a.rx_gso = false;
    GuestOptions b = a;
    b.rx_gso = true;
    b.rx_sg = false;
    GuestProcess ga(dir_.path(), no_gso, a);
    GuestProcess gb(dir_.path(), no_sg, b);
    connect_guests({{&ga, no_gso}, {&gb, no_sg}});
    if (HasFatalFailure() || !engine_) return;

    constexpr std::uint64_t kSegs = (kLroPayload + kLroMss - 1) / kLroMss;
    for (const auto& [dom, g] : {std::pair{no_gso, &ga}, std::pair{no_sg, &gb}}) {
        for (const bool v6 : {false, true})
            ASSERT_TRUE(inject_rx(flow_frame(dom, 40000, 0, v6, kLroPayload),
                                  kPartial | RTE_MBUF_F_RX_LRO, kLroMss));
        const GuestReport r = wait_tcp(*g, 2 * kSegs);
        EXPECT_EQ(r.tcp_frames, 2 * kSegs) << r.counters;
        EXPECT_EQ(r.tcp_good, 2 * kSegs) << "checksums filled in, every byte right";
        EXPECT_EQ(r.tcp_payload, 2 * kLroPayload);
        EXPECT_EQ(r.gso_frames, 0u);
        EXPECT_EQ(r.csum_blank, 0u);
        EXPECT_LE(r.tcp_longest, 14 + 40 + 20 + kLroMss);
        auto st = engine_->status(VifId{dom, 0});
        CT_ASSERT_OK(st);
        EXPECT_EQ(st->counters.rx_gso_segmented, 2u);
        EXPECT_EQ(st->counters.rx_packets, 2 * kSegs);
        EXPECT_EQ(st->counters.rx_drop_error + st->counters.rx_drop_no_buffer, 0u);
    }
    close_and_check({{&ga, no_gso}, {&gb, no_sg}});
}

} // namespace
} // namespace dpnb::component

namespace dpnb::component {
namespace {

std::string vhost_name() {
    return "vhost-" + std::to_string(::getpid());
}

// Two new IRQs of the handle's name at one bind (another handle of the same name binding at
// the same moment): neither is touched, the failure is counted and shown, and the guest is
// served all the same.
TEST_F(EngineRing, AnIrqThatCannotBeFoundIsCountedAndTheGuestServed) {
    pmd::SimCpuPlacement& sim = simulated_placement();
    irqs_per_bind_ = 2;
    const hv::DomId dom = plugged_guest("ambiguous");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom, {.port = "ctambig"});
    if (HasFatalFailure() || !engine_) return;
    const QueueIrqs qi = one_queue_irqs(dom);
    EXPECT_EQ(qi.placement, "ambiguous");
    EXPECT_TRUE(qi.irqs.empty());
    EXPECT_EQ(qi.cpus, "");
    EXPECT_EQ(sim.irq_writes(), 0u);
    std::uint64_t failures = 0;
    for (const LcoreStats& l : engine_->lcore_stats())
        failures += l.irq_placement_failures;
    EXPECT_GE(failures, 1u) << "one per channel bound";
    EXPECT_LE(failures, 2u);

    ASSERT_TRUE(g.send(peer_mac(), 1, 10, 64));
    auto rep = g.report(1);
    ASSERT_TRUE(rep);
    EXPECT_EQ(rep->tx_ok, 10u);
    close_and_check(g, dom);
}

// Placement off: the kernel's choices stand, nothing is written.
TEST_F(EngineRing, PlacementOffTouchesNoIrqAndNoWorker) {
    pmd::SimCpuPlacement& sim = simulated_placement();
    place_interrupts_ = false;
    place_vhost_workers_ = false;
    sim.add_thread_after_next_list(4002, vhost_name(), {0, 1});
    const hv::DomId dom = plugged_guest("off");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom, {.port = "ctoff"});
    if (HasFatalFailure() || !engine_) return;
    EXPECT_EQ(one_queue_irqs(dom).placement, "off");
    EXPECT_EQ(sim.irq_writes(), 0u);
    EXPECT_EQ(sim.thread_writes(), 0u);
    EXPECT_TRUE(engine_->ports()[0].vhost_workers.empty());
    close_and_check(g, dom);
}

// net_ring has no vhost-net workers (its driver row says so): the Engine never scans for
// them, neither around opening and starting its ports nor when a guest comes and goes, even
// with a worker of the daemon's name appearing meanwhile (virtio_user's placement:
// engine_vhost_test.cpp).
TEST_F(EngineRing, ARingPortIsNeverScannedForVhostWorkers) {
    pmd::SimCpuPlacement& sim = simulated_placement();
    sim.add_thread_after_next_list(4002, vhost_name(), {0, 1});
    const hv::DomId dom = plugged_guest("noscan");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom, {.port = "ctnoscan"});
    if (HasFatalFailure() || !engine_) return;
    EXPECT_TRUE(engine_->ports()[0].vhost_workers.empty());
    close_and_check(g, dom);
    EXPECT_EQ(sim.vhost_scans(), 0u);
    EXPECT_EQ(sim.thread_writes(), 0u);
}

// Each event channel the lcore binds for a guest gets its IRQ moved to the lcore's CPUs (an
// lcore allowed two CPUs here: both), shown in the vif's status. Last in the file: its EAL
// differs from every other test's, so in one process with them it skips.
TEST_F(EngineRing, EventChannelIrqsGoToTheLcoresCpus) {
    eal_.lcore_map = "0@0,1@(0-1),2@1";
    if (Status st = pmd::init_eal(eal_); !st && st.error().code == Errc::exists)
        GTEST_SKIP() << "an lcore of two CPUs needs an EAL of its own: run alone, as ctest does";
    pmd::SimCpuPlacement& sim = simulated_placement();
    sim.all_cpus = {0, 1, 2, 3};
    const hv::DomId dom = plugged_guest("placed");
    GuestProcess g(dir_.path(), dom, GuestOptions{});
    connect_guest(g, dom, {.port = "ctplace"});
    if (HasFatalFailure() || !engine_) return;

    const auto lcores = engine_->lcore_stats();
    ASSERT_EQ(lcores.size(), 2u);
    EXPECT_EQ(lcores[0].cpus, "0-1");
    EXPECT_EQ(lcores[1].cpus, "1");
    auto st = engine_->status(VifId{dom, 0});
    CT_ASSERT_OK(st);
    const std::string& cpus = st->lcore == lcores[0].lcore ? lcores[0].cpus : lcores[1].cpus;
    ASSERT_EQ(st->queue_irqs.size(), 1u);
    const QueueIrqs& qi = st->queue_irqs[0];
    EXPECT_EQ(qi.placement, "placed");
    EXPECT_EQ(qi.cpus, cpus);
    ASSERT_FALSE(qi.irqs.empty());
    for (unsigned irq : qi.irqs) {
        auto c = sim.irq_cpus(irq);
        CT_ASSERT_OK(c);
        EXPECT_EQ(pmd::cpu_list_text(*c), cpus) << "IRQ " << irq;
    }
    for (const LcoreStats& l : lcores)
        EXPECT_EQ(l.irq_placement_failures, 0u);

    ASSERT_TRUE(g.send(peer_mac(), 1, 10, 64));
    close_and_check(g, dom);
    EXPECT_TRUE(sim.irqs_named("evtchn:dpnb0-lc0")->empty() &&
                sim.irqs_named("evtchn:dpnb0-lc1")->empty())
        << "every IRQ went with its unbind";
}

} // namespace
} // namespace dpnb::component
