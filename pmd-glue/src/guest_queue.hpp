// One netif queue of a vif as its owning lcore sees it: the two back rings, the RX request
// slots in ring order (each ends with exactly one response or extra-info entry, written in
// ring order), the TX buffers the PMDs hold, counters. Built by the control thread as an
// immutable configuration, handed to one lcore by an attach command; from then on only that
// lcore reads or writes it (except `shared`, the lcore's messages to the control thread, and
// the counters, which the control thread reads with relaxed loads).
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "dp_common.hpp"
#include "dpnb/hv/dma_mapper.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/translation_table.hpp"
#include "dpnb/netif/features.hpp"
#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/packet_headers.hpp"
#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/rx_builder.hpp"
#include "dpnb/netif/tx_parser.hpp"
#include "dpnb/pmd/guest_pool.hpp"
#include "offload.hpp"

struct rte_ring;

namespace dpnb::engine::detail {

class Lcore;

// What a lcore tells the control thread about a vif on its own.
struct VifShared {
    std::atomic<bool> disabled{false};
    char disabled_reason[192] = {};
    std::atomic<bool> fallback{false};
    char fallback_reason[192] = {};
    std::atomic<std::uint8_t> rx_mode{0};         // RxMode in effect on queue 0
    std::atomic<std::uint32_t> stalled_queues{0}; // queues with no RX buffer for the timeout
};

// The NIC RX queue a guest queue owns, if any.
enum class NicKind : std::uint8_t {
    none,       // frames come from a shared queue's demux
    guest_pool, // a dedicated queue allocating from a guest-buffer pool (zero copy possible)
    daemon,     // a dedicated queue with daemon mbufs (a PMD that copies): copy only
};

struct NicBinding {
    NicKind kind = NicKind::none;
    std::uint16_t port_index = 0; // engine port index
    std::uint16_t port_id = 0;
    std::uint16_t queue = 0;
    pmd::GuestBufferPool* pool = nullptr;
    int intr_fd = -1;
    bool intr_level = false; // pmd::RxInterrupt::level: armed through epoll, not the PMD
};

// --- RX: two pipelines (docs/datapath.md, "RX") ---------------------------------------------
//
// Every queue has the copy pipeline: frames in daemon mbufs (the shared queue's demux, another
// lcore's inbox, a dedicated queue of a PMD that copies) take the next requests, their
// responses are written into those requests' ring slots at once, and one grant copy per round
// fills the buffers; a failed copy patches the statuses it wrote. Its requests are answered in
// the round that consumed them, so it keeps no state per slot.
//
// A queue whose NIC queue allocates from a guest-buffer pool also has the zero-copy pipeline
// (ZeroCopyRx): it posts requests to the NIC ahead of frames, each with a buffer from one of
// three sources (a page mapped for it, a page the translation table names, a daemon bounce
// buffer that is grant-copied afterwards), and answers each when the NIC filled it, in ring
// order. Copied frames (broadcasts) into such a queue take the requests after the posted ones
// and are answered behind them.

// One posted request of the zero-copy pipeline, in post order (ZeroCopyRx::posts, by post
// sequence & kRingMask): everything answering it needs, in one place. The NIC takes the
// buffers in this order, so "filled in order" is the received post being the oldest one.
struct ZcPost {
    enum class Source : std::uint8_t { none, map, reuse, bounce };
    rte_mbuf* m = nullptr;     // the slot's header while the FIFO or the NIC has it, else null
    std::byte* page = nullptr; // the page (guest or bounce) the buffer lies in
    netif::RingIdx idx = 0;    // the request's ring index
    netif::GrantRef gref = 0;
    std::uint16_t id = 0;        // the request's id
    std::uint16_t buf_start = 0; // where the frontend's buffer starts in `page` (sub-page)
    std::int16_t group = -1;     // map group (Source::map)
    Source source = Source::none;
};
static_assert(sizeof(ZcPost) == 32);

// Where a consumed request of a zero-copy queue stands between its response being written
// and its publication, by ring index & kRingMask.
struct ZcAnswer {
    enum class State : std::uint8_t {
        idle,    // not answered yet (posted, or not consumed), or answered and published
        filled,  // a mapped buffer the NIC filled (response written): waits for its group's unmap
        copying, // in this round's grant copy (response written, patched if the copy fails)
        final,   // response written and the buffer released: publish it
    };
    static constexpr std::uint32_t kNoPost = 0xFFFFFFFFU;
    std::uint32_t post = kNoPost; // copying: the post whose bounce buffer goes back at publish
    State state = State::idle;
};

// Pages mapped by one grant-map call for RX buffers.
struct MapGroup {
    hv::GrantMapping mapping;
    hv::DmaMapper* dma = nullptr; // the IOMMU the run is DMA-mapped in (PortState::dma)
    std::uint32_t first = 0;      // post sequence of the first member
    std::uint32_t last = 0;       // post sequence of the last member
    std::uint16_t pending = 0;    // members not filled yet
    bool used = false;
};

// The zero-copy pipeline's state: the posts, the answers, the map groups. Owned by the
// queue's lcore.
//
// `posts` holds the last kRingSize posts. No post that still matters (its header posted, or
// its buffer held: its answer not final) is overwritten. Why: post s + kRingSize consumes a
// request at least kRingSize after post s's (one request per post, in ring order; copied
// frames only take more), and RxBackRing::poll_requests refuses a request kRingSize or more
// ahead of rsp_prod_pvt, so by then rsp_prod_pvt has passed post s's request; zc_answerable
// passes only answers whose posts hold nothing (final; copied: bounce freed). zc_post checks
// it per post (rx_post_overwrite, the queue disabled): a slot's header must reach the NIC once.
static_assert(netif::RxBackRing::kSize == kRingSize, "one post slot per RX ring entry");
struct ZeroCopyRx {
    explicit ZeroCopyRx(pmd::GuestBufferPool& p) noexcept : pool(p) {}
    pmd::GuestBufferPool& pool;
    // The PMD filled buffers out of order: new posts are bounced (copied), never mapped.
    bool out_of_order = false;
    std::uint32_t posted = 0; // posts whose header the pool's FIFO or the NIC has
    // Requests from rsp_prod_pvt on whose responses are written and whose buffers are released,
    // in ring order, their answers idle: the run the next publish takes without looking at them
    // (frames a NIC fills in order complete the oldest request each).
    std::uint32_t answered_run = 0;
    // Post sequences: the next post goes to post_tail; nic_head is the oldest post the NIC
    // may still hold (the posts before it are done, and so may be some after it).
    std::uint32_t nic_head = 0, post_tail = 0;
    std::array<ZcPost, kRingSize> posts{};
    // Each post slot's own mbuf header (by post sequence & kRingMask): taken from the pool at
    // the queue's first post (all at once: have_headers), bound to each buffer the slot
    // posts, given back at zc_finish. A post's header is thus never on the pool's free list,
    // and stays bound, while the queue is attached.
    std::array<rte_mbuf*, kRingSize> headers{};
    bool have_headers = false;
    std::array<ZcAnswer, kRingSize> answers{};
    std::array<MapGroup, kRingSize> groups{};
};

// rx_frame_meta of a frame that is neither a large receive nor a TSO frame (no
// RTE_MBUF_F_RX_LRO, no RTE_MBUF_F_TX_TCP_SEG): its length and checksum state only. The copy
// pipeline's common frames take this without the GSO branches.
inline netif::RxFrame rx_plain_frame_meta(const rte_mbuf* m) noexcept {
    netif::RxFrame f;
    f.len = m->pkt_len;
    const std::uint64_t l4 = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
    f.csum_blank = l4 == RTE_MBUF_F_RX_L4_CKSUM_NONE || (m->ol_flags & RTE_MBUF_F_TX_L4_MASK) != 0;
    f.data_validated = l4 == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
    return f;
}

// What the RX builder needs to know of a received frame: its length and its L4 checksum's
// state; for a frame from a guest of the same port (tx_local.cpp), the sender's partial
// checksum or GSO, which that path records as TX offload flags (a NIC's frames never carry
// them). L4_CKSUM_NONE is good data whose checksum field is partial (a virtio-net header's
// NEEDS_CSUM): the guest fills it in, as for Linux's CHECKSUM_PARTIAL. A large receive
// (RTE_MBUF_F_RX_LRO with its MSS: vhost-net's GSO packets, a NIC's LRO) of TCP is a GSO
// frame, its type from its IP header, as Linux hands a GRO packet to netback.
inline netif::RxFrame rx_frame_meta(const rte_mbuf* m) noexcept {
    if ((m->ol_flags & (RTE_MBUF_F_RX_LRO | RTE_MBUF_F_TX_TCP_SEG)) == 0) [[likely]]
        return rx_plain_frame_meta(m);
    netif::RxFrame f;
    f.len = m->pkt_len;
    const std::uint64_t l4 = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
    f.csum_blank = l4 == RTE_MBUF_F_RX_L4_CKSUM_NONE;
    f.data_validated = l4 == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
    if ((m->ol_flags & RTE_MBUF_F_RX_LRO) != 0 && m->tso_segsz != 0) {
        netif::IpHeaders ip;
        if (netif::parse_ip_headers(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len, ip) ==
                netif::IpHeaderError::none &&
            ip.proto == netif::kIpProtoTcp && !ip.fragment) {
            f.gso_type = ip.version == 4 ? netif::gso::kTcpV4 : netif::gso::kTcpV6;
            f.gso_size = m->tso_segsz;
        }
    } else if ((m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) != 0) {
        f.csum_blank = true; // a GSO frame's checksums are partial, as Linux's
        f.gso_type =
            (m->ol_flags & RTE_MBUF_F_TX_IPV6) != 0 ? netif::gso::kTcpV6 : netif::gso::kTcpV4;
        f.gso_size = m->tso_segsz;
    } else if ((m->ol_flags & RTE_MBUF_F_TX_L4_MASK) != 0) {
        f.csum_blank = true;
    }
    return f;
}

// What this round received into a queue, committed to its counters when the round publishes
// (a copied frame counts once its grant copy succeeded).
struct RxRoundCounts {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    std::uint64_t copies = 0;        // daemon_copies
    std::uint64_t copy_ops = 0;      // grant_copy_ops (counted whatever the copy's outcome)
    std::uint64_t local_packets = 0; // of packets and bytes: from guests of the same port
    std::uint64_t local_bytes = 0;
};

// One TX data slot whose buffer a PMD holds (by ring index & kRingMask).
struct TxPending {
    rte_mbuf_ext_shared_info shinfo{};
    struct GuestQueue* q = nullptr;
    std::uint32_t idx = 0;
    std::uint16_t id = 0;
    std::uint8_t extras = 0; // NULL responses after this one (a packet's first slot)
    bool in_use = false;
    bool done = false;
    std::int16_t status = 0;
    std::int16_t group = -1; // TX map group
    std::int16_t next = -1;  // next member of the group (slot index)
};

// Pages mapped by one grant-map call for TX, answered once all are released.
struct TxGroup {
    hv::GrantMapping mapping;
    hv::DmaMapper* dma = nullptr; // the IOMMU the run is DMA-mapped in (PortState::dma)
    std::uint16_t outstanding = 0;
    std::int16_t first = -1; // first member (slot index), linked through TxPending::next
    bool used = false;
};

struct RateState {
    bool on = false;
    std::uint64_t credit_bytes = 0;
    std::uint64_t period_tsc = 0;
    std::uint64_t max_credit = 0;
    std::uint64_t remaining = 0;
    std::uint64_t next_refill = 0;
};

inline constexpr unsigned kMaxMcast = 64;     // XEN_NETBK_MCAST_MAX
inline constexpr unsigned kMaxIpAllowed = 64; // addresses in a vif's "ip" key

// A vif's multicast filter (feature-dynamic-multicast-control): one list for all its queues,
// as Linux keeps it per vif, whichever queue's TX ring added an address and whichever queue
// a frame arrives on. Every queue of a vif is served by one lcore, which alone reads and
// writes it; `enabled` follows the frontend's request-multicast-control (set_mcast_control).
struct McastFilter {
    bool enabled = false;
    std::array<netif::MacAddress, kMaxMcast> addrs{};
    unsigned n = 0;
};
inline constexpr unsigned kMaxPendingFrames = 256;
// Frames a copy queue keeps for its guest while the guest has no RX buffer for them, as Linux
// netback queues skbs for a vif (XENVIF_RX_QUEUE_BYTES: half the ring's pages): a guest that
// is slow to post (its vCPU not running, a burst larger than its ring) loses nothing until
// it is this far behind; TCP sees a delay, not a loss.
inline constexpr std::uint32_t kRxBacklogBytes = kRingSize / 2 * 4096;

struct GuestQueue {
    // --- identity and configuration (immutable after attach) ---------------------------
    std::uint32_t key = 0; // engine-wide queue key (slot | generation << 16)
    VifId vif;
    unsigned index = 0; // queue number within the vif
    netif::DomId dom = 0;
    netif::MacAddress mac;
    VifShared* shared = nullptr;
    Lcore* owner = nullptr;

