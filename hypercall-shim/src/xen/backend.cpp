// XenBackendHypervisor: what the daemon in dom0 or a driver domain gets from real Xen, and
// open_xen_backend(), which checks that every device is there before the daemon starts.
#include <cerrno>
#include <string>

#include "dpnb/hv/xen.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "xen/domains.hpp"
#include "xen/event_channels.hpp"
#include "xen/grant_table.hpp"
#include "xen/xen_errors.hpp"

namespace dpnb::hv {

namespace {

using xen::XenDomains;
using xen::XenEventChannels;
using xen::XenGrantTable;

class XenBackendHypervisor final : public BackendHypervisor {
public:
    XenBackendHypervisor(const XenOptions& options, std::unique_ptr<XenDomains> domains)
        : options_(options), domains_(std::move(domains)) {}

    std::string_view kind() const override { return "xen"; }
    DomId self() const override { return domains_->self(); }

    Result<std::unique_ptr<GrantTable>> open_grant_table() override {
        return open_xen_grant_table(options_.max_grants_per_handle);
    }

    Result<std::unique_ptr<EventChannels>> open_event_channels() override {
        return open_xen_event_channels();
    }

    Result<std::unique_ptr<Xenstore>> open_xenstore() override {
        return hv::open_xenstore(options_.xenstore_path);
    }

    Domains& domains() override { return *domains_; }

    // A new persistent-grant cache for one control ring (one vif) of `guest`, with a
    // grant-table handle of its own, used only by the control plane.
    Result<std::unique_ptr<TranslationTable>> open_translation_table(DomId guest) override {
        if (guest >= kDomIdSelf || guest == self())
            return make_error(Errc::invalid_argument,
                              "no translation table for domain " + std::to_string(guest));
        const PersistentGrantLimits& limits = options_.persistent_grants;
        auto mapper = XenGrantTable::open(limits.max_entries);
        if (!mapper) return std::move(mapper).error();
        auto table = PersistentGrantTable::create(std::move(*mapper), guest, limits);
        if (!table) return std::move(table).error();
        return std::unique_ptr<TranslationTable>(std::move(*table));
    }

private:
    const XenOptions options_;
    std::unique_ptr<XenDomains> domains_;
};

} // namespace

Result<std::unique_ptr<GrantTable>> open_xen_grant_table(std::uint32_t max_grants) {
    auto t = XenGrantTable::open(max_grants);
    if (!t) return std::move(t).error();
    return std::unique_ptr<GrantTable>(std::move(*t));
}

Result<std::unique_ptr<EventChannels>> open_xen_event_channels() {
    auto e = XenEventChannels::open();
    if (!e) return std::move(e).error();
    return std::unique_ptr<EventChannels>(std::move(*e));
}

Result<std::unique_ptr<BackendHypervisor>> open_xen_backend(const XenOptions& options) {
    // The devices first, so that "no Xen here" is the answer on a machine without Xen, and
    // "permission denied" the answer for a daemon that lacks the rights.
    if (auto gt = open_xen_grant_table(options.max_grants_per_handle); !gt)
        return std::move(gt).error();
    if (auto ev = open_xen_event_channels(); !ev) return std::move(ev).error();

    auto xs = hv::open_xenstore(options.xenstore_path);
    if (!xs) {
        Error e = std::move(xs).error();
        e.message = "xenstore: " + e.message;
        return e;
    }

    DomId self = kDom0;
    if (options.self) {
        self = *options.self;
    } else {
        auto id = xen::discover_self(**xs, xen::kCapabilitiesPath);
        if (!id) return std::move(id).error();
        self = *id;
    }

    // Optional: a driver domain may not have the privilege (XenDomains falls back).
    std::unique_ptr<xen::DomainInfoSource> info;
    if (auto xc = xen::open_xenctrl_info(); xc) info = std::move(*xc);
    auto domains = std::make_unique<XenDomains>(std::move(info), std::move(*xs), self);
    return std::unique_ptr<BackendHypervisor>(
        std::make_unique<XenBackendHypervisor>(options, std::move(domains)));
}

} // namespace dpnb::hv
