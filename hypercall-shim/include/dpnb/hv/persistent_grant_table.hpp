// The persistent-grant cache that stands in for the paper's I/O translation table on stock
// Xen. A frontend that opts in (docs/protocol.md) registers its reusable RX buffers with
// the netif control ring's static-grant messages; the backend maps each grant once and
// keeps it mapped until the frontend deletes it or disconnects. Data-path lcores look
// entries up through the same TranslationTableView as with the simulated hypervisor, so
// the reuse data path does not know which hypervisor it runs on.
//
// Layout: a direct index by grant reference over [0, ref_limit) (O(1) lookup, one load for
// the flags and one for the address), held in anonymous memory reserved with
// MAP_NORESERVE: only the pages that hold registered entries or that the data path touched
// are backed, so a large ref space costs address space, not memory. At most `max_entries`
// entries are valid at a time (what GET_GREF_MAPPING_SIZE answers). Only the control plane
// writes the address subtable; lcores write the status subtable (in-flight counts).
//
// Each grant is mapped on its own (one map call per grant): libxengnttab unmaps only whole
// batches, and DEL_GREF_MAPPING removes single grants, after which the frontend must be able
// to end access at once.
//
// Thread safety: add/remove/close belong to one control-plane thread (they also take a
// mutex); view() users (lcores) run concurrently with them, as translation_table.hpp says.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dpnb/hv/dma_mapper.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/translation_table.hpp"

namespace dpnb::hv {

// One entry of a static-grant registration (struct xen_netif_gref without its status).
struct StaticGrant {
    GrantRef ref;
    bool readonly; // XEN_NETIF_CTRLF_GREF_readonly: mapped read-only, never used for RX
};

// Per-entry outcome of add() and remove().
enum class StaticGrantStatus : std::uint8_t {
    ok,
    rolled_back,    // add: this entry was fine, but the request as a whole was refused
    out_of_range,   // ref >= ref_limit
    duplicate,      // add: already registered, or twice in the same request
    no_space,       // add: the request would exceed max_entries
    map_failed,     // add: the grant could not be mapped (bad ref, wrong domain, read-only)
    dma_map_failed, // add: mapped, but the device's IOMMU refused the page (rolled back)
    not_found,      // remove: not registered
    busy,           // remove: the backend has the buffer in flight; retry later
    unmap_failed,   // remove: gone from the table, but the mapping (grant or IOMMU) could not
                    // be removed: the page stays mapped
    closed,         // the table was closed (the vif disconnected)
};

const char* to_string(StaticGrantStatus s) noexcept;

// XEN_NETIF_CTRL_STATUS_* that dpnetback writes into xen_netif_gref.status (DEL) for a
// per-entry outcome: SUCCESS for ok, INVALID_PARAMETER for everything else.
std::uint16_t to_ctrl_status(StaticGrantStatus s) noexcept;

struct PersistentGrantLimits {
    // Registered entries at a time; answered to XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE.
    std::uint32_t max_entries = 1024;
    // Grant references at or above this are refused. Sizes the direct index (16 + 4 bytes of
    // address space per ref). Xen 4.17's default grant table (64 frames of v1 entries)
    // holds refs below 32768.
    std::uint32_t ref_limit = 32768;
    // How long close() waits for in-flight buffers before it gives up on them.
    std::chrono::milliseconds close_timeout{5000};

    static constexpr std::uint32_t kMaxRefLimit = 1U << 22;
};

struct PersistentGrantCloseReport {
    std::uint32_t unmapped = 0;         // entries unmapped
    std::uint32_t leaked_in_flight = 0; // still in flight at the deadline: left mapped
    std::uint32_t unmap_failures = 0;   // unmap refused by the mapper: left mapped

    bool clean() const { return leaked_in_flight == 0 && unmap_failures == 0; }
};

class PersistentGrantTable final : public TranslationTable {
public:
    // `mapper` maps the guest's grants (XenGrantTable on Xen; a fake in unit tests) and is
    // used only by the control plane.
    static Result<std::unique_ptr<PersistentGrantTable>>
    create(std::unique_ptr<GrantTable> mapper, DomId guest, const PersistentGrantLimits& limits);

