// The simulated hypervisor's control protocol: fixed-size requests and replies over a
// SOCK_SEQPACKET UNIX socket (<dir>/simhv.sock), one reply per request, file descriptors
// (memfds, eventfds) in the reply's SCM_RIGHTS. Fixed sizes keep the server's validation
// simple: a packet of any other size, a bad magic or an unknown op closes the connection.
//
// The first request of a connection is `hello`; it fixes the connection's role (toolstack,
// backend, guest) and domain for its lifetime.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dpnb/hv/types.hpp"
#include "sim/os.hpp"

namespace dpnb::hv::sim::proto {

inline constexpr std::uint32_t kMagic = 0x64706876; // "dphv"
inline constexpr const char* kSocketName = "simhv.sock";
inline constexpr std::size_t kMaxFds = 6;

enum class Role : std::uint32_t { none = 0, toolstack = 1, backend = 2, guest = 3 };

// Arguments (a = Request::arg, v = Reply::val) and the descriptors of each reply.
enum class Op : std::uint32_t {
    hello = 1,               // a0 role, a1 domain -> v0 domain, text xenstore socket;
                             //   backend fds [registry]; guest fds [memory, grant table],
                             //   v1 memory pages, v2 grant entries
    domain_state,            // a0 domain -> v0 exists, v1 dying, v2 shutdown
    domain_name,             // a0 domain -> text
    create_domain,           // a0 pages, a1 grant frames, a2 destroy when guest exits, text name
                             //   -> v0 domain (toolstack)
    destroy_domain,          // a0 domain (toolstack)
    domain_info,             // a0 first domain id to consider -> v0 domain (the first existing one
                             //   >= a0), v1 dying, v2 guest connected, v3 pages, v4 grant entries,
                             //   v5 pinned grants, v6 event channels, text name (toolstack)
    stats,                   // -> v0..v8: the fields of ServerStats in order (toolstack)
    attach_guest,            // a0 guest -> fds [memory, grant table, active table, ledger],
                             //   v0 instance, v1 pages, v2 grant entries (backend)
    detach_guest,            // a0 guest, a1 instance (backend)
    evtchn_open,             // -> v0 handle, fds [status page]
    evtchn_close,            // a0 handle
    evtchn_bind_unbound,     // a0 handle, a1 remote domain -> v0 port, fds [listen, kick]
    evtchn_bind_interdomain, // a0 handle, a1 remote domain, a2 remote port
                             //   -> v0 port, fds [listen, kick]
    evtchn_unbind,           // a0 handle, a1 port
    iott_open,               // a0 guest -> v0 entries, v1 instance,
                             //   fds [address subtable, status subtable, guest memory] (backend)
    iott_close,              // a0 guest (backend)
    iott_add,                // a0 backend, a1 grant ref (guest)
    iott_remove,             // a0 backend, a1 grant ref (guest)
    count_
};

struct Request {
    std::uint32_t magic;
    Op op;
    std::uint64_t arg[4];
    char text[64]; // NUL-terminated
};
static_assert(sizeof(Request) == 104);

struct Reply {
    std::uint32_t magic;
    Op op;
    std::int32_t status;    // 0 ok, else 1 + Errc
    std::int32_t sys_errno; // of the failed call, if any
    std::uint32_t nfds;
    std::uint32_t pad;
    std::uint64_t val[10];
    char text[200]; // NUL-terminated: the error message, or a name or path
};
static_assert(sizeof(Reply) == 304);

Request make_request(Op op, std::uint64_t a0 = 0, std::uint64_t a1 = 0, std::uint64_t a2 = 0,
                     std::uint64_t a3 = 0);
void set_text(char* dst, std::size_t cap, std::string_view text);
// The NUL-terminated text of a fixed field, or nullopt-like empty when unterminated.
std::string_view get_text(const char* src, std::size_t cap, bool& terminated);

// One packet with descriptors attached. Never raises SIGPIPE.
Status send_packet(int sock, const void* data, std::size_t len, std::span<const int> fds);

// Receives one packet. Descriptors that arrive are returned close-on-exec; a truncated packet
// or control message is an error (and the descriptors that did arrive are closed). Returns
// 0 on an orderly shutdown by the peer.
Result<std::size_t> recv_packet(int sock, void* data, std::size_t cap, std::vector<UniqueFd>& fds);

struct Response {
    Reply reply;
    std::vector<UniqueFd> fds;
};

// A client's connection to the server. call() is thread-safe (one request at a time).
class Channel {
public:
    // Connects to <dir>/simhv.sock and says hello.
    static Result<std::shared_ptr<Channel>> connect(const std::string& dir, Role role, DomId dom,
                                                    Response* hello_reply);

    // Sends `req` and waits for its reply: an error reply becomes the returned Error, a
    // success must carry exactly `fds` descriptors.
    Result<Response> call(const Request& req, std::size_t fds);

    const std::string& dir() const { return dir_; }

private:
    Channel(std::string dir, UniqueFd fd) : dir_(std::move(dir)), fd_(std::move(fd)) {}
    std::string dir_;
    std::mutex mu_;
    UniqueFd fd_;
};

} // namespace dpnb::hv::sim::proto
