// Where the kernel runs the work the data path causes outside the daemon's own threads: the
// IRQs of the event channels an lcore binds (Linux spreads them over the CPUs, so a guest's
// notification wakes the sleeping lcore from another CPU, an IPI through the hypervisor on
// Xen) and vhost-net's worker threads of a virtio_user port (placed by the scheduler). The
// Engine puts both on the CPUs of the lcores they serve (docs/datapath.md, "Interrupts and
// vhost workers").
//
// CpuPlacement is the boundary: list IRQs by action name, read and set an IRQ's CPUs, list
// a process's vhost workers, read and set a thread's CPUs. SystemCpuPlacement reads and
// writes procfs under a root ("/", or a folder a test fills in) and calls
// sched_{get,set}affinity; SimCpuPlacement is the simulated twin, a kernel in memory whose
// IRQs and threads a test adds (and whose writes it can make fail).
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/util/result.hpp"

namespace dpnb::pmd {

// CPU numbers, ascending, each once.
using CpuSet = std::vector<unsigned>;

// "1", "0-3", "0,2-3" (the kernel's CPU list format, smp_affinity_list, Cpus_allowed_list).
std::string cpu_list_text(const CpuSet& cpus);
// The kernel's CPU list format back into a set; nullopt when malformed.
std::optional<CpuSet> parse_cpu_list(std::string_view text);
// Every CPU of any of `sets`.
CpuSet cpu_union(const std::vector<CpuSet>& sets);
// The CPUs of a cpu_set_t (sched_getaffinity's; DPDK's rte_cpuset_t on Linux).
CpuSet cpus_of(const cpu_set_t& set);
// A cpu_set_t of `cpus`, for sched_setaffinity; Errc::invalid_argument naming the CPU when
// one is beyond what a cpu_set_t holds (CPU_SETSIZE).
Result<cpu_set_t> to_cpu_set(const CpuSet& cpus);

class CpuPlacement {
public:
    virtual ~CpuPlacement() = default;
    // IRQs one of whose actions is named exactly `action` (as /proc/interrupts lists them),
    // ascending.
    virtual Result<std::vector<unsigned>> irqs_named(std::string_view action) const = 0;
    virtual Result<CpuSet> irq_cpus(unsigned irq) const = 0;
    // Linux moves the interrupt (for a Xen event channel: EVTCHNOP_bind_vcpu).
    virtual Status set_irq_cpus(unsigned irq, const CpuSet& cpus) = 0;
    // vhost-net's workers for devices `pid` opened: threads named "vhost-<pid>", kernel
    // threads before Linux 6.4, threads of `pid` itself since. Ascending.
    virtual Result<std::vector<pid_t>> vhost_workers(pid_t pid) const = 0;
    virtual Result<CpuSet> thread_cpus(pid_t tid) const = 0;
    virtual Status set_thread_cpus(pid_t tid, const CpuSet& cpus) = 0;
};

class SystemCpuPlacement final : public CpuPlacement {
public:
    explicit SystemCpuPlacement(std::filesystem::path root = "/") : root_(std::move(root)) {}
    Result<std::vector<unsigned>> irqs_named(std::string_view action) const override;
    Result<CpuSet> irq_cpus(unsigned irq) const override;
    Status set_irq_cpus(unsigned irq, const CpuSet& cpus) override;
    Result<std::vector<pid_t>> vhost_workers(pid_t pid) const override;
    // The system calls (the root does not apply).
    Result<CpuSet> thread_cpus(pid_t tid) const override;
    Status set_thread_cpus(pid_t tid, const CpuSet& cpus) override;

private:
    std::filesystem::path root_;
};

// The system's (procfs at /).
CpuPlacement& system_cpu_placement();

// A kernel in memory. Thread-safe: lcores call it while a test looks.
class SimCpuPlacement final : public CpuPlacement {
public:
    // A new IRQ with one action, on every CPU of `all_cpus`; its number.
    unsigned add_irq(std::string action);
    void remove_irq(unsigned irq);
    void add_thread(pid_t tid, std::string name, CpuSet cpus);
    // A thread that appears once the next vhost_workers() call has answered (as a vhost
    // device's worker appears when the port that opens it starts).
    void add_thread_after_next_list(pid_t tid, std::string name, CpuSet cpus);
    // Writes fail with EACCES (a read-only /proc/irq) or EPERM (sched_setaffinity).
    void fail_irq_writes(bool on);
    void fail_thread_writes(bool on);
    // Successful and failed writes so far.
    unsigned irq_writes() const;
    unsigned thread_writes() const;
    // vhost_workers() calls so far (each a scan of /proc on a real system).
    unsigned vhost_scans() const;

    Result<std::vector<unsigned>> irqs_named(std::string_view action) const override;
    Result<CpuSet> irq_cpus(unsigned irq) const override;
    Status set_irq_cpus(unsigned irq, const CpuSet& cpus) override;
    Result<std::vector<pid_t>> vhost_workers(pid_t pid) const override;
    Result<CpuSet> thread_cpus(pid_t tid) const override;
    Status set_thread_cpus(pid_t tid, const CpuSet& cpus) override;

    CpuSet all_cpus{0, 1};

private:
    struct Irq {
        std::string action;
        CpuSet cpus;
    };
    struct Thread {
        std::string name;
        CpuSet cpus;
    };
    mutable std::mutex mu_;
    std::map<unsigned, Irq> irqs_;
    mutable std::map<pid_t, Thread> threads_; // vhost_workers() lets appearing_ in
    mutable std::vector<std::pair<pid_t, Thread>> appearing_;
    unsigned next_irq_ = 100;
    bool fail_irq_ = false;
    bool fail_thread_ = false;
    unsigned irq_writes_ = 0;
    unsigned thread_writes_ = 0;
    mutable unsigned vhost_scans_ = 0;
};

// What placing the IRQ of one bound event channel came to.
enum class IrqPlacement : std::uint8_t {
    off,       // the option is off: the kernel's choice stands
    no_irq,    // no kernel IRQ behind the port (the simulated hypervisor)
    placed,    // the IRQ now runs on the lcore's CPUs
    not_found, // no new IRQ of the handle's name appeared with the bind
    ambiguous, // several did (another bind through a handle of the same name at once)
    failed,    // listing the IRQs or writing the IRQ's CPUs failed
};
const char* to_string(IrqPlacement p) noexcept;
bool placement_failed(IrqPlacement p) noexcept; // not_found, ambiguous, failed

struct IrqPlaced {
    IrqPlacement result = IrqPlacement::off;
    std::optional<unsigned> irq; // the IRQ found (also when writing its CPUs failed)
    std::string error;           // why, when failed
};
// After binding a port through a handle whose IRQs are named `action`: the one IRQ of that
// name not in `before` (the list taken just before the bind; nullopt when listing failed)
// goes to `cpus`. Exactly one new IRQ is expected; anything else places nothing.
IrqPlaced place_new_irq(CpuPlacement& p, std::string_view action,
                        const std::optional<std::vector<unsigned>>& before, const CpuSet& cpus);

// Pure parts of SystemCpuPlacement.
// Whether a /proc/interrupts line lists an action named exactly `action`, and its IRQ number
// ("  45:  12  0  xen-dyn  -edge  evtchn:dpnb0-lc0": actions are the line's last field(s),
// joined by ", "); nullopt when it does not (or is not an IRQ line: "NMI:", "ERR:").
std::optional<unsigned> interrupts_line_irq(std::string_view line, std::string_view action);

} // namespace dpnb::pmd
