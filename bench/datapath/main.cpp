// dpnb-bench-datapath: the real Engine (pmd-glue) with simulated guests (dpnb-netfront
// processes over dpnb-simhv) and a virtual NIC, measured per RX mode and frame size:
// guest-bound RX and guest TX rates, the lcore's TSC cycles per packet (busy cycles and the
// per-stage breakdown), grant hypercalls and notifications per packet; beside dpdk-testpmd's
// io-forward on the same virtual device type in the same run (the ceiling of a poll loop).
// Also idle CPU and resident memory with guests attached, and round-trip latency through an
// echoing guest. docs/benchmarks.md says what each figure means and how it is measured.
//
// Devices: `ring` (net_ring: a generator thread enqueues mbufs, no kernel in the loop; copy
// on one shared port with pre-built frames; map and reuse on one port per guest whose
// generator plays the NIC, writing each frame into a buffer the engine posted, so that zero
// copy is measured without a kernel's or a tap PMD's cost) and `tap`
// (net_tap, one port per guest, RX scatter off: the device writes into guest buffers, so
// map and reuse are zero copy; the kernel side injects frames with AF_PACKET sendmmsg).
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rte_mempool.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

// Callgrind client requests (no-ops outside valgrind): each measured window zeroes the
// counts at its start and dumps them at its end, so bench/callgrind.sh reads instructions of
// exactly the window whose packets the JSON counts.
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#endif

#include "dpnb/engine/engine.hpp"
#include "dpnb/hv/grant_table.hpp"
#include "dpnb/hv/sim.hpp"
#include "dpnb/hv/xenstore_client.hpp"
#include "dpnb/netfront/payload.hpp"
#include "dpnb/pmd/eal.hpp"
#include "guests.hpp"
#include "traffic.hpp"

#ifndef DPNB_SIMHV_PATH
#define DPNB_SIMHV_PATH "dpnb-simhv"
#endif
#ifndef DPNB_NETFRONT_PATH
#define DPNB_NETFRONT_PATH "dpnb-netfront"
#endif

