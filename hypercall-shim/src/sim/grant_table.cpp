// SimGrantTable: grant map, unmap and copy for a backend process, performed by
// hypervisor-side code in that process (as Xen's runs on the calling vCPU), with Xen's
// validation and status codes (xen/common/grant_table.c):
//   GNTST_bad_domain      the domain does not exist or is dying
//   GNTST_bad_gntref      ref beyond the guest's grant table
//   GNTST_general_error   entry not GTF_permit_access for us (revoked, wrong domain),
//                         writable map or copy into a GTF_readonly grant, unstable entry,
//                         a mixed read-only/writable map batch (as the Xen implementation)
//   GNTST_bad_page        the entry names a frame outside the guest's memory
//   GNTST_bad_copy_arg    offset + length beyond the page
//
// Each operation costs the calling thread what its Xen counterpart costs the calling vCPU
// (docs/simulator.md, "What a grant operation costs"):
//   copy   validate and pin each segment's grant, memmove, unpin: no system call; a
//          domain is looked up when a side's domid changes, once per batch as a rule;
//   map    pin each grant, then mmap the guest's pages (one mmap per run of consecutive
//          frames) into a VA window reserved once per handle, with their page-table entries
//          filled at once (MAP_POPULATE), as Xen's map writes the PTEs gntdev asked for;
//   unmap  replace the pages with the window's PROT_NONE reservation (one mmap, which
//          unmaps them with the TLB shootdown Xen's unmap also pays), then unpin.
// Mapping records and the domain lookup are reused from call to call: a steady map/unmap
// cycle allocates nothing and takes no lock besides the grant entries' own.
#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <array>
#include <cstring>
#include <vector>

#include "sim/client.hpp"

namespace dpnb::hv::sim {
namespace {

namespace gntst = netif::gntst;

// Virtual addresses for mappings: one PROT_NONE reservation per handle, carved into runs of
// pages with a next-fit search, as gntdev hands out offsets of its device file. A batch that
// does not fit gets a reservation of its own.
class MapWindow {
public:
    static constexpr std::uint32_t kPages = 4096; // gntdev's default limit per handle
    static constexpr int kReserve = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

    MapWindow() = default;
    MapWindow(const MapWindow&) = delete;
    MapWindow& operator=(const MapWindow&) = delete;
    ~MapWindow() {
        if (base_ != nullptr) ::munmap(base_, std::size_t{kPages} * kPageSize);
    }

    // `n` free contiguous pages, marked used; nullptr when the window has no such run.
    std::byte* take(std::uint32_t n) {
        if (!reserve() || n == 0 || n > kPages) return nullptr;
        for (std::uint32_t tried = 0; tried < kPages;) {
            if (cursor_ + n > kPages) {
                tried += kPages - cursor_;
                cursor_ = 0;
                continue;
            }
            std::uint32_t run = 0;
            while (run < n && !used(cursor_ + run))
                ++run;
            if (run == n) {
                for (std::uint32_t i = 0; i < n; ++i)
                    set(cursor_ + i, true);
                std::byte* p = base_ + std::size_t{cursor_} * kPageSize;
                cursor_ += n;
                return p;
            }
            tried += run + 1;
            cursor_ += run + 1;
        }
        return nullptr;
    }

    bool owns(const std::byte* p) const {
        return base_ != nullptr && p >= base_ && p < base_ + std::size_t{kPages} * kPageSize;
    }

    // Puts the reservation back over `n` pages at `p` (unmapping what was there) and frees
    // them. False if the kernel refused; the pages then stay marked used.
    bool give_back(std::byte* p, std::uint32_t n) {
        if (::mmap(p, std::size_t{n} * kPageSize, PROT_NONE, kReserve | MAP_FIXED, -1, 0) ==
            MAP_FAILED)
            return false;
        const auto first = static_cast<std::uint32_t>((p - base_) / kPageSize);
        for (std::uint32_t i = 0; i < n; ++i)
            set(first + i, false);
        return true;
    }

private:
    bool reserve() {
        if (base_ != nullptr) return true;
        void* p = ::mmap(nullptr, std::size_t{kPages} * kPageSize, PROT_NONE, kReserve, -1, 0);
        if (p == MAP_FAILED) return false;
        base_ = static_cast<std::byte*>(p);
        return true;
    }
    bool used(std::uint32_t page) const { return (bits_[page / 64] >> (page % 64)) & 1U; }
    void set(std::uint32_t page, bool on) {
        const std::uint64_t bit = std::uint64_t{1} << (page % 64);
        bits_[page / 64] = on ? bits_[page / 64] | bit : bits_[page / 64] & ~bit;
    }

