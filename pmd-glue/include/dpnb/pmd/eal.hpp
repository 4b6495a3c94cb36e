// DPDK's Environment Abstraction Layer, set up once per process from options rather than a
// hand-written argv: which lcores poll, where the main lcore is, memory without hugepages
// for tests, the runtime-file prefix, virtual devices and the PCI allow list.
//
// rte_eal_init() can run only once in a process. init_eal() remembers the arguments it used;
// a second call with the same arguments succeeds without doing anything (an Engine created
// again in the same process), a call with other arguments is refused.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dpnb/util/result.hpp"

namespace dpnb::pmd {

struct EalOptions {
    unsigned main_lcore = 0;             // the control thread's lcore (--main-lcore)
    std::vector<unsigned> worker_lcores; // one poll loop each; at least one
    // Advanced: an explicit --lcores map ("0@0,1@1,2@1"), replacing -l; main_lcore and
    // worker_lcores must still name its lcores.
    std::optional<std::string> lcore_map;
    bool no_huge = false;                // --no-huge: anonymous memory (tests, small machines)
    unsigned memory_mb = 0;              // -m: memory to reserve (required with no_huge)
    std::string file_prefix;             // --file-prefix: runtime files; unique per DPDK process
    bool no_pci = false;                 // --no-pci
    std::vector<std::string> pci_allow;  // -a <BDF>: only these PCI devices
    std::vector<std::string> vdevs;      // --vdev at start-up (ports may also probe their own)
    std::string log_level;               // --log-level, e.g. "notice" or "pmd.net.tap:debug"
    bool telemetry = false;              // DPDK's telemetry socket
    std::vector<std::string> extra_args; // appended verbatim, after validation of the rest
};

// The argv that init_eal() hands to rte_eal_init() (program name first). Refuses options
// that cannot work: no worker lcore, the main lcore among the workers, duplicate workers,
// no_huge without memory_mb, an empty or path-like file prefix, both no_pci and an allow
// list, --in-memory with no_huge (FINDINGS: they cannot be combined).
Result<std::vector<std::string>> eal_arguments(const EalOptions& options);

// rte_eal_init() with eal_arguments(options); see the file comment for repeated calls.
// Errors name the refused option or carry DPDK's rte_errno text.
Status init_eal(const EalOptions& options);

} // namespace dpnb::pmd
