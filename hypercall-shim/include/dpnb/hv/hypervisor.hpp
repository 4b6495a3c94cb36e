// The two faces of a hypervisor as dpnetback sees them, and how to open one.
//
// BackendHypervisor is what the daemon (a backend in dom0 or a driver domain) uses: grant
// map/copy, event channels, xenstore, domain information and per-guest I/O translation
// tables. GuestHypervisor is what a frontend uses (our test netfront): guest memory, grant
// access, unbound event channels, xenstore, and the translation-table hypercalls.
//
// Both have a real implementation over the Xen libraries ("xen") and a simulated one
// ("sim") whose semantics match (hypercall-shim/README.md and docs/architecture.md).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "dpnb/hv/domains.hpp"
#include "dpnb/hv/event_channel.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/translation_table.hpp"
#include "dpnb/hv/xenstore.hpp"

namespace dpnb::hv {

class BackendHypervisor {
public:
    virtual ~BackendHypervisor() = default;
    virtual std::string_view kind() const = 0; // "xen" or "sim"
    virtual DomId self() const = 0;

    virtual Result<std::unique_ptr<GrantTable>> open_grant_table() = 0;
    virtual Result<std::unique_ptr<EventChannels>> open_event_channels() = 0;
    virtual Result<std::unique_ptr<Xenstore>> open_xenstore() = 0;
    virtual Domains& domains() = 0;
    // The translation table the hypervisor keeps for (`guest`, this backend).
    virtual Result<std::unique_ptr<TranslationTable>> open_translation_table(DomId guest) = 0;
};

// Pages of a guest's own memory, page-aligned and contiguous.
struct GuestPages {
    std::byte* base = nullptr;
    std::uint32_t count = 0;
    std::byte* page(std::uint32_t i) const {
        return base + static_cast<std::size_t>(i) * kPageSize;
    }
};

class GuestHypervisor {
public:
    virtual ~GuestHypervisor() = default;
    virtual std::string_view kind() const = 0;
    virtual DomId self() const = 0;

    virtual Result<GuestPages> alloc_pages(std::uint32_t count) = 0;
    virtual Status free_pages(GuestPages pages) = 0;

    // Grants `to` access to one page of our memory (gnttab_grant_foreign_access).
    virtual Result<GrantRef> grant_access(DomId to, const std::byte* page, bool readonly) = 0;
    // Ends access (gnttab_end_foreign_access_ref): Errc::busy while the peer still maps the
    // page, copies from it, or counts it in flight in the translation table.
    virtual Status end_access(GrantRef ref) = 0;

    // The translation-table hypercalls: only the guest adds and removes its entries.
    // remove: Errc::busy while the backend counts the buffer in flight.
    virtual Status iott_add(DomId backend, GrantRef ref) = 0;
    virtual Status iott_remove(DomId backend, GrantRef ref) = 0;

    virtual Result<std::unique_ptr<EventChannels>> open_event_channels() = 0;
    virtual Result<std::unique_ptr<Xenstore>> open_xenstore() = 0;
};

} // namespace dpnb::hv
