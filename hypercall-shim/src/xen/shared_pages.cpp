// SharedPages: which gntalloc page has which grant, and which grants are held out.
#include "xen/shared_pages.hpp"

#include <string>

namespace dpnb::hv::xen {

Status SharedPages::add(std::byte* base, std::span<const GrantRef> refs) {
    const auto key = reinterpret_cast<std::uintptr_t>(base);
    if (base == nullptr || refs.empty() || key % kPageSize != 0)
        return make_error(Errc::invalid_argument, "shared pages: bad allocation");
    if (by_base_.contains(key))
        return make_error(Errc::exists, "shared pages: allocation recorded twice");
    for (const GrantRef r : refs)
        if (by_ref_.contains(r))
            return make_error(Errc::exists,
                              "shared pages: grant " + std::to_string(r) + " recorded twice");
    Allocation a{base, {refs.begin(), refs.end()}, std::vector<bool>(refs.size(), false)};
    for (std::uint32_t i = 0; i < refs.size(); ++i)
        by_ref_.emplace(refs[i], Where{key, i});
    by_base_.emplace(key, std::move(a));
    return ok();
}

Status SharedPages::remove(const std::byte* base, std::uint32_t count) {
    auto it = by_base_.find(reinterpret_cast<std::uintptr_t>(base));
    if (it == by_base_.end() || it->second.refs.size() != count)
        return make_error(Errc::invalid_argument, "free_pages: not an allocation of ours");
    for (std::size_t i = 0; i < count; ++i)
        if (it->second.held[i])
            return make_error(Errc::busy, "free_pages: grant " +
                                              std::to_string(it->second.refs[i]) +
                                              " is still held out: end_access() it first");
    for (const GrantRef r : it->second.refs)
        by_ref_.erase(r);
    by_base_.erase(it);
    return ok();
}

Result<GrantRef> SharedPages::grant(const std::byte* page) {
    const auto addr = reinterpret_cast<std::uintptr_t>(page);
    auto it = by_base_.upper_bound(addr);
    if (addr % kPageSize != 0 || it == by_base_.begin())
        return make_error(Errc::invalid_argument, "grant_access: not a page we shared");
    --it;
    const std::size_t index = (addr - it->first) / kPageSize;
    Allocation& a = it->second;
    if (index >= a.refs.size())
        return make_error(Errc::invalid_argument, "grant_access: not a page we shared");
    if (a.held[index])
        return make_error(Errc::exists, "grant_access: the page's grant " +
                                            std::to_string(a.refs[index]) +
                                            " is held out already (gntalloc has one grant per "
                                            "page)");
    a.held[index] = true;
    ++held_out_;
    return a.refs[index];
}

Status SharedPages::end(GrantRef ref) {
    auto w = by_ref_.find(ref);
    if (w == by_ref_.end())
        return make_error(Errc::not_found, "end_access: unknown grant " + std::to_string(ref));
    Allocation& a = by_base_.at(w->second.base);
    if (!a.held[w->second.index])
        return make_error(Errc::invalid_argument,
                          "end_access: grant " + std::to_string(ref) + " is not held out");
    a.held[w->second.index] = false;
    --held_out_;
    return ok();
}

std::vector<std::pair<std::byte*, std::uint32_t>> SharedPages::all() const {
    std::vector<std::pair<std::byte*, std::uint32_t>> out;
    out.reserve(by_base_.size());
    for (const auto& [key, a] : by_base_)
        out.emplace_back(a.base, static_cast<std::uint32_t>(a.refs.size()));
    return out;
}

} // namespace dpnb::hv::xen
