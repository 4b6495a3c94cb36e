// The control ring's plans carried out with grant copies and the persistent-grant table
// (ctrl_requests.hpp).
#include "dpnb/hv/ctrl_requests.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace dpnb::hv {

namespace ctrl = netif::ctrl;

CtrlRequests::CtrlRequests(GrantTable& gt, DomId guest, PersistentGrantTable* table,
                           std::uint32_t num_queues)
    : gt_(gt), guest_(guest), table_(table),
      handler_(ctrl::HandlerConfig{num_queues, table != nullptr,
                                   table != nullptr ? table->limits().max_entries : 0}) {}

bool CtrlRequests::copy_in(const ctrl::GuestCopy& c) {
    GrantCopySegment seg =
        GrantCopySegment::from_guest(guest_, c.gref, c.offset, buf_.data(), c.len);
    return gt_.copy(std::span(&seg, 1)) && seg.status == netif::gntst::kOkay;
}

ctrl::CtrlError CtrlRequests::add(const ctrl::Plan& plan) {
    if (!copy_in(plan.copy)) return ctrl::CtrlError::gref_list_unreadable;
    // Copied out already: the guest cannot change the list under us.
    std::vector<ctrl::Gref> list(plan.entries);
    std::memcpy(list.data(), buf_.data(), plan.copy.len);
    if (ctrl::CtrlError e = ctrl::Handler::check_gref_list(list); e != ctrl::CtrlError::none)
        return e;
    std::vector<StaticGrant> grants;
    grants.reserve(list.size());
    for (const ctrl::Gref& g : list)
        grants.push_back({g.ref, (g.flags & ctrl::kGrefReadonly) != 0});
    std::vector<StaticGrantStatus> st(list.size());
    if (!table_->add(grants, st) || !std::all_of(st.begin(), st.end(), [](StaticGrantStatus s) {
            return s == StaticGrantStatus::ok;
        }))
        return ctrl::CtrlError::gref_refused;
    grants_.added += list.size();
    return ctrl::CtrlError::none;
}

ctrl::CtrlError CtrlRequests::remove(const ctrl::Plan& plan, std::uint32_t& removed) {
    removed = 0;
    if (!copy_in(plan.copy)) return ctrl::CtrlError::gref_list_unreadable;
    std::vector<ctrl::Gref> list(plan.entries);
    std::memcpy(list.data(), buf_.data(), plan.copy.len);
    std::vector<GrantRef> refs(list.size());
    for (std::size_t i = 0; i < list.size(); ++i)
        refs[i] = list[i].ref;
    std::vector<StaticGrantStatus> st(list.size());
    auto r = table_->remove(refs, st);
    for (std::size_t i = 0; i < list.size(); ++i) {
        list[i].status = to_ctrl_status(st[i]);
        if (st[i] == StaticGrantStatus::busy) ++grants_.busy;
    }
    // The per-entry statuses go back into the guest's list page before the response.
    GrantCopySegment back =
        GrantCopySegment::to_guest(list.data(), guest_, plan.copy.gref, 0, plan.copy.len);
    const bool written = gt_.copy(std::span(&back, 1)) && back.status == netif::gntst::kOkay;
    if (r) {
        removed = *r;
        grants_.removed += removed;
    }
    if (!written) return ctrl::CtrlError::gref_list_unreadable;
    if (!r || removed != list.size()) return ctrl::CtrlError::gref_refused;
    return ctrl::CtrlError::none;
}

ctrl::Answer CtrlRequests::answer(const ctrl::Request& req) {
    const ctrl::Plan plan = handler_.begin(req);
    switch (plan.step) {
    case ctrl::Step::answer:
        return ctrl::Answer{plan.rsp, plan.error};
    case ctrl::Step::copy_key:
    case ctrl::Step::copy_mapping: {
        const bool copied = copy_in(plan.copy);
        return handler_.finish_hash(plan, copied, std::span(buf_.data(), plan.copy.len));
    }
    case ctrl::Step::add_grefs:
        return handler_.finish_grefs(plan, add(plan), 0);
    case ctrl::Step::del_grefs: {
        std::uint32_t removed = 0;
        const ctrl::CtrlError e = remove(plan, removed);
        return handler_.finish_grefs(plan, e, removed);
    }
    }
    return ctrl::Answer{plan.rsp, plan.error};
}

} // namespace dpnb::hv
