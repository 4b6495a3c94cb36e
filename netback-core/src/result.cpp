// dpnb::Errc's table (dpnb/util/result.hpp): name, text and errno of every code, and what
// reads it.
#include "dpnb/util/result.hpp"

#include <cerrno>
#include <cstring>

namespace dpnb {
namespace {

// Linux's own choices where it has them: xen-netback answers a frontend without
// request-rx-copy with EOPNOTSUPP (unsupported); a failed xenstore connection reads as
// EPIPE or ECONNRESET (closed). internal has no errno of its own: a peer hears EIO.
constexpr std::array<ErrcInfo, 11> kErrcs = {{
    {Errc::invalid_argument, "invalid_argument", "invalid argument", EINVAL, {E2BIG, 0}},
    {Errc::not_found, "not_found", "not found", ENOENT, {}},
    {Errc::permission_denied, "permission_denied", "permission denied", EACCES, {EPERM, 0}},
    {Errc::exists, "exists", "already exists", EEXIST, {}},
    {Errc::again, "again", "try again", EAGAIN, {}},
    {Errc::busy, "busy", "busy", EBUSY, {}},
    {Errc::protocol, "protocol", "protocol error", EPROTO, {}},
    {Errc::unsupported, "unsupported", "unsupported", EOPNOTSUPP, {ENOSYS, 0}},
    {Errc::io, "io", "I/O error", EIO, {}},
    {Errc::closed, "closed", "closed", ENOTCONN, {EPIPE, ECONNRESET}},
    {Errc::internal, "internal", "internal error", EIO, {}},
}};

constexpr bool in_enum_order() {
    for (std::size_t i = 0; i < kErrcs.size(); ++i)
        if (static_cast<std::size_t>(kErrcs[i].code) != i) return false;
    return true;
}
static_assert(in_enum_order(), "kErrcs lists every Errc once, in enum order");
static_assert(static_cast<std::size_t>(Errc::internal) + 1 == kErrcs.size(),
              "every Errc has a row");

} // namespace

std::span<const ErrcInfo> errc_table() noexcept {
    return kErrcs;
}

const ErrcInfo& errc_info(Errc code) noexcept {
    const auto i = static_cast<std::size_t>(code);
    return i < kErrcs.size() ? kErrcs[i] : kErrcs[static_cast<std::size_t>(Errc::internal)];
}

const char* to_string(Errc code) noexcept {
    return errc_info(code).text.data(); // string literals: nul-terminated
}

std::string_view errc_name(Errc code) noexcept {
    return errc_info(code).name;
}

int to_errno(Errc code) noexcept {
    return errc_info(code).sys_errno;
}

Errc errc_from_errno(int err) noexcept {
    // The first row that names it: io before internal for EIO.
    for (const ErrcInfo& r : kErrcs)
        if (err != 0 && r.sys_errno == err) return r.code;
    for (const ErrcInfo& r : kErrcs)
        for (int e : r.also_from)
            if (err != 0 && e == err) return r.code;
    return Errc::io;
}

int to_errno(const Error& e) noexcept {
    return e.sys_errno != 0 ? e.sys_errno : to_errno(e.code);
}

std::string Error::describe() const {
    std::string out = message.empty() ? std::string(to_string(code)) : message;
    if (sys_errno != 0) {
        out += ": ";
        out += std::strerror(sys_errno);
    }
    return out;
}

} // namespace dpnb