    netif::TxBackRing tx;
    netif::RxBackRing rx;
    hv::EvtchnPort tx_remote = 0, rx_remote = 0;
    bool split_evtchn = false;
    bool rx_notify = true;
    McastFilter* mcast = nullptr; // the vif's (VifRecord owns it)
    netif::RxFeatures rx_features;
    bool rx_sg = false;
    netif::RxBufferLayout rx_buffers; // whole pages, or the frontend's sub-page buffers
    netif::TxLimits tx_limits;
    bool anti_spoofing = true;
    // IP anti-spoofing (netif/ip_filter.hpp): the addresses the guest may send from; off
    // when n_ip_allowed is 0.
    std::array<netif::Ipv4Address, kMaxIpAllowed> ip_allowed{};
    std::uint32_t n_ip_allowed = 0;
    bool fatal_bad_grants = true;
    // Receive-side hashing as the frontend set it over the control ring (flow_hash.hpp);
    // replaced whole by a set_hash command, algorithm NONE until then.
    netif::HashConfig hash;
    // Every queue of the vif, by index (the VifRecord's list, fixed before attach): a frame
    // for the vif goes to the one its flow hash picks (pick_queue in rx_path.cpp). All of them are
    // served by this queue's lcore.
    GuestQueue* const* vif_queues = nullptr;
    std::uint32_t n_vif_queues = 1;

