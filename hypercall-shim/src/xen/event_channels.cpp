// XenEventChannels: event channels over libxenevtchn (see event_channels.hpp).
#include "xen/event_channels.hpp"

#include <fcntl.h>
#include <sys/prctl.h>

#include <cerrno>
#include <string>

#include "xen/xen_errors.hpp"

namespace dpnb::hv::xen {

namespace {

std::string port_text(EvtchnPort p) {
    return "port " + std::to_string(p);
}

} // namespace

Result<std::unique_ptr<XenEventChannels>> XenEventChannels::open() {
    std::unique_ptr<XenEventChannels> e(new XenEventChannels());
    e->h_ = xenevtchn_open(e->log_.get(), 0);
    if (e->h_ == nullptr) {
        const int err = errno;
        return device_error(kEvtchnPath, "xenevtchn_open", err, e->log_.last());
    }
    e->fd_ = xenevtchn_fd(e->h_);
    // drivers/xen/evtchn.c names each port's IRQ "evtchn:%s" with the comm of the thread that
    // opened the device (evtchn_open): the thread running this.
    char comm[17] = {};
    if (::prctl(PR_GET_NAME, comm) == 0) e->irq_action_ = std::string("evtchn:") + comm;
    const int fl = ::fcntl(e->fd_, F_GETFL);
    if (fl < 0 || ::fcntl(e->fd_, F_SETFL, fl | O_NONBLOCK) < 0) {
        const int err = errno;
        return call_error(Errc::io, "cannot make the event channel fd non-blocking", err);
    }
    return e;
}

XenEventChannels::~XenEventChannels() {
    if (h_ != nullptr) xenevtchn_close(h_);
}

Result<EvtchnPort> XenEventChannels::bind_interdomain(DomId remote, EvtchnPort remote_port) {
    const xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(h_, remote, remote_port);
    if (p < 0) {
        const int err = errno;
        // EINVAL: the remote port is not unbound-for-us; ESRCH: no such domain.
        const Errc code = (err == EINVAL || err == ESRCH) ? Errc::invalid_argument
                          : err == EPERM || err == EACCES ? Errc::permission_denied
                                                          : Errc::io;
        return call_error(code,
                          "xenevtchn_bind_interdomain(dom " + std::to_string(remote) + ", " +
                              port_text(remote_port) + ")",
                          err);
    }
    return static_cast<EvtchnPort>(p);
}

Result<EvtchnPort> XenEventChannels::bind_unbound(DomId remote) {
    const xenevtchn_port_or_error_t p = xenevtchn_bind_unbound_port(h_, remote);
    if (p < 0) {
        const int err = errno;
        return call_error(err == ESRCH ? Errc::invalid_argument : Errc::io,
                          "xenevtchn_bind_unbound_port(dom " + std::to_string(remote) + ")", err);
    }
    return static_cast<EvtchnPort>(p);
}

Status XenEventChannels::unbind(EvtchnPort local) {
    if (xenevtchn_unbind(h_, local) != 0) {
        const int err = errno;
        // ENOTCONN: not bound through this handle.
        return call_error(err == ENOTCONN ? Errc::not_found : Errc::io,
                          "xenevtchn_unbind(" + port_text(local) + ")", err);
    }
    return ok();
}

Status XenEventChannels::notify(EvtchnPort local) {
    if (xenevtchn_notify(h_, local) != 0) {
        const int err = errno;
        return call_error(err == ENOTCONN ? Errc::not_found : Errc::io,
                          "xenevtchn_notify(" + port_text(local) + ")", err);
    }
    return ok();
}

Result<std::optional<EvtchnPort>> XenEventChannels::pending() {
    const xenevtchn_port_or_error_t p = xenevtchn_pending(h_);
    if (p >= 0) return std::optional<EvtchnPort>(static_cast<EvtchnPort>(p));
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return std::optional<EvtchnPort>{};
    // EFBIG: the driver's ring of pending ports overflowed (cannot happen while every port
    // stays masked until unmask(), as Linux's evtchn sizes the ring by bound ports).
    return call_error(Errc::io, "xenevtchn_pending", err);
}

Status XenEventChannels::unmask(EvtchnPort local) {
    if (xenevtchn_unmask(h_, local) != 0) {
        const int err = errno;
        return call_error(Errc::io, "xenevtchn_unmask(" + port_text(local) + ")", err);
    }
    return ok();
}

} // namespace dpnb::hv::xen
