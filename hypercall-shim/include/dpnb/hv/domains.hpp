// Domain information as libxenctrl gives it: does a domain exist, is it dying or shut down,
// what is its name. The control plane uses it to clean up after guests that went away.
#pragma once

#include <string>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv {

struct DomainState {
    bool exists = false;
    bool dying = false;    // being destroyed: release every grant and port
    bool shutdown = false; // shut down (crash, poweroff), not yet destroyed
};

class Domains {
public:
    virtual ~Domains() = default;
    virtual Result<DomainState> state(DomId dom) = 0;
    virtual Result<std::string> name(DomId dom) = 0; // from xenstore /local/domain/N/name
    virtual DomId self() const = 0;                  // this process's own domain
};

} // namespace dpnb::hv
