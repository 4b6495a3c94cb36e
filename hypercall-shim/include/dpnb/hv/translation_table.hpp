// The I/O translation table of the paper (Ram et al., VEE 2009, section 4.1), one per
// (guest, driver domain) pair, indexed by grant reference:
//   - the address subtable says where each reusable guest buffer lives. Only the
//     hypervisor writes it, on the guest's request, after validating and pinning the page;
//     the backend maps it read-only (a write faults);
//   - the status subtable counts, per entry, the buffers the backend has in flight (posted
//     to the NIC, being written). The backend increments and decrements it; the hypervisor
//     refuses to remove an entry whose count is not zero.
// The backend's lookup is a plain memory read: no hypercall per packet.
//
// Race between acquire() and removal (both sides use sequentially consistent operations):
//   backend:    status[r] += 1;  read flags[r]; if not valid: status[r] -= 1, miss
//   hypervisor: flags[r] = 0;    read status[r]; if not zero: restore flags, refuse
// At least one side sees the other's write, so a buffer is never handed to the NIC after
// its entry was removed (at worst a removal is refused and the guest retries).
//
// With the simulated hypervisor, `addr` is the page's machine address (its byte offset in
// the guest's memory) and `dma_base` is where the backend reaches machine memory, as a NIC
// without IOMMU would. With real Xen the table is a persistent-grant cache kept by the
// backend itself (docs/protocol.md): `addr` is the address of a persistent mapping and
// `dma_base` is null.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv {

struct IottEntry {
    std::uint64_t addr;  // machine address of the page (see above)
    std::uint32_t flags; // kValid | kWritable; read with acquire
    std::uint32_t gen;   // bumped on every add and remove: a cache key for reused grefs

    static constexpr std::uint32_t kValid = 1U << 0;
    static constexpr std::uint32_t kWritable = 1U << 1;
};
static_assert(sizeof(IottEntry) == 16);

// What a data-path lcore holds: trivially copyable, no virtual calls on the fast path.
struct TranslationTableView {
    const IottEntry* entries = nullptr; // address subtable (read-only to us)
    std::uint32_t* status = nullptr;    // status subtable (in-flight counts), ours to write
    std::uint32_t size = 0;             // entries in both subtables
    std::byte* dma_base = nullptr;      // added to IottEntry::addr

    // Marks `ref` in flight and returns the page it names, or nullptr when the guest has no
    // valid entry for it (or a read-only one and `need_write`). Every non-null result must
    // be matched by one release().
    std::byte* acquire(GrantRef ref, bool need_write) const noexcept {
        if (ref >= size) return nullptr;
        std::atomic_ref<std::uint32_t> st(status[ref]);
        st.fetch_add(1, std::memory_order_seq_cst);
        // The subtable is mapped read-only; an atomic load is a plain load on every target we
        // build for, so it does not fault. atomic_ref<const T> arrives only in C++26.
        auto& flags_word = const_cast<std::uint32_t&>(entries[ref].flags);
        const std::uint32_t flags =
            std::atomic_ref<std::uint32_t>(flags_word).load(std::memory_order_seq_cst);
        const std::uint32_t need = IottEntry::kValid | (need_write ? IottEntry::kWritable : 0U);
        if ((flags & need) != need) {
            st.fetch_sub(1, std::memory_order_release);
            return nullptr;
        }
        const std::uint64_t addr = entries[ref].addr; // stable while our count is held
        // Integer arithmetic: with real Xen dma_base is null and addr a virtual address, and
        // adding an offset to a null pointer is undefined.
        return reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(dma_base) +
                                            static_cast<std::uintptr_t>(addr));
    }

    void release(GrantRef ref) const noexcept {
        std::atomic_ref<std::uint32_t>(status[ref]).fetch_sub(1, std::memory_order_release);
    }

    std::uint32_t in_flight(GrantRef ref) const noexcept {
        return ref < size
                   ? std::atomic_ref<std::uint32_t>(status[ref]).load(std::memory_order_acquire)
                   : 0;
    }
};

class PersistentGrantTable; // dpnb/hv/persistent_grant_table.hpp

// The backend's handle on one guest's table. Closing it (destruction) requires every
// acquired entry to be released first; the implementation checks and reports leaks.
class TranslationTable {
public:
    virtual ~TranslationTable() = default;
    virtual TranslationTableView view() const = 0;
    virtual DomId guest() const = 0;
    // Entries currently valid (the guest's registered pool size).
    virtual std::uint32_t valid_entries() const = 0;
    // Stock Xen has no translation table: the backend keeps one itself, filled from the
    // frontend's static-grant messages on the netif control ring (docs/protocol.md). Such a
    // table returns itself here so that the control plane can add and remove entries; a
    // table kept by the hypervisor returns nullptr (only the guest's hypercalls change it).
    virtual PersistentGrantTable* persistent_grants() noexcept { return nullptr; }
};

} // namespace dpnb::hv
