// A Xen PV network frontend in userspace: what Linux's drivers/net/xen-netfront.c does, over
// dpnetback's GuestHypervisor interface, so that it runs as a simulated guest (tests, demo,
// benchmarks) and, with open_xen_guest(), inside a real domU.
//
//   * xenbus: Initialising; on the backend's InitWait read its features, set up the queues
//     (ring pages granted, FrontRings initialised, unbound event channels), write the keys
//     Linux 6.1 writes in one transaction, post RX buffers, Connected; follow the backend to
//     Connected; on its Closing/Closed disconnect, release every grant and write Closed; come
//     back when it offers InitWait again (a daemon restart).
//   * TX: a frame becomes one or more slots (NETTXF_more_data, first slot's size = total),
//     checksum flags and a GSO extra; each slot's page granted read-only; responses collected
//     by id, grants ended, one completion per frame with its status.
//   * RX: the ring kept full (request id = ring index & mask); responses (multi-slot,
//     extra info, offsets, checksum flags) validated and handed to the caller; buffers from
//     an RxBufferPool (copy mode: a grant per post; reuse mode: registered pages).
//   * The backend is not trusted: every index, id, offset, length, status and extra it
//     writes is checked; a bad frame is counted and dropped; an impossible index or a grant
//     the backend keeps after answering disables the vif until the next connection, as
//     Linux's `broken` does. Nothing the backend writes can crash this code.
//
// Threading: one Netfront is driven by one thread (poll(), send(), ...). Handlers run inside
// poll(); they may call send() but not poll() or close().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/netfront/counters.hpp"
#include "dpnb/netfront/rx_pool.hpp"
#include "dpnb/netif/xenbus_state.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace dpnb::netfront {

enum class RxMode : std::uint8_t {
    copy,  // a grant per posted buffer, ended after the response (Linux netfront)
    reuse, // buffers from pages registered in the I/O translation table
};
const char* to_string(RxMode m) noexcept;

// dpnetback's extension for sub-page RX buffers (docs/netfront.md, netif::key::
// kFeatureRxBufferOffset): the backend offers it; the frontend then writes the same key and
// "rx-buffer-size", and each RX request carries its buffer's offset within the granted page
// in the `pad` field. Without the backend's offer the netfront uses full pages.

// Receive-side hashing asked of the backend over the netif control ring when it offers
// feature-ctrl-ring, as Windows PV drivers ask it (Linux netfront asks none): the Toeplitz
// algorithm, then the frames' hash types, the key and the queue mapping (empty: hash modulo
// the queues). Frames then carry a hash extra-info slot.
struct HashRequest {
    std::uint32_t flags = 0;            // XEN_NETIF_CTRL_HASH_TYPE_* bits (netif::hash_flag)
    std::vector<std::uint8_t> key;      // at most 40 octets
    std::vector<std::uint32_t> mapping; // queue per entry, at most 128 entries
};

struct NetfrontOptions {
    std::uint32_t handle = 0;         // the vif's devid (frontend folder device/vif/<handle>)
    unsigned max_queues = 1;          // asked for; capped by multi-queue-max-queues
    bool split_event_channels = true; // used when the backend offers them (Linux does)
    // reuse: pages are registered through the I/O translation table (simulated hypervisor),
    // or, when the backend offers feature-static-grants, through the netif control ring
    // (stock Xen, docs/protocol.md).
    RxMode rx_mode = RxMode::copy;
    bool half_page_buffers = false;      // 2048-byte RX buffers (needs the backend's offer)
    std::uint32_t hold_depth = 0;        // received frames the simulated stack keeps
    std::uint32_t pool_target_pages = 0; // 0: enough for every queue's ring plus the hold
    // Features offered to the backend, as Linux writes them (all "1" by default).
    bool rx_sg = true;
    bool rx_gso_tcpv4 = true;
    bool rx_gso_tcpv6 = true;
    bool ipv6_csum_offload = true;
    std::optional<HashRequest> hash{};
    // Come back after the backend closed (daemon restart): write Initialising again when the
    // backend is online and Closed or InitWait. Gives up after this many connections in a
    // row that failed before reaching Connected.
    bool auto_reconnect = true;
    unsigned max_failed_connects = 3;
};

