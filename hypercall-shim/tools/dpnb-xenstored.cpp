// dpnb-xenstored: the simulated hypervisor's xenstore server on its own, in the foreground,
// for debugging with Xen's tools:
//     dpnb-xenstored /tmp/xs 5:guest5 &
//     XENSTORED_PATH=/tmp/xs/xenstore-0.sock xenstore-ls -p     # as dom0
//     XENSTORED_PATH=/tmp/xs/xenstore-5.sock xenstore-read name # as domain 5
// Runs until SIGINT or SIGTERM, then removes its sockets.
#include <charconv>
#include <csignal>
#include <cstdio>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "dpnb/hv/sim_xenstore_server.hpp"

namespace {

int usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s [-v] FOLDER [DOMID:NAME]...\n"
                 "  Serves xenstore on FOLDER/xenstore-<domid>.sock (dom0's is privileged)\n"
                 "  and introduces each DOMID:NAME domain. -v logs every disconnect.\n",
                 argv0);
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    int arg = 1;
    if (arg < argc && std::string_view(argv[arg]) == "-v") {
        spdlog::set_level(spdlog::level::debug);
        ++arg;
    }
    if (arg >= argc || argv[arg][0] == '-') return usage(argv[0]);
    const std::string folder = argv[arg++];

    // Block the stop signals before the server thread starts, then wait for them here.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    auto server = dpnb::hv::sim::XenstoreServer::start(folder);
    if (!server) {
        std::fprintf(stderr, "dpnb-xenstored: %s\n", server.error().describe().c_str());
        return 1;
    }
    std::printf("dom0: %s\n", (*server)->socket_path(0).c_str());
    for (; arg < argc; ++arg) {
        std::string_view spec(argv[arg]);
        auto colon = spec.find(':');
        unsigned long dom = 0;
        const char* end = spec.data() + (colon == std::string_view::npos ? 0 : colon);
        auto [parsed, ec] = std::from_chars(spec.data(), end, dom);
        if (colon == std::string_view::npos || ec != std::errc() || parsed != end || dom == 0 ||
            dom > 0x7FEF) {
            std::fprintf(stderr, "dpnb-xenstored: bad domain '%s' (want DOMID:NAME)\n", argv[arg]);
            return 2;
        }
        auto st =
            (*server)->introduce_domain(static_cast<dpnb::hv::DomId>(dom), spec.substr(colon + 1));
        if (!st) {
            std::fprintf(stderr, "dpnb-xenstored: %s\n", st.error().describe().c_str());
            return 1;
        }
        std::printf("dom%lu: %s\n", dom,
                    (*server)->socket_path(static_cast<dpnb::hv::DomId>(dom)).c_str());
    }
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    std::printf("dpnb-xenstored: signal %d, stopping\n", sig);
    return 0;
}