namespace dpnb::bench {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using engine::RxMode;

struct Options {
    double duration = 3.0;
    double warmup = 0.5;
    std::vector<std::string> modes = {"copy", "map", "reuse"};
    std::vector<unsigned> sizes = {64, 1514};
    std::vector<std::string> devices = {"auto"};    // ring, tap, auto (ring and tap)
    std::vector<std::string> phases = {"rx", "tx"}; // rx, tx, local, idle, latency
    unsigned guests = 1;
    unsigned lcores = 1;
    std::uint64_t rate = 0; // RX generator, frames/s in total (0: flat out)
    std::string buffer = "full";
    unsigned hold = 0;
    unsigned pool_target = 0;
    double pool_shrink_every = 0;
    double idle_seconds = 10;
    unsigned latency_count = 1000;
    unsigned latency_gap_us = 1000;
    bool testpmd = true;
    std::string testpmd_path = "/usr/bin/dpdk-testpmd";
    std::string simhv_path = DPNB_SIMHV_PATH;
    std::string netfront_path = DPNB_NETFRONT_PATH;
    unsigned max_sleep_ms = 100; // EngineOptions::max_sleep
    // The stall phase: EngineOptions::rx_stall_timeout, and per cycle the seconds a guest
    // stays stopped and then receiving again, the cycles, and the seconds between samples.
    unsigned rx_stall_timeout_ms = 60000;
    double stall_window = 10;
    double stall_recover = 3;
    unsigned stall_cycles = 2;
    double stall_sample = 0.5;
    bool json_out = false;
    std::string json_file;
};

std::string g_prefix;
unsigned g_seq = 0;

// net_tap raises SIGIO per received frame (its RX interrupt); under a flood a relative
// nanosleep, restarted after every signal with its remainder, may never end. Sleep until an
// absolute time instead.
void nap(std::chrono::duration<double> d) {
    timespec until{};
    ::clock_gettime(CLOCK_MONOTONIC, &until);
    const auto ns = static_cast<long long>(d.count() * 1e9) + until.tv_nsec;
    until.tv_sec += static_cast<time_t>(ns / 1'000'000'000);
    until.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR) {
    }
}

// --- snapshots -------------------------------------------------------------------------------

struct Snapshot {
    Clock::time_point t;
    std::map<engine::VifId, engine::VifCounters> vifs;
    std::vector<engine::LcoreStats> lcores;
    std::uint64_t offered = 0;
};

Snapshot snapshot(const engine::Engine& e, std::uint64_t offered) {
    Snapshot s;
    s.t = Clock::now();
    for (const engine::VifStatus& v : e.list())
        s.vifs[v.id] = v.counters;
    s.lcores = e.lcore_stats();
    s.offered = offered;
    return s;
}

engine::VifCounters sum_delta(const Snapshot& a, const Snapshot& b) {
    engine::VifCounters d;
    const auto table = engine::vif_counter_table();
    for (const auto& [id, cb] : b.vifs) {
        const auto it = a.vifs.find(id);
        if (it == a.vifs.end()) continue;
        auto* out = reinterpret_cast<std::uint64_t*>(&d);
        for (std::size_t i = 0; i < table.size(); ++i)
            out[i] += engine::counter_value(cb, i) - engine::counter_value(it->second, i);
    }
    return d;
}

double ratio(double a, double b) {
    return b > 0 ? a / b : 0.0;
}

// What the lcores' polls did between two snapshots, summed over lcores: cycles outside the
// sleep stage, polls that found nothing, polls that found work.
struct PollTotals {
    std::uint64_t busy_cycles = 0;
    std::uint64_t idle_polls = 0;
    std::uint64_t busy_polls = 0;
};
PollTotals poll_totals(const Snapshot& a, const Snapshot& b) {
    PollTotals t;
    for (std::size_t l = 0; l < b.lcores.size() && l < a.lcores.size(); ++l) {
        t.idle_polls += b.lcores[l].idle_polls - a.lcores[l].idle_polls;
        t.busy_polls += b.lcores[l].busy_polls - a.lcores[l].busy_polls;
        for (std::size_t s = 0; s < b.lcores[l].stages.size(); ++s)
            if (s != static_cast<std::size_t>(engine::Stage::sleep))
                t.busy_cycles += b.lcores[l].stages[s].cycles - a.lcores[l].stages[s].cycles;
    }
    return t;
}

// `empty_poll`: cycles of a poll that finds nothing (calibrated with guests attached and no
// traffic), so that the polls an lcore spins between packets when the load is lower than
// what it could take are not charged to the packets.
json measure(const Snapshot& a, const Snapshot& b, bool rx_phase, double empty_poll) {
    const double secs = std::chrono::duration<double>(b.t - a.t).count();
    const engine::VifCounters d = sum_delta(a, b);
    const double pkts = static_cast<double>(rx_phase ? d.rx_packets : d.tx_packets);
    json j;
    j["seconds"] = secs;
    j["packets"] = rx_phase ? d.rx_packets : d.tx_packets;
    j["mpps"] = pkts / secs / 1e6;
    j["gbps"] = static_cast<double>(rx_phase ? d.rx_bytes : d.tx_bytes) * 8 / secs / 1e9;
    if (rx_phase)
        j["offered_mpps"] = static_cast<double>(b.offered - a.offered) / secs / 1e6;
    else
        j["generator_mpps"] = j["mpps"]; // the guests are the generator
    // The lcores: busy = every stage but sleeping, summed over lcores.
    std::uint64_t busy = 0, total = 0, hz = 0;
    bool timing = false;
    std::vector<std::uint64_t> stage(static_cast<std::size_t>(engine::Stage::count), 0);
    for (std::size_t l = 0; l < b.lcores.size() && l < a.lcores.size(); ++l) {
        hz = b.lcores[l].tsc_hz;
        timing = b.lcores[l].stage_timing;
        for (std::size_t s = 0; s < b.lcores[l].stages.size(); ++s) {
            const std::uint64_t c = b.lcores[l].stages[s].cycles - a.lcores[l].stages[s].cycles;
            stage[s] += c;
            total += c;
            if (s != static_cast<std::size_t>(engine::Stage::sleep)) busy += c;
        }
    }
    j["stage_timing"] = timing;
    j["tsc_hz"] = hz;
    // Polls that found no work: the lcore waited for the generator or the guests, a cost of
    // the window that is not the packets' (callgrind charges it to them all the same).
    const std::uint64_t idle_polls = poll_totals(a, b).idle_polls;
    j["idle_polls"] = idle_polls;
    if (timing) {
        j["lcore_cycles_per_packet"] = ratio(static_cast<double>(busy), pkts);
        j["idle_polls_per_packet"] = ratio(static_cast<double>(idle_polls), pkts);
        if (empty_poll > 0) {
            j["empty_poll_cycles"] = empty_poll;
            const double work = std::max(0.0, static_cast<double>(busy) -
                                                  empty_poll * static_cast<double>(idle_polls));
            // A calibration above what the window shows (noise) is not subtracted.
            j["cycles_per_packet"] = ratio(work > 0 ? work : static_cast<double>(busy), pkts);
        } else {
            j["cycles_per_packet"] = ratio(static_cast<double>(busy), pkts);
        }
        j["lcore_busy_fraction"] =
            ratio(static_cast<double>(busy), static_cast<double>(hz) * secs * b.lcores.size());
        json st = json::object();
        for (std::size_t s = 0; s < stage.size(); ++s)
            if (s != static_cast<std::size_t>(engine::Stage::sleep))
                st[engine::to_string(static_cast<engine::Stage>(s))] =
                    ratio(static_cast<double>(stage[s]), pkts);
        j["stage_cycles_per_packet"] = st;
    }
    j["grant_hypercalls_per_packet"] = ratio(static_cast<double>(d.grant_batches), pkts);
    // What the lcores asked of the hypervisor and the kernel per burst's worth of packets
    // (issue 13's bar: well under one call of each kind per 32 packets at saturation): the
    // lcores' own call counters and the kernel's count of their threads' read and write
    // system calls (docs/metrics.md, "System calls per packet").
    {
        using engine::LcoreStats;
        static constexpr std::pair<const char*, std::uint64_t LcoreStats::*> kCalls[] = {
            {"grant_copy", &LcoreStats::grant_copy_calls},
            {"grant_map", &LcoreStats::grant_map_calls},
            {"grant_unmap", &LcoreStats::grant_unmap_calls},
            {"dma_map", &LcoreStats::dma_map_calls},
            {"dma_unmap", &LcoreStats::dma_unmap_calls},
            {"notify", &LcoreStats::notify_calls},
            {"read", &LcoreStats::read_syscalls},
            {"write", &LcoreStats::write_syscalls},
            {"sleep", &LcoreStats::sleeps}};
        json per32 = json::object();
        for (const auto& [kind, field] : kCalls) {
            std::uint64_t calls = 0;
            for (std::size_t l = 0; l < b.lcores.size() && l < a.lcores.size(); ++l)
                calls += b.lcores[l].*field - a.lcores[l].*field;
            per32[kind] = ratio(32.0 * static_cast<double>(calls), pkts);
        }
        j["lcore_calls_per_32_packets"] = per32;
    }
    j["grant_copy_ops_per_packet"] = ratio(static_cast<double>(d.grant_copy_ops), pkts);
    j["grant_map_ops_per_packet"] = ratio(static_cast<double>(d.grant_map_ops), pkts);
    j["grant_unmap_ops_per_packet"] = ratio(static_cast<double>(d.grant_unmap_ops), pkts);
    j["notifications_sent_per_packet"] = ratio(static_cast<double>(d.notify_sent), pkts);
    j["notifications_received_per_packet"] = ratio(static_cast<double>(d.notify_received), pkts);
    j["iott_hits"] = d.iott_hits;
    j["iott_misses"] = d.iott_misses;
    // Packets a port's TX queue did not take: the lcore frees them (a cost a NIC that keeps
    // up never charges it), so a window with many measures the sink, not the daemon.
    std::uint64_t nic_tx = 0;
    for (std::size_t l = 0; l < b.lcores.size() && l < a.lcores.size(); ++l)
        nic_tx += b.lcores[l].tx_nic_drops - a.lcores[l].tx_nic_drops;
    j["drops"] = {{"no_buffer", d.rx_drop_no_buffer},
                  {"placeholder", d.rx_drop_placeholder},
                  {"rx_error", d.rx_drop_error},
                  {"tx_error", d.tx_drop_error},
                  {"tx_protocol", d.tx_drop_protocol},
                  {"spoofed", d.tx_drop_spoofed},
                  {"nic_tx", nic_tx}};
    json per = json::array();
    for (const auto& [id, cb] : b.vifs) {
        const auto it = a.vifs.find(id);
        if (it == a.vifs.end()) continue;
        const std::uint64_t p = rx_phase ? cb.rx_packets - it->second.rx_packets
                                         : cb.tx_packets - it->second.tx_packets;
        per.push_back(
            {{"vif", engine::to_string(id)}, {"mpps", static_cast<double>(p) / secs / 1e6}});
    }
    j["per_guest"] = per;
    return j;
}

// --- one engine ------------------------------------------------------------------------------

struct World {
    SimHv* sim = nullptr;
    hv::Xenstore* xs = nullptr;
    hv::BackendHypervisor* hv = nullptr;
    pmd::EalOptions eal;
    unsigned max_sleep_ms = 100;
    std::chrono::milliseconds rx_stall_timeout{60000};
};

engine::EngineOptions engine_options(const World& w, std::vector<pmd::PortConfig> ports) {
    engine::EngineOptions o;
    o.eal = w.eal;
    o.ports = std::move(ports);
    o.max_sleep = std::chrono::milliseconds(w.max_sleep_ms);
    o.rx_stall_timeout = w.rx_stall_timeout;
    o.tx_mbufs_per_lcore = kBenchTxMbufs;
    return o;
}

Result<RxMode> mode_of(const std::string& m) {
    return engine::parse_rx_mode(m);
}

// The name of a measured window in callgrind's dump ("desc: Trigger: Client Request: ...").
std::string window_label(const std::string& device, const std::string& mode, unsigned size,
                         const char* phase) {
    return "window " + device + " " + mode + " " + std::to_string(size) + " " + phase;
}

// The calibration window (guests attached, no traffic) of one case in callgrind's dump.
std::string idle_label(const std::string& device, const std::string& mode, unsigned size) {
    return "idle " + device + " " + mode + " " + std::to_string(size);
}

// The state letter of process `pid` (/proc/PID/stat: R, S, T for stopped, ...), "?" if gone.
std::string proc_state(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(f, line);
    const std::size_t paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() ? line.substr(paren + 2, 1) : "?";
}

// The stall phase (issue 15, XSA-392's class): two guests on the shared net_ring port, both
// flooded by the generator. Guest 0 is stopped (SIGSTOP: its vCPU no longer runs, so it
// posts no RX buffer once the ones it posted are filled) for `stall_window` seconds, then
// continued for `stall_recover` seconds, `stall_cycles` times; guest 1 keeps receiving.
// Sampled every `stall_sample` seconds: this process's memory (the engine runs in it, as in
// dpnetbackd), the stopped guest's backlog, stalled state and drops by reason, the mbufs of
// each guest's generator pool out of it, and the frames each guest was delivered.
json stall_phase(const Options& opt, World& w, engine::Engine& eng, RingWire& ring,
                 const GuestConfig& gc, const std::string& port, unsigned size) {
    json out;
    out["rx_stall_timeout_ms"] = opt.rx_stall_timeout_ms;
    out["rate"] = opt.rate;
    GuestSet set(*w.xs, eng);
    if (Status st = set.start(gc, 2, {port, port}, RxMode::copy); !st) {
        out["error"] = st.error().describe();
        return out;
    }
    Guest& stalled = set.guests()[0];
    Guest& healthy = set.guests()[1];
    if (!ring.add_destination(stalled.mac, size) || !ring.add_destination(healthy.mac, size)) {
        out["error"] = "generator set-up failed";
        return out;
    }
    const engine::VifId sid{stalled.dom, 0}, hid{healthy.dom, 0};
    const auto t0 = Clock::now();
    json samples = json::array();
    auto sample = [&](const char* guest_state, unsigned cycle) {
        const engine::VifStatus s = eng.status(sid).value_or(engine::VifStatus{});
        const engine::VifStatus h = eng.status(hid).value_or(engine::VifStatus{});
        json j = {{"t", std::chrono::duration<double>(Clock::now() - t0).count()},
                  {"cycle", cycle},
                  {"guest", guest_state},
                  {"guest_proc_state", proc_state(stalled.process.pid())},
                  {"vm_rss", resident_bytes()},
                  {"vm_hwm", resident_peak_bytes()},
                  {"stalled_queues", s.stalled_queues},
                  {"backlog_frames", s.rx_backlog_frames},
                  {"backlog_bytes", s.rx_backlog_bytes},
                  {"mbufs_stalled_guest", ring.in_use(0)},
                  {"mbufs_healthy_guest", ring.in_use(1)},
                  {"ring_waiting", ring.waiting()},
                  {"drop_no_buffer", s.counters.rx_drop_no_buffer},
                  {"drop_stalled", s.counters.rx_drop_stalled},
                  {"stalls", s.counters.rx_stalls},
                  {"stalled_guest_rx", s.counters.rx_packets},
                  {"healthy_guest_rx", h.counters.rx_packets},
                  {"healthy_drops", h.counters.rx_drop_no_buffer + h.counters.rx_drop_stalled},
                  {"generated", ring.generated()}};
        samples.push_back(j);
    };
    auto run_for = [&](double seconds, const char* guest_state, unsigned cycle) {
        const auto end = Clock::now() + std::chrono::duration<double>(seconds);
        while (Clock::now() < end) {
            nap(std::chrono::duration<double>(opt.stall_sample));
            sample(guest_state, cycle);
        }
    };
    ring.start(opt.rate);
    sample("receiving", 0);
    for (unsigned c = 1; c <= opt.stall_cycles; ++c) {
        stalled.process.signal(SIGSTOP);
        run_for(opt.stall_window, "stopped", c);
        stalled.process.signal(SIGCONT);
        run_for(opt.stall_recover, "receiving", c);
    }
    ring.stop();
    set.stop();
    // The summary: bounded (the backlog within its limits; memory after the first stall no
    // higher than at it, within `slack`), the healthy guest served throughout, and recovery
    // (each cycle ends with the queue running and the guest receiving again).
    std::uint64_t max_frames = 0, max_bytes = 0, rss_first_stall = 0, rss_max_after = 0;
    std::uint64_t hwm_first_stall = 0, hwm_end = 0;
    bool healthy_always = true, all_recovered = true;
    std::vector<std::uint64_t> stall_frames_while_stalled;
    for (std::size_t i = 0; i < samples.size(); ++i) {
        const json& x = samples[i];
        max_frames = std::max(max_frames, x["backlog_frames"].get<std::uint64_t>());
        max_bytes = std::max(max_bytes, x["backlog_bytes"].get<std::uint64_t>());
        const bool is_stalled = x["stalled_queues"].get<unsigned>() != 0;
        if (is_stalled && rss_first_stall == 0) {
            rss_first_stall = x["vm_rss"].get<std::uint64_t>();
            hwm_first_stall = x["vm_hwm"].get<std::uint64_t>();
        }
        if (rss_first_stall != 0)
            rss_max_after = std::max(rss_max_after, x["vm_rss"].get<std::uint64_t>());
        hwm_end = x["vm_hwm"].get<std::uint64_t>();
        if (is_stalled) stall_frames_while_stalled.push_back(x["backlog_frames"]);
        if (i > 0 && x["healthy_guest_rx"].get<std::uint64_t>() <=
                         samples[i - 1]["healthy_guest_rx"].get<std::uint64_t>())
            healthy_always = false;
    }
    for (unsigned c = 1; c <= opt.stall_cycles; ++c) {
        const json* first = nullptr;
        const json* last = nullptr;
        for (const json& x : samples)
            if (x["cycle"] == c && x["guest"] == "receiving") {
                if (first == nullptr) first = &x;
                last = &x;
            }
        const bool ok = first != nullptr && last->at("stalled_queues") == 0 &&
                        last->at("stalled_guest_rx").get<std::uint64_t>() >
                            first->at("stalled_guest_rx").get<std::uint64_t>();
        all_recovered = all_recovered && ok;
    }
    out["samples"] = samples;
    out["summary"] = {{"max_backlog_frames", max_frames},
                      {"max_backlog_bytes", max_bytes},
                      {"backlog_while_stalled_max",
                       stall_frames_while_stalled.empty()
                           ? json(nullptr)
                           : json(*std::max_element(stall_frames_while_stalled.begin(),
                                                    stall_frames_while_stalled.end()))},
                      {"stalled_seen", rss_first_stall != 0},
                      {"rss_at_first_stall", rss_first_stall},
                      {"rss_max_after_first_stall", rss_max_after},
                      {"hwm_at_first_stall", hwm_first_stall},
                      {"hwm_at_end", hwm_end},
                      {"healthy_guest_delivered_every_sample", healthy_always},
                      {"recovered_every_cycle", all_recovered}};
    return out;
}

// Everything for one (device, mode, size): an Engine, its ports, the traffic, the phases.
json run_case(const Options& opt, World& w, const std::string& device, const std::string& mode_text,
              unsigned size) {
    json out;
    out["device"] = device;
    out["mode"] = mode_text;
    out["size"] = size;
    out["guests"] = opt.guests;
    out["lcores"] = opt.lcores;
    const RxMode mode = mode_of(mode_text).value_or(RxMode::copy);
    const unsigned id = g_seq++;

    // net_ring: one shared port (copy), or one port per guest whose generator fills the
    // buffers the engine posts (zero copy).
    std::vector<std::unique_ptr<RingWire>> rings;
    const bool ring_posted = device == "ring" && mode != RxMode::copy;
    std::vector<pmd::PortConfig> ports;
    std::vector<std::string> port_names, ifaces;
    if (device == "ring") {
        for (unsigned g = 0; g < (ring_posted ? opt.guests : 1U); ++g) {
            rings.push_back(std::make_unique<RingWire>(
                "bring" + std::to_string(id) + "_" + std::to_string(g), opt.lcores));
            if (!rings.back()->ok()) {
                out["error"] = "net_ring port not created";
                return out;
            }
            pmd::PortConfig p;
            p.name = "ring" + std::to_string(g);
            p.device = rings.back()->ethdev();
            p.steering = ring_posted ? pmd::Steering::dedicated_port : pmd::Steering::shared;
            p.zero_copy = ring_posted;
            p.rx_peer_fills_pool = ring_posted;
            ports.push_back(p);
            port_names.push_back(p.name);
        }
        out["note"] = ring_posted ? "net_ring per guest, its generator writing into the buffers "
                                    "the engine posted (a NIC's DMA)"
                                  : "net_ring shared port, pre-built frames in daemon mbufs";
    } else {
        for (unsigned g = 0; g < opt.guests; ++g) {
            pmd::PortConfig p;
            p.name = "tap" + std::to_string(g);
            ifaces.push_back("dpnbb" + std::to_string(id) + "_" + std::to_string(g));
            p.device = "net_tap_b" + std::to_string(id) + "_" + std::to_string(g) +
                       ",iface=" + ifaces.back();
            p.steering = pmd::Steering::dedicated_port;
            p.zero_copy = mode != RxMode::copy;
            ports.push_back(p);
            port_names.push_back(p.name);
        }
    }
    auto created = engine::Engine::create(engine_options(w, ports), *w.hv);
    if (!created) {
        out["error"] = "Engine::create: " + created.error().describe();
        return out;
    }
    std::unique_ptr<engine::Engine> eng = std::move(*created);
    for (const engine::PortStatus& ps : eng->ports()) {
        out["ports"].push_back({{"name", ps.name},
                                {"driver", ps.driver},
                                {"zero_copy", ps.zero_copy},
                                {"copy_reason", ps.copy_reason}});
    }
    for (const std::string& i : ifaces)
        if (!wait_iface(i, 10000)) {
            out["error"] = "tap interface " + i + " did not appear";
            return out;
        }

    GuestConfig gc;
    gc.netfront_path = opt.netfront_path;
    gc.sim_dir = w.sim->dir();
    gc.rx_mode = mode == RxMode::reuse ? "reuse" : "copy";
    gc.buffer = opt.buffer;
    gc.hold = opt.hold;
    gc.pool_target = opt.pool_target;
    gc.pool_shrink_every = opt.pool_shrink_every;
    gc.size = size;

    auto guest_summaries = [](GuestSet& set) {
        json a = json::array();
        for (Guest& g : set.guests()) {
            json s = json::parse(g.summary_json, nullptr, false);
            if (s.is_discarded()) continue;
            json keep;
            for (const char* k : {"reuse_rate", "result", "seconds"})
                if (s.contains(k)) keep[k] = s[k];
            if (s.contains("workload")) keep["workload"] = s["workload"];
            if (s.contains("pool")) keep["pool"] = s["pool"];
            if (s.contains("counters"))
                for (const char* k :
                     {"rx_posts", "reuse_hits", "reuse_misses", "unregistered_posts",
                      "pool_pages_added", "pool_pages_removed", "pool_removals_refused",
                      "notify_tx", "notify_rx", "events"})
                    if (s["counters"].contains(k)) keep[k] = s["counters"][k];
            a.push_back(keep);
        }
        return a;
    };

    const auto phases = opt.phases;
    auto has = [&](const char* p) {
        return std::find(phases.begin(), phases.end(), p) != phases.end();
    };

    if (has("stall")) {
        if (device != "ring" || mode != RxMode::copy || rings.empty())
            out["stall"]["error"] = "the stall phase runs on the ring device in copy mode";
        else
            out["stall"] = stall_phase(opt, w, *eng, *rings[0], gc, port_names.front(), size);
    }
    double empty_poll = 0;
    if (has("rx")) {
        GuestSet set(*w.xs, *eng);
        if (Status st = set.start(gc, opt.guests, port_names, mode); !st) {
            out["rx"]["error"] = st.error().describe();
        } else {
            TapGenerator tapgen;
            std::unique_ptr<hv::GrantTable> grants;
            std::vector<hv::GrantMapping> ring_maps;
            bool backpressure = false;
            bool ok = true;
            if (ring_posted) {
                // Each guest's port's RX queue allocates from the guest-buffer pool its
                // generator takes the posted buffers from.
                const std::vector<engine::PortStatus> pst = eng->ports();
                for (std::size_t g = 0; g < set.guests().size(); ++g) {
                    rte_mempool* posted = nullptr;
                    for (const engine::PortStatus& ps : pst)
                        if (ps.name == port_names[g] && !ps.rx_pools.empty())
                            posted = rte_mempool_lookup(ps.rx_pools[0].c_str());
                    ok = ok && rings[g]->add_posted_destination(set.guests()[g].mac, size, posted);
                }
            } else if (!rings.empty()) {
                // Back-pressure: each guest's RX ring, mapped read-only, tells the generator
                // how many buffers it posted (RingWire::add_destination).
                auto gt = w.hv->open_grant_table();
                if (gt) grants = std::move(*gt);
                for (Guest& g : set.guests()) {
                    const hv::GrantMapRequest req{g.dom, g.rx_ring_ref, false};
                    std::int16_t status = 0;
                    hv::GrantMapping m =
                        grants ? grants->map({&req, 1}, {&status, 1}) : hv::GrantMapping{};
                    const std::size_t frame =
                        std::max<std::size_t>(size, netfront::kPayloadMinFrame);
                    const unsigned per_frame =
                        g.rx_buffer_bytes != 0
                            ? static_cast<unsigned>((frame + g.rx_buffer_bytes - 1) /
                                                    g.rx_buffer_bytes)
                            : 1U;
                    ok = ok && m && rings[0]->add_destination(g.mac, size, m.base, per_frame);
                    if (m) ring_maps.push_back(m);
                }
                backpressure = true;
            } else {
                for (std::size_t g = 0; g < set.guests().size(); ++g)
                    ok = ok && tapgen.add(ifaces[g],
                                          make_frame(set.guests()[g].mac, peer_mac(), size, 0));
            }
            auto offered = [&] {
                std::uint64_t n = tapgen.sent();
                for (const auto& r : rings)
                    n += r->generated();
                return n;
            };
            {
                // Calibration: the cost of an empty poll with these guests attached. Under
                // callgrind it is a window of its own ("idle ..."), so bench/callgrind.sh can
                // say what the measured windows' empty polls cost in instructions.
                CALLGRIND_ZERO_STATS;
                const Snapshot c0 = snapshot(*eng, 0);
                nap(500ms);
                const Snapshot c1 = snapshot(*eng, 0);
                const std::string label_idle = idle_label(device, mode_text, size);
                CALLGRIND_DUMP_STATS_AT(label_idle.c_str());
                const PollTotals t = poll_totals(c0, c1);
                empty_poll = t.idle_polls != 0 ? static_cast<double>(t.busy_cycles) /
                                                     static_cast<double>(t.idle_polls)
                                               : 0.0;
                const engine::VifCounters d = sum_delta(c0, c1);
                out["idle"] = {{"idle_polls", t.idle_polls},
                               {"busy_polls", t.busy_polls},
                               {"packets", d.rx_packets + d.tx_packets}};
            }
            for (const auto& r : rings)
                r->start(opt.rate / rings.size());
            if (rings.empty()) tapgen.start(opt.rate);
            nap(std::chrono::duration<double>(opt.warmup));
            CALLGRIND_ZERO_STATS;
            const Snapshot a = snapshot(*eng, offered());
            nap(std::chrono::duration<double>(opt.duration));
            const Snapshot b = snapshot(*eng, offered());
            // The label must outlive the request (a temporary would die before it).
            const std::string label_rx = window_label(device, mode_text, size, "rx");
            CALLGRIND_DUMP_STATS_AT(label_rx.c_str());
            for (const auto& r : rings)
                r->stop();
            tapgen.stop();
            for (hv::GrantMapping& m : ring_maps)
                (void)grants->unmap(m);
            out["rx"] = measure(a, b, true, empty_poll);
            if (backpressure) {
                // What the generator sent waited for the guests' RX requests (drops: none
                // expected; `drops` says).
                out["rx"]["backpressure"] = "posted RX requests";
                std::uint64_t held = 0;
                for (const auto& r : rings)
                    held += r->held_back();
                out["rx"]["generator_held_back"] = held;
            }
            // The ports' own view over the whole phase (frames the PMD took, could not take).
            json pst = json::array();
            for (const engine::PortStatus& ps : eng->ports())
                pst.push_back({{"port", ps.name},
                               {"ipackets", ps.stats.ipackets},
                               {"imissed", ps.stats.imissed},
                               {"ierrors", ps.stats.ierrors},
                               {"rx_nombuf", ps.stats.rx_nombuf}});
            out["rx"]["port_stats_after"] = pst;
            if (tapgen.last_errno() != 0)
                out["rx"]["generator_last_error"] = std::strerror(tapgen.last_errno());
            if (!ok) out["rx"]["error"] = "generator set-up failed";
            for (const engine::VifStatus& v : eng->list())
                if (v.rx_mode != mode) out["rx"]["mode_in_effect"] = engine::to_string(v.rx_mode);
            set.stop();
            out["rx"]["guest_side"] = guest_summaries(set);
        }
    }
    // A phase where the guests send (flat out) and the lcores take it: the window's figures.
    auto sending_phase = [&](const char* phase, const GuestConfig& config,
                             const std::vector<std::string>& on_ports) {
        json j;
        GuestSet set(*w.xs, *eng);
        // The drainers alone: frames a generator sent meanwhile would be demultiplexed and
        // dropped (their guests are gone) on the lcores, and charged to the sent packets.
        for (const auto& r : rings)
            r->start_sink();
        if (Status st = set.start(config, opt.guests, on_ports, mode); !st) {
            j["error"] = st.error().describe();
        } else {
            nap(std::chrono::duration<double>(opt.warmup));
            CALLGRIND_ZERO_STATS;
            const Snapshot a = snapshot(*eng, 0);
            nap(std::chrono::duration<double>(opt.duration));
            const Snapshot b = snapshot(*eng, 0);
            // The label must outlive the request (a temporary would die before it).
            const std::string label = window_label(device, mode_text, size, phase);
            CALLGRIND_DUMP_STATS_AT(label.c_str());
            j = measure(a, b, false, empty_poll);
            const engine::VifCounters d = sum_delta(a, b);
            j["local_rx_packets"] = d.local_rx_packets;
            j["local_rx_drops"] = d.local_rx_drops;
            j["grant_copy_ops"] = d.grant_copy_ops;
            j["grant_map_ops"] = d.grant_map_ops;
            set.stop();
            j["guest_side"] = guest_summaries(set);
        }
        for (const auto& r : rings)
            r->stop();
        return j;
    };
    if (has("tx")) {
        GuestConfig tx = gc;
        tx.send = 50'000'000;
        tx.dst_mac = netif::format_mac(peer_mac());
        out["tx"] = sending_phase("tx", tx, port_names);
    }
    if (has("local")) {
        // Guest to guest on one port (docs/datapath.md, "Local delivery"): every guest sends
        // to the next one's MAC, all on the first port, nothing to or from the wire.
        GuestConfig local = gc;
        local.send = 50'000'000;
        local.pairs = true;
        out["local"] = sending_phase("local", local, {port_names.front()});
    }
    if (has("idle")) {
        const std::uint64_t rss0 = resident_bytes();
        GuestSet set(*w.xs, *eng);
        if (Status st = set.start(gc, opt.guests, port_names, mode); !st) {
            out["idle"]["error"] = st.error().describe();
        } else {
            nap(1s);
            const Snapshot a = snapshot(*eng, 0);
            const double c0 = cpu_seconds();
            const auto t0 = Clock::now();
            nap(std::chrono::duration<double>(opt.idle_seconds));
            const double cpu = cpu_seconds() - c0;
            const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
            const Snapshot b = snapshot(*eng, 0);
            std::uint64_t sleeps = 0;
            for (std::size_t l = 0; l < b.lcores.size(); ++l)
                sleeps += b.lcores[l].sleeps - a.lcores[l].sleeps;
            out["idle"] = {{"seconds", secs},
                           {"cpu_percent_of_one_core", 100.0 * cpu / secs},
                           {"lcore_sleeps_per_second", static_cast<double>(sleeps) / secs},
                           {"rss_bytes_before_guests", rss0},
                           {"rss_bytes_with_guests", resident_bytes()},
                           {"attached", eng->list().size()}};
            set.stop();
        }
    }
    if (has("latency") && device == "tap") {
        GuestSet set(*w.xs, *eng);
        GuestConfig echo = gc;
        echo.echo = true;
        if (Status st = set.start(echo, 1, port_names, mode); !st) {
            out["latency"]["error"] = st.error().describe();
        } else {
            // Warm-up probes: the first frame of a zero-copy queue lands in a start-up
            // placeholder (docs/datapath.md rule 5).
            (void)measure_latency(ifaces[0], set.guests()[0].mac, size, 20, 1000, 200);
            LatencyResult r = measure_latency(ifaces[0], set.guests()[0].mac, size,
                                              opt.latency_count, opt.latency_gap_us, 200);
            std::vector<double> v = r.rtt_us;
            std::sort(v.begin(), v.end());
            auto pct = [&](double q) {
                if (v.empty()) return 0.0;
                const auto i =
                    static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
                return v[std::min(i, v.size() - 1)];
            };
            out["latency"] = {{"sent", r.sent},
                              {"answered", r.answered},
                              {"median_us", pct(0.5)},
                              {"p99_us", pct(0.99)},
                              {"min_us", v.empty() ? 0.0 : v.front()},
                              {"max_us", v.empty() ? 0.0 : v.back()},
                              {"gap_us", opt.latency_gap_us}};
            set.stop();
        }
    }
    if (Status st = eng->shutdown(); !st) out["leaks"] = st.error().describe();
    eng.reset();
    rings.clear();
    return out;
}

// --- dpdk-testpmd ---------------------------------------------------------------------------

// io-forward between two ports of `vdev` for `seconds`; RX packets per second summed over
// both ports, the median of the periodic samples after the first two.
json run_testpmd(const Options& opt, const std::string& vdev, unsigned size, double seconds) {
    json out;
    out["vdev"] = vdev;
    out["size"] = size;
    const std::string prefix = g_prefix + "-tp" + std::to_string(g_seq++);
    std::vector<std::string> argv = {opt.testpmd_path, "--no-huge", "-m", "512", "--no-pci",
                                     "--file-prefix",  prefix,      "-l", "0,1", "--log-level",
                                     "notice"};
    std::vector<std::string> ifaces;
    if (vdev == "net_ring" || vdev == "net_null") {
        argv.insert(
            argv.end(),
            {"--vdev", vdev + "0" + (vdev == "net_null" ? ",size=" + std::to_string(size) : ""),
             "--vdev", vdev + "1" + (vdev == "net_null" ? ",size=" + std::to_string(size) : "")});
    } else {
        for (int i = 0; i < 2; ++i) {
            ifaces.push_back(prefix.substr(0, 8) + "t" + std::to_string(i));
            std::replace(ifaces.back().begin(), ifaces.back().end(), '-', 'x');
            argv.insert(argv.end(),
                        {"--vdev", "net_tap" + std::to_string(i) + ",iface=" + ifaces.back()});
        }
    }
    argv.insert(argv.end(), {"--", "--forward-mode=io", "--nb-cores=1", "--stats-period", "1",
                             "--total-num-mbufs=16384", "--txpkts=" + std::to_string(size),
                             // busy cycles (bursts that moved packets) per packet: the cost
                             // per packet even where one generator cannot saturate the port
                             "--record-core-cycles"});
    if (vdev == "net_ring") argv.push_back("--tx-first"); // ring ports loop back what they send
    Process tp(argv, true);
    if (!tp.started()) {
        out["error"] = "cannot start " + opt.testpmd_path;
        return out;
    }
    TapGenerator gen;
    if (!ifaces.empty()) {
        for (const std::string& i : ifaces)
            if (!wait_iface(i, 20000)) {
                out["error"] = "testpmd's tap " + i + " did not appear";
                tp.signal(SIGKILL);
                return out;
            }
        nap(1s);
        netif::MacAddress dst;
        dst.bytes = {0x02, 0x00, 0x00, 0xbe, 0x0c, 0x02};
        (void)gen.add(ifaces[0], make_frame(dst, peer_mac(), size, 0));
        gen.start(0);
    }
    const auto t0 = Clock::now();
    const std::uint64_t g0 = gen.sent();
    nap(std::chrono::duration<double>(seconds));
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::uint64_t g1 = gen.sent();
    gen.stop();
    tp.signal(SIGINT);
    std::string text;
    (void)tp.wait(20s, &text);
    // Every "Rx-pps: <n>" of testpmd's periodic stats (no <regex>: GCC 12 warns inside it
    // at -O2 with sanitizers, and warnings are errors).
    std::vector<double> pps;
    constexpr std::string_view kKey = "Rx-pps:";
    for (std::size_t at = text.find(kKey); at != std::string::npos;
         at = text.find(kKey, at + kKey.size())) {
        std::size_t i = at + kKey.size();
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t'))
            ++i;
        std::size_t j = i;
        while (j < text.size() && text[j] >= '0' && text[j] <= '9')
            ++j;
        if (j > i) pps.push_back(std::stod(text.substr(i, j - i)));
    }
    std::vector<double> periods;
    for (std::size_t i = 0; i + 1 < pps.size(); i += 2)
        periods.push_back(pps[i] + pps[i + 1]);
    if (periods.size() > 2) periods.erase(periods.begin(), periods.begin() + 2);
    std::vector<double> nonzero;
    for (double p : periods)
        if (p > 0) nonzero.push_back(p);
    std::sort(nonzero.begin(), nonzero.end());
    const double med = nonzero.empty() ? 0.0 : nonzero[nonzero.size() / 2];
    out["mpps"] = med / 1e6;
    out["samples"] = nonzero.size();
    if (!ifaces.empty()) out["generator_mpps"] = static_cast<double>(g1 - g0) / secs / 1e6;
    // "CPU cycles/packet=18374.45 (total cycles=... / total io packets=N) at 2600 MHz Clock"
    constexpr std::string_view kCycles = "CPU cycles/packet=";
    if (const std::size_t at = text.rfind(kCycles); at != std::string::npos) {
        const std::string rest = text.substr(at + kCycles.size(), 32);
        char* end = nullptr;
        const double c = std::strtod(rest.c_str(), &end);
        if (end != rest.c_str() && c > 0) out["busy_cycles_per_packet"] = c;
    }
    constexpr std::string_view kIo = "total io packets=";
    if (const std::size_t at = text.rfind(kIo); at != std::string::npos)
        out["forwarded"] = std::strtoull(text.substr(at + kIo.size(), 24).c_str(), nullptr, 10);
    // A port fed by one generator thread (net_tap) is not saturated: its rate is the
    // generator's, and its busy cycles per packet are the ceiling's cost.
    if (nonzero.empty() && !out.contains("busy_cycles_per_packet"))
        out["error"] = "no forwarding rate in testpmd's output";
    return out;
}

// --- output ----------------------------------------------------------------------------------

std::string fmt(const json& j, const char* key, int decimals = 3) {
    if (!j.contains(key) || !j[key].is_number()) return "-";
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, j[key].get<double>());
    return buf;
}

