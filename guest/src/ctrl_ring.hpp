// The netfront's control ring: the frontend side of dpnetback's static grants
// (docs/protocol.md), as a PageRegistrar for the RX pool, and of receive-side hashing
// (NetfrontOptions::hash: flags, key, mapping, algorithm). Pages are registered with
// XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING and removed with DEL_GREF_MAPPING, in batches of up
// to 512 through one list page, one message in flight at a time; the first message asks
// GET_GREF_MAPPING_SIZE. Answers come back asynchronously (PageRegistrar::collect).
// Everything the backend writes (responses, per-entry statuses) is checked; a backend that
// breaks the protocol ends the use of static grants for this connection (pages are then
// served by grant copy). Private to the netfront library.
#pragma once

#include <array>
#include <deque>
#include <vector>

#include "dpnb/netfront/ctrl_ring.hpp"
#include "dpnb/netfront/netfront.hpp"

namespace dpnb::netfront {

class CtrlRing final : public PageRegistrar {
public:
    explicit CtrlRing(Netfront& nf) : nf_(nf) {}
    ~CtrlRing() override;
    CtrlRing(const CtrlRing&) = delete;
    CtrlRing& operator=(const CtrlRing&) = delete;

    // A ring page and a list page granted to the backend, an unbound event channel; with
    // static grants, queues GET_GREF_MAPPING_SIZE.
    Status setup(bool static_grants);
    // Queues the hash messages: SET_HASH_ALGORITHM (Toeplitz), SET_HASH_FLAGS, SET_HASH_KEY,
    // then SET_HASH_MAPPING_SIZE and SET_HASH_MAPPING with a mapping.
    void request_hash(const HashRequest& h);
    bool static_grants() const noexcept { return static_grants_; }
    // Every hash message was answered with success.
    bool hash_accepted() const noexcept { return hash_sent_ != 0 && hash_ok_ == hash_sent_; }
    // Unbinds and ends the grants (deferred while the backend still maps them).
    void teardown();

    hv::GrantRef ring_ref() const noexcept { return ring_ref_; }
    hv::EvtchnPort port() const noexcept { return port_; }
    bool usable() const noexcept { return !dead_; }

    Outcome add(hv::GrantRef ref) override;
    Outcome remove(hv::GrantRef ref) override;
    void collect(std::vector<Completion>& out) override;

    // Reads the backend's answers and sends the next message. Call on every poll.
    void process();

private:
    struct Op {
        std::uint16_t type;
        hv::GrantRef ref;
        // A hash message: its data words; `bytes` (key or mapping) go in the list page,
        // whose grant replaces data[0].
        std::array<std::uint32_t, 3> data{};
        std::vector<std::uint8_t> bytes{};
    };
    void send_next();
    void die(const std::string& why);

    Netfront& nf_;
    std::byte* ring_page_ = nullptr;
    std::byte* list_page_ = nullptr;
    hv::GrantRef ring_ref_ = hv::kGrantRefInvalid;
    hv::GrantRef list_ref_ = hv::kGrantRefInvalid;
    hv::EvtchnPort port_ = 0;
    ctrl::FrontRing ring_;
    std::deque<Op> queue_;
    bool busy_ = false; // a message is in flight
    std::uint16_t in_flight_id_ = 0;
    std::uint16_t in_flight_type_ = 0;
    std::vector<hv::GrantRef> in_flight_refs_;
    std::uint16_t next_id_ = 0;
    bool dead_ = false;
    bool static_grants_ = false;
    std::uint32_t hash_sent_ = 0; // hash messages queued
    std::uint32_t hash_ok_ = 0;   // and answered with success
    bool size_known_ = false;
    std::uint32_t max_entries_ = 0;
    std::uint32_t registered_ = 0;   // entries the backend holds for us
    std::uint32_t adds_pending_ = 0; // queued or in flight
    std::vector<Completion> completions_;
};

} // namespace dpnb::netfront
