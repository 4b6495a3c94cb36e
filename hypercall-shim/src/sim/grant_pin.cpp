// Grant pinning shared by the backend library and the server (see grant_pin.hpp).
#include "sim/grant_pin.hpp"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace dpnb::hv::sim {
namespace {

using netif::gntst::kBadPage;
using netif::gntst::kGeneralError;
using netif::gntst::kOkay;
namespace gtf = netif::gtf;

// Xen gives up on a guest that changes its entry under every compare-and-swap.
constexpr int kSetStatusRetries = 5;
// Xen refuses a pin that could overflow its counters (the 0x80808080 check).
constexpr std::uint32_t kMaxPins = 0x7FFFFFFFU;

std::atomic<pid_t> g_pid{0};

pid_t self_pid() {
    pid_t pid = g_pid.load(std::memory_order_relaxed);
    if (pid == 0) {
        static const int registered = pthread_atfork(nullptr, nullptr, [] { g_pid.store(0); });
        (void)registered;
        pid = ::getpid();
        g_pid.store(pid, std::memory_order_relaxed);
    }
    return pid;
}

bool holder_is_dead(std::uint32_t holder) {
    return ::kill(static_cast<pid_t>(holder), 0) != 0 && errno == ESRCH;
}

// A spinlock in shared memory whose word names the holding process, so that a lock left
// by a process that died inside the few instructions it is held can be taken over.
class EntryLock {
public:
    explicit EntryLock(ActiveEntry& act) : word_(act.lock) {
        const auto me = static_cast<std::uint32_t>(self_pid());
        for (unsigned spin = 0;; ++spin) {
            std::uint32_t holder = 0;
            if (word_.compare_exchange_weak(holder, me, std::memory_order_acquire,
                                            std::memory_order_relaxed))
                return;
            if (spin < 64) continue;
            ::sched_yield();
            if (spin % 1024 == 0 && holder != 0 && holder_is_dead(holder) &&
                word_.compare_exchange_strong(holder, me, std::memory_order_acquire,
                                              std::memory_order_relaxed))
                return;
        }
    }
    ~EntryLock() { word_.store(0, std::memory_order_release); }
    EntryLock(const EntryLock&) = delete;
    EntryLock& operator=(const EntryLock&) = delete;

private:
    std::atomic_ref<std::uint32_t> word_;
};

std::atomic_ref<std::uint32_t> header_of(const GrantTableMemory& gt, GrantRef ref) {
    return std::atomic_ref<std::uint32_t>(gt.shared[ref].header);
}

// _set_status_v1(): validate the entry and set GTF_reading (| GTF_writing).
std::int16_t set_status(const GrantTableMemory& gt, GrantRef ref, DomId grantee, bool writable) {
    auto header = header_of(gt, ref);
    std::uint32_t seen = header.load(std::memory_order_acquire);
    for (int attempt = 0; attempt < kSetStatusRetries; ++attempt) {
        const std::uint16_t flags = GrantWords::flags_of(seen);
        if ((flags & gtf::kTypeMask) != gtf::kPermitAccess || GrantWords::domid_of(seen) != grantee)
            return kGeneralError; // "Bad flags or dom"
        if (writable && (flags & gtf::kReadonly) != 0)
            return kGeneralError; // "Attempt to write-pin a r/o grant entry"
        const std::uint32_t want =
            seen | gtf::kReading | (writable ? static_cast<std::uint32_t>(gtf::kWriting) : 0U);
        if (want == seen) return kOkay;
        if (header.compare_exchange_strong(seen, want, std::memory_order_seq_cst,
                                           std::memory_order_acquire))
            return kOkay;
    }
    return kGeneralError; // "Shared grant entry is unstable"
}

void clear_flags(const GrantTableMemory& gt, GrantRef ref, std::uint16_t bits) {
    header_of(gt, ref).fetch_and(~static_cast<std::uint32_t>(bits), std::memory_order_seq_cst);
}

void ledger_add(LedgerEntry* ledger, bool writable, std::int32_t delta) {
    if (ledger == nullptr) return;
    std::atomic_ref<std::uint32_t>(ledger->pins)
        .fetch_add(static_cast<std::uint32_t>(delta), std::memory_order_relaxed);
    if (writable)
        std::atomic_ref<std::uint32_t>(ledger->wpins)
            .fetch_add(static_cast<std::uint32_t>(delta), std::memory_order_relaxed);
}

// The counters are read without the lock by pinned_grants(); every write goes through here.
void store(std::uint32_t& field, std::uint32_t value) {
    std::atomic_ref<std::uint32_t>(field).store(value, std::memory_order_seq_cst);
}

// Drops pins with the entry lock held; clears the shared flags as Xen's unmap does.
void drop_pins_locked(const GrantTableMemory& gt, GrantRef ref, ActiveEntry& act,
                      std::uint32_t pins, std::uint32_t wpins) {
    if (pins > act.pins) pins = act.pins;
    if (wpins > act.wpins) wpins = act.wpins;
    const bool had_writers = act.wpins != 0;
    store(act.wpins, act.wpins - wpins);
    store(act.pins, act.pins - pins);
    if (act.wpins > act.pins) store(act.wpins, act.pins);
    if (had_writers && act.wpins == 0) clear_flags(gt, ref, gtf::kWriting);
    if (act.pins == 0) clear_flags(gt, ref, gtf::kReading);
}

} // namespace

