// The control thread's event loop: epoll over the control plane's fd, the signalfd, the
// management and metrics sockets and their connections, and a timer. Handlers run on the
// loop's thread, one at a time; a handler may add or remove fds (its own included).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "dpnb/util/result.hpp"

namespace dpnb::daemon {

class EventLoop {
public:
    using Handler = std::function<void(std::uint32_t events)>; // EPOLLIN, EPOLLOUT, EPOLLHUP...

    static Result<std::unique_ptr<EventLoop>> create();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // The loop does not own `fd`; remove() it before closing it.
    Status add(int fd, std::uint32_t events, Handler handler);
    Status modify(int fd, std::uint32_t events);
    void remove(int fd);

    // Waits up to `timeout` (or until something is ready) and runs the ready handlers.
    Status run_once(std::chrono::milliseconds timeout);

private:
    explicit EventLoop(int epfd) : epfd_(epfd) {}
    struct Entry {
        std::uint32_t generation;
        std::shared_ptr<Handler> handler;
    };
    int epfd_;
    std::uint32_t next_generation_ = 1;
    std::unordered_map<int, Entry> entries_;
};

} // namespace dpnb::daemon
