// The capabilities dpnetbackd keeps after start-up (capabilities_to_keep: one reason per
// need) and the drop in every thread (drop_capabilities), the latter in a child process so
// that the test process keeps its own: threads that sleep, spin or wait in the kernel all end
// with nothing, the calling thread with what it kept, and a thread that blocks the signal
// makes the drop fail with its name.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <poll.h>
#include <pthread.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "dpnb/daemon/privileges.hpp"

namespace dpnb::daemon {
namespace {

using namespace std::chrono_literals;

std::uint64_t bit(int cap) {
    return std::uint64_t{1} << cap;
}

std::uint64_t mask(const std::vector<KeptCapability>& caps) {
    std::uint64_t m = 0;
    for (const KeptCapability& k : caps)
        m |= bit(k.cap);
    return m;
}

const KeptCapability* find(const std::vector<KeptCapability>& caps, int cap) {
    for (const KeptCapability& k : caps)
        if (k.cap == cap) return &k;
    return nullptr;
}

TEST(Privileges, NothingForPortsWithoutKernelFlowRulesAndNoHugepages) {
    PrivilegeInputs in;
    in.ports = {{"uplink", "net_ixgbe", true},
                {"ring", "net_ring", false},
                {"tap", "net_tap", false},
                {"packet", "net_af_packet", false}};
    in.metrics_port = 9591;
    EXPECT_TRUE(capabilities_to_keep(in).empty());
}

// A zero-copy queue is re-created at detach: net_tap's dev_start sets the link up again.
TEST(Privileges, ATapWithZeroCopyQueuesKeepsNetAdminToStartAgain) {
    PrivilegeInputs in;
    in.ports = {{"uplink", "net_tap", false, true}, {"ring", "net_ring", false, true}};
    const auto keep = capabilities_to_keep(in);
    ASSERT_EQ(keep.size(), 1u);
    EXPECT_EQ(keep[0].cap, CAP_NET_ADMIN);
    EXPECT_NE(keep[0].why.find("port uplink (net_tap) sets its tap's link up"), std::string::npos)
        << keep[0].why;
}

TEST(Privileges, EachNeedHasItsCapabilityAndReason) {
    PrivilegeInputs in;
    in.ports = {{"uplink", "net_tap", true}, {"second", "net_tap", true}};
    in.hugepages = true;
    in.iova_pa = true;
    in.memlock_unlimited = false;
    in.management_group = true;
    in.metrics_port = 80;
    const auto keep = capabilities_to_keep(in);
    EXPECT_EQ(mask(keep), bit(CAP_NET_ADMIN) | bit(CAP_SYS_ADMIN) | bit(CAP_IPC_LOCK) |
                              bit(CAP_CHOWN) | bit(CAP_NET_BIND_SERVICE));
    EXPECT_EQ(keep.size(), 5u); // each capability once
    const KeptCapability* net = find(keep, CAP_NET_ADMIN);
    ASSERT_NE(net, nullptr);
    // Every port and need is named, so the log says why.
    EXPECT_NE(net->why.find("port uplink (net_tap) adds and removes its MAC steering rules"),
              std::string::npos)
        << net->why;
    EXPECT_NE(net->why.find("; port second (net_tap) adds"), std::string::npos) << net->why;
    EXPECT_NE(find(keep, CAP_SYS_ADMIN)->why.find("pagemap"), std::string::npos);
    EXPECT_NE(find(keep, CAP_NET_BIND_SERVICE)->why.find("port 80"), std::string::npos);
}

TEST(Privileges, UnlimitedMemlockNeedsNoIpcLockAndHighPortsNoBind) {
    PrivilegeInputs in;
    in.hugepages = true;
    in.memlock_unlimited = true;
    in.metrics_port = 9591;
    EXPECT_TRUE(capabilities_to_keep(in).empty());
    in.metrics_port = 0; // any free port: above 1023
    EXPECT_TRUE(capabilities_to_keep(in).empty());
}

TEST(Privileges, Names) {
    EXPECT_EQ(capability_name(CAP_NET_ADMIN), "cap_net_admin");
    EXPECT_EQ(capability_names(bit(CAP_CHOWN) | bit(CAP_NET_ADMIN)), "cap_chown,cap_net_admin");
    EXPECT_EQ(capability_names(0), "none");
}

// --- the drop, in a child process -------------------------------------------------------

using Sets = ThreadSets;

Sets read_sets(const std::string& status_path) {
    return read_thread_sets(status_path).value_or(Sets{});
}

bool root_with(int cap) {
    return (read_sets("/proc/self/status").eff & bit(cap)) != 0;
}

// Runs `body` in a child; its return value (0 = pass) and what it wrote to `out` come back.
std::pair<int, std::string> in_child(const std::function<int(FILE* out)>& body) {
    int p[2];
    if (pipe(p) != 0) return {-1, "pipe"};
    const pid_t pid = fork();
    if (pid == 0) {
        ::close(p[0]);
        FILE* out = fdopen(p[1], "w");
        const int rc = body(out);
        std::fflush(out);
        std::_Exit(rc);
    }
    ::close(p[1]);
    std::string text;
    char buf[512];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0)
        text.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), text};
}