PinResult pin_grant(const GrantTableMemory& gt, GrantRef ref, DomId grantee, bool writable,
                    LedgerEntry* ledger) noexcept {
    if (ref >= gt.entries) return {netif::gntst::kBadGntref, 0};
    ActiveEntry& act = gt.active[ref];
    EntryLock lock(act);
    if (act.pins >= kMaxPins) return {kGeneralError, 0};
    if (act.pins == 0) {
        const std::int16_t st = set_status(gt, ref, grantee, writable);
        if (st != kOkay) return {st, 0};
        // Read after the flags are set: from here on the guest cannot end access, so the
        // frame we validate is the one that stays pinned.
        const std::uint32_t frame =
            std::atomic_ref<std::uint32_t>(gt.shared[ref].frame).load(std::memory_order_acquire);
        if (frame >= gt.memory_pages) {
            if (writable) clear_flags(gt, ref, gtf::kWriting);
            clear_flags(gt, ref, gtf::kReading);
            return {kBadPage, 0};
        }
        act.frame = frame;
        act.domid = grantee;
    } else {
        if (act.domid != grantee) return {kGeneralError, 0}; // "Bad domain"
        if (writable && act.wpins == 0) {
            const std::int16_t st = set_status(gt, ref, grantee, true);
            if (st != kOkay) return {st, 0};
        }
    }
    store(act.pins, act.pins + 1);
    if (writable) store(act.wpins, act.wpins + 1);
    ledger_add(ledger, writable, 1);
    return {kOkay, act.frame};
}

void unpin_grant(const GrantTableMemory& gt, GrantRef ref, bool writable,
                 LedgerEntry* ledger) noexcept {
    if (ref >= gt.entries) return;
    ActiveEntry& act = gt.active[ref];
    EntryLock lock(act);
    if (act.pins == 0) return; // nothing of ours to drop (cannot happen without a bug)
    drop_pins_locked(gt, ref, act, 1, writable ? 1 : 0);
    ledger_add(ledger, writable, -1);
}

void release_ledger(const GrantTableMemory& gt, LedgerEntry* ledger) noexcept {
    for (GrantRef ref = 0; ref < gt.entries; ++ref) {
        LedgerEntry& mine = ledger[ref];
        auto pins = std::atomic_ref<std::uint32_t>(mine.pins);
        auto wpins = std::atomic_ref<std::uint32_t>(mine.wpins);
        if (pins.load(std::memory_order_relaxed) == 0 && wpins.load(std::memory_order_relaxed) == 0)
            continue;
        ActiveEntry& act = gt.active[ref];
        EntryLock lock(act);
        drop_pins_locked(gt, ref, act, pins.load(std::memory_order_relaxed),
                         wpins.load(std::memory_order_relaxed));
        pins.store(0, std::memory_order_relaxed);
        wpins.store(0, std::memory_order_relaxed);
    }
}

std::uint64_t pinned_grants(const GrantTableMemory& gt) noexcept {
    std::uint64_t total = 0;
    for (GrantRef ref = 0; ref < gt.entries; ++ref)
        total +=
            std::atomic_ref<std::uint32_t>(gt.active[ref].pins).load(std::memory_order_seq_cst);
    return total;
}

} // namespace dpnb::hv::sim
