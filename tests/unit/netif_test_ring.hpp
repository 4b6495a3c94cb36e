// Test helpers for the netif ring, TX parser and RX builder tests: a page-aligned ring page,
// request/extra constructors, and raw access to the shared header so that tests can play a
// hostile frontend (impossible indices, slots rewritten after they were read).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include <gtest/gtest.h>

#include "dpnb/netif/ring.hpp"
#include "dpnb/netif/wire.hpp"

namespace dpnb::netif::test {

struct alignas(kPageSize) RingPage {
    std::array<std::byte, kPageSize> bytes{};

    void* data() { return bytes.data(); }
    SharedRingHeader& header() { return *reinterpret_cast<SharedRingHeader*>(bytes.data()); }
    std::byte* slot(RingIdx idx, std::size_t entry_size) {
        const std::uint32_t size = ring_size(entry_size);
        return bytes.data() + sizeof(SharedRingHeader) + (idx & (size - 1)) * entry_size;
    }
    // Raw writes into a TX slot, as a frontend (or an attacker) would do them.
    void write_tx_request(RingIdx idx, const TxRequest& req) {
        std::memcpy(slot(idx, kTxEntrySize), &req, sizeof(req));
    }
    void write_tx_extra(RingIdx idx, const ExtraInfo& extra) {
        std::memcpy(slot(idx, kTxEntrySize), &extra, sizeof(extra));
    }
    TxResponse read_tx_response(RingIdx idx) {
        TxResponse rsp;
        std::memcpy(&rsp, slot(idx, kTxEntrySize), sizeof(rsp));
        return rsp;
    }
};

inline std::unique_ptr<RingPage> make_page() {
    return std::make_unique<RingPage>();
}

// A fresh shared ring with both ends attached; `start` moves every index (wrap-around tests).
template <class Proto>
struct RingPair {
    std::unique_ptr<RingPage> page = make_page();
    FrontRing<Proto> front;
    BackRing<Proto> back;

    explicit RingPair(RingIdx start = 0) {
        auto f = FrontRing<Proto>::init(page->data());
        EXPECT_TRUE(f.has_value());
        SharedRingHeader& h = page->header();
        h.req_prod = h.rsp_prod = start;
        h.req_event = h.rsp_event = start + 1;
        auto fa = FrontRing<Proto>::attach_at(page->data(), start);
        EXPECT_TRUE(fa.has_value());
        front = *fa;
        auto b = BackRing<Proto>::attach(page->data());
        EXPECT_TRUE(b.has_value());
        back = *b;
    }
};

using TxPair = RingPair<TxRingProto>;
using RxPair = RingPair<RxRingProto>;

inline TxRequest txreq(std::uint16_t id, std::uint16_t size, std::uint16_t flags = 0,
                       std::uint16_t offset = 0, GrantRef gref = 0) {
    return TxRequest{gref == 0 ? GrantRef{1000U + id} : gref, offset, flags, id, size};
}

inline ExtraInfo gso_extra(std::uint8_t type, std::uint16_t mss, bool more = false) {
    ExtraInfo e{};
    e.type = extra::kGso;
    e.flags = more ? extra::kFlagMore : 0;
    e.u.gso.size = mss;
    e.u.gso.type = type;
    return e;
}

inline ExtraInfo mcast_extra(bool add, std::array<std::uint8_t, 6> mac, bool more = false) {
    ExtraInfo e{};
    e.type = add ? extra::kMcastAdd : extra::kMcastDel;
    e.flags = more ? extra::kFlagMore : 0;
    for (std::size_t i = 0; i < mac.size(); ++i)
        e.u.mcast.addr[i] = mac[i];
    return e;
}

inline ExtraInfo hash_extra(std::uint8_t type, std::uint32_t value, bool more = false) {
    ExtraInfo e{};
    e.type = extra::kHash;
    e.flags = more ? extra::kFlagMore : 0;
    e.u.hash.type = type;
    e.u.hash.algorithm = 1; // Toeplitz
    for (int i = 0; i < 4; ++i)
        e.u.hash.value[i] = static_cast<std::uint8_t>(value >> (8 * i));
    return e;
}

inline ExtraInfo raw_extra(std::uint8_t type, std::uint8_t flags) {
    ExtraInfo e{};
    e.type = type;
    e.flags = flags;
    return e;
}

} // namespace dpnb::netif::test
