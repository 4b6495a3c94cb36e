// dpnb-peer: the kernel side of a daemon's tap port, as a traffic tool for the demo, the
// daemon's process-level tests and the benchmarks. It speaks the verifiable frames of
// dpnb-netfront (guest/'s payload.hpp: ethertype 0x88B5, sequence number,
// stream id, pattern, FNV-1a checksum) on an AF_PACKET socket bound to the interface.
//
//   dpnb-peer --iface IF echo    --to MAC[,MAC...] [--count N | --duration S] [--size B]
//                                [--window W] [--rate PPS] [--loss-timeout MS] [--wait S]
//   dpnb-peer --iface IF send    --to MAC[,MAC...] --count N [--size B] [--rate PPS]
//   dpnb-peer --iface IF receive [--count N] [--from MAC[,MAC...]] [--duration S]
//   common: [--src-mac MAC] [--timeout S] [--json]
//
// echo     sends frames to each guest (round robin, one stream per guest) and matches the
//          echoes (`dpnb-netfront --echo` sends them back with the MACs swapped): sent,
//          received, lost, bad, duplicates, rate, RTT median and p99, per guest and in total.
//          At most --window frames are outstanding; one unanswered for --loss-timeout ms no
//          longer holds the window (it counts as lost unless it still arrives).
// send     sends N frames to each guest and expects nothing back (`dpnb-netfront --receive N`
//          counts them there).
// receive  counts and verifies the frames guests send (`dpnb-netfront --send N --dst-mac
//          <the interface's MAC>`): every byte checked, duplicates per stream detected.
//
// Exit status: 0 when every frame arrived and verified; 1 when one was lost, bad, duplicated
// or the run timed out; 2 when the set-up failed (no interface, not root, bad arguments).
// SIGINT/SIGTERM end the run early (then the report says what happened until then).
#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "dpnb/netfront/payload.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using dpnb::netif::MacAddress;
namespace nf = dpnb::netfront;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitSetup = 2;
// Stream ids of the peer's own frames: "P" and the target's index, so that an echo is matched
// to its target and never mistaken for a guest's own stream (domid << 16 | handle).
constexpr std::uint32_t kStreamBase = 0x50000000;

std::atomic<bool> g_stop{false};
void on_signal(int) {
    g_stop.store(true);
}

