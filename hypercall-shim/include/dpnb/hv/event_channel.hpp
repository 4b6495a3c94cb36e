// Event channels: the doorbells between a backend and a frontend, as libxenevtchn offers
// them. One handle has one file descriptor that becomes readable when any port bound
// through that handle is pending; a data-path lcore owns one handle and sleeps on its fd.
// A port that fired stays masked until unmask(), as with /dev/xen/evtchn.
#pragma once

#include <optional>
#include <string>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv {

class EventChannels {
public:
    virtual ~EventChannels() = default;

    // Backend side: bind a local port to `remote_port` that `remote` allocated for us.
    virtual Result<EvtchnPort> bind_interdomain(DomId remote, EvtchnPort remote_port) = 0;
    // Frontend side: allocate a port that `remote` may bind to.
    virtual Result<EvtchnPort> bind_unbound(DomId remote) = 0;
    virtual Status unbind(EvtchnPort local) = 0;

    // Kick the peer of `local`. Cheap enough for the data path (one syscall or less).
    virtual Status notify(EvtchnPort local) = 0;

    // Readable when some port of this handle is pending. Non-blocking.
    virtual int fd() const = 0;
    // Next pending port, or nullopt when none is pending. Never blocks.
    virtual Result<std::optional<EvtchnPort>> pending() = 0;
    virtual Status unmask(EvtchnPort local) = 0;

    // The name of the kernel interrupt (its action in /proc/interrupts) that each port bound
    // through this handle gets, when ports get one: Linux's evtchn driver makes an IRQ per
    // bound port named "evtchn:" and the name of the thread that opened the handle. nullopt
    // where no kernel IRQ stands behind a port (the simulator).
    virtual std::optional<std::string> irq_action() const { return std::nullopt; }
};

} // namespace dpnb::hv
