// TEST-ONLY: one simulated guest for the control plane's tests, in its own process (the test
// starts it with posix_spawn, so that no thread of the test process is duplicated). It claims
// a domain the test created, runs the test netfront (dpnb::netfront) on the vif the test
// plugged, and answers one-line commands on stdin with one line on stdout:
//
//   wait <link state> <ms>   poll until the netfront is in that state: "ok" | "timeout <state>"
//   send <frames> <ms>       send frames (round robin over the queues), wait for every TX
//                            completion: "ok <okay> <not okay>" | "timeout <completed>"
//   state                    "<link state>"
//   counter <name>           "<value>" of a netfront counter
//   close <ms>               orderly close: "ok" | "error <message>"
//
// Between commands it keeps polling, so it follows the backend on its own. It exits when
// stdin closes.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "dpnb/hv/sim.hpp"
#include "dpnb/netfront/counters.hpp"
#include "dpnb/netfront/netfront.hpp"

namespace {

using namespace dpnb;
using Clock = std::chrono::steady_clock;

struct Args {
    std::string dir;
    long dom = -1;
    std::uint32_t handle = 0;
    unsigned queues = 1;
    bool split = true;
    bool reconnect = true;
};

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "guest: %s needs a value\n", arg.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--dir")
            a.dir = value();
        else if (arg == "--domid")
            a.dom = std::stol(value());
        else if (arg == "--handle")
            a.handle = static_cast<std::uint32_t>(std::stoul(value()));
        else if (arg == "--queues")
            a.queues = static_cast<unsigned>(std::stoul(value()));
        else if (arg == "--single-event-channel")
            a.split = false;
        else if (arg == "--no-reconnect")
            a.reconnect = false;
        else {
            std::fprintf(stderr, "guest: unknown argument %s\n", arg.c_str());
            std::exit(2);
        }
    }
    if (a.dir.empty() || a.dom < 0) {
        std::fprintf(stderr, "guest: --dir and --domid are required\n");
        std::exit(2);
    }
    return a;
}

void reply(const std::string& line) {
    std::fputs((line + "\n").c_str(), stdout);
    std::fflush(stdout);
}

class Guest {
public:
    explicit Guest(netfront::Netfront& nf) : nf_(nf) {
        handlers_.on_tx = [this](const netfront::TxCompletion& c) {
            ++completed_;
            if (c.status != netfront::TxStatus::okay) ++failed_;
        };
    }

    // One round: wait up to `ms` for the netfront's fd or stdin, then poll the netfront.
    // Returns false when the hypervisor connection is gone.
    bool round(int ms, bool* stdin_ready = nullptr) {
        pollfd p[2] = {{nf_.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        (void)::poll(p, stdin_ready ? 2 : 1, ms);
        if (stdin_ready) *stdin_ready = p[1].revents != 0;
        if (Status st = nf_.poll(std::chrono::milliseconds(0), handlers_); !st) {
            spdlog::error("guest: poll: {}", st.error().describe());
            return false;
        }
        return true;
    }

    std::string command(const std::string& line) {
        std::istringstream in(line);
        std::string verb;
        in >> verb;
        if (verb == "wait") {
            std::string want;
            long ms = 0;
            in >> want >> ms;
            const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
            while (netfront::to_string(nf_.state()) != want) {
                if (Clock::now() >= deadline)
                    return std::string("timeout ") + netfront::to_string(nf_.state()) + " " +
                           nf_.last_error();
                if (!round(20)) return "error hypervisor gone";
            }
            return "ok";
        }
        if (verb == "send") {
            std::uint64_t frames = 0;
            long ms = 0;
            in >> frames >> ms;
            const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
            const std::uint64_t target = completed_ + frames;
            const std::uint64_t failed_before = failed_;
            std::vector<std::byte> frame(100, std::byte{0x5a});
            const auto& mac = nf_.mac().bytes;
            for (std::size_t i = 0; i < 6; ++i) {
                frame[i] = std::byte{mac[i]};
                frame[6 + i] = std::byte{mac[i]};
            }
            frame[12] = std::byte{0x88};
            frame[13] = std::byte{0xb5}; // local experimental ethertype
            std::uint64_t sent = 0;
            while (completed_ < target) {
                if (Clock::now() >= deadline)
                    return "timeout " + std::to_string(completed_ + frames - target);
                while (sent < frames) {
                    netfront::TxFrame f;
                    f.data = frame;
                    f.cookie = sent;
                    Status st = nf_.send(static_cast<unsigned>(sent % nf_.num_queues()), f);
                    if (!st) {
                        if (st.error().code == Errc::busy) break;
                        return "error " + st.error().describe();
                    }
                    ++sent;
                }
                if (!round(20)) return "error hypervisor gone";
            }
            const std::uint64_t bad = failed_ - failed_before;
            return "ok " + std::to_string(frames - bad) + " " + std::to_string(bad);
        }
        if (verb == "state") return netfront::to_string(nf_.state());
        if (verb == "counter") {
            std::string name;
            in >> name;
            for (const auto& c : netfront::counter_table())
                if (c.name == name) return std::to_string(nf_.counters().get(c.counter));
            return "error no counter " + name;
        }
        if (verb == "close") {
            long ms = 0;
            in >> ms;
            Status st = nf_.close(std::chrono::milliseconds(ms));
            return st ? "ok" : "error " + st.error().describe();
        }
        return "error unknown command " + verb;
    }

private:
    netfront::Netfront& nf_;
    netfront::Handlers handlers_;
    std::uint64_t completed_ = 0;
    std::uint64_t failed_ = 0;
};

} // namespace

int main(int argc, char** argv) {
    const Args args = parse_args(argc, argv);
    // stdout carries the answers: logs go to stderr.
    spdlog::set_default_logger(spdlog::stderr_color_mt("guest"));
    spdlog::set_level(spdlog::level::info);
    auto hv = hv::sim::connect_guest(args.dir, static_cast<hv::DomId>(args.dom));
    if (!hv) {
        std::fprintf(stderr, "guest: claiming domain %ld: %s\n", args.dom,
                     hv.error().describe().c_str());
        return 2;
    }
    netfront::NetfrontOptions opts;
    opts.handle = args.handle;
    opts.max_queues = args.queues;
    opts.split_event_channels = args.split;
    opts.auto_reconnect = args.reconnect;
    auto nf = netfront::Netfront::create(**hv, opts);
    if (!nf) {
        std::fprintf(stderr, "guest: starting the netfront: %s\n", nf.error().describe().c_str());
        return 2;
    }
    Guest guest(**nf);
    reply("ready");
    std::string pending;
    for (;;) {
        bool stdin_ready = false;
        if (!guest.round(50, &stdin_ready)) return 1;
        if (!stdin_ready) continue;
        char buf[512];
        const ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
        if (n <= 0) return 0; // the test went away
        pending.append(buf, static_cast<std::size_t>(n));
        for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
            const std::string line = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            reply(guest.command(line));
        }
    }
}
