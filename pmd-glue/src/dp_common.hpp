// Small pieces every part of the poll loop uses: limits, single-writer counters, per-vif
// rate-limited logging that is compiled out above a level, and per-stage TSC timing.
#pragma once

#include <rte_cycles.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <utility>

#include "dpnb/engine/engine.hpp"
#include "dpnb/netif/tx_parser.hpp"

namespace dpnb::engine::detail {

inline constexpr unsigned kMaxBurst = 64;
inline constexpr std::uint32_t kRingSize = netif::kRxRingSize; // both rings hold 256
static_assert(netif::kRxRingSize == netif::kTxRingSize);
inline constexpr std::uint32_t kRingMask = kRingSize - 1;

// Guest queues the engine serves at once. A queue's key is its slot in [0, kMaxQueueKeys)
// with a generation above it (slot | generation << 16), so that a lcore finds a queue by key
// in a flat table, and a frame still in an inbox for a queue that left finds no queue, not
// the slot's next tenant.
inline constexpr std::uint32_t kMaxQueueKeys = 4096;
inline constexpr std::uint32_t kQueueKeySlotMask = 0xFFFF;
static_assert(kMaxQueueKeys <= kQueueKeySlotMask + 1);
constexpr std::uint32_t queue_key_slot(std::uint32_t key) noexcept {
    return key & kQueueKeySlotMask;
}

inline constexpr std::size_t kTxErrorCount = 0
#define DPNB_X(name, cls, counter, help) +1
    DPNB_NETIF_TX_ERRORS(DPNB_X)
#undef DPNB_X
    ;

// A grant status that only a guest's own doing explains: a revoked or never-granted buffer,
// a read-only grant for a buffer we must write, a dying domain. With fatal_bad_grants such
// a failure disables the vif; any other failure drops the packet.
constexpr bool guest_fault(std::int16_t gntst) noexcept {
    namespace st = netif::gntst;
    return gntst == st::kGeneralError || gntst == st::kBadDomain || gntst == st::kBadGntref ||
           gntst == st::kPermissionDenied || gntst == st::kBadPage;
}

// A counter with one writer (the owning lcore) and readers on the control thread: relaxed
// atomic load and store, no read-modify-write (a plain add on x86).
inline void bump(std::uint64_t& c, std::uint64_t n = 1) noexcept {
    std::atomic_ref<std::uint64_t> a(c);
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
// A gauge with one writer, read like a counter; stored only when it changes.
inline void set_gauge(std::uint64_t& g, std::uint64_t v) noexcept {
    std::atomic_ref<std::uint64_t> a(g);
    if (a.load(std::memory_order_relaxed) != v) a.store(v, std::memory_order_relaxed);
}
inline std::uint64_t read_counter(const std::uint64_t& c) noexcept {
    return std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(c))
        .load(std::memory_order_relaxed);
}

// TSC cycles in `usec` microseconds, without overflowing for any 32-bit interval.
inline std::uint64_t usec_to_tsc(std::uint32_t usec) noexcept {
    return static_cast<std::uint64_t>(static_cast<unsigned __int128>(rte_get_tsc_hz()) * usec /
                                      1000000U);
}

struct QueueCounters {
    VifCounters c;
    std::array<std::uint64_t, kTxErrorCount> tx_errors{};
};

// The detail of a cold error found on the data path (a vif disabled, a mode fallback),
// formatted into a fixed buffer: the data path builds no std::string.
class Detail {
public:
    template <class... Args>
    explicit Detail(fmt::format_string<Args...> format, Args&&... args) noexcept {
        const auto end =
            fmt::format_to_n(text_, sizeof(text_) - 1, format, std::forward<Args>(args)...);
        *end.out = '\0'; // at most sizeof(text_) - 1 characters were written
    }
    const char* c_str() const noexcept { return text_; }

private:
    char text_[160];
};

// Data-path log lines at or above this level are compiled in (spdlog's numbering: 0 trace ..
// 6 off); the default keeps info, warn and error.
#ifndef DPNB_DP_LOG_LEVEL
#define DPNB_DP_LOG_LEVEL SPDLOG_LEVEL_INFO
#endif

// Rate limit per vif: a burst of 10 lines, then one per second; suppressed lines are
// counted and reported with the next line that passes.
class LogLimiter {
public:
    bool allow() noexcept {
        const std::uint64_t now = rte_get_tsc_cycles();
        const std::uint64_t hz = rte_get_tsc_hz();
        if (now - last_refill_ >= hz) {
            const std::uint64_t add = (now - last_refill_) / hz;
            tokens_ = static_cast<std::uint32_t>(std::min<std::uint64_t>(kBurst, tokens_ + add));
            last_refill_ = now;
        }
        if (tokens_ == 0) {
            ++suppressed_;
            return false;
        }
        --tokens_;
        return true;
    }
    std::uint64_t take_suppressed() noexcept { return std::exchange(suppressed_, 0); }

private:
    static constexpr std::uint32_t kBurst = 10;
    std::uint64_t last_refill_ = 0;
    std::uint32_t tokens_ = kBurst;
    std::uint64_t suppressed_ = 0;
};

#define DPNB_DP_LOG(limiter, lvl, ...)                                                             \
    do {                                                                                           \
        if constexpr (SPDLOG_LEVEL_##lvl >= DPNB_DP_LOG_LEVEL) {                                   \
            if ((limiter).allow()) {                                                               \
                if (const auto dpnb_sup_ = (limiter).take_suppressed(); dpnb_sup_ != 0)            \
                    spdlog::log(spdlog::level::warn, "({} data-path log lines suppressed)",        \
                                dpnb_sup_);                                                        \
                spdlog::log(spdlog::level::level_enum(SPDLOG_LEVEL_##lvl), __VA_ARGS__);           \
            }                                                                                      \
        }                                                                                          \
    } while (0)

// Per-stage cycle counters of one lcore (DPNB_STAGE_TIMING builds only).
struct StageClock {
    std::array<StageTime, static_cast<std::size_t>(Stage::count)> t{};
};

#ifdef DPNB_STAGE_TIMING
class StageScope {
public:
    StageScope(StageClock& clock, Stage s) noexcept
        : time_(clock.t[static_cast<std::size_t>(s)]), start_(rte_rdtsc()) {}
    ~StageScope() {
        bump(time_.cycles, rte_rdtsc() - start_);
        bump(time_.calls);
    }

private:
    StageTime& time_;
    std::uint64_t start_;
};
#define DPNB_STAGE_CONCAT2(a, b) a##b
#define DPNB_STAGE_CONCAT(a, b) DPNB_STAGE_CONCAT2(a, b)
#define DPNB_STAGE(clock, stage)                                                                   \
    ::dpnb::engine::detail::StageScope DPNB_STAGE_CONCAT(dpnb_stage_, __LINE__)(clock, stage)
#else
#define DPNB_STAGE(clock, stage) (void)(clock)
#endif

} // namespace dpnb::engine::detail
