// The simulated hypervisor's server: domain registry, event-channel table, translation
// tables, pin ledgers of backend processes, and the embedded xenstore server. One thread
// runs everything (epoll over the listening socket and every client connection); requests
// are short and never block, so no state needs a lock. server.cpp has the loop, the
// connections and the domains; server_evtchn.cpp the event channels; server_iott.cpp the
// translation tables.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dpnb/hv/sim_xenstore_server.hpp"
#include "sim/grant_pin.hpp"
#include "sim/layout.hpp"
#include "sim/os.hpp"
#include "sim/protocol.hpp"

namespace dpnb::hv::sim {

struct ServerStats;

class ServerImpl {
public:
    static Result<std::unique_ptr<ServerImpl>> start(const std::string& dir);
    ~ServerImpl();
    ServerImpl(const ServerImpl&) = delete;
    ServerImpl& operator=(const ServerImpl&) = delete;

    const std::string& dir() const { return dir_; }

private:
    using ConnId = std::uint64_t;

    // An event channel port, as Xen's struct evtchn. Both ends of an interdomain channel
    // share two eventfds: each end listens on one and kicks the other. An unbound port keeps
    // the pair ready for whoever binds it, so the guest can notify before the backend binds.
    struct Port {
        enum class State : std::uint8_t { free, unbound, interdomain };
        State state = State::free;
        std::uint32_t handle = 0;     // owning event-channel handle
        DomId remote = kDomIdInvalid; // unbound: who may bind; interdomain: the peer
        EvtchnPort remote_port = 0;
        std::shared_ptr<UniqueFd> listen;
        std::shared_ptr<UniqueFd> kick;
    };

    struct Domain {
        DomId id = kDomIdInvalid;
        std::string name;
        std::uint64_t instance = 0;
        std::uint32_t pages = 0;
        std::uint32_t grant_entries = 0;
        EvtchnPort max_ports = 0;
        bool dying = false;
        bool destroy_when_guest_exits = true;
        ConnId guest = 0; // the connection running this domain, 0 if none
        UniqueFd memory_fd, gnttab_fd, active_fd;
        Mapping gnttab, active;  // hypervisor-side views (pins by the translation tables)
        std::vector<Port> ports; // index = port number; port 0 is never allocated

        GrantTableMemory grant_memory() const {
            return {gnttab.as<GrantWords>(), active.as<ActiveEntry>(), grant_entries, pages};
        }
    };

    // The pins one backend process holds on one guest (see grant_pin.hpp).
    struct Ledger {
        std::uint64_t instance = 0;
        UniqueFd fd;
        Mapping map;
    };

    struct Connection {
        ConnId id = 0;
        UniqueFd fd;
        proto::Role role = proto::Role::none;
        DomId dom = kDomIdInvalid;
        bool closed = false;
        std::map<DomId, Ledger> ledgers; // backend: attached guests
        std::vector<std::uint32_t> evtchn_handles;
        std::map<DomId, std::uint32_t> iott_opens; // backend: guest -> open count
    };

    struct EvtchnHandle {
        std::uint32_t id = 0;
        ConnId conn = 0;
        DomId dom = kDomIdInvalid;
        UniqueFd status_fd;
        Mapping status;
    };

    // The I/O translation table of (guest, backend).
    struct Iott {
        DomId guest = kDomIdInvalid;
        DomId backend = kDomIdInvalid;
        std::uint32_t entries = 0;
        UniqueFd addr_fd, status_fd;
        Mapping addr, status;
        std::vector<std::uint8_t> pinned; // per ref: 0 none, 1 read-only pin, 2 writable pin
        std::map<ConnId, std::uint32_t> openers;
    };

    struct ReplyBuilder {
        proto::Reply reply{};
        std::vector<int> fds; // borrowed from the objects that own them
        void val(std::size_t i, std::uint64_t v) { reply.val[i] = v; }
        void text(std::string_view t) { proto::set_text(reply.text, sizeof(reply.text), t); }
    };

    using Handler = Status (ServerImpl::*)(Connection&, const proto::Request&, ReplyBuilder&);
    struct HandlerEntry {
        Handler fn;
        unsigned roles; // bit per proto::Role allowed to call it
    };
    static const HandlerEntry kHandlers[static_cast<std::size_t>(proto::Op::count_)];

    explicit ServerImpl(std::string dir) : dir_(std::move(dir)) {}
    Status init();
    void run();
    void accept_clients();
    void serve(Connection& conn);
    void close_connection(Connection& conn);
    void reap();

    Domain* find_domain(DomId dom);
    Domain* find_live_domain(DomId dom); // exists and not dying
    Connection* find_connection(ConnId id);
    Status destroy_domain(DomId dom);
    void free_domain(DomId dom);
    void publish_registry(const Domain& d);

    // Event channels (server_evtchn.cpp).
    EvtchnHandle* find_handle(Connection& conn, std::uint64_t id);
    Result<EvtchnPort> allocate_port(Domain& d, std::uint32_t handle);
    void close_port(Domain& d, EvtchnPort port, bool peer_gone);
    void close_handle(std::uint32_t id);
    void close_domain_ports(Domain& d);
    void set_port_status(std::uint32_t handle, EvtchnPort port, std::uint8_t status);

    // Translation tables (server_iott.cpp).
    Result<Iott*> iott_for(Domain& guest, DomId backend);
    // The hypervisor half of translation_table.hpp's race protocol.
    Status remove_entry(Iott& t, Domain& guest, GrantRef ref, bool restore_on_busy);
    void drop_iott_opener(ConnId conn, DomId guest);
    bool reap_guest_tables(Domain& guest); // false while some entry is still in flight
    void release_backend_tables(DomId backend);
    void erase_tables_of(DomId dom);

    Status op_hello(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_domain_state(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_domain_name(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_create_domain(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_destroy_domain(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_domain_info(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_stats(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_attach_guest(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_detach_guest(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_evtchn_open(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_evtchn_close(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_evtchn_bind_unbound(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_evtchn_bind_interdomain(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_evtchn_unbind(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_iott_open(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_iott_close(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_iott_add(Connection&, const proto::Request&, ReplyBuilder&);
    Status op_iott_remove(Connection&, const proto::Request&, ReplyBuilder&);

    std::string dir_;
    std::string socket_path_;
    UniqueFd listen_fd_, epoll_fd_, wake_fd_;
    std::thread thread_;
    std::unique_ptr<XenstoreServer> xenstore_;

    UniqueFd registry_fd_;
    Mapping registry_;

    std::map<DomId, std::unique_ptr<Domain>> domains_;
    std::map<ConnId, std::unique_ptr<Connection>> connections_;
    std::map<std::uint32_t, EvtchnHandle> handles_;
    std::map<std::pair<DomId, DomId>, std::unique_ptr<Iott>> iotts_; // (guest, backend)

    ConnId next_conn_ = 16; // ids below are epoll tags (listening socket, wake-up)
    std::uint32_t next_handle_ = 1;
    std::uint64_t next_instance_ = 1;
    DomId next_domid_ = 1;
};

} // namespace dpnb::hv::sim