// The stall phase's samples, one line each, and its summary.
void print_stall(const json& st) {
    if (st.contains("error")) {
        std::printf("stall: error: %s\n", st["error"].get<std::string>().c_str());
        return;
    }
    std::printf("stall phase: rx_stall_timeout %u ms, generator %llu frames/s over both guests\n",
                st["rx_stall_timeout_ms"].get<unsigned>(),
                static_cast<unsigned long long>(st["rate"].get<std::uint64_t>()));
    std::printf("%6s %2s %-9s %2s %8s %8s %5s %7s %8s %6s %6s %5s %9s %9s %9s %10s\n", "t(s)", "cy",
                "guest 0", "ps", "RSS MiB", "HWM MiB", "stall", "backlog", "bytes", "mbufs0",
                "mbufs1", "ring", "drop_nobuf", "drop_stall", "g0 rx", "g1 rx");
    for (const json& x : st["samples"])
        std::printf(
            "%6.1f %2u %-9s %2s %8.1f %8.1f %5u %7llu %8llu %6u %6u %5u %9llu %9llu %9llu %10llu\n",
            x["t"].get<double>(), x["cycle"].get<unsigned>(), x["guest"].get<std::string>().c_str(),
            x["guest_proc_state"].get<std::string>().c_str(),
            static_cast<double>(x["vm_rss"].get<std::uint64_t>()) / 1048576.0,
            static_cast<double>(x["vm_hwm"].get<std::uint64_t>()) / 1048576.0,
            x["stalled_queues"].get<unsigned>(),
            static_cast<unsigned long long>(x["backlog_frames"].get<std::uint64_t>()),
            static_cast<unsigned long long>(x["backlog_bytes"].get<std::uint64_t>()),
            x["mbufs_stalled_guest"].get<unsigned>(), x["mbufs_healthy_guest"].get<unsigned>(),
            x["ring_waiting"].get<unsigned>(),
            static_cast<unsigned long long>(x["drop_no_buffer"].get<std::uint64_t>()),
            static_cast<unsigned long long>(x["drop_stalled"].get<std::uint64_t>()),
            static_cast<unsigned long long>(x["stalled_guest_rx"].get<std::uint64_t>()),
            static_cast<unsigned long long>(x["healthy_guest_rx"].get<std::uint64_t>()));
    std::printf("stall summary: %s\n", st["summary"].dump().c_str());
}

