// dpnetbackd's capabilities once it is up (docs/operations.md, "Capabilities"): which ones
// it still needs, decided from its configuration and from what start-up opened, and the drop
// of every other one.
//
// Start-up needs more than serving does: creating a tap (CAP_NET_ADMIN), AF_PACKET and AF_XDP
// sockets (CAP_NET_RAW), opening no-IOMMU VFIO groups and I/O ports (CAP_SYS_RAWIO), physical
// addresses from pagemap (CAP_SYS_ADMIN), the management socket's group (CAP_CHOWN). Once the
// ports and devices are open, the control thread keeps only what later work still asks for
// (capabilities_to_keep) and every other thread keeps nothing. Capabilities, the bounding set
// and no_new_privs belong to each thread in Linux, and DPDK, the simulated hypervisor and the
// Xen libraries have started threads of their own by then, so drop_capabilities() has each
// thread change its own (a signal to each, its handler makes the system calls) and then reads
// every thread's sets back from /proc/self/task.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dpnb/util/result.hpp"

namespace dpnb::daemon {

// A capability the control thread keeps after start-up, and the reason.
struct KeptCapability {
    int cap = 0; // CAP_NET_ADMIN, ...
    std::string why;
};

// What the decision is made from, gathered once start-up is done.
struct PrivilegeInputs {
    struct Port {
        std::string name;
        std::string driver;      // the PMD: "net_tap", "net_ixgbe", ...
        bool flow_rules = false; // steers guests with rte_flow rules (made as guests attach)
        // Gives guests zero-copy RX queues, re-created (port stopped, started) at detach.
        bool zero_copy_queues = false;
    };
    std::vector<Port> ports;
    bool hugepages = false;         // eal.no_huge = false
    bool iova_pa = false;           // DPDK hands devices physical addresses
    bool memlock_unlimited = false; // RLIMIT_MEMLOCK is infinity (the unit's LimitMEMLOCK)
    bool management_group = false;  // management.group is set
    std::optional<std::uint16_t> metrics_port; // the endpoint's port, when enabled
};

// The capabilities later work needs, each once, with every reason that asks for it.
std::vector<KeptCapability> capabilities_to_keep(const PrivilegeInputs& in);

struct DropReport {
    std::vector<KeptCapability> kept; // the ones asked for that the process held
    std::uint64_t dropped = 0;        // capabilities the process held and gave up (bit mask)
    std::size_t threads = 0;          // threads changed, the control thread included
    bool bounding_trimmed = false;    // CAP_SETPCAP allowed trimming the bounding sets
};

// In every thread of the process: sets no_new_privs, trims the bounding set to `keep` when
// the thread holds CAP_SETPCAP, and leaves the permitted and effective sets at `keep` (of
// those, the ones the process holds) in the calling thread, which must be the control thread,
// and empty in every other one; clears the inheritable and ambient sets. Fails, naming the
// thread, when one did not answer within `answer_timeout` or still holds more than that.
Result<DropReport>
drop_capabilities(std::span<const KeptCapability> keep,
                  std::chrono::milliseconds answer_timeout = std::chrono::seconds(10));

// A thread's (or a process's main thread's) sets as /proc/.../status shows them.
struct ThreadSets {
    std::string name;
    std::uint64_t eff = 0, prm = 0, inh = 0, amb = 0, bnd = 0; // CapEff, CapPrm, ...
    bool no_new_privs = false;
};
// Reads /proc/PID/status or /proc/PID/task/TID/status; nullopt when it cannot be read.
std::optional<ThreadSets> read_thread_sets(const std::string& status_path);

// "cap_net_admin"; "cap_42" for one the C library has no name for.
std::string capability_name(int cap);
// "cap_chown,cap_net_admin" for a mask of capability bits; "none" for 0; past six of them
// the count and the mask ("39 capabilities (0x1fffeffefff)").
std::string capability_names(std::uint64_t mask);

} // namespace dpnb::daemon
