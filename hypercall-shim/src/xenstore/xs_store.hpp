// The xenstore tree of the simulated server, with xenstored's semantics and no I/O: nodes,
// permissions, quotas, optimistic transactions and the watch events every change produces.
// The socket server (sim_xs_server.cpp) turns requests into calls of the operations below
// and delivers the events; keeping this part free of sockets lets it be unit-tested
// directly.
//
// Operations return an errno value (0 on success) because that is what goes on the wire:
// the server answers XS_ERROR with its name ("ENOENT", "EACCES", ...), as xenstored does.
//
// Transactions follow xenstored_transaction.c: a transaction sees the global tree plus its
// own changes; every node it looks at (including absent ones) is recorded with the
// generation it had; commit fails with EAGAIN if any of them changed since, otherwise the
// changes are applied and their watch events fire.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dpnb/hv/sim_xenstore_server.hpp"
#include "xenstore/xs_path.hpp"

namespace dpnb::hv::sim::xs {

inline constexpr std::uint64_t kNoGeneration = ~std::uint64_t{0};

struct Node {
    std::string value;
    PermList perms;                    // never empty
    std::vector<std::string> children; // leaf names, in creation order (as xenstored)
    std::uint64_t generation = 0;      // changes on every change of this node
};

// Who asks: the domain of the connection, whether it is privileged (dom0), and the domain it
// may act for (XS_SET_TARGET).
struct Caller {
    DomId dom = 0;
    bool privileged = false;
    std::optional<DomId> target;
};

// xenstored's perm_for_conn: privileged callers and owners get everything (with OWNER);
// others get their own entry, else the default of the first entry.
std::uint8_t perm_for(const Caller& caller, const PermList& perms);

// A change to announce: watches on `path` or above it fire (exact: only watches on `path`
// itself, used for the nodes below a removed one). A connection is told only if one of
// `readable_if_any` grants it read access (xenstored's watch_permitted: the node, its
// parent, or the node's old permissions).
struct WatchEvent {
    std::string path;
    bool exact = false;
    std::vector<PermList> readable_if_any;
};
using Events = std::vector<WatchEvent>;

class Store;

// A way to look at and change nodes: the global tree, or one transaction's view of it.
class View {
public:
    virtual ~View() = default;
    // get() counts as a read (a transaction records it for conflict checks); peek() does
    // not: it is for information the caller only passes on (permissions of watch events).
    virtual std::optional<Node> get(const std::string& path) = 0;
    virtual std::optional<Node> peek(const std::string& path) = 0;
    virtual void put(const std::string& path, Node node) = 0;
    virtual void erase(const std::string& path) = 0;
    // Nodes owned by `dom` as this view sees them (for the nodes_per_domain quota).
    virtual std::size_t owned_by(DomId dom) const = 0;
    virtual std::size_t node_count() const = 0;
};

class Transaction final : public View {
public:
    Transaction(Store& store, std::uint32_t id, Caller owner);
    std::optional<Node> get(const std::string& path) override;
    std::optional<Node> peek(const std::string& path) override;
    void put(const std::string& path, Node node) override;
    void erase(const std::string& path) override;
    std::size_t owned_by(DomId dom) const override;
    std::size_t node_count() const override;

    // Queues events of this transaction's changes (they fire when it commits).
    void add_events(Events&& events);

    std::uint32_t id() const { return id_; }
    const Caller& owner() const { return owner_; }
    // Bytes of private state (recorded paths, changed nodes): bounded per domain.
    std::size_t bytes() const { return bytes_; }

private:
    friend class Store;
    void note_access(const std::string& path);

    Store& store_;
    std::uint32_t id_;
    Caller owner_;
    std::unordered_map<std::string, std::uint64_t> accessed_; // generation at first access
    std::map<std::string, std::optional<Node>> changed_;      // nullopt: deleted
    std::vector<std::string> change_order_;
    std::map<DomId, long> owned_delta_;
    long node_delta_ = 0;
    std::size_t bytes_ = 0;
    Events events_;
};

class Store {
public:
    explicit Store(const XenstoreQuotas& quotas);

    View& global() { return global_; }
    const XenstoreQuotas& quotas() const { return quotas_; }

    // --- operations (paths are canonical, valid absolute node paths) -----------------
    int read(View& view, const Caller& caller, const std::string& path, std::string& value);
    int write(View& view, const Caller& caller, const std::string& path, std::string_view value,
              Events& events);
    int mkdir(View& view, const Caller& caller, const std::string& path, Events& events);
    int rm(View& view, const Caller& caller, const std::string& path, Events& events);
    int directory(View& view, const Caller& caller, const std::string& path,
                  std::vector<std::string>& children, std::uint64_t& generation);
    int get_perms(View& view, const Caller& caller, const std::string& path, PermList& perms);
    int set_perms(View& view, const Caller& caller, const std::string& path, PermList perms,
                  Events& events);

    // @introduceDomain and @releaseDomain carry permissions too (who may watch them).
    // ENOENT for any other special name.
    int get_special_perms(const Caller& caller, std::string_view name, PermList& perms);
    int set_special_perms(const Caller& caller, std::string_view name, PermList perms);
    // May `caller` see events of the special watch `name`?
    bool special_readable(const Caller& caller, std::string_view name) const;

    // --- transactions -----------------------------------------------------------------
    // 0, EAGAIN (conflict) or ENOSPC (quota exceeded by the transaction as a whole). The
    // transaction's events are appended to `events` on success.
    int commit(Transaction& txn, Events& events);

    // XSA-322/XSA-419: when a domain is gone, the nodes it owns are deleted and it is
    // removed from every other permission list (also of the special watches).
    void remove_domain(DomId dom, Events& events);

    // Consistency of parent/child links and owner counts (XS_CONTROL "check", tests).
    bool check() const;

    std::uint64_t next_generation() { return generation_++; }

private:
    friend class Transaction;

    class Global final : public View {
    public:
        explicit Global(Store& store) : store_(store) {}
        std::optional<Node> get(const std::string& path) override;
        std::optional<Node> peek(const std::string& path) override { return get(path); }
        void put(const std::string& path, Node node) override;
        void erase(const std::string& path) override;
        std::size_t owned_by(DomId dom) const override;
        std::size_t node_count() const override;

    private:
        Store& store_;
    };

    // xenstored's get_node: the node if `caller` has all of `perm` on it; else EACCES, or
    // ENOENT when it does not exist and its nearest existing ancestor grants any of `perm`
    // (so that the error tells nothing about nodes the caller may not see).
    int get_node(View& view, const Caller& caller, const std::string& path, std::uint8_t perm,
                 std::optional<Node>& node);
    // Creates `path` and missing parents (they inherit their parent's permissions; an
    // unprivileged creator becomes their owner), checking quotas first.
    int create(View& view, const Caller& caller, const std::string& path, std::string_view value,
               Node& created);
    int check_entry_size(const Caller& caller, const Node& node) const;
    // Erases `path` and everything below it; an exact event for each node below.
    void delete_subtree(View& view, const std::string& path, const Node& node, Events& events);
    std::uint64_t current_generation(const std::string& path) const;
    void count_owner(DomId dom, long delta);

    XenstoreQuotas quotas_;
    std::unordered_map<std::string, Node> nodes_;
    std::unordered_map<DomId, std::size_t> owned_;
    std::map<std::string, PermList, std::less<>> special_;
    std::uint64_t generation_ = 1;
    Global global_{*this};
};

} // namespace dpnb::hv::sim::xs
