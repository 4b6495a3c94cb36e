// Views over a shared netif ring page (io/ring.h), for both ends: BackRing (dpnetback)
// and FrontRing (the test netfront and the simulated guests).
//
// Why this is not a transcription of io/ring.h's macros:
//  * The peer is hostile. Every request (or response, on the front side) is copied out of the
//    shared page exactly once, with word-sized relaxed atomic loads, into a local struct; all
//    later logic reads the copy, so the peer cannot change a value between check and use.
//  * Shared indices go through std::atomic_ref: acquire when reading the peer's producer
//    index, release when publishing ours, and a seq_cst fence where io/ring.h has xen_mb()
//    (between publishing a producer index and reading the peer's event index, and between
//    writing our event index and re-reading the peer's producer index).
//  * Our own indices (req_cons, rsp_prod_pvt, the last rsp_prod we published) are private
//    copies; nothing the peer writes into the shared page can move them.
//  * A producer index that claims more requests than the ring can hold is reported as a
//    verdict (RequestWindow::overflow), never trusted.
//
// Ring geometry is fixed at compile time: one page, entries of 12 bytes (TX) or 8 bytes (RX),
// 256 entries each. Response slots and extra-info slots overlay request slots as in Xen.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "dpnb/netif/wire.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::netif {

// --- ring protocols ------------------------------------------------------------------------

// Guest transmit ring: the frontend posts TxRequests (and ExtraInfo slots overlaying them),
// the backend answers with TxResponses.
struct TxRingProto {
    using Request = TxRequest;
    using Response = TxResponse;
    static constexpr std::size_t kEntrySize = kTxEntrySize;
    static constexpr bool kExtrasInRequests = true;
};

// Guest receive ring: the frontend posts RxRequests (empty buffers), the backend answers with
// RxResponses (and ExtraInfo slots overlaying them).
struct RxRingProto {
    using Request = RxRequest;
    using Response = RxResponse;
    static constexpr std::size_t kEntrySize = kRxEntrySize;
    static constexpr bool kExtrasInRequests = false;
};

namespace detail {

// The word loads and stores below, one per word: a loop of atomic accesses stays a loop
// (a counter, a compare and a branch per word) where these are a few moves.
template <class T, std::size_t... I>
[[gnu::always_inline]] inline T load_each_word(std::uint32_t* w,
                                               std::index_sequence<I...>) noexcept {
    const std::array<std::uint32_t, sizeof...(I)> words{
        std::atomic_ref<std::uint32_t>(w[I]).load(std::memory_order_relaxed)...};
    return std::bit_cast<T>(words);
}
template <std::size_t N, std::size_t... I>
[[gnu::always_inline]] inline void store_each_word(std::uint32_t* w,
                                                   const std::array<std::uint32_t, N>& words,
                                                   std::index_sequence<I...>) noexcept {
    (std::atomic_ref<std::uint32_t>(w[I]).store(words[I], std::memory_order_relaxed), ...);
}

// Reads a T out of shared memory as consecutive 32-bit words, each with one relaxed atomic
// load: the value is read once, and the compiler may not re-read the shared page later.
// Always inlined: a few loads, called per ring slot (GCC kept it out of line).
template <class T>
[[gnu::always_inline]] inline T load_words(std::byte* src) noexcept {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % 4 == 0);
    return load_each_word<T>(reinterpret_cast<std::uint32_t*>(src),
                             std::make_index_sequence<sizeof(T) / 4>{});
}

// Writes a T into shared memory as consecutive 32-bit words with relaxed atomic stores; the
// release store of the producer index that follows makes them visible.
template <class T>
[[gnu::always_inline]] inline void store_words(std::byte* dst, const T& value) noexcept {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) % 4 == 0);
    const auto words = std::bit_cast<std::array<std::uint32_t, sizeof(T) / 4>>(value);
    store_each_word(reinterpret_cast<std::uint32_t*>(dst), words,
                    std::make_index_sequence<sizeof(T) / 4>{});
}

