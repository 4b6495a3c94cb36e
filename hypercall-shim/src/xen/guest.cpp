// XenGuestHypervisor: the guest side of real Xen for our test netfront inside a domU:
// pages shared through gntalloc (libxengnttab's xengntshr), unbound event channels and
// xenstore.
//
// gntalloc shares a page with one domain, with one access mode, when it allocates it, and
// ends the grant only when the page is unshared (see shared_pages.hpp). Hence:
//   - alloc_pages() shares the pages with XenGuestOptions::peer at once, writable unless
//     share_writable is false; grant_access() hands out the page's grant (to the peer only;
//     a read-only request is served by the writable grant, which is wider than asked);
//   - end_access() cannot revoke the grant without freeing the page, and gntalloc cannot
//     tell whether the backend still maps it. It therefore never answers Errc::busy: it
//     records that the caller is done with the grant and returns ok. The grant really ends
//     at free_pages(), where Linux's gntalloc ends foreign access and, if the backend still
//     maps the page, defers freeing it until the backend lets go
//     (gnttab_end_foreign_access): our memory is never handed back to the kernel while the
//     backend can reach it. A backend that keeps a mapping it should have dropped is not
//     detected on real Xen; the simulated hypervisor detects it.
//   - iott_add/iott_remove: stock Xen has no translation table; a frontend registers
//     static grants through the netif control ring instead (docs/protocol.md).
extern "C" { // the Xen libraries' headers have no C++ guards
#include <xengnttab.h>
}

#include <cerrno>
#include <mutex>
#include <string>
#include <vector>

#include "dpnb/hv/xen.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "xen/domains.hpp"
#include "xen/event_channels.hpp"
#include "xen/shared_pages.hpp"
#include "xen/xen_errors.hpp"
#include "xen/xen_log.hpp"

namespace dpnb::hv {

namespace {

// Pages one alloc_pages() may ask for; gntalloc's own limit (module parameter `limit`,
// 1024 by default) bounds the whole domain.
constexpr std::uint32_t kMaxAllocPages = 4096;

class XenGuestHypervisor final : public GuestHypervisor {
public:
    static Result<std::unique_ptr<XenGuestHypervisor>> open(const XenGuestOptions& options) {
        std::unique_ptr<XenGuestHypervisor> g(new XenGuestHypervisor(options));
        g->h_ = xengntshr_open(g->log_.get(), 0);
        if (g->h_ == nullptr) {
            const int err = errno;
            return xen::device_error(xen::kGntallocPath, "xengntshr_open", err, g->log_.last());
        }
        return g;
    }

    ~XenGuestHypervisor() override {
        for (const auto& [base, count] : pages_.all())
            (void)xengntshr_unshare(h_, base, count);
        if (h_ != nullptr) xengntshr_close(h_);
    }

    XenGuestHypervisor(const XenGuestHypervisor&) = delete;
    XenGuestHypervisor& operator=(const XenGuestHypervisor&) = delete;

    std::string_view kind() const override { return "xen"; }
    DomId self() const override { return self_; }
    void set_self(DomId self) { self_ = self; }

    Result<GuestPages> alloc_pages(std::uint32_t count) override {
        if (count == 0 || count > kMaxAllocPages)
            return make_error(Errc::invalid_argument,
                              "alloc_pages: 1.." + std::to_string(kMaxAllocPages) + " pages");
        const std::lock_guard lock(mu_);
        std::vector<std::uint32_t> refs(count);
        void* p = xengntshr_share_pages(h_, options_.peer, static_cast<int>(count), refs.data(),
                                        options_.share_writable ? 1 : 0);
        if (p == nullptr) {
            const int err = errno;
            // ENOSPC: gntalloc's limit of shared pages (module parameter `limit`) reached.
            return xen::call_error(err == ENOSPC ? Errc::busy : Errc::io,
                                   "xengntshr_share_pages(" + std::to_string(count) +
                                       " pages with dom " + std::to_string(options_.peer) + ")",
                                   err, log_.last());
        }
        auto* base = static_cast<std::byte*>(p);
        if (Status st = pages_.add(base, refs); !st) {
            (void)xengntshr_unshare(h_, p, count);
            return std::move(st).error();
        }
        return GuestPages{base, count};
    }

    Status free_pages(GuestPages pages) override {
        const std::lock_guard lock(mu_);
        if (Status st = pages_.remove(pages.base, pages.count); !st) return st;
        if (xengntshr_unshare(h_, pages.base, pages.count) != 0) {
            const int err = errno;
            return xen::call_error(Errc::io, "xengntshr_unshare", err, log_.last());
        }
        return ok();
    }

    Result<GrantRef> grant_access(DomId to, const std::byte* page, bool readonly) override {
        if (to != options_.peer)
            return make_error(Errc::unsupported,
                              "grant_access to dom " + std::to_string(to) +
                                  ": gntalloc shares a page with one domain when it allocates "
                                  "it, and these pages were shared with dom " +
                                  std::to_string(options_.peer));
        if (!readonly && !options_.share_writable)
            return make_error(Errc::unsupported,
                              "grant_access: pages were shared read-only (share_writable=false)");
        const std::lock_guard lock(mu_);
        return pages_.grant(page);
    }

    Status end_access(GrantRef ref) override {
        const std::lock_guard lock(mu_);
        return pages_.end(ref);
    }

    Status iott_add(DomId, GrantRef) override { return no_iott(); }
    Status iott_remove(DomId, GrantRef) override { return no_iott(); }

    Result<std::unique_ptr<EventChannels>> open_event_channels() override {
        return open_xen_event_channels();
    }

    Result<std::unique_ptr<Xenstore>> open_xenstore() override {
        return hv::open_xenstore(options_.xenstore_path);
    }

private:
    explicit XenGuestHypervisor(const XenGuestOptions& options) : options_(options) {}

    static Status no_iott() {
        return make_error(Errc::unsupported,
                          "stock Xen has no I/O translation table hypercall: register reusable "
                          "buffers through the netif control ring "
                          "(XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING, docs/protocol.md)");
    }

    const XenGuestOptions options_;
    xen::QuietLogger log_;
    xengntshr_handle* h_ = nullptr;
    DomId self_ = kDomIdInvalid;
    std::mutex mu_;
    xen::SharedPages pages_;
};

} // namespace

Result<std::unique_ptr<GuestHypervisor>> open_xen_guest(const XenGuestOptions& options) {
    if (options.peer >= kDomIdSelf)
        return make_error(Errc::invalid_argument,
                          "invalid peer domain " + std::to_string(options.peer));
    auto g = XenGuestHypervisor::open(options);
    if (!g) return std::move(g).error();
    if (auto ev = open_xen_event_channels(); !ev) return std::move(ev).error();

    if (options.self) {
        (*g)->set_self(*options.self);
    } else {
        auto xs = hv::open_xenstore(options.xenstore_path);
        if (!xs) {
            Error e = std::move(xs).error();
            e.message = "xenstore: " + e.message;
            return e;
        }
        auto id = xen::discover_self(**xs, xen::kCapabilitiesPath);
        if (!id) return std::move(id).error();
        (*g)->set_self(*id);
    }
    return std::unique_ptr<GuestHypervisor>(std::move(*g));
}

} // namespace dpnb::hv
