// Event channels in the simulated hypervisor's server: ports per domain as in Xen
// (xen/common/event_channel.c): alloc_unbound, bind_interdomain, close. The server only
// sets channels up; notifications go straight from process to process through eventfds.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "sim/server.hpp"

namespace dpnb::hv::sim {
namespace {

constexpr std::size_t kMaxHandlesPerConnection = 64;

void kick(const std::shared_ptr<UniqueFd>& fd) {
    const std::uint64_t one = 1;
    // EAGAIN only when the counter is saturated: the port is pending anyway.
    if (fd) {
        const ssize_t n = ::write(fd->get(), &one, sizeof(one));
        (void)n;
    }
}

} // namespace

ServerImpl::EvtchnHandle* ServerImpl::find_handle(Connection& conn, std::uint64_t id) {
    auto it = id <= UINT32_MAX ? handles_.find(static_cast<std::uint32_t>(id)) : handles_.end();
    if (it == handles_.end() || it->second.conn != conn.id) return nullptr;
    return &it->second;
}

void ServerImpl::set_port_status(std::uint32_t handle, EvtchnPort port, std::uint8_t status) {
    auto it = handles_.find(handle);
    if (it == handles_.end() || port >= evtchn_status::kBytes) return;
    std::atomic_ref<std::uint8_t>(it->second.status.as<std::uint8_t>()[port])
        .store(status, std::memory_order_release);
}

Result<EvtchnPort> ServerImpl::allocate_port(Domain& d, std::uint32_t handle) {
    EvtchnPort port = 1;
    while (port < d.ports.size() && d.ports[port].state != Port::State::free)
        ++port;
    if (port > d.max_ports)
        return make_error(Errc::busy,
                          "domain " + std::to_string(d.id) + " has no free event channel port");
    if (port >= d.ports.size()) d.ports.resize(port + 1);
    d.ports[port] = Port{};
    d.ports[port].handle = handle;
    set_port_status(handle, port, evtchn_status::kOpen);
    return port;
}

// evtchn_close(): the peer of an interdomain port becomes unbound (its notifications are then
// dropped, as Xen drops them); with `peer_gone` (this domain is being destroyed) it is also
// told so, and its notify fails from then on.
void ServerImpl::close_port(Domain& d, EvtchnPort port, bool peer_gone) {
    if (port >= d.ports.size()) return;
    Port& p = d.ports[port];
    if (p.state == Port::State::interdomain) {
        Domain* r = find_domain(p.remote);
        if (r != nullptr && p.remote_port < r->ports.size()) {
            Port& rp = r->ports[p.remote_port];
            if (rp.state == Port::State::interdomain && rp.remote == d.id &&
                rp.remote_port == port) {
                rp.state = Port::State::unbound;
                rp.remote = d.id;
                rp.remote_port = 0;
                if (peer_gone) set_port_status(rp.handle, p.remote_port, evtchn_status::kPeerGone);
            }
        }
    }
    d.ports[port] = Port{};
}

void ServerImpl::close_domain_ports(Domain& d) {
    for (EvtchnPort port = 1; port < d.ports.size(); ++port)
        if (d.ports[port].state != Port::State::free) close_port(d, port, true);
}

void ServerImpl::close_handle(std::uint32_t id) {
    auto it = handles_.find(id);
    if (it == handles_.end()) return;
    if (Domain* d = find_domain(it->second.dom); d != nullptr)
        for (EvtchnPort port = 1; port < d->ports.size(); ++port)
            if (d->ports[port].state != Port::State::free && d->ports[port].handle == id)
                close_port(*d, port, false);
    if (Connection* conn = find_connection(it->second.conn); conn != nullptr)
        std::erase(conn->evtchn_handles, id);
    handles_.erase(it);
}

Status ServerImpl::op_evtchn_open(Connection& conn, const proto::Request&, ReplyBuilder& rb) {
    if (conn.evtchn_handles.size() >= kMaxHandlesPerConnection)
        return make_error(Errc::busy, "too many event channel handles");
    EvtchnHandle h;
    h.id = next_handle_++;
    h.conn = conn.id;
    h.dom = conn.dom;
    auto fd = create_memfd("dpnb-sim-evtchn", evtchn_status::kBytes);
    if (!fd) return std::move(fd).error();
    h.status_fd = std::move(*fd);
    auto map = map_shared(h.status_fd.get(), evtchn_status::kBytes, true);
    if (!map) return std::move(map).error();
    h.status = std::move(*map);
    if (Status st = seal_memfd(h.status_fd.get(), true); !st) return st;
    rb.val(0, h.id);
    rb.fds.push_back(h.status_fd.get());
    conn.evtchn_handles.push_back(h.id);
    handles_.emplace(h.id, std::move(h));
    return ok();
}

Status ServerImpl::op_evtchn_close(Connection& conn, const proto::Request& req, ReplyBuilder&) {
    if (find_handle(conn, req.arg[0]) == nullptr)
        return make_error(Errc::invalid_argument, "no such event channel handle");
    close_handle(static_cast<std::uint32_t>(req.arg[0]));
    return ok();
}

// EVTCHNOP_alloc_unbound.
Status ServerImpl::op_evtchn_bind_unbound(Connection& conn, const proto::Request& req,
                                          ReplyBuilder& rb) {
    EvtchnHandle* h = find_handle(conn, req.arg[0]);
    if (h == nullptr) return make_error(Errc::invalid_argument, "no such event channel handle");
    const std::uint64_t remote = req.arg[1] == kDomIdSelf ? conn.dom : req.arg[1];
    if (remote >= kFirstReservedDomId || find_live_domain(static_cast<DomId>(remote)) == nullptr)
        return make_error(Errc::not_found, "no such domain: " + std::to_string(remote));
    Domain* d = find_live_domain(conn.dom);
    if (d == nullptr) return make_error(Errc::closed, "domain is dying");
    auto listen = create_eventfd();
    if (!listen) return std::move(listen).error();
    auto kick_fd = create_eventfd();
    if (!kick_fd) return std::move(kick_fd).error();
    auto port = allocate_port(*d, h->id);
    if (!port) return std::move(port).error();
    Port& p = d->ports[*port];
    p.state = Port::State::unbound;
    p.remote = static_cast<DomId>(remote);
    p.listen = std::make_shared<UniqueFd>(std::move(*listen));
    p.kick = std::make_shared<UniqueFd>(std::move(*kick_fd));
    rb.val(0, *port);
    rb.fds = {p.listen->get(), p.kick->get()};
    return ok();
}

// EVTCHNOP_bind_interdomain.
Status ServerImpl::op_evtchn_bind_interdomain(Connection& conn, const proto::Request& req,
                                              ReplyBuilder& rb) {
    EvtchnHandle* h = find_handle(conn, req.arg[0]);
    if (h == nullptr) return make_error(Errc::invalid_argument, "no such event channel handle");
    const std::uint64_t remote = req.arg[1] == kDomIdSelf ? conn.dom : req.arg[1];
    const std::uint64_t rport = req.arg[2];
    Domain* r =
        remote < kFirstReservedDomId ? find_live_domain(static_cast<DomId>(remote)) : nullptr;
    if (r == nullptr)
        return make_error(Errc::not_found, "no such domain: " + std::to_string(remote));
    Domain* d = find_live_domain(conn.dom);
    if (d == nullptr) return make_error(Errc::closed, "domain is dying");
    auto remote_ok = [&] {
        if (rport == 0 || rport >= r->ports.size()) return false;
        const Port& rp = r->ports[rport];
        return rp.state == Port::State::unbound && rp.remote == d->id;
    };
    if (!remote_ok())
        return make_error(Errc::invalid_argument, "port " + std::to_string(rport) + " of domain " +
                                                      std::to_string(remote) +
                                                      " is not unbound for us");
    auto port = allocate_port(*d, h->id); // may grow d->ports: take references afterwards
    if (!port) return std::move(port).error();
    Port& lp = d->ports[*port];
    Port& rp = r->ports[rport];
    lp.state = Port::State::interdomain;
    lp.remote = r->id;
    lp.remote_port = static_cast<EvtchnPort>(rport);
    lp.listen = rp.kick;
    lp.kick = rp.listen;
    rp.state = Port::State::interdomain;
    rp.remote = d->id;
    rp.remote_port = *port;
    // Xen marks the new local port pending: notifications sent to the unbound port before
    // we bound it are not lost.
    kick(lp.listen);
    rb.val(0, *port);
    rb.fds = {lp.listen->get(), lp.kick->get()};
    return ok();
}

Status ServerImpl::op_evtchn_unbind(Connection& conn, const proto::Request& req, ReplyBuilder&) {
    EvtchnHandle* h = find_handle(conn, req.arg[0]);
    if (h == nullptr) return make_error(Errc::invalid_argument, "no such event channel handle");
    Domain* d = find_domain(conn.dom);
    const std::uint64_t port = req.arg[1];
    if (d == nullptr || port == 0 || port >= d->ports.size() ||
        d->ports[port].state == Port::State::free || d->ports[port].handle != h->id)
        return make_error(Errc::invalid_argument,
                          "port " + std::to_string(port) + " is not bound by this handle");
    close_port(*d, static_cast<EvtchnPort>(port), false);
    return ok();
}

} // namespace dpnb::hv::sim
