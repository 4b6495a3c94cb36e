// IRQ and thread placement over procfs and the scheduler, and its simulated twin
// (dpnb/pmd/cpu_placement.hpp).
#include "dpnb/pmd/cpu_placement.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>

namespace dpnb::pmd {
namespace {

namespace fs = std::filesystem;

std::optional<unsigned> parse_uint(std::string_view s) {
    unsigned v = 0;
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::string first_line(const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    if (in) std::getline(in, line);
    return line;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    return s;
}

std::string vhost_name(pid_t pid) {
    return "vhost-" + std::to_string(pid);
}

} // namespace

std::string cpu_list_text(const CpuSet& cpus) {
    std::string out;
    for (std::size_t i = 0; i < cpus.size();) {
        std::size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
            ++j;
        if (!out.empty()) out += ',';
        out += std::to_string(cpus[i]);
        if (j > i) out += '-' + std::to_string(cpus[j]);
        i = j + 1;
    }
    return out;
}

std::optional<CpuSet> parse_cpu_list(std::string_view text) {
    text = trim(text);
    if (text.empty()) return std::nullopt;
    std::set<unsigned> set;
    while (!text.empty()) {
        const std::size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
        const std::size_t dash = item.find('-');
        auto lo = parse_uint(item.substr(0, dash));
        auto hi = dash == std::string_view::npos ? lo : parse_uint(item.substr(dash + 1));
        if (!lo || !hi || *hi < *lo || *hi >= 65536) return std::nullopt;
        for (unsigned c = *lo; c <= *hi; ++c)
            set.insert(c);
    }
    return CpuSet(set.begin(), set.end());
}

CpuSet cpu_union(const std::vector<CpuSet>& sets) {
    std::set<unsigned> all;
    for (const CpuSet& s : sets)
        all.insert(s.begin(), s.end());
    return CpuSet(all.begin(), all.end());
}

CpuSet cpus_of(const cpu_set_t& set) {
    CpuSet out;
    for (unsigned c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) out.push_back(c);
    return out;
}

Result<cpu_set_t> to_cpu_set(const CpuSet& cpus) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned c : cpus) {
        if (c >= CPU_SETSIZE)
            return make_error(Errc::invalid_argument, "CPU " + std::to_string(c) +
                                                          " is beyond a cpu_set_t's " +
                                                          std::to_string(CPU_SETSIZE) + " CPUs");
        CPU_SET(c, &set);
    }
    return set;
}

std::optional<unsigned> interrupts_line_irq(std::string_view line, std::string_view action) {
    line = trim(line);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || action.empty()) return std::nullopt;
    auto irq = parse_uint(line.substr(0, colon));
    if (!irq) return std::nullopt;
    // The first action follows two spaces, the others ", ": the name is preceded by a space
    // and followed by the line's end or a comma.
    for (std::size_t at = line.find(action, colon); at != std::string_view::npos;
         at = line.find(action, at + 1)) {
        const std::size_t end = at + action.size();
        if (line[at - 1] == ' ' && (end == line.size() || line[end] == ',')) return irq;
    }
    return std::nullopt;
}

const char* to_string(IrqPlacement p) noexcept {
    switch (p) {
    case IrqPlacement::off:
        return "off";
    case IrqPlacement::no_irq:
        return "no_irq";
    case IrqPlacement::placed:
        return "placed";
    case IrqPlacement::not_found:
        return "not_found";
    case IrqPlacement::ambiguous:
        return "ambiguous";
    case IrqPlacement::failed:
        return "failed";
    }
    return "?";
}

bool placement_failed(IrqPlacement p) noexcept {
    return p == IrqPlacement::not_found || p == IrqPlacement::ambiguous ||
           p == IrqPlacement::failed;
}

