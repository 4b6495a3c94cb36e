// epoll-based event loop (event_loop.hpp). Each registration carries a generation number in
// its epoll data, so an event for an fd that was removed (and perhaps reused) by an earlier
// handler of the same batch is recognised as stale and dropped.
#include "dpnb/daemon/event_loop.hpp"

#include <cerrno>
#include <cstring>
#include <sys/epoll.h>
#include <unistd.h>

namespace dpnb::daemon {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
    const int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return make_error(Errc::io, std::string("epoll_create1: ") + std::strerror(errno), errno);
    return std::unique_ptr<EventLoop>(new EventLoop(fd));
}

EventLoop::~EventLoop() {
    ::close(epfd_);
}

Status EventLoop::add(int fd, std::uint32_t events, Handler handler) {
    const std::uint32_t gen = next_generation_++;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (static_cast<std::uint64_t>(gen) << 32) | static_cast<std::uint32_t>(fd);
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0)
        return make_error(Errc::io, std::string("epoll_ctl(ADD): ") + std::strerror(errno), errno);
    entries_[fd] = Entry{gen, std::make_shared<Handler>(std::move(handler))};
    return ok();
}

Status EventLoop::modify(int fd, std::uint32_t events) {
    auto it = entries_.find(fd);
    if (it == entries_.end()) return make_error(Errc::not_found, "fd not in the loop");
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 =
        (static_cast<std::uint64_t>(it->second.generation) << 32) | static_cast<std::uint32_t>(fd);
    if (epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0)
        return make_error(Errc::io, std::string("epoll_ctl(MOD): ") + std::strerror(errno), errno);
    return ok();
}

void EventLoop::remove(int fd) {
    if (entries_.erase(fd)) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

Status EventLoop::run_once(std::chrono::milliseconds timeout) {
    epoll_event events[32];
    const int n = epoll_wait(epfd_, events, 32, static_cast<int>(timeout.count()));
    if (n < 0) {
        if (errno == EINTR) return ok();
        return make_error(Errc::io, std::string("epoll_wait: ") + std::strerror(errno), errno);
    }
    for (int i = 0; i < n; ++i) {
        const int fd = static_cast<int>(events[i].data.u64 & 0xffffffffU);
        const auto gen = static_cast<std::uint32_t>(events[i].data.u64 >> 32);
        auto it = entries_.find(fd);
        if (it == entries_.end() || it->second.generation != gen) continue; // stale
        // Keep the handler alive even if it removes itself.
        std::shared_ptr<Handler> h = it->second.handler;
        (*h)(events[i].events);
    }
    return ok();
}

} // namespace dpnb::daemon