void print_table(const json& doc) {
    std::printf("%-5s %-6s %5s %-3s %8s %8s %9s %8s %8s %8s  %s\n", "dev", "mode", "size", "dir",
                "Mpps", "offered", "cyc/pkt", "gnt/pkt", "ntf/pkt", "x tpmd",
                "stages (cycles/packet)");
    for (const json& c : doc["cases"]) {
        for (const char* dir : {"rx", "tx", "local"}) {
            if (!c.contains(dir)) continue;
            const json& m = c[dir];
            if (m.contains("error") && !m.contains("mpps")) {
                std::printf("%-5s %-6s %5u %-3s  error: %s\n",
                            c["device"].get<std::string>().c_str(),
                            c["mode"].get<std::string>().c_str(), c["size"].get<unsigned>(), dir,
                            m["error"].get<std::string>().c_str());
                continue;
            }
            std::string stages;
            if (m.contains("lcore_calls_per_32_packets")) {
                stages += "per32[";
                for (const auto& [k, v] : m["lcore_calls_per_32_packets"].items())
                    if (v.get<double>() >= 0.005) {
                        char one[48];
                        std::snprintf(one, sizeof one, "%s=%.2f ", k.c_str(), v.get<double>());
                        stages += one;
                    }
                stages += "] ";
            }
            if (m.contains("stage_cycles_per_packet"))
                for (const auto& [k, v] : m["stage_cycles_per_packet"].items())
                    if (v.get<double>() >= 0.5)
                        stages += k + "=" + std::to_string(std::lround(v.get<double>())) + " ";
            std::printf(
                "%-5s %-6s %5u %-3s %8s %8s %9s %8s %8s %8s  %s\n",
                c["device"].get<std::string>().c_str(), c["mode"].get<std::string>().c_str(),
                c["size"].get<unsigned>(), dir, fmt(m, "mpps").c_str(),
                fmt(m, dir == std::string("rx") ? "offered_mpps" : "generator_mpps").c_str(),
                fmt(m, "cycles_per_packet", 0).c_str(),
                fmt(m, "grant_hypercalls_per_packet").c_str(),
                fmt(m, "notifications_sent_per_packet").c_str(), fmt(m, "x_testpmd", 1).c_str(),
                stages.c_str());
        }
        if (c.contains("idle"))
            std::printf(
                "%-5s %-6s idle: %s%% of a core, RSS %s MiB with %u guests\n",
                c["device"].get<std::string>().c_str(), c["mode"].get<std::string>().c_str(),
                fmt(c["idle"], "cpu_percent_of_one_core", 2).c_str(),
                c["idle"].contains("rss_bytes_with_guests")
                    ? std::to_string(c["idle"]["rss_bytes_with_guests"].get<std::uint64_t>() >> 20)
                          .c_str()
                    : "-",
                c["guests"].get<unsigned>());
        if (c.contains("stall")) print_stall(c["stall"]);
        if (c.contains("latency"))
            std::printf(
                "%-5s %-6s %5u latency: median %s us, p99 %s us (%s answered)\n",
                c["device"].get<std::string>().c_str(), c["mode"].get<std::string>().c_str(),
                c["size"].get<unsigned>(), fmt(c["latency"], "median_us", 1).c_str(),
                fmt(c["latency"], "p99_us", 1).c_str(), fmt(c["latency"], "answered", 0).c_str());
    }
    for (const json& t : doc["testpmd"])
        std::printf("testpmd io-forward %-8s %5u: %s Mpps, %s cycles/packet%s\n",
                    t["vdev"].get<std::string>().c_str(), t["size"].get<unsigned>(),
                    fmt(t, "mpps").c_str(), fmt(t, "cycles_per_packet", 0).c_str(),
                    t.contains("generator_mpps")
                        ? (" (generator " + fmt(t, "generator_mpps") + " Mpps)").c_str()
                        : "");
    std::printf("cycles/packet: TSC cycles of the lcore outside its sleep stage / packets; "
                "x tpmd: that as a multiple of testpmd's on the same vdev type and size.\n");
}

