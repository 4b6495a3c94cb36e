// SimEventChannels: one event-channel handle (what opening /dev/xen/evtchn gives), used by
// backends and guests alike.
//
// Each bound port has two eventfds, handed out by the server: `listen` (the peer's notify
// writes it) and `kick` (ours, the peer's listen). The handle's fd is an epoll set of its
// ports' listen eventfds, registered EPOLLONESHOT: a port that fired is reported once and
// then stays masked until unmask() re-arms it, as /dev/xen/evtchn masks a port until the
// user writes it back; a notification that arrives while masked is reported on unmask.
// notify() is one eventfd write, with no server round trip.
//
// A per-port eventfd (rather than one per handle, with a shared page of pending bits)
// keeps domains apart: whoever holds an eventfd can also read (drain) it, so a guest could
// otherwise swallow or forge other guests' events.
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <vector>

#include "sim/client.hpp"

namespace dpnb::hv::sim {
namespace {

class SimEventChannels final : public EventChannels {
public:
    SimEventChannels(std::shared_ptr<proto::Channel> ch, std::uint32_t handle, UniqueFd epoll,
                     Mapping status)
        : ch_(std::move(ch)), handle_(handle), epoll_(std::move(epoll)),
          status_(std::move(status)) {}
    ~SimEventChannels() override {
        (void)ch_->call(proto::make_request(proto::Op::evtchn_close, handle_), 0);
    }

    Result<EvtchnPort> bind_interdomain(DomId remote, EvtchnPort remote_port) override {
        return bind(
            proto::make_request(proto::Op::evtchn_bind_interdomain, handle_, remote, remote_port));
    }
    Result<EvtchnPort> bind_unbound(DomId remote) override {
        return bind(proto::make_request(proto::Op::evtchn_bind_unbound, handle_, remote));
    }

    Status unbind(EvtchnPort local) override {
        if (!bound(local)) return not_bound(local);
        auto rsp = ch_->call(proto::make_request(proto::Op::evtchn_unbind, handle_, local), 0);
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, ports_[local].listen.get(), nullptr);
        ports_[local] = {};
        if (!rsp) return std::move(rsp).error();
        return ok();
    }

    Status notify(EvtchnPort local) override {
        if (!bound(local)) return not_bound(local);
        const std::uint8_t st = std::atomic_ref<std::uint8_t>(status_.as<std::uint8_t>()[local])
                                    .load(std::memory_order_acquire);
        if (st == evtchn_status::kPeerGone)
            return make_error(Errc::closed,
                              "the remote domain of port " + std::to_string(local) + " is gone");
        const std::uint64_t one = 1;
        if (::write(ports_[local].kick.get(), &one, sizeof(one)) < 0 && errno != EAGAIN)
            return sys_error(Errc::io, "event channel notify");
        return ok(); // EAGAIN: the counter is saturated, the peer has a pending event anyway
    }

    int fd() const override { return epoll_.get(); }

    Result<std::optional<EvtchnPort>> pending() override {
        if (ready_head_ == ready_.size()) {
            std::array<epoll_event, 64> events;
            const int n = ::epoll_wait(epoll_.get(), events.data(), events.size(), 0);
            if (n < 0 && errno != EINTR) return sys_error(Errc::io, "epoll_wait");
            ready_.clear();
            ready_head_ = 0;
            for (int i = 0; i < n; ++i)
                ready_.push_back(events[i].data.u32);
        }
        while (ready_head_ < ready_.size()) {
            const EvtchnPort port = ready_[ready_head_++];
            if (!bound(port)) continue; // unbound since epoll reported it
            std::uint64_t count;
            const ssize_t r = ::read(ports_[port].listen.get(), &count, sizeof(count));
            (void)r; // EAGAIN: drained already; the port fired all the same
            return std::optional<EvtchnPort>(port);
        }
        return std::optional<EvtchnPort>();
    }

    Status unmask(EvtchnPort local) override {
        if (!bound(local)) return not_bound(local);
        return arm(local, EPOLL_CTL_MOD);
    }

private:
    struct LocalPort {
        UniqueFd listen, kick;
    };

    bool bound(EvtchnPort p) const { return p < ports_.size() && ports_[p].listen; }
    static Status not_bound(EvtchnPort p) {
        return make_error(Errc::invalid_argument,
                          "port " + std::to_string(p) + " is not bound by this handle");
    }

    Status arm(EvtchnPort port, int op) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLONESHOT;
        ev.data.u32 = port;
        if (::epoll_ctl(epoll_.get(), op, ports_[port].listen.get(), &ev) != 0)
            return sys_error(Errc::io, "epoll_ctl event channel");
        return ok();
    }

    Result<EvtchnPort> bind(const proto::Request& req) {
        auto rsp = ch_->call(req, 2);
        if (!rsp) return std::move(rsp).error();
        const std::uint64_t port = rsp->reply.val[0];
        if (port == 0 || port >= kMaxPorts)
            return make_error(Errc::protocol, "bad port from the simulated hypervisor");
        if (port >= ports_.size()) ports_.resize(port + 1);
        ports_[port].listen = std::move(rsp->fds[0]);
        ports_[port].kick = std::move(rsp->fds[1]);
        if (Status st = arm(static_cast<EvtchnPort>(port), EPOLL_CTL_ADD); !st) {
            (void)unbind(static_cast<EvtchnPort>(port));
            return st.error();
        }
        return static_cast<EvtchnPort>(port);
    }

    std::shared_ptr<proto::Channel> ch_;
    std::uint32_t handle_;
    UniqueFd epoll_;
    Mapping status_; // read-only: per port, kOpen or kPeerGone
    std::vector<LocalPort> ports_;
    std::vector<EvtchnPort> ready_; // reported by epoll, not yet returned by pending()
    std::size_t ready_head_ = 0;
};

} // namespace

Result<std::unique_ptr<EventChannels>> open_event_channels(std::shared_ptr<proto::Channel> ch) {
    UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) return sys_error(Errc::io, "epoll_create1");
    auto rsp = ch->call(proto::make_request(proto::Op::evtchn_open), 1);
    if (!rsp) return std::move(rsp).error();
    const auto handle = static_cast<std::uint32_t>(rsp->reply.val[0]);
    auto status = map_checked(rsp->fds[0].get(), evtchn_status::kBytes, false);
    if (!status) {
        (void)ch->call(proto::make_request(proto::Op::evtchn_close, handle), 0);
        return std::move(status).error();
    }
    return std::unique_ptr<EventChannels>(
        new SimEventChannels(std::move(ch), handle, std::move(epoll), std::move(*status)));
}

} // namespace dpnb::hv::sim
