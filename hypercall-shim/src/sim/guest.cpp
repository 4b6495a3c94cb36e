// SimGuestHypervisor: a guest domain's side of the simulated hypervisor. The guest owns its
// memory (a memfd the server created) and writes its grant table with the real v1 layout
// the way Linux's gnttab does (drivers/xen/grant-table.c):
//   grant:  frame and domid first, then the flags with release order;
//   revoke: compare-and-swap the flags to 0, refused while the hypervisor has
//           GTF_reading/GTF_writing set (mapped, being copied, or held by the I/O
//           translation table).
// Grant references come from a free list; the first eight are reserved, as in Xen.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "sim/client.hpp"

namespace dpnb::hv::sim {
namespace {

namespace gtf = netif::gtf;

class SimGuestHypervisor final : public GuestHypervisor {
public:
    SimGuestHypervisor(std::shared_ptr<proto::Channel> ch, DomId self, std::string xs_path,
                       Mapping memory, std::uint32_t pages, Mapping gnttab, std::uint32_t entries)
        : ch_(std::move(ch)), self_(self), xs_path_(std::move(xs_path)), memory_(std::move(memory)),
          pages_(pages), gnttab_(std::move(gnttab)), entries_(entries), page_used_(pages, false),
          granted_(entries, false) {
        free_refs_.reserve(entries);
        for (GrantRef ref = entries; ref > kNrReservedGrantEntries; --ref)
            free_refs_.push_back(ref - 1); // lowest reference at the back: handed out first
    }

    std::string_view kind() const override { return "sim"; }
    DomId self() const override { return self_; }

    Result<GuestPages> alloc_pages(std::uint32_t count) override {
        if (count == 0 || count > pages_)
            return make_error(Errc::invalid_argument, "bad page count");
        std::lock_guard lock(mu_);
        std::uint32_t run = 0;
        for (std::uint32_t i = 0; i < pages_; ++i) {
            run = page_used_[i] ? 0 : run + 1;
            if (run == count) {
                const std::uint32_t first = i + 1 - count;
                std::fill_n(page_used_.begin() + first, count, true);
                return GuestPages{memory_.data() + std::size_t{first} * kPageSize, count};
            }
        }
        return make_error(Errc::busy, "guest memory exhausted");
    }

    Status free_pages(GuestPages pages) override {
        std::uint32_t first = 0;
        if (!page_index(pages.base, first) || pages.count == 0 || pages.count > pages_ - first)
            return make_error(Errc::invalid_argument, "not pages of this guest");
        std::lock_guard lock(mu_);
        for (std::uint32_t i = first; i < first + pages.count; ++i)
            if (!page_used_[i]) return make_error(Errc::invalid_argument, "page not allocated");
        std::fill_n(page_used_.begin() + first, pages.count, false);
        return ok();
    }

    Result<GrantRef> grant_access(DomId to, const std::byte* page, bool readonly) override {
        std::uint32_t frame = 0;
        if (!page_index(page, frame))
            return make_error(Errc::invalid_argument, "not a page of this guest");
        GrantRef ref;
        {
            std::lock_guard lock(mu_);
            if (free_refs_.empty()) return make_error(Errc::busy, "grant table full");
            ref = free_refs_.back();
            free_refs_.pop_back();
            granted_[ref] = true;
        }
        GrantWords& e = entries()[ref];
        std::atomic_ref<std::uint32_t>(e.frame).store(frame, std::memory_order_relaxed);
        const std::uint16_t flags = gtf::kPermitAccess | (readonly ? gtf::kReadonly : 0);
        // domid and flags share one word: storing it with release publishes the frame first.
        std::atomic_ref<std::uint32_t>(e.header).store(GrantWords::make_header(flags, to),
                                                       std::memory_order_release);
        return ref;
    }

    Status end_access(GrantRef ref) override {
        std::lock_guard lock(mu_);
        if (ref >= entries_ || !granted_[ref])
            return make_error(Errc::invalid_argument,
                              "grant " + std::to_string(ref) + " is not in use");
        std::atomic_ref<std::uint32_t> header(entries()[ref].header);
        std::uint32_t seen = header.load(std::memory_order_acquire);
        for (;;) {
            if ((GrantWords::flags_of(seen) & (gtf::kReading | gtf::kWriting)) != 0)
                return make_error(Errc::busy, "grant " + std::to_string(ref) +
                                                  " is still in use by its grantee");
            const std::uint32_t revoked = seen & 0xFFFF0000U; // flags 0, domid kept
            if (header.compare_exchange_weak(seen, revoked, std::memory_order_seq_cst,
                                             std::memory_order_acquire))
                break;
        }
        granted_[ref] = false;
        free_refs_.push_back(ref);
        return ok();
    }

    Status iott_add(DomId backend, GrantRef ref) override {
        auto rsp = ch_->call(proto::make_request(proto::Op::iott_add, backend, ref), 0);
        if (!rsp) return std::move(rsp).error();
        return ok();
    }

    Status iott_remove(DomId backend, GrantRef ref) override {
        auto rsp = ch_->call(proto::make_request(proto::Op::iott_remove, backend, ref), 0);
        if (!rsp) return std::move(rsp).error();
        return ok();
    }

    Result<std::unique_ptr<EventChannels>> open_event_channels() override {
        return sim::open_event_channels(ch_);
    }
    Result<std::unique_ptr<Xenstore>> open_xenstore() override {
        return hv::open_xenstore(xs_path_);
    }

private:
    GrantWords* entries() const { return gnttab_.as<GrantWords>(); }

    bool page_index(const std::byte* p, std::uint32_t& index) const {
        const auto base = reinterpret_cast<std::uintptr_t>(memory_.data());
        const auto addr = reinterpret_cast<std::uintptr_t>(p);
        if (addr < base || addr - base >= std::size_t{pages_} * kPageSize ||
            (addr - base) % kPageSize != 0)
            return false;
        index = static_cast<std::uint32_t>((addr - base) / kPageSize);
        return true;
    }

    std::shared_ptr<proto::Channel> ch_;
    DomId self_;
    std::string xs_path_;
    Mapping memory_;
    std::uint32_t pages_;
    Mapping gnttab_;
    std::uint32_t entries_;
    std::mutex mu_; // the allocators below; grant entries themselves are atomics
    std::vector<bool> page_used_;
    std::vector<bool> granted_;
    std::vector<GrantRef> free_refs_;
};

} // namespace

Result<std::unique_ptr<GuestHypervisor>> connect_guest(const std::string& dir, DomId dom) {
    proto::Response hello;
    auto ch = proto::Channel::connect(dir, proto::Role::guest, dom, &hello);
    if (!ch) return std::move(ch).error();
    const auto pages = static_cast<std::uint32_t>(hello.reply.val[1]);
    const auto entries = static_cast<std::uint32_t>(hello.reply.val[2]);
    auto memory = map_checked(hello.fds[0].get(), std::size_t{pages} * kPageSize, true);
    if (!memory) return std::move(memory).error();
    auto gnttab = map_checked(hello.fds[1].get(), std::size_t{entries} * sizeof(GrantWords), true);
    if (!gnttab) return std::move(gnttab).error();
    return std::unique_ptr<GuestHypervisor>(
        new SimGuestHypervisor(std::move(*ch), dom, std::string(hello.reply.text),
                               std::move(*memory), pages, std::move(*gnttab), entries));
}

} // namespace dpnb::hv::sim