bool enter_private_netns() {
    if (::geteuid() != 0 || ::access("/dev/net/tun", R_OK | W_OK) != 0) return false;
    if (::unshare(CLONE_NEWNET) != 0) return false;
    for (const char* p : {"/proc/sys/net/ipv6/conf/default/disable_ipv6",
                          "/proc/sys/net/ipv6/conf/all/disable_ipv6"}) {
        std::ofstream f(p);
        f << "1";
    }
    return true;
}

int run(const Options& opt) {
    json doc;
    doc["tool"] = "dpnb-bench-datapath";
    doc["cpus"] = std::thread::hardware_concurrency();
    doc["options"] = {{"duration", opt.duration},
                      {"modes", opt.modes},
                      {"sizes", opt.sizes},
                      {"devices", opt.devices},
                      {"phases", opt.phases},
                      {"guests", opt.guests},
                      {"lcores", opt.lcores},
                      {"rate", opt.rate},
                      {"buffer", opt.buffer},
                      {"hold", opt.hold},
                      {"pool_target", opt.pool_target},
                      {"pool_shrink_every", opt.pool_shrink_every}};
    const bool tap_ok = enter_private_netns();
    doc["tap_available"] = tap_ok;

    char tmpl[] = "/tmp/dpnb-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return 2;
    const std::string sim_dir = tmpl;
    g_prefix = "dpnb-bench-" + std::to_string(::getpid());
    int rc = 0;
    {
        SimHv sim(opt.simhv_path, sim_dir);
        if (!sim.ready()) {
            std::fprintf(stderr, "dpnb-bench-datapath: %s did not start\n", opt.simhv_path.c_str());
            return 2;
        }
        auto xs = hv::open_xenstore(sim_dir + "/xenstore-0.sock");
        auto bhv = hv::sim::connect_backend(sim_dir);
        if (!xs || !bhv) {
            std::fprintf(stderr,
                         "dpnb-bench-datapath: cannot connect to the simulated hypervisor\n");
            return 2;
        }
        World w;
        w.sim = &sim;
        w.xs = xs->get();
        w.hv = bhv->get();
        w.max_sleep_ms = opt.max_sleep_ms;
        w.rx_stall_timeout = std::chrono::milliseconds(opt.rx_stall_timeout_ms);
        w.eal.main_lcore = 0;
        std::string map = "0@0";
        for (unsigned l = 1; l <= opt.lcores; ++l) {
            w.eal.worker_lcores.push_back(l);
            map += "," + std::to_string(l) + "@" + std::to_string(l % 2 == 1 ? 1 : 0);
        }
        w.eal.lcore_map = map;
        w.eal.no_huge = true;
        w.eal.memory_mb = 512;
        w.eal.no_pci = true;
        w.eal.file_prefix = g_prefix;
        w.eal.log_level = "error";
        if (Status st = pmd::init_eal(w.eal); !st) {
            std::fprintf(stderr, "dpnb-bench-datapath: EAL: %s\n", st.error().describe().c_str());
            return 2;
        }
        doc["cases"] = json::array();
        for (const std::string& m : opt.modes)
            for (unsigned s : opt.sizes) {
                std::vector<std::string> devs;
                for (const std::string& d : opt.devices) {
                    if (d == "auto") {
                        devs.push_back("ring");
                        if (tap_ok) devs.push_back("tap");
                    } else {
                        devs.push_back(d);
                    }
                }
                for (const std::string& d : devs) {
                    if (d == "tap" && !tap_ok) {
                        doc["cases"].push_back({{"device", d},
                                                {"mode", m},
                                                {"size", s},
                                                {"error", "tap needs root and /dev/net/tun"}});
                        continue;
                    }
                    std::fprintf(stderr, "dpnb-bench-datapath: %s %s %u bytes...\n", d.c_str(),
                                 m.c_str(), s);
                    doc["cases"].push_back(run_case(opt, w, d, m, s));
                }
            }
    }
    std::error_code ec;
    std::filesystem::remove_all(sim_dir, ec);

    doc["testpmd"] = json::array();
    if (opt.testpmd && ::access(opt.testpmd_path.c_str(), X_OK) == 0) {
        std::vector<std::string> vdevs;
        for (const json& c : doc["cases"]) {
            const std::string v = c["device"] == "ring" ? "net_ring" : "net_tap";
            if (std::find(vdevs.begin(), vdevs.end(), v) == vdevs.end()) vdevs.push_back(v);
        }
        for (const std::string& v : vdevs)
            for (unsigned s : opt.sizes) {
                std::fprintf(stderr, "dpnb-bench-datapath: testpmd %s %u bytes...\n", v.c_str(), s);
                doc["testpmd"].push_back(run_testpmd(opt, v, s, std::max(opt.duration, 3.0) + 2.0));
            }
    }
    // Ceiling ratios: cycles per packet of a saturated forwarding core = TSC Hz / pps.
    std::uint64_t hz = 0;
    for (const json& c : doc["cases"])
        for (const char* dir : {"rx", "tx"})
            if (c.contains(dir) && c[dir].contains("tsc_hz"))
                hz = c[dir]["tsc_hz"].get<std::uint64_t>();
    // Saturated (net_ring: it loops back what it sends): TSC Hz / forwarded pps. Otherwise
    // (net_tap, bounded by the generator) testpmd's own busy cycles per packet.
    for (json& t : doc["testpmd"]) {
        const bool saturated = t["vdev"] != "net_tap";
        if (saturated && hz != 0 && t.contains("mpps") && t["mpps"].get<double>() > 0) {
            t["cycles_per_packet"] = static_cast<double>(hz) / (t["mpps"].get<double>() * 1e6);
            t["cycles_basis"] = "tsc_hz / rx_pps";
        } else if (t.contains("busy_cycles_per_packet")) {
            t["cycles_per_packet"] = t["busy_cycles_per_packet"];
            t["cycles_basis"] = "testpmd --record-core-cycles (busy cycles / packets)";
        }
    }
    for (json& c : doc["cases"])
        for (const char* dir : {"rx", "tx"}) {
            if (!c.contains(dir) || !c[dir].contains("cycles_per_packet")) continue;
            const std::string v = c["device"] == "ring" ? "net_ring" : "net_tap";
            for (const json& t : doc["testpmd"])
                if (t["vdev"] == v && t["size"] == c["size"] && t.contains("cycles_per_packet"))
                    c[dir]["x_testpmd"] = c[dir]["cycles_per_packet"].get<double>() /
                                          t["cycles_per_packet"].get<double>();
        }
    for (const json& c : doc["cases"]) {
        if (c.contains("error") || c.contains("leaks")) rc = 1;
        for (const char* dir : {"rx", "tx", "local", "stall"})
            if (c.contains(dir) && c[dir].contains("error")) rc = 1;
    }
    if (!opt.json_file.empty()) {
        std::ofstream f(opt.json_file);
        f << doc.dump(2) << "\n";
    }
    if (opt.json_out)
        std::printf("%s\n", doc.dump(2).c_str());
    else
        print_table(doc);
    std::fflush(stdout);
    return rc;
}

} // namespace
} // namespace dpnb::bench

