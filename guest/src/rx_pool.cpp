// The RX buffer pool: pages joining (a grant and a registration in reuse mode), buffers
// handed out and coming back, the stack's hold FIFO, and pages leaving (the registration
// removed, retried while the backend has a buffer in flight; end of access; free).
#include "dpnb/netfront/rx_pool.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace dpnb::netfront {

using Outcome = PageRegistrar::Outcome;

Outcome IottRegistrar::add(hv::GrantRef ref) {
    Status st = hv_.iott_add(backend_, ref);
    if (st) return Outcome::done;
    spdlog::debug("netfront: iott_add of grant {}: {}", ref, st.error().describe());
    return Outcome::failed;
}

Outcome IottRegistrar::remove(hv::GrantRef ref) {
    Status st = hv_.iott_remove(backend_, ref);
    if (st) return Outcome::done;
    if (st.error().code == Errc::busy) return Outcome::busy;
    if (st.error().code != Errc::not_found)
        spdlog::warn("netfront: iott_remove of grant {}: {}", ref, st.error().describe());
    return Outcome::failed; // not in the table (any more)
}

RxBufferPool::RxBufferPool(hv::GuestHypervisor& hv, const RxPoolConfig& config, Counters& counters)
    : hv_(hv), config_(config), counters_(counters) {
    if (config_.buffer_size != 4096 && config_.buffer_size != 2048) config_.buffer_size = 4096;
}

RxBufferPool::~RxBufferPool() {
    drop_held();
    for (std::uint32_t i = 0; i < pages_.size(); ++i)
        if (pages_[i].state == PageState::active && pages_[i].out == 0) retire(i);
    std::uint32_t leaked = 0;
    for (const Page& p : pages_)
        leaked += p.state != PageState::unused;
    if (leaked != 0)
        spdlog::warn("netfront: {} RX pool page(s) still in use by the backend at exit; their "
                     "memory is not reused",
                     leaked);
}

hv::GrantRef RxBufferPool::page_gref(BufferId id) const {
    return pages_[buffers_[id].page_index].gref;
}

bool RxBufferPool::registered(BufferId id) const {
    return pages_[buffers_[id].page_index].reg == Reg::registered;
}

void RxBufferPool::forget_registrations() {
    for (Page& p : pages_)
        p.reg = Reg::none;
    completions_.clear();
    if (registrar_ != nullptr) registrar_->collect(completions_); // drop late answers
    completions_.clear();
}

void RxBufferPool::apply_add(Page& p, Outcome o) {
    switch (o) {
    case Outcome::done:
        p.reg = Reg::registered;
        break;
    case Outcome::pending:
        p.reg = Reg::adding;
        break;
    case Outcome::busy:
    case Outcome::failed:
        // Refused (no table, table full): the page still serves, by grant copy.
        p.reg = Reg::none;
        counters_.add(Counter::pool_register_failures);
        break;
    }
}

Result<std::uint32_t> RxBufferPool::add_page() {
    auto mem = hv_.alloc_pages(1);
    if (!mem) return std::move(mem).error();
    Page page;
    page.mem = mem->base;
    if (config_.reuse) {
        auto gref = hv_.grant_access(config_.backend, page.mem, false);
        if (!gref) {
            (void)hv_.free_pages(*mem);
            return std::move(gref).error();
        }
        page.gref = *gref;
    }
    page.state = PageState::active;
    page.fresh = true;

    std::uint32_t index;
    if (!unused_pages_.empty()) {
        index = unused_pages_.back();
        unused_pages_.pop_back();
        pages_[index] = page;
    } else {
        index = static_cast<std::uint32_t>(pages_.size());
        pages_.push_back(page);
        buffers_.resize(buffers_.size() + per_page());
    }
    if (page.gref != hv::kGrantRefInvalid) page_of_gref_[page.gref] = index;
    for (std::uint32_t k = 0; k < per_page(); ++k) {
        RxBuffer& b = buffers_[index * per_page() + k];
        b = RxBuffer{};
        b.page = page.mem;
        b.offset = static_cast<std::uint16_t>(k * config_.buffer_size);
        b.size = config_.buffer_size;
        b.page_index = index;
    }
    // The first buffer ends up on top of the free list, so it is taken first.
    for (std::uint32_t k = per_page(); k-- > 0;)
        free_.push_back(index * per_page() + k);
    ++active_;
    ++idle_pages_;
    counters_.add(Counter::pool_pages_added);
    if (config_.reuse && registrar_ != nullptr)
        apply_add(pages_[index], registrar_->add(pages_[index].gref));
    return index;
}