    // TX egress: the engine's port (its TX queue is the lcore's, PortState::tx_queue)
    std::uint16_t out_port_index = 0;

    // RX source
    NicBinding nic;
    hv::TranslationTableView view;
    bool have_view = false;
    netif::RxBufferGeometry rx_geo; // rx_uniform_geometry(rx_buffers)
    // rx_buffers' checks of each request (its offset), for both pipelines: built at attach.
    netif::RxRequestCheck rx_check{netif::RxBufferLayout{}};
    char name[16] = {}; // "vif<dom>.<handle>", for log lines

    // --- owned by the lcore ----------------------------------------------------------------
    hv::EvtchnPort tx_port = 0, rx_port = 0; // local ports, bound by the lcore
    // The kernel IRQs of tx_port and rx_port (-1: unknown; one with a shared channel) and what
    // placing them on the lcore's CPUs came to: written at attach, before the lcore's ack.
    std::array<int, 2> irq{-1, -1};
    pmd::IrqPlacement irq_placement = pmd::IrqPlacement::off;
    RxMode mode = RxMode::copy; // for new posts
    RxMode reuse_miss = RxMode::map;
    bool disabled = false;
    bool detaching = false;

    // RX, both pipelines. ids of consumed requests by ring index, for the copy batch's
    // failure patch (copy_failed): a response is patched long after its request was read.
    // (A zero-copy post keeps its id in its ZcPost, and writes it here for a bounce copy.)
    std::array<std::uint16_t, kRingSize> rx_ids{};
    std::unique_ptr<ZeroCopyRx> zc; // the zero-copy pipeline; null on a copy queue
    // The copy pipeline's frames for this round (daemon mbufs), and the frontend's hash of
    // each when it asked for hashes (a hash extra-info slot). Those the guest had no buffer
    // for stay, first in line, for the next round (the backlog: at most kRxBacklogBytes).
    std::array<rte_mbuf*, kMaxPendingFrames> pending{};
    std::array<std::optional<netif::FlowHash>, kMaxPendingFrames> pending_hash{};
    std::uint32_t n_pending = 0;
    // The backlog those frames left after the queue's last round, for status(): gauges with
    // one writer (the lcore, set_gauge), read by the control thread (read_counter).
    std::uint64_t backlog_frames = 0;
    std::uint64_t backlog_bytes = 0;
    RxRoundCounts rx_round;
    bool rx_touched = false; // on the lcore's list of queues to publish this round
    // Stall (rx_path.cpp): since when frames waited with no RX buffer (TSC, 0: they did not),
    // and whether that lasted rx_stall_timeout (carrier off).
    std::uint64_t rx_starved_since = 0;
    bool rx_stalled = false;
    std::uint32_t copy_batch = 0; // the lcore's copy batch that last counted a grant batch here

