// How failures of the Xen libraries become dpnb::Error: which device a call needs, and the
// difference between "this machine has no Xen" (Errc::unsupported, say which device is
// missing) and "Xen is there but the call failed" (permission_denied, io, with errno).
#pragma once

#include <string>
#include <string_view>

#include "dpnb/util/result.hpp"

namespace dpnb::hv::xen {

inline constexpr const char* kGntdevPath = "/dev/xen/gntdev";
inline constexpr const char* kGntallocPath = "/dev/xen/gntalloc";
inline constexpr const char* kEvtchnPath = "/dev/xen/evtchn";
inline constexpr const char* kPrivcmdPath = "/dev/xen/privcmd";
inline constexpr const char* kCapabilitiesPath = "/proc/xen/capabilities";

// Why opening `device` (through `library`, e.g. "xengnttab_open") failed with `err`.
// ENOENT/ENODEV/ENXIO: Errc::unsupported, naming the device and the module to load.
// EACCES/EPERM: Errc::permission_denied. Otherwise Errc::io.
Error device_error(std::string_view device, std::string_view library, int err,
                   std::string_view library_message = {});

// A library call on an open handle failed with `err`.
Error call_error(Errc code, std::string_view what, int err, std::string_view library_message = {});

// Does `path` exist (a device node we could try to open)?
bool device_present(const char* path);

} // namespace dpnb::hv::xen