// What the backend offered (its folder), read at each connection.
struct BackendFeatures {
    bool rx_copy = false;
    bool sg = false;
    bool gso_tcpv4 = false;
    bool gso_tcpv6 = false;
    bool ipv6_csum_offload = false;
    bool split_event_channels = false;
    std::optional<unsigned> max_queues; // multi-queue-max-queues, when present
    bool xdp_headroom = false;
    bool rx_buffer_offset = false;
    bool ctrl_ring = false;     // feature-ctrl-ring
    bool static_grants = false; // feature-static-grants (docs/protocol.md)
};

// A frame to transmit. `data` is copied into granted pages before send() returns.
struct TxFrame {
    std::span<const std::byte> data;
    bool csum_partial = false;      // NETTXF_csum_blank | NETTXF_data_validated (CHECKSUM_PARTIAL)
    bool data_validated = false;    // NETTXF_data_validated (CHECKSUM_UNNECESSARY)
    std::uint8_t gso_type = 0;      // netif::gso::kTcpV4 / kTcpV6: a GSO extra follows
    std::uint16_t gso_size = 0;     // MSS
    std::uint16_t first_offset = 0; // where the frame starts in its first page
    std::uint64_t cookie = 0;       // echoed in the completion
};

enum class TxStatus : std::uint8_t {
    okay,       // NETIF_RSP_OKAY on every slot
    error,      // NETIF_RSP_ERROR
    dropped,    // NETIF_RSP_DROPPED
    bad_status, // a status netif.h does not define
    aborted,    // the connection went down before the backend answered
};
const char* to_string(TxStatus s) noexcept;

struct TxCompletion {
    unsigned queue = 0;
    std::uint64_t cookie = 0;
    std::uint32_t len = 0;
    TxStatus status = TxStatus::okay;
};

struct RxSegment {
    const std::byte* data = nullptr;
    std::uint16_t len = 0;
};

// A received frame, valid while the handler runs (its buffers are then held by the
// simulated stack, or given back).
struct RxFrameView {
    unsigned queue = 0;
    std::uint32_t len = 0;
    std::span<const RxSegment> segments;
    bool csum_blank = false;     // NETRXF_csum_blank: checksum to be filled in
    bool data_validated = false; // NETRXF_data_validated
    std::uint8_t gso_type = 0;   // from a GSO extra, else 0
    std::uint16_t gso_size = 0;
    bool hash = false;            // a hash extra came with the frame (control ring hashing)
    std::uint8_t hash_type = 0;   // its XEN_NETIF_CTRL_HASH_TYPE_* number
    std::uint32_t hash_value = 0; // its value (little-endian on the ring)

    // Copies the frame into `out` (at least `len` bytes); returns the bytes copied.
    std::size_t copy_to(std::span<std::byte> out) const;
};

struct Handlers {
    std::function<void(const RxFrameView&)> on_rx;
    std::function<void(const TxCompletion&)> on_tx;
};

// Where this frontend is in its xenbus life.
enum class LinkState : std::uint8_t {
    initialising, // Initialising written, waiting for the backend's InitWait
    connecting,   // our Connected written, waiting for the backend's Connected
    connected,    // both Connected
    failing,      // a connect failed: Closing written, waiting for the backend to close
    closing,      // close() asked: Closing written, waiting for the backend
    closed,       // Closed written; may come back (auto_reconnect)
    gone,         // the vif was removed, or close() finished: nothing more happens
};
const char* to_string(LinkState s) noexcept;

class Queue;
class CtrlRing;

class Netfront {
public:
    // Reads the frontend folder (backend, backend-id), writes Initialising and starts
    // watching the backend. The hypervisor object must outlive the Netfront.
    static Result<std::unique_ptr<Netfront>> create(hv::GuestHypervisor& hv,
                                                    const NetfrontOptions& options);
    // Disconnects without the xenbus walk (a guest crash looks the same to the backend);
    // use close() for an orderly shutdown.
    ~Netfront();
    Netfront(const Netfront&) = delete;
    Netfront& operator=(const Netfront&) = delete;

    // Readable when poll() has work (event channels, xenstore watches).
    int fd() const noexcept;

    // Waits up to `timeout` for events, then follows xenstore, collects TX responses,
    // receives frames and refills the RX rings. Returns an error only when xenstore or the
    // event channels failed (the connection to the hypervisor is gone).
    Status poll(std::chrono::milliseconds timeout, const Handlers& handlers = {});

