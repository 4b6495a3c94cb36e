// Xenstore client: read, write, mkdir, rm, directory, permissions, transactions and watches.
// Implementations: XenXenstore (libxenstore; it talks to a real xenstored, or to the
// simulated hypervisor's xenstore server, which speaks the same xs_wire protocol over a UNIX
// socket). Watches are delivered through a file descriptor, as libxenstore does.
//
// Every value read here is guest-controlled when it lies under a guest's folder: callers
// parse it with netback-core's validating parsers, never with atoi.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv {

using XsTxn = std::uint32_t;
inline constexpr XsTxn kNoTxn = 0;

// One entry of a node's permission list (xs_permissions): the first entry names the owner
// and the access of every domain not listed; the following ones grant access per domain.
struct XsPerm {
    enum Access : std::uint8_t { none = 0, read = 1, write = 2, both = 3 };
    DomId dom;
    Access access;
    bool operator==(const XsPerm&) const = default;
};

struct XsWatchEvent {
    std::string path;  // the node that changed (or the special path, e.g. @releaseDomain)
    std::string token; // the token given to watch()
};

class Xenstore {
public:
    virtual ~Xenstore() = default;

    virtual Result<std::string> read(XsTxn txn, std::string_view path) = 0;
    virtual Status write(XsTxn txn, std::string_view path, std::string_view value) = 0;
    virtual Status mkdir(XsTxn txn, std::string_view path) = 0;
    virtual Status rm(XsTxn txn, std::string_view path) = 0;
    virtual Result<std::vector<std::string>> directory(XsTxn txn, std::string_view path) = 0;
    virtual Result<std::vector<XsPerm>> get_permissions(XsTxn txn, std::string_view path) = 0;
    virtual Status set_permissions(XsTxn txn, std::string_view path,
                                   const std::vector<XsPerm>& perms) = 0;

    virtual Result<XsTxn> transaction_start() = 0;
    // Errc::again when the transaction conflicted and must be retried from the start.
    virtual Status transaction_end(XsTxn txn, bool commit) = 0;

    // A watch fires once when registered, then on every change at or below `path`.
    virtual Status watch(std::string_view path, std::string_view token) = 0;
    virtual Status unwatch(std::string_view path, std::string_view token) = 0;
    virtual int watch_fd() const = 0;
    // Next queued watch event, or nullopt. Never blocks.
    virtual Result<std::optional<XsWatchEvent>> read_watch() = 0;

    // The home folder of a domain, e.g. /local/domain/5.
    virtual Result<std::string> domain_path(DomId dom) = 0;
};

// Runs `body` inside a transaction, retrying from the start when the commit conflicts
// (Errc::again), up to `max_attempts` times. `body` returns Status; an error aborts the
// transaction and is returned.
Status run_transaction(Xenstore& xs, const std::function<Status(XsTxn)>& body,
                       int max_attempts = 16);

} // namespace dpnb::hv
