// The simulated hypervisor's server loop, its connections and its domains (server.hpp).
#include "sim/server.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "dpnb/hv/sim.hpp"

namespace dpnb::hv::sim {
namespace {

using proto::Op;
using proto::Role;

constexpr std::uint64_t kListenTag = 1;
constexpr std::uint64_t kWakeTag = 2;
constexpr std::size_t kMaxConnections = 4096;
constexpr int kReapIntervalMs = 100;
// libxl's default max_event_channels for a guest; dom0 gets the whole 2-level space.
constexpr EvtchnPort kGuestMaxPorts = 1023;

constexpr unsigned role_bit(Role r) {
    return 1U << static_cast<unsigned>(r);
}
constexpr unsigned kNone = role_bit(Role::none);
constexpr unsigned kToolstack = role_bit(Role::toolstack);
constexpr unsigned kBackend = role_bit(Role::backend);
constexpr unsigned kGuest = role_bit(Role::guest);
constexpr unsigned kAnyRole = kToolstack | kBackend | kGuest;

bool valid_domain_name(std::string_view name) {
    if (name.empty() || name.size() > 63) return false;
    for (char c : name) {
        const bool okc = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!okc) return false;
    }
    return true;
}

Status bad_domain(std::uint64_t dom) {
    return make_error(Errc::not_found, "no such domain: " + std::to_string(dom));
}

} // namespace

const ServerImpl::HandlerEntry ServerImpl::kHandlers[static_cast<std::size_t>(Op::count_)] = {
    {nullptr, 0},                                                 // 0: not an op
    {&ServerImpl::op_hello, kNone},                               // hello
    {&ServerImpl::op_domain_state, kAnyRole},                     // domain_state
    {&ServerImpl::op_domain_name, kAnyRole},                      // domain_name
    {&ServerImpl::op_create_domain, kToolstack},                  // create_domain
    {&ServerImpl::op_destroy_domain, kToolstack},                 // destroy_domain
    {&ServerImpl::op_domain_info, kToolstack},                    // domain_info
    {&ServerImpl::op_stats, kToolstack},                          // stats
    {&ServerImpl::op_attach_guest, kBackend},                     // attach_guest
    {&ServerImpl::op_detach_guest, kBackend},                     // detach_guest
    {&ServerImpl::op_evtchn_open, kBackend | kGuest},             // evtchn_open
    {&ServerImpl::op_evtchn_close, kBackend | kGuest},            // evtchn_close
    {&ServerImpl::op_evtchn_bind_unbound, kBackend | kGuest},     // evtchn_bind_unbound
    {&ServerImpl::op_evtchn_bind_interdomain, kBackend | kGuest}, // evtchn_bind_interdomain
    {&ServerImpl::op_evtchn_unbind, kBackend | kGuest},           // evtchn_unbind
    {&ServerImpl::op_iott_open, kBackend},                        // iott_open
    {&ServerImpl::op_iott_close, kBackend},                       // iott_close
    {&ServerImpl::op_iott_add, kGuest},                           // iott_add
    {&ServerImpl::op_iott_remove, kGuest},                        // iott_remove
};

// --- start and stop ------------------------------------------------------------------------

Result<std::unique_ptr<ServerImpl>> ServerImpl::start(const std::string& dir) {
    std::unique_ptr<ServerImpl> server(new ServerImpl(dir));
    if (Status st = server->init(); !st) return st.error();
    server->thread_ = std::thread([s = server.get()] { s->run(); });
    return server;
}