// The ring header fields are plain RING_IDX words in the shared page.
inline std::atomic_ref<RingIdx> shared_index(std::byte* page, std::size_t offset) noexcept {
    return std::atomic_ref<RingIdx>(*reinterpret_cast<RingIdx*>(page + offset));
}

inline constexpr std::size_t kReqProdOff = offsetof(SharedRingHeader, req_prod);
inline constexpr std::size_t kReqEventOff = offsetof(SharedRingHeader, req_event);
inline constexpr std::size_t kRspProdOff = offsetof(SharedRingHeader, rsp_prod);
inline constexpr std::size_t kRspEventOff = offsetof(SharedRingHeader, rsp_event);

// io/ring.h's notification test: notify if the peer's event index lies in (old, new].
constexpr bool event_in_range(RingIdx new_idx, RingIdx event, RingIdx old_idx) noexcept {
    return static_cast<RingIdx>(new_idx - event) < static_cast<RingIdx>(new_idx - old_idx);
}

inline Status check_page(const void* page) {
    if (page == nullptr) return make_error(Errc::invalid_argument, "ring page is null");
    if (reinterpret_cast<std::uintptr_t>(page) % kPageSize != 0)
        return make_error(Errc::invalid_argument, "ring page is not page aligned");
    return ok();
}

} // namespace detail

// Requests waiting on a back ring, from one acquire read of req_prod.
struct RequestWindow {
    RingIdx cons = 0;            // first unconsumed request (our req_cons)
    RingIdx prod = 0;            // the frontend's req_prod as read
    std::uint32_t available = 0; // requests in [cons, prod); 0 when overflow
    bool overflow = false;       // impossible producer index: a fatal protocol error
};

// Responses waiting on a front ring, from one acquire read of rsp_prod.
struct ResponseWindow {
    RingIdx cons = 0;
    RingIdx prod = 0;
    std::uint32_t available = 0;
    bool overflow = false; // RING_RESPONSE_PROD_OVERFLOW: the backend is broken
};

// --- backend view ---------------------------------------------------------------------------

template <class Proto>
class BackRing {
public:
    using Request = typename Proto::Request;
    using Response = typename Proto::Response;
    static constexpr std::uint32_t kSize = ring_size(Proto::kEntrySize);
    static_assert(std::has_single_bit(kSize));

    // A detached view; only attach() and attach_at() give a usable one.
    BackRing() = default;

    // Attaches to a page the frontend initialised, at the shared rsp_prod, as Linux netback
    // does (xenvif_map_frontend_data_rings): correct both for a fresh ring and for a frontend
    // reconnecting to a ring that already carried traffic. Refuses a page whose req_prod is
    // further ahead of rsp_prod than the ring can hold.
    static Result<BackRing> attach(void* page) {
        if (auto st = detail::check_page(page); !st) return st.error();
        auto* p = static_cast<std::byte*>(page);
        const RingIdx rsp_prod =
            detail::shared_index(p, detail::kRspProdOff).load(std::memory_order_acquire);
        const RingIdx req_prod =
            detail::shared_index(p, detail::kReqProdOff).load(std::memory_order_acquire);
        if (req_prod - rsp_prod > kSize)
            return make_error(Errc::protocol, "ring req_prod " + std::to_string(req_prod) +
                                                  " is more than a ring ahead of rsp_prod " +
                                                  std::to_string(rsp_prod));
        return BackRing(p, rsp_prod);
    }

    // BACK_RING_ATTACH: req_cons = rsp_prod_pvt = idx, for a backend that knows where it
    // stopped. Nothing in the shared page is read or written.
    static Result<BackRing> attach_at(void* page, RingIdx idx) {
        if (auto st = detail::check_page(page); !st) return st.error();
        return BackRing(static_cast<std::byte*>(page), idx);
    }

    bool attached() const noexcept { return page_ != nullptr; }
    RingIdx req_cons() const noexcept { return req_cons_; }
    RingIdx rsp_prod_pvt() const noexcept { return rsp_prod_pvt_; }
    // Requests consumed but not yet answered.
    std::uint32_t unanswered() const noexcept { return req_cons_ - rsp_prod_pvt_; }

