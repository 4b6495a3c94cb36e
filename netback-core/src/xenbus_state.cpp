// The vif xenbus transition table and the small machine that walks it. Each row says why;
// docs/xenbus.md renders the same table for operators. Rows name a phase and a set of inputs;
// the dense (phase x input) table is built from them at compile time, and the build fails
// if a pair is missing or covered twice.
#include "dpnb/netif/xenbus_state.hpp"

#include <cstdint>

namespace dpnb::netif {

namespace {

using S = XenbusState;
using A = Action;
using I = Input;
using P = Phase;

// --- input sets ---------------------------------------------------------------------------

using InputSet = std::uint32_t;

constexpr InputSet bit(Input in) {
    return InputSet{1} << static_cast<unsigned>(in);
}
constexpr InputSet set(std::initializer_list<Input> inputs) {
    InputSet s = 0;
    for (Input in : inputs)
        s |= bit(in);
    return s;
}

constexpr InputSet kAllFrontend = (InputSet{1} << kFrontendInputCount) - 1;
constexpr InputSet kAll = (InputSet{1} << kInputCount) - 1;
// States a frontend never writes: netif frontends do not use InitWait, Reconfigured is the
// backend's answer, and `invalid` did not parse. Linux netback's frontend_changed() treats
// all three as fatal ("saw state %d at frontend").
constexpr InputSet kFrontendBogus =
    set({I::frontend_init_wait, I::frontend_reconfigured, I::frontend_invalid});
constexpr InputSet kConnectOutcome = set({I::connect_ok, I::connect_failed});
// Events after which nothing of the vif must remain in the daemon, and nothing is written:
// the domain is dead, the toolstack removed the folder, or the daemon stops (and a restart
// re-attaches from what xenstore still says).
constexpr InputSet kDrop = set({I::domain_gone, I::backend_removed, I::shutdown});

constexpr Effect W(XenbusState s) {
    return write_state(s);
}
constexpr Effect Do(Action a) {
    return perform(a);
}

struct Row {
    Phase phase;
    InputSet inputs;
    Phase next;
    RuleEffects effects;
    RuleKind kind;
    const char* why;
    bool hold_for_hotplug = false;
};

constexpr RuleKind kNormal = RuleKind::normal;
constexpr RuleKind kIgnored = RuleKind::ignored;
constexpr RuleKind kProtocol = RuleKind::protocol_error;
constexpr RuleKind kUnexpected = RuleKind::unexpected;

// clang-format off
constexpr Row kRows[] = {
    // --- unprobed: the daemon knows the backend folder but has published nothing -----------
    {P::unprobed, kAllFrontend, P::unprobed, {}, kNormal,
     "not probed yet: the frontend state is remembered and applied after probe"},
    {P::unprobed, bit(I::probe), P::init_wait, {Do(A::publish_features), W(S::init_wait)}, kNormal,
     "publish the features first: a frontend reads them when it sees InitWait (netback_probe)"},
    {P::unprobed, kConnectOutcome, P::unprobed, {}, kUnexpected,
     "no connect was issued"},
    {P::unprobed, bit(I::hotplug_ready), P::unprobed, {}, kNormal,
     "remembered: it gates Connected later"},
    {P::unprobed, bit(I::detach), P::gone, {W(S::closed), Do(A::forget)}, kNormal,
     "nothing was offered: Closed at once (Initialising -> Closed) so the toolstack can finish"},
    {P::unprobed, kDrop, P::gone, {Do(A::forget)}, kNormal,
     "nothing published, nothing connected"},

    // --- init_wait: features and InitWait published, waiting for the frontend --------------
    {P::init_wait, bit(I::frontend_unknown), P::gone,
     {W(S::closing), W(S::closed), Do(A::forget)}, kNormal,
     "the frontend folder is gone: the device is being destroyed; close (InitWait -> Closing -> "
     "Closed, as Linux walks it) and forget"},
    {P::init_wait, set({I::frontend_initialising, I::frontend_initialised}), P::init_wait, {},
     kNormal,
     "the frontend is still setting up; like Linux netback, connect only on Connected"},
    {P::init_wait, bit(I::frontend_connected), P::connecting, {Do(A::connect_data_path)}, kNormal,
     "the frontend published its rings and event channels: read them and connect"},
    {P::init_wait, bit(I::frontend_closing), P::closing, {W(S::closing)}, kNormal,
     "the frontend gives up before connecting: acknowledge with Closing"},
    {P::init_wait, bit(I::frontend_closed), P::closed, {W(S::closing), W(S::closed)}, kNormal,
     "the frontend closed: follow it (through Closing, as Linux) and wait for it to re-initialise"},
    {P::init_wait, bit(I::frontend_reconfiguring), P::init_wait, {}, kIgnored,
     "nothing connected to reconfigure; xdp-headroom is read when the frontend connects"},
    {P::init_wait, kFrontendBogus, P::closing, {Do(A::report_error), W(S::closing)}, kProtocol,
     "a frontend never writes this state: report it and close, as Linux netback does"},
    {P::init_wait, bit(I::probe), P::init_wait, {}, kUnexpected,
     "probed twice"},
    {P::init_wait, kConnectOutcome, P::init_wait, {}, kUnexpected,
     "no connect was issued"},
    {P::init_wait, bit(I::hotplug_ready), P::init_wait, {}, kNormal,
     "remembered: it gates Connected later"},
    {P::init_wait, bit(I::detach), P::detaching, {W(S::closing)}, kNormal,
     "ask the frontend to close; forget the vif once it has"},
    {P::init_wait, kDrop, P::gone, {Do(A::forget)}, kNormal,
     "nothing connected; xenstore is left to the toolstack (or to the next daemon)"},

    // --- connecting: a data-path connect is in flight; InitWait still published ------------
    {P::connecting, kAllFrontend, P::connecting, {}, kNormal,
     "a connect is in flight: its outcome comes first; the frontend state is remembered and "
     "applied when it completes"},
    {P::connecting, bit(I::probe), P::connecting, {}, kUnexpected,
     "probed twice"},
    {P::connecting, bit(I::connect_ok), P::connected, {W(S::connected)}, kNormal,
     "the data path is up: tell the frontend (held until the hotplug script is done)", true},
    {P::connecting, bit(I::connect_failed), P::closing, {Do(A::report_error), W(S::closing)},
     kNormal,
     "the frontend's configuration was rejected or ring set-up failed (and was undone): report "
     "it and close, as xenbus_dev_fatal() does"},
    {P::connecting, bit(I::hotplug_ready), P::connecting, {}, kNormal,
     "remembered: it gates Connected"},
    {P::connecting, bit(I::detach), P::detaching, {Do(A::disconnect_data_path), W(S::closing)},
     kNormal,
     "cancel the connect and ask the frontend to close"},
    {P::connecting, kDrop, P::gone, {Do(A::disconnect_data_path), Do(A::forget)}, kNormal,
     "cancel the connect and forget the vif without writing anything"},

    // --- hotplug_wait: data path up, Connected held for the hotplug script ------------------
    {P::hotplug_wait, bit(I::frontend_unknown), P::gone,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed), Do(A::forget)}, kNormal,
     "the frontend folder is gone: disconnect, close and forget"},
    {P::hotplug_wait, bit(I::frontend_initialising), P::init_wait, {Do(A::disconnect_data_path)},
     kNormal,
     "the frontend restarted before it saw Connected; InitWait is still published, so tear "
     "down and wait for it to connect again"},
    {P::hotplug_wait,
     set({I::frontend_initialised, I::frontend_connected, I::frontend_reconfiguring}),
     P::hotplug_wait, {}, kNormal,
     "waiting for the hotplug script; a Reconfiguring request is applied once Connected is "
     "published"},
    {P::hotplug_wait, bit(I::frontend_closing), P::closing,
     {Do(A::disconnect_data_path), W(S::closing)}, kNormal,
     "the frontend closes: disconnect and acknowledge"},
    {P::hotplug_wait, bit(I::frontend_closed), P::closed,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed)}, kNormal,
     "the frontend closed: disconnect, follow it through Closing, wait for it to re-initialise"},
    {P::hotplug_wait, kFrontendBogus, P::closing,
     {Do(A::report_error), Do(A::disconnect_data_path), W(S::closing)}, kProtocol,
     "a frontend never writes this state: report it, disconnect and close"},
    {P::hotplug_wait, bit(I::probe) | kConnectOutcome, P::hotplug_wait, {}, kUnexpected,
     "already probed and connected"},
    {P::hotplug_wait, bit(I::hotplug_ready), P::connected, {W(S::connected)}, kNormal,
     "the hotplug script is done: publish the Connected that was held (hotplug_status_changed)"},
    {P::hotplug_wait, bit(I::detach), P::detaching, {Do(A::disconnect_data_path), W(S::closing)},
     kNormal,
     "disconnect and ask the frontend to close"},
    {P::hotplug_wait, kDrop, P::gone, {Do(A::disconnect_data_path), Do(A::forget)}, kNormal,
     "disconnect and forget the vif without writing anything"},

    // --- connected ----------------------------------------------------------------------------
    {P::connected, bit(I::frontend_unknown), P::gone,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed), Do(A::forget)}, kNormal,
     "the frontend folder is gone: disconnect, close and forget"},
    {P::connected, bit(I::frontend_initialising), P::init_wait,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed), W(S::init_wait)}, kNormal,
     "the frontend restarted without closing first: tear down and offer a fresh InitWait, "
     "walking Connected -> Closing -> Closed -> InitWait as Linux does"},
    {P::connected, set({I::frontend_initialised, I::frontend_connected}), P::connected, {},
     kNormal,
     "nothing new"},
    {P::connected, bit(I::frontend_closing), P::closing,
     {Do(A::disconnect_data_path), W(S::closing)}, kNormal,
     "the frontend closes (unplug, guest shutdown): disconnect and acknowledge"},
    {P::connected, bit(I::frontend_closed), P::closed,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed)}, kNormal,
     "the frontend closed without waiting for us: disconnect, walk Closing -> Closed, wait for "
     "it to re-initialise"},
    {P::connected, bit(I::frontend_reconfiguring), P::reconfigured,
     {Do(A::reconfigure_data_path), W(S::reconfigured)}, kNormal,
     "the frontend changed xdp-headroom (XDP program attached or removed): apply it, answer "
     "Reconfigured"},
    {P::connected, kFrontendBogus, P::closing,
     {Do(A::report_error), Do(A::disconnect_data_path), W(S::closing)}, kProtocol,
     "a frontend never writes this state: report it, disconnect and close"},
    {P::connected, bit(I::probe) | kConnectOutcome, P::connected, {}, kUnexpected,
     "already probed and connected"},
    {P::connected, bit(I::hotplug_ready), P::connected, {}, kIgnored,
     "already connected"},
    {P::connected, bit(I::detach), P::detaching, {Do(A::disconnect_data_path), W(S::closing)},
     kNormal,
     "disconnect and ask the frontend to close"},
    {P::connected, set({I::domain_gone, I::backend_removed}), P::gone,
     {Do(A::disconnect_data_path), Do(A::forget)}, kNormal,
     "nobody is left to talk to: disconnect and forget without writing anything"},
    {P::connected, bit(I::shutdown), P::gone, {Do(A::disconnect_data_path), Do(A::forget)},
     kNormal,
     "leave Connected in xenstore: the frontend keeps its rings and a restarted daemon "
     "re-attaches to them"},

    // --- reconfigured: Reconfigured published, data path running -----------------------------
    {P::reconfigured, bit(I::frontend_unknown), P::gone,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed), Do(A::forget)}, kNormal,
     "the frontend folder is gone: disconnect, close and forget"},
    {P::reconfigured, bit(I::frontend_initialising), P::init_wait,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed), W(S::init_wait)}, kNormal,
     "the frontend restarted without closing first: tear down and offer a fresh InitWait"},
    {P::reconfigured, set({I::frontend_initialised, I::frontend_reconfiguring}), P::reconfigured,
     {}, kNormal,
     "waiting for the frontend to finish reconfiguring"},
    {P::reconfigured, bit(I::frontend_connected), P::connected, {W(S::connected)}, kNormal,
     "reconfiguration done; Linux leaves Reconfigured published, dpnetback says Connected again"},
    {P::reconfigured, bit(I::frontend_closing), P::closing,
     {Do(A::disconnect_data_path), W(S::closing)}, kNormal,
     "the frontend closes: disconnect and acknowledge"},
    {P::reconfigured, bit(I::frontend_closed), P::closed,
     {Do(A::disconnect_data_path), W(S::closing), W(S::closed)}, kNormal,
     "the frontend closed: disconnect, walk Closing -> Closed, wait for it to re-initialise"},
    {P::reconfigured, kFrontendBogus, P::closing,
     {Do(A::report_error), Do(A::disconnect_data_path), W(S::closing)}, kProtocol,
     "a frontend never writes this state: report it, disconnect and close"},
    {P::reconfigured, bit(I::probe) | kConnectOutcome, P::reconfigured, {}, kUnexpected,
     "already probed and connected"},
    {P::reconfigured, bit(I::hotplug_ready), P::reconfigured, {}, kIgnored,
     "already connected"},
    {P::reconfigured, bit(I::detach), P::detaching,
     {Do(A::disconnect_data_path), W(S::closing)}, kNormal,
     "disconnect and ask the frontend to close"},
    {P::reconfigured, kDrop, P::gone, {Do(A::disconnect_data_path), Do(A::forget)}, kNormal,
     "disconnect and forget without writing anything"},

    // --- closing: Closing published, data path down, waiting for the frontend's Closed ------
    {P::closing, bit(I::frontend_unknown), P::gone, {W(S::closed), Do(A::forget)}, kNormal,
     "the frontend folder is gone: finish with Closed and forget"},
    {P::closing, bit(I::frontend_initialising), P::init_wait, {W(S::closed), W(S::init_wait)},
     kNormal,
     "the frontend re-initialises (kexec reset, reconnect): Closing -> Closed -> InitWait, as "
     "Linux walks it"},
    {P::closing, bit(I::frontend_closing), P::closing, {}, kNormal,
     "both sides closing: a netfront answers our Closing with Closed"},
    {P::closing, set({I::frontend_initialised, I::frontend_connected, I::frontend_reconfiguring}),
     P::closing, {}, kIgnored,
     "stale: the frontend has not seen our Closing yet. (Linux would reconnect on Connected "
     "here, which after a failed connect only fails again.)"},
    {P::closing, bit(I::frontend_closed), P::closed, {W(S::closed)}, kNormal,
     "the frontend acknowledged: Closed; wait for it to re-initialise"},
    {P::closing, kFrontendBogus, P::closing, {}, kIgnored,
     "already closing"},
    {P::closing, bit(I::probe) | kConnectOutcome, P::closing, {}, kUnexpected,
     "no connect is in flight"},
    {P::closing, bit(I::hotplug_ready), P::closing, {}, kNormal,
     "remembered: it gates Connected after a reconnect"},
    {P::closing, bit(I::detach), P::detaching, {}, kNormal,
     "already Closing: forget the vif once the frontend closed"},
    {P::closing, kDrop, P::gone, {Do(A::forget)}, kNormal,
     "nothing connected: forget the vif"},

    // --- closed: Closed published, waiting for the frontend to re-initialise -----------------
    {P::closed, bit(I::frontend_unknown), P::gone, {Do(A::forget)}, kNormal,
     "the frontend folder is gone: the device is being removed"},
    {P::closed, bit(I::frontend_initialising), P::init_wait, {W(S::init_wait)}, kNormal,
     "reconnect (guest driver reload, kexec): the features are still published, offer InitWait"},
    {P::closed, set({I::frontend_closing, I::frontend_closed}), P::closed, {}, kNormal,
     "the frontend is finishing its close"},
    {P::closed, set({I::frontend_initialised, I::frontend_connected, I::frontend_reconfiguring}),
     P::closed, {}, kIgnored,
     "stale: a new connection starts with Initialising"},
    {P::closed, kFrontendBogus, P::closed, {}, kIgnored,
     "closed: nothing to protect"},
    {P::closed, bit(I::probe) | kConnectOutcome, P::closed, {}, kUnexpected,
     "no connect is in flight"},
    {P::closed, bit(I::hotplug_ready), P::closed, {}, kNormal,
     "remembered: it gates Connected after a reconnect"},
    {P::closed, bit(I::detach), P::gone, {Do(A::forget)}, kNormal,
     "already Closed: nothing to wait for"},
    {P::closed, kDrop, P::gone, {Do(A::forget)}, kNormal,
     "nothing connected: forget the vif"},

    // --- detaching: Closing published on detach; forget once the frontend is not using it ----
    {P::detaching, set({I::frontend_unknown, I::frontend_initialising, I::frontend_closed}),
     P::gone, {W(S::closed), Do(A::forget)}, kNormal,
     "the frontend does not use the vif (gone, not connected, or closed): Closed, then forget; "
     "libxl removes the folders when it sees Closed"},
    {P::detaching,
     set({I::frontend_init_wait, I::frontend_initialised, I::frontend_connected,
          I::frontend_closing, I::frontend_reconfiguring, I::frontend_reconfigured,
          I::frontend_invalid}),
     P::detaching, {}, kNormal,
     "waiting for the frontend to close (if it never does, the toolstack removes the folders "
     "and backend_removed follows)"},
    {P::detaching, bit(I::probe), P::detaching, {}, kUnexpected,
     "probed twice"},
    {P::detaching, kConnectOutcome, P::detaching, {}, kIgnored,
     "the late outcome of a connect that the detach cancelled"},
    {P::detaching, set({I::hotplug_ready, I::detach}), P::detaching, {}, kIgnored,
     "already detaching"},
    {P::detaching, kDrop, P::gone, {Do(A::forget)}, kNormal,
     "nothing connected: forget the vif"},

    // --- gone: forgotten -----------------------------------------------------------------------
    {P::gone, kAll & ~bit(I::probe), P::gone, {}, kIgnored,
     "the vif is forgotten"},
    {P::gone, bit(I::probe), P::gone, {}, kUnexpected,
     "a forgotten vif is never probed again: a new backend folder gets a new machine"},
};
// clang-format on

