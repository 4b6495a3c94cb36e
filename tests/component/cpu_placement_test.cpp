// CPU placement (dpnb/pmd/cpu_placement.hpp) without EAL: the CPU list format, CPU sets to
// and from cpu_set_t (CPU_SETSIZE the bound), the /proc/interrupts parser, SystemCpuPlacement
// over a fake procfs tree (IRQs listed by action name and moved, vhost-net workers found as
// kernel threads and as threads of the process), the calling thread's own affinity, and
// place_new_irq over the simulated twin: the one new IRQ placed, none or several placing
// nothing, a refused write, an lcore of several CPUs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "dpnb/pmd/cpu_placement.hpp"

namespace dpnb::pmd {
namespace {

namespace fs = std::filesystem;

TEST(CpuList, TextAndParseRoundTrip) {
    EXPECT_EQ(cpu_list_text({}), "");
    EXPECT_EQ(cpu_list_text({1}), "1");
    EXPECT_EQ(cpu_list_text({0, 1, 2, 3}), "0-3");
    EXPECT_EQ(cpu_list_text({0, 2, 3, 5, 7, 8, 9}), "0,2-3,5,7-9");
    EXPECT_EQ(parse_cpu_list("0,2-3,5,7-9\n"), (CpuSet{0, 2, 3, 5, 7, 8, 9}));
    EXPECT_EQ(parse_cpu_list("3,1,1-2"), (CpuSet{1, 2, 3}));
    for (const char* bad : {"", "\n", "a", "1-", "-1", "3-1", "1,,2", "1 2", "99999"})
        EXPECT_FALSE(parse_cpu_list(bad)) << '"' << bad << '"';
    EXPECT_EQ(cpu_union({{1}, {0, 1}, {3}}), (CpuSet{0, 1, 3}));
}

TEST(CpuSetT, EmptySetsBothWays) {
    cpu_set_t none;
    CPU_ZERO(&none);
    EXPECT_TRUE(cpus_of(none).empty());
    auto set = to_cpu_set({});
    ASSERT_TRUE(set);
    EXPECT_EQ(CPU_COUNT(&*set), 0);
}

TEST(CpuSetT, RoundTripIsSortedAndOnceEach) {
    const CpuSet cpus{0, 3, 64, 1000, CPU_SETSIZE - 1};
    auto set = to_cpu_set(cpus);
    ASSERT_TRUE(set) << set.error().message;
    EXPECT_EQ(CPU_COUNT(&*set), 5);
    EXPECT_TRUE(CPU_ISSET(64, &*set));
    EXPECT_FALSE(CPU_ISSET(65, &*set));
    EXPECT_EQ(cpus_of(*set), cpus);
    // Any order and repeats in, ascending and once each out.
    auto messy = to_cpu_set({5, 1, 5, 2});
    ASSERT_TRUE(messy);
    EXPECT_EQ(cpus_of(*messy), (CpuSet{1, 2, 5}));
}

TEST(CpuSetT, ACpuBeyondCpuSetSizeIsRefusedByNumber) {
    auto set = to_cpu_set({1, CPU_SETSIZE});
    ASSERT_FALSE(set);
    EXPECT_EQ(set.error().code, Errc::invalid_argument);
    const std::string& m = set.error().message;
    EXPECT_NE(m.find("CPU " + std::to_string(CPU_SETSIZE) + " "), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(CPU_SETSIZE) + " CPUs"), std::string::npos) << m;
    // The system placement refuses it before any system call.
    SystemCpuPlacement p;
    Status st = p.set_thread_cpus(::gettid(), {CPU_SETSIZE + 7});
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, Errc::invalid_argument);
    EXPECT_NE(st.error().message.find(std::to_string(CPU_SETSIZE + 7)), std::string::npos);
}

TEST(CpuPlacementParse, InterruptsLines) {
    // Linux 6.1 in a PV dom0: xen-dyn IRQs print no hwirq.
    const std::string dyn = " 45:        120          7  xen-dyn    -edge      evtchn:dpnb0-lc0\n";
    EXPECT_EQ(interrupts_line_irq(dyn, "evtchn:dpnb0-lc0"), 45u);
    EXPECT_FALSE(interrupts_line_irq(dyn, "evtchn:dpnb0-lc"));
    EXPECT_FALSE(interrupts_line_irq(dyn, "dpnb0-lc0")) << "the whole name, not a suffix";
    const std::string ten = "120:  0  0  xen-dyn  -edge  evtchn:dpnb0-lc10";
    EXPECT_FALSE(interrupts_line_irq(ten, "evtchn:dpnb0-lc1"));
    // A shared IRQ lists its actions joined by ", ".
    const std::string shared = "  9:  3  0  IO-APIC   9-fasteoi   acpi, evtchn:x, other";
    EXPECT_EQ(interrupts_line_irq(shared, "acpi"), 9u);
    EXPECT_EQ(interrupts_line_irq(shared, "evtchn:x"), 9u);
    EXPECT_EQ(interrupts_line_irq(shared, "other"), 9u);
    EXPECT_FALSE(interrupts_line_irq("NMI:  0  0   Non-maskable interrupts", "interrupts"));
    EXPECT_FALSE(interrupts_line_irq("           CPU0       CPU1", "CPU1"));
    EXPECT_FALSE(interrupts_line_irq(dyn, ""));
}