    std::array<TxPending, kRingSize> txp{};
    std::array<TxGroup, kRingSize> tx_groups{};
    rte_ring* tx_done = nullptr;      // completions from PMDs (any thread): slot indices
    std::uint32_t tx_outstanding = 0; // TX slots a PMD holds
    bool tx_publish = false;
    bool tx_blocked = false; // stopped for credit or mbufs; retried next poll
    // The last burst sent a unicast frame to another guest of the port: the next copies its
    // headers apart from its slots (tx_build), so such frames can go in one copy.
    bool tx_local_hint = false;

    RateState rate;

    QueueCounters counters;
    LogLimiter log;

    // The poll loop's look at a queue before it calls a stage (Lcore::run): one read of
    // req_prod each, so that an idle queue costs an empty poll a few loads, not a call.
    // do_guest_tx and zc_post do nothing when these are false.
    bool tx_may_have_work() const noexcept {
        return !disabled && !detaching && (rate.on || tx.has_unconsumed_requests());
    }
    bool zc_may_post(unsigned depth) const noexcept {
        return zc != nullptr && !disabled && !detaching && zc->posted < depth &&
               rx.has_unconsumed_requests();
    }

    bool accepts_multicast(const std::uint8_t* dst) const noexcept {
        if (!mcast->enabled) return true;
        for (unsigned i = 0; i < mcast->n; ++i)
            if (std::equal(mcast->addrs[i].bytes.begin(), mcast->addrs[i].bytes.end(), dst))
                return true;
        return false;
    }
};

// One guest packet of a TX burst while the burst is built.
struct TxWork {
    netif::TxPacket pkt;
    rte_mbuf* hdr = nullptr; // the copied first bytes, head of the chain
    // The first hdr_len bytes of the packet, linear in `hdr` (XSA-423): whole slots
    // 0..hdr_slots-2 and the first hdr_tail bytes of slot hdr_slots-1.
    std::uint16_t hdr_len = 0;
    std::uint16_t hdr_slots = 0;
    std::uint16_t hdr_tail = 0;
    std::uint32_t seg = 0;       // its first header copy segment
    std::uint16_t nhdr_segs = 0; // and how many (one per slot that has bytes in the header)
    std::uint32_t map_first = 0; // its first grant in the burst's map request list
    std::uint16_t map_count = 0;
    // Slots (after the header copy) grant-copied into daemon mbufs instead of mapped:
    // copies[k] holds slot k's mbuf (nullptr: mapped, or nothing left), copy_seg[k] its
    // segment in the burst's copy list.
    std::array<rte_mbuf*, netif::kTxMaxSlots> copies{};
    std::array<std::uint32_t, netif::kTxMaxSlots> copy_seg{};
    bool drop = false; // answered in error (nothing mapped)
    // Staged from the guest's grants straight into another guest's buffers (tx_onecopy),
    // answered after that copy: onecopy_status is GNTST_okay unless the copy failed on this
    // guest's own grant onecopy_ref.
    bool onecopy = false;
    std::int16_t onecopy_status = 0;
    netif::GrantRef onecopy_ref = 0;
    PacketHeaders h;
};

// The bytes of slot `k` of `t` that are in the packet's header copy (plan_header in
// tx_path.cpp): the rest of the slot follows them in the guest's page.
inline std::uint32_t tx_header_part(const TxWork& t, unsigned k) noexcept {
    if (k + 1U < t.hdr_slots) return t.pkt.slots[k].len;
    return k + 1U == t.hdr_slots ? t.hdr_tail : 0U;
}

} // namespace dpnb::engine::detail
