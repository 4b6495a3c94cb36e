// The xs_wire request handlers of the simulated xenstore server, one per message type, in a
// table like xenstored's wire_funcs. Each parses its payload (untrusted: every string is
// found by its nul terminator inside the payload, every number is parsed strictly), runs
// the tree operation in the request's transaction or on the global tree, and replies.
#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include <xen/io/xs_wire.h>

#include "xenstore/sim_xs_server.hpp"

namespace dpnb::hv::sim::xs {

namespace {

// Transactions a privileged connection may keep open (xenstored does not limit dom0; we
// bound it only so that a runaway tool cannot eat the simulator's memory).
constexpr std::size_t kPrivilegedTransactions = 1024;

// The single string a payload must consist of (xenstored's onearg): exactly one nul, at
// the end.
std::optional<std::string_view> onearg(std::string_view payload) {
    if (payload.empty() || payload.find('\0') != payload.size() - 1) return std::nullopt;
    return payload.substr(0, payload.size() - 1);
}

std::string join_strings(const std::vector<std::string>& strings) {
    std::string out;
    for (const auto& s : strings) {
        out += s;
        out += '\0';
    }
    return out;
}

std::string perms_to_strings(const PermList& perms) {
    std::string out;
    for (const auto& perm : perms) {
        out += format_perm(perm);
        out += '\0';
    }
    return out;
}

} // namespace

const std::array<Server::HandlerEntry, 23>& Server::handlers() {
    static_assert(XS_TYPE_COUNT == 23, "xs_wire.h grew a message type");
    static const std::array<HandlerEntry, 23> table = [] {
        std::array<HandlerEntry, 23> t{};
        t[XS_CONTROL] = {"CONTROL", &Server::op_control, false, true};
        t[XS_DIRECTORY] = {"DIRECTORY", &Server::op_directory};
        t[XS_READ] = {"READ", &Server::op_read};
        t[XS_GET_PERMS] = {"GET_PERMS", &Server::op_get_perms};
        t[XS_WATCH] = {"WATCH", &Server::op_watch, true};
        t[XS_UNWATCH] = {"UNWATCH", &Server::op_unwatch, true};
        t[XS_TRANSACTION_START] = {"TRANSACTION_START", &Server::op_transaction_start};
        t[XS_TRANSACTION_END] = {"TRANSACTION_END", &Server::op_transaction_end};
        t[XS_INTRODUCE] = {"INTRODUCE", &Server::op_introduce, false, true};
        t[XS_RELEASE] = {"RELEASE", &Server::op_release, false, true};
        t[XS_GET_DOMAIN_PATH] = {"GET_DOMAIN_PATH", &Server::op_get_domain_path};
        t[XS_WRITE] = {"WRITE", &Server::op_write};
        t[XS_MKDIR] = {"MKDIR", &Server::op_mkdir};
        t[XS_RM] = {"RM", &Server::op_rm};
        t[XS_SET_PERMS] = {"SET_PERMS", &Server::op_set_perms};
        t[XS_IS_DOMAIN_INTRODUCED] = {"IS_DOMAIN_INTRODUCED", &Server::op_is_domain_introduced,
                                      false, true};
        t[XS_RESUME] = {"RESUME", &Server::op_resume, false, true};
        t[XS_SET_TARGET] = {"SET_TARGET", &Server::op_set_target, false, true};
        t[XS_RESET_WATCHES] = {"RESET_WATCHES", &Server::op_reset_watches, true};
        t[XS_DIRECTORY_PART] = {"DIRECTORY_PART", &Server::op_directory_part};
        // XS_WATCH_EVENT and XS_ERROR are sent by the server only: ENOSYS, as xenstored.
        return t;
    }();
    return table;
}

std::optional<std::string> Server::node_path(const Connection& conn, std::string_view path) const {
    return canonical_node_path(path, conn.dom);
}

int Server::with_view(Connection& conn, Transaction* txn,
                      const std::function<int(View&, Events&)>& op) {
    Events events;
    if (!txn) {
        int err = op(store_.global(), events);
        fire(events);
        return err;
    }
    DomainEntry* domain = nullptr;
    if (auto it = domains_.find(conn.dom); it != domains_.end()) domain = &it->second;
    if (!conn.privileged && domain &&
        domain->transaction_bytes > store_.quotas().transaction_bytes_per_domain)
        return ENOSPC;
    const std::size_t before = txn->bytes();
    int err = op(*txn, events);
    txn->add_events(std::move(events));
    const std::size_t after = txn->bytes();
    conn.transaction_bytes = conn.transaction_bytes + after - before;
    if (domain) domain->transaction_bytes = domain->transaction_bytes + after - before;
    return err;
}

void Server::forget_transaction(Connection& conn, std::uint32_t id) {
    auto it = conn.transactions.find(id);
    if (it == conn.transactions.end()) return;
    const std::size_t bytes = it->second->bytes();
    conn.transaction_bytes -= bytes;
    if (auto dom = domains_.find(conn.dom); dom != domains_.end())
        dom->second.transaction_bytes -= bytes;
    conn.transactions.erase(it);
}

// --- nodes ------------------------------------------------------------------------------

int Server::op_read(Connection& conn, const Request& req, Transaction* txn) {
    auto arg = onearg(req.payload);
    auto path = arg ? node_path(conn, *arg) : std::nullopt;
    if (!path) return EINVAL;
    const Caller caller = caller_of(conn);
    std::string value;
    int err = with_view(
        conn, txn, [&](View& view, Events&) { return store_.read(view, caller, *path, value); });
    if (err) return err;
    reply(conn, req, value);
    return 0;
}

int Server::op_write(Connection& conn, const Request& req, Transaction* txn) {
    // <path>|<value|>: the value is binary and may contain nuls.
    std::size_t nul = req.payload.find('\0');
    if (nul == std::string_view::npos) return EINVAL;
    auto path = node_path(conn, req.payload.substr(0, nul));
    if (!path) return EINVAL;
    std::string_view value = req.payload.substr(nul + 1);
    const Caller caller = caller_of(conn);
    int err = with_view(conn, txn, [&](View& view, Events& events) {
        return store_.write(view, caller, *path, value, events);
    });
    if (err) return err;
    ack(conn, req);
    return 0;
}

int Server::op_mkdir(Connection& conn, const Request& req, Transaction* txn) {
    auto arg = onearg(req.payload);
    auto path = arg ? node_path(conn, *arg) : std::nullopt;
    if (!path) return EINVAL;
    const Caller caller = caller_of(conn);
    int err = with_view(conn, txn, [&](View& view, Events& events) {
        return store_.mkdir(view, caller, *path, events);
    });
    if (err) return err;
    ack(conn, req);
    return 0;
}

int Server::op_rm(Connection& conn, const Request& req, Transaction* txn) {
    auto arg = onearg(req.payload);
    auto path = arg ? node_path(conn, *arg) : std::nullopt;
    if (!path) return EINVAL;
    const Caller caller = caller_of(conn);
    int err = with_view(conn, txn, [&](View& view, Events& events) {
        return store_.rm(view, caller, *path, events);
    });
    if (err) return err;
    ack(conn, req);
    return 0;
}

int Server::op_directory(Connection& conn, const Request& req, Transaction* txn) {
    auto arg = onearg(req.payload);
    auto path = arg ? node_path(conn, *arg) : std::nullopt;
    if (!path) return EINVAL;
    const Caller caller = caller_of(conn);
    std::vector<std::string> children;
    std::uint64_t generation = 0;
    int err = with_view(conn, txn, [&](View& view, Events&) {
        return store_.directory(view, caller, *path, children, generation);
    });
    if (err) return err;
    reply(conn, req, join_strings(children)); // E2BIG when too long: the client then
    return 0;                                 // pages with XS_DIRECTORY_PART
}

// <path>|<offset>| -> <generation>|<child>|*, with one more nul when the list ends there.
int Server::op_directory_part(Connection& conn, const Request& req, Transaction* txn) {
    std::size_t trailing = 0;
    auto strings = split_strings(req.payload, &trailing);
    if (strings.size() != 2) return EINVAL;
    auto path = node_path(conn, strings[0]);
    auto offset = parse_u32(strings[1]);
    if (!path || !offset) return EINVAL;
    const Caller caller = caller_of(conn);
    std::vector<std::string> children;
    std::uint64_t generation = 0;
    int err = with_view(conn, txn, [&](View& view, Events&) {
        return store_.directory(view, caller, *path, children, generation);
    });
    if (err) return err;

    const std::string list = join_strings(children);
    std::string out = std::to_string(generation);
    out += '\0';
    const std::size_t off = *offset;
    if (off >= list.size()) {
        out += '\0';
        reply(conn, req, out);
        return 0;
    }
    // Whole names from `off` as long as they fit (a hostile offset in the middle of a name
    // only gets a piece of it; every name ends with a nul inside `list`).
    const std::size_t room = kPayloadMax - out.size() - 1;
    std::size_t len = 0;
    while (off + len < list.size()) {
        std::size_t name = list.find('\0', off + len) - (off + len);
        if (len + name >= room) break;
        len += name + 1;
    }
    out.append(list, off, len);
    if (off + len == list.size()) out += '\0';
    reply(conn, req, out);
    return 0;
}

int Server::op_get_perms(Connection& conn, const Request& req, Transaction* txn) {
    auto arg = onearg(req.payload);
    if (!arg) return EINVAL;
    const Caller caller = caller_of(conn);
    PermList perms;
    if (is_special_path(*arg)) {
        if (int err = store_.get_special_perms(caller, *arg, perms)) return err;
    } else {
        auto path = node_path(conn, *arg);
        if (!path) return EINVAL;
        int err = with_view(conn, txn, [&](View& view, Events&) {
            return store_.get_perms(view, caller, *path, perms);
        });
        if (err) return err;
    }
    reply(conn, req, perms_to_strings(perms));
    return 0;
}

int Server::op_set_perms(Connection& conn, const Request& req, Transaction* txn) {
    auto strings = split_strings(req.payload);
    if (strings.size() < 2) return EINVAL;
    PermList perms;
    for (std::size_t i = 1; i < strings.size(); ++i) {
        auto perm = parse_perm(strings[i]);
        if (!perm) return EINVAL;
        perms.push_back(*perm);
    }
    const Caller caller = caller_of(conn);
    if (is_special_path(strings[0])) {
        if (int err = store_.set_special_perms(caller, strings[0], std::move(perms))) return err;
        ack(conn, req);
        return 0;
    }
    auto path = node_path(conn, strings[0]);
    if (!path) return EINVAL;
    int err = with_view(conn, txn, [&](View& view, Events& events) {
        return store_.set_perms(view, caller, *path, std::move(perms), events);
    });
    if (err) return err;
    ack(conn, req);
    return 0;
}

// --- watches ----------------------------------------------------------------------------

int Server::op_watch(Connection& conn, const Request& req, Transaction*) {
    auto strings = split_strings(req.payload);
    if (strings.size() != 2) return EINVAL;
    Watch watch;
    watch.token.assign(strings[1]);
    if (is_special_path(strings[0])) {
        if (strings[0].size() > kRelPathMax) return EINVAL;
        watch.node.assign(strings[0]);
    } else {
        auto path = node_path(conn, strings[0]);
        if (!path) return EINVAL;
        watch.node = std::move(*path);
        if (strings[0].front() != '/') watch.relative_prefix = home_path(conn.dom).size();
    }
    for (const auto& existing : conn.watches)
        if (existing.node == watch.node && existing.token == watch.token) return EEXIST;

    auto dom = domains_.find(conn.dom);
    if (dom == domains_.end()) return EACCES; // being released
    if (conn.privileged ? conn.watches.size() >= store_.quotas().privileged_watches_per_connection
                        : dom->second.watches >= store_.quotas().watches_per_domain) {
        log_violation(conn.dom, "too many watches");
        return E2BIG;
    }
    conn.watches.push_back(std::move(watch));
    ++dom->second.watches;
    ack(conn, req);

    // Fired once at once, with the path as the client gave it (xenstored does this so that
    // clients need no special case for the initial state).
    std::string body(strings[0]);
    body += '\0';
    body += strings[1];
    body += '\0';
    send(conn, XS_WATCH_EVENT, 0, 0, body);
    return 0;
}

int Server::op_unwatch(Connection& conn, const Request& req, Transaction*) {
    auto strings = split_strings(req.payload);
    if (strings.size() != 2) return EINVAL;
    std::string node;
    if (is_special_path(strings[0])) {
        node.assign(strings[0]);
    } else {
        auto path = node_path(conn, strings[0]);
        if (!path) return ENOENT; // cannot have been registered
        node = std::move(*path);
    }
    auto it = std::find_if(conn.watches.begin(), conn.watches.end(),
                           [&](const Watch& w) { return w.node == node && w.token == strings[1]; });
    if (it == conn.watches.end()) return ENOENT;
    conn.watches.erase(it);
    if (auto dom = domains_.find(conn.dom); dom != domains_.end()) --dom->second.watches;
    ack(conn, req);
    return 0;
}

int Server::op_reset_watches(Connection& conn, const Request& req, Transaction*) {
    if (auto dom = domains_.find(conn.dom); dom != domains_.end())
        dom->second.watches -= conn.watches.size();
    conn.watches.clear();
    while (!conn.transactions.empty())
        forget_transaction(conn, conn.transactions.begin()->first);
    ack(conn, req);
    return 0;
}

// --- transactions -----------------------------------------------------------------------

int Server::op_transaction_start(Connection& conn, const Request& req, Transaction* txn) {
    if (txn) return EBUSY; // no nested transactions
    const std::size_t limit =
        conn.privileged ? kPrivilegedTransactions : store_.quotas().transactions_per_connection;
    if (conn.transactions.size() >= limit) {
        log_violation(conn.dom, "too many transactions");
        return ENOSPC;
    }
    std::uint32_t id;
    do {
        id = conn.next_transaction_id++;
    } while (id == 0 || conn.transactions.count(id));
    conn.transactions.emplace(id, std::make_unique<Transaction>(store_, id, caller_of(conn)));
    std::string out = std::to_string(id);
    out += '\0';
    reply(conn, req, out);
    return 0;
}

int Server::op_transaction_end(Connection& conn, const Request& req, Transaction* txn) {
    auto arg = onearg(req.payload);
    if (!arg || (*arg != "T" && *arg != "F")) return EINVAL;
    if (!txn) return ENOENT;
    // The transaction ends here whatever the outcome (a conflicting one must be redone).
    auto entry = conn.transactions.extract(txn->id());
    std::unique_ptr<Transaction> owned = std::move(entry.mapped());
    conn.transaction_bytes -= owned->bytes();
    if (auto dom = domains_.find(conn.dom); dom != domains_.end())
        dom->second.transaction_bytes -= owned->bytes();

    if (*arg == "T") {
        Events events;
        if (int err = store_.commit(*owned, events)) return err;
        fire(events);
    }
    ack(conn, req);
    return 0;
}

// --- domains ----------------------------------------------------------------------------

int Server::op_get_domain_path(Connection& conn, const Request& req, Transaction*) {
    auto arg = onearg(req.payload);
    auto dom = arg ? parse_domid(*arg) : std::nullopt;
    if (!dom) return EINVAL;
    std::string out = home_path(*dom);
    out += '\0';
    reply(conn, req, out);
    return 0;
}

int Server::op_introduce(Connection& conn, const Request& req, Transaction*) {
    // <domid>|<mfn>|<evtchn>|?: the ring page and event channel mean nothing here (domains
    // talk through their socket), but they must be well-formed.
    auto strings = split_strings(req.payload);
    if (strings.size() < 3) return EINVAL;
    auto dom = parse_domid(strings[0]);
    std::string_view mfn = strings[1];
    if (!mfn.empty() && mfn.front() == '-') mfn.remove_prefix(1);
    if (!dom || *dom == kDom0 || *dom >= kDomIdFirstReserved || !parse_u32(strings[2]) ||
        mfn.empty() || mfn.find_first_not_of("0123456789") != std::string_view::npos)
        return EINVAL;
    if (!domains_.count(*dom)) {
        Status st = introduce(*dom, {}, false);
        if (!st) return st.error().sys_errno ? st.error().sys_errno : EINVAL;
    }
    ack(conn, req);
    return 0;
}

int Server::op_release(Connection& conn, const Request& req, Transaction*) {
    auto arg = onearg(req.payload);
    auto dom = arg ? parse_domid(*arg) : std::nullopt;
    if (!dom || *dom == kDom0) return EINVAL;
    if (!domains_.count(*dom)) return ENOENT;
    Status st = release(*dom, false);
    if (!st) return EINVAL;
    ack(conn, req);
    return 0;
}

int Server::op_is_domain_introduced(Connection& conn, const Request& req, Transaction*) {
    auto arg = onearg(req.payload);
    auto dom = arg ? parse_domid(*arg) : std::nullopt;
    if (!dom) return EINVAL;
    reply(conn, req, domains_.count(*dom) ? std::string_view("T", 2) : std::string_view("F", 2));
    return 0;
}

int Server::op_resume(Connection& conn, const Request& req, Transaction*) {
    // We do not track shutdown, so there is nothing to re-arm; the domain must exist.
    auto arg = onearg(req.payload);
    auto dom = arg ? parse_domid(*arg) : std::nullopt;
    if (!dom) return EINVAL;
    if (!domains_.count(*dom)) return ENOENT;
    ack(conn, req);
    return 0;
}

int Server::op_set_target(Connection& conn, const Request& req, Transaction*) {
    auto strings = split_strings(req.payload);
    if (strings.size() < 2) return EINVAL;
    auto dom = parse_domid(strings[0]);
    auto target = parse_domid(strings[1]);
    if (!dom || !target) return EINVAL;
    auto it = domains_.find(*dom);
    if (it == domains_.end() || !domains_.count(*target)) return ENOENT;
    it->second.target = *target;
    ack(conn, req);
    return 0;
}

int Server::op_control(Connection& conn, const Request& req, Transaction*) {
    auto strings = split_strings(req.payload);
    if (strings.empty()) return EINVAL;
    if (strings[0] == "help") {
        static constexpr std::string_view kHelp("check\nhelp\n", 12);
        reply(conn, req, kHelp);
        return 0;
    }
    if (strings[0] == "check") {
        if (!store_.check()) {
            spdlog::error("xenstore: consistency check failed");
            return EIO;
        }
        ack(conn, req);
        return 0;
    }
    return EINVAL;
}

} // namespace dpnb::hv::sim::xs