int main(int argc, char** argv) {
    dpnb::bench::Options opt;
    CLI::App app{"dpnb-bench-datapath: the Engine with simulated guests and a virtual NIC"};
    app.add_option("--duration", opt.duration, "seconds measured per phase");
    app.add_option("--warmup", opt.warmup, "seconds of traffic before measuring");
    app.add_option("--modes", opt.modes, "RX modes: copy, map, reuse")->delimiter(',');
    app.add_option("--sizes", opt.sizes, "frame sizes in bytes")->delimiter(',');
    app.add_option("--devices", opt.devices,
                   "ring (net_ring: copy on a shared port, zero copy with a generator "
                   "filling posted buffers), tap (net_tap), auto")
        ->delimiter(',');
    app.add_option("--phases", opt.phases,
                   "rx, tx, local (guest to guest), idle, latency, stall (ring copy, alone)")
        ->delimiter(',');
    app.add_option("--guests", opt.guests, "simulated guests (processes)");
    app.add_option("--lcores", opt.lcores, "worker lcores (poll loops)");
    app.add_option("--rate", opt.rate, "RX generator rate in frames/s (0: as fast as it can)");
    app.add_option("--buffer", opt.buffer, "guest RX buffers: full or half pages");
    app.add_option("--hold", opt.hold, "frames the guests' simulated stacks hold");
    app.add_option("--pool-target", opt.pool_target, "guests' RX pool target in pages (0: auto)");
    app.add_option("--pool-shrink-every", opt.pool_shrink_every,
                   "seconds between the guests' pool shrinks to --pool-target (0: never)");
    app.add_option("--idle-seconds", opt.idle_seconds, "idle phase length");
    app.add_option("--latency-count", opt.latency_count, "latency probes");
    app.add_option("--latency-gap-us", opt.latency_gap_us, "microseconds between probes");
    app.add_flag("!--no-testpmd", opt.testpmd, "skip dpdk-testpmd");
    app.add_option("--testpmd", opt.testpmd_path, "dpdk-testpmd binary");
    app.add_option("--simhv", opt.simhv_path, "dpnb-simhv binary");
    app.add_option("--netfront", opt.netfront_path, "dpnb-netfront binary");
    app.add_option("--max-sleep-ms", opt.max_sleep_ms, "EngineOptions::max_sleep of the lcores");
    app.add_option("--rx-stall-timeout-ms", opt.rx_stall_timeout_ms,
                   "EngineOptions::rx_stall_timeout (engine.rx_stall_timeout_ms)");
    app.add_option("--stall-window", opt.stall_window,
                   "stall phase: seconds the guest stays stopped in each cycle");
    app.add_option("--stall-recover", opt.stall_recover,
                   "stall phase: seconds the guest receives again after each stop");
    app.add_option("--stall-cycles", opt.stall_cycles, "stall phase: stop/continue cycles");
    app.add_option("--stall-sample", opt.stall_sample, "stall phase: seconds between samples");
    app.add_flag("--json", opt.json_out, "print JSON instead of the table");
    app.add_option("--json-file", opt.json_file, "also write the JSON there");
    CLI11_PARSE(app, argc, argv);
    // Logs go to stderr: stdout carries the table or the JSON.
    spdlog::set_default_logger(spdlog::stderr_color_mt("bench"));
    if (std::find(opt.phases.begin(), opt.phases.end(), "stall") != opt.phases.end() &&
        (opt.phases.size() != 1 || opt.stall_sample <= 0 || opt.stall_cycles == 0)) {
        std::fprintf(stderr, "dpnb-bench-datapath: --phases stall runs alone, with "
                             "--stall-sample > 0 and --stall-cycles >= 1\n");
        return 2;
    }
    if (opt.guests == 0 || opt.lcores == 0 || opt.lcores > 8 || opt.duration <= 0) {
        std::fprintf(stderr, "dpnb-bench-datapath: --guests >= 1, --lcores 1..8, --duration > 0\n");
        return 2;
    }
    return dpnb::bench::run(opt);
}
