// QuietLogger: keeps the Xen libraries' last error message instead of printing it.
#include "xen/xen_log.hpp"

#include <cstdio>
#include <cstring>
#include <type_traits>

namespace dpnb::hv::xen {

QuietLogger::QuietLogger() {
    static_assert(std::is_standard_layout_v<Hook>);
    hook_.vtable.vmessage = &QuietLogger::vmessage;
    hook_.vtable.progress = nullptr;
    hook_.vtable.destroy = &QuietLogger::destroy;
    hook_.self = this;
}

void QuietLogger::vmessage(xentoollog_logger* logger, xentoollog_level level, int errnoval,
                           const char* context, const char* format, va_list args) {
    if (level < XTL_WARN) return;
    QuietLogger* self = reinterpret_cast<Hook*>(logger)->self;
    char buf[256];
    std::vsnprintf(buf, sizeof buf, format, args);
    self->last_.assign(context != nullptr ? context : "xen");
    self->last_ += ": ";
    self->last_ += buf;
    if (errnoval > 0) {
        self->last_ += " (";
        self->last_ += std::strerror(errnoval);
        self->last_ += ")";
    }
}

} // namespace dpnb::hv::xen