Status ServerImpl::init() {
    std::error_code ec;
    if (!std::filesystem::exists(dir_, ec)) {
        std::filesystem::create_directories(dir_, ec);
        if (ec) return make_error(Errc::io, "cannot create " + dir_ + ": " + ec.message());
        ::chmod(dir_.c_str(), 0700);
    }
    socket_path_ = dir_ + "/" + proto::kSocketName;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path_.size() >= sizeof(addr.sun_path))
        return make_error(Errc::invalid_argument, "socket path too long: " + socket_path_);
    std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);

    // A socket that still answers belongs to a running server; one that does not is stale.
    {
        UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        if (!probe) return sys_error(Errc::io, "socket");
        if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0)
            return make_error(Errc::exists, "a simulated hypervisor already serves " + dir_);
        ::unlink(socket_path_.c_str());
    }
    listen_fd_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listen_fd_) return sys_error(Errc::io, "socket");
    if (::bind(listen_fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
        return sys_error(Errc::io, "bind " + socket_path_);
    if (::listen(listen_fd_.get(), 128) != 0) return sys_error(Errc::io, "listen");

    epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_fd_) return sys_error(Errc::io, "epoll_create1");
    auto wake = create_eventfd();
    if (!wake) return std::move(wake).error();
    wake_fd_ = std::move(*wake);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenTag;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, listen_fd_.get(), &ev) != 0)
        return sys_error(Errc::io, "epoll_ctl");
    ev.data.u64 = kWakeTag;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) != 0)
        return sys_error(Errc::io, "epoll_ctl");

    auto reg = create_memfd("dpnb-sim-registry", registry::kBytes);
    if (!reg) return std::move(reg).error();
    registry_fd_ = std::move(*reg);
    auto reg_map = map_shared(registry_fd_.get(), registry::kBytes, true);
    if (!reg_map) return std::move(reg_map).error();
    registry_ = std::move(*reg_map);
    if (Status st = seal_memfd(registry_fd_.get(), true); !st) return st;

    auto xs = XenstoreServer::start(dir_);
    if (!xs) return std::move(xs).error();
    xenstore_ = std::move(*xs);

    auto dom0 = std::make_unique<Domain>();
    dom0->id = kDom0;
    dom0->name = "Domain-0";
    dom0->instance = next_instance_++;
    dom0->max_ports = kMaxPorts - 1;
    publish_registry(*dom0);
    domains_.emplace(kDom0, std::move(dom0));
    spdlog::info("simulated hypervisor serving {}", dir_);
    return ok();
}

ServerImpl::~ServerImpl() {
    if (thread_.joinable()) {
        const std::uint64_t one = 1;
        const ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
        (void)n; // a fresh eventfd cannot be full
        thread_.join();
    }
    for (auto& [id, conn] : connections_)
        conn->fd.reset(); // clients see Errc::closed
    connections_.clear();
    handles_.clear();
    iotts_.clear();
    domains_.clear();
    xenstore_.reset();
    if (listen_fd_) ::unlink(socket_path_.c_str());
}

// --- the loop ------------------------------------------------------------------------------

void ServerImpl::run() {
    constexpr int kMaxEvents = 32;
    epoll_event events[kMaxEvents];
    for (;;) {
        bool any_dying = false;
        for (const auto& [id, d] : domains_)
            any_dying = any_dying || d->dying;
        const int n =
            ::epoll_wait(epoll_fd_.get(), events, kMaxEvents, any_dying ? kReapIntervalMs : -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::error("simulated hypervisor: epoll_wait: {}", std::strerror(errno));
            return;
        }
        for (int i = 0; i < n; ++i) {
            const std::uint64_t tag = events[i].data.u64;
            if (tag == kWakeTag) return;
            if (tag == kListenTag) {
                accept_clients();
                continue;
            }
            Connection* conn = find_connection(tag);
            if (conn != nullptr && !conn->closed) serve(*conn);
        }
        for (auto it = connections_.begin(); it != connections_.end();) {
            if (it->second->closed)
                it = connections_.erase(it);
            else
                ++it;
        }
        if (any_dying) reap();
    }
}

void ServerImpl::accept_clients() {
    for (;;) {
        UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN)
                spdlog::warn("simulated hypervisor: accept: {}", std::strerror(errno));
            return;
        }
        if (connections_.size() >= kMaxConnections) {
            spdlog::warn("simulated hypervisor: too many connections, refusing one");
            continue;
        }
        auto conn = std::make_unique<Connection>();
        conn->id = next_conn_++;
        conn->fd = std::move(fd);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = conn->id;
        if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, conn->fd.get(), &ev) != 0) {
            spdlog::warn("simulated hypervisor: epoll_ctl: {}", std::strerror(errno));
            continue;
        }
        connections_.emplace(conn->id, std::move(conn));
    }
}

