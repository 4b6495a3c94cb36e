// XenEventChannels: EventChannels over libxenevtchn (/dev/xen/evtchn).
//
// The handle's fd is set O_NONBLOCK, so pending() (a read() of the next port) returns
// EAGAIN instead of sleeping when no port is pending; lcores poll() the fd themselves when
// idle. libxenevtchn's header warns that O_NONBLOCK did not work on some old kernels
// (Linux 3.12); Linux 6.1's evtchn_read() honours it. A port that fired stays masked until
// unmask(), which is also the late EOI of Linux's evtchn driver. Closing the handle unbinds
// every port bound through it.
//
// bind_interdomain(): Xen marks the new local port pending at once (evtchn_bind_interdomain:
// notifications sent to the unbound port may have been lost), so pending() soon returns it,
// possibly after the call returned (the upcall may land on another vCPU). Treat it as any
// other kick and unmask() it; a caller that reads it and forgets the unmask never hears
// from the peer again (seen in the Xen lab, tests/e2e xen-probe). The simulated hypervisor
// does the same.
#pragma once

extern "C" { // the Xen libraries' headers have no C++ guards
#include <xenevtchn.h>
}

#include <memory>
#include <optional>
#include <string>

#include "dpnb/hv/event_channel.hpp"
#include "xen/xen_log.hpp"

namespace dpnb::hv::xen {

class XenEventChannels final : public EventChannels {
public:
    static Result<std::unique_ptr<XenEventChannels>> open();
    ~XenEventChannels() override;
    XenEventChannels(const XenEventChannels&) = delete;
    XenEventChannels& operator=(const XenEventChannels&) = delete;

    Result<EvtchnPort> bind_interdomain(DomId remote, EvtchnPort remote_port) override;
    Result<EvtchnPort> bind_unbound(DomId remote) override;
    Status unbind(EvtchnPort local) override;
    Status notify(EvtchnPort local) override;
    int fd() const override { return fd_; }
    std::optional<std::string> irq_action() const override {
        if (irq_action_.empty()) return std::nullopt;
        return irq_action_;
    }
    Result<std::optional<EvtchnPort>> pending() override;
    Status unmask(EvtchnPort local) override;

private:
    XenEventChannels() = default;

    QuietLogger log_;
    xenevtchn_handle* h_ = nullptr;
    int fd_ = -1;
    std::string irq_action_; // "evtchn:" + the opening thread's name
};

} // namespace dpnb::hv::xen
