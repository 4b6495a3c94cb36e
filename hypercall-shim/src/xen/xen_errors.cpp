// Errors of the Xen libraries as dpnb::Error (see xen_errors.hpp).
#include "xen/xen_errors.hpp"

#include <sys/stat.h>

#include <cerrno>

namespace dpnb::hv::xen {

namespace {

// The Linux module that provides a device, for the "load it" hint.
std::string_view module_for(std::string_view device) {
    if (device == kGntdevPath) return "xen-gntdev";
    if (device == kGntallocPath) return "xen-gntalloc";
    if (device == kEvtchnPath) return "xen-evtchn";
    if (device == kPrivcmdPath) return "xen-privcmd";
    return {};
}

void append_library_message(std::string& out, std::string_view library_message) {
    if (library_message.empty()) return;
    out += " [";
    out += library_message;
    out += "]";
}

} // namespace

Error device_error(std::string_view device, std::string_view library, int err,
                   std::string_view library_message) {
    std::string msg;
    if (err == ENOENT || err == ENODEV || err == ENXIO) {
        msg = std::string(library) + ": " + std::string(device) +
              " is missing: this system is not running under Xen";
        const std::string_view mod = module_for(device);
        if (!mod.empty()) {
            msg += ", or module ";
            msg += mod;
            msg += " is not loaded";
        }
        append_library_message(msg, library_message);
        return make_error(Errc::unsupported, std::move(msg), err);
    }
    msg = std::string(library) + ": cannot open " + std::string(device);
    append_library_message(msg, library_message);
    const Errc code = (err == EACCES || err == EPERM) ? Errc::permission_denied : Errc::io;
    return make_error(code, std::move(msg), err);
}

Error call_error(Errc code, std::string_view what, int err, std::string_view library_message) {
    std::string msg(what);
    append_library_message(msg, library_message);
    return make_error(code, std::move(msg), err);
}

bool device_present(const char* path) {
    struct stat st {};
    return ::stat(path, &st) == 0;
}

} // namespace dpnb::hv::xen