struct Table {
    Rule rules[kPhaseCount][kInputCount]{};
    bool covered[kPhaseCount][kInputCount]{};
    bool complete = false;
    bool overlap = false;
};

constexpr Table build_table() {
    Table t;
    for (const Row& row : kRows) {
        for (std::size_t in = 0; in < kInputCount; ++in) {
            if ((row.inputs & (InputSet{1} << in)) == 0) continue;
            auto p = static_cast<std::size_t>(row.phase);
            if (t.covered[p][in]) t.overlap = true;
            t.covered[p][in] = true;
            t.rules[p][in] = Rule{row.next, row.effects, row.kind, row.hold_for_hotplug, row.why};
        }
    }
    t.complete = true;
    for (std::size_t p = 0; p < kPhaseCount; ++p)
        for (std::size_t in = 0; in < kInputCount; ++in)
            if (!t.covered[p][in]) t.complete = false;
    return t;
}

constexpr Table kTable = build_table();
static_assert(kTable.complete, "the vif transition table must have a rule for every pair");
static_assert(!kTable.overlap, "the vif transition table must have one rule per pair");

} // namespace

const char* to_string(XenbusState s) noexcept {
    switch (s) {
    case XenbusState::unknown:
        return "Unknown";
    case XenbusState::initialising:
        return "Initialising";
    case XenbusState::init_wait:
        return "InitWait";
    case XenbusState::initialised:
        return "Initialised";
    case XenbusState::connected:
        return "Connected";
    case XenbusState::closing:
        return "Closing";
    case XenbusState::closed:
        return "Closed";
    case XenbusState::reconfiguring:
        return "Reconfiguring";
    case XenbusState::reconfigured:
        return "Reconfigured";
    }
    return "invalid";
}