void ServerImpl::serve(Connection& conn) {
    proto::Request req;
    std::vector<UniqueFd> fds;
    auto n = proto::recv_packet(conn.fd.get(), &req, sizeof(req), fds);
    if (!n && n.error().sys_errno == EAGAIN) return;
    if (!n || *n == 0) {
        close_connection(conn);
        return;
    }
    bool terminated = false;
    (void)proto::get_text(req.text, sizeof(req.text), terminated);
    const auto op = static_cast<std::uint32_t>(req.op);
    if (*n != sizeof(req) || !fds.empty() || req.magic != proto::kMagic || op == 0 ||
        op >= static_cast<std::uint32_t>(Op::count_) || !terminated) {
        spdlog::warn("simulated hypervisor: malformed request from connection {} (domain {}), "
                     "closing it",
                     conn.id, conn.dom);
        close_connection(conn);
        return;
    }
    const HandlerEntry& h = kHandlers[op];
    ReplyBuilder rb;
    Status st = (h.roles & role_bit(conn.role)) != 0
                    ? (this->*h.fn)(conn, req, rb)
                    : make_error(Errc::permission_denied,
                                 conn.role == Role::none ? "say hello first"
                                                         : "operation not allowed for this role");
    if (conn.closed) return;
    rb.reply.magic = proto::kMagic;
    rb.reply.op = req.op;
    if (!st) {
        rb.reply.status = 1 + static_cast<std::int32_t>(st.error().code);
        rb.reply.sys_errno = st.error().sys_errno;
        rb.text(st.error().message);
        rb.fds.clear();
    }
    rb.reply.nfds = static_cast<std::uint32_t>(rb.fds.size());
    // A connection that failed to say hello has no business left.
    if (Status sent = proto::send_packet(conn.fd.get(), &rb.reply, sizeof(rb.reply), rb.fds);
        !sent || conn.role == Role::none)
        close_connection(conn);
}

void ServerImpl::close_connection(Connection& conn) {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.fd) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, conn.fd.get(), nullptr);
    conn.fd.reset();
    // Like closing /dev/xen/evtchn and /dev/xen/gntdev: every port and pin goes.
    for (std::uint32_t h : std::vector<std::uint32_t>(conn.evtchn_handles))
        close_handle(h);
    conn.evtchn_handles.clear();
    for (auto& [dom, ledger] : conn.ledgers) {
        Domain* d = find_domain(dom);
        if (d != nullptr && d->instance == ledger.instance)
            release_ledger(d->grant_memory(), ledger.map.as<LedgerEntry>());
    }
    conn.ledgers.clear();
    for (const auto& [guest, count] : conn.iott_opens)
        drop_iott_opener(conn.id, guest);
    conn.iott_opens.clear();
    if (conn.role == Role::guest) {
        Domain* d = find_domain(conn.dom);
        if (d != nullptr && d->guest == conn.id) {
            d->guest = 0;
            if (d->destroy_when_guest_exits && !d->dying) {
                spdlog::info("simulated hypervisor: the process of domain {} went away", d->id);
                (void)destroy_domain(d->id);
            }
        }
    }
}

// --- domains -------------------------------------------------------------------------------

ServerImpl::Domain* ServerImpl::find_domain(DomId dom) {
    auto it = domains_.find(dom);
    return it == domains_.end() ? nullptr : it->second.get();
}

ServerImpl::Domain* ServerImpl::find_live_domain(DomId dom) {
    Domain* d = find_domain(dom);
    return d != nullptr && !d->dying ? d : nullptr;
}

ServerImpl::Connection* ServerImpl::find_connection(ConnId id) {
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second.get();
}

void ServerImpl::publish_registry(const Domain& d) {
    std::atomic_ref<std::uint64_t>(registry_.as<std::uint64_t>()[d.id])
        .store(registry::make(d.instance, d.dying), std::memory_order_seq_cst);
}

Status ServerImpl::destroy_domain(DomId dom) {
    Domain* d = find_domain(dom);
    if (d == nullptr) return bad_domain(dom);
    if (dom == kDom0) return make_error(Errc::permission_denied, "dom0 cannot be destroyed");
    if (d->dying) return ok();
    // Backends check this word after pinning: from here on no new pin of this domain
    // survives, so once the pin counts reach zero they stay there.
    d->dying = true;
    publish_registry(*d);
    close_domain_ports(*d);
    for (auto& [id, conn] : connections_)
        if (!conn->closed && conn->dom == dom && conn->role != Role::toolstack)
            close_connection(*conn);
    release_backend_tables(dom);
    if (Status st = xenstore_->release_domain(dom); !st)
        spdlog::warn("simulated hypervisor: xenstore release of domain {}: {}", dom,
                     st.error().describe());
    spdlog::info("simulated hypervisor: domain {} ({}) is dying", dom, d->name);
    reap();
    return ok();
}

