// dpnb-netfront: one simulated Xen guest with a PV network interface, for tests, the demo and
// benchmarks (docs/netfront.md).
//
//   dpnb-netfront [--sim-dir DIR] [--domid N | --name NAME] [--backend-dom N] [--mac MAC]
//                 [--queues N] [--rx-mode copy|reuse] [--buffer full|half] [--hold N]
//                 [--send N --size S [--dst-mac MAC]] [--receive N] [--echo]
//                 [--hotplug-status connected|pending]
//                 [--duration SECONDS] [--json]
//
// It creates its domain with the simulated toolstack (or claims an existing one), plugs a vif
// into the backend domain as `xl network-attach` would, waits for Connected, runs the
// workload, prints a summary (and JSON with --json), unplugs the vif and exits: 0 when every
// frame verified and the workload completed, 1 when a frame failed verification or the
// workload did not complete in time, 2 when the set-up failed. With --xen it runs inside a
// real domU instead (gntalloc, evtchn, xenstore); the vif is then xl's to plug.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xen.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "dpnb/netfront/netfront.hpp"
#include "dpnb/netfront/payload.hpp"
#include "dpnb/netfront/toolstack.hpp"

namespace {

using namespace dpnb;
using namespace dpnb::netfront;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop.store(true);
}

struct Workload {
    std::uint64_t send = 0;
    std::uint32_t size = 1000;
    std::uint64_t receive = 0;
    bool echo = false;
    netif::MacAddress dst;
    bool dst_set = false;
};

struct Results {
    std::uint64_t sent = 0;
    std::uint64_t tx_completed = 0;
    std::uint64_t tx_failed = 0;
    std::uint64_t rx_verified = 0;
    std::uint64_t rx_bad = 0;
    std::uint64_t rx_foreign = 0; // frames of another ethertype than the payload's
    std::uint64_t rx_duplicates = 0;
    std::uint64_t echoed = 0;
    std::uint64_t echo_dropped = 0;
    bool timed_out = false;
    double seconds = 0;
};

int setup_failed(const std::string& what, const Error& e) {
    std::fprintf(stderr, "dpnb-netfront: %s: %s\n", what.c_str(), e.describe().c_str());
    return 2;
}

