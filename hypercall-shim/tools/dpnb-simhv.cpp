// dpnb-simhv: the simulated hypervisor from a shell (docs/simulator.md).
//     dpnb-simhv serve [--ready-fd FD]      runs the server in the foreground until SIGINT
//                                           or SIGTERM; writes "READY=1\n" to FD (then
//                                           closes it) once clients can connect
//     dpnb-simhv create NAME [-m PAGES] [-g FRAMES] [--keep]
//                                           creates a domain, prints its id (xl create)
//     dpnb-simhv destroy DOMID              (xl destroy)
//     dpnb-simhv list                       (xl list)
//     dpnb-simhv stats                      the server's counters
// Every command takes --dir FOLDER (default: $DPNB_SIM_DIR, else /run/dpnetback/sim).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "dpnb/hv/sim.hpp"

namespace {

using namespace dpnb::hv;

int fail(const dpnb::Error& e) {
    std::fprintf(stderr, "dpnb-simhv: %s\n", e.describe().c_str());
    return 1;
}

int serve(const std::string& dir, int ready_fd) {
    // Block the stop signals before the server thread starts, then wait for them here.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    auto server = sim::Server::start(dir);
    if (!server) return fail(server.error());
    std::printf("dpnb-simhv: serving %s\n", dir.c_str());
    std::fflush(stdout);
    if (ready_fd >= 0) {
        static constexpr char kReady[] = "READY=1\n";
        const ssize_t n = ::write(ready_fd, kReady, sizeof(kReady) - 1);
        (void)n; // whoever waits sees the close below either way
        ::close(ready_fd);
    }
    int sig = 0;
    sigwait(&stop, &sig);
    spdlog::info("dpnb-simhv: signal {}, stopping", sig);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"The dpnetback simulated hypervisor"};
    app.require_subcommand(1);
    std::string dir = sim::default_dir();
    app.add_option("--dir", dir, "the server's folder (sockets)");

    int ready_fd = -1;
    auto* serve_cmd = app.add_subcommand("serve", "run the hypervisor in the foreground");
    serve_cmd->add_option("--ready-fd", ready_fd, "descriptor to notify once serving");

    sim::DomainConfig config;
    bool keep = false;
    auto* create_cmd = app.add_subcommand("create", "create a domain and print its id");
    create_cmd->add_option("name", config.name, "domain name")->required();
    create_cmd->add_option("-m,--memory-pages", config.memory_pages, "guest memory in pages");
    create_cmd->add_option("-g,--grant-frames", config.grant_frames, "grant table frames");
    create_cmd->add_flag("--keep", keep, "keep the domain when its guest process exits");

    unsigned dom_arg = 0;
    auto* destroy_cmd = app.add_subcommand("destroy", "destroy a domain");
    destroy_cmd->add_option("domid", dom_arg, "domain id")->required();

    auto* list_cmd = app.add_subcommand("list", "list domains");
    auto* stats_cmd = app.add_subcommand("stats", "print the server's counters");

    CLI11_PARSE(app, argc, argv);

    if (serve_cmd->parsed()) return serve(dir, ready_fd);

    auto ts = sim::Toolstack::connect(dir);
    if (!ts) return fail(ts.error());
    if (create_cmd->parsed()) {
        config.destroy_when_guest_exits = !keep;
        auto dom = (*ts)->create_domain(config);
        if (!dom) return fail(dom.error());
        std::printf("%u\n", unsigned{*dom});
    } else if (destroy_cmd->parsed()) {
        if (dom_arg >= kDomIdSelf)
            return fail(dpnb::make_error(dpnb::Errc::invalid_argument, "bad domain id"));
        if (auto st = (*ts)->destroy_domain(static_cast<DomId>(dom_arg)); !st)
            return fail(st.error());
    } else if (list_cmd->parsed()) {
        auto doms = (*ts)->list_domains();
        if (!doms) return fail(doms.error());
        std::printf("%-24s %5s %8s %6s %6s %5s %s\n", "Name", "ID", "Pages", "Grants", "Pinned",
                    "Ports", "State");
        for (const auto& d : *doms)
            std::printf("%-24s %5u %8u %6u %6llu %5u %s%s\n", d.name.c_str(), unsigned{d.dom},
                        d.memory_pages, d.grant_entries,
                        static_cast<unsigned long long>(d.pinned_grants), d.event_channels,
                        d.dying ? "dying" : "running", d.guest_connected ? "" : " (no guest)");
    } else if (stats_cmd->parsed()) {
        auto s = (*ts)->stats();
        if (!s) return fail(s.error());
        std::printf("domains %u\ndying_domains %u\nconnections %u\nevent_channel_handles %u\n"
                    "event_channel_ports %u\ntranslation_tables %u\ntranslation_entries %llu\n"
                    "pinned_grants %llu\nbackend_attachments %u\n",
                    s->domains, s->dying_domains, s->connections, s->event_channel_handles,
                    s->event_channel_ports, s->translation_tables,
                    static_cast<unsigned long long>(s->translation_entries),
                    static_cast<unsigned long long>(s->pinned_grants), s->backend_attachments);
    }
    return 0;
}
