// The xenstore tree: operations, permission checks, quotas and transactions with the
// semantics of C xenstored (xenstored_core.c, xenstored_transaction.c); see xs_store.hpp.
#include "xenstore/xs_store.hpp"

#include <algorithm>
#include <cerrno>

namespace dpnb::hv::sim::xs {

namespace {

constexpr std::uint8_t kAll = kPermRead | kPermWrite | kPermOwner;

// What xenstored's tdb record of the node would take (struct xs_tdb_record_hdr, then the
// xs_permissions, the value and the nul-terminated child names): the entry_size quota.
std::size_t record_size(const Node& node) {
    std::size_t size = 24 + node.perms.size() * 8 + node.value.size();
    for (const auto& child : node.children)
        size += child.size() + 1;
    return size;
}

// Private memory a transaction holds for one changed node or recorded path.
std::size_t footprint(const std::string& path, const std::optional<Node>& node) {
    return path.size() + 64 + (node ? record_size(*node) : 0);
}

bool matches(const Caller& caller, DomId id) {
    return id == caller.dom || (caller.target && id == *caller.target);
}

void remove_child(Node& parent, std::string_view name) {
    auto it = std::find(parent.children.begin(), parent.children.end(), name);
    if (it != parent.children.end()) parent.children.erase(it);
}

} // namespace

std::uint8_t perm_for(const Caller& caller, const PermList& perms) {
    if (caller.privileged) return kAll;
    if (perms.empty()) return kPermNone;
    if (matches(caller, perms[0].id)) return kAll;
    for (std::size_t i = 1; i < perms.size(); ++i)
        if (matches(caller, perms[i].id)) return perms[i].bits & (kPermRead | kPermWrite);
    return perms[0].bits & (kPermRead | kPermWrite);
}

// --- the global tree --------------------------------------------------------------------

std::optional<Node> Store::Global::get(const std::string& path) {
    auto it = store_.nodes_.find(path);
    if (it == store_.nodes_.end()) return std::nullopt;
    return it->second;
}

void Store::Global::put(const std::string& path, Node node) {
    node.generation = store_.next_generation();
    auto [it, inserted] = store_.nodes_.try_emplace(path);
    if (!inserted) store_.count_owner(it->second.perms[0].id, -1);
    store_.count_owner(node.perms[0].id, +1);
    it->second = std::move(node);
}

void Store::Global::erase(const std::string& path) {
    auto it = store_.nodes_.find(path);
    if (it == store_.nodes_.end()) return;
    store_.count_owner(it->second.perms[0].id, -1);
    store_.nodes_.erase(it);
}

std::size_t Store::Global::owned_by(DomId dom) const {
    auto it = store_.owned_.find(dom);
    return it == store_.owned_.end() ? 0 : it->second;
}

std::size_t Store::Global::node_count() const {
    return store_.nodes_.size();
}

void Store::count_owner(DomId dom, long delta) {
    auto& count = owned_[dom];
    count = static_cast<std::size_t>(static_cast<long>(count) + delta);
    if (count == 0) owned_.erase(dom);
}

std::uint64_t Store::current_generation(const std::string& path) const {
    auto it = nodes_.find(path);
    return it == nodes_.end() ? kNoGeneration : it->second.generation;
}

Store::Store(const XenstoreQuotas& quotas) : quotas_(quotas) {
    // As xenstored's setup_structure and xen-init-dom0 leave the store: everything owned
    // by dom0 and closed to other domains.
    const PermList dom0_only{Perm{0, kPermNone}};
    auto add = [&](const std::string& path, std::vector<std::string> children,
                   std::string value = {}) {
        global_.put(path, Node{std::move(value), dom0_only, std::move(children), 0});
    };
    add("/", {"tool", "local"});
    add("/tool", {"xenstored"});
    add("/tool/xenstored", {});
    add("/local", {"domain"});
    add("/local/domain", {"0"});
    add("/local/domain/0", {"name", "domid"});
    add("/local/domain/0/name", {}, "Domain-0");
    add("/local/domain/0/domid", {}, "0");
    special_["@introduceDomain"] = dom0_only;
    special_["@releaseDomain"] = dom0_only;
}

// --- transactions -----------------------------------------------------------------------

Transaction::Transaction(Store& store, std::uint32_t id, Caller owner)
    : store_(store), id_(id), owner_(owner) {}

void Transaction::note_access(const std::string& path) {
    if (accessed_.emplace(path, store_.current_generation(path)).second)
        bytes_ += footprint(path, std::nullopt);
}

std::optional<Node> Transaction::peek(const std::string& path) {
    auto it = changed_.find(path);
    if (it != changed_.end()) return it->second;
    return store_.global_.get(path);
}

std::optional<Node> Transaction::get(const std::string& path) {
    note_access(path);
    return peek(path);
}

void Transaction::put(const std::string& path, Node node) {
    note_access(path);
    if (auto old = peek(path)) {
        --owned_delta_[old->perms[0].id];
    } else {
        ++node_delta_;
    }
    ++owned_delta_[node.perms[0].id];
    node.generation = store_.next_generation();
    auto [it, inserted] = changed_.try_emplace(path);
    if (inserted) {
        change_order_.push_back(path);
    } else {
        bytes_ -= footprint(path, it->second);
    }
    it->second = std::move(node);
    bytes_ += footprint(path, it->second);
}

void Transaction::erase(const std::string& path) {
    note_access(path);
    auto old = peek(path);
    if (!old) return;
    --owned_delta_[old->perms[0].id];
    --node_delta_;
    auto [it, inserted] = changed_.try_emplace(path);
    if (inserted) {
        change_order_.push_back(path);
    } else {
        bytes_ -= footprint(path, it->second);
    }
    it->second.reset();
    bytes_ += footprint(path, it->second);
}

std::size_t Transaction::owned_by(DomId dom) const {
    auto it = owned_delta_.find(dom);
    long delta = it == owned_delta_.end() ? 0 : it->second;
    return static_cast<std::size_t>(static_cast<long>(store_.global_.owned_by(dom)) + delta);
}

std::size_t Transaction::node_count() const {
    return static_cast<std::size_t>(static_cast<long>(store_.nodes_.size()) + node_delta_);
}

void Transaction::add_events(Events&& events) {
    for (auto& event : events) {
        bytes_ += event.path.size() + 64;
        for (const auto& perms : event.readable_if_any)
            bytes_ += perms.size() * sizeof(Perm);
        events_.push_back(std::move(event));
    }
}

int Store::commit(Transaction& txn, Events& events) {
    for (const auto& [path, generation] : txn.accessed_)
        if (current_generation(path) != generation) return EAGAIN;
    if (!txn.owner_.privileged) {
        // Other connections of the domain may have created nodes meanwhile.
        if (txn.owned_by(txn.owner_.dom) > global_.owned_by(txn.owner_.dom) &&
            txn.owned_by(txn.owner_.dom) > quotas_.nodes_per_domain)
            return ENOSPC;
    }
    if (txn.node_delta_ > 0 && txn.node_count() > quotas_.max_nodes) return ENOSPC;

    for (const auto& path : txn.change_order_) {
        auto& change = txn.changed_[path];
        if (change) {
            global_.put(path, std::move(*change));
        } else {
            global_.erase(path);
        }
    }
    for (auto& event : txn.events_)
        events.push_back(std::move(event));
    txn.changed_.clear();
    txn.change_order_.clear();
    txn.events_.clear();
    return 0;
}

// --- operations -------------------------------------------------------------------------

int Store::get_node(View& view, const Caller& caller, const std::string& path, std::uint8_t perm,
                    std::optional<Node>& node) {
    node = view.get(path);
    int err = ENOENT;
    if (node) {
        if ((perm_for(caller, node->perms) & perm) == perm) return 0;
        node.reset();
        err = EACCES;
    }
    // Tell ENOENT only to those who may see the nearest existing ancestor.
    std::string ancestor = path;
    std::uint8_t ancestor_perm = kPermNone;
    while (ancestor != "/") {
        ancestor = std::string(parent_of(ancestor));
        if (auto found = view.get(ancestor)) {
            ancestor_perm = perm_for(caller, found->perms);
            break;
        }
    }
    return (ancestor_perm & perm) ? err : EACCES;
}

int Store::check_entry_size(const Caller& caller, const Node& node) const {
    if (!caller.privileged && record_size(node) >= quotas_.entry_size) return ENOSPC;
    return 0;
}

int Store::create(View& view, const Caller& caller, const std::string& path, std::string_view value,
                  Node& created) {
    // Walk up to the nearest existing ancestor; everything below it is created.
    std::vector<std::string> missing{path};
    std::optional<Node> anchor;
    std::string anchor_path;
    for (;;) {
        if (missing.back() == "/") return EIO; // the root always exists
        anchor_path = std::string(parent_of(missing.back()));
        anchor = view.get(anchor_path);
        if (anchor) break;
        missing.push_back(anchor_path);
    }

    if (!caller.privileged && view.owned_by(caller.dom) + missing.size() > quotas_.nodes_per_domain)
        return ENOSPC;
    if (view.node_count() + missing.size() > quotas_.max_nodes) return ENOSPC;

    // Build top-down: each new node inherits its parent's permissions, and an unprivileged
    // creator owns what it creates.
    std::vector<Node> fresh(missing.size());
    const Node* parent = &*anchor;
    for (std::size_t i = missing.size(); i-- > 0;) {
        Node& node = fresh[i];
        node.perms = parent->perms;
        if (!caller.privileged) node.perms[0].id = caller.dom;
        if (i == 0) {
            node.value.assign(value);
        } else {
            node.children.emplace_back(basename_of(missing[i - 1]));
        }
        parent = &node;
    }
    anchor->children.emplace_back(basename_of(missing.back()));

    if (int err = check_entry_size(caller, *anchor)) return err;
    for (const auto& node : fresh)
        if (int err = check_entry_size(caller, node)) return err;

    view.put(anchor_path, std::move(*anchor));
    for (std::size_t i = missing.size(); i-- > 0;)
        view.put(missing[i], fresh[i]);
    created = std::move(fresh[0]);
    return 0;
}

int Store::read(View& view, const Caller& caller, const std::string& path, std::string& value) {
    std::optional<Node> node;
    if (int err = get_node(view, caller, path, kPermRead, node)) return err;
    value = std::move(node->value);
    return 0;
}

int Store::write(View& view, const Caller& caller, const std::string& path, std::string_view value,
                 Events& events) {
    std::optional<Node> node;
    int err = get_node(view, caller, path, kPermWrite, node);
    if (err == ENOENT) {
        Node created;
        if ((err = create(view, caller, path, value, created))) return err;
        node = std::move(created);
    } else if (err) {
        return err;
    } else {
        node->value.assign(value);
        if ((err = check_entry_size(caller, *node))) return err;
        view.put(path, *node);
    }
    auto parent = view.peek(std::string(parent_of(path)));
    events.push_back(WatchEvent{path, false, {node->perms, parent ? parent->perms : PermList{}}});
    return 0;
}

int Store::mkdir(View& view, const Caller& caller, const std::string& path, Events& events) {
    std::optional<Node> node;
    int err = get_node(view, caller, path, kPermWrite, node);
    if (err == 0) return 0; // already there: fine, and nothing changed
    if (err != ENOENT) return err;
    Node created;
    if ((err = create(view, caller, path, {}, created))) return err;
    auto parent = view.peek(std::string(parent_of(path)));
    events.push_back(WatchEvent{path, false, {created.perms, parent ? parent->perms : PermList{}}});
    return 0;
}

void Store::delete_subtree(View& view, const std::string& path, const Node& node, Events& events) {
    for (const auto& name : node.children) {
        std::string child = child_path(path, name);
        auto found = view.get(child);
        if (!found) continue;
        events.push_back(WatchEvent{child, true, {found->perms, node.perms}});
        delete_subtree(view, child, *found, events);
    }
    view.erase(path);
}

int Store::rm(View& view, const Caller& caller, const std::string& path, Events& events) {
    std::optional<Node> node;
    int err = get_node(view, caller, path, kPermWrite, node);
    if (err == ENOENT) {
        // Not there: fine if its parent is.
        return view.get(std::string(parent_of(path))) ? 0 : ENOENT;
    }
    if (err) return err;
    if (path == "/") return EINVAL;
    std::string parent_path(parent_of(path));
    auto parent = view.get(parent_path);
    if (!parent) return EINVAL;

    events.push_back(WatchEvent{path, false, {node->perms, parent->perms}});
    delete_subtree(view, path, *node, events);
    remove_child(*parent, basename_of(path));
    view.put(parent_path, std::move(*parent));
    return 0;
}

int Store::directory(View& view, const Caller& caller, const std::string& path,
                     std::vector<std::string>& children, std::uint64_t& generation) {
    std::optional<Node> node;
    if (int err = get_node(view, caller, path, kPermRead, node)) return err;
    children = std::move(node->children);
    generation = node->generation;
    return 0;
}

int Store::get_perms(View& view, const Caller& caller, const std::string& path, PermList& perms) {
    std::optional<Node> node;
    if (int err = get_node(view, caller, path, kPermRead, node)) return err;
    perms = std::move(node->perms);
    return 0;
}

int Store::set_perms(View& view, const Caller& caller, const std::string& path, PermList perms,
                     Events& events) {
    if (perms.empty()) return EINVAL;
    if (!caller.privileged && perms.size() > quotas_.perms_per_node) return ENOSPC;
    std::optional<Node> node;
    if (int err = get_node(view, caller, path, kPermWrite | kPermOwner, node)) return err;
    // Unprivileged domains may not give their nodes away.
    if (!caller.privileged && perms[0].id != node->perms[0].id) return EPERM;

    PermList old = std::move(node->perms);
    node->perms = std::move(perms);
    if (int err = check_entry_size(caller, *node)) return err;
    view.put(path, *node);
    auto parent = view.peek(std::string(parent_of(path)));
    events.push_back(WatchEvent{
        path, false, {std::move(old), node->perms, parent ? parent->perms : PermList{}}});
    return 0;
}

int Store::get_special_perms(const Caller& caller, std::string_view name, PermList& perms) {
    auto it = special_.find(name);
    if (it == special_.end()) return ENOENT;
    if (!(perm_for(caller, it->second) & kPermRead)) return EACCES;
    perms = it->second;
    return 0;
}

int Store::set_special_perms(const Caller& caller, std::string_view name, PermList perms) {
    if (perms.empty()) return EINVAL;
    if (!caller.privileged && perms.size() > quotas_.perms_per_node) return ENOSPC;
    auto it = special_.find(name);
    if (it == special_.end()) return ENOENT;
    constexpr std::uint8_t kNeed = kPermWrite | kPermOwner;
    if ((perm_for(caller, it->second) & kNeed) != kNeed) return EACCES;
    it->second = std::move(perms);
    return 0;
}

bool Store::special_readable(const Caller& caller, std::string_view name) const {
    auto it = special_.find(name);
    return it != special_.end() && (perm_for(caller, it->second) & kPermRead);
}

// --- domain removal ---------------------------------------------------------------------

void Store::remove_domain(DomId dom, Events& events) {
    // Parents before children: removing a parent takes its subtree with it.
    std::vector<std::string> owned;
    for (const auto& [path, node] : nodes_)
        if (node.perms[0].id == dom) owned.push_back(path);
    std::sort(owned.begin(), owned.end(),
              [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
    for (const auto& path : owned) {
        auto node = global_.get(path);
        if (!node) continue; // went with an owned ancestor
        if (path == "/") {
            node->perms[0].id = 0;
            global_.put(path, std::move(*node));
            continue;
        }
        std::string parent_path(parent_of(path));
        auto parent = global_.get(parent_path);
        if (!parent) continue;
        events.push_back(WatchEvent{path, false, {node->perms, parent->perms}});
        delete_subtree(global_, path, *node, events);
        remove_child(*parent, basename_of(path));
        global_.put(parent_path, std::move(*parent));
    }

    auto strip = [dom](PermList& perms) {
        if (perms.size() < 2) return false;
        auto before = perms.size();
        perms.erase(std::remove_if(perms.begin() + 1, perms.end(),
                                   [dom](const Perm& p) { return p.id == dom; }),
                    perms.end());
        return perms.size() != before;
    };
    std::vector<std::string> granted;
    for (auto& [path, node] : nodes_) {
        PermList copy = node.perms;
        if (strip(copy)) granted.push_back(path);
    }
    for (const auto& path : granted) {
        auto node = global_.get(path);
        strip(node->perms);
        global_.put(path, std::move(*node));
    }
    for (auto& [name, perms] : special_) {
        if (perms[0].id == dom) perms[0].id = 0;
        strip(perms);
    }
}

// --- consistency ------------------------------------------------------------------------

bool Store::check() const {
    std::unordered_map<DomId, std::size_t> owners;
    for (const auto& [path, node] : nodes_) {
        if (node.perms.empty() || !is_valid_node_path(path)) return false;
        ++owners[node.perms[0].id];
        for (const auto& name : node.children)
            if (!nodes_.count(child_path(path, name))) return false;
        if (path == "/") continue;
        auto parent = nodes_.find(std::string(parent_of(path)));
        if (parent == nodes_.end()) return false;
        const auto& siblings = parent->second.children;
        if (std::count(siblings.begin(), siblings.end(), basename_of(path)) != 1) return false;
    }
    return owners == owned_;
}

} // namespace dpnb::hv::sim::xs