class FakeProc : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/dpnb-proc.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        fs::create_directories(root_ / "proc");
        write("proc/interrupts",
              "           CPU0       CPU1\n"
              "  1:          9          0  xen-pirq    -ioapic-edge  i8042\n"
              " 40:         50         12  xen-dyn    -edge      evtchn:dpnb0-lc0\n"
              " 41:          3          0  xen-dyn    -edge      evtchn:dpnetbackd\n"
              " 47:          0          4  xen-dyn    -edge      evtchn:dpnb0-lc0\n"
              "NMI:          0          0   Non-maskable interrupts\n");
        for (const char* irq : {"40", "41", "47"})
            write(std::string("proc/irq/") + irq + "/smp_affinity_list", "0-1\n");
        // vhost workers of process 300: a kernel thread (Linux 6.1) and a thread of the
        // process (6.4 on); another process's worker; unrelated tasks.
        write("proc/300/comm", "dpnetbackd\n");
        write("proc/300/task/300/comm", "dpnetbackd\n");
        write("proc/300/task/305/comm", "vhost-300\n");
        write("proc/301/comm", "vhost-300\n");
        write("proc/302/comm", "vhost-3000\n");
        write("proc/303/comm", "kworker/0:1\n");
        write("proc/self/comm", "vhost-300\n"); // not a number: not a task
    }
    void TearDown() override { fs::remove_all(root_); }
    void write(const std::string& rel, const std::string& text) {
        fs::create_directories((root_ / rel).parent_path());
        std::ofstream(root_ / rel) << text;
    }
    std::string read(const std::string& rel) {
        std::ifstream in(root_ / rel);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    fs::path root_;
};

TEST_F(FakeProc, IrqsAreListedByActionAndMoved) {
    SystemCpuPlacement p(root_);
    auto irqs = p.irqs_named("evtchn:dpnb0-lc0");
    ASSERT_TRUE(irqs) << irqs.error().message;
    EXPECT_EQ(*irqs, (std::vector<unsigned>{40, 47}));
    EXPECT_TRUE(p.irqs_named("evtchn:nobody")->empty());
    ASSERT_TRUE(p.set_irq_cpus(47, {1}));
    EXPECT_EQ(read("proc/irq/47/smp_affinity_list"), "1\n");
    EXPECT_EQ(*p.irq_cpus(47), (CpuSet{1}));
    EXPECT_EQ(*p.irq_cpus(40), (CpuSet{0, 1}));
    auto missing = p.set_irq_cpus(99, {1});
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Errc::not_found);
    EXPECT_FALSE(p.irq_cpus(99));
    EXPECT_FALSE(SystemCpuPlacement(root_ / "nothing").irqs_named("x"));
}

TEST_F(FakeProc, VhostWorkersAreKernelThreadsAndThreadsOfTheProcess) {
    SystemCpuPlacement p(root_);
    auto w = p.vhost_workers(300);
    ASSERT_TRUE(w) << w.error().message;
    EXPECT_EQ(*w, (std::vector<pid_t>{301, 305}));
    EXPECT_TRUE(p.vhost_workers(303)->empty());
}

TEST_F(FakeProc, PlaceNewIrqOverProcfs) {
    SystemCpuPlacement p(root_);
    auto before = p.irqs_named("evtchn:dpnb0-lc0");
    ASSERT_TRUE(before);
    // The bind: Linux adds IRQ 52 for the new port, on the next CPU in turn.
    write("proc/interrupts", read("proc/interrupts") +
                                 " 52:          0          0  xen-dyn    -edge      "
                                 "evtchn:dpnb0-lc0\n");
    write("proc/irq/52/smp_affinity_list", "0\n");
    const IrqPlaced r = place_new_irq(p, "evtchn:dpnb0-lc0", *before, {1});
    EXPECT_EQ(r.result, IrqPlacement::placed) << r.error;
    EXPECT_EQ(r.irq, 52u);
    EXPECT_EQ(read("proc/irq/52/smp_affinity_list"), "1\n");
    EXPECT_EQ(read("proc/irq/47/smp_affinity_list"), "0-1\n") << "older IRQs untouched";
}