std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\')
            out += '\\', out += c;
        else if (static_cast<unsigned char>(c) < 0x20)
            out += ' ';
        else
            out += c;
    }
    return out;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"dpnb-netfront: a simulated Xen guest with a PV network interface"};
    std::string sim_dir = hv::sim::default_dir();
    int domid_arg = -1;
    std::string name;
    std::uint32_t memory_pages = 8192;
    std::uint32_t grant_frames = 32;
    unsigned backend_dom = 0;
    std::uint32_t handle = 0;
    std::string mac_text, dst_text;
    bool no_plug = false, keep_vif = false;
    std::string hotplug_status = "connected";
    unsigned queues = 1;
    bool single_evtchn = false;
    std::string rx_mode = "copy", buffer = "full";
    std::uint32_t hold = 0, pool_target = 0;
    double pool_shrink_every = 0;
    Workload work;
    double duration = 0;
    double connect_timeout = 30;
    bool json = false;
    std::string log_level = "warn";
    bool xen = false;

    app.add_option("--sim-dir", sim_dir, "simulated hypervisor folder");
    app.add_flag("--xen", xen, "run inside a real Xen domU (the vif must exist: xl plugs it)");
    app.add_option("--domid", domid_arg, "claim this existing domain instead of creating one");
    app.add_option("--name", name, "name of the domain to create");
    app.add_option("--memory-pages", memory_pages, "memory of the created domain, in pages");
    app.add_option("--grant-frames", grant_frames, "grant table frames of the created domain");
    app.add_option("--backend-dom", backend_dom, "backend domain (default 0)");
    app.add_option("--handle", handle, "vif handle (devid)");
    app.add_option("--mac", mac_text, "the vif's MAC (default 00:16:3e:..:..:.. from domid)");
    app.add_flag("--no-plug", no_plug, "the vif is already in xenstore: do not plug it");
    app.add_flag("--keep-vif", keep_vif, "leave the vif plugged at exit");
    app.add_option("--hotplug-status", hotplug_status,
                   "after plugging: connected (as if libxl's vif script ran at once) or pending "
                   "(hotplug-status stays \"\": the backend holds Connected until a script "
                   "writes it)")
        ->check(CLI::IsMember({"connected", "pending"}));
    app.add_option("--queues", queues, "queues to ask for (capped by the backend)");
    app.add_flag("--single-event-channel", single_evtchn, "do not use split event channels");
    app.add_option("--rx-mode", rx_mode, "copy (grant per buffer) or reuse (registered pool)")
        ->check(CLI::IsMember({"copy", "reuse"}));
    app.add_option("--buffer", buffer, "RX buffers: full (4096) or half (2048) pages")
        ->check(CLI::IsMember({"full", "half"}));
    app.add_option("--hold", hold, "received frames the simulated stack keeps");
    app.add_option("--pool-target", pool_target, "RX pool target size in pages (0: auto)");
    app.add_option("--pool-shrink-every", pool_shrink_every,
                   "every this many seconds, shrink the RX pool to --pool-target pages, "
                   "retiring pages still in use too (they regrow on demand: a pool that "
                   "keeps shrinking, for the cost of revocations)");
    app.add_option("--send", work.send, "frames to send");
    app.add_option("--size", work.size, "frame size in bytes (38 .. 65535)");
    app.add_option("--dst-mac", dst_text, "destination MAC of sent frames (default: own MAC)");
    app.add_option("--receive", work.receive, "frames to receive and verify");
    app.add_flag("--echo", work.echo, "send every received frame back with the MACs swapped");
    app.add_option("--duration", duration,
                   "seconds to run (0: until done; with --echo alone, until a signal)");
    app.add_option("--connect-timeout", connect_timeout, "seconds to wait for Connected");
    app.add_flag("--json", json, "print the summary as JSON");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
    CLI11_PARSE(app, argc, argv);
    if (pool_shrink_every > 0 && pool_target == 0) {
        std::fprintf(stderr, "dpnb-netfront: --pool-shrink-every needs --pool-target\n");
        return 2;
    }
    spdlog::set_level(spdlog::level::from_str(log_level));
    spdlog::set_default_logger(spdlog::default_logger()); // stderr
    if (work.size < kPayloadMinFrame || work.size > netif::kMaxTxSize) {
        std::fprintf(stderr, "dpnb-netfront: --size must be %zu .. 65535\n", kPayloadMinFrame);
        return 2;
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    // The domain: created as `xl create` would, or claimed; or this very domU.
    std::unique_ptr<hv::sim::Toolstack> toolstack;
    std::unique_ptr<hv::GuestHypervisor> guest;
    hv::DomId dom = 0;
    if (xen) {
        no_plug = true;
        hv::XenGuestOptions xo;
        xo.peer = static_cast<hv::DomId>(backend_dom);
        auto g = hv::open_xen_guest(xo);
        if (!g) return setup_failed("opening Xen's guest interfaces", g.error());
        guest = std::move(*g);
        dom = guest->self();
    } else {
        if (domid_arg >= 0) {
            dom = static_cast<hv::DomId>(domid_arg);
        } else {
            auto ts = hv::sim::Toolstack::connect(sim_dir);
            if (!ts) return setup_failed("connecting to the simulated toolstack", ts.error());
            toolstack = std::move(*ts);
            hv::sim::DomainConfig config;
            config.name = name.empty() ? "netfront-" + std::to_string(::getpid()) : name;
            config.memory_pages = memory_pages;
            config.grant_frames = grant_frames;
            config.destroy_when_guest_exits = true;
            auto created = toolstack->create_domain(config);
            if (!created) return setup_failed("creating the domain", created.error());
            dom = *created;
        }
        auto g = hv::sim::connect_guest(sim_dir, dom);
        if (!g) return setup_failed("claiming domain " + std::to_string(dom), g.error());
        guest = std::move(*g);
    }

    netif::MacAddress mac;
    if (!mac_text.empty()) {
        auto m = netif::parse_vif_mac(mac_text, "--mac");
        if (!m) return setup_failed("--mac", m.error());
        mac = *m;
    } else {
        mac.bytes = {0x00,
                     0x16,
                     0x3e,
                     static_cast<std::uint8_t>((dom >> 8) & 0x7f),
                     static_cast<std::uint8_t>(dom & 0xff),
                     static_cast<std::uint8_t>(handle)};
    }
    work.dst = mac;
    if (!dst_text.empty()) {
        auto m = netif::parse_mac(dst_text, "--dst-mac");
        if (!m) return setup_failed("--dst-mac", m.error());
        work.dst = *m;
    }

    // The toolstack's part: `xl network-attach`.
    std::unique_ptr<hv::Xenstore> xs0;
    const bool plug = !no_plug;
    if (plug) {
        auto xs = hv::open_xenstore(sim_dir + "/xenstore-0.sock");
        if (!xs) return setup_failed("opening dom0's xenstore", xs.error());
        xs0 = std::move(*xs);
        VifConfig vif;
        vif.guest = dom;
        vif.backend = static_cast<hv::DomId>(backend_dom);
        vif.handle = handle;
        vif.mac = mac;
        if (Status st = add_vif(*xs0, vif); !st)
            return setup_failed("plugging the vif", st.error());
        if (hotplug_status == "connected") {
            // What the vif script writes once it has done its part (libxl waits for it).
            auto paths = vif_paths(*xs0, dom, vif.backend, handle);
            if (!paths) return setup_failed("plugging the vif", paths.error());
            if (Status st = xs0->write(hv::kNoTxn, paths->backend + "/hotplug-status", "connected");
                !st)
                return setup_failed("writing hotplug-status", st.error());
        }
    }
    auto unplug = [&] {
        if (!plug || keep_vif || !xs0) return;
        auto r = remove_vif(*xs0, dom, static_cast<hv::DomId>(backend_dom), handle,
                            std::chrono::seconds(10));
        if (!r) spdlog::warn("unplugging the vif: {}", r.error().describe());
    };

    NetfrontOptions opts;
    opts.handle = handle;
    opts.max_queues = queues;
    opts.split_event_channels = !single_evtchn;
    opts.rx_mode = rx_mode == "reuse" ? RxMode::reuse : RxMode::copy;
    opts.half_page_buffers = buffer == "half";
    opts.hold_depth = hold;
    opts.pool_target_pages = pool_target;
    auto created_nf = Netfront::create(*guest, opts);
    if (!created_nf) {
        unplug();
        return setup_failed("starting the netfront", created_nf.error());
    }
    Netfront& nf = **created_nf;

    Results res;
    const std::uint32_t stream = (static_cast<std::uint32_t>(dom) << 16) | (handle & 0xFFFF);
    std::vector<bool> seen(work.send, false);
    std::vector<std::byte> rx_buf(netif::kMaxTxSize), tx_buf(work.size);

    Handlers handlers;
    handlers.on_tx = [&](const TxCompletion& c) {
        ++res.tx_completed;
        if (c.status != TxStatus::okay) ++res.tx_failed;
    };
    handlers.on_rx = [&](const RxFrameView& f) {
        const std::size_t n = f.copy_to(std::span<std::byte>(rx_buf.data(), f.len));
        std::span<std::byte> frame(rx_buf.data(), n);
        // Echo only unicast frames addressed to us (a guest that answered the kernel's
        // multicast with a multicast source MAC would be dropped as a spoofer, rightly).
        if (work.echo && frame.size() >= 14 &&
            std::memcmp(frame.data(), mac.bytes.data(), 6) == 0) {
            swap_macs(frame);
            TxFrame echo;
            echo.data = frame;
            if (nf.send(f.queue % nf.num_queues(), echo))
                ++res.echoed;
            else
                ++res.echo_dropped;
            swap_macs(frame);
        }
        const PayloadInfo info = check_payload_frame(frame);
        if (info.result == PayloadCheck::bad_ethertype) {
            // Not a payload frame at all: other traffic of the network the vif is on (the
            // far end's IPv6 neighbour discovery, ARP). Counted, not a failure; a payload
            // frame that fails its checks is.
            ++res.rx_foreign;
            return;
        }
        if (info.result != PayloadCheck::ok) {
            if (!work.echo) {
                ++res.rx_bad;
                spdlog::warn("received frame of {} bytes failed verification: {}", n,
                             to_string(info.result));
            }
            return;
        }
        if (info.header.stream == stream && info.header.seq < seen.size()) {
            if (seen[info.header.seq]) {
                ++res.rx_duplicates;
                return;
            }
            seen[info.header.seq] = true;
        }
        ++res.rx_verified;
    };

    const auto start = Clock::now();
    if (Status st = nf.wait_connected(
            std::chrono::milliseconds(static_cast<long long>(connect_timeout * 1000)), handlers);
        !st) {
        (void)nf.close(std::chrono::seconds(2));
        unplug();
        return setup_failed("waiting for Connected", st.error());
    }

    const bool finite = work.send != 0 || work.receive != 0;
    const double limit = duration > 0 ? duration : (finite ? 60.0 : 0.0);
    const auto t0 = Clock::now();
    auto last_shrink = t0;
    for (;;) {
        if (g_stop.load()) break;
        if (pool_shrink_every > 0 &&
            std::chrono::duration<double>(Clock::now() - last_shrink).count() >=
                pool_shrink_every) {
            nf.set_pool_target_pages(pool_target);
            last_shrink = Clock::now();
        }
        const bool send_done = res.sent == work.send && res.tx_completed >= work.send;
        const bool recv_done = res.rx_verified >= work.receive;
        if (finite && send_done && recv_done && duration == 0) break;
        const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        if (limit > 0 && elapsed >= limit) {
            res.timed_out = finite && !(send_done && recv_done);
            break;
        }
        if (nf.state() == LinkState::gone) {
            res.timed_out = finite && !(send_done && recv_done);
            break;
        }
        bool blocked = res.sent == work.send;
        while (res.sent < work.send && nf.num_queues() > 0) {
            PayloadHeader h;
            h.dst = work.dst;
            h.src = nf.mac();
            h.seq = res.sent;
            h.stream = stream;
            build_payload_frame(tx_buf, h);
            TxFrame f;
            f.data = tx_buf;
            f.cookie = res.sent;
            Status st = nf.send(static_cast<unsigned>(res.sent % nf.num_queues()), f);
            if (!st) {
                if (st.error().code != Errc::busy && st.error().code != Errc::closed) {
                    std::fprintf(stderr, "dpnb-netfront: send: %s\n",
                                 st.error().describe().c_str());
                    g_stop.store(true);
                }
                blocked = true;
                break;
            }
            ++res.sent;
        }
        if (nf.num_queues() == 0) blocked = true;
        if (Status st = nf.poll(
                blocked ? std::chrono::milliseconds(20) : std::chrono::milliseconds(0), handlers);
            !st) {
            std::fprintf(stderr, "dpnb-netfront: %s\n", st.error().describe().c_str());
            break;
        }
    }
    res.seconds = std::chrono::duration<double>(Clock::now() - start).count();

    (void)nf.close(std::chrono::seconds(5));
    unplug();

    const Counters& c = nf.counters();
    const PoolStats pool = nf.pool_stats();
    const bool failed = res.rx_bad != 0 || res.rx_duplicates != 0 || res.timed_out ||
                        (work.send != 0 && res.tx_failed != 0);
    if (json) {
        std::string out = "{";
        out += "\"dom\":" + std::to_string(dom) + ",\"handle\":" + std::to_string(handle);
        out += ",\"mac\":\"" + netif::format_mac(nf.mac()) + "\"";
        out += ",\"queues\":" + std::to_string(queues);
        out += ",\"rx_mode\":\"" + rx_mode +
               "\",\"buffer_size\":" + std::to_string(nf.rx_buffer_size());
        out += ",\"seconds\":" + std::to_string(res.seconds);
        out += ",\"workload\":{\"sent\":" + std::to_string(res.sent) +
               ",\"tx_completed\":" + std::to_string(res.tx_completed) +
               ",\"tx_failed\":" + std::to_string(res.tx_failed) +
               ",\"rx_verified\":" + std::to_string(res.rx_verified) +
               ",\"rx_bad\":" + std::to_string(res.rx_bad) +
               ",\"rx_foreign\":" + std::to_string(res.rx_foreign) +
               ",\"rx_duplicates\":" + std::to_string(res.rx_duplicates) +
               ",\"echoed\":" + std::to_string(res.echoed) +
               ",\"echo_dropped\":" + std::to_string(res.echo_dropped) +
               ",\"timed_out\":" + (res.timed_out ? "true" : "false") + "}";
        out += ",\"counters\":{";
        bool first = true;
        for (const CounterInfo& ci : counter_table()) {
            if (!first) out += ",";
            first = false;
            out += "\"" + std::string(ci.name) + "\":" + std::to_string(c[ci.counter]);
        }
        out += "},\"pool\":{\"pages\":" + std::to_string(pool.pages) +
               ",\"retiring_pages\":" + std::to_string(pool.retiring_pages) +
               ",\"target_pages\":" + std::to_string(pool.target_pages) +
               ",\"buffer_size\":" + std::to_string(nf.rx_buffer_size()) + "}";
        out += ",\"reuse_rate\":" + std::to_string(nf.reuse_rate());
        out += ",\"last_error\":\"" + json_escape(nf.last_error()) + "\"";
        out += ",\"result\":\"" + std::string(failed ? "failed" : "ok") + "\"}";
        std::printf("%s\n", out.c_str());
    } else {
        std::printf("dpnb-netfront: dom=%u vif=%u queues=%u rx_mode=%s buffer=%u "
                    "tx_frames=%llu tx_bytes=%llu tx_failed=%llu rx_frames=%llu rx_bytes=%llu "
                    "rx_verified=%llu rx_bad=%llu rx_foreign=%llu rx_errors=%llu echoed=%llu "
                    "reuse_rate=%.4f "
                    "pool_pages=%u removals_refused=%llu seconds=%.3f result=%s\n",
                    dom, handle, queues, rx_mode.c_str(), nf.rx_buffer_size(),
                    static_cast<unsigned long long>(c[Counter::tx_frames_ok]),
                    static_cast<unsigned long long>(c[Counter::tx_bytes_ok]),
                    static_cast<unsigned long long>(res.tx_failed),
                    static_cast<unsigned long long>(c[Counter::rx_frames]),
                    static_cast<unsigned long long>(c[Counter::rx_bytes]),
                    static_cast<unsigned long long>(res.rx_verified),
                    static_cast<unsigned long long>(res.rx_bad),
                    static_cast<unsigned long long>(res.rx_foreign),
                    static_cast<unsigned long long>(
                        c[Counter::rx_error_status] + c[Counter::rx_bad_offset] +
                        c[Counter::rx_bad_id] + c[Counter::rx_bad_extra] + c[Counter::rx_bad_gso] +
                        c[Counter::rx_too_many_slots] + c[Counter::rx_incomplete] +
                        c[Counter::rx_runt]),
                    static_cast<unsigned long long>(res.echoed), nf.reuse_rate(), pool.pages,
                    static_cast<unsigned long long>(c[Counter::pool_removals_refused]), res.seconds,
                    failed ? "failed" : "ok");
    }
    std::fflush(stdout);
    return failed ? 1 : 0;
}
