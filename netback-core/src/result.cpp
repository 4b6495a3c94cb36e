// Names and descriptions of dpnb::Errc, for log lines and CLI messages.
#include "dpnb/util/result.hpp"

#include <cstring>

namespace dpnb {

const char* to_string(Errc code) noexcept {
    switch (code) {
    case Errc::invalid_argument:
        return "invalid argument";
    case Errc::not_found:
        return "not found";
    case Errc::permission_denied:
        return "permission denied";
    case Errc::exists:
        return "already exists";
    case Errc::again:
        return "try again";
    case Errc::busy:
        return "busy";
    case Errc::protocol:
        return "protocol error";
    case Errc::unsupported:
        return "unsupported";
    case Errc::io:
        return "I/O error";
    case Errc::closed:
        return "closed";
    case Errc::internal:
        return "internal error";
    }
    return "unknown error";
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