    // One acquire read of req_prod, checked: a producer index more than a ring ahead of our
    // oldest unanswered request (RING_REQUEST_PROD_OVERFLOW), or behind our consumer, cannot
    // come from a correct frontend and is reported as overflow. Otherwise `available` is
    // XEN_RING_NR_UNCONSUMED_REQUESTS, which under these checks equals prod - cons.
    RequestWindow poll_requests() const noexcept {
        RequestWindow w;
        w.cons = req_cons_;
        w.prod = detail::shared_index(page_, detail::kReqProdOff).load(std::memory_order_acquire);
        const RingIdx ahead = w.prod - w.cons;
        if (w.prod - rsp_prod_pvt_ > kSize || ahead > kSize) {
            w.overflow = true;
            return w;
        }
        w.available = ahead;
        return w;
    }

    // RING_HAS_UNCONSUMED_REQUESTS reduced to "is req_prod anywhere but req_cons": one acquire
    // read, for a poll loop to skip a ring with nothing on it. False implies poll_requests()
    // would find nothing and no overflow: at prod == cons the only overflow left is
    // unanswered() > kSize, which consume() after poll_requests() cannot produce. Whatever it
    // sees, poll_requests() checks.
    bool has_unconsumed_requests() const noexcept {
        return detail::shared_index(page_, detail::kReqProdOff).load(std::memory_order_acquire) !=
               req_cons_;
    }

    // Copies request `idx` (masked into the ring) out of shared memory once.
    Request copy_request(RingIdx idx) const noexcept {
        return detail::load_words<Request>(slot(idx));
    }

    // Copies the extra-info slot `idx` (TX: extras overlay requests) out of shared memory once.
    ExtraInfo copy_extra(RingIdx idx) const noexcept requires(Proto::kExtrasInRequests) {
        return detail::load_words<ExtraInfo>(slot(idx));
    }

    // Marks `n` requests consumed. The caller got them from poll_requests().
    void consume(std::uint32_t n) noexcept { req_cons_ += n; }

    // Writes a response at rsp_prod_pvt (not yet visible to the frontend). Refuses, writing
    // nothing, when every consumed request has already been answered: a response slot is
    // only ever reused after its request was read.
    [[nodiscard]] bool put_response(const Response& rsp) noexcept {
        if (unanswered() == 0) return false;
        detail::store_words(slot(rsp_prod_pvt_), rsp);
        ++rsp_prod_pvt_;
        return true;
    }

    // RX: an extra-info slot overlaying a response slot, at rsp_prod_pvt.
    [[nodiscard]] bool put_extra(const ExtraInfo& extra) noexcept
        requires(!Proto::kExtrasInRequests) {
        if (unanswered() == 0) return false;
        detail::store_words(slot(rsp_prod_pvt_), extra);
        ++rsp_prod_pvt_;
        return true;
    }

    // Writes the response to request `idx` into that request's own ring slot, where a Linux
    // frontend looks for it (netfront takes RX buffers by ring index), without publishing it.
    // `idx` must be consumed and not yet answered: in [rsp_prod_pvt, req_cons). Refuses any
    // other index, writing nothing. A response written here reaches the frontend once
    // complete_responses() moved rsp_prod_pvt past it and push_responses() published it; until
    // then it may be written again (a failed grant copy patches its status).
    [[nodiscard]] bool put_response_at(RingIdx idx, const Response& rsp) noexcept {
        if (idx - rsp_prod_pvt_ >= unanswered()) return false;
        detail::store_words(slot(idx), rsp);
        return true;
    }

    // RX: an extra-info slot overlaying the response slot of request `idx`, as put_response_at.
    [[nodiscard]] bool put_extra_at(RingIdx idx, const ExtraInfo& extra) noexcept
        requires(!Proto::kExtrasInRequests) {
        if (idx - rsp_prod_pvt_ >= unanswered()) return false;
        detail::store_words(slot(idx), extra);
        return true;
    }