const char* to_string(Phase p) noexcept {
    switch (p) {
    case Phase::unprobed:
        return "unprobed";
    case Phase::init_wait:
        return "init_wait";
    case Phase::connecting:
        return "connecting";
    case Phase::hotplug_wait:
        return "hotplug_wait";
    case Phase::connected:
        return "connected";
    case Phase::reconfigured:
        return "reconfigured";
    case Phase::closing:
        return "closing";
    case Phase::closed:
        return "closed";
    case Phase::detaching:
        return "detaching";
    case Phase::gone:
        return "gone";
    }
    return "invalid";
}

XenbusState published_state(Phase p) noexcept {
    switch (p) {
    case Phase::unprobed:
        return XenbusState::initialising;
    case Phase::init_wait:
    case Phase::connecting:
    case Phase::hotplug_wait:
        return XenbusState::init_wait;
    case Phase::connected:
        return XenbusState::connected;
    case Phase::reconfigured:
        return XenbusState::reconfigured;
    case Phase::closing:
    case Phase::detaching:
        return XenbusState::closing;
    case Phase::closed:
        return XenbusState::closed;
    case Phase::gone:
        return XenbusState::unknown;
    }
    return XenbusState::unknown;
}

const char* to_string(Input in) noexcept {
    switch (in) {
    case Input::frontend_unknown:
        return "frontend Unknown";
    case Input::frontend_initialising:
        return "frontend Initialising";
    case Input::frontend_init_wait:
        return "frontend InitWait";
    case Input::frontend_initialised:
        return "frontend Initialised";
    case Input::frontend_connected:
        return "frontend Connected";
    case Input::frontend_closing:
        return "frontend Closing";
    case Input::frontend_closed:
        return "frontend Closed";
    case Input::frontend_reconfiguring:
        return "frontend Reconfiguring";
    case Input::frontend_reconfigured:
        return "frontend Reconfigured";
    case Input::frontend_invalid:
        return "frontend invalid state";
    case Input::probe:
        return "probe";
    case Input::connect_ok:
        return "connect ok";
    case Input::connect_failed:
        return "connect failed";
    case Input::hotplug_ready:
        return "hotplug ready";
    case Input::detach:
        return "detach";
    case Input::domain_gone:
        return "domain gone";
    case Input::backend_removed:
        return "backend removed";
    case Input::shutdown:
        return "shutdown";
    }
    return "invalid input";
}

