// spdlog set-up for dpnetbackd: sinks (journal or stderr), one logger per component, the
// prefix router for the libraries' lines, and DPDK's log redirected into spdlog.
#include "dpnb/daemon/logging.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <rte_log.h>

namespace dpnb::daemon {

namespace {

// The libraries' prefixes, longest first where one is a prefix of another.
struct Prefix {
    std::string_view text;
    Component component;
};
constexpr Prefix kPrefixes[] = {
    {"control:", Component::control}, {"engine", Component::data},
    {"vif", Component::data},         {"port ", Component::data},
    {"lcore", Component::data},       {"guest pool", Component::data},
    {"shutdown:", Component::data},   {"simulated hypervisor", Component::hv},
    {"sim ", Component::hv},          {"xenstore", Component::hv},
    {"xen ", Component::hv},          {"translation table", Component::hv},
    {"dpnb-simhv", Component::hv},    {"mgmt:", Component::mgmt},
    {"metrics:", Component::mgmt},
};

spdlog::level::level_enum to_spdlog(LogLevel l) {
    switch (l) {
    case LogLevel::trace:
        return spdlog::level::trace;
    case LogLevel::debug:
        return spdlog::level::debug;
    case LogLevel::info:
        return spdlog::level::info;
    case LogLevel::warn:
        return spdlog::level::warn;
    case LogLevel::error:
        return spdlog::level::err;
    case LogLevel::critical:
        return spdlog::level::critical;
    case LogLevel::off:
        return spdlog::level::off;
    }
    return spdlog::level::info;
}

// Levels the router reads on every line of the default logger; a reload stores new ones.
std::array<std::atomic<int>, kComponentCount + 1> g_levels{}; // [kComponentCount]: global

// The systemd journal, with the component as a field of its own (journalctl
// DPNB_COMPONENT=data) and never an exception: a journal that cannot take a line loses it.
class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        static constexpr int kPriority[] = {LOG_DEBUG, LOG_DEBUG, LOG_INFO, LOG_WARNING,
                                            LOG_ERR,   LOG_CRIT,  LOG_INFO};
        const int prio = kPriority[std::min<int>(msg.level, 6)];
        const auto& name = msg.logger_name;
        (sd_journal_send)("MESSAGE=%.*s", static_cast<int>(msg.payload.size()), msg.payload.data(),
                          "PRIORITY=%d", prio, "SYSLOG_IDENTIFIER=dpnetbackd",
                          "DPNB_COMPONENT=%.*s", static_cast<int>(name.size()), name.data(),
                          nullptr);
    }
    void flush_() override {}
};

// The default logger's sink: drops a line below its component's level, then hands it on
// under the component's name.
class RouterSink final : public spdlog::sinks::sink {
public:
    explicit RouterSink(std::shared_ptr<spdlog::sinks::sink> out) : out_(std::move(out)) {}
    void log(const spdlog::details::log_msg& msg) override {
        const std::string_view text(msg.payload.data(), msg.payload.size());
        const std::optional<Component> c = classify(text);
        const std::size_t slot = c ? static_cast<std::size_t>(*c) : kComponentCount;
        if (msg.level < g_levels[slot].load(std::memory_order_relaxed)) return;
        spdlog::details::log_msg copy = msg;
        copy.logger_name = c ? to_string(*c) : "daemon";
        out_->log(copy);
    }
    void flush() override { out_->flush(); }
    void set_pattern(const std::string& p) override { out_->set_pattern(p); }
    void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
        out_->set_formatter(std::move(f));
    }

private:
    std::shared_ptr<spdlog::sinks::sink> out_;
};

std::shared_ptr<spdlog::sinks::sink> g_sink;

