// A xentoollog logger for the Xen libraries that keeps the last message instead of printing
// it. Given no logger, libxengnttab and libxenctrl print to stderr, and a hostile guest that
// posts bad grants would make every failed map print a line. The message is kept so that an
// error we return can say what the library said.
//
// One logger per library handle; it must outlive the handle.
#pragma once

extern "C" { // the Xen libraries' headers have no C++ guards
#include <xentoollog.h>
}

#include <string>

namespace dpnb::hv::xen {

class QuietLogger {
public:
    QuietLogger();
    QuietLogger(const QuietLogger&) = delete;
    QuietLogger& operator=(const QuietLogger&) = delete;

    xentoollog_logger* get() { return &hook_.vtable; }
    // The last error-level message ("" if none), e.g. "gnttab: mmap failed".
    const std::string& last() const { return last_; }
    void clear() { last_.clear(); }

private:
    static void vmessage(xentoollog_logger* logger, xentoollog_level level, int errnoval,
                         const char* context, const char* format, va_list args)
        __attribute__((format(printf, 5, 0)));
    static void destroy(xentoollog_logger*) {}

    // The library calls back with the address of `vtable`, which is the first member of a
    // standard-layout struct, so it converts back to the Hook.
    struct Hook {
        xentoollog_logger vtable;
        QuietLogger* self;
    } hook_;
    std::string last_;
};

} // namespace dpnb::hv::xen