TEST(Privileges, DropReachesEveryThread) {
    if (!root_with(CAP_NET_ADMIN) || !root_with(CAP_SETPCAP))
        GTEST_SKIP() << "needs CAP_NET_ADMIN and CAP_SETPCAP (root)";
    const auto [rc, text] = in_child([](FILE* out) {
        std::atomic<bool> stop{false};
        int pipefd[2];
        if (pipe(pipefd) != 0) return 2;
        // One thread sleeps in poll(), one spins, one waits for the others to finish.
        std::thread sleeper([&] {
            pthread_setname_np(pthread_self(), "sleeper");
            pollfd pfd{pipefd[0], POLLIN, 0};
            while (!stop.load())
                (void)::poll(&pfd, 1, -1); // EINTR: the signal; then sleep again
        });
        // The spinner also starts a thread once the drop is done.
        std::atomic<bool> dropped{false}, child_done{false};
        Sets child_of_worker;
        std::thread spinner([&] {
            pthread_setname_np(pthread_self(), "spinner");
            while (!dropped.load()) {
            }
            std::thread inner([&] { child_of_worker = read_sets("/proc/thread-self/status"); });
            inner.join();
            child_done.store(true);
            while (!stop.load()) {
            }
        });
        std::this_thread::sleep_for(50ms);
        const std::vector<KeptCapability> keep = {{CAP_NET_ADMIN, "test"}};
        auto report = drop_capabilities(keep);
        if (!report) {
            std::fprintf(out, "drop failed: %s\n", report.error().describe().c_str());
            return 1;
        }
        std::fprintf(out, "threads %zu kept %zu trimmed %d\n", report->threads, report->kept.size(),
                     report->bounding_trimmed ? 1 : 0);
        dropped.store(true);
        // Threads started after the drop inherit their creator's sets.
        Sets child_of_control;
        std::thread late([&] { child_of_control = read_sets("/proc/thread-self/status"); });
        late.join();
        int bad = 0;
        const auto check = [&](const Sets& s, std::uint64_t want, const std::string& who) {
            if (s.eff != want || s.prm != want || s.inh != 0 || s.amb != 0 ||
                s.bnd != bit(CAP_NET_ADMIN) || !s.no_new_privs) {
                std::fprintf(
                    out, "%s: eff %llx prm %llx inh %llx amb %llx bnd %llx nnp %d\n", who.c_str(),
                    static_cast<unsigned long long>(s.eff), static_cast<unsigned long long>(s.prm),
                    static_cast<unsigned long long>(s.inh), static_cast<unsigned long long>(s.amb),
                    static_cast<unsigned long long>(s.bnd), s.no_new_privs ? 1 : 0);
                ++bad;
            }
        };
        check(read_sets("/proc/self/task/" + std::to_string(getpid()) + "/status"),
              bit(CAP_NET_ADMIN), "control thread");
        while (!child_done.load())
            std::this_thread::sleep_for(1ms);
        check(child_of_worker, 0, "thread started by a worker after the drop");
        check(child_of_control, bit(CAP_NET_ADMIN), "thread started by the control thread");
        // The two workers, found by name.
        int workers = 0;
        for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
            const Sets s = read_sets(e.path().string() + "/status");
            if (s.name == "sleeper" || s.name == "spinner") {
                ++workers;
                check(s, 0, s.name);
            }
        }
        if (workers != 2) {
            std::fprintf(out, "found %d workers\n", workers);
            ++bad;
        }
        stop.store(true);
        (void)!::write(pipefd[1], "x", 1);
        sleeper.join();
        spinner.join();
        return bad == 0 ? 0 : 1;
    });
    EXPECT_EQ(rc, 0) << text;
    EXPECT_NE(text.find("threads 3 kept 1 trimmed 1"), std::string::npos) << text;
}

TEST(Privileges, AThreadThatBlocksTheSignalFailsTheDropByName) {
    if (!root_with(CAP_NET_ADMIN)) GTEST_SKIP() << "needs CAP_NET_ADMIN (root)";
    const auto [rc, text] = in_child([](FILE* out) {
        std::atomic<bool> stop{false};
        std::thread deaf([&] {
            sigset_t all;
            sigfillset(&all);
            pthread_sigmask(SIG_BLOCK, &all, nullptr);
            pthread_setname_np(pthread_self(), "deaf");
            while (!stop.load())
                std::this_thread::sleep_for(10ms);
        });
        std::this_thread::sleep_for(50ms);
        const std::vector<KeptCapability> keep;
        auto report = drop_capabilities(keep, 500ms);
        stop.store(true);
        deaf.join();
        if (report) {
            std::fprintf(out, "the drop succeeded\n");
            return 1;
        }
        std::fprintf(out, "%s\n", report.error().message.c_str());
        return 0;
    });
    EXPECT_EQ(rc, 0) << text;
    EXPECT_NE(text.find("(deaf): effective "), std::string::npos) << text;
}

} // namespace
} // namespace dpnb::daemon
