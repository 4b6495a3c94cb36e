// The backend side of one vif's xenbus lifecycle, as an explicit transition table.
//
// Xen's split drivers meet through two `state` nodes in xenstore (io/xenbus.h): the
// frontend writes its own, the backend writes its own, and each watches the other. Linux
// netback (drivers/net/xen-netback/xenbus.c) spreads its side over frontend_changed() and
// set_backend_state(); here the same decisions are one table of data, rows of
// (phase, input) -> (next phase, effects, reason), so that every case can be read, logged,
// documented (docs/xenbus.md) and tested exhaustively.
//
// Phases refine the xenbus state the backend publishes: "connecting" and "hotplug_wait" both
// publish InitWait while a data-path connect is in flight or waits for the hotplug script,
// and "detaching" publishes Closing but, unlike "closing", ends by forgetting the vif.
//
// Inputs are the frontend's state (each of the nine values, plus `frontend_invalid` for a
// state node that does not parse) and local events raised by the daemon. Effects are an
// ordered list: state writes (Linux's shortest-path walk, e.g. Connected -> Closing ->
// Closed) interleaved with actions (publish features, connect / disconnect / reconfigure the
// data path, report an error, forget the vif) in the order the daemon must perform them.
//
// The machine is pure: no xenstore, no clock, no allocation (describe(), for logs, aside);
// the daemon performs the effects.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>

namespace dpnb::netif {

// enum xenbus_state (io/xenbus.h), same numbers.
enum class XenbusState : std::uint8_t {
    unknown = 0,
    initialising = 1,
    init_wait = 2,
    initialised = 3,
    connected = 4,
    closing = 5,
    closed = 6,
    reconfiguring = 7,
    reconfigured = 8,
};
inline constexpr std::size_t kXenbusStateCount = 9;

// Linux's xenbus_strstate() names: "Unknown", "Initialising", "InitWait", ...
const char* to_string(XenbusState s) noexcept;

// Where the backend is in the lifecycle of one vif.
enum class Phase : std::uint8_t {
    unprobed,     // known to the daemon, nothing published yet (toolstack wrote Initialising)
    init_wait,    // features published, InitWait written, waiting for the frontend
    connecting,   // frontend Connected, data-path connect in flight; publishes InitWait
    hotplug_wait, // data path connected, Connected held until hotplug-status says connected
    connected,    // Connected published, data path running
    reconfigured, // Reconfigured published (after frontend Reconfiguring), data path running
    closing,      // Closing published, data path down, waiting for the frontend to close
    closed,       // Closed published, data path down, waiting for the frontend to re-initialise
    detaching,    // Closing published on detach; the vif is forgotten once the frontend closed
    gone,         // forgotten: no more effects, every input ignored
};
inline constexpr std::size_t kPhaseCount = 10;
const char* to_string(Phase p) noexcept;

// The xenbus state a phase stands for (unprobed: Initialising, as the toolstack wrote it;
// gone: Unknown, dpnetback no longer speaks for the vif).
XenbusState published_state(Phase p) noexcept;

enum class Input : std::uint8_t {
    // The frontend's state node; numerically equal to XenbusState.
    frontend_unknown = 0, // also: the node (or the whole frontend folder) does not exist
    frontend_initialising,
    frontend_init_wait,
    frontend_initialised,
    frontend_connected,
    frontend_closing,
    frontend_closed,
    frontend_reconfiguring,
    frontend_reconfigured,
    frontend_invalid, // the node holds something parse_xenbus_state() rejects
    // Local events raised by the daemon.
    probe,           // the backend folder was found: publish features, go to InitWait
    connect_ok,      // the data-path connect issued by a connect_data_path effect succeeded
    connect_failed,  // ...failed (bad frontend config, grant map or bind failed), all undone
    hotplug_ready,   // hotplug-status = "connected" in the backend folder
    detach,          // operator detach, or the toolstack set online = 0 to remove the vif
    domain_gone,     // the frontend's domain is dying or destroyed (@releaseDomain)
    backend_removed, // the backend folder disappeared (the toolstack removed it)
    shutdown,        // the daemon stops; xenstore is left as is so a restart re-attaches
};
inline constexpr std::size_t kInputCount = 18;
inline constexpr std::size_t kFrontendInputCount = 10; // frontend_unknown .. frontend_invalid
const char* to_string(Input in) noexcept;

constexpr Input frontend_input(XenbusState s) noexcept {
    return static_cast<Input>(static_cast<std::uint8_t>(s));
}
constexpr bool is_frontend_input(Input in) noexcept {
    return static_cast<std::uint8_t>(in) < kFrontendInputCount;
}

enum class Action : std::uint8_t {
    write_state,           // write Effect::state to <backend>/state
    publish_features,      // write backend_feature_entries() (features.hpp) before InitWait
    connect_data_path,     // read the frontend config, map rings, bind ports, attach queues;
                           // report connect_ok / connect_failed when done
    disconnect_data_path,  // detach queues (quiescent point), unbind, unmap; also cancels a
                           // connect still in flight (its late outcome is then ignored)
    reconfigure_data_path, // re-read xdp-headroom and hand the queues an updated config
    report_error,          // write "<errno> <message>" to <self>/error/backend/vif/<d>/<h>/error
    forget,                // drop the vif and its watches; the toolstack owns the folders
};
const char* to_string(Action a) noexcept;

struct Effect {
    Action action = Action::write_state;
    XenbusState state = XenbusState::unknown; // only for write_state