    std::byte* base_ = nullptr;
    std::uint32_t cursor_ = 0;
    std::array<std::uint64_t, kPages / 64> bits_{};
};

class SimGrantTable final : public GrantTable {
public:
    explicit SimGrantTable(std::shared_ptr<BackendCore> core) : core_(std::move(core)) {}
    ~SimGrantTable() override;

    GrantMapping map(std::span<const GrantMapRequest> reqs,
                     std::span<std::int16_t> status) override;
    Status unmap(GrantMapping& mapping) override;
    Status copy(std::span<GrantCopySegment> segs) override;
    std::uint64_t mapped_pages() const override { return mapped_pages_; }

private:
    struct Pin {
        std::shared_ptr<ForeignDomain> dom; // keeps its grant table mapped until the unpin
        GrantRef ref;
        std::uint32_t frame;
    };
    // One map() call's pages. Records are reused (their pin vectors keep their capacity);
    // `gen` changes with every use, so a stale or forged handle is refused.
    struct Record {
        std::byte* base = nullptr; // null: free
        std::uint32_t count = 0;
        std::uint32_t gen = 0;
        bool writable = false;
        std::vector<Pin> pins;
    };
    // The domains this handle used lately, as weak references: a domain that is gone is
    // never kept alive by the cache (BackendCore decides when it is dropped).
    struct Recent {
        DomId dom = kDomIdInvalid;
        std::uint64_t instance = 0;
        std::weak_ptr<ForeignDomain> ptr;
    };
    static constexpr std::size_t kRecent = 4;

    std::shared_ptr<ForeignDomain> lookup(DomId dom, std::int16_t& st);
    void unpin_all(const std::vector<Pin>& pins, bool writable) {
        for (const Pin& p : pins)
            core_->unpin(*p.dom, p.ref, writable);
    }
    bool map_pages(Record& rec);
    bool unmap_pages(const Record& rec);
    void release(Record& rec, std::uint32_t index);
    // The domain a copy batch's source or destination side used last, held for the batch
    // (Xen's gnttab_copy_lock_domains: a domain is looked up and RCU-locked when the domid
    // differs from the previous operation's, not per operation).
    struct BatchDomain {
        DomId dom = kDomIdInvalid;
        std::shared_ptr<ForeignDomain> ptr;
    };
    ForeignDomain* batch_lookup(BatchDomain& held, DomId dom, std::int16_t& st);
    std::int16_t copy_one(GrantCopySegment& seg, BatchDomain& src_dom, BatchDomain& dst_dom);

