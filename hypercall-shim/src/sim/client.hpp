// The client side of the simulated hypervisor, shared by the backend and guest faces:
// the backend's per-process state (BackendCore: the domain registry and the hypervisor-side
// view of every guest it touches) and the factories of each interface implementation.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "dpnb/hv/event_channel.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/translation_table.hpp"
#include "sim/grant_pin.hpp"
#include "sim/os.hpp"
#include "sim/protocol.hpp"

namespace dpnb::hv::sim {

// Maps `bytes` of `fd` after checking that the file is that large (a mapping past its end
// would fault on access).
Result<Mapping> map_checked(int fd, std::size_t bytes, bool writable);

// What the backend process's hypervisor-side code holds of one guest: its grant table,
// active table and memory, and this process's pin ledger. Never handed to daemon code.
// Destroyed when no mapping of the guest remains and the cache has dropped it.
struct ForeignDomain {
    DomId dom = kDomIdInvalid;
    std::uint64_t instance = 0;
    std::uint32_t pages = 0;
    std::uint32_t entries = 0;
    UniqueFd memory_fd;
    // The same memory opened read-only: mappings of read-only grants come from it, so that
    // they cannot be made writable later (mprotect) either.
    UniqueFd memory_ro_fd;
    Mapping gnttab, active, ledger, memory;
    std::shared_ptr<proto::Channel> channel;

    GrantTableMemory grant_memory() const {
        return {gnttab.as<GrantWords>(), active.as<ActiveEntry>(), entries, pages};
    }
    LedgerEntry* ledger_entry(GrantRef ref) const { return ledger.as<LedgerEntry>() + ref; }

    ForeignDomain() = default;
    ForeignDomain(const ForeignDomain&) = delete;
    ForeignDomain& operator=(const ForeignDomain&) = delete;
    ~ForeignDomain(); // tells the server this process holds nothing of the guest any more
};

class BackendCore {
public:
    BackendCore(std::shared_ptr<proto::Channel> channel, DomId self, Mapping registry,
                std::string xenstore_path)
        : channel_(std::move(channel)), self_(self), registry_(std::move(registry)),
          xenstore_path_(std::move(xenstore_path)) {}

    DomId self() const { return self_; }
    const std::shared_ptr<proto::Channel>& channel() const { return channel_; }
    const std::string& xenstore_path() const { return xenstore_path_; }

    std::uint64_t registry_word(DomId dom) const {
        return registry::load(registry_.as<const std::uint64_t>(), dom);
    }

    // The guest `dom`, attached on first use. Null when it does not exist or is dying, with
    // `gntst` set to the GNTST_* status a grant operation on it gets.
    std::shared_ptr<ForeignDomain> foreign(DomId dom, std::int16_t& gntst);

    // Pins `ref` of `f` for us, then re-checks that the domain is still alive: a pin taken
    // after the server marked it dying is dropped again (GNTST_bad_domain), so that the
    // server's pin count, once zero for a dying domain, stays zero.
    PinResult pin(const ForeignDomain& f, GrantRef ref, bool writable) const;
    void unpin(const ForeignDomain& f, GrantRef ref, bool writable) const;

    // Drops the cached view of a domain that no longer exists (mappings keep theirs).
    void forget_if_gone(DomId dom);

private:
    std::shared_ptr<proto::Channel> channel_;
    DomId self_;
    Mapping registry_;
    std::string xenstore_path_;
    std::mutex mu_;
    std::unordered_map<DomId, std::shared_ptr<ForeignDomain>> cache_;
};

std::unique_ptr<GrantTable> make_grant_table(std::shared_ptr<BackendCore> core);
Result<std::unique_ptr<EventChannels>> open_event_channels(std::shared_ptr<proto::Channel> ch);
Result<std::unique_ptr<TranslationTable>> open_translation_table(std::shared_ptr<BackendCore> core,
                                                                 DomId guest);

} // namespace dpnb::hv::sim
