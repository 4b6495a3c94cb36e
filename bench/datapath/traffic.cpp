// Traffic sources and sinks of the benchmark (traffic.hpp).
#include "traffic.hpp"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <chrono>
#include <cstring>

#include "dpnb/netfront/payload.hpp"
#include "dpnb/netif/ring.hpp"

namespace dpnb::bench {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr unsigned kRingSize = 1024;
// A TX ring holds what the lcore sends while the drainer waits for a CPU. Under valgrind one
// thread runs at a time and the lcore keeps the CPU for a scheduling quantum, thousands of
// packets; a ring of 2048 refused 3-71 % of a window's packets there (the lcore's work on
// them counted, the packets not), so it holds a quantum's worth. It stays below the lcore's
// header mbufs (kBenchTxMbufs, traffic.hpp), so that the port takes every packet.
constexpr unsigned kTxRingSize = 16384;
static_assert(kTxRingSize < kBenchTxMbufs);
constexpr unsigned kPoolSize = 2047; // per destination: ring plus what the engine holds
constexpr unsigned kBurst = 32;
constexpr std::uint32_t kGeneratorStream = 0xB0000000;

// Paces a loop to `pps` (0: no pacing): call before each burst of `n`.
class Pacer {
public:
    explicit Pacer(std::uint64_t pps) : pps_(pps), t0_(Clock::now()) {}
    void wait(std::uint64_t done, const std::atomic<bool>& stop) const {
        if (pps_ == 0) return;
        for (;;) {
            const double due = static_cast<double>(done) / static_cast<double>(pps_);
            const double now = std::chrono::duration<double>(Clock::now() - t0_).count();
            if (now >= due || stop.load(std::memory_order_relaxed)) return;
            const double gap = due - now;
            if (gap > 200e-6) std::this_thread::sleep_for(std::chrono::duration<double>(gap / 2));
        }
    }

private:
    std::uint64_t pps_;
    Clock::time_point t0_;
};

} // namespace

netif::MacAddress peer_mac() {
    netif::MacAddress m;
    m.bytes = {0x02, 0x00, 0x00, 0xbe, 0x0c, 0x01};
    return m;
}

std::vector<std::byte> make_frame(const netif::MacAddress& dst, const netif::MacAddress& src,
                                  std::size_t size, std::uint64_t seq) {
    std::vector<std::byte> f(std::max(size, netfront::kPayloadMinFrame));
    netfront::PayloadHeader h;
    h.dst = dst;
    h.src = src;
    h.seq = seq;
    h.stream = kGeneratorStream;
    (void)netfront::build_payload_frame(f, h);
    return f;
}

// --- net_ring ------------------------------------------------------------------------------

