// The simulated hypervisor: a server process (dpnb-simhv) or thread that plays Xen for a
// backend process and guest processes on any Linux machine (docs/simulator.md).
//
//   Server::start(dir)          runs the hypervisor inside this process (a thread); the
//                               dpnb-simhv tool does the same in the foreground.
//   Toolstack::connect(dir)     creates and destroys domains, as xl does.
//   connect_backend(dir, self)  the daemon's side: grant map/copy, event channels,
//                               xenstore, domain information, translation tables.
//   connect_guest(dir, dom)     a guest's side: its memory, grant table, event channels,
//                               xenstore and the translation-table hypercalls.
//
// Everything meets in one folder: the control socket <dir>/simhv.sock and the xenstore
// sockets <dir>/xenstore-<domid>.sock. The folder's permissions are the trust boundary:
// whoever can connect may act as the toolstack, as a backend (which, like dom0, is trusted
// as hypervisor-side code) or as any guest domain not yet claimed by another process. What
// a client sends is validated; a hostile guest can fail its own requests, never crash the
// server or reach another domain's memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dpnb/hv/hypervisor.hpp"

namespace dpnb::hv::sim {

// $DPNB_SIM_DIR, else /run/dpnetback/sim.
std::string default_dir();

class ServerImpl;

// The hypervisor. Creates `dir` if needed (mode 0700), refuses to start when another server
// answers on its socket, and serves from its own thread until destroyed. Destruction
// destroys every domain and closes every client connection (their calls then fail with
// Errc::closed).
class Server {
public:
    static Result<std::unique_ptr<Server>> start(const std::string& dir);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    const std::string& dir() const;

private:
    explicit Server(std::unique_ptr<ServerImpl> impl);
    std::unique_ptr<ServerImpl> impl_;
};

struct DomainConfig {
    std::string name;                     // [A-Za-z0-9_.-], 1..63 characters
    std::uint32_t memory_pages = 1024;    // guest memory, 1 .. 2^20 pages
    std::uint32_t grant_frames = 32;      // grant table size: 512 v1 entries per frame, 1..64
    bool destroy_when_guest_exits = true; // libxl's default on_crash/on_poweroff="destroy"
};

struct DomainInfo {
    DomId dom = kDomIdInvalid;
    std::string name;
    bool dying = false;           // destroyed, waiting for backends to drop its pages
    bool guest_connected = false; // a process is running this domain
    std::uint32_t memory_pages = 0;
    std::uint32_t grant_entries = 0;
    std::uint64_t pinned_grants = 0;  // grants mapped, being copied or held by a translation table
    std::uint32_t event_channels = 0; // ports in use
};

// Counters over the whole server, for leak checks.
struct ServerStats {
    std::uint32_t domains = 0; // including dom0 and dying domains
    std::uint32_t dying_domains = 0;
    std::uint32_t connections = 0;
    std::uint32_t event_channel_handles = 0;
    std::uint32_t event_channel_ports = 0;
    std::uint32_t translation_tables = 0;
    std::uint64_t translation_entries = 0; // valid entries over all tables
    std::uint64_t pinned_grants = 0;       // over all domains
    std::uint32_t backend_attachments = 0; // (backend process, guest) pairs with pin ledgers
};

// A toolstack connection (xl). Thread-safe.
class Toolstack {
public:
    static Result<std::unique_ptr<Toolstack>> connect(const std::string& dir);
    virtual ~Toolstack() = default;

    virtual Result<DomId> create_domain(const DomainConfig& config) = 0;
    // Marks the domain dying and fires @releaseDomain; its resources are freed once no
    // backend maps or copies its pages and no translation-table entry is in flight.
    virtual Status destroy_domain(DomId dom) = 0;
    // Errc::not_found once the domain is freed.
    virtual Result<DomainInfo> domain_info(DomId dom) = 0;
    virtual Result<std::vector<DomainInfo>> list_domains() = 0;
    // Frees what can be freed first (dying domains whose pages nobody holds any more).
    virtual Result<ServerStats> stats() = 0;
};

// The backend side. `self` is dom0 or an existing (driver) domain. The returned object
// must outlive nothing: handles opened from it keep what they need alive.
Result<std::unique_ptr<BackendHypervisor>> connect_backend(const std::string& dir,
                                                           DomId self = kDom0);

// The guest side: claims domain `dom` (created by the toolstack) for this process; a second
// claim of the same domain is refused (Errc::busy) while the first is connected. With
// DomainConfig::destroy_when_guest_exits, the domain is destroyed when this connection
// closes (process exit or destruction of the returned object).
Result<std::unique_ptr<GuestHypervisor>> connect_guest(const std::string& dir, DomId dom);

} // namespace dpnb::hv::sim
