// Traffic for the netfront tests, run inside a guest process: send verifiable frames, poll
// until they come back from the reflector, and check every byte against what was sent.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

#include "dpnb/netfront/netfront.hpp"
#include "dpnb/netfront/payload.hpp"
#include "harness.hpp"

namespace dpnb::netfront::test {

struct Received {
    std::vector<std::byte> data;
    RxFrameView meta; // segments not valid after the handler
    std::size_t segments = 0;
};

class Traffic {
public:
    explicit Traffic(Netfront& nf) : nf_(nf) {
        handlers_.on_rx = [this](const RxFrameView& f) {
            std::vector<std::byte> data(f.len);
            EXPECT_EQ(f.copy_to(data), f.len);
            const PayloadInfo info = check_payload_frame(data);
            ++rx_;
            if (info.result != PayloadCheck::ok) {
                ++bad_;
                return;
            }
            auto it = sent_.find(info.header.seq);
            if (it == sent_.end()) {
                ++unknown_;
                return;
            }
            if (it->second != data) ++mismatch_;
            Received r{std::move(data), f, f.segments.size()};
            r.meta.segments = {};
            if (!received_.emplace(info.header.seq, std::move(r)).second) ++duplicates_;
        };
        handlers_.on_tx = [this](const TxCompletion& c) {
            ++tx_done_;
            if (c.status != TxStatus::okay) ++tx_failed_;
            statuses_[c.cookie] = c.status;
        };
    }

    Handlers& handlers() { return handlers_; }

    // Queues a frame of `size` bytes on queue `queue`, polling while the ring is full.
    Status send(std::size_t size, unsigned queue, TxFrame extra = {}) {
        std::vector<std::byte> frame(size);
        PayloadHeader h;
        h.dst = nf_.mac();
        h.src = nf_.mac();
        h.seq = next_seq_;
        h.stream = 7;
        build_payload_frame(frame, h);
        extra.data = frame;
        extra.cookie = next_seq_;
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
        for (;;) {
            Status st = nf_.send(queue, extra);
            if (st) break;
            if (st.error().code != Errc::busy || std::chrono::steady_clock::now() > deadline)
                return st;
            if (Status p = nf_.poll(std::chrono::milliseconds(10), handlers_); !p) return p;
        }
        sent_.emplace(next_seq_, std::move(frame));
        ++next_seq_;
        return ok();
    }

    // Polls until every frame sent so far came back and was answered, or `timeout_ms`.
    bool wait_all(int timeout_ms = kTimeoutMs) {
        return wait_for(
            [&] { return received_.size() >= sent_.size() && tx_done_ >= sent_.size(); },
            timeout_ms);
    }

    template <class Pred>
    bool wait_for(Pred done, int timeout_ms = kTimeoutMs) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            if (Status st = nf_.poll(std::chrono::milliseconds(20), handlers_); !st) {
                ADD_FAILURE() << st.error().describe();
                return false;
            }
        }
        return true;
    }

    std::uint64_t next_seq() const { return next_seq_; }
    std::size_t sent() const { return sent_.size(); }
    const std::map<std::uint64_t, Received>& received() const { return received_; }
    std::uint64_t rx() const { return rx_; }
    std::uint64_t bad() const { return bad_; }
    std::uint64_t mismatch() const { return mismatch_; }
    std::uint64_t duplicates() const { return duplicates_; }
    std::uint64_t unknown() const { return unknown_; }
    std::uint64_t tx_done() const { return tx_done_; }
    std::uint64_t tx_failed() const { return tx_failed_; }
    const std::map<std::uint64_t, TxStatus>& statuses() const { return statuses_; }

private:
    Netfront& nf_;
    Handlers handlers_;
    std::map<std::uint64_t, std::vector<std::byte>> sent_;
    std::map<std::uint64_t, Received> received_;
    std::map<std::uint64_t, TxStatus> statuses_;
    std::uint64_t next_seq_ = 0, rx_ = 0, bad_ = 0, mismatch_ = 0, duplicates_ = 0, unknown_ = 0,
                  tx_done_ = 0, tx_failed_ = 0;
};

// Runs `body` in a guest process that claims `dom` and starts a Netfront with `options`,
// connected within the timeout.
inline Child run_guest(const std::string& dir, hv::DomId dom, const NetfrontOptions& options,
                       std::function<void(Netfront&, hv::GuestHypervisor&)> body) {
    return Child([dir, dom, options, body] {
        auto guest = hv::sim::connect_guest(dir, dom);
        NF_ASSERT_OK(guest);
        auto nf = Netfront::create(**guest, options);
        NF_ASSERT_OK(nf);
        NF_ASSERT_OK((*nf)->wait_connected(std::chrono::milliseconds(kTimeoutMs)));
        body(**nf, **guest);
    });
}

} // namespace dpnb::netfront::test
