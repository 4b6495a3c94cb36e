// The control plane: turns the vif folders the toolstack writes into xenstore into vif
// lifecycles, and drives the data plane (engine::DataPlane) accordingly.
//
// For every vif folder under /local/domain/<self>/backend/vif it runs one
// netif::VifStateMachine (docs/xenbus.md) and performs its effects: publish the backend
// features and InitWait, read the frontend's keys in one transaction when it is Connected,
// attach the vif to the data plane and publish Connected (held until the hotplug script is
// done), and on the frontend's Closing/Closed, online = 0, the folder's removal, the guest's
// death or a vif the data plane disabled: detach it and walk the states down. Every value
// read from a guest's folder goes through netback-core's validating parsers; a bad one closes
// that vif with an error node (as Linux's xenbus_dev_fatal() writes it) and a rate-limited
// log line, and nothing else.
//
// On start it scans the folders that already exist: a vif whose frontend is Connected is
// attached again with VifSpec::resume, so that a running guest keeps its network across a
// daemon restart (docs/xenbus.md, "daemon restart").
//
// Threading: one control thread owns the object. It either calls run(stop_token), or polls
// fd() in its own event loop and calls process() when it is readable. Everything else
// (adopt, release, list, shutdown, ...) is called on that thread too; other threads (the
// CLI server, the metrics endpoint) use call(), which runs a function on the control thread
// and hands back a future, and counters(), which may be read from anywhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <vector>

#include "dpnb/control/counters.hpp"
#include "dpnb/control/options.hpp"
#include "dpnb/engine/data_plane.hpp"
#include "dpnb/hv/hypervisor.hpp"
#include "dpnb/netif/xenbus_state.hpp"
#include "dpnb/util/result.hpp"

namespace dpnb::control {

// What the control plane does with a vif folder.
enum class VifRole : std::uint8_t {
    unadopted, // VifSelection::adopted_only and not adopted: left untouched
    served,    // a state machine runs it; VifInfo::phase says where it is
    rejected,  // the toolstack's keys do not parse: not served until they change
    forgotten, // served once, then detached or its guest died; kept until its folder goes
};
const char* to_string(VifRole r) noexcept;

// One vif as the CLI shows it.
struct VifInfo {
    engine::VifId id;
    std::string backend_path;
    std::string frontend_path; // empty while the toolstack's keys do not parse
    std::string domain_name;   // the guest's name, when it has one
    VifRole role = VifRole::unadopted;
    netif::Phase phase = netif::Phase::unprobed;
    netif::XenbusState backend_state = netif::XenbusState::unknown; // last state we wrote
    std::optional<netif::XenbusState> frontend_state; // last one read (nullopt: none/invalid)
    bool hotplug_ready = false;
    bool adopted = false; // handed over with adopt() (or served because of VifSelection::all)

    // The settings in effect (attached) or for the next connect.
    netif::MacAddress mac;
    engine::RxMode rx_mode = engine::RxMode::copy;
    std::string port;
    std::optional<std::uint16_t> rx_queue;

    bool attached = false;
    unsigned queues = 0;                         // attached queues
    std::optional<engine::VifStatus> data_plane; // DataPlane::status() while attached
    std::string rx_mode_reason;                  // the data plane's last mode fallback

    std::uint64_t connects = 0; // handshakes completed
    std::optional<ControlError> last_error_kind;
    std::string last_error;
};

class ControlPlane {
public:
    // Opens xenstore, sets the watches and scans the folders that exist (restart). The
    // hypervisor and the data plane must outlive the control plane.
    static Result<std::unique_ptr<ControlPlane>>
    create(const ControlOptions& options, hv::BackendHypervisor& hv, engine::DataPlane& data_plane);
    // Without shutdown() first: every vif is detached from the data plane and forgotten, and
    // xenstore is left as it is (what a crash leaves), so that a restarted daemon re-attaches
    // to the running frontends. Functions still queued with call() run first.
    ~ControlPlane();
    ControlPlane(const ControlPlane&) = delete;
    ControlPlane& operator=(const ControlPlane&) = delete;

    // --- event loop (control thread) ------------------------------------------------------

    // Readable (POLLIN) when process() has work: xenstore watch events, data-plane events,
    // functions queued with call(). Level-triggered.
    int fd() const noexcept;
    // Handles everything pending without blocking. Errors only when the control plane cannot
    // go on (the xenstore connection is gone, Errc::closed): the daemon should exit and be
    // restarted, which re-attaches every running vif.
    Status process();
    // poll(fd()) + process() until `stop` is requested or process() fails.
    Status run(std::stop_token stop);

    // --- operations (control thread) ------------------------------------------------------

    // Hands a vif over (dpnetbackctl attach, or the hotplug script). The folder must exist.
    // An unadopted or forgotten vif is served from the start; a served one takes the new
    // overrides: the RX mode at once (DataPlane::set_rx_mode), a new MAC, port or queue by
    // attaching the running vif again (resume). Errors: not_found (no folder, or a guest that
    // is gone), invalid_argument (its toolstack keys do not parse), and data-plane errors.
    Status adopt(const engine::VifId& id, const VifOverrides& overrides = {});
    // Gives a vif back (operator detach): disconnect, Closing, forgotten once the frontend
    // closed. Errc::not_found if it is not served.
    Status release(const engine::VifId& id);
    // Changes the RX mode of a vif, at once if it is attached; kept for its next connect.
    Status set_rx_mode(const engine::VifId& id, engine::RxMode mode);

    std::vector<VifInfo> list() const;
    Result<VifInfo> vif(const engine::VifId& id) const;

    // Graceful stop: every vif is detached (its grants released) and asked to close; waits up
    // to `timeout` for the frontends to answer Closed, then forgets the rest (left Closing).
    // No vif is served afterwards. Errc::again when some frontend did not answer in time.
    Status shutdown(std::chrono::milliseconds timeout);

    const ControlOptions& options() const noexcept;

    // --- any thread -----------------------------------------------------------------------

    ControlCounters counters() const;

    // Runs fn(*this) on the control thread (inside process()) and returns its result through
    // the future. The control plane must not be destroyed while another thread may call this.
    template <class F>
    auto call(F fn) -> std::future<std::invoke_result_t<F&, ControlPlane&>> {
        using R = std::invoke_result_t<F&, ControlPlane&>;
        auto task = std::make_shared<std::packaged_task<R()>>(
            [this, fn = std::move(fn)]() mutable { return fn(*this); });
        std::future<R> result = task->get_future();
        post([task] { (*task)(); });
        return result;
    }

    class Impl;

private:
    explicit ControlPlane(std::unique_ptr<Impl> impl);
    void post(std::function<void()> task);

    std::unique_ptr<Impl> impl_;
};

} // namespace dpnb::control