void ServerImpl::reap() {
    std::vector<DomId> freeable;
    for (auto& [id, d] : domains_) {
        if (!d->dying) continue;
        if (!reap_guest_tables(*d)) continue;
        if (pinned_grants(d->grant_memory()) != 0) continue;
        freeable.push_back(id);
    }
    for (DomId dom : freeable)
        free_domain(dom);
}

void ServerImpl::free_domain(DomId dom) {
    Domain* d = find_domain(dom);
    if (d == nullptr) return;
    erase_tables_of(dom);
    for (auto& [id, conn] : connections_) {
        auto it = conn->ledgers.find(dom);
        if (it != conn->ledgers.end() && it->second.instance == d->instance)
            conn->ledgers.erase(it);
    }
    std::atomic_ref<std::uint64_t>(registry_.as<std::uint64_t>()[dom])
        .store(0, std::memory_order_seq_cst);
    spdlog::info("simulated hypervisor: domain {} ({}) freed", dom, d->name);
    domains_.erase(dom);
}

// --- handlers: hello, domains, toolstack ---------------------------------------------------

Status ServerImpl::op_hello(Connection& conn, const proto::Request& req, ReplyBuilder& rb) {
    const std::uint64_t role = req.arg[0];
    const std::uint64_t dom = req.arg[1];
    if (role == static_cast<std::uint64_t>(Role::toolstack)) {
        conn.role = Role::toolstack;
        conn.dom = kDom0;
        rb.val(0, kDom0);
        rb.text(xenstore_->socket_path(kDom0));
        return ok();
    }
    if (dom >= kFirstReservedDomId) return bad_domain(dom);
    Domain* d = find_live_domain(static_cast<DomId>(dom));
    if (d == nullptr) return bad_domain(dom);
    if (role == static_cast<std::uint64_t>(Role::backend)) {
        conn.role = Role::backend;
        conn.dom = d->id;
        rb.fds.push_back(registry_fd_.get());
    } else if (role == static_cast<std::uint64_t>(Role::guest)) {
        if (d->id == kDom0 || d->pages == 0)
            return make_error(Errc::invalid_argument, "dom0 is not a guest");
        if (d->guest != 0)
            return make_error(Errc::busy, "domain " + std::to_string(dom) +
                                              " is already run by another process");
        conn.role = Role::guest;
        conn.dom = d->id;
        d->guest = conn.id;
        rb.fds.push_back(d->memory_fd.get());
        rb.fds.push_back(d->gnttab_fd.get());
        rb.val(1, d->pages);
        rb.val(2, d->grant_entries);
    } else {
        return make_error(Errc::invalid_argument, "unknown role");
    }
    rb.val(0, d->id);
    rb.text(xenstore_->socket_path(d->id));
    return ok();
}

Status ServerImpl::op_domain_state(Connection&, const proto::Request& req, ReplyBuilder& rb) {
    reap();
    const std::uint64_t dom = req.arg[0];
    Domain* d = dom < kFirstReservedDomId ? find_domain(static_cast<DomId>(dom)) : nullptr;
    rb.val(0, d != nullptr);
    rb.val(1, d != nullptr && d->dying);
    rb.val(2, 0);
    return ok();
}

Status ServerImpl::op_domain_name(Connection&, const proto::Request& req, ReplyBuilder& rb) {
    const std::uint64_t dom = req.arg[0];
    Domain* d = dom < kFirstReservedDomId ? find_domain(static_cast<DomId>(dom)) : nullptr;
    if (d == nullptr) return bad_domain(dom);
    rb.text(d->name);
    return ok();
}

