// The netfront's control ring (ctrl_ring.hpp): static-grant messages to the backend, one in
// flight at a time, answers checked and turned into PageRegistrar completions.
#include "ctrl_ring.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "dpnb/netif/flow_hash.hpp"

namespace dpnb::netfront {

using Outcome = PageRegistrar::Outcome;

CtrlRing::~CtrlRing() {
    teardown();
}

Status CtrlRing::setup(bool static_grants) {
    static_grants_ = static_grants;
    hv::GuestHypervisor& hv = nf_.hv_;
    for (std::byte** page : {&ring_page_, &list_page_}) {
        auto p = hv.alloc_pages(1);
        if (!p) return std::move(p).error();
        *page = p->base;
        std::memset(*page, 0, hv::kPageSize);
    }
    auto ring = ctrl::FrontRing::init(ring_page_);
    if (!ring) return std::move(ring).error();
    ring_ = *ring;
    auto ring_ref = hv.grant_access(nf_.backend_, ring_page_, false);
    if (!ring_ref) return std::move(ring_ref).error();
    ring_ref_ = *ring_ref;
    // Writable: DEL_GREF_MAPPING writes each entry's status back into the list.
    auto list_ref = hv.grant_access(nf_.backend_, list_page_, false);
    if (!list_ref) return std::move(list_ref).error();
    list_ref_ = *list_ref;
    auto port = nf_.evtchn_->bind_unbound(nf_.backend_);
    if (!port) return std::move(port).error();
    port_ = *port;
    if (static_grants_) {
        queue_.push_back(Op{ctrl::kTypeGetGrefMappingSize, hv::kGrantRefInvalid});
        send_next();
    }
    return ok();
}

void CtrlRing::request_hash(const HashRequest& h) {
    if (dead_) return;
    auto push = [&](std::uint16_t type, std::array<std::uint32_t, 3> data,
                    std::vector<std::uint8_t> bytes = {}) {
        queue_.push_back(Op{type, hv::kGrantRefInvalid, data, std::move(bytes)});
        ++hash_sent_;
    };
    // The algorithm first: the backend takes flags, key and mapping only for one.
    push(ctrl::kTypeSetHashAlgorithm, {netif::hash_alg::kToeplitz, 0, 0});
    push(ctrl::kTypeSetHashFlags, {h.flags, 0, 0});
    push(ctrl::kTypeSetHashKey, {0, static_cast<std::uint32_t>(h.key.size()), 0}, h.key);
    if (!h.mapping.empty()) {
        const auto n = static_cast<std::uint32_t>(h.mapping.size());
        std::vector<std::uint8_t> table(n * sizeof(std::uint32_t));
        std::memcpy(table.data(), h.mapping.data(), table.size());
        push(ctrl::kTypeSetHashMappingSize, {n, 0, 0});
        push(ctrl::kTypeSetHashMapping, {0, n, 0}, std::move(table)); // offset 0
    }
    send_next();
}

void CtrlRing::teardown() {
    hv::GuestHypervisor& hv = nf_.hv_;
    if (port_ != 0 && nf_.evtchn_) (void)nf_.evtchn_->unbind(port_);
    port_ = 0;
    for (auto [ref, page] :
         {std::pair{&ring_ref_, &ring_page_}, std::pair{&list_ref_, &list_page_}}) {
        if (*page == nullptr) continue;
        if (*ref != hv::kGrantRefInvalid && !hv.end_access(*ref)) {
            nf_.deferred_.push_back({*ref, *page, kNoBuffer}); // freed once the backend lets go
            nf_.counters_.add(Counter::grants_deferred);
        } else {
            (void)hv.free_pages({*page, 1});
        }
        *ref = hv::kGrantRefInvalid;
        *page = nullptr;
    }
    ring_ = {};
    dead_ = true;
    queue_.clear();
    busy_ = false;
}

Outcome CtrlRing::add(hv::GrantRef ref) {
    if (dead_) return Outcome::failed;
    // GET_GREF_MAPPING_SIZE: do not ask for more than the backend holds.
    if (size_known_ && registered_ + adds_pending_ >= max_entries_) return Outcome::failed;
    queue_.push_back(Op{ctrl::kTypeAddGrefMapping, ref});
    ++adds_pending_;
    send_next();
    return Outcome::pending;
}

Outcome CtrlRing::remove(hv::GrantRef ref) {
    if (dead_) return Outcome::failed; // the backend drops everything at disconnect
    queue_.push_back(Op{ctrl::kTypeDelGrefMapping, ref});
    send_next();
    return Outcome::pending;
}

void CtrlRing::collect(std::vector<Completion>& out) {
    out.insert(out.end(), completions_.begin(), completions_.end());
    completions_.clear();
}

void CtrlRing::send_next() {
    if (dead_ || busy_ || queue_.empty() || !ring_.attached()) return;
    const std::uint16_t type = queue_.front().type;
    ctrl::Request req{};
    req.id = next_id_++;
    req.type = type;
    in_flight_refs_.clear();
    if (type < ctrl::kTypeGetGrefMappingSize) { // a hash message
        const Op& op = queue_.front();
        for (unsigned k = 0; k < 3; ++k)
            req.data[k] = op.data[k];
        if (!op.bytes.empty()) {
            std::memcpy(list_page_, op.bytes.data(),
                        std::min<std::size_t>(op.bytes.size(), hv::kPageSize));
            req.data[0] = list_ref_;
        }
        queue_.pop_front();
    } else if (type != ctrl::kTypeGetGrefMappingSize) {
        // A batch of consecutive operations of the same kind, through the list page.
        while (!queue_.empty() && queue_.front().type == type &&
               in_flight_refs_.size() < ctrl::kMaxGrefsPerMessage) {
            const ctrl::Gref g{queue_.front().ref, 0, 0};
            std::memcpy(list_page_ + in_flight_refs_.size() * sizeof(ctrl::Gref), &g, sizeof(g));
            in_flight_refs_.push_back(queue_.front().ref);
            queue_.pop_front();
        }
        req.data[0] = 0; // queue index: one table per vif
        req.data[1] = list_ref_;
        req.data[2] = static_cast<std::uint32_t>(in_flight_refs_.size());
    } else {
        queue_.pop_front();
    }
    // The list is in place before the request becomes visible (push_requests releases).
    const bool put = ring_.put_request(req);
    if (!put) return; // cannot happen: one request at a time on a 128-slot ring
    busy_ = true;
    in_flight_id_ = req.id;
    in_flight_type_ = type;
    nf_.counters_.add(Counter::ctrl_messages);
    if (ring_.push_requests() && port_ != 0) (void)nf_.evtchn_->notify(port_);
}

void CtrlRing::die(const std::string& why) {
    if (dead_) return;
    dead_ = true;
    spdlog::warn("netfront {}: control ring: {}; static grants disabled", nf_.fe_path_, why);
    nf_.counters_.add(Counter::ctrl_errors);
    // Whatever was asked gets an answer: adds failed (pages served by grant copy), removes
    // treated as done (the backend drops every entry when the connection ends).
    auto fail = [&](std::uint16_t type, hv::GrantRef ref) {
        if (type == ctrl::kTypeAddGrefMapping)
            completions_.push_back({ref, true, Outcome::failed});
        else if (type == ctrl::kTypeDelGrefMapping)
            completions_.push_back({ref, false, Outcome::failed});
    };
    if (busy_)
        for (hv::GrantRef r : in_flight_refs_)
            fail(in_flight_type_, r);
    for (const Op& op : queue_)
        fail(op.type, op.ref);
    queue_.clear();
    in_flight_refs_.clear();
    busy_ = false;
}

void CtrlRing::process() {
    if (dead_ || !ring_.attached()) return;
    for (;;) {
        const netif::ResponseWindow w = ring_.poll_responses();
        if (w.overflow) return die("illegal number of responses");
        for (netif::RingIdx i = w.cons; i != w.prod; ++i) {
            const ctrl::Response r = ring_.copy_response(i);
            ring_.consume_responses(1);
            if (!busy_ || r.id != in_flight_id_ || r.type != in_flight_type_)
                return die("response " + std::to_string(r.id) + " of type " +
                           std::to_string(r.type) + " answers nothing asked");
            busy_ = false;
            switch (r.type) {
            case ctrl::kTypeSetHashFlags:
            case ctrl::kTypeSetHashKey:
            case ctrl::kTypeSetHashMappingSize:
            case ctrl::kTypeSetHashMapping:
            case ctrl::kTypeSetHashAlgorithm:
                if (r.status == ctrl::kStatusSuccess) {
                    ++hash_ok_;
                } else {
                    nf_.counters_.add(Counter::ctrl_hash_refused);
                    spdlog::warn("netfront {}: control ring: hash message {} answered {}",
                                 nf_.fe_path_, r.type, r.status);
                }
                break;
            case ctrl::kTypeGetGrefMappingSize:
                size_known_ = true;
                max_entries_ = r.status == ctrl::kStatusSuccess ? r.data : 0;
                if (r.status != ctrl::kStatusSuccess)
                    return die("GET_GREF_MAPPING_SIZE answered " + std::to_string(r.status));
                break;
            case ctrl::kTypeAddGrefMapping: {
                // All or nothing (netif.h).
                const bool okay = r.status == ctrl::kStatusSuccess;
                for (hv::GrantRef ref : in_flight_refs_)
                    completions_.push_back({ref, true, okay ? Outcome::done : Outcome::failed});
                adds_pending_ -= static_cast<std::uint32_t>(in_flight_refs_.size());
                if (okay) registered_ += static_cast<std::uint32_t>(in_flight_refs_.size());
                break;
            }
            case ctrl::kTypeDelGrefMapping:
                // Each entry says whether it went: SUCCESS, or (in flight, or unknown) not.
                for (std::size_t k = 0; k < in_flight_refs_.size(); ++k) {
                    std::uint16_t status;
                    std::memcpy(&status,
                                list_page_ + k * sizeof(ctrl::Gref) + offsetof(ctrl::Gref, status),
                                sizeof(status));
                    const bool removed = status == ctrl::kStatusSuccess;
                    completions_.push_back(
                        {in_flight_refs_[k], false, removed ? Outcome::done : Outcome::busy});
                    if (removed && registered_ > 0) --registered_;
                }
                break;
            default:
                return die("unknown response type");
            }
            in_flight_refs_.clear();
            send_next();
        }
        if (!ring_.final_check_for_responses()) break;
    }
}

} // namespace dpnb::netfront