    // Declares the `n` oldest unanswered requests answered: their responses were written with
    // put_response_at / put_extra_at. The next push_responses() publishes them. Refuses,
    // changing nothing, when fewer than `n` requests are unanswered.
    [[nodiscard]] bool complete_responses(std::uint32_t n) noexcept {
        if (n > unanswered()) return false;
        rsp_prod_pvt_ += n;
        return true;
    }

    // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publishes rsp_prod with release (the responses
    // become visible before the index), then a full fence, then reads rsp_event. Returns
    // whether the frontend asked to be notified for a response in the published range.
    // `old` is our own record of the last publication, not the shared rsp_prod, which the
    // frontend could overwrite.
    bool push_responses() noexcept {
        const RingIdx old_idx = rsp_prod_published_;
        const RingIdx new_idx = rsp_prod_pvt_;
        detail::shared_index(page_, detail::kRspProdOff).store(new_idx, std::memory_order_release);
        rsp_prod_published_ = new_idx;
        std::atomic_thread_fence(std::memory_order_seq_cst);
        const RingIdx event =
            detail::shared_index(page_, detail::kRspEventOff).load(std::memory_order_relaxed);
        return detail::event_in_range(new_idx, event, old_idx);
    }

    // RING_FINAL_CHECK_FOR_REQUESTS, generalised to "at least `needed` requests" (Linux RX
    // waits for a whole packet's worth of requests the same way): if fewer are available,
    // sets req_event so the frontend notifies on its next request, fences, and looks again.
    // True means: poll again now (enough requests, or an overflow to report). False means
    // the frontend will send an event when it produces more.
    bool final_check_for_requests(std::uint32_t needed = 1) noexcept {
        RequestWindow w = poll_requests();
        if (w.overflow || w.available >= needed) return true;
        // With needed == 1 this is req_cons + 1, as in io/ring.h.
        detail::shared_index(page_, detail::kReqEventOff)
            .store(w.prod + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        w = poll_requests();
        return w.overflow || w.available >= needed;
    }

private:
    BackRing(std::byte* page, RingIdx idx) noexcept
        : page_(page), req_cons_(idx), rsp_prod_pvt_(idx), rsp_prod_published_(idx) {}

    std::byte* slot(RingIdx idx) const noexcept {
        return page_ + sizeof(SharedRingHeader) + (idx & (kSize - 1)) * Proto::kEntrySize;
    }

    std::byte* page_ = nullptr;
    RingIdx req_cons_ = 0;
    RingIdx rsp_prod_pvt_ = 0;
    RingIdx rsp_prod_published_ = 0;
};

// --- frontend view --------------------------------------------------------------------------

template <class Proto>
class FrontRing {
public:
    using Request = typename Proto::Request;
    using Response = typename Proto::Response;
    static constexpr std::uint32_t kSize = ring_size(Proto::kEntrySize);

    FrontRing() = default;

    // SHARED_RING_INIT + FRONT_RING_INIT: the frontend owns the page's initial state.
    static Result<FrontRing> init(void* page) {
        if (auto st = detail::check_page(page); !st) return st.error();
        auto* p = static_cast<std::byte*>(page);
        std::memset(p, 0, sizeof(SharedRingHeader));
        detail::shared_index(p, detail::kReqEventOff).store(1, std::memory_order_relaxed);
        detail::shared_index(p, detail::kRspEventOff).store(1, std::memory_order_relaxed);
        detail::shared_index(p, detail::kReqProdOff).store(0, std::memory_order_relaxed);
        detail::shared_index(p, detail::kRspProdOff).store(0, std::memory_order_release);
        return FrontRing(p, 0);
    }

    // FRONT_RING_ATTACH: req_prod_pvt = rsp_cons = idx; the shared page is left alone.
    static Result<FrontRing> attach_at(void* page, RingIdx idx) {
        if (auto st = detail::check_page(page); !st) return st.error();
        return FrontRing(static_cast<std::byte*>(page), idx);
    }

    bool attached() const noexcept { return page_ != nullptr; }
    RingIdx req_prod_pvt() const noexcept { return req_prod_pvt_; }
    RingIdx rsp_cons() const noexcept { return rsp_cons_; }

    // RING_FREE_REQUESTS.
    std::uint32_t free_requests() const noexcept { return kSize - (req_prod_pvt_ - rsp_cons_); }

