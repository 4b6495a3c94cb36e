// EAL set-up from options (dpnb/pmd/eal.hpp).
#include "dpnb/pmd/eal.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <set>

namespace dpnb::pmd {
namespace {

std::mutex g_mu;
bool g_initialised = false;
std::vector<std::string> g_args;

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& a : v) {
        if (!s.empty()) s += ' ';
        s += a;
    }
    return s;
}

} // namespace

Result<std::vector<std::string>> eal_arguments(const EalOptions& o) {
    if (o.worker_lcores.empty())
        return make_error(Errc::invalid_argument, "EAL: at least one worker lcore is needed");
    std::set<unsigned> workers(o.worker_lcores.begin(), o.worker_lcores.end());
    if (workers.size() != o.worker_lcores.size())
        return make_error(Errc::invalid_argument, "EAL: a worker lcore is listed twice");
    if (workers.count(o.main_lcore))
        return make_error(Errc::invalid_argument, "EAL: main lcore " +
                                                      std::to_string(o.main_lcore) +
                                                      " is also a worker lcore");
    if (*workers.rbegin() >= RTE_MAX_LCORE || o.main_lcore >= RTE_MAX_LCORE)
        return make_error(Errc::invalid_argument,
                          "EAL: lcore ids must be below " + std::to_string(RTE_MAX_LCORE));
    if (o.no_huge && o.memory_mb == 0)
        return make_error(Errc::invalid_argument, "EAL: no_huge needs memory_mb (-m), e.g. 512");
    if (o.file_prefix.find('/') != std::string::npos)
        return make_error(Errc::invalid_argument,
                          "EAL: file prefix \"" + o.file_prefix + "\" must not contain '/'");
    if (o.no_pci && !o.pci_allow.empty())
        return make_error(Errc::invalid_argument,
                          "EAL: no_pci and a PCI allow list exclude each other");
    for (const auto& a : o.extra_args) {
        if (a == "--in-memory" && o.no_huge)
            return make_error(Errc::invalid_argument,
                              "EAL: --in-memory cannot be combined with --no-huge");
        if (a == "-l" || a == "--lcores" || a == "--main-lcore" || a == "-c")
            return make_error(Errc::invalid_argument,
                              "EAL: give lcores through the options, not " + a);
    }

    std::vector<std::string> args{"dpnetback"};
    if (o.lcore_map) {
        args.insert(args.end(), {"--lcores", *o.lcore_map});
    } else {
        std::string list = std::to_string(o.main_lcore);
        for (unsigned w : workers)
            list += "," + std::to_string(w);
        args.insert(args.end(), {"-l", list});
    }
    args.insert(args.end(), {"--main-lcore", std::to_string(o.main_lcore)});
    if (o.no_huge) args.push_back("--no-huge");
    if (o.memory_mb != 0) args.insert(args.end(), {"-m", std::to_string(o.memory_mb)});
    if (!o.file_prefix.empty()) args.insert(args.end(), {"--file-prefix", o.file_prefix});
    if (o.no_pci) args.push_back("--no-pci");
    for (const auto& bdf : o.pci_allow)
        args.insert(args.end(), {"-a", bdf});
    for (const auto& v : o.vdevs)
        args.insert(args.end(), {"--vdev", v});
    if (!o.log_level.empty()) args.insert(args.end(), {"--log-level", o.log_level});
    if (!o.telemetry) args.push_back("--no-telemetry");
    args.insert(args.end(), o.extra_args.begin(), o.extra_args.end());
    return args;
}

Status init_eal(const EalOptions& options) {
    auto args = eal_arguments(options);
    if (!args) return std::move(args).error();
    std::lock_guard lock(g_mu);
    if (g_initialised) {
        if (*args == g_args) return ok();
        return make_error(Errc::exists, "EAL already initialised in this process with \"" +
                                            join(g_args) + "\"; cannot switch to \"" + join(*args) +
                                            "\"");
    }
    std::vector<std::string> copy = *args; // rte_eal_init may permute argv
    std::vector<char*> argv;
    for (auto& a : copy)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    spdlog::info("EAL: {}", join(*args));
    const int rc = rte_eal_init(static_cast<int>(argv.size() - 1), argv.data());
    if (rc < 0) {
        const int err = rte_errno;
        return make_error(Errc::io, "rte_eal_init(" + join(*args) + "): " + rte_strerror(err), err);
    }
    for (unsigned w : options.worker_lcores)
        if (!rte_lcore_is_enabled(w))
            return make_error(Errc::invalid_argument,
                              "EAL: worker lcore " + std::to_string(w) + " is not enabled");
    g_initialised = true;
    g_args = *args;
    return ok();
}

} // namespace dpnb::pmd