Result<BufferId> RxBufferPool::take() {
    if (free_.empty()) {
        auto page = add_page();
        if (!page) return std::move(page).error();
    }
    const BufferId id = free_.back();
    free_.pop_back();
    RxBuffer& b = buffers_[id];
    Page& p = pages_[b.page_index];
    b.out = true;
    if (p.out++ == 0) --idle_pages_;
    counters_.add(Counter::rx_posts);
    if (config_.reuse) {
        if (p.fresh)
            counters_.add(Counter::reuse_misses);
        else if (p.reg == Reg::registered)
            counters_.add(Counter::reuse_hits);
        else
            counters_.add(Counter::unregistered_posts);
    }
    p.fresh = false;
    return id;
}

void RxBufferPool::give_back(BufferId id) {
    if (id >= buffers_.size() || !buffers_[id].out) return; // never twice
    RxBuffer& b = buffers_[id];
    b.out = false;
    Page& p = pages_[b.page_index];
    --p.out;
    if (p.state == PageState::active) {
        free_.push_back(id);
        if (p.out == 0) ++idle_pages_;
    } else if (p.state == PageState::retiring) {
        try_finish(b.page_index);
    }
}

void RxBufferPool::hold(std::span<const BufferId> ids) {
    if (config_.hold_depth == 0) {
        for (BufferId id : ids)
            give_back(id);
        return;
    }
    HeldFrame frame;
    for (BufferId id : ids) {
        if (frame.count == kMaxFrameSlots) {
            give_back(id);
            continue;
        }
        frame.ids[frame.count++] = id;
    }
    held_.push_back(frame);
    while (held_.size() > config_.hold_depth) {
        const HeldFrame old = held_.front();
        held_.pop_front();
        for (std::uint8_t i = 0; i < old.count; ++i)
            give_back(old.ids[i]);
    }
}

void RxBufferPool::drop_held() {
    while (!held_.empty()) {
        const HeldFrame old = held_.front();
        held_.pop_front();
        for (std::uint8_t i = 0; i < old.count; ++i)
            give_back(old.ids[i]);
    }
}

void RxBufferPool::drop_free_buffers_of(std::uint32_t page) {
    const BufferId first = page * per_page();
    const BufferId last = first + per_page();
    std::erase_if(free_, [&](BufferId id) { return id >= first && id < last; });
}

void RxBufferPool::request_removal(Page& p) {
    if (p.reg != Reg::registered) return; // none, or an answer is pending
    if (registrar_ == nullptr) {
        p.reg = Reg::none;
        return;
    }
    switch (registrar_->remove(p.gref)) {
    case Outcome::done:
    case Outcome::failed:
        p.reg = Reg::none;
        break;
    case Outcome::pending:
        p.reg = Reg::removing;
        break;
    case Outcome::busy:
        counters_.add(Counter::pool_removals_refused);
        break;
    }
}

void RxBufferPool::retire(std::uint32_t page) {
    Page& p = pages_[page];
    if (p.state != PageState::active) return;
    drop_free_buffers_of(page);
    if (p.out == 0) --idle_pages_;
    --active_;
    p.state = PageState::retiring;
    retiring_.push_back(page);
    // Tried at once: refused while the backend has one of the page's buffers in flight.
    request_removal(p);
    try_finish(page);
}