RingWire::RingWire(const std::string& name, unsigned tx_queues) : name_(name) {
    rx_ = rte_ring_create((name + "_rx").c_str(), kRingSize, SOCKET_ID_ANY,
                          RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (rx_ == nullptr) return;
    for (unsigned i = 0; i < tx_queues; ++i) {
        // Several lcores never share a TX queue, but one drainer takes from all.
        rte_ring* t = rte_ring_create((name + "_tx" + std::to_string(i)).c_str(), kTxRingSize,
                                      SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (t == nullptr) return;
        tx_.push_back(t);
    }
    const int port = rte_eth_from_rings(name.c_str(), &rx_, 1, tx_.data(),
                                        static_cast<unsigned>(tx_.size()), SOCKET_ID_ANY);
    if (port < 0) return;
    char ethdev[RTE_ETH_NAME_MAX_LEN];
    if (rte_eth_dev_get_name_by_port(static_cast<std::uint16_t>(port), ethdev) != 0) return;
    ethdev_ = ethdev;
}

RingWire::~RingWire() {
    stop();
    // The engine (and with it the port) is gone by now: what is left in the rings is ours.
    void* obj = nullptr;
    if (rx_ != nullptr)
        while (rte_ring_dequeue(rx_, &obj) == 0)
            rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
    for (rte_ring* t : tx_)
        while (rte_ring_dequeue(t, &obj) == 0)
            rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
    for (std::size_t i = 0; i < pools_.size(); ++i)
        if (posted_frames_[i].empty()) rte_mempool_free(pools_[i]);
    for (rte_ring* t : tx_)
        rte_ring_free(t);
    if (rx_ != nullptr) rte_ring_free(rx_);
}

bool RingWire::add_destination(const netif::MacAddress& dst, std::size_t size,
                               const std::byte* rx_ring, unsigned requests_per_frame) {
    const std::string pname = name_ + "_p" + std::to_string(pools_.size());
    // Cache 0: mbufs are freed by the engine's lcores and allocated by the generator thread.
    rte_mempool* pool = rte_pktmbuf_pool_create(pname.c_str(), kPoolSize, 0, 0,
                                                2048 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
    if (pool == nullptr) return false;
    pools_.push_back(pool);
    sizes_.push_back(static_cast<std::uint16_t>(std::max(size, netfront::kPayloadMinFrame)));
    // Write the frame once into every mbuf: alloc resets the data offset to the headroom,
    // and nobody writes into an RX mbuf, so the frame stays there.
    const std::vector<std::byte> frame = make_frame(dst, peer_mac(), size, 0);
    std::vector<rte_mbuf*> all(kPoolSize);
    if (rte_pktmbuf_alloc_bulk(pool, all.data(), kPoolSize) != 0) return false;
    for (rte_mbuf* m : all)
        std::memcpy(rte_pktmbuf_mtod(m, void*), frame.data(), frame.size());
    rte_pktmbuf_free_bulk(all.data(), kPoolSize);
    posted_frames_.emplace_back();
    Credit c;
    if (rx_ring != nullptr) {
        // The shared ring's indices (netif::SharedRingHeader); nothing is in flight yet, so
        // the requests answered so far are all the frames sent so far took.
        c.ring = const_cast<std::byte*>(rx_ring);
        c.per_frame = std::max(1U, requests_per_frame);
        c.taken = netif::detail::shared_index(c.ring, netif::detail::kRspProdOff)
                      .load(std::memory_order_acquire);
    }
    credits_.push_back(c);
    return true;
}

bool RingWire::add_posted_destination(const netif::MacAddress& dst, std::size_t size,
                                      rte_mempool* posted) {
    if (posted == nullptr) return false;
    pools_.push_back(posted);
    posted_frames_.push_back(make_frame(dst, peer_mac(), size, 0));
    sizes_.push_back(static_cast<std::uint16_t>(posted_frames_.back().size()));
    credits_.emplace_back(); // the posted buffers are the back-pressure
    return true;
}

unsigned RingWire::in_use(std::size_t i) const {
    return i < pools_.size() ? rte_mempool_in_use_count(pools_[i]) : 0;
}

unsigned RingWire::waiting() const {
    return rx_ != nullptr ? rte_ring_count(rx_) : 0;
}

namespace {

// Up to `n` buffers the engine posted, oldest first: the pool hands out all or nothing, so a
// short FIFO is taken one buffer at a time.
unsigned take_posted(rte_mempool* pool, rte_mbuf** out, unsigned n) {
    if (rte_mempool_get_bulk(pool, reinterpret_cast<void**>(out), n) == 0) return n;
    unsigned got = 0;
    while (got < n && rte_mempool_get(pool, reinterpret_cast<void**>(out + got)) == 0)
        ++got;
    return got;
}

} // namespace

void RingWire::start(std::uint64_t pps) {
    halt();
    stop_ = false;
    if (!pools_.empty())
        gen_ = std::thread([this, pps] {
            const Pacer pacer(pps);
            const std::vector<std::uint16_t> sizes = sizes_;
            rte_mbuf* burst[kBurst];
            std::uint64_t done = 0;
            std::size_t next = 0;
            while (!stop_.load(std::memory_order_relaxed)) {
                pacer.wait(done, stop_);
                const std::size_t pi = next++ % pools_.size();
                unsigned n = pps != 0 && pps < 100000 ? 1 : kBurst;
                const std::vector<std::byte>& frame = posted_frames_[pi];
                if (!frame.empty()) {
                    n = take_posted(pools_[pi], burst, n);
                    if (n == 0) {
                        std::this_thread::yield();
                        continue;
                    }
                    for (unsigned i = 0; i < n; ++i)
                        std::memcpy(rte_pktmbuf_mtod(burst[i], void*), frame.data(), frame.size());
                } else {
                    Credit& c = credits_[pi];
                    if (c.ring != nullptr) {
                        const std::uint32_t posted =
                            netif::detail::shared_index(c.ring, netif::detail::kReqProdOff)
                                .load(std::memory_order_acquire);
                        n = std::min(n, (posted - c.taken) / c.per_frame);
                        if (n == 0) {
                            held_back_.fetch_add(1, std::memory_order_relaxed);
                            std::this_thread::yield();
                            continue;
                        }
                    }
                    if (rte_pktmbuf_alloc_bulk(pools_[pi], burst, n) != 0) {
                        std::this_thread::yield();
                        continue;
                    }
                }
                for (unsigned i = 0; i < n; ++i) {
                    burst[i]->data_len = sizes[pi];
                    burst[i]->pkt_len = sizes[pi];
                }
                unsigned sent =
                    rte_ring_sp_enqueue_burst(rx_, reinterpret_cast<void**>(burst), n, nullptr);
                if (sent < n && !frame.empty()) {
                    // A posted buffer is the guest's: it goes back through the ring, never
                    // to the pool (the ring holds more than the pool has buffers).
                    while (sent < n)
                        sent += rte_ring_sp_enqueue_burst(
                            rx_, reinterpret_cast<void**>(burst + sent), n - sent, nullptr);
                } else if (sent < n) {
                    rte_pktmbuf_free_bulk(burst + sent, n - sent);
                }
                credits_[pi].taken += sent * credits_[pi].per_frame;
                done += sent;
                generated_.fetch_add(sent, std::memory_order_relaxed);
                if (sent == 0) std::this_thread::yield();
            }
        });
    start_drainer();
}

void RingWire::start_sink() {
    halt();
    stop_ = false;
    start_drainer();
}

void RingWire::start_drainer() {
    drain_ = std::thread([this] {
        void* objs[kBurst];
        while (!stop_.load(std::memory_order_relaxed)) {
            unsigned got = 0;
            for (rte_ring* t : tx_) {
                const unsigned n = rte_ring_sc_dequeue_burst(t, objs, kBurst, nullptr);
                if (n != 0) rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(objs), n);
                got += n;
            }
            drained_.fetch_add(got, std::memory_order_relaxed);
            if (got == 0) std::this_thread::sleep_for(50us);
        }
    });
}

void RingWire::halt() {
    stop_ = true;
    if (gen_.joinable()) gen_.join();
    if (drain_.joinable()) drain_.join();
}

void RingWire::stop() {
    halt();
    bool posted = false;
    for (const auto& f : posted_frames_)
        posted = posted || !f.empty();
    if (!posted) return;
    // Posted buffers must reach the engine before their queue detaches.
    const auto deadline = Clock::now() + 10s;
    while (rx_ != nullptr && rte_ring_count(rx_) != 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    for (std::size_t i = pools_.size(); i-- > 0;) {
        if (posted_frames_[i].empty()) continue;
        pools_.erase(pools_.begin() + static_cast<std::ptrdiff_t>(i));
        sizes_.erase(sizes_.begin() + static_cast<std::ptrdiff_t>(i));
        credits_.erase(credits_.begin() + static_cast<std::ptrdiff_t>(i));
        posted_frames_.erase(posted_frames_.begin() + static_cast<std::ptrdiff_t>(i));
    }
}

// --- tap -----------------------------------------------------------------------------------

namespace {

int packet_socket(const std::string& iface) {
    const unsigned idx = ::if_nametoindex(iface.c_str());
    if (idx == 0) return -1;
    const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) return -1;
    sockaddr_ll sa{};
    sa.sll_family = AF_PACKET;
    sa.sll_protocol = htons(ETH_P_ALL);
    sa.sll_ifindex = static_cast<int>(idx);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
        ::close(fd);
        return -1;
    }
    int big = 4 << 20;
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    // Skip the qdisc: the tap's fd is the only consumer anyway.
    int one = 1;
    (void)::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    return fd;
}

} // namespace

bool wait_iface(const std::string& iface, int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (::if_nametoindex(iface.c_str()) == 0) {
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

TapGenerator::~TapGenerator() {
    stop();
    for (Target& t : targets_)
        if (t.fd >= 0) ::close(t.fd);
}

bool TapGenerator::add(const std::string& iface, std::vector<std::byte> frame) {
    const int fd = packet_socket(iface);
    if (fd < 0) return false;
    targets_.push_back(Target{fd, std::move(frame)});
    return true;
}

void TapGenerator::start(std::uint64_t pps) {
    stop();
    stop_ = false;
    thread_ = std::thread([this, pps] {
        constexpr unsigned kBatch = 64;
        const Pacer pacer(pps);
        std::vector<std::vector<mmsghdr>> msgs(targets_.size(), std::vector<mmsghdr>(kBatch));
        std::vector<iovec> iovs(targets_.size());
        for (std::size_t t = 0; t < targets_.size(); ++t) {
            iovs[t] = iovec{targets_[t].frame.data(), targets_[t].frame.size()};
            for (mmsghdr& m : msgs[t]) {
                m = mmsghdr{};
                m.msg_hdr.msg_iov = &iovs[t];
                m.msg_hdr.msg_iovlen = 1;
            }
        }
        std::uint64_t done = 0;
        std::size_t next = 0;
        while (!stop_.load(std::memory_order_relaxed) && !targets_.empty()) {
            pacer.wait(done, stop_);
            const std::size_t t = next++ % targets_.size();
            const unsigned n = pps != 0 && pps < 100000 ? 1 : kBatch;
            const int sent = ::sendmmsg(targets_[t].fd, msgs[t].data(), n, MSG_DONTWAIT);
            if (sent > 0) {
                done += static_cast<unsigned>(sent);
                sent_.fetch_add(static_cast<unsigned>(sent), std::memory_order_relaxed);
            } else {
                if (sent < 0) last_errno_.store(errno, std::memory_order_relaxed);
                std::this_thread::yield();
            }
        }
    });
}

void TapGenerator::stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
}

// --- latency -------------------------------------------------------------------------------

LatencyResult measure_latency(const std::string& iface, const netif::MacAddress& dst,
                              std::size_t size, unsigned count, unsigned gap_us, int timeout_ms) {
    LatencyResult r;
    const int fd = packet_socket(iface);
    if (fd < 0) return r;
    std::vector<std::byte> buf(65536);
    for (unsigned i = 0; i < count; ++i) {
        const std::uint64_t seq = 1'000'000 + i;
        const std::vector<std::byte> f = make_frame(dst, peer_mac(), size, seq);
        const auto t0 = Clock::now();
        if (::send(fd, f.data(), f.size(), 0) != static_cast<ssize_t>(f.size())) continue;
        ++r.sent;
        const auto deadline = t0 + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) break;
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0) break;
            sockaddr_ll from{};
            socklen_t fl = sizeof(from);
            const ssize_t n =
                ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
            if (n < 14 || from.sll_pkttype == PACKET_OUTGOING) continue;
            const auto info = netfront::check_payload_frame(
                std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)));
            if (info.result != netfront::PayloadCheck::ok || info.header.seq != seq ||
                info.header.dst.bytes != peer_mac().bytes)
                continue;
            r.rtt_us.push_back(
                std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
            ++r.answered;
            break;
        }
        if (r.sent >= 50 && r.answered == 0) break; // nothing comes back: stop waiting
        std::this_thread::sleep_for(std::chrono::microseconds(gap_us));
    }
    ::close(fd);
    return r;
}

} // namespace dpnb::bench
