// dpnb-netfront as scripts and benchmarks run it: its own domain, its own vif, a workload
// against the reflector backend (another process), a JSON summary and an exit status that
// says whether every frame verified.
#include <spawn.h>

#include <string>
#include <vector>

#include "harness.hpp"

extern char** environ;

namespace dpnb::netfront::test {
namespace {

struct ToolRun {
    int status = -1;
    std::string out;
};

ToolRun run_tool(const std::vector<std::string>& args) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return {};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 1);
    std::vector<char*> argv;
    std::vector<std::string> storage{DPNB_NETFRONT_PATH};
    storage.insert(storage.end(), args.begin(), args.end());
    for (std::string& s : storage)
        argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    std::fflush(nullptr);
    const int rc = posix_spawn(&pid, DPNB_NETFRONT_PATH, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(pipe_fds[1]);
    ToolRun r;
    if (rc != 0) {
        ::close(pipe_fds[0]);
        return r;
    }
    char buf[4096];
    for (;;) {
        pollfd p{pipe_fds[0], POLLIN, 0};
        if (::poll(&p, 1, kTimeoutMs) <= 0) {
            ::kill(pid, SIGKILL);
            break;
        }
        const ssize_t n = ::read(pipe_fds[0], buf, sizeof(buf));
        if (n <= 0) break;
        r.out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    ::waitpid(pid, &r.status, 0);
    return r;
}

int exit_code(const ToolRun& r) {
    return r.status != -1 && WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1;
}

class Cli : public NetfrontFixture {};

TEST_F(Cli, SendAndVerifyEchoesWithJsonSummary) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    const ToolRun r = run_tool({"--sim-dir", dir(), "--name", "cli-reuse", "--send", "300",
                                "--size", "1500", "--receive", "300", "--rx-mode", "reuse",
                                "--buffer", "half", "--hold", "16", "--queues", "2", "--json"});
    EXPECT_EQ(exit_code(r), 0) << r.out;
    EXPECT_NE(r.out.find("\"result\":\"ok\""), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"rx_verified\":300"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"buffer_size\":2048"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"tx_frames_ok\":300"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("\"reuse_rate\":0.000000"), std::string::npos) << r.out;
    auto s = backend.stats();
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->frames, 300U);
    EXPECT_GT(s->zero_copy, 0U);
    // The tool unplugged its vif and its domain went with it.
    auto doms = toolstack_->list_domains();
    NF_ASSERT_OK(doms);
    for (const auto& d : *doms)
        EXPECT_TRUE(d.name != "cli-reuse" || d.dying) << "domain " << d.dom << " still runs";
    EXPECT_TRUE(backend.quit());
}

TEST_F(Cli, SummaryLineAndFailureWhenFramesDoNotArrive) {
    ReflectorProcess backend(dir(), ReflectorOptions{});
    ASSERT_TRUE(backend.ready());
    const ToolRun ok_run = run_tool({"--sim-dir", dir(), "--name", "cli-copy", "--send", "50",
                                     "--size", "9000", "--receive", "50"});
    EXPECT_EQ(exit_code(ok_run), 0) << ok_run.out;
    EXPECT_NE(ok_run.out.find("rx_verified=50"), std::string::npos) << ok_run.out;
    EXPECT_NE(ok_run.out.find("result=ok"), std::string::npos) << ok_run.out;
    // Nothing is sent, so nothing can be received: the workload does not complete.
    const ToolRun fail_run =
        run_tool({"--sim-dir", dir(), "--name", "cli-idle", "--receive", "5", "--duration", "1"});
    EXPECT_EQ(exit_code(fail_run), 1) << fail_run.out;
    EXPECT_NE(fail_run.out.find("result=failed"), std::string::npos) << fail_run.out;
    // Bad arguments are a set-up failure.
    const ToolRun bad = run_tool({"--sim-dir", dir(), "--size", "10"});
    EXPECT_EQ(exit_code(bad), 2);
    EXPECT_TRUE(backend.quit());
}

} // namespace
} // namespace dpnb::netfront::test