    // Runs poll() until the state is `connected` (or gone: Errc::closed), at most `timeout`
    // (Errc::again).
    Status wait_connected(std::chrono::milliseconds timeout, const Handlers& handlers = {});

    // Queues a frame on TX queue `queue`. Errors: Errc::busy when the ring has no room
    // (poll, then retry); Errc::closed when not connected or disabled; Errc::invalid_argument
    // for a frame of a size the protocol cannot carry; Errc::unsupported for GSO or a
    // multi-slot frame the backend did not offer.
    Status send(unsigned queue, const TxFrame& frame);

    // Orderly shutdown: Closing, wait (at most `timeout`) for the backend to close, release
    // everything, Closed. The vif then stays closed.
    Status close(std::chrono::milliseconds timeout);

    LinkState state() const noexcept { return state_; }
    bool broken() const noexcept { return broken_; }
    unsigned num_queues() const noexcept;
    const Counters& counters() const noexcept { return counters_; }
    PoolStats pool_stats() const;
    // Reuse hits / posts over the life of the vif (0 before any post).
    double reuse_rate() const noexcept;
    void set_pool_target_pages(std::uint32_t pages);
    // Frames sent and not answered yet, over all queues.
    std::uint32_t tx_in_flight() const noexcept;
    // Grants the backend still held when they were released; retried on every poll.
    std::size_t grants_pending_release() const noexcept { return deferred_.size(); }

    const netif::MacAddress& mac() const noexcept { return mac_; }
    const BackendFeatures& backend_features() const noexcept { return features_; }
    const std::string& frontend_path() const noexcept { return fe_path_; }
    const std::string& backend_path() const noexcept { return be_path_; }
    hv::DomId backend_id() const noexcept { return backend_; }
    // Reuse mode: whether this connection registers pages through the control ring.
    bool using_static_grants() const noexcept;
    // Whether the backend accepted every message of NetfrontOptions::hash (false until then).
    bool hash_accepted() const noexcept;
    std::uint16_t rx_buffer_size() const noexcept;
    // Why the last connect failed, or why the vif was disabled.
    const std::string& last_error() const noexcept { return last_error_; }

private:
    Netfront(hv::GuestHypervisor& hv, const NetfrontOptions& options);

    Status init();
    Status handle_xenstore();
    Status evaluate();
    Status connect();
    Result<BackendFeatures> read_backend_features();
    Status write_keys();
    void disconnect();
    Status switch_state(netif::XenbusState s);
    void report_error(const Error& e);
    Result<std::optional<netif::XenbusState>> read_backend_state();
    bool backend_online();
    void run_queues(const Handlers& handlers);
    void mark_broken(const std::string& why);
    void retry_deferred();

    hv::GuestHypervisor& hv_;
    NetfrontOptions options_;
    std::unique_ptr<hv::Xenstore> xs_;
    std::unique_ptr<hv::EventChannels> evtchn_;
    int epoll_fd_ = -1;
    std::string fe_path_, be_path_, error_path_;
    hv::DomId backend_ = hv::kDomIdInvalid;
    LinkState state_ = LinkState::initialising;
    bool broken_ = false;
    bool xs_pending_ = true;
    unsigned failed_connects_ = 0;
    bool reached_connected_ = false;
    netif::MacAddress mac_;
    bool trusted_ = true;
    BackendFeatures features_;
    bool use_buffer_offset_ = false;
    Counters counters_;
    std::unique_ptr<RxBufferPool> pool_;
    std::unique_ptr<IottRegistrar> iott_;
    std::unique_ptr<CtrlRing> ctrl_; // this connection's control ring (static grants)
    std::vector<std::unique_ptr<Queue>> queues_;
    std::vector<hv::EvtchnPort> fired_;
    // Grants the backend still used when we released them; retried on every poll.
    struct Deferred {
        hv::GrantRef ref;
        std::byte* page; // freed once access is ended (nullptr: not a page of its own)
        BufferId buffer; // given back to the pool once access is ended
    };
    std::vector<Deferred> deferred_;
    // Completions of frames aborted by a disconnect, delivered by the next poll().
    std::vector<TxCompletion> aborted_;
    std::string last_error_;

    friend class Queue;
    friend class CtrlRing;
};

} // namespace dpnb::netfront
