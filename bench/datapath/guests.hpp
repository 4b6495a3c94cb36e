// The benchmark's world outside the Engine: the simulated hypervisor (dpnb-simhv) and the
// guests (dpnb-netfront), each a separate process started with posix_spawn (the benchmark
// process has DPDK threads, so no bare fork), and the backend's half of the xenbus
// handshake for each vif the guests plug, as the daemon's control plane would do it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dpnb/engine/data_plane.hpp"
#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/hv/xenstore.hpp"

namespace dpnb::bench {

// A child process; stdout captured when asked.
class Process {
public:
    Process() = default;
    Process(const std::vector<std::string>& argv, bool capture_stdout);
    Process(Process&& o) noexcept;
    Process& operator=(Process&& o) noexcept;
    ~Process();
    bool started() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }
    void signal(int sig) const;
    // Waits for the exit (SIGKILL after `timeout`), returns the wait status (-1 if none) and
    // whatever it printed.
    int wait(std::chrono::milliseconds timeout, std::string* out = nullptr);

private:
    void drain(bool block);
    pid_t pid_ = -1;
    int out_fd_ = -1;
    std::string out_;
    int status_ = -1;
};

// dpnb-simhv serving a private folder.
class SimHv {
public:
    SimHv(const std::string& simhv_path, const std::string& dir);
    ~SimHv();
    bool ready() const { return ready_; }
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
    pid_t pid_ = -1;
    bool ready_ = false;
};

struct GuestConfig {
    std::string netfront_path;
    std::string sim_dir;
    std::string rx_mode = "copy"; // netfront: copy (grant per buffer) or reuse (registered pool)
    std::string buffer = "full";
    unsigned hold = 0;
    unsigned pool_target = 0;     // pages; 0: the netfront's default
    double pool_shrink_every = 0; // seconds; 0: never (dpnb-netfront --pool-shrink-every)
    std::uint64_t send = 0;       // frames to send (TX phase)
    std::uint32_t size = 64;
    std::string dst_mac;
    // Guests of one port send to each other (the local phase): guest i gets MAC pair_mac(i)
    // and sends to guest (i + 1) % count instead of dst_mac.
    bool pairs = false;
    bool echo = false;
};

// The MAC of guest `i` of a GuestSet with GuestConfig::pairs (locally administered).
std::string pair_mac(unsigned i);

// One dpnb-netfront and its vif.
struct Guest {
    Process process;
    hv::DomId dom = 0;
    netif::MacAddress mac;
    // Its first queue's RX ring and the bytes one RX buffer takes (the frontend's keys), for
    // a generator that sends only what the guest has posted buffers for.
    hv::GrantRef rx_ring_ref = 0;
    std::uint32_t rx_buffer_bytes = 0;
    bool attached = false;
    std::string summary_json; // what it printed at exit
};

// Starts guests one by one and attaches each vif to `port_of(i)` with `mode` once its
// frontend is Connected; detaches them when they close.
class GuestSet {
public:
    GuestSet(hv::Xenstore& xs, engine::DataPlane& dp) : xs_(xs), dp_(dp) {}
    ~GuestSet();
    Status start(const GuestConfig& config, unsigned count, const std::vector<std::string>& ports,
                 engine::RxMode mode);
    std::vector<Guest>& guests() { return guests_; }
    // SIGTERM to every guest, backend side of the close, collect their summaries.
    void stop();

private:
    Status connect(Guest& g, const std::string& port, engine::RxMode mode);
    hv::Xenstore& xs_;
    engine::DataPlane& dp_;
    std::vector<Guest> guests_;
};

// Resident set size of this process in bytes (/proc/self/status VmRSS), and its peak (VmHWM).
std::uint64_t resident_bytes();
std::uint64_t resident_peak_bytes();
// CPU seconds (user + system) this process used so far.
double cpu_seconds();

} // namespace dpnb::bench
