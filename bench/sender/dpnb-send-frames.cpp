// dpnb-send-frames: a paced stream of dpnb-netfront's verifiable frames (payload.hpp) out of
// a Linux interface, for a guest's receive path in the Xen lab (tests/e2e/scenarios/
// dpnetbackd-paper.sh sends them into the daemon's tap port).
//
//   dpnb-send-frames IFACE DST_MAC SRC_MAC SIZE RATE SECONDS [--burst N]
//
// SIZE bytes per frame without FCS (kPayloadMinFrame..1514), RATE frames per second (0: as
// fast as the interface takes them) for SECONDS. The frames belong to stream 0xFFFFFFFF,
// which no netfront sends, so a receiver verifies every byte and counts no duplicates. 256
// frames are built once and sent in turn, up to --burst (32) per sendmmsg() on an AF_PACKET
// socket that bypasses the qdisc: under emulation a system call per frame (the Python sender
// it replaces) held the stream near 1000 frames/s, where every frame woke the daemon on its
// own and the per-frame figures measured wake-ups, not the RX modes. A frame the interface
// refuses (its queue full) is lost, as on a wire. Prints "sent N secs S refused R".
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dpnb/netfront/payload.hpp"
#include "dpnb/netif/xs_value.hpp"

namespace {

constexpr std::uint32_t kStream = 0xFFFFFFFF;
constexpr std::size_t kFrames = 256;
constexpr std::size_t kMaxFrame = 1514;
constexpr unsigned kMaxBurst = 64;

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "dpnb-send-frames: %s\nusage: dpnb-send-frames IFACE DST_MAC SRC_MAC SIZE RATE "
                 "SECONDS [--burst N]\n",
                 why);
    std::exit(2);
}

double number(const char* text, const char* what) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v < 0) usage(what);
    return v;
}

} // namespace

int main(int argc, char** argv) {
    using namespace dpnb;
    using Clock = std::chrono::steady_clock;
    if (argc != 7 && argc != 9) usage("wrong number of arguments");
    unsigned burst = 32;
    if (argc == 9) {
        if (std::string(argv[7]) != "--burst") usage("unknown option");
        burst = static_cast<unsigned>(number(argv[8], "--burst is not a number"));
        if (burst == 0 || burst > kMaxBurst) usage("--burst must be 1..64");
    }
    const std::string iface = argv[1];
    auto dst = netif::parse_mac(argv[2], "DST_MAC");
    auto src = netif::parse_mac(argv[3], "SRC_MAC");
    if (!dst) usage("DST_MAC is not a MAC address");
    if (!src) usage("SRC_MAC is not a MAC address");
    const double size_d = number(argv[4], "SIZE is not a number");
    const double rate = number(argv[5], "RATE is not a number");
    const double seconds = number(argv[6], "SECONDS is not a number");
    if (size_d < netfront::kPayloadMinFrame || size_d > kMaxFrame)
        usage("SIZE must be 38..1514 bytes");
    const auto size = static_cast<std::size_t>(size_d);

    std::vector<std::byte> frames(kFrames * size);
    for (std::size_t i = 0; i < kFrames; ++i) {
        netfront::PayloadHeader h{*dst, *src, i, kStream};
        if (!netfront::build_payload_frame({frames.data() + i * size, size}, h))
            usage("SIZE too short for a payload frame");
    }

    const int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) {
        std::perror("dpnb-send-frames: socket(AF_PACKET)");
        return 1;
    }
    const int one = 1;
    // Straight to the driver: no qdisc, as a NIC's generator would (a tap without a queue
    // discipline behaves the same either way).
    (void)setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
    if (sll.sll_ifindex == 0) {
        std::fprintf(stderr, "dpnb-send-frames: no interface %s\n", iface.c_str());
        return 1;
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
        std::perror("dpnb-send-frames: bind");
        return 1;
    }

    iovec iov[kMaxBurst];
    mmsghdr msgs[kMaxBurst];
    std::uint64_t sent = 0, refused = 0;
    const auto t0 = Clock::now();
    const auto after = [&](double secs) {
        return t0 +
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
    };
    const Clock::time_point end = after(seconds);
    for (;;) {
        const auto now = Clock::now();
        if (now >= end) break;
        std::uint64_t due = sent + burst;
        if (rate > 0) {
            due =
                static_cast<std::uint64_t>(std::chrono::duration<double>(now - t0).count() * rate);
            if (due <= sent) {
                // The next frame's time, at most 2 ms away: short sleeps keep the bursts small.
                const Clock::time_point next = after(static_cast<double>(sent + 1) / rate);
                const Clock::time_point soon = now + std::chrono::milliseconds(2);
                std::this_thread::sleep_until(std::min({next, end, soon}));
                continue;
            }
        }
        const auto n = static_cast<unsigned>(std::min<std::uint64_t>(due - sent, burst));
        for (unsigned i = 0; i < n; ++i) {
            iov[i] = {frames.data() + ((sent + i) % kFrames) * size, size};
            msgs[i] = {};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        const int done = sendmmsg(fd, msgs, n, 0);
        if (done < 0) {
            if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
                std::perror("dpnb-send-frames: sendmmsg");
                return 1;
            }
        }
        // What the interface did not take counts as sent and lost, as on a wire.
        const unsigned took = done > 0 ? static_cast<unsigned>(done) : 0;
        refused += n - took;
        sent += n;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("sent %llu secs %.2f refused %llu\n", static_cast<unsigned long long>(sent), secs,
                static_cast<unsigned long long>(refused));
    close(fd);
    return 0;
}
