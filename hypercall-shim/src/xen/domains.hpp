// XenDomains: Domains over libxenctrl and xenstore, and how a backend learns its own
// domain id.
//
// state(): one xc_domain_getinfolist(dom, 1) (Xen 4.17 has no single-domain call; both it
// and xc_domain_getinfo answer with the next domain when `dom` does not exist, so the
// answer's domid is checked). Asking for domain information is privileged (dom0, or a
// domain the XSM policy allows). In a driver domain the call is refused (EPERM), and state()
// falls back for good to xenstore: a domain exists while /local/domain/<dom> does
// (xenstored answers ENOENT for a missing node and EACCES for one we may not read); dying
// and shutdown are then unknown and reported false. Teardown in a driver domain therefore
// follows the toolstack, which removes the vif's backend nodes and /local/domain/<dom> when
// it destroys the guest, as Linux's netback in a driver domain does.
//
// name(): /local/domain/<dom>/name, checked to be printable.
//
// Thread safety: one thread (the control plane).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "dpnb/hv/domains.hpp"
#include "dpnb/hv/xenstore.hpp"

namespace dpnb::hv::xen {

struct DomainInfo {
    DomId domid;
    bool dying;
    bool shutdown;
};

// Where domain information comes from: libxenctrl on Xen, a fake in unit tests.
class DomainInfoSource {
public:
    virtual ~DomainInfoSource() = default;
    // The first domain whose id is `first` or more (nullopt when there is none).
    // Errc::permission_denied when this domain may not ask.
    virtual Result<std::optional<DomainInfo>> first_from(DomId first) = 0;
};

// libxenctrl's xc_domain_getinfolist. Errc::unsupported without /dev/xen/privcmd.
Result<std::unique_ptr<DomainInfoSource>> open_xenctrl_info();

class XenDomains final : public Domains {
public:
    // `info` may be null (libxenctrl unavailable): xenstore answers alone.
    XenDomains(std::unique_ptr<DomainInfoSource> info, std::unique_ptr<Xenstore> xs, DomId self);

    Result<DomainState> state(DomId dom) override;
    Result<std::string> name(DomId dom) override;
    DomId self() const override { return self_; }

    // False once state() answers from xenstore alone; why, in fallback_reason().
    bool has_domain_info() const { return info_ != nullptr; }
    const std::string& fallback_reason() const { return fallback_reason_; }

private:
    Result<DomainState> state_from_xenstore(DomId dom);

    std::unique_ptr<DomainInfoSource> info_;
    std::unique_ptr<Xenstore> xs_;
    DomId self_;
    std::string fallback_reason_;
};

// This domain's id: xenstore's "domid" under our home (a relative path, which xenstored
// resolves against the caller's /local/domain/<id>; dom0's is written by xen-init-dom0,
// a driver domain's by the toolstack); failing that, 0 when `capabilities_path`
// (/proc/xen/capabilities) says "control_d". Errc::not_found when neither tells.
Result<DomId> discover_self(Xenstore& xs, const char* capabilities_path);

// Parses a domain id as xenstore holds it: decimal, below DOMID_FIRST_RESERVED (0x7FF0).
std::optional<DomId> parse_domid(std::string_view text);

} // namespace dpnb::hv::xen
