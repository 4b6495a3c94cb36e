// open_xenctrl_info(): DomainInfoSource over libxenctrl's xc_domain_getinfolist.
//
// On its own because xenctrl.h needs GNU extensions (anonymous unions in xen/hvm/save.h,
// __align8__ in xen/foreign/*.h): this file is built with -std=gnu++20 (xen.cmake), the
// rest of the project in strict C++20.
extern "C" { // the Xen libraries' headers have no C++ guards
#include <xenctrl.h>
}

#include <cerrno>
#include <string>

#include "xen/domains.hpp"
#include "xen/xen_errors.hpp"
#include "xen/xen_log.hpp"

namespace dpnb::hv::xen {

namespace {

class XenctrlInfo final : public DomainInfoSource {
public:
    XenctrlInfo() = default;
    XenctrlInfo(const XenctrlInfo&) = delete;
    XenctrlInfo& operator=(const XenctrlInfo&) = delete;
    ~XenctrlInfo() override {
        if (xch_ != nullptr) xc_interface_close(xch_);
    }

    Status open() {
        xch_ = xc_interface_open(log_.get(), log_.get(), 0);
        if (xch_ == nullptr) {
            const int err = errno;
            return device_error(kPrivcmdPath, "xc_interface_open", err, log_.last());
        }
        return ok();
    }

    Result<std::optional<DomainInfo>> first_from(DomId first) override {
        xc_domaininfo_t info{};
        const int n = xc_domain_getinfolist(xch_, first, 1, &info);
        if (n < 0) {
            const int err = errno;
            const Errc code = (err == EPERM || err == EACCES) ? Errc::permission_denied : Errc::io;
            return call_error(code, "xc_domain_getinfolist(" + std::to_string(first) + ")", err,
                              log_.last());
        }
        if (n == 0) return std::optional<DomainInfo>{};
        return std::optional<DomainInfo>(DomainInfo{
            static_cast<DomId>(info.domain),
            (info.flags & XEN_DOMINF_dying) != 0,
            (info.flags & XEN_DOMINF_shutdown) != 0,
        });
    }

private:
    QuietLogger log_;
    xc_interface* xch_ = nullptr;
};

} // namespace

Result<std::unique_ptr<DomainInfoSource>> open_xenctrl_info() {
    auto x = std::make_unique<XenctrlInfo>();
    Status st = x->open();
    if (!st) return std::move(st).error();
    return std::unique_ptr<DomainInfoSource>(std::move(x));
}

} // namespace dpnb::hv::xen