const char* to_string(Action a) noexcept {
    switch (a) {
    case Action::write_state:
        return "write state";
    case Action::publish_features:
        return "publish features";
    case Action::connect_data_path:
        return "connect data path";
    case Action::disconnect_data_path:
        return "disconnect data path";
    case Action::reconfigure_data_path:
        return "reconfigure data path";
    case Action::report_error:
        return "report error";
    case Action::forget:
        return "forget";
    }
    return "invalid action";
}

const char* to_string(RuleKind k) noexcept {
    switch (k) {
    case RuleKind::normal:
        return "normal";
    case RuleKind::ignored:
        return "ignored";
    case RuleKind::protocol_error:
        return "protocol error";
    case RuleKind::unexpected:
        return "unexpected";
    }
    return "invalid";
}

const Rule& rule(Phase p, Input in) noexcept {
    auto pi = static_cast<std::size_t>(p);
    auto ii = static_cast<std::size_t>(in);
    // Enums come from our own code, but a corrupted value must not index out of bounds.
    if (pi >= kPhaseCount || ii >= kInputCount)
        return kTable
            .rules[static_cast<std::size_t>(Phase::gone)][static_cast<std::size_t>(Input::probe)];
    return kTable.rules[pi][ii];
}

EffectList<2 * kMaxRuleEffects> Step::writes() const noexcept {
    EffectList<2 * kMaxRuleEffects> out;
    for (const Effect& e : effects)
        if (e.action == Action::write_state) out.push(e);
    return out;
}