    // Writes a request at req_prod_pvt (not yet visible). False, writing nothing, when full.
    [[nodiscard]] bool put_request(const Request& req) noexcept {
        if (free_requests() == 0) return false;
        detail::store_words(slot(req_prod_pvt_), req);
        ++req_prod_pvt_;
        return true;
    }

    // TX: an extra-info slot overlaying a request slot (the tail of the slot is zeroed).
    [[nodiscard]] bool put_extra(const ExtraInfo& extra) noexcept
        requires(Proto::kExtrasInRequests) {
        if (free_requests() == 0) return false;
        std::array<std::byte, Proto::kEntrySize> raw{};
        std::memcpy(raw.data(), &extra, sizeof(extra));
        detail::store_words(slot(req_prod_pvt_), raw_words(raw));
        ++req_prod_pvt_;
        return true;
    }

    // RING_PUSH_REQUESTS_AND_CHECK_NOTIFY.
    bool push_requests() noexcept {
        const RingIdx old_idx = req_prod_published_;
        const RingIdx new_idx = req_prod_pvt_;
        detail::shared_index(page_, detail::kReqProdOff).store(new_idx, std::memory_order_release);
        req_prod_published_ = new_idx;
        std::atomic_thread_fence(std::memory_order_seq_cst);
        const RingIdx event =
            detail::shared_index(page_, detail::kReqEventOff).load(std::memory_order_relaxed);
        return detail::event_in_range(new_idx, event, old_idx);
    }

    // One acquire read of rsp_prod, checked with RING_RESPONSE_PROD_OVERFLOW and against
    // requests actually produced.
    ResponseWindow poll_responses() const noexcept {
        ResponseWindow w;
        w.cons = rsp_cons_;
        w.prod = detail::shared_index(page_, detail::kRspProdOff).load(std::memory_order_acquire);
        const RingIdx ahead = w.prod - w.cons;
        if (ahead > kSize || ahead > req_prod_pvt_ - rsp_cons_) {
            w.overflow = true;
            return w;
        }
        w.available = ahead;
        return w;
    }

    Response copy_response(RingIdx idx) const noexcept {
        return detail::load_words<Response>(slot(idx));
    }

    // RX: an extra-info slot overlaying a response slot.
    ExtraInfo copy_extra(RingIdx idx) const noexcept requires(!Proto::kExtrasInRequests) {
        return detail::load_words<ExtraInfo>(slot(idx));
    }

    void consume_responses(std::uint32_t n) noexcept { rsp_cons_ += n; }

    // RING_FINAL_CHECK_FOR_RESPONSES: true means poll again now.
    bool final_check_for_responses() noexcept {
        ResponseWindow w = poll_responses();
        if (w.overflow || w.available != 0) return true;
        detail::shared_index(page_, detail::kRspEventOff)
            .store(rsp_cons_ + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        w = poll_responses();
        return w.overflow || w.available != 0;
    }

private:
    FrontRing(std::byte* page, RingIdx idx) noexcept
        : page_(page), req_prod_pvt_(idx), rsp_cons_(idx), req_prod_published_(idx) {}

    std::byte* slot(RingIdx idx) const noexcept {
        return page_ + sizeof(SharedRingHeader) + (idx & (kSize - 1)) * Proto::kEntrySize;
    }

    static std::array<std::uint32_t, Proto::kEntrySize / 4>
    raw_words(const std::array<std::byte, Proto::kEntrySize>& raw) noexcept {
        return std::bit_cast<std::array<std::uint32_t, Proto::kEntrySize / 4>>(raw);
    }

    std::byte* page_ = nullptr;
    RingIdx req_prod_pvt_ = 0;
    RingIdx rsp_cons_ = 0;
    RingIdx req_prod_published_ = 0;
};

using TxBackRing = BackRing<TxRingProto>;
using RxBackRing = BackRing<RxRingProto>;
using TxFrontRing = FrontRing<TxRingProto>;
using RxFrontRing = FrontRing<RxRingProto>;

} // namespace dpnb::netif
