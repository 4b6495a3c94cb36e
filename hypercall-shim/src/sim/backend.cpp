// The backend face of the simulated hypervisor (BackendHypervisor "sim"): the process-wide
// state every handle shares (BackendCore), domain information, and connect_backend().
#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>

#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "sim/client.hpp"

namespace dpnb::hv::sim {

Result<Mapping> map_checked(int fd, std::size_t bytes, bool writable) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return sys_error(Errc::io, "fstat");
    if (bytes == 0 || static_cast<std::uint64_t>(st.st_size) < bytes)
        return make_error(Errc::protocol, "shared memory smaller than announced");
    return map_shared(fd, bytes, writable);
}

ForeignDomain::~ForeignDomain() {
    if (channel)
        (void)channel->call(proto::make_request(proto::Op::detach_guest, dom, instance), 0);
}

std::shared_ptr<ForeignDomain> BackendCore::foreign(DomId dom, std::int16_t& gntst) {
    const std::uint64_t word = registry_word(dom);
    std::shared_ptr<ForeignDomain> stale; // destroyed outside the lock (it talks to the server)
    std::lock_guard lock(mu_);
    auto it = cache_.find(dom);
    if ((word & registry::kExists) == 0 || (word & registry::kDying) != 0) {
        if (it != cache_.end()) {
            stale = std::move(it->second);
            cache_.erase(it);
        }
        gntst = netif::gntst::kBadDomain;
        return nullptr;
    }
    if (it != cache_.end()) {
        if (it->second->instance == registry::instance_of(word)) return it->second;
        stale = std::move(it->second);
        cache_.erase(it);
    }
    auto rsp = channel_->call(proto::make_request(proto::Op::attach_guest, dom), 4);
    if (!rsp) {
        gntst = rsp.error().code == Errc::not_found ? netif::gntst::kBadDomain
                                                    : netif::gntst::kGeneralError;
        return nullptr;
    }
    auto f = std::make_shared<ForeignDomain>();
    f->dom = dom;
    f->instance = rsp->reply.val[0];
    f->pages = static_cast<std::uint32_t>(rsp->reply.val[1]);
    f->entries = static_cast<std::uint32_t>(rsp->reply.val[2]);
    f->channel = channel_; // from here on, destruction detaches
    auto gnttab = map_checked(rsp->fds[1].get(), f->entries * sizeof(GrantWords), true);
    auto active = map_checked(rsp->fds[2].get(), f->entries * sizeof(ActiveEntry), true);
    auto ledger = map_checked(rsp->fds[3].get(), f->entries * sizeof(LedgerEntry), true);
    auto memory = map_checked(rsp->fds[0].get(), std::size_t{f->pages} * kPageSize, true);
    if (!gnttab || !active || !ledger || !memory) {
        gntst = netif::gntst::kGeneralError;
        return nullptr;
    }
    f->gnttab = std::move(*gnttab);
    f->active = std::move(*active);
    f->ledger = std::move(*ledger);
    f->memory = std::move(*memory);
    const std::string self_path = "/proc/self/fd/" + std::to_string(rsp->fds[0].get());
    f->memory_ro_fd.reset(::open(self_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f->memory_ro_fd) {
        gntst = netif::gntst::kGeneralError;
        return nullptr;
    }
    f->memory_fd = std::move(rsp->fds[0]);
    cache_.emplace(dom, f);
    return f;
}

PinResult BackendCore::pin(const ForeignDomain& f, GrantRef ref, bool writable) const {
    if (ref >= f.entries) return {netif::gntst::kBadGntref, 0};
    PinResult r = pin_grant(f.grant_memory(), ref, self_, writable, f.ledger_entry(ref));
    if (r.status != netif::gntst::kOkay) return r;
    // Pairs with the server's "mark dying, then count pins" (both sequentially consistent).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (registry_word(f.dom) != registry::make(f.instance, false)) {
        unpin_grant(f.grant_memory(), ref, writable, f.ledger_entry(ref));
        return {netif::gntst::kBadDomain, 0};
    }
    return r;
}

void BackendCore::unpin(const ForeignDomain& f, GrantRef ref, bool writable) const {
    unpin_grant(f.grant_memory(), ref, writable, f.ledger_entry(ref));
}

void BackendCore::forget_if_gone(DomId dom) {
    const std::uint64_t word = registry_word(dom);
    std::shared_ptr<ForeignDomain> stale;
    std::lock_guard lock(mu_);
    auto it = cache_.find(dom);
    if (it == cache_.end()) return;
    if ((word & registry::kExists) != 0 && registry::instance_of(word) == it->second->instance &&
        (word & registry::kDying) == 0)
        return;
    stale = std::move(it->second);
    cache_.erase(it);
}

namespace {

class SimDomains final : public Domains {
public:
    explicit SimDomains(std::shared_ptr<BackendCore> core) : core_(std::move(core)) {}

    Result<DomainState> state(DomId dom) override {
        const std::uint64_t word = core_->registry_word(dom);
        DomainState s;
        s.exists = (word & registry::kExists) != 0;
        s.dying = (word & registry::kDying) != 0;
        if (!s.exists || s.dying) core_->forget_if_gone(dom);
        return s;
    }

    Result<std::string> name(DomId dom) override {
        auto rsp = core_->channel()->call(proto::make_request(proto::Op::domain_name, dom), 0);
        if (!rsp) return std::move(rsp).error();
        return std::string(rsp->reply.text);
    }

    DomId self() const override { return core_->self(); }

private:
    std::shared_ptr<BackendCore> core_;
};

class SimBackendHypervisor final : public BackendHypervisor {
public:
    explicit SimBackendHypervisor(std::shared_ptr<BackendCore> core)
        : core_(std::move(core)), domains_(core_) {}

    std::string_view kind() const override { return "sim"; }
    DomId self() const override { return core_->self(); }

    Result<std::unique_ptr<GrantTable>> open_grant_table() override {
        return make_grant_table(core_);
    }
    Result<std::unique_ptr<EventChannels>> open_event_channels() override {
        return sim::open_event_channels(core_->channel());
    }
    Result<std::unique_ptr<Xenstore>> open_xenstore() override {
        return hv::open_xenstore(core_->xenstore_path());
    }
    Domains& domains() override { return domains_; }
    Result<std::unique_ptr<TranslationTable>> open_translation_table(DomId guest) override {
        return sim::open_translation_table(core_, guest);
    }

private:
    std::shared_ptr<BackendCore> core_;
    SimDomains domains_;
};

} // namespace

Result<std::unique_ptr<BackendHypervisor>> connect_backend(const std::string& dir, DomId self) {
    proto::Response hello;
    auto ch = proto::Channel::connect(dir, proto::Role::backend, self, &hello);
    if (!ch) return std::move(ch).error();
    auto registry = map_checked(hello.fds[0].get(), registry::kBytes, false);
    if (!registry) return std::move(registry).error();
    auto core = std::make_shared<BackendCore>(std::move(*ch), self, std::move(*registry),
                                              std::string(hello.reply.text));
    return std::unique_ptr<BackendHypervisor>(new SimBackendHypervisor(std::move(core)));
}

} // namespace dpnb::hv::sim