TEST(SystemThreads, OwnAffinityReadsAndWrites) {
    SystemCpuPlacement p;
    auto mine = p.thread_cpus(::gettid());
    ASSERT_TRUE(mine) << mine.error().message;
    ASSERT_FALSE(mine->empty());
    EXPECT_TRUE(p.set_thread_cpus(::gettid(), *mine));
    EXPECT_EQ(*p.thread_cpus(::gettid()), *mine);
    EXPECT_FALSE(p.set_thread_cpus(::gettid(), {}));
}

TEST(PlaceNewIrq, TheOneNewIrqGoesToTheLcoresCpus) {
    SimCpuPlacement sim;
    sim.all_cpus = {0, 1, 2, 3};
    (void)sim.add_irq("evtchn:lc0");
    (void)sim.add_irq("evtchn:other");
    auto before = sim.irqs_named("evtchn:lc0");
    const unsigned mine = sim.add_irq("evtchn:lc0");
    (void)sim.add_irq("evtchn:other"); // other handles' binds do not matter
    const IrqPlaced r = place_new_irq(sim, "evtchn:lc0", *before, {2, 3});
    EXPECT_EQ(r.result, IrqPlacement::placed);
    EXPECT_EQ(r.irq, mine);
    EXPECT_EQ(*sim.irq_cpus(mine), (CpuSet{2, 3})) << "an lcore of several CPUs: all of them";
    EXPECT_EQ(sim.irq_writes(), 1u);
    EXPECT_FALSE(placement_failed(r.result));
}

TEST(PlaceNewIrq, NoneOrSeveralNewIrqsPlaceNothing) {
    SimCpuPlacement sim;
    auto before = sim.irqs_named("evtchn:lc0");
    IrqPlaced r = place_new_irq(sim, "evtchn:lc0", *before, {1});
    EXPECT_EQ(r.result, IrqPlacement::not_found);
    EXPECT_FALSE(r.irq);
    EXPECT_TRUE(placement_failed(r.result));
    const unsigned a = sim.add_irq("evtchn:lc0");
    const unsigned b = sim.add_irq("evtchn:lc0");
    r = place_new_irq(sim, "evtchn:lc0", *before, {1});
    EXPECT_EQ(r.result, IrqPlacement::ambiguous);
    EXPECT_FALSE(r.irq);
    EXPECT_EQ(sim.irq_writes(), 0u);
    EXPECT_EQ(*sim.irq_cpus(a), (CpuSet{0, 1}));
    EXPECT_EQ(*sim.irq_cpus(b), (CpuSet{0, 1}));
    r = place_new_irq(sim, "evtchn:lc0", std::nullopt, {1});
    EXPECT_EQ(r.result, IrqPlacement::failed) << "no list from before the bind: no guess";
    EXPECT_EQ(sim.irq_writes(), 0u);
}

TEST(PlaceNewIrq, ARefusedWriteIsAFailureThatNamesTheIrq) {
    SimCpuPlacement sim;
    auto before = sim.irqs_named("evtchn:lc0");
    const unsigned irq = sim.add_irq("evtchn:lc0");
    sim.fail_irq_writes(true);
    const IrqPlaced r = place_new_irq(sim, "evtchn:lc0", *before, {1});
    EXPECT_EQ(r.result, IrqPlacement::failed);
    EXPECT_EQ(r.irq, irq);
    EXPECT_NE(r.error.find("read-only"), std::string::npos) << r.error;
    EXPECT_EQ(*sim.irq_cpus(irq), (CpuSet{0, 1}));
}

TEST(SimThreads, WorkersAppearAfterTheNextListAndMove) {
    SimCpuPlacement sim;
    sim.add_thread(10, "vhost-7", {0, 1});
    sim.add_thread_after_next_list(11, "vhost-7", {0, 1});
    EXPECT_EQ(*sim.vhost_workers(7), (std::vector<pid_t>{10}));
    EXPECT_EQ(*sim.vhost_workers(7), (std::vector<pid_t>{10, 11}));
    ASSERT_TRUE(sim.set_thread_cpus(11, {1}));
    EXPECT_EQ(*sim.thread_cpus(11), (CpuSet{1}));
    sim.fail_thread_writes(true);
    EXPECT_FALSE(sim.set_thread_cpus(10, {1}));
    EXPECT_EQ(sim.thread_writes(), 2u);
    EXPECT_EQ(to_string(IrqPlacement::ambiguous), std::string("ambiguous"));
}

} // namespace
} // namespace dpnb::pmd
