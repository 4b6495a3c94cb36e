// XenDomains and discover_self (see domains.hpp).
#include "xen/domains.hpp"

#include <cerrno>
#include <charconv>
#include <fstream>
#include <string>

namespace dpnb::hv::xen {

namespace {

bool printable_name(const std::string& s) {
    if (s.empty() || s.size() > 256) return false;
    for (const char c : s)
        if (c < 0x20 || c > 0x7e) return false;
    return true;
}

std::string domain_home(DomId dom) {
    return "/local/domain/" + std::to_string(dom);
}

} // namespace

XenDomains::XenDomains(std::unique_ptr<DomainInfoSource> info, std::unique_ptr<Xenstore> xs,
                       DomId self)
    : info_(std::move(info)), xs_(std::move(xs)), self_(self) {
    if (info_ == nullptr) fallback_reason_ = "libxenctrl is not available";
}

Result<DomainState> XenDomains::state(DomId dom) {
    if (info_ != nullptr) {
        auto r = info_->first_from(dom);
        if (r) {
            const std::optional<DomainInfo>& d = *r;
            // The answer is the next existing domain when `dom` is gone.
            if (!d || d->domid != dom) return DomainState{};
            return DomainState{true, d->dying, d->shutdown};
        }
        if (r.error().code != Errc::permission_denied) return std::move(r).error();
        fallback_reason_ = r.error().describe();
        info_.reset();
    }
    return state_from_xenstore(dom);
}

Result<DomainState> XenDomains::state_from_xenstore(DomId dom) {
    auto r = xs_->read(kNoTxn, domain_home(dom));
    if (r) return DomainState{true, false, false};
    switch (r.error().code) {
    case Errc::not_found:
        return DomainState{};
    case Errc::permission_denied: // exists, but is not ours to read
        return DomainState{true, false, false};
    default:
        return std::move(r).error();
    }
}

Result<std::string> XenDomains::name(DomId dom) {
    auto r = xs_->read(kNoTxn, domain_home(dom) + "/name");
    if (!r) return std::move(r).error();
    if (!printable_name(*r))
        return make_error(Errc::protocol, domain_home(dom) + "/name is not a printable name");
    return std::move(*r);
}

std::optional<DomId> parse_domid(std::string_view text) {
    unsigned value = 0;
    const char* end = text.data() + text.size();
    if (text.empty() || text.size() > 5 || text[0] < '0' || text[0] > '9') return std::nullopt;
    if (text.size() > 1 && text[0] == '0') return std::nullopt; // no leading zeros
    const auto [p, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc{} || p != end || value >= kDomIdSelf) return std::nullopt;
    return static_cast<DomId>(value);
}

Result<DomId> discover_self(Xenstore& xs, const char* capabilities_path) {
    std::string why;
    auto r = xs.read(kNoTxn, "domid");
    if (r) {
        if (auto id = parse_domid(*r)) return *id;
        why = "xenstore \"domid\" holds \"" + r->substr(0, 16) + "\", not a domain id";
    } else {
        why = "xenstore \"domid\": " + r.error().describe();
    }
    // A short line ("control_d\n" in dom0). Read with getline: GCC 12 at -O2 sees a
    // "potential null pointer dereference" inside istreambuf_iterator (-Wnull-dereference).
    std::ifstream caps(capabilities_path);
    std::string text;
    if (caps && std::getline(caps, text) && text.find("control_d") != std::string::npos)
        return kDom0;
    return make_error(Errc::not_found, "cannot tell this domain's id (" + why + "; " +
                                           capabilities_path +
                                           " does not say control_d): set it explicitly");
}

} // namespace dpnb::hv::xen
