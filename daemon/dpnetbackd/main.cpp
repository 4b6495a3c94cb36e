// dpnetbackd's command line: options (CLI11) that become configuration overrides, the
// configuration check, daemonising (unless --foreground), logging set-up, then the Daemon.
//
//   dpnetbackd [--config FILE] [--hypervisor xen|sim] [--sim-dir DIR] [--log-level LEVEL]
//              [--foreground] [--check-config] [section.key=value ...]
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dpnb/daemon/config.hpp"
#include "dpnb/daemon/daemon.hpp"
#include "dpnb/daemon/logging.hpp"

namespace {

using namespace dpnb::daemon;

// Forks; the parent waits for the child's "READY=1" (or its error line) on a pipe and exits
// with 0 or 1, so that `dpnetbackd && next-step` works as with any classic daemon. Returns the
// write end of the pipe in the child.
int daemonise() {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        std::perror("dpnetbackd: pipe");
        std::exit(kExitFailure);
    }
    const pid_t pid = fork();
    if (pid < 0) {
        std::perror("dpnetbackd: fork");
        std::exit(kExitFailure);
    }
    if (pid > 0) {
        ::close(p[1]);
        std::string msg;
        char buf[512];
        ssize_t n;
        while ((n = ::read(p[0], buf, sizeof buf)) > 0)
            msg.append(buf, static_cast<size_t>(n));
        if (msg.rfind("READY=1", 0) == 0) std::_Exit(kExitOk);
        if (msg.empty()) msg = "dpnetbackd: the daemon exited during start-up (see the journal)\n";
        std::fputs(msg.c_str(), stderr);
        int status = 0;
        waitpid(pid, &status, WNOHANG);
        std::_Exit(kExitFailure);
    }
    ::close(p[0]);
    setsid();
    if (chdir("/") != 0) { /* "/" always exists */
    }
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) ::close(null);
    }
    return p[1];
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"dpnetbackd: userspace DPDK-based Xen network backend"};
    std::string config_path;
    std::string hypervisor;
    std::string sim_dir;
    std::string log_level;
    bool foreground = false;
    bool check_config = false;
    std::vector<std::string> overrides;
    app.add_option("-c,--config", config_path,
                   "Configuration file (default " + std::string(kDefaultConfigPath) +
                       "; a missing default file means built-in defaults)");
    app.add_option("--hypervisor", hypervisor, "Hypervisor backend (hypervisor.kind)")
        ->check(CLI::IsMember({"xen", "sim"}));
    app.add_option("--sim-dir", sim_dir, "Simulated hypervisor folder (hypervisor.sim.dir)");
    app.add_option("--log-level", log_level, "Log level of every component (log.level)")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
    app.add_flag("-f,--foreground", foreground,
                 "Stay in the foreground (systemd, containers, tests); otherwise daemonise");
    app.add_flag("--check-config", check_config, "Validate the configuration and exit");
    app.add_option("overrides", overrides,
                   "Configuration overrides, section.key=value (e.g. metrics.port=9600)");
    app.set_version_flag("-V,--version", std::string("dpnetbackd ") + version());
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        std::cerr << "dpnetbackd: " << e.what() << "\nRun with --help for more information.\n";
        return kExitUsage;
    }

    const bool optional_file = config_path.empty();
    if (config_path.empty()) config_path = std::string(kDefaultConfigPath);
    if (!hypervisor.empty()) overrides.push_back("hypervisor.kind=" + hypervisor);
    if (!sim_dir.empty()) overrides.push_back("hypervisor.sim.dir=\"" + sim_dir + "\"");
    if (!log_level.empty()) overrides.push_back("log.level=" + log_level);

    auto config = load_config(config_path, overrides, optional_file);
    if (!config) {
        std::cerr << config.error().message << "\n";
        return kExitConfig;
    }
    if (check_config) {
        std::cout << "configuration OK: "
                  << (config->path.empty()
                          ? std::string("built-in defaults (no ") + config_path + ")"
                          : config->path)
                  << "\n";
        return kExitOk;
    }

    int ready_fd = -1;
    if (!foreground) ready_fd = daemonise();
    const LogSink sink = choose_sink(config->log.target, !foreground);
    setup_logging(config->log, sink);
    // Before any thread exists, so that every thread inherits the mask.
    block_signals();

    DaemonOptions options;
    options.config_path = config_path;
    options.config_optional = optional_file;
    options.overrides = overrides;
    options.ready_fd = ready_fd;
    auto daemon = Daemon::start(std::move(*config), options);
    if (!daemon) {
        const std::string msg = "dpnetbackd: " + daemon.error().describe();
        logger(Component::control)->critical("{}", msg);
        if (ready_fd >= 0) {
            const std::string line = msg + "\n";
            [[maybe_unused]] ssize_t n = ::write(ready_fd, line.data(), line.size());
        } else if (sink == LogSink::journal) {
            std::cerr << msg << "\n";
        }
        return kExitFailure;
    }
    return (*daemon)->run();
}