IrqPlaced place_new_irq(CpuPlacement& p, std::string_view action,
                        const std::optional<std::vector<unsigned>>& before, const CpuSet& cpus) {
    IrqPlaced r;
    if (!before) {
        r.result = IrqPlacement::failed;
        r.error = "listing the IRQs before the bind failed";
        return r;
    }
    auto after = p.irqs_named(action);
    if (!after) {
        r.result = IrqPlacement::failed;
        r.error = after.error().message;
        return r;
    }
    std::vector<unsigned> fresh;
    std::set_difference(after->begin(), after->end(), before->begin(), before->end(),
                        std::back_inserter(fresh));
    if (fresh.empty()) {
        r.result = IrqPlacement::not_found;
        r.error = "no new IRQ named " + std::string(action);
        return r;
    }
    if (fresh.size() > 1) {
        r.result = IrqPlacement::ambiguous;
        r.error = std::to_string(fresh.size()) + " new IRQs named " + std::string(action);
        return r;
    }
    r.irq = fresh[0];
    if (Status st = p.set_irq_cpus(fresh[0], cpus); !st) {
        r.result = IrqPlacement::failed;
        r.error = st.error().message;
        if (st.error().sys_errno != 0)
            r.error += std::string(": ") + std::strerror(st.error().sys_errno);
        return r;
    }
    r.result = IrqPlacement::placed;
    return r;
}

// --- SystemCpuPlacement ----------------------------------------------------------------------

Result<std::vector<unsigned>> SystemCpuPlacement::irqs_named(std::string_view action) const {
    const fs::path p = root_ / "proc/interrupts";
    std::ifstream in(p);
    if (!in) return make_error(Errc::io, "cannot read " + p.string(), errno);
    std::vector<unsigned> irqs;
    std::string line;
    while (std::getline(in, line))
        if (auto irq = interrupts_line_irq(line, action)) irqs.push_back(*irq);
    std::sort(irqs.begin(), irqs.end());
    return irqs;
}

Result<CpuSet> SystemCpuPlacement::irq_cpus(unsigned irq) const {
    const fs::path p = root_ / "proc/irq" / std::to_string(irq) / "smp_affinity_list";
    auto set = parse_cpu_list(first_line(p));
    if (!set) return make_error(Errc::io, "cannot read a CPU list from " + p.string());
    return *set;
}

Status SystemCpuPlacement::set_irq_cpus(unsigned irq, const CpuSet& cpus) {
    const fs::path p = root_ / "proc/irq" / std::to_string(irq) / "smp_affinity_list";
    const std::string text = cpu_list_text(cpus) + "\n";
    // O_TRUNC as a shell's "echo CPUS > FILE" (procfs ignores it; a test's plain file needs it).
    const int fd = ::open(p.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        return make_error(errc_from_errno(err), "opening " + p.string(), err);
    }
    const ssize_t n = ::write(fd, text.data(), text.size());
    const int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size()))
        return make_error(n < 0 ? errc_from_errno(err) : Errc::io,
                          "writing " + cpu_list_text(cpus) + " to " + p.string(), n < 0 ? err : 0);
    return ok();
}

Result<std::vector<pid_t>> SystemCpuPlacement::vhost_workers(pid_t pid) const {
    const std::string want = vhost_name(pid);
    std::set<pid_t> found;
    auto scan = [&](const fs::path& dir) {
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            auto id = parse_uint(it->path().filename().string());
            if (!id) continue;
            if (first_line(it->path() / "comm") == want) found.insert(static_cast<pid_t>(*id));
        }
        return !ec;
    };
    if (!scan(root_ / "proc"))
        return make_error(Errc::io, "cannot list " + (root_ / "proc").string());
    scan(root_ / "proc" / std::to_string(pid) / "task");
    return std::vector<pid_t>(found.begin(), found.end());
}

Result<CpuSet> SystemCpuPlacement::thread_cpus(pid_t tid) const {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(tid, sizeof set, &set) != 0) {
        const int err = errno;
        return make_error(errc_from_errno(err), "sched_getaffinity(" + std::to_string(tid) + ")",
                          err);
    }
    return cpus_of(set);
}

Status SystemCpuPlacement::set_thread_cpus(pid_t tid, const CpuSet& cpus) {
    auto set = to_cpu_set(cpus);
    if (!set) return std::move(set).error();
    if (::sched_setaffinity(tid, sizeof *set, &*set) != 0) {
        const int err = errno;
        return make_error(
            errc_from_errno(err),
            "sched_setaffinity(" + std::to_string(tid) + ", " + cpu_list_text(cpus) + ")", err);
    }
    return ok();
}