Status ServerImpl::op_create_domain(Connection&, const proto::Request& req, ReplyBuilder& rb) {
    bool terminated = false;
    const std::string name(proto::get_text(req.text, sizeof(req.text), terminated));
    const std::uint64_t pages = req.arg[0];
    const std::uint64_t frames = req.arg[1];
    if (!valid_domain_name(name))
        return make_error(Errc::invalid_argument, "bad domain name (1..63 of [A-Za-z0-9_.-])");
    if (pages == 0 || pages > kMaxMemoryPages)
        return make_error(Errc::invalid_argument, "memory pages out of range");
    if (frames == 0 || frames > kMaxGrantFrames)
        return make_error(Errc::invalid_argument, "grant frames out of range");
    if (req.arg[2] > 1) return make_error(Errc::invalid_argument, "bad flag");
    for (const auto& [id, other] : domains_)
        if (!other->dying && other->name == name)
            return make_error(Errc::exists, "a domain named " + name + " exists");

    DomId dom = kDomIdInvalid;
    for (unsigned tries = 0; tries < kFirstReservedDomId && dom == kDomIdInvalid; ++tries) {
        const DomId candidate = next_domid_;
        next_domid_ = next_domid_ + 1 >= kFirstReservedDomId ? 1 : next_domid_ + 1;
        if (domains_.count(candidate) == 0) dom = candidate;
    }
    if (dom == kDomIdInvalid) return make_error(Errc::busy, "no free domain id");

    auto d = std::make_unique<Domain>();
    d->id = dom;
    d->name = name;
    d->instance = next_instance_++;
    d->pages = static_cast<std::uint32_t>(pages);
    d->grant_entries = static_cast<std::uint32_t>(frames) * kGrantEntriesPerFrame;
    d->max_ports = kGuestMaxPorts;
    d->destroy_when_guest_exits = req.arg[2] != 0;

    const std::string tag = "dpnb-sim-d" + std::to_string(dom);
    auto mem = create_memfd((tag + "-memory").c_str(), std::size_t{d->pages} * kPageSize);
    if (!mem) return std::move(mem).error();
    d->memory_fd = std::move(*mem);
    auto gnt = create_memfd((tag + "-gnttab").c_str(), d->grant_entries * sizeof(GrantWords));
    if (!gnt) return std::move(gnt).error();
    d->gnttab_fd = std::move(*gnt);
    auto act = create_memfd((tag + "-active").c_str(), d->grant_entries * sizeof(ActiveEntry));
    if (!act) return std::move(act).error();
    d->active_fd = std::move(*act);
    for (int fd : {d->memory_fd.get(), d->gnttab_fd.get(), d->active_fd.get()})
        if (Status st = seal_memfd(fd, false); !st) return st;
    auto gnt_map = map_shared(d->gnttab_fd.get(), d->grant_entries * sizeof(GrantWords), true);
    if (!gnt_map) return std::move(gnt_map).error();
    d->gnttab = std::move(*gnt_map);
    auto act_map = map_shared(d->active_fd.get(), d->grant_entries * sizeof(ActiveEntry), true);
    if (!act_map) return std::move(act_map).error();
    d->active = std::move(*act_map);

    if (Status st = xenstore_->introduce_domain(dom, name); !st) return st;
    publish_registry(*d);
    spdlog::info("simulated hypervisor: domain {} ({}) created, {} pages, {} grant entries", dom,
                 name, d->pages, d->grant_entries);
    domains_.emplace(dom, std::move(d));
    rb.val(0, dom);
    return ok();
}

Status ServerImpl::op_destroy_domain(Connection&, const proto::Request& req, ReplyBuilder&) {
    if (req.arg[0] >= kFirstReservedDomId) return bad_domain(req.arg[0]);
    return destroy_domain(static_cast<DomId>(req.arg[0]));
}

Status ServerImpl::op_domain_info(Connection&, const proto::Request& req, ReplyBuilder& rb) {
    reap();
    if (req.arg[0] >= kFirstReservedDomId) return bad_domain(req.arg[0]);
    auto it = domains_.lower_bound(static_cast<DomId>(req.arg[0]));
    if (it == domains_.end()) return make_error(Errc::not_found, "no more domains");
    const Domain& d = *it->second;
    std::uint32_t ports = 0;
    for (const Port& p : d.ports)
        ports += p.state != Port::State::free;
    rb.val(0, d.id);
    rb.val(1, d.dying);
    rb.val(2, d.guest != 0);
    rb.val(3, d.pages);
    rb.val(4, d.grant_entries);
    rb.val(5, d.grant_entries != 0 ? pinned_grants(d.grant_memory()) : 0);
    rb.val(6, ports);
    rb.text(d.name);
    return ok();
}