// fopencookie write callback: one rte_log line to the "dpdk" logger at its level.
ssize_t dpdk_log_write(void*, const char* buf, size_t size) {
    std::string_view line(buf, size);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
        line.remove_suffix(1);
    if (line.empty()) return static_cast<ssize_t>(size);
    spdlog::level::level_enum lvl = spdlog::level::info;
    switch (rte_log_cur_msg_loglevel()) {
    case RTE_LOG_EMERG:
    case RTE_LOG_ALERT:
    case RTE_LOG_CRIT:
        lvl = spdlog::level::critical;
        break;
    case RTE_LOG_ERR:
        lvl = spdlog::level::err;
        break;
    case RTE_LOG_WARNING:
        lvl = spdlog::level::warn;
        break;
    case RTE_LOG_NOTICE:
    case RTE_LOG_INFO:
        lvl = spdlog::level::info;
        break;
    default:
        lvl = spdlog::level::debug;
        break;
    }
    logger(Component::dpdk)->log(lvl, "{}", line);
    return static_cast<ssize_t>(size);
}

} // namespace

const char* to_string(LogSink s) noexcept {
    return s == LogSink::journal ? "journal" : "stderr";
}

std::optional<Component> classify(std::string_view message) noexcept {
    for (const Prefix& p : kPrefixes)
        if (message.substr(0, p.text.size()) == p.text) return p.component;
    return std::nullopt;
}

LogSink choose_sink(LogTarget target, bool detached) {
    if (target == LogTarget::journal) return LogSink::journal;
    if (target == LogTarget::stderr_stream) return LogSink::stderr_stream;
    if (detached) return LogSink::journal;
    // systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected stdout/stderr to;
    // it only counts if stderr is still that stream.
    if (const char* js = std::getenv("JOURNAL_STREAM")) {
        unsigned long long dev = 0, ino = 0;
        struct stat st {};
        if (std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
            st.st_dev == dev && st.st_ino == ino)
            return LogSink::journal;
    }
    return LogSink::stderr_stream;
}

void setup_logging(const LogConfig& config, LogSink sink) {
    if (sink == LogSink::journal) {
        g_sink = std::make_shared<JournalSink>();
        g_sink->set_pattern("%v");
    } else {
        auto s = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
        s->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
        g_sink = s;
    }
    for (std::size_t i = 0; i < kComponentCount; ++i) {
        const char* name = to_string(static_cast<Component>(i));
        spdlog::drop(name);
        auto l = std::make_shared<spdlog::logger>(name, g_sink);
        spdlog::register_logger(l);
    }
    auto def = std::make_shared<spdlog::logger>("", std::make_shared<RouterSink>(g_sink));
    spdlog::set_default_logger(def);
    apply_log_levels(config);
    spdlog::flush_on(spdlog::level::warn);
}

void apply_log_levels(const LogConfig& config) {
    int lowest = to_spdlog(config.level);
    for (std::size_t i = 0; i < kComponentCount; ++i) {
        const auto lvl = to_spdlog(config.of(static_cast<Component>(i)));
        g_levels[i].store(lvl, std::memory_order_relaxed);
        lowest = std::min<int>(lowest, lvl);
        if (auto l = spdlog::get(to_string(static_cast<Component>(i)))) l->set_level(lvl);
    }
    g_levels[kComponentCount].store(to_spdlog(config.level), std::memory_order_relaxed);
    // The default logger lets through what any component wants; the router filters.
    spdlog::default_logger()->set_level(static_cast<spdlog::level::level_enum>(lowest));
    rte_log_set_global_level(dpdk_log_level(config.of(Component::dpdk)));
}

std::shared_ptr<spdlog::logger> logger(Component c) {
    if (auto l = spdlog::get(to_string(c))) return l;
    return spdlog::default_logger();
}

void redirect_dpdk_log() {
    static FILE* stream = [] {
        cookie_io_functions_t io{};
        io.write = dpdk_log_write;
        FILE* f = fopencookie(nullptr, "w", io);
        if (f) setvbuf(f, nullptr, _IOLBF, 0);
        return f;
    }();
    if (stream) rte_openlog_stream(stream);
}

unsigned dpdk_log_level(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::trace:
    case LogLevel::debug:
        return RTE_LOG_DEBUG;
    case LogLevel::info:
        return RTE_LOG_NOTICE;
    case LogLevel::warn:
        return RTE_LOG_WARNING;
    case LogLevel::error:
        return RTE_LOG_ERR;
    case LogLevel::critical:
        return RTE_LOG_CRIT;
    case LogLevel::off:
        return RTE_LOG_EMERG;
    }
    return RTE_LOG_NOTICE;
}

} // namespace dpnb::daemon