CpuPlacement& system_cpu_placement() {
    static SystemCpuPlacement system;
    return system;
}

// --- SimCpuPlacement -------------------------------------------------------------------------

unsigned SimCpuPlacement::add_irq(std::string action) {
    std::lock_guard lock(mu_);
    const unsigned irq = next_irq_++;
    irqs_[irq] = Irq{std::move(action), all_cpus};
    return irq;
}

void SimCpuPlacement::remove_irq(unsigned irq) {
    std::lock_guard lock(mu_);
    irqs_.erase(irq);
}

void SimCpuPlacement::add_thread(pid_t tid, std::string name, CpuSet cpus) {
    std::lock_guard lock(mu_);
    threads_[tid] = Thread{std::move(name), std::move(cpus)};
}

void SimCpuPlacement::add_thread_after_next_list(pid_t tid, std::string name, CpuSet cpus) {
    std::lock_guard lock(mu_);
    appearing_.emplace_back(tid, Thread{std::move(name), std::move(cpus)});
}

void SimCpuPlacement::fail_irq_writes(bool on) {
    std::lock_guard lock(mu_);
    fail_irq_ = on;
}

void SimCpuPlacement::fail_thread_writes(bool on) {
    std::lock_guard lock(mu_);
    fail_thread_ = on;
}

unsigned SimCpuPlacement::irq_writes() const {
    std::lock_guard lock(mu_);
    return irq_writes_;
}

unsigned SimCpuPlacement::thread_writes() const {
    std::lock_guard lock(mu_);
    return thread_writes_;
}

unsigned SimCpuPlacement::vhost_scans() const {
    std::lock_guard lock(mu_);
    return vhost_scans_;
}

Result<std::vector<unsigned>> SimCpuPlacement::irqs_named(std::string_view action) const {
    std::lock_guard lock(mu_);
    std::vector<unsigned> out;
    for (const auto& [irq, i] : irqs_)
        if (i.action == action) out.push_back(irq);
    return out;
}

Result<CpuSet> SimCpuPlacement::irq_cpus(unsigned irq) const {
    std::lock_guard lock(mu_);
    auto it = irqs_.find(irq);
    if (it == irqs_.end()) return make_error(Errc::not_found, "no IRQ " + std::to_string(irq));
    return it->second.cpus;
}

Status SimCpuPlacement::set_irq_cpus(unsigned irq, const CpuSet& cpus) {
    std::lock_guard lock(mu_);
    ++irq_writes_;
    if (fail_irq_) return make_error(Errc::permission_denied, "read-only /proc/irq", EROFS);
    auto it = irqs_.find(irq);
    if (it == irqs_.end()) return make_error(Errc::not_found, "no IRQ " + std::to_string(irq));
    if (cpus.empty()) return make_error(Errc::invalid_argument, "no CPU", EINVAL);
    it->second.cpus = cpus;
    return ok();
}

Result<std::vector<pid_t>> SimCpuPlacement::vhost_workers(pid_t pid) const {
    std::lock_guard lock(mu_);
    ++vhost_scans_;
    const std::string want = vhost_name(pid);
    std::vector<pid_t> out;
    for (const auto& [tid, t] : threads_)
        if (t.name == want) out.push_back(tid);
    for (auto& [tid, t] : appearing_)
        threads_[tid] = std::move(t);
    appearing_.clear();
    return out;
}

Result<CpuSet> SimCpuPlacement::thread_cpus(pid_t tid) const {
    std::lock_guard lock(mu_);
    auto it = threads_.find(tid);
    if (it == threads_.end())
        return make_error(Errc::not_found, "no thread " + std::to_string(tid));
    return it->second.cpus;
}

Status SimCpuPlacement::set_thread_cpus(pid_t tid, const CpuSet& cpus) {
    std::lock_guard lock(mu_);
    ++thread_writes_;
    if (fail_thread_) return make_error(Errc::permission_denied, "sched_setaffinity", EPERM);
    auto it = threads_.find(tid);
    if (it == threads_.end())
        return make_error(Errc::not_found, "no thread " + std::to_string(tid));
    it->second.cpus = cpus;
    return ok();
}

} // namespace dpnb::pmd
