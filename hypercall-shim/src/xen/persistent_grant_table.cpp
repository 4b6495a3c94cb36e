// PersistentGrantTable: the backend-kept translation table of reuse mode on stock Xen
// (see dpnb/hv/persistent_grant_table.hpp and docs/protocol.md).
#include "dpnb/hv/persistent_grant_table.hpp"

#include <sys/mman.h>
#include <xen/io/netif.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace dpnb::hv {

namespace {

constexpr std::uint16_t kCtrlSuccess = 0;
constexpr std::uint16_t kCtrlInvalidParameter = 2;
static_assert(kCtrlSuccess == XEN_NETIF_CTRL_STATUS_SUCCESS);
static_assert(kCtrlInvalidParameter == XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER);

std::size_t page_round(std::size_t bytes) {
    return (bytes + kPageSize - 1) / kPageSize * kPageSize;
}

// Address space that costs memory only where it is touched.
void* reserve_zeroed(std::size_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

std::atomic_ref<std::uint32_t> flags_of(IottEntry& e) {
    return std::atomic_ref<std::uint32_t>(e.flags);
}

} // namespace

const char* to_string(StaticGrantStatus s) noexcept {
    switch (s) {
    case StaticGrantStatus::ok:
        return "ok";
    case StaticGrantStatus::rolled_back:
        return "not added: the request was refused as a whole";
    case StaticGrantStatus::out_of_range:
        return "grant reference out of range";
    case StaticGrantStatus::duplicate:
        return "grant reference already registered";
    case StaticGrantStatus::no_space:
        return "table full";
    case StaticGrantStatus::map_failed:
        return "grant could not be mapped";
    case StaticGrantStatus::dma_map_failed:
        return "the device's IOMMU refused the page";
    case StaticGrantStatus::not_found:
        return "grant reference not registered";
    case StaticGrantStatus::busy:
        return "buffer in flight";
    case StaticGrantStatus::unmap_failed:
        return "grant could not be unmapped";
    case StaticGrantStatus::closed:
        return "table closed";
    }
    return "unknown";
}

std::uint16_t to_ctrl_status(StaticGrantStatus s) noexcept {
    return s == StaticGrantStatus::ok ? kCtrlSuccess : kCtrlInvalidParameter;
}

Result<std::unique_ptr<PersistentGrantTable>>
PersistentGrantTable::create(std::unique_ptr<GrantTable> mapper, DomId guest,
                             const PersistentGrantLimits& limits) {
    if (mapper == nullptr) return make_error(Errc::invalid_argument, "no grant mapper");
    if (guest >= kDomIdSelf)
        return make_error(Errc::invalid_argument, "invalid guest domain " + std::to_string(guest));
    if (limits.ref_limit == 0 || limits.ref_limit > PersistentGrantLimits::kMaxRefLimit)
        return make_error(Errc::invalid_argument,
                          "persistent grants: ref_limit must be 1.." +
                              std::to_string(PersistentGrantLimits::kMaxRefLimit));
    if (limits.max_entries == 0 || limits.max_entries > limits.ref_limit)
        return make_error(Errc::invalid_argument,
                          "persistent grants: max_entries must be 1..ref_limit");

    const std::size_t entries_bytes = page_round(sizeof(IottEntry) * limits.ref_limit);
    const std::size_t status_bytes = page_round(sizeof(std::uint32_t) * limits.ref_limit);
    void* entries = reserve_zeroed(entries_bytes);
    if (entries == nullptr) {
        const int err = errno;
        return make_error(Errc::io, "persistent grants: cannot reserve the address table", err);
    }
    void* status = reserve_zeroed(status_bytes);
    if (status == nullptr) {
        const int err = errno;
        ::munmap(entries, entries_bytes);
        return make_error(Errc::io, "persistent grants: cannot reserve the status table", err);
    }
    return std::unique_ptr<PersistentGrantTable>(
        new PersistentGrantTable(std::move(mapper), guest, limits, static_cast<IottEntry*>(entries),
                                 static_cast<std::uint32_t*>(status), entries_bytes, status_bytes));
}

PersistentGrantTable::PersistentGrantTable(std::unique_ptr<GrantTable> mapper, DomId guest,
                                           const PersistentGrantLimits& limits, IottEntry* entries,
                                           std::uint32_t* status, std::size_t entries_bytes,
                                           std::size_t status_bytes)
    : mapper_(std::move(mapper)), guest_(guest), limits_(limits), entries_(entries),
      status_(status), entries_bytes_(entries_bytes), status_bytes_(status_bytes) {}

PersistentGrantTable::~PersistentGrantTable() {
    const PersistentGrantCloseReport r = close();
    if (!r.clean()) {
        // The owner should have called close() and logged; this is the last word.
        std::fprintf(stderr,
                     "dpnetback: persistent grants of dom %u: %u mappings left in place "
                     "(%u in flight, %u failed to unmap)\n",
                     unsigned{guest_}, r.leaked_in_flight + r.unmap_failures, r.leaked_in_flight,
                     r.unmap_failures);
    }
    // Mappings in leaked_ stay in the address space: the mapper does not unmap them on
    // destruction (XenGrantTable leaves gntdev's VMAs in place).
    ::munmap(entries_, entries_bytes_);
    ::munmap(status_, status_bytes_);
}

TranslationTableView PersistentGrantTable::view() const {
    return TranslationTableView{entries_, status_, limits_.ref_limit, nullptr};
}

std::uint32_t PersistentGrantTable::valid_entries() const {
    return valid_.load(std::memory_order_relaxed);
}

void PersistentGrantTable::bump_gen(GrantRef ref) {
    std::atomic_ref<std::uint32_t> gen(entries_[ref].gen);
    gen.store(gen.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void PersistentGrantTable::publish(GrantRef ref, const GrantMapping& m, bool readonly) {
    IottEntry& e = entries_[ref];
    std::atomic_ref<std::uint64_t>(e.addr).store(reinterpret_cast<std::uintptr_t>(m.base),
                                                 std::memory_order_relaxed);
    bump_gen(ref);
    const std::uint32_t flags = IottEntry::kValid | (readonly ? 0U : IottEntry::kWritable);
    flags_of(e).store(flags, std::memory_order_release);
}

bool PersistentGrantTable::try_invalidate(GrantRef ref) {
    // translation_table.hpp: flags = 0, then read the in-flight count; both seq_cst, the
    // mirror of acquire(), so at least one side sees the other.
    auto flags = flags_of(entries_[ref]);
    const std::uint32_t old = flags.load(std::memory_order_relaxed);
    flags.store(0, std::memory_order_seq_cst);
    if (std::atomic_ref<std::uint32_t>(status_[ref]).load(std::memory_order_seq_cst) != 0) {
        flags.store(old, std::memory_order_seq_cst);
        return false;
    }
    bump_gen(ref);
    return true;
}

void PersistentGrantTable::set_dma_mapper(DmaMapper* dma) {
    const std::lock_guard lock(mu_);
    dma_ = dma;
}

std::optional<PersistentGrantTable::DmaCounts> PersistentGrantTable::dma_counts() const {
    const std::lock_guard lock(mu_);
    if (dma_ == nullptr) return std::nullopt;
    return dma_counts_;
}

bool PersistentGrantTable::unmap_slot(GrantMapping& m) {
    if (dma_ != nullptr) {
        ++dma_counts_.unmaps;
        if (Status st = dma_->unmap(reinterpret_cast<std::uintptr_t>(m.base), kPageSize); !st) {
            ++dma_counts_.unmap_failures;
            std::fprintf(stderr,
                         "dpnetback: persistent grants of dom %u: IOMMU unmap refused (%s); the "
                         "grant stays mapped\n",
                         unsigned{guest_}, st.error().message.c_str());
            return false;
        }
    }
    return mapper_->unmap(m).has_value();
}

Status PersistentGrantTable::add(std::span<const StaticGrant> grants,
                                 std::span<StaticGrantStatus> status) {
    if (status.size() != grants.size())
        return make_error(Errc::invalid_argument, "add: one status per grant");
    const std::lock_guard lock(mu_);
    const std::size_t n = grants.size();
    auto fill = [&](StaticGrantStatus s) {
        for (auto& st : status)
            st = s;
    };
    if (closed_) {
        fill(StaticGrantStatus::closed);
        return make_error(Errc::closed, "persistent grants: table closed");
    }

    // 1. Validate everything before touching the hypervisor.
    std::unordered_set<GrantRef> seen;
    seen.reserve(n);
    std::size_t first_bad = n;
    for (std::size_t i = 0; i < n; ++i) {
        const GrantRef ref = grants[i].ref;
        if (ref >= limits_.ref_limit)
            status[i] = StaticGrantStatus::out_of_range;
        else if (slots_.contains(ref) || !seen.insert(ref).second)
            status[i] = StaticGrantStatus::duplicate;
        else
            status[i] = StaticGrantStatus::ok;
        if (status[i] != StaticGrantStatus::ok && first_bad == n) first_bad = i;
    }
    if (first_bad == n && slots_.size() + n > limits_.max_entries) {
        fill(StaticGrantStatus::no_space);
        return make_error(Errc::invalid_argument,
                          "persistent grants: " + std::to_string(n) + " more would exceed " +
                              std::to_string(limits_.max_entries) + " entries");
    }
    if (first_bad != n) {
        for (auto& st : status)
            if (st == StaticGrantStatus::ok) st = StaticGrantStatus::rolled_back;
        return make_error(Errc::invalid_argument, std::string("persistent grants: ref ") +
                                                      std::to_string(grants[first_bad].ref) + ": " +
                                                      to_string(status[first_bad]));
    }

    // 2. Map each grant on its own (see the header), undoing everything on a failure.
    std::vector<GrantMapping> mapped;
    mapped.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const GrantMapRequest req{guest_, grants[i].ref, !grants[i].readonly};
        std::int16_t gst = 0;
        GrantMapping m = mapper_->map(std::span(&req, 1), std::span(&gst, 1));
        if (!m) {
            for (std::size_t j = 0; j < mapped.size(); ++j) {
                if (!mapper_->unmap(mapped[j])) leaked_.emplace_back(grants[j].ref, mapped[j]);
            }
            fill(StaticGrantStatus::rolled_back);
            status[i] = StaticGrantStatus::map_failed;
            return make_error(Errc::invalid_argument, "persistent grants: cannot map ref " +
                                                          std::to_string(grants[i].ref) +
                                                          " of dom " + std::to_string(guest_) +
                                                          " (GNTST " + std::to_string(gst) + ")");
        }
        mapped.push_back(m);
    }

    // 2b. Into the device's IOMMU, each page on its own (removed on its own), before any
    //     entry is valid; a refusal undoes the whole request.
    if (dma_ != nullptr) {
        for (std::size_t i = 0; i < n; ++i) {
            ++dma_counts_.maps;
            if (dma_->map(reinterpret_cast<std::uintptr_t>(mapped[i].base), kPageSize)) continue;
            ++dma_counts_.map_failures;
            for (std::size_t j = 0; j < n; ++j) {
                // The pages before i are in the IOMMU too: out of it first, as remove() does.
                const bool undone =
                    j < i ? unmap_slot(mapped[j]) : mapper_->unmap(mapped[j]).has_value();
                if (!undone) leaked_.emplace_back(grants[j].ref, mapped[j]);
            }
            fill(StaticGrantStatus::rolled_back);
            status[i] = StaticGrantStatus::dma_map_failed;
            return make_error(Errc::io, "persistent grants: the device's IOMMU refused ref " +
                                            std::to_string(grants[i].ref) + " of dom " +
                                            std::to_string(guest_));
        }
    }

    // 3. Publish: the data path sees an entry only once its address is in place.
    for (std::size_t i = 0; i < n; ++i) {
        publish(grants[i].ref, mapped[i], grants[i].readonly);
        slots_.emplace(grants[i].ref, Slot{mapped[i], grants[i].readonly});
    }
    valid_.fetch_add(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
    return ok();
}

Result<std::uint32_t> PersistentGrantTable::remove(std::span<const GrantRef> refs,
                                                   std::span<StaticGrantStatus> status) {
    if (status.size() != refs.size())
        return make_error(Errc::invalid_argument, "remove: one status per grant");
    const std::lock_guard lock(mu_);
    if (closed_) {
        for (auto& st : status)
            st = StaticGrantStatus::closed;
        return std::uint32_t{0};
    }
    std::uint32_t removed = 0;
    for (std::size_t i = 0; i < refs.size(); ++i) {
        const GrantRef ref = refs[i];
        if (ref >= limits_.ref_limit) {
            status[i] = StaticGrantStatus::out_of_range;
            continue;
        }
        auto it = slots_.find(ref);
        if (it == slots_.end()) {
            status[i] = StaticGrantStatus::not_found;
            continue;
        }
        if (!try_invalidate(ref)) {
            status[i] = StaticGrantStatus::busy;
            continue;
        }
        valid_.fetch_sub(1, std::memory_order_relaxed);
        GrantMapping m = it->second.mapping;
        slots_.erase(it);
        if (unmap_slot(m)) {
            status[i] = StaticGrantStatus::ok;
            ++removed;
        } else {
            leaked_.emplace_back(ref, m);
            status[i] = StaticGrantStatus::unmap_failed;
        }
    }
    return removed;
}

PersistentGrantCloseReport PersistentGrantTable::close() {
    const std::lock_guard lock(mu_);
    PersistentGrantCloseReport report;
    if (closed_) return report;
    closed_ = true;

    // No acquire() succeeds after this; acquires already counted finish on their own.
    std::vector<GrantRef> pending;
    pending.reserve(slots_.size());
    for (const auto& [ref, slot] : slots_) {
        flags_of(entries_[ref]).store(0, std::memory_order_seq_cst);
        bump_gen(ref);
        pending.push_back(ref);
    }
    valid_.store(0, std::memory_order_relaxed);

    const auto deadline = std::chrono::steady_clock::now() + limits_.close_timeout;
    auto backoff = std::chrono::microseconds(100);
    for (;;) {
        auto done = [&](GrantRef ref) {
            if (std::atomic_ref<std::uint32_t>(status_[ref]).load(std::memory_order_seq_cst) != 0)
                return false;
            auto it = slots_.find(ref);
            if (unmap_slot(it->second.mapping)) {
                ++report.unmapped;
            } else {
                ++report.unmap_failures;
                leaked_.emplace_back(ref, it->second.mapping);
            }
            slots_.erase(it);
            return true;
        };
        pending.erase(std::remove_if(pending.begin(), pending.end(), done), pending.end());
        if (pending.empty() || std::chrono::steady_clock::now() >= deadline) break;
        // Waiting for lcores to finish with their buffers: the NIC's pace, not ours.
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::microseconds(20000));
    }
    for (const GrantRef ref : pending) {
        leaked_.emplace_back(ref, slots_.at(ref).mapping);
        ++report.leaked_in_flight;
    }
    slots_.clear();
    return report;
}

} // namespace dpnb::hv
