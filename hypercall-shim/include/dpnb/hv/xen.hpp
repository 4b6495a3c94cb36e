// Opening the real Xen hypervisor: libxengnttab (/dev/xen/gntdev, /dev/xen/gntalloc),
// libxenevtchn (/dev/xen/evtchn), libxenctrl (/dev/xen/privcmd) and xenstore
// (/dev/xen/xenbus or xenstored's socket). Everything returned here implements the
// interfaces of dpnb/hv; nothing outside hypercall-shim/src/xen includes a Xen header.
//
// On a machine without Xen every function here fails with Errc::unsupported and a message
// that names the missing device; a device that exists but cannot be opened gives
// Errc::permission_denied or Errc::io with its errno.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/hv/persistent_grant_table.hpp"

namespace dpnb::hv {

struct XenOptions {
    // xenstored's socket; empty: libxenstore's default (XENSTORED_PATH, else /dev/xen/xenbus).
    std::string xenstore_path;
    // This domain's id. Unset: read from xenstore ("domid" under our home; dom0 has 0
    // there, a driver domain its own id), else 0 when /proc/xen/capabilities says
    // control_d.
    std::optional<DomId> self;
    // xengnttab_set_max_grants() on every grant-table handle; 0 leaves the kernel's default.
    // Linux 6.1's gntdev has no per-handle limit any more (the call is accepted and ignored:
    // the library drops ENOTTY); older and non-Linux gntdevs enforce it.
    std::uint32_t max_grants_per_handle = 4096;
    // Size of every persistent-grant table (reuse mode; docs/protocol.md).
    PersistentGrantLimits persistent_grants;
};

// The backend (dom0 or a driver domain). Checks that the devices exist and can be opened,
// connects to xenstore and learns our domain id. libxenctrl is optional: in a driver
// domain without the privilege to ask for domain information, Domains falls back to
// xenstore (see src/xen/domains.hpp).
Result<std::unique_ptr<BackendHypervisor>> open_xen_backend(const XenOptions& options = {});

struct XenGuestOptions {
    // The backend domain that pages are shared with (gntalloc grants a page to one domain
    // when it allocates it; grant_access() to any other domain is refused).
    DomId peer = kDom0;
    // Pages are shared writable so that one allocation serves RX (the backend writes) and
    // TX buffers; a read-only grant_access() is then served by a writable grant. Set false
    // to share read-only (RX buffers and rings cannot then be allocated).
    bool share_writable = true;
    std::string xenstore_path;
    std::optional<DomId> self;
};

// The guest side (our test netfront inside a real domU): gntalloc, evtchn, xenstore.
// Needs /dev/xen/gntalloc (module xen-gntalloc; its `limit` parameter, 1024 by default,
// bounds the pages shared by the whole domain).
Result<std::unique_ptr<GuestHypervisor>> open_xen_guest(const XenGuestOptions& options = {});

// The parts on their own, for tools (dpnb-xen-probe) and tests.
Result<std::unique_ptr<GrantTable>> open_xen_grant_table(std::uint32_t max_grants = 4096);
Result<std::unique_ptr<EventChannels>> open_xen_event_channels();

} // namespace dpnb::hv
