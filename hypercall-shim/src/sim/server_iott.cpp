// The I/O translation tables in the simulated hypervisor's server (Ram et al., VEE 2009,
// section 4.1): only the guest's hypercalls add and remove entries; an entry pins its grant
// as a mapping does; removal follows the race protocol of dpnb/hv/translation_table.hpp.
//
// An entry is writable when the grant is (no GTF_readonly): such an entry may receive NIC
// writes (RX buffers). A read-only grant gives a read-only entry, which acquire() hands out
// only to readers (need_write = false), e.g. for transmit.
#include <spdlog/spdlog.h>

#include <cstring>

#include "dpnb/hv/translation_table.hpp"
#include "sim/server.hpp"

namespace dpnb::hv::sim {
namespace {

constexpr std::uint8_t kPinnedReadOnly = 1;
constexpr std::uint8_t kPinnedWritable = 2;
constexpr std::uint32_t kMaxOpensPerConnection = 1024;

std::atomic_ref<std::uint32_t> flags_of(IottEntry& e) {
    return std::atomic_ref<std::uint32_t>(e.flags);
}

void bump_gen(IottEntry& e) {
    std::atomic_ref<std::uint32_t> gen(e.gen);
    gen.store(gen.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

} // namespace

Result<ServerImpl::Iott*> ServerImpl::iott_for(Domain& guest, DomId backend) {
    const auto key = std::make_pair(guest.id, backend);
    if (auto it = iotts_.find(key); it != iotts_.end()) return it->second.get();
    auto t = std::make_unique<Iott>();
    t->guest = guest.id;
    t->backend = backend;
    t->entries = guest.grant_entries;
    const std::size_t addr_bytes = std::size_t{t->entries} * sizeof(IottEntry);
    const std::size_t status_bytes = std::size_t{t->entries} * sizeof(std::uint32_t);
    auto addr_fd = create_memfd("dpnb-sim-iott-addr", addr_bytes);
    if (!addr_fd) return std::move(addr_fd).error();
    t->addr_fd = std::move(*addr_fd);
    auto addr = map_shared(t->addr_fd.get(), addr_bytes, true);
    if (!addr) return std::move(addr).error();
    t->addr = std::move(*addr);
    // From here on only our mapping can write the address subtable.
    if (Status st = seal_memfd(t->addr_fd.get(), true); !st) return st.error();
    auto status_fd = create_memfd("dpnb-sim-iott-status", status_bytes);
    if (!status_fd) return std::move(status_fd).error();
    t->status_fd = std::move(*status_fd);
    if (Status st = seal_memfd(t->status_fd.get(), false); !st) return st.error();
    auto status = map_shared(t->status_fd.get(), status_bytes, true);
    if (!status) return std::move(status).error();
    t->status = std::move(*status);
    t->pinned.assign(t->entries, 0);
    Iott* raw = t.get();
    iotts_.emplace(key, std::move(t));
    return raw;
}

// The hypervisor half of the race with TranslationTableView::acquire():
//   flags = 0 (seq_cst); read status (seq_cst); not zero: restore flags and refuse.
// Either acquire() saw our store and backed off, or we see its count.
Status ServerImpl::remove_entry(Iott& t, Domain& guest, GrantRef ref, bool restore_on_busy) {
    IottEntry& e = t.addr.as<IottEntry>()[ref];
    auto flags = flags_of(e);
    const std::uint32_t old = flags.load(std::memory_order_seq_cst);
    flags.store(0, std::memory_order_seq_cst);
    const std::uint32_t in_flight =
        std::atomic_ref<std::uint32_t>(t.status.as<std::uint32_t>()[ref])
            .load(std::memory_order_seq_cst);
    if (in_flight != 0) {
        if (restore_on_busy) flags.store(old, std::memory_order_seq_cst);
        return make_error(Errc::busy, "grant " + std::to_string(ref) + " has " +
                                          std::to_string(in_flight) +
                                          " buffer(s) in flight in the backend");
    }
    unpin_grant(guest.grant_memory(), ref, t.pinned[ref] == kPinnedWritable, nullptr);
    t.pinned[ref] = 0;
    bump_gen(e);
    return ok();
}

void ServerImpl::drop_iott_opener(ConnId conn, DomId guest) {
    for (auto& [key, t] : iotts_) {
        if (key.first != guest || t->openers.erase(conn) == 0) continue;
        // Nobody of this backend has the table open: whatever it counted in flight died
        // with it, and must not block the guest's removals for ever.
        if (t->openers.empty()) std::memset(t->status.data(), 0, t->status.size());
    }
}

bool ServerImpl::reap_guest_tables(Domain& guest) {
    bool done = true;
    for (auto& [key, t] : iotts_) {
        if (key.first != guest.id) continue;
        for (GrantRef ref = 0; ref < t->entries; ++ref)
            if (t->pinned[ref] != 0 && !remove_entry(*t, guest, ref, false)) done = false;
    }
    return done;
}

// The backend domain died: its tables' pins go as its mappings would (Xen releases a dying
// domain's grant mappings, gnttab_release_mappings()).
void ServerImpl::release_backend_tables(DomId backend) {
    for (auto& [key, t] : iotts_) {
        if (key.second != backend) continue;
        Domain* guest = find_domain(key.first);
        for (GrantRef ref = 0; ref < t->entries; ++ref) {
            if (t->pinned[ref] == 0) continue;
            IottEntry& e = t->addr.as<IottEntry>()[ref];
            flags_of(e).store(0, std::memory_order_seq_cst);
            if (guest != nullptr)
                unpin_grant(guest->grant_memory(), ref, t->pinned[ref] == kPinnedWritable, nullptr);
            t->pinned[ref] = 0;
            bump_gen(e);
        }
    }
}

void ServerImpl::erase_tables_of(DomId dom) {
    for (auto it = iotts_.begin(); it != iotts_.end();) {
        if (it->first.first == dom || it->first.second == dom)
            it = iotts_.erase(it);
        else
            ++it;
    }
}

Status ServerImpl::op_iott_open(Connection& conn, const proto::Request& req, ReplyBuilder& rb) {
    const std::uint64_t dom = req.arg[0];
    Domain* guest = dom < kFirstReservedDomId ? find_live_domain(static_cast<DomId>(dom)) : nullptr;
    if (guest == nullptr || guest->grant_entries == 0)
        return make_error(Errc::not_found, "no such guest: " + std::to_string(dom));
    if (conn.iott_opens[guest->id] >= kMaxOpensPerConnection)
        return make_error(Errc::busy, "too many open translation tables");
    auto t = iott_for(*guest, conn.dom);
    if (!t) return std::move(t).error();
    ++(*t)->openers[conn.id];
    ++conn.iott_opens[guest->id];
    rb.val(0, (*t)->entries);
    rb.val(1, guest->instance);
    rb.fds = {(*t)->addr_fd.get(), (*t)->status_fd.get(), guest->memory_fd.get()};
    return ok();
}

Status ServerImpl::op_iott_close(Connection& conn, const proto::Request& req, ReplyBuilder&) {
    if (req.arg[0] >= kFirstReservedDomId) return make_error(Errc::not_found, "no such guest");
    const auto guest = static_cast<DomId>(req.arg[0]);
    auto opened = conn.iott_opens.find(guest);
    if (opened == conn.iott_opens.end())
        return make_error(Errc::invalid_argument, "translation table not open");
    if (--opened->second == 0) conn.iott_opens.erase(opened);
    if (auto it = iotts_.find({guest, conn.dom}); it != iotts_.end()) {
        Iott& t = *it->second;
        auto mine = t.openers.find(conn.id);
        if (mine != t.openers.end() && --mine->second == 0) {
            t.openers.erase(mine);
            if (t.openers.empty()) std::memset(t.status.data(), 0, t.status.size());
        }
    }
    return ok();
}

Status ServerImpl::op_iott_add(Connection& conn, const proto::Request& req, ReplyBuilder&) {
    const std::uint64_t backend = req.arg[0];
    const std::uint64_t ref = req.arg[1];
    Domain* guest = find_live_domain(conn.dom);
    if (guest == nullptr) return make_error(Errc::closed, "domain is dying");
    if (backend >= kFirstReservedDomId || find_live_domain(static_cast<DomId>(backend)) == nullptr)
        return make_error(Errc::not_found, "no such backend domain: " + std::to_string(backend));
    if (ref >= guest->grant_entries)
        return make_error(Errc::invalid_argument, "grant reference out of range");
    auto t = iott_for(*guest, static_cast<DomId>(backend));
    if (!t) return std::move(t).error();
    Iott& table = **t;
    const auto gref = static_cast<GrantRef>(ref);
    if (table.pinned[gref] != 0)
        return make_error(Errc::exists,
                          "grant " + std::to_string(ref) + " is already in the table");

    // The same checks as a map by the backend, then a pin that keeps the grant's flags set.
    const GrantTableMemory gt = guest->grant_memory();
    const std::uint32_t header =
        std::atomic_ref<std::uint32_t>(gt.shared[gref].header).load(std::memory_order_acquire);
    const std::uint16_t flags = GrantWords::flags_of(header);
    if ((flags & netif::gtf::kTypeMask) != netif::gtf::kPermitAccess ||
        GrantWords::domid_of(header) != backend)
        return make_error(Errc::permission_denied, "grant " + std::to_string(ref) +
                                                       " is not granted to domain " +
                                                       std::to_string(backend));
    const bool writable = (flags & netif::gtf::kReadonly) == 0;
    const PinResult pin = pin_grant(gt, gref, static_cast<DomId>(backend), writable, nullptr);
    if (pin.status == netif::gntst::kBadPage)
        return make_error(Errc::invalid_argument,
                          "grant " + std::to_string(ref) + " names a frame outside the guest");
    if (pin.status != netif::gntst::kOkay)
        return make_error(Errc::permission_denied, "grant " + std::to_string(ref) +
                                                       " cannot be pinned (GNTST " +
                                                       std::to_string(pin.status) + ")");
    table.pinned[gref] = writable ? kPinnedWritable : kPinnedReadOnly;
    IottEntry& e = table.addr.as<IottEntry>()[gref];
    std::atomic_ref<std::uint64_t>(e.addr).store(std::uint64_t{pin.frame} * kPageSize,
                                                 std::memory_order_relaxed);
    bump_gen(e);
    flags_of(e).store(IottEntry::kValid | (writable ? IottEntry::kWritable : 0U),
                      std::memory_order_release);
    return ok();
}

Status ServerImpl::op_iott_remove(Connection& conn, const proto::Request& req, ReplyBuilder&) {
    const std::uint64_t backend = req.arg[0];
    const std::uint64_t ref = req.arg[1];
    Domain* guest = find_live_domain(conn.dom);
    if (guest == nullptr) return make_error(Errc::closed, "domain is dying");
    auto it = backend < kFirstReservedDomId ? iotts_.find({guest->id, static_cast<DomId>(backend)})
                                            : iotts_.end();
    if (it == iotts_.end())
        return make_error(Errc::not_found,
                          "no translation table for backend " + std::to_string(backend));
    Iott& t = *it->second;
    if (ref >= t.entries) return make_error(Errc::invalid_argument, "grant reference out of range");
    if (t.pinned[ref] == 0)
        return make_error(Errc::not_found, "grant " + std::to_string(ref) + " is not in the table");
    return remove_entry(t, *guest, static_cast<GrantRef>(ref), true);
}

} // namespace dpnb::hv::sim
