// The capabilities dpnetbackd keeps after start-up, and the drop in every thread
// (privileges.hpp).
#include "dpnb/daemon/privileges.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <map>
#include <string_view>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

namespace dpnb::daemon {

namespace {

using namespace std::chrono_literals;

// PMDs that call on the kernel while serving. net_tap makes each rte_flow rule a TC filter
// on its tap interface, over netlink, so adding and removing one (as guests attach and
// detach, and at stop) takes CAP_NET_ADMIN; and its dev_start sets the tap's link up
// (SIOCSIFFLAGS, CAP_NET_ADMIN), which the engine calls again when a guest with a zero-copy
// RX queue detaches (the queue is re-created to take its buffers back: found in the Xen
// lab, where it failed with EPERM). Nothing else a port does after start-up needs a
// capability: tests/daemon/privileges_process_test.cpp serves and stops a net_tap port and
// a net_af_packet port on a veth with none. A PCI NIC's rules and restarts go to the device
// through its own driver.
struct KernelPort {
    std::string_view driver;
    std::string_view rules;   // completes "port NAME (DRIVER) "
    std::string_view restart; // likewise
};
constexpr KernelPort kKernelPorts[] = {
    {"net_tap",
     "adds and removes its MAC steering rules (TC filters over netlink) as guests attach and "
     "detach",
     "sets its tap's link up (SIOCSIFFLAGS) when it starts again to re-create a zero-copy RX "
     "queue as a guest detaches"},
};

constexpr std::uint64_t bit(int cap) {
    return std::uint64_t{1} << static_cast<unsigned>(cap);
}

void keep(std::vector<KeptCapability>& out, int cap, const std::string& why) {
    for (KeptCapability& k : out)
        if (k.cap == cap) {
            k.why += "; " + why;
            return;
        }
    out.push_back({cap, why});
}

// --- the drop, in each thread ---------------------------------------------------------------

// What a thread makes of its own sets. Read by the signal handler: set before the signals
// are sent, not changed while any can arrive.
struct ThreadPlan {
    std::uint64_t keep = 0; // permitted and effective
    std::uint64_t drop_from_bounding = 0;
};
ThreadPlan g_worker_plan;           // every thread but the control thread
std::atomic<int> g_worker_errno{0}; // the first failure of a handler
static_assert(std::atomic<int>::is_always_lock_free);

// System calls only: this runs in signal handlers too.
int apply_plan(const ThreadPlan& p) noexcept {
    for (unsigned c = 0; c < 64; ++c)
        if ((p.drop_from_bounding & (std::uint64_t{1} << c)) != 0 &&
            prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
            return errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return errno;
    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    data[0].effective = data[0].permitted = static_cast<std::uint32_t>(p.keep);
    data[1].effective = data[1].permitted = static_cast<std::uint32_t>(p.keep >> 32);
    if (syscall(SYS_capset, &header, data) != 0) return errno;
    return 0;
}

extern "C" void on_drop_signal(int) {
    const int saved = errno;
    if (const int err = apply_plan(g_worker_plan); err != 0) {
        int expected = 0;
        g_worker_errno.compare_exchange_strong(expected, err);
    }
    errno = saved;
}

std::optional<ThreadSets> read_thread(pid_t tid) {
    return read_thread_sets("/proc/self/task/" + std::to_string(tid) + "/status");
}

std::vector<pid_t> thread_ids() {
    std::vector<pid_t> tids;
    if (DIR* d = opendir("/proc/self/task")) {
        while (const dirent* e = readdir(d))
            if (e->d_name[0] != '.') tids.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
        closedir(d);
    }
    return tids;
}

// Empty when the thread's sets are what its plan says.
std::string mismatch(const ThreadSets& s, const ThreadPlan& p, bool check_bounding) {
    std::string m;
    const auto expect = [&](std::string_view what, std::uint64_t got, std::uint64_t want) {
        if (got != want)
            m += (m.empty() ? "" : ", ") + std::string(what) + " " + capability_names(got) +
                 " (expected " + capability_names(want) + ")";
    };
    expect("effective", s.eff, p.keep);
    expect("permitted", s.prm, p.keep);
    expect("inheritable", s.inh, 0);
    expect("ambient", s.amb, 0);
    if (check_bounding && (s.bnd & p.drop_from_bounding) != 0)
        m += (m.empty() ? "" : ", ") + std::string("bounding still has ") +
             capability_names(s.bnd & p.drop_from_bounding);
    if (!s.no_new_privs) m += (m.empty() ? "" : ", ") + std::string("no_new_privs unset");
    return m;
}

// A real-time signal nobody handles yet: its handler makes each thread drop.
int free_signal() {
    for (int sig = SIGRTMAX; sig >= SIGRTMIN; --sig) {
        struct sigaction old {};
        if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_DFL &&
            (old.sa_flags & SA_SIGINFO) == 0)
            return sig;
    }
    return -1;
}

Error drop_error(const std::string& what, int err = 0) {
    return make_error(Errc::io, "dropping capabilities: " + what, err);
}

} // namespace

std::optional<ThreadSets> read_thread_sets(const std::string& status_path) {
    std::ifstream status(status_path);
    if (!status) return std::nullopt;
    ThreadSets s;
    std::string line;
    const auto hex = [&](std::string_view key, std::uint64_t& v) {
        if (line.rfind(key, 0) == 0) v = std::stoull(line.substr(key.size()), nullptr, 16);
    };
    while (std::getline(status, line)) {
        if (line.rfind("Name:\t", 0) == 0) s.name = line.substr(6);
        hex("CapEff:\t", s.eff);
        hex("CapPrm:\t", s.prm);
        hex("CapInh:\t", s.inh);
        hex("CapAmb:\t", s.amb);
        hex("CapBnd:\t", s.bnd);
        if (line.rfind("NoNewPrivs:\t", 0) == 0) s.no_new_privs = line.substr(12) == "1";
    }
    return s;
}

std::vector<KeptCapability> capabilities_to_keep(const PrivilegeInputs& in) {
    std::vector<KeptCapability> out;
    for (const PrivilegeInputs::Port& p : in.ports)
        for (const KernelPort& k : kKernelPorts) {
            if (p.driver != k.driver) continue;
            if (p.flow_rules)
                keep(out, CAP_NET_ADMIN,
                     "port " + p.name + " (" + p.driver + ") " + std::string(k.rules));
            if (p.zero_copy_queues)
                keep(out, CAP_NET_ADMIN,
                     "port " + p.name + " (" + p.driver + ") " + std::string(k.restart));
        }
    if (in.iova_pa)
        keep(out, CAP_SYS_ADMIN,
             "DPDK hands devices physical addresses (IOVA as PA): memory it adds as guests "
             "attach needs them from /proc/self/pagemap");
    if (in.hugepages && !in.memlock_unlimited)
        keep(out, CAP_IPC_LOCK,
             "hugepages with a finite RLIMIT_MEMLOCK: VFIO's DMA maps of memory added as guests "
             "attach count against it");
    if (in.management_group)
        keep(out, CAP_CHOWN, "a reload may give the management socket another group");
    if (in.metrics_port && *in.metrics_port != 0 && *in.metrics_port < 1024)
        keep(out, CAP_NET_BIND_SERVICE,
             "a reload may bind the metrics endpoint's port " + std::to_string(*in.metrics_port) +
                 " again");
    return out;
}

std::string capability_name(int cap) {
    if (char* n = cap_to_name(static_cast<cap_value_t>(cap))) {
        std::string s(n);
        cap_free(n);
        return s;
    }
    return "cap_" + std::to_string(cap);
}

std::string capability_names(std::uint64_t mask) {
    if (const int n = __builtin_popcountll(mask); n > 6) {
        char hex[32];
        std::snprintf(hex, sizeof hex, "%#llx", static_cast<unsigned long long>(mask));
        return std::to_string(n) + " capabilities (" + hex + ")";
    }
    std::string s;
    for (int c = 0; c < 64; ++c)
        if ((mask & bit(c)) != 0) s += (s.empty() ? "" : ",") + capability_name(c);
    return s.empty() ? "none" : s;
}

Result<DropReport> drop_capabilities(std::span<const KeptCapability> keep_list,
                                     std::chrono::milliseconds answer_timeout) {
    DropReport report;
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    if (self != getpid())
        return make_error(Errc::internal, "dropping capabilities: not on the main thread");
    const auto mine = read_thread(self);
    if (!mine) return drop_error("cannot read /proc/self/task/" + std::to_string(self) + "/status");

    std::uint64_t wanted = 0;
    for (const KeptCapability& k : keep_list)
        wanted |= bit(k.cap);
    for (const KeptCapability& k : keep_list)
        if ((mine->prm & bit(k.cap)) != 0) report.kept.push_back(k);
    const std::uint64_t last =
        cap_max_bits() >= 64 ? ~std::uint64_t{0} : bit(static_cast<int>(cap_max_bits())) - 1;
    report.bounding_trimmed = (mine->eff & bit(CAP_SETPCAP)) != 0;
    ThreadPlan control;
    control.keep = mine->prm & wanted;
    control.drop_from_bounding = report.bounding_trimmed ? (mine->bnd & ~wanted & last) : 0;
    g_worker_plan.keep = 0;
    g_worker_plan.drop_from_bounding = control.drop_from_bounding;
    g_worker_errno.store(0);
    report.dropped = mine->prm & ~control.keep;

    const int sig = free_signal();
    if (sig < 0) return drop_error("no free real-time signal");
    struct sigaction action {};
    action.sa_handler = on_drop_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    struct sigaction old {};
    if (sigaction(sig, &action, &old) != 0) return drop_error("sigaction", errno);

    // Every other thread, until a pass finds none it has not asked: a thread may start one
    // of its own before it handles the signal.
    std::map<pid_t, std::string> asked; // tid -> what was wrong at the last look
    const auto deadline = std::chrono::steady_clock::now() + answer_timeout;
    Status result = ok();
    for (;;) {
        bool fresh = false;
        for (pid_t tid : thread_ids()) {
            if (tid == self || asked.count(tid)) continue;
            fresh = true;
            asked[tid] = "no answer";
            if (syscall(SYS_tgkill, getpid(), tid, sig) != 0 && errno != ESRCH) {
                result = drop_error("signalling thread " + std::to_string(tid), errno);
                break;
            }
        }
        if (!result) break;
        // Wait for every thread asked so far to show its new sets (a thread that has gone
        // counts as done).
        bool all = true;
        for (auto& [tid, wrong] : asked) {
            if (wrong.empty()) continue;
            const auto s = read_thread(tid);
            wrong = s ? mismatch(*s, g_worker_plan, true) : std::string();
            if (!wrong.empty()) all = false;
        }
        if (all && !fresh) break;
        if (std::chrono::steady_clock::now() > deadline) {
            std::string which;
            for (const auto& [tid, wrong] : asked)
                if (!wrong.empty()) {
                    const auto s = read_thread(tid);
                    which += (which.empty() ? "" : "; ") + std::string("thread ") +
                             std::to_string(tid) + " (" + (s ? s->name : "?") + "): " + wrong;
                }
            const int err = g_worker_errno.load();
            result = drop_error(
                which + (err != 0 ? std::string(" (") + std::strerror(err) + ")" : std::string()),
                err);
            break;
        }
        std::this_thread::sleep_for(2ms);
    }
    sigaction(sig, &old, nullptr);
    if (!result) return result.error();

    if (const int err = apply_plan(control); err != 0)
        return drop_error("in the control thread", err);
    const auto after = read_thread(self);
    if (!after) return drop_error("cannot read the control thread's status again");
    if (const std::string wrong = mismatch(*after, control, true); !wrong.empty())
        return drop_error("the control thread: " + wrong);
    report.threads = asked.size() + 1;
    return report;
}

} // namespace dpnb::daemon