std::string describe(const Step& step) {
    std::string out = to_string(step.from);
    out += ", ";
    out += to_string(step.input);
    out += " -> ";
    out += to_string(step.to);
    out += ": ";
    if (step.effects.empty()) out += "nothing";
    for (std::size_t i = 0; i < step.effects.size(); ++i) {
        const Effect& e = step.effects[i];
        if (i != 0) out += ", ";
        if (e.action == Action::write_state) {
            out += "write ";
            out += to_string(e.state);
        } else {
            out += to_string(e.action);
        }
    }
    auto reason = [&out](const Rule* r, const char* prefix) {
        if (r == nullptr) return;
        out += prefix;
        if (r->kind != RuleKind::normal) {
            out += to_string(r->kind);
            out += ": ";
        }
        out += r->why;
        out += "]";
    };
    reason(step.rule, " [");
    if (step.replay_rule != nullptr)
        reason(step.replay_rule, " [then the remembered frontend state: ");
    return out;
}

void VifStateMachine::apply(const Rule& r, Step& step) noexcept {
    if (r.hold_for_hotplug && !hotplug_ready_) {
        phase_ = Phase::hotplug_wait;
        return;
    }
    for (const Effect& e : r.effects) {
        step.effects.push(e);
        if (e.action == Action::write_state) written_ = e.state;
    }
    phase_ = r.next;
}

Step VifStateMachine::on(Input in) noexcept {
    Step step;
    step.from = phase_;
    step.input = in;
    if (in == Input::hotplug_ready) hotplug_ready_ = true;
    if (is_frontend_input(in)) frontend_ = in;

    const Rule& r = rule(phase_, in);
    step.rule = &r;
    apply(r, step);

    // The frontend state is a level: after a local event moved us, apply it to the new phase.
    if (!is_frontend_input(in) && phase_ != step.from && frontend_.has_value()) {
        const Rule& again = rule(phase_, *frontend_);
        step.replay_rule = &again;
        apply(again, step);
    }
    step.to = phase_;
    return step;
}

} // namespace dpnb::netif
