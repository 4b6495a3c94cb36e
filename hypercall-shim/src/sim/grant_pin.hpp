// Pinning a guest's grant: the hypervisor half of every grant map, grant copy and
// translation-table entry, as Xen's map_grant_ref()/acquire_grant_for_copy() and
// _set_status_v1() do it. Runs in the backend process (map, copy) and in the server
// (translation table): both share the guest's grant table and its private active table.
//
// Pinning checks the shared entry (type GTF_permit_access, domid == the grantee, not
// GTF_readonly for a writable pin) and sets GTF_reading (and GTF_writing) in it with a
// compare-and-swap over flags and domid, retried a few times against a guest that keeps
// changing the entry. While pins remain, the flags stay set, so the guest's end of access
// (a compare-and-swap that refuses while they are set) fails. The last unpin clears them.
#pragma once

#include <cstdint>

#include "sim/layout.hpp"

namespace dpnb::hv::sim {

// Everything pin/unpin touch for one guest.
struct GrantTableMemory {
    GrantWords* shared = nullptr;  // the guest's grant table
    ActiveEntry* active = nullptr; // hypervisor-private
    std::uint32_t entries = 0;
    std::uint32_t memory_pages = 0; // frames beyond this are not the guest's
};

struct PinResult {
    std::int16_t status; // GNTST_*
    std::uint32_t frame; // the guest page, when status is GNTST_okay
};

// `ledger` (may be null) records the pin for the process that takes it. Never blocks on the
// guest; may wait for another pinner of the same entry (a few instructions).
PinResult pin_grant(const GrantTableMemory& gt, GrantRef ref, DomId grantee, bool writable,
                    LedgerEntry* ledger) noexcept;

// Drops one pin taken with the same `writable`; the last (writable) pin clears
// GTF_reading (GTF_writing).
void unpin_grant(const GrantTableMemory& gt, GrantRef ref, bool writable,
                 LedgerEntry* ledger) noexcept;

// Drops every pin a ledger records (its process went away), then zeroes it.
void release_ledger(const GrantTableMemory& gt, LedgerEntry* ledger) noexcept;

// Pins held on the whole table, read without locking (leak checks, reaping).
std::uint64_t pinned_grants(const GrantTableMemory& gt) noexcept;

} // namespace dpnb::hv::sim