    std::shared_ptr<BackendCore> core_;
    std::array<Recent, kRecent> recent_{};
    std::size_t recent_next_ = 0;
    MapWindow window_;
    std::vector<Record> records_;
    std::vector<std::uint32_t> free_records_;
    std::uint64_t mapped_pages_ = 0;
};

SimGrantTable::~SimGrantTable() {
    // Like closing /dev/xen/gntdev: what is still mapped is unmapped and unpinned.
    if (mapped_pages_ != 0)
        spdlog::warn("sim grant table closed with {} page(s) still mapped", mapped_pages_);
    for (Record& rec : records_) {
        if (rec.base == nullptr) continue;
        if (!window_.owns(rec.base)) ::munmap(rec.base, std::size_t{rec.count} * kPageSize);
        unpin_all(rec.pins, rec.writable);
    }
}

// What Xen's rcu_lock_domain_by_id() is to a hypercall: the registry word says whether the
// domain still is the instance we hold; only a miss goes to BackendCore (a lock, and the
// server on a domain's first use).
std::shared_ptr<ForeignDomain> SimGrantTable::lookup(DomId dom, std::int16_t& st) {
    const std::uint64_t word = core_->registry_word(dom);
    const bool live = (word & registry::kExists) != 0 && (word & registry::kDying) == 0;
    for (Recent& r : recent_) {
        if (r.dom != dom) continue;
        if (live && r.instance == registry::instance_of(word))
            if (auto f = r.ptr.lock()) return f;
        r = Recent{};
        break;
    }
    auto f = core_->foreign(dom, st);
    if (f) {
        recent_[recent_next_] = Recent{dom, f->instance, f};
        recent_next_ = (recent_next_ + 1) % kRecent;
    }
    return f;
}

bool SimGrantTable::map_pages(Record& rec) {
    const std::size_t n = rec.pins.size();
    std::byte* base = window_.take(static_cast<std::uint32_t>(n));
    if (base == nullptr) {
        void* own = ::mmap(nullptr, n * kPageSize, PROT_NONE, MapWindow::kReserve, -1, 0);
        if (own == MAP_FAILED) return false;
        base = static_cast<std::byte*>(own);
    }
    rec.base = base;
    rec.count = static_cast<std::uint32_t>(n);
    const int prot = PROT_READ | (rec.writable ? PROT_WRITE : 0);
    // Consecutive frames of one guest are one mmap, as a run of PTEs in one hypercall.
    for (std::size_t i = 0; i < n;) {
        const Pin& first = rec.pins[i];
        std::size_t run = 1;
        while (i + run < n && rec.pins[i + run].dom == first.dom &&
               rec.pins[i + run].frame == first.frame + run)
            ++run;
        const int fd = rec.writable ? first.dom->memory_fd.get() : first.dom->memory_ro_fd.get();
        if (::mmap(base + i * kPageSize, run * kPageSize, prot,
                   MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd,
                   static_cast<off_t>(std::uint64_t{first.frame} * kPageSize)) == MAP_FAILED) {
            (void)unmap_pages(rec);
            rec.base = nullptr;
            return false;
        }
        i += run;
    }
    return true;
}

bool SimGrantTable::unmap_pages(const Record& rec) {
    if (window_.owns(rec.base)) return window_.give_back(rec.base, rec.count);
    return ::munmap(rec.base, std::size_t{rec.count} * kPageSize) == 0;
}

void SimGrantTable::release(Record& rec, std::uint32_t index) {
    rec.base = nullptr;
    rec.count = 0;
    rec.pins.clear();
    free_records_.push_back(index);
}

GrantMapping SimGrantTable::map(std::span<const GrantMapRequest> reqs,
                                std::span<std::int16_t> status) {
    const std::size_t n = std::min(reqs.size(), status.size());
    if (reqs.size() != status.size() || reqs.empty() || reqs.size() > UINT32_MAX / kPageSize) {
        for (std::size_t i = 0; i < n; ++i)
            status[i] = gntst::kGeneralError;
        return {};
    }
    const bool writable = reqs[0].writable;
    for (const GrantMapRequest& r : reqs) {
        if (r.writable != writable) {
            std::fill(status.begin(), status.end(), gntst::kGeneralError);
            return {};
        }
    }

    std::uint32_t index;
    if (!free_records_.empty()) {
        index = free_records_.back();
        free_records_.pop_back();
    } else {
        index = static_cast<std::uint32_t>(records_.size());
        records_.emplace_back();
    }
    Record& rec = records_[index];
    rec.writable = writable;
    rec.pins.reserve(reqs.size());
    bool failed = false;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        std::int16_t st = gntst::kOkay;
        auto dom = lookup(reqs[i].dom, st);
        PinResult pin{st, 0};
        if (dom) pin = core_->pin(*dom, reqs[i].ref, writable);
        status[i] = pin.status;
        if (pin.status != gntst::kOkay) {
            failed = true;
            continue;
        }
        rec.pins.push_back({std::move(dom), reqs[i].ref, pin.frame});
    }
    if (failed || !map_pages(rec)) {
        if (!failed) std::fill(status.begin(), status.end(), gntst::kGeneralError);
        unpin_all(rec.pins, writable);
        release(rec, index);
        return {};
    }
    ++rec.gen;
    mapped_pages_ += rec.count;
    return {rec.base, rec.count, (std::uint64_t{rec.gen} << 32) | (std::uint64_t{index} + 1)};
}

Status SimGrantTable::unmap(GrantMapping& mapping) {
    const std::uint64_t slot = mapping.handle & 0xFFFFFFFFU;
    const auto gen = static_cast<std::uint32_t>(mapping.handle >> 32);
    Record* rec = slot != 0 && slot <= records_.size() ? &records_[slot - 1] : nullptr;
    if (rec == nullptr || rec->base == nullptr || rec->gen != gen || rec->base != mapping.base ||
        rec->count != mapping.count)
        return make_error(Errc::invalid_argument, "not a mapping of this grant table");
    // Unmap before unpinning: once the guest can end access, we must not reach the page.
    if (!unmap_pages(*rec)) return sys_error(Errc::io, "unmapping a grant mapping");
    unpin_all(rec->pins, rec->writable);
    mapped_pages_ -= rec->count;
    release(*rec, static_cast<std::uint32_t>(slot - 1));
    mapping = {};
    return ok();
}

ForeignDomain* SimGrantTable::batch_lookup(BatchDomain& held, DomId dom, std::int16_t& st) {
    if (held.ptr && held.dom == dom) return held.ptr.get();
    held.ptr = lookup(dom, st);
    held.dom = dom;
    return held.ptr.get();
}

std::int16_t SimGrantTable::copy_one(GrantCopySegment& seg, BatchDomain& src_dom,
                                     BatchDomain& dst_dom) {
    constexpr std::uint16_t kKnown = GrantCopySegment::kSourceGref | GrantCopySegment::kDestGref;
    if ((seg.flags & ~kKnown) != 0) return gntst::kGeneralError;
    const bool src_gref = (seg.flags & GrantCopySegment::kSourceGref) != 0;
    const bool dst_gref = (seg.flags & GrantCopySegment::kDestGref) != 0;
    if ((src_gref && seg.source.foreign.offset + std::size_t{seg.len} > kPageSize) ||
        (dst_gref && seg.dest.foreign.offset + std::size_t{seg.len} > kPageSize))
        return gntst::kBadCopyArg;

    struct Side {
        ForeignDomain* dom = nullptr; // held by the batch
        GrantRef ref = 0;
        bool pinned = false;
        std::byte* ptr = nullptr;
    } src, dst;
    std::int16_t st = gntst::kOkay;
    // Per operation, as Xen's gnttab_copy_claim_buf / gnttab_copy_release_buf: validate and
    // pin the grant (the registry re-check after the pin stands for the domain's RCU lock),
    // then unpin after the copy.
    auto acquire = [&](Side& side, BatchDomain& held, const GrantCopySegment::Ptr& p,
                       bool writable) {
        side.dom = batch_lookup(held, p.foreign.domid, st);
        if (side.dom == nullptr) return false;
        const PinResult r = core_->pin(*side.dom, p.foreign.ref, writable);
        st = r.status;
        if (st != gntst::kOkay) return false;
        side.ref = p.foreign.ref;
        side.pinned = true;
        side.ptr = side.dom->memory.data() + std::size_t{r.frame} * kPageSize + p.foreign.offset;
        return true;
    };
    bool ok_src = true;
    bool ok_dst = true;
    if (src_gref)
        ok_src = acquire(src, src_dom, seg.source, false);
    else
        src.ptr = static_cast<std::byte*>(seg.source.virt);
    if (ok_src) {
        if (dst_gref)
            ok_dst = acquire(dst, dst_dom, seg.dest, true);
        else
            dst.ptr = static_cast<std::byte*>(seg.dest.virt);
    }
    if (ok_src && ok_dst && seg.len != 0) std::memmove(dst.ptr, src.ptr, seg.len);
    if (dst.pinned) core_->unpin(*dst.dom, dst.ref, true);
    if (src.pinned) core_->unpin(*src.dom, src.ref, false);
    return st;
}

Status SimGrantTable::copy(std::span<GrantCopySegment> segs) {
    BatchDomain src_dom;
    BatchDomain dst_dom;
    for (GrantCopySegment& seg : segs)
        seg.status = copy_one(seg, src_dom, dst_dom);
    return ok();
}

} // namespace

std::unique_ptr<GrantTable> make_grant_table(std::shared_ptr<BackendCore> core) {
    return std::make_unique<SimGrantTable>(std::move(core));
}

} // namespace dpnb::hv::sim
