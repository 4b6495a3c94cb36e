// Traffic sources and sinks of the benchmark, outside the Engine:
//   * RingWire: a net_ring port whose RX ring a generator thread fills with pre-built mbufs
//     (one pool per destination guest, frames written once) and whose TX rings a drainer
//     thread empties: the data path with no kernel in the loop;
//   * TapGenerator: the kernel side of tap interfaces, AF_PACKET sockets sending bursts with
//     sendmmsg, so that a zero-copy tap port has something to write into guest buffers;
//   * latency probes over AF_PACKET.
// Each source counts what it managed to offer, so the reader sees whether the generator or
// the daemon is the bottleneck.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "dpnb/netif/xs_value.hpp"

struct rte_ring;
struct rte_mempool;

namespace dpnb::bench {

// The lcores' TX header mbufs in the bench (EngineOptions::tx_mbufs_per_lcore): more than a
// net_ring TX ring holds (traffic.cpp), so a ring the drainer has not emptied yet refuses
// nothing for want of mbufs.
inline constexpr unsigned kBenchTxMbufs = 32768;

// The frame every generator sends to `dst`: a verifiable payload frame (the guest checks it).
std::vector<std::byte> make_frame(const netif::MacAddress& dst, const netif::MacAddress& src,
                                  std::size_t size, std::uint64_t seq);
netif::MacAddress peer_mac();

class RingWire {
public:
    // Creates the rings and the ethdev (`tx_queues` = worker lcores). EAL must be up.
    RingWire(const std::string& name, unsigned tx_queues);
    ~RingWire();
    bool ok() const { return !ethdev_.empty(); }
    const std::string& ethdev() const { return ethdev_; }
    // One pool of pre-built frames per destination. With `rx_ring` (the destination's RX
    // shared ring, mapped) the generator plays a NIC whose queue holds only what the guest
    // has buffers for: it sends a frame only against a request the guest posted (a frame
    // takes `requests_per_frame`), so the lcore never takes a frame it must keep or drop for
    // want of a buffer and the window's instructions are those of delivered frames. Without
    // it (the stall phase) the generator floods.
    bool add_destination(const netif::MacAddress& dst, std::size_t size,
                         const std::byte* rx_ring = nullptr, unsigned requests_per_frame = 1);
    // A destination whose frames go into the buffers the engine posted: the generator plays
    // the NIC of a zero-copy queue (pmd::PortConfig::rx_peer_fills_pool). It takes each
    // buffer from `posted` (the queue's guest-buffer pool), writes the frame into it and
    // enqueues the buffers in the order it took them, as a NIC's DMA fills its descriptors.
    // stop() waits until the engine took every such buffer back from the ring and then
    // forgets these destinations (their queue detaches next).
    bool add_posted_destination(const netif::MacAddress& dst, std::size_t size,
                                rte_mempool* posted);
    // Generator at `pps` frames per second in total (0: as fast as it can), and the drainer.
    void start(std::uint64_t pps);
    // The drainer alone: the port is a sink (a phase where the guests send, whatever
    // destinations an RX phase left).
    void start_sink();
    void stop();
    std::uint64_t generated() const { return generated_.load(std::memory_order_relaxed); }
    // Mbufs of the `i`-th destination's pool out of it (in the RX ring or held by the
    // engine), and frames waiting in the RX ring for the engine.
    unsigned in_use(std::size_t i) const;
    unsigned waiting() const;
    std::uint64_t drained() const { return drained_.load(std::memory_order_relaxed); }
    // Times the generator found no posted request for a destination it held back.
    std::uint64_t held_back() const { return held_back_.load(std::memory_order_relaxed); }

private:
    void halt(); // stops the threads
    void start_drainer();
    std::string name_;
    std::string ethdev_;
    rte_ring* rx_ = nullptr;
    std::vector<rte_ring*> tx_;
    // Per destination: its pool, frame size, and (posted) the frame written into each buffer.
    std::vector<rte_mempool*> pools_;
    std::vector<std::uint16_t> sizes_;
    std::vector<std::vector<std::byte>> posted_frames_; // empty: pre-built frames (own pool)
    // Per destination with back-pressure: its RX ring's req_prod, the requests one frame
    // takes, and the requests the frames sent so far took (from the ring's rsp_prod).
    struct Credit {
        std::byte* ring = nullptr;
        unsigned per_frame = 1;
        std::uint32_t taken = 0;
    };
    std::vector<Credit> credits_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> generated_{0}, drained_{0}, held_back_{0};
    std::thread gen_, drain_;
};

class TapGenerator {
public:
    TapGenerator() = default;
    ~TapGenerator();
    // An AF_PACKET socket on `iface` sending `frame`.
    bool add(const std::string& iface, std::vector<std::byte> frame);
    void start(std::uint64_t pps);
    void stop();
    std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
    int last_errno() const { return last_errno_.load(std::memory_order_relaxed); }

private:
    struct Target {
        int fd = -1;
        std::vector<std::byte> frame;
    };
    std::vector<Target> targets_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> sent_{0};
    std::atomic<int> last_errno_{0};
    std::thread thread_;
};

// Waits until `iface` exists (a PMD creates it asynchronously).
bool wait_iface(const std::string& iface, int timeout_ms);

struct LatencyResult {
    std::uint64_t sent = 0;
    std::uint64_t answered = 0;
    std::vector<double> rtt_us; // answered probes, in send order
};

// `count` frames of `size` bytes to `dst` on `iface`, one every `gap_us`, each waiting up to
// `timeout_ms` for its echo (destination: our MAC).
LatencyResult measure_latency(const std::string& iface, const netif::MacAddress& dst,
                              std::size_t size, unsigned count, unsigned gap_us, int timeout_ms);

} // namespace dpnb::bench