void RxBufferPool::try_finish(std::uint32_t page) {
    Page& p = pages_[page];
    if (p.state != PageState::retiring || p.out != 0 || p.reg != Reg::none) return;
    if (p.gref != hv::kGrantRefInvalid) {
        Status st = hv_.end_access(p.gref);
        if (!st) {
            if (st.error().code == Errc::busy) counters_.add(Counter::grants_deferred);
            return; // retried by maintain()
        }
        page_of_gref_.erase(p.gref);
        p.gref = hv::kGrantRefInvalid;
    }
    if (Status st = hv_.free_pages(hv::GuestPages{p.mem, 1}); !st)
        spdlog::error("netfront: freeing an RX pool page: {}", st.error().describe());
    p = Page{};
    unused_pages_.push_back(page);
    std::erase(retiring_, page);
    counters_.add(Counter::pool_pages_removed);
}

void RxBufferPool::maintain() {
    if (registrar_ != nullptr) {
        completions_.clear();
        registrar_->collect(completions_);
        for (const PageRegistrar::Completion& c : completions_) {
            auto it = page_of_gref_.find(c.ref);
            if (it == page_of_gref_.end()) continue;
            Page& p = pages_[it->second];
            if (c.add && p.reg == Reg::adding) {
                apply_add(p, c.outcome);
                if (p.state == PageState::retiring) request_removal(p);
            } else if (!c.add && p.reg == Reg::removing) {
                if (c.outcome == Outcome::busy) {
                    p.reg = Reg::registered; // retried below
                    counters_.add(Counter::pool_removals_refused);
                } else {
                    p.reg = Reg::none;
                }
            }
            if (p.state == PageState::retiring) try_finish(it->second);
        }
    }
    if (!retiring_.empty()) {
        const std::vector<std::uint32_t> pending = retiring_; // try_finish() edits the list
        for (std::uint32_t page : pending) {
            request_removal(pages_[page]);
            try_finish(page);
        }
    }
    if (config_.target_pages == 0) return;
    // Shrink on its own only by pages whose buffers are all free: a page with a buffer out
    // is in use, and retiring it would only force a miss when that buffer comes back.
    for (std::uint32_t i = 0;
         active_ > config_.target_pages && idle_pages_ > 0 && i < pages_.size(); ++i)
        if (pages_[i].state == PageState::active && pages_[i].out == 0) retire(i);
}

void RxBufferPool::set_target_pages(std::uint32_t pages) {
    config_.target_pages = pages;
    maintain();
    // Still too many: drain pages in use as well, those with the fewest buffers out first.
    while (active_ > pages) {
        std::uint32_t best = 0;
        bool found = false;
        for (std::uint32_t i = 0; i < pages_.size(); ++i) {
            if (pages_[i].state != PageState::active) continue;
            if (!found || pages_[i].out < pages_[best].out) best = i;
            found = true;
        }
        if (!found) break;
        retire(best);
    }
}

void RxBufferPool::release_all() {
    drop_held();
    for (std::uint32_t i = 0; i < pages_.size(); ++i)
        if (pages_[i].state == PageState::active) retire(i);
}

PoolStats RxBufferPool::stats() const {
    PoolStats s;
    for (const Page& p : pages_) {
        if (p.state == PageState::unused) continue;
        ++s.pages;
        s.active_pages += p.state == PageState::active;
        s.retiring_pages += p.state == PageState::retiring;
        s.registered_pages += p.reg == Reg::registered || p.reg == Reg::removing;
        s.buffers_out += p.out;
    }
    s.buffers_free = static_cast<std::uint32_t>(free_.size());
    s.target_pages = config_.target_pages;
    s.held_frames = static_cast<std::uint32_t>(held_.size());
    return s;
}

} // namespace dpnb::netfront
