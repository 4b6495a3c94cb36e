// One netfront queue: a TX ring and an RX ring with their event channels, the TX slot
// bookkeeping (ids, grants, frames) and the RX slot bookkeeping (buffer posted in each ring
// slot). Linux's struct netfront_queue and the functions around it (setup_netfront,
// xennet_start_xmit, xennet_tx_buf_gc, xennet_alloc_rx_buffers, xennet_poll,
// xennet_get_responses, xennet_release_{tx,rx}_bufs). Private to the netfront library.
#pragma once

#include <array>
#include <cstdint>

#include "dpnb/netfront/netfront.hpp"
#include "dpnb/netif/ring.hpp"

namespace dpnb::netfront {

class Queue {
public:
    static constexpr std::uint32_t kRingSize = netif::kTxRingSize; // 256, both rings
    static_assert(netif::kRxRingSize == kRingSize);
    // MAX_XEN_SKB_FRAGS + 1: the most data slots Linux netfront puts in one TX packet.
    static constexpr unsigned kMaxTxSlots = 65536 / 4096 + 2;

    Queue(Netfront& nf, unsigned index);
    ~Queue();
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;

    // setup_netfront: ring pages granted and initialised, TX pages, event channels (split
    // when asked, falling back to one channel as Linux does).
    Status setup(bool split);
    // xennet_disconnect_backend for this queue: ports unbound, every grant ended (or
    // deferred while the backend still holds it), RX buffers back to the pool, frames in
    // flight completed as aborted.
    void teardown();

    unsigned index() const noexcept { return index_; }
    hv::GrantRef tx_ring_ref() const noexcept { return tx_ring_ref_; }
    hv::GrantRef rx_ring_ref() const noexcept { return rx_ring_ref_; }
    hv::EvtchnPort tx_port() const noexcept { return tx_port_; }
    hv::EvtchnPort rx_port() const noexcept { return rx_port_; }
    bool split() const noexcept { return tx_port_ != rx_port_; }
    std::uint32_t tx_in_flight() const noexcept { return tx_frames_in_flight_; }

    // Notifies both channels (xennet_connect kicks the backend after the handshake).
    void kick();
    Status send(const TxFrame& frame);
    // TX responses, RX responses, RX refill.
    void process(const Handlers& handlers);
    // RING_FINAL_CHECK_FOR_RESPONSES on both rings: true means process again now.
    bool more_work();

private:
    struct TxSlot {
        hv::GrantRef gref = hv::kGrantRefInvalid;
        std::uint16_t frame = 0; // id of the frame's first slot
        bool pending = false;
    };
    struct TxFrameState {
        std::uint64_t cookie = 0;
        std::uint32_t len = 0;
        std::uint16_t remaining = 0; // slots not answered yet
        TxStatus status = TxStatus::okay;
        bool active = false;
    };
    struct RxSlot {
        BufferId buf = kNoBuffer;
        hv::GrantRef gref = hv::kGrantRefInvalid; // the grant named in the request
        bool per_post = false;                    // ours to end after the response
    };
    struct Repost {
        BufferId buf;
        hv::GrantRef gref;
        bool per_post;
    };

    void notify(hv::EvtchnPort port, Counter counter);
    void collect_tx(const Handlers& handlers);
    void receive(const Handlers& handlers);
    void refill();
    // Ends a per-post grant of an RX buffer that the backend answered; false (and broken)
    // when the backend still uses it.
    bool end_rx_grant(RxSlot& slot);
    void complete(std::uint16_t first_id, const Handlers* handlers);

    Netfront& nf_;
    unsigned index_;

    std::array<std::byte*, 2> ring_pages_{}; // TX ring, RX ring
    hv::GuestPages tx_pages_{};              // one page per TX id
    hv::GrantRef tx_ring_ref_ = hv::kGrantRefInvalid;
    hv::GrantRef rx_ring_ref_ = hv::kGrantRefInvalid;
    hv::EvtchnPort tx_port_ = 0;
    hv::EvtchnPort rx_port_ = 0;
    netif::TxFrontRing tx_;
    netif::RxFrontRing rx_;

    std::array<TxSlot, kRingSize> tx_slots_{};
    std::array<TxFrameState, kRingSize> tx_frames_{};
    std::array<std::uint16_t, kRingSize> tx_free_{}; // stack of free ids
    std::uint32_t tx_free_count_ = 0;
    std::uint32_t tx_frames_in_flight_ = 0;
    bool tx_pages_leaked_ = false;

    std::array<RxSlot, kRingSize> rx_slots_{};
    std::vector<Repost> repost_;
};

} // namespace dpnb::netfront