    constexpr bool operator==(const Effect&) const = default;
};

constexpr Effect write_state(XenbusState s) noexcept {
    return Effect{Action::write_state, s};
}
constexpr Effect perform(Action a) noexcept {
    return Effect{a, XenbusState::unknown};
}

// A short ordered list of effects, held by value.
template <std::size_t N>
class EffectList {
public:
    constexpr EffectList() = default;
    constexpr EffectList(std::initializer_list<Effect> effects) {
        for (const Effect& e : effects)
            push(e);
    }
    // Capacities are sized for the table (a rule has at most kMaxRuleEffects, a step at most
    // two rules); the table is built at compile time, where an overflow does not compile.
    constexpr void push(Effect e) noexcept {
        if (size_ < N)
            items_[size_++] = e;
        else if (std::is_constant_evaluated())
            overflow_is_a_compile_error();
    }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const Effect* begin() const noexcept { return items_.data(); }
    constexpr const Effect* end() const noexcept { return items_.data() + size_; }
    constexpr const Effect& operator[](std::size_t i) const noexcept { return items_[i]; }
    constexpr bool contains(Action a) const noexcept {
        for (const Effect& e : *this)
            if (e.action == a) return true;
        return false;
    }

private:
    static void overflow_is_a_compile_error() noexcept {}

    std::array<Effect, N> items_{};
    std::size_t size_ = 0;
};

inline constexpr std::size_t kMaxRuleEffects = 4;
using RuleEffects = EffectList<kMaxRuleEffects>;

enum class RuleKind : std::uint8_t {
    normal,         // the expected protocol move (or an expected wait)
    ignored,        // stale or meaningless here; nothing to do
    protocol_error, // the frontend broke the protocol; report_error is among the effects
    unexpected,     // the daemon raised an event that cannot happen here: a dpnetback bug
};
const char* to_string(RuleKind k) noexcept;

struct Rule {
    Phase next = Phase::gone;
    RuleEffects effects;
    RuleKind kind = RuleKind::normal;
    // Connected must not be published before the hotplug script is done (as Linux defers it):
    // when set and hotplug is not ready yet, the machine goes to hotplug_wait instead of
    // `next` and performs no effect.
    bool hold_for_hotplug = false;
    const char* why = "";
};

// The transition table: one rule per (phase, input) pair, total (checked at compile time).
const Rule& rule(Phase p, Input in) noexcept;

// What one input did.
struct Step {
    Phase from = Phase::unprobed;
    Phase to = Phase::unprobed;
    Input input = Input::probe;
    const Rule* rule = nullptr;        // the row applied to `input`
    const Rule* replay_rule = nullptr; // the row applied to the remembered frontend state
    EffectList<2 * kMaxRuleEffects> effects;

    bool has(Action a) const noexcept { return effects.contains(a); }
    // The state writes, in order (at most four).
    EffectList<2 * kMaxRuleEffects> writes() const noexcept;
};

// One line for the control-plane log, e.g. "connected, frontend Closing -> closing:
// disconnect data path, write Closing [the frontend closes ...]". Allocates; not for the
// data path.
std::string describe(const Step& step);

// One vif's machine. Inputs are fed one at a time by the control-plane thread.
//
// Two rules live outside the table, both generic:
//  * hotplug readiness is sticky: hotplug_ready sets it in every phase (Linux keeps
//    hotplug-status until the vif is removed), and it gates Connected (Rule::hold_for_hotplug);
//  * the frontend state is a level, not an edge: the machine remembers the last one seen, and
//    when a local event moves it to another phase it applies that state once more to the new
//    phase (Linux re-reads the state node the same way). That is how a deferred frontend
//    transition seen during a connect takes effect when the connect completes, and how a
//    fresh daemon re-attaches to a frontend that is already Connected.
class VifStateMachine {
public:
    Step on(Input in) noexcept;
    Step on_frontend_state(XenbusState s) noexcept { return on(frontend_input(s)); }

    Phase phase() const noexcept { return phase_; }
    // The last state written by the effects so far (unknown before the first write).
    XenbusState written() const noexcept { return written_; }
    std::optional<Input> last_frontend_input() const noexcept { return frontend_; }
    bool hotplug_ready() const noexcept { return hotplug_ready_; }

private:
    void apply(const Rule& r, Step& step) noexcept;

    Phase phase_ = Phase::unprobed;
    XenbusState written_ = XenbusState::unknown;
    std::optional<Input> frontend_;
    bool hotplug_ready_ = false;
};

} // namespace dpnb::netif
