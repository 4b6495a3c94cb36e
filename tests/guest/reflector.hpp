// TEST-ONLY: a small netback built from netback-core over the simulated BackendHypervisor,
// for the netfront's tests (there is no daemon yet). It serves every vif under its backend
// folder the way dpnetback's control plane will: the toolstack's keys parsed, features
// published, the xenbus state machine of netback-core walked (it plays the hotplug script
// too), the frontend's keys parsed, rings mapped, event channels bound. Its data path
// reflects every TX frame back to the same vif's RX ring:
//   TX: parse_tx_packet, one batched grant copy out of the slots, put_tx_responses;
//   RX: requests consumed as they are posted (in reuse mode each registered buffer is
//       acquired in the translation table then, as a NIC queue would hold it), the frame
//       written with a plain memcpy into acquired buffers or a batched grant copy into the
//       others, responses from build_rx_responses in Linux's layout.
// It honours dpnetback's sub-page buffer extension (feature-rx-buffer-offset) and can be
// told to misbehave once (Mischief) to test the netfront against a hostile backend.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/netif/features.hpp"

namespace dpnb::netfront::test {

enum class Mischief : std::uint8_t {
    none,
    rx_offset_overflow, // an RX response whose offset + length leaves the buffer
    rx_bad_id,          // an RX response with another slot's id
    rx_error_status,    // an RX frame answered NETIF_RSP_ERROR
    rx_bad_extra,       // an RX extra-info slot of an unknown type
    rx_incomplete,      // more_data on the last published RX response
    rx_prod_overflow,   // rsp_prod far beyond the posted requests
    tx_bad_id,          // a TX response with an impossible id
    tx_bad_status,      // a TX response with an undefined status
    rx_keep_mapping,    // keep an RX buffer mapped after answering it (copy mode)
    ctrl_bad_id,        // answer a control-ring message with an id nobody asked
};

struct ReflectorOptions {
    hv::DomId self = hv::kDom0;
    // caps.rx_buffer_offset: dpnetback's sub-page buffer extension (on by default).
    netif::BackendCapabilities caps = [] {
        netif::BackendCapabilities c;
        c.max_queues = 4;
        return c;
    }();
    // Offer a control ring and static grants (docs/protocol.md) and keep a persistent-grant
    // table filled from them, as dpnetback does on stock Xen, instead of reading the
    // hypervisor's translation table.
    bool static_grants = false;
    bool use_translation_table = true; // reuse path for registered buffers
    Mischief mischief = Mischief::none;
    std::uint64_t mischief_at = 0; // the frame (0-based, over all vifs) that gets it
};

struct ReflectorStats {
    std::uint64_t frames = 0;       // reflected
    std::uint64_t zero_copy = 0;    // RX buffers filled through the translation table
    std::uint64_t grant_copied = 0; // RX buffers filled with a grant copy
    std::uint64_t dropped = 0;      // TX frames not reflected (drop verdict, no room, GSO)
    std::uint32_t connected_vifs = 0;
    std::uint32_t vifs = 0;
    std::uint64_t in_flight = 0;      // RX buffers acquired and not filled yet
    std::uint64_t static_entries = 0; // entries of the persistent-grant tables
};

class Reflector {
public:
    static Result<std::unique_ptr<Reflector>> start(const std::string& sim_dir,
                                                    const ReflectorOptions& options);
    ~Reflector(); // the daemon's shutdown: xenstore is left as it is
    Reflector(const Reflector&) = delete;
    Reflector& operator=(const Reflector&) = delete;

    int fd() const noexcept;
    // One round: xenstore, event channels, every connected queue.
    Status poll(std::chrono::milliseconds timeout);
    // The operator detaches every vif (Closing; forgotten once the frontend closed).
    void detach_all();
    // Drops the mappings kept by Mischief::rx_keep_mapping.
    void release_kept_mappings();
    ReflectorStats stats() const;

    struct Vif;
    struct Queue;

private:
    explicit Reflector(const ReflectorOptions& options);
    Status init(const std::string& sim_dir);
    Status scan();
    void handle_vif_event(Vif& vif);
    void apply(Vif& vif, const netif::Step& step);
    Status connect(Vif& vif);
    void disconnect(Vif& vif);
    void run_queue(Vif& vif, Queue& q);
    bool deliver(Vif& vif, Queue& q);
    void serve_ctrl(Vif& vif);

    ReflectorOptions options_;
    std::unique_ptr<hv::BackendHypervisor> hv_;
    std::unique_ptr<hv::Xenstore> xs_;
    std::unique_ptr<hv::GrantTable> gt_;
    std::unique_ptr<hv::EventChannels> ev_;
    int epoll_fd_ = -1;
    std::string vif_root_;                             // /local/domain/<self>/backend/vif
    std::map<std::string, std::unique_ptr<Vif>> vifs_; // by backend path
    std::uint64_t frames_ = 0, zero_copy_ = 0, grant_copied_ = 0, dropped_ = 0;
    bool mischief_done_ = false;
    std::vector<hv::GrantMapping> kept_;
};

} // namespace dpnb::netfront::test
