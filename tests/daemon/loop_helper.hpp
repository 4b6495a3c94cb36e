// Test helper: runs an EventLoop on the test's thread while a client does its part on
// another thread, until the client is done (or a generous deadline passes: a failure).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "dpnb/daemon/event_loop.hpp"

namespace dpnb::daemon::test {

inline constexpr auto kDeadline = std::chrono::seconds(60);

template <class F>
auto run_with_loop(EventLoop& loop, F client) -> decltype(client()) {
    auto fut = std::async(std::launch::async, std::move(client));
    const auto end = std::chrono::steady_clock::now() + kDeadline;
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        if (std::chrono::steady_clock::now() > end) {
            ADD_FAILURE() << "client did not finish";
            break;
        }
        EXPECT_TRUE(loop.run_once(std::chrono::milliseconds(20)));
    }
    return fut.get();
}

} // namespace dpnb::daemon::test
