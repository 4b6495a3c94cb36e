// The simulated hypervisor's xenstore: a server that speaks Xen's xs_wire protocol
// (xen/io/xs_wire.h) on one UNIX socket per domain, <dir>/xenstore-<domid>.sock, with the
// semantics of C xenstored 4.17 (docs/misc/xenstore.txt): permissions checked against the
// domain that owns the socket a connection came through (dom0 is privileged), relative
// paths, implicit parents, optimistic transactions (EAGAIN on conflict), watches with their
// initial firing, @introduceDomain and @releaseDomain, and xenstored's quotas, so that a
// hostile guest can neither crash the server nor starve other clients.
//
// Because it speaks the real protocol, the real client (libxenstore, open_xenstore() in
// dpnb/hv/xenstore_client.hpp) and Xen's own tools work against it:
//     XENSTORED_PATH=<dir>/xenstore-0.sock xenstore-ls
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "dpnb/hv/types.hpp"

namespace dpnb::hv::sim {

namespace xs {
class Server;
}

// Limits that protect the server from a hostile or broken client. The first five are
// xenstored's (-E, -S, -W, -t, -A) with its defaults and apply to unprivileged domains only,
// as in xenstored; the privileged ones only bound memory.
struct XenstoreQuotas {
    std::size_t nodes_per_domain = 1000;  // nodes a domain may own
    std::size_t entry_size = 2048;        // bytes of one node (value, children, perms)
    std::size_t watches_per_domain = 128; // over all connections of the domain
    std::size_t transactions_per_connection = 10;
    std::size_t perms_per_node = 5;
    std::size_t connections_per_domain = 32;             // further connects are closed at once
    std::size_t transaction_bytes_per_domain = 4u << 20; // open transactions' private state
    std::size_t output_bytes_per_connection = 1u << 20;  // unread replies and events, then
                                                         // the client is disconnected
    std::size_t privileged_connections = 1024;
    std::size_t privileged_watches_per_connection = 1u << 16;
    std::size_t privileged_output_bytes_per_connection = 64u << 20;
    std::size_t max_nodes = 1u << 20; // the whole tree
};

class XenstoreServer {
public:
    // Creates `socket_dir` if needed, listens on <socket_dir>/xenstore-0.sock (dom0,
    // privileged) and serves from its own thread (epoll). The tree starts as xenstored plus
    // xen-init-dom0 leave it: "/", /tool/xenstored, /local/domain/0 with name "Domain-0" and
    // domid "0", all owned by dom0 and unreadable to others.
    static Result<std::unique_ptr<XenstoreServer>> start(const std::string& socket_dir);
    static Result<std::unique_ptr<XenstoreServer>> start(const std::string& socket_dir,
                                                         const XenstoreQuotas& quotas);
    ~XenstoreServer(); // stops the thread, closes every connection, removes its sockets

    XenstoreServer(const XenstoreServer&) = delete;
    XenstoreServer& operator=(const XenstoreServer&) = delete;

    // What the toolstack and xenstored do when a domain is created (libxl__domain_make,
    // XS_INTRODUCE): creates /local/domain/<dom> afresh (a stale one is removed first, as
    // libxl does, so write the domain's device folders after this), owned by dom0 and
    // readable by <dom>, with name
    // and domid, the folders libxl gives the guest (device, control readable; data, drivers,
    // feature, attr, error, control/shutdown owned by the guest), the socket
    // <dir>/xenstore-<dom>.sock through which that domain's processes connect, and fires
    // @introduceDomain. Errc::exists if `dom` is already introduced.
    Status introduce_domain(DomId dom, std::string_view name);

    // What xl and xenstored do when a domain is destroyed: removes /local/domain/<dom>,
    // closes that domain's connections and socket, deletes the nodes the domain owns and
    // removes it from every other permission list (XSA-322/XSA-419), and fires
    // @releaseDomain. Errc::not_found if `dom` is not introduced.
    Status release_domain(DomId dom);

    // <socket_dir>/xenstore-<dom>.sock (whether or not `dom` is introduced).
    std::string socket_path(DomId dom) const;

    // All public methods are thread-safe: they are executed by the server's thread.
private:
    XenstoreServer() = default;
    std::unique_ptr<xs::Server> server_;
};

} // namespace dpnb::hv::sim