    // Closes the table if close() was not called; leaks are reported on stderr (call close()
    // and log its report instead).
    ~PersistentGrantTable() override;
    PersistentGrantTable(const PersistentGrantTable&) = delete;
    PersistentGrantTable& operator=(const PersistentGrantTable&) = delete;

    TranslationTableView view() const override;
    DomId guest() const override { return guest_; }
    std::uint32_t valid_entries() const override;
    PersistentGrantTable* persistent_grants() noexcept override { return this; }

    const PersistentGrantLimits& limits() const { return limits_; }

    // The IOMMU of the device the entries' pages are handed to (a NIC behind vfio), or null
    // (a device that reaches them without one: the default). With one, add() DMA-maps each
    // page after its grant map and before the entry is valid, and remove()/close() unmap it
    // once the entry is invalid and not in flight, before the grant unmap: no call on the
    // data path. Set before the first add(); `dma` must outlive the table.
    void set_dma_mapper(DmaMapper* dma);
    // Calls made to the DMA mapper and those that failed (control plane); none without one.
    struct DmaCounts {
        std::uint64_t maps = 0, unmaps = 0, map_failures = 0, unmap_failures = 0;
    };
    std::optional<DmaCounts> dma_counts() const;

    // All or nothing, as XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING requires: maps every grant
    // and publishes the entries, or adds none and says per entry why. `status.size()` must
    // equal `grants.size()` (else Errc::invalid_argument, no status written).
    Status add(std::span<const StaticGrant> grants, std::span<StaticGrantStatus> status);

    // Per entry, as XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING: invalidates and unmaps each entry
    // that is not in flight (translation_table.hpp's race protocol); an entry in flight
    // stays valid and gets `busy`. Returns how many entries were removed.
    Result<std::uint32_t> remove(std::span<const GrantRef> refs,
                                 std::span<StaticGrantStatus> status);

    // On disconnect: invalidates every entry, waits (up to limits.close_timeout) until no
    // buffer is in flight, unmaps everything. Entries still in flight at the deadline stay
    // mapped for the life of the process (never unmap a page the NIC may still write).
    // An entry whose IOMMU unmap fails stays grant-mapped too (unmap_failures). After close(),
    // add() answers `closed`; the view stays readable (every lookup misses)
    // until the table is destroyed. Idempotent: a second call reports nothing new.
    PersistentGrantCloseReport close();

private:
    struct Slot {
        GrantMapping mapping;
        bool readonly;
    };

    PersistentGrantTable(std::unique_ptr<GrantTable> mapper, DomId guest,
                         const PersistentGrantLimits& limits, IottEntry* entries,
                         std::uint32_t* status, std::size_t entries_bytes,
                         std::size_t status_bytes);

    void publish(GrantRef ref, const GrantMapping& m, bool readonly);
    // The hypervisor half of the race: true when the entry is now invalid and not in flight.
    bool try_invalidate(GrantRef ref);
    void bump_gen(GrantRef ref);
    // Takes the page of `m` out of the IOMMU (if any) and unmaps its grant; false when either
    // refused (the grant then stays mapped: the device may still reach the page).
    bool unmap_slot(GrantMapping& m);

    std::unique_ptr<GrantTable> mapper_;
    DmaMapper* dma_ = nullptr;
    DmaCounts dma_counts_; // under mu_
    const DomId guest_;
    const PersistentGrantLimits limits_;
    IottEntry* const entries_;
    std::uint32_t* const status_;
    const std::size_t entries_bytes_;
    const std::size_t status_bytes_;

    mutable std::mutex mu_; // control plane only
    std::unordered_map<GrantRef, Slot> slots_;
    // Left mapped by close() (still in flight) or by a failed unmap; never reused.
    std::vector<std::pair<GrantRef, GrantMapping>> leaked_;
    std::atomic<std::uint32_t> valid_{0};
    bool closed_ = false;
};

} // namespace dpnb::hv
