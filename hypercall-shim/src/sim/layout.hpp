// What the simulated hypervisor keeps in shared memory, and its limits. Each layout says who
// maps it and how:
//
//   guest memory       memfd, guest RW; backends RW (hypervisor-side copy, DMA window) and
//                      per-grant mappings (RO or RW as granted)
//   grant table        memfd of grant_entry_v1, guest RW (writes entries), backends RW
//                      (hypervisor-side code sets GTF_reading/GTF_writing), server RW
//   active table       memfd of ActiveEntry, hypervisor-private: backends and server only
//   pin ledger         memfd of LedgerEntry per (backend process, guest): the pins that
//                      process holds, so the server can drop them if the process dies
//                      (as gntdev does when its file is closed)
//   domain registry    memfd of registry words, server RW, backends RO
//   evtchn status      memfd per event-channel handle, server RW, owner RO
//   translation table  two memfds per (guest, backend): address subtable (server RW,
//                      backend RO) and status subtable (backend RW)
//
// Sealed memfds (F_SEAL_FUTURE_WRITE) make "RO" a property of the file, not a courtesy.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv::sim {

static_assert(std::endian::native == std::endian::little,
              "the grant entry header word assumes a little-endian layout");

inline constexpr DomId kFirstReservedDomId = 0x7FF0; // DOMID_FIRST_RESERVED
inline constexpr std::uint32_t kMaxMemoryPages = 1U << 20;
inline constexpr std::uint32_t kMaxGrantFrames = 64;
inline constexpr std::uint32_t kGrantEntriesPerFrame = kPageSize / 8; // v1 entries per page
inline constexpr GrantRef kNrReservedGrantEntries = 8;                // GNTTAB_NR_RESERVED_ENTRIES
// Event channel ports per domain: the 2-level ABI's limit on 64-bit guests.
inline constexpr EvtchnPort kMaxPorts = 4096;

// A grant_entry_v1 seen as two 32-bit words. `header` is flags | domid << 16: Xen updates
// the flags with a compare-and-swap over both fields, so that the domid it validated is
// the one the entry still names when GTF_reading/GTF_writing get set. Everybody (guest,
// backends, server) accesses entries through these words only.
struct GrantWords {
    std::uint32_t header;
    std::uint32_t frame;

    static constexpr std::uint16_t flags_of(std::uint32_t header) {
        return static_cast<std::uint16_t>(header & 0xFFFFU);
    }
    static constexpr DomId domid_of(std::uint32_t header) {
        return static_cast<DomId>(header >> 16);
    }
    static constexpr std::uint32_t make_header(std::uint16_t flags, DomId domid) {
        return static_cast<std::uint32_t>(flags) | (static_cast<std::uint32_t>(domid) << 16);
    }
};
static_assert(sizeof(GrantWords) == sizeof(netif::GrantEntryV1));

// Xen's struct active_grant_entry, reduced to what v1 host mappings need. Guarded by `lock`
// (0 = free, else the holder's pid, so that a lock left behind by a dead process can be
// taken over). `pins` counts every mapping, copy and translation-table entry of the grant;
// `wpins` the writable ones.
struct ActiveEntry {
    std::uint32_t lock;
    std::uint32_t frame; // the page pinned (valid while pins != 0)
    std::uint32_t pins;
    std::uint32_t wpins;
    std::uint16_t domid; // the domain that pins it (the grantee)
    std::uint16_t pad[3];
};
static_assert(sizeof(ActiveEntry) == 24);

struct LedgerEntry {
    std::uint32_t pins;
    std::uint32_t wpins;
};

// One word per domain id: instance << 8 | state bits. A backend compares the instance it
// attached to with the current one before and after pinning, so that a domain freed and
// a new one created under the same id are never confused.
namespace registry {
inline constexpr std::uint64_t kExists = 1U << 0;
inline constexpr std::uint64_t kDying = 1U << 1;
inline constexpr unsigned kInstanceShift = 8;
inline constexpr std::size_t kBytes = sizeof(std::uint64_t) * kFirstReservedDomId;

constexpr std::uint64_t make(std::uint64_t instance, bool dying) {
    return (instance << kInstanceShift) | kExists | (dying ? kDying : 0U);
}
constexpr std::uint64_t instance_of(std::uint64_t word) {
    return word >> kInstanceShift;
}
inline std::uint64_t load(const std::uint64_t* table, DomId dom) {
    if (dom >= kFirstReservedDomId) return 0;
    // The table is mapped read-only: an atomic load is a plain load and does not fault.
    auto& word = const_cast<std::uint64_t&>(table[dom]);
    return std::atomic_ref<std::uint64_t>(word).load(std::memory_order_seq_cst);
}
} // namespace registry

// Per event-channel handle, one byte per port, written by the server.
namespace evtchn_status {
inline constexpr std::uint8_t kOpen = 0;     // bound, or unbound (notifications are dropped)
inline constexpr std::uint8_t kPeerGone = 1; // the remote domain was destroyed
inline constexpr std::size_t kBytes = kMaxPorts;
} // namespace evtchn_status

} // namespace dpnb::hv::sim