int setup_failed(const std::string& msg) {
    std::fprintf(stderr, "dpnb-peer: %s\n", msg.c_str());
    return kExitSetup;
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// The AF_PACKET socket on the interface, bound to the payload ethertype only, so the kernel's
// own chatter (ARP, IPv6 neighbour discovery) never reaches us.
class Socket {
public:
    ~Socket() {
        if (fd_ >= 0) ::close(fd_);
    }
    std::optional<std::string> open(const std::string& iface) {
        ifindex_ = ::if_nametoindex(iface.c_str());
        if (ifindex_ == 0) return "no interface \"" + iface + "\": " + std::strerror(errno);
        fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK,
                       htons(nf::kPayloadEthertype));
        if (fd_ < 0)
            return std::string("AF_PACKET socket: ") + std::strerror(errno) +
                   (errno == EPERM ? " (needs root or CAP_NET_RAW)" : "");
        sockaddr_ll sa{};
        sa.sll_family = AF_PACKET;
        sa.sll_protocol = htons(nf::kPayloadEthertype);
        sa.sll_ifindex = static_cast<int>(ifindex_);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            return "binding to " + iface + ": " + std::strerror(errno);
        int big = 8 << 20;
        (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
        (void)::setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
        int one = 1;
        (void)::setsockopt(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);

        ifreq ifr{};
        std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
        if (::ioctl(fd_, SIOCGIFHWADDR, &ifr) != 0)
            return "reading the MAC of " + iface + ": " + std::strerror(errno);
        std::memcpy(mac_.bytes.data(), ifr.ifr_hwaddr.sa_data, 6);
        if (::ioctl(fd_, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP) == 0)
            return "interface " + iface + " is down (has the daemon started its port?)";
        return std::nullopt;
    }
    const MacAddress& mac() const { return mac_; }

    // False when the kernel kept refusing (its queue stays full) or on a hard error.
    bool send(const std::vector<std::byte>& frame) {
        for (int tries = 0; tries < 2000 && !g_stop.load(); ++tries) {
            if (::send(fd_, frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size()))
                return true;
            if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
                if (!reported_) std::fprintf(stderr, "dpnb-peer: send: %s\n", std::strerror(errno));
                reported_ = true;
                return false;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return false;
    }
    // One received frame (not one we sent), or nullopt when none is waiting.
    std::optional<std::span<const std::byte>> recv() {
        for (;;) {
            sockaddr_ll from{};
            socklen_t fl = sizeof from;
            const ssize_t n = ::recvfrom(fd_, buf_.data(), buf_.size(), MSG_TRUNC,
                                         reinterpret_cast<sockaddr*>(&from), &fl);
            if (n < 0) return std::nullopt;
            if (from.sll_pkttype == PACKET_OUTGOING) continue;
            const std::size_t len = std::min(static_cast<std::size_t>(n), buf_.size());
            truncated_ += static_cast<std::size_t>(n) > buf_.size() ? 1 : 0;
            return std::span<const std::byte>(buf_.data(), len);
        }
    }
    void wait(int ms) {
        pollfd p{fd_, POLLIN, 0};
        (void)::poll(&p, 1, ms);
    }

private:
    int fd_ = -1;
    unsigned ifindex_ = 0;
    MacAddress mac_;
    std::vector<std::byte> buf_ = std::vector<std::byte>(65536);
    std::uint64_t truncated_ = 0;
    bool reported_ = false;
};

struct Latency {
    std::vector<double> us;
    Json json() {
        if (us.empty()) return nullptr;
        std::sort(us.begin(), us.end());
        const auto at = [&](double q) {
            return us[std::min(us.size() - 1, static_cast<std::size_t>(q * (us.size() - 1) + 0.5))];
        };
        return {{"min", us.front()}, {"median", at(0.5)}, {"p99", at(0.99)}, {"max", us.back()}};
    }
};

// One guest the peer talks to.
struct Target {
    MacAddress mac;
    std::uint32_t stream = 0;
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t duplicates = 0;
    std::vector<Clock::time_point> sent_at;
    std::vector<std::uint8_t> state; // 0 outstanding, 1 answered, 2 expired from the window
    Latency rtt;
};

std::string fmt_mac(const MacAddress& m) {
    return dpnb::netif::format_mac(m);
}

struct Common {
    std::string iface;
    std::string src_text;
    double timeout = 120;
    bool json = false;
};

struct Traffic {
    std::vector<std::string> to;
    std::uint64_t count = 0;
    double duration = 0;
    std::uint32_t size = 1000;
    std::uint32_t window = 64;
    double rate = 0;
    unsigned loss_timeout_ms = 1000;
    double wait = 2;
};

Json rate_json(std::uint64_t frames, std::uint64_t bytes, double seconds) {
    if (seconds <= 0) return {{"frames_per_second", 0}, {"megabits_per_second", 0}};
    return {{"frames_per_second", static_cast<double>(frames) / seconds},
            {"megabits_per_second", static_cast<double>(bytes) * 8 / seconds / 1e6}};
}

std::string rtt_text(const Json& r) {
    if (r.is_null()) return "RTT -";
    char buf[96];
    std::snprintf(buf, sizeof buf, "RTT median %.0f us, p99 %.0f us", r["median"].get<double>(),
                  r["p99"].get<double>());
    return buf;
}

// echo and send: frames to the targets, round robin; echo also matches what comes back.
int run_traffic(const Common& c, const Traffic& t, bool echo) {
    std::vector<Target> targets;
    for (const std::string& s : t.to) {
        auto m = dpnb::netif::parse_vif_mac(s, "--to");
        if (!m) return setup_failed(m.error().message);
        Target tg;
        tg.mac = *m;
        tg.stream = kStreamBase + static_cast<std::uint32_t>(targets.size());
        targets.push_back(std::move(tg));
    }
    if (targets.empty()) return setup_failed("--to: name at least one guest MAC");
    if (t.size < nf::kPayloadMinFrame || t.size > 65535)
        return setup_failed("--size must be " + std::to_string(nf::kPayloadMinFrame) + " .. 65535");
    if (t.count == 0 && t.duration <= 0)
        return setup_failed(echo ? "give --count or --duration" : "give --count");
    Socket sock;
    if (auto e = sock.open(c.iface)) return setup_failed(*e);
    MacAddress src = sock.mac();
    if (!c.src_text.empty()) {
        auto m = dpnb::netif::parse_vif_mac(c.src_text, "--src-mac");
        if (!m) return setup_failed(m.error().message);
        src = *m;
    }

    const std::uint64_t total = t.count * targets.size(); // 0: until --duration
    std::uint64_t sent = 0, received = 0, bad = 0, foreign = 0, send_failures = 0;
    std::map<std::string, std::uint64_t> bad_reasons;
    std::uint64_t outstanding = 0;
    std::deque<std::pair<std::size_t, std::uint64_t>> in_flight; // (target, seq) in send order
    std::vector<std::byte> frame(t.size);
    const auto start = Clock::now();
    const auto loss_timeout = std::chrono::milliseconds(t.loss_timeout_ms);
    const auto pace = t.rate > 0 ? std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(1.0 / t.rate))
                                 : Clock::duration::zero();
    auto next_send = start;
    std::optional<Clock::time_point> sending_done;
    bool timed_out = false;

    const auto receive_all = [&] {
        while (auto f = sock.recv()) {
            const nf::PayloadInfo info = nf::check_payload_frame(*f);
            if (info.result != nf::PayloadCheck::ok) {
                ++bad;
                ++bad_reasons[nf::to_string(info.result)];
                continue;
            }
            const std::uint32_t idx = info.header.stream - kStreamBase;
            if (info.header.stream < kStreamBase || idx >= targets.size()) {
                ++foreign; // a guest's own stream (it sends too): not ours to count
                continue;
            }
            Target& tg = targets[idx];
            if (!echo || info.header.src.bytes != tg.mac.bytes ||
                info.header.dst.bytes != src.bytes || info.header.seq >= tg.sent) {
                ++bad;
                ++bad_reasons[!echo                                   ? "unexpected"
                              : info.header.src.bytes != tg.mac.bytes ? "wrong_source"
                              : info.header.dst.bytes != src.bytes    ? "wrong_destination"
                                                                      : "never_sent"];
                continue;
            }
            std::uint8_t& st = tg.state[info.header.seq];
            if (st == 1) {
                ++tg.duplicates;
                continue;
            }
            if (st == 0) --outstanding;
            st = 1;
            ++tg.received;
            ++received;
            tg.rtt.us.push_back(std::chrono::duration<double, std::micro>(
                                    Clock::now() - tg.sent_at[info.header.seq])
                                    .count());
        }
    };

    for (;;) {
        const auto now = Clock::now();
        if (g_stop.load()) break;
        if (c.timeout > 0 && seconds_since(start) > c.timeout) {
            timed_out = true;
            break;
        }
        const bool more = total != 0 ? sent < total : seconds_since(start) < t.duration;
        if (!more && !sending_done) sending_done = now;
        if (sending_done) {
            if (!echo || outstanding == 0 ||
                now - *sending_done > std::chrono::duration<double>(t.wait))
                break;
        }
        // Frames unanswered for the loss timeout no longer hold the window.
        while (!in_flight.empty()) {
            auto [ti, seq] = in_flight.front();
            Target& tg = targets[ti];
            if (tg.state[seq] != 0) {
                in_flight.pop_front();
                continue;
            }
            if (now - tg.sent_at[seq] < loss_timeout) break;
            tg.state[seq] = 2;
            --outstanding;
            in_flight.pop_front();
        }
        bool sent_one = false;
        while (more && (!echo || outstanding < t.window) &&
               (t.rate <= 0 || Clock::now() >= next_send)) {
            Target& tg = targets[sent % targets.size()];
            nf::PayloadHeader h;
            h.dst = tg.mac;
            h.src = src;
            h.seq = tg.sent;
            h.stream = tg.stream;
            nf::build_payload_frame(frame, h);
            if (!sock.send(frame)) {
                ++send_failures;
                break;
            }
            if (echo) {
                tg.sent_at.push_back(Clock::now());
                tg.state.push_back(0);
                in_flight.emplace_back(sent % targets.size(), tg.sent);
                ++outstanding;
            }
            ++tg.sent;
            ++sent;
            sent_one = true;
            if (t.rate > 0) next_send += pace;
            if (total != 0 && sent >= total) break;
            if (total == 0 && seconds_since(start) >= t.duration) break;
            if (echo && sent % 16 == 0) receive_all();
        }
        if (echo) receive_all();
        if (!sent_one) {
            // Nothing to send now: wait for an echo, the pace or a window slot to expire.
            int ms = 5;
            if (t.rate > 0 && more) {
                const auto left =
                    std::chrono::duration_cast<std::chrono::milliseconds>(next_send - Clock::now());
                ms = static_cast<int>(std::clamp<long long>(left.count(), 0, 5));
            }
            if (echo)
                sock.wait(ms);
            else if (ms > 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        }
    }
    if (echo) receive_all();
    const double secs = seconds_since(start);

    // Report.
    Json jt = Json::array();
    std::uint64_t duplicates = 0;
    Latency all;
    for (Target& tg : targets) {
        duplicates += tg.duplicates;
        all.us.insert(all.us.end(), tg.rtt.us.begin(), tg.rtt.us.end());
        Json j = {{"mac", fmt_mac(tg.mac)}, {"stream", tg.stream}, {"sent", tg.sent}};
        if (echo) {
            j["received"] = tg.received;
            j["lost"] = tg.sent - tg.received;
            j["duplicates"] = tg.duplicates;
            j["rtt_us"] = tg.rtt.json();
        }
        jt.push_back(std::move(j));
    }
    const std::uint64_t lost = echo ? sent - received : 0;
    const bool failed = timed_out || bad != 0 || duplicates != 0 || lost != 0 ||
                        send_failures != 0 || (total != 0 && sent < total);
    Json out = {{"mode", echo ? "echo" : "send"},
                {"iface", c.iface},
                {"src_mac", fmt_mac(src)},
                {"size", t.size},
                {"seconds", secs},
                {"sent", sent},
                {"send_failures", send_failures},
                {"interrupted", g_stop.load()},
                {"timed_out", timed_out}};
    if (echo) {
        out["received"] = received;
        out["lost"] = lost;
        out["bad"] = bad;
        out["bad_reasons"] = bad_reasons;
        out["duplicates"] = duplicates;
        out["foreign"] = foreign;
        out["rate"] = rate_json(received, received * t.size, secs);
        out["rtt_us"] = all.json();
    } else {
        out["rate"] = rate_json(sent, sent * t.size, secs);
    }
    out["targets"] = std::move(jt);
    out["result"] = failed ? "failed" : "ok";
    if (c.json) {
        std::cout << out.dump(2) << std::endl;
    } else {
        std::printf("dpnb-peer %s on %s: sent %llu", echo ? "echo" : "send", c.iface.c_str(),
                    static_cast<unsigned long long>(sent));
        if (echo)
            std::printf(" received %llu lost %llu bad %llu duplicates %llu",
                        static_cast<unsigned long long>(received),
                        static_cast<unsigned long long>(lost), static_cast<unsigned long long>(bad),
                        static_cast<unsigned long long>(duplicates));
        std::printf(" in %.2f s: %.0f frames/s, %.1f Mbit/s%s%s%s\n", secs,
                    out["rate"]["frames_per_second"].get<double>(),
                    out["rate"]["megabits_per_second"].get<double>(), echo ? "; " : "",
                    echo ? rtt_text(out["rtt_us"]).c_str() : "",
                    timed_out       ? " (timed out)"
                    : g_stop.load() ? " (interrupted)"
                                    : "");
        if (echo && targets.size() > 1)
            for (const Json& j : out["targets"])
                std::printf("  %s  sent %llu received %llu lost %llu  %s\n",
                            j["mac"].get<std::string>().c_str(),
                            static_cast<unsigned long long>(j["sent"].get<std::uint64_t>()),
                            static_cast<unsigned long long>(j["received"].get<std::uint64_t>()),
                            static_cast<unsigned long long>(j["lost"].get<std::uint64_t>()),
                            rtt_text(j["rtt_us"]).c_str());
        if (!bad_reasons.empty())
            std::printf("  bad frames: %s\n", Json(bad_reasons).dump().c_str());
        std::printf("result: %s\n", failed ? "failed" : "ok");
    }
    return failed ? kExitFailed : kExitOk;
}

struct Receive {
    std::uint64_t count = 0;
    std::vector<std::string> from;
    double duration = 0;
};

// receive: what guests send to the interface.
int run_receive(const Common& c, const Receive& r) {
    std::vector<MacAddress> from;
    for (const std::string& s : r.from) {
        auto m = dpnb::netif::parse_mac(s, "--from");
        if (!m) return setup_failed(m.error().message);
        from.push_back(*m);
    }
    if (r.count == 0 && r.duration <= 0) return setup_failed("give --count or --duration");
    Socket sock;
    if (auto e = sock.open(c.iface)) return setup_failed(*e);
    // Whoever starts the senders next (a test, the demo) waits for this line.
    std::fprintf(stderr, "dpnb-peer: receiving on %s (MAC %s)\n", c.iface.c_str(),
                 fmt_mac(sock.mac()).c_str());

    struct Source {
        std::uint64_t frames = 0;
        std::uint64_t bytes = 0;
        std::uint64_t duplicates = 0;
        std::map<std::uint32_t, std::unordered_set<std::uint64_t>> seen; // by stream
    };
    std::map<std::string, Source> sources;
    std::uint64_t received = 0, bytes = 0, bad = 0, foreign = 0, duplicates = 0;
    std::map<std::string, std::uint64_t> bad_reasons;
    const auto start = Clock::now();
    std::optional<Clock::time_point> first, last;
    bool timed_out = false;
    for (;;) {
        if (g_stop.load()) break;
        if (r.count != 0 && received >= r.count) break;
        if (r.duration > 0 && seconds_since(start) >= r.duration) break;
        if (c.timeout > 0 && seconds_since(start) > c.timeout) {
            timed_out = true;
            break;
        }
        bool got = false;
        while (auto f = sock.recv()) {
            got = true;
            const nf::PayloadInfo info = nf::check_payload_frame(*f);
            if (info.result != nf::PayloadCheck::ok) {
                ++bad;
                ++bad_reasons[nf::to_string(info.result)];
                continue;
            }
            if (!from.empty() && std::none_of(from.begin(), from.end(), [&](const MacAddress& m) {
                    return m.bytes == info.header.src.bytes;
                })) {
                ++foreign;
                continue;
            }
            Source& s = sources[fmt_mac(info.header.src)];
            if (!s.seen[info.header.stream].insert(info.header.seq).second) {
                ++s.duplicates;
                ++duplicates;
                continue;
            }
            ++s.frames;
            s.bytes += f->size();
            ++received;
            bytes += f->size();
            last = Clock::now();
            if (!first) first = last;
        }
        if (!got) sock.wait(20);
    }
    const double secs = seconds_since(start);
    const double span = first && last ? std::chrono::duration<double>(*last - *first).count() : 0;
    const bool failed =
        timed_out || bad != 0 || duplicates != 0 || (r.count != 0 && received < r.count);
    Json js = Json::object();
    for (auto& [mac, s] : sources)
        js[mac] = {{"received", s.frames}, {"bytes", s.bytes}, {"duplicates", s.duplicates}};
    Json out = {{"mode", "receive"},
                {"iface", c.iface},
                {"seconds", secs},
                {"received", received},
                {"bytes", bytes},
                {"bad", bad},
                {"bad_reasons", bad_reasons},
                {"duplicates", duplicates},
                {"foreign", foreign},
                {"rate", rate_json(received, bytes, span)},
                {"sources", std::move(js)},
                {"interrupted", g_stop.load()},
                {"timed_out", timed_out},
                {"result", failed ? "failed" : "ok"}};
    if (c.json) {
        std::cout << out.dump(2) << std::endl;
    } else {
        std::printf(
            "dpnb-peer receive on %s: received %llu bad %llu duplicates %llu in %.2f s: "
            "%.0f frames/s, %.1f Mbit/s%s\n",
            c.iface.c_str(), static_cast<unsigned long long>(received),
            static_cast<unsigned long long>(bad), static_cast<unsigned long long>(duplicates), secs,
            out["rate"]["frames_per_second"].get<double>(),
            out["rate"]["megabits_per_second"].get<double>(), timed_out ? " (timed out)" : "");
        for (auto& [mac, s] : sources)
            std::printf("  from %s: %llu frames\n", mac.c_str(),
                        static_cast<unsigned long long>(s.frames));
        std::printf("result: %s\n", failed ? "failed" : "ok");
    }
    return failed ? kExitFailed : kExitOk;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"dpnb-peer: verifiable traffic between a tap port's kernel side and guests"};
    app.require_subcommand(1);
    app.fallthrough(); // --json, --timeout also after the mode
    Common c;
    app.add_option("-i,--iface", c.iface, "The interface (the daemon's tap port)")->required();
    app.add_option("--src-mac", c.src_text, "Source MAC of sent frames (default: the interface's)");
    app.add_option("--timeout", c.timeout, "Give up after this many seconds (0: never)")
        ->capture_default_str();
    app.add_flag("--json", c.json, "Print the report as JSON");

    Traffic echo_t, send_t;
    const auto traffic_options = [](CLI::App* s, Traffic& t, bool echo) {
        s->add_option("--to", t.to, "Guest MACs (comma-separated or repeated)")
            ->required()
            ->delimiter(',');
        s->add_option("--count", t.count, "Frames per guest")->capture_default_str();
        s->add_option("--size", t.size, "Frame size in bytes, Ethernet header included")
            ->capture_default_str();
        s->add_option("--rate", t.rate, "Frames per second in total (0: as fast as possible)")
            ->capture_default_str();
        if (!echo) return;
        s->add_option("--duration", t.duration, "Seconds to send (instead of --count)");
        s->add_option("--window", t.window, "Frames outstanding at most")
            ->check(CLI::Range(1U, 1U << 20))
            ->capture_default_str();
        s->add_option("--loss-timeout", t.loss_timeout_ms,
                      "Milliseconds after which an unanswered frame leaves the window")
            ->capture_default_str();
        s->add_option("--wait", t.wait, "Seconds to wait for the last echoes")
            ->capture_default_str();
    };
    auto* echo = app.add_subcommand("echo", "Send to guests running dpnb-netfront --echo and "
                                            "verify what comes back");
    traffic_options(echo, echo_t, true);
    auto* send = app.add_subcommand("send", "Send to guests (dpnb-netfront --receive N counts)");
    traffic_options(send, send_t, false);
    Receive recv_opts;
    auto* receive = app.add_subcommand("receive", "Count and verify frames guests send "
                                                  "(dpnb-netfront --send N --dst-mac <iface MAC>)");
    receive->add_option("--count", recv_opts.count, "Frames to wait for (0: until --duration)");
    receive->add_option("--from", recv_opts.from, "Count only these source MACs")->delimiter(',');
    receive->add_option("--duration", recv_opts.duration, "Seconds to listen");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        std::cerr << "dpnb-peer: " << e.what() << "\nRun with --help for more information.\n";
        return kExitSetup;
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    if (echo->parsed()) return run_traffic(c, echo_t, true);
    if (send->parsed()) return run_traffic(c, send_t, false);
    return run_receive(c, recv_opts);
}