Status ServerImpl::op_stats(Connection&, const proto::Request&, ReplyBuilder& rb) {
    reap();
    ServerStats s;
    s.domains = static_cast<std::uint32_t>(domains_.size());
    for (const auto& [id, d] : domains_) {
        s.dying_domains += d->dying;
        for (const Port& p : d->ports)
            s.event_channel_ports += p.state != Port::State::free;
        if (d->grant_entries != 0) s.pinned_grants += pinned_grants(d->grant_memory());
    }
    for (const auto& [id, conn] : connections_) {
        if (conn->closed) continue;
        ++s.connections;
        s.backend_attachments += static_cast<std::uint32_t>(conn->ledgers.size());
    }
    s.event_channel_handles = static_cast<std::uint32_t>(handles_.size());
    s.translation_tables = static_cast<std::uint32_t>(iotts_.size());
    for (const auto& [key, t] : iotts_)
        for (std::uint8_t p : t->pinned)
            s.translation_entries += p != 0;
    const std::uint64_t vals[] = {s.domains,
                                  s.dying_domains,
                                  s.connections,
                                  s.event_channel_handles,
                                  s.event_channel_ports,
                                  s.translation_tables,
                                  s.translation_entries,
                                  s.pinned_grants,
                                  s.backend_attachments};
    for (std::size_t i = 0; i < std::size(vals); ++i)
        rb.val(i, vals[i]);
    return ok();
}

// --- handlers: backend attachments ---------------------------------------------------------

Status ServerImpl::op_attach_guest(Connection& conn, const proto::Request& req, ReplyBuilder& rb) {
    if (req.arg[0] >= kFirstReservedDomId) return bad_domain(req.arg[0]);
    Domain* d = find_live_domain(static_cast<DomId>(req.arg[0]));
    if (d == nullptr) return bad_domain(req.arg[0]);
    if (d->grant_entries == 0)
        return make_error(Errc::not_found,
                          "domain " + std::to_string(d->id) + " has no grant table");
    auto it = conn.ledgers.find(d->id);
    if (it != conn.ledgers.end() && it->second.instance != d->instance) {
        conn.ledgers.erase(it); // a previous domain under the same id, long freed
        it = conn.ledgers.end();
    }
    if (it == conn.ledgers.end()) {
        Ledger ledger;
        ledger.instance = d->instance;
        const std::size_t bytes = d->grant_entries * sizeof(LedgerEntry);
        auto fd = create_memfd("dpnb-sim-ledger", bytes);
        if (!fd) return std::move(fd).error();
        ledger.fd = std::move(*fd);
        if (Status st = seal_memfd(ledger.fd.get(), false); !st) return st;
        auto map = map_shared(ledger.fd.get(), bytes, true);
        if (!map) return std::move(map).error();
        ledger.map = std::move(*map);
        it = conn.ledgers.emplace(d->id, std::move(ledger)).first;
    }
    rb.fds = {d->memory_fd.get(), d->gnttab_fd.get(), d->active_fd.get(), it->second.fd.get()};
    rb.val(0, d->instance);
    rb.val(1, d->pages);
    rb.val(2, d->grant_entries);
    return ok();
}

Status ServerImpl::op_detach_guest(Connection& conn, const proto::Request& req, ReplyBuilder&) {
    if (req.arg[0] >= kFirstReservedDomId) return bad_domain(req.arg[0]);
    const auto dom = static_cast<DomId>(req.arg[0]);
    auto it = conn.ledgers.find(dom);
    if (it == conn.ledgers.end() || it->second.instance != req.arg[1]) return ok();
    // The process says it holds nothing any more; whatever the ledger still shows was leaked
    // by it and is dropped as if its mappings were closed.
    Domain* d = find_domain(dom);
    if (d != nullptr && d->instance == it->second.instance)
        release_ledger(d->grant_memory(), it->second.map.as<LedgerEntry>());
    conn.ledgers.erase(it);
    reap();
    return ok();
}

// --- the public face -----------------------------------------------------------------------

std::string default_dir() {
    const char* env = std::getenv("DPNB_SIM_DIR");
    return env != nullptr && *env != '\0' ? std::string(env) : std::string("/run/dpnetback/sim");
}

Server::Server(std::unique_ptr<ServerImpl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::start(const std::string& dir) {
    auto impl = ServerImpl::start(dir);
    if (!impl) return std::move(impl).error();
    return std::unique_ptr<Server>(new Server(std::move(*impl)));
}

const std::string& Server::dir() const {
    return impl_->dir();
}

} // namespace dpnb::hv::sim
