// Tests of the vif xenbus state machine (dpnb/netif/xenbus_state.hpp): every (phase,
// frontend state) pair and every (phase, local event) pair against an expectation table
// written here independently of the implementation, properties every rule must have
// (legal state walks, data-path bookkeeping, idempotent frontend inputs), and the full
// lifecycles the daemon meets: connect, guest shutdown, guest crash, frontend reconnect,
// daemon restart re-attaching to a Connected frontend, detach, XDP reconfiguration.
#include <cctype>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/xenbus_state.hpp"

namespace nf = dpnb::netif;
using nf::Action;
using nf::Input;
using nf::Phase;
using nf::XenbusState;

namespace {

constexpr Phase kPhases[] = {
    Phase::unprobed,     Phase::init_wait, Phase::connecting, Phase::hotplug_wait, Phase::connected,
    Phase::reconfigured, Phase::closing,   Phase::closed,     Phase::detaching,    Phase::gone};
static_assert(std::size(kPhases) == nf::kPhaseCount);

Input input_at(std::size_t i) {
    return static_cast<Input>(i);
}

// Effects as text: actions by short name, writes as ">State".
std::string describe(const nf::EffectList<8>& effects) {
    std::string out;
    for (const nf::Effect& e : effects) {
        if (!out.empty()) out += ' ';
        switch (e.action) {
        case Action::write_state:
            out += '>';
            out += nf::to_string(e.state);
            break;
        case Action::publish_features:
            out += "publish";
            break;
        case Action::connect_data_path:
            out += "connect";
            break;
        case Action::disconnect_data_path:
            out += "disconnect";
            break;
        case Action::reconfigure_data_path:
            out += "reconfigure";
            break;
        case Action::report_error:
            out += "error";
            break;
        case Action::forget:
            out += "forget";
            break;
        }
    }
    return out;
}

// A machine driven, through real inputs, into `phase`. The frontend state it remembers and
// whether hotplug is ready are part of the fixture (they matter to replays):
//   unprobed      nothing seen
//   init_wait     probed; no frontend state seen
//   connecting    frontend Connected; hotplug not ready
//   hotplug_wait  connect ok, hotplug not ready; frontend Connected
//   connected     hotplug ready; frontend Connected
//   reconfigured  frontend Reconfiguring
//   closing       frontend Closing
//   closed        frontend Closed
//   detaching     detached while connected; frontend Connected
//   gone          shut down while connected
nf::VifStateMachine machine_in(Phase phase) {
    nf::VifStateMachine m;
    auto feed = [&m](std::initializer_list<Input> inputs) {
        for (Input in : inputs)
            (void)m.on(in);
    };
    switch (phase) {
    case Phase::unprobed:
        break;
    case Phase::init_wait:
        feed({Input::probe});
        break;
    case Phase::connecting:
        feed({Input::probe, Input::frontend_connected});
        break;
    case Phase::hotplug_wait:
        feed({Input::probe, Input::frontend_connected, Input::connect_ok});
        break;
    case Phase::connected:
        feed({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
        break;
    case Phase::reconfigured:
        feed({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok,
              Input::frontend_reconfiguring});
        break;
    case Phase::closing:
        feed({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok,
              Input::frontend_closing});
        break;
    case Phase::closed:
        feed({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok,
              Input::frontend_closing, Input::frontend_closed});
        break;
    case Phase::detaching:
        feed({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok,
              Input::detach});
        break;
    case Phase::gone:
        feed({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok,
              Input::shutdown});
        break;
    }
    return m;
}

struct Outcome {
    Phase next;
    const char* effects;
};

// ---- expected outcome of every (phase, frontend state) pair ------------------------------
// Columns: Unknown, Initialising, InitWait, Initialised, Connected, Closing, Closed,
// Reconfiguring, Reconfigured, invalid.
const Outcome kFrontendTable[nf::kPhaseCount][nf::kFrontendInputCount] = {
    // unprobed: remembered until probe
    {{Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""}},
    // init_wait
    {{Phase::gone, ">Closing >Closed forget"},
     {Phase::init_wait, ""},
     {Phase::closing, "error >Closing"},
     {Phase::init_wait, ""},
     {Phase::connecting, "connect"},
     {Phase::closing, ">Closing"},
     {Phase::closed, ">Closing >Closed"},
     {Phase::init_wait, ""},
     {Phase::closing, "error >Closing"},
     {Phase::closing, "error >Closing"}},
    // connecting: everything waits for the connect outcome
    {{Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""},
     {Phase::connecting, ""}},
    // hotplug_wait
    {{Phase::gone, "disconnect >Closing >Closed forget"},
     {Phase::init_wait, "disconnect"},
     {Phase::closing, "error disconnect >Closing"},
     {Phase::hotplug_wait, ""},
     {Phase::hotplug_wait, ""},
     {Phase::closing, "disconnect >Closing"},
     {Phase::closed, "disconnect >Closing >Closed"},
     {Phase::hotplug_wait, ""},
     {Phase::closing, "error disconnect >Closing"},
     {Phase::closing, "error disconnect >Closing"}},
    // connected
    {{Phase::gone, "disconnect >Closing >Closed forget"},
     {Phase::init_wait, "disconnect >Closing >Closed >InitWait"},
     {Phase::closing, "error disconnect >Closing"},
     {Phase::connected, ""},
     {Phase::connected, ""},
     {Phase::closing, "disconnect >Closing"},
     {Phase::closed, "disconnect >Closing >Closed"},
     {Phase::reconfigured, "reconfigure >Reconfigured"},
     {Phase::closing, "error disconnect >Closing"},
     {Phase::closing, "error disconnect >Closing"}},
    // reconfigured
    {{Phase::gone, "disconnect >Closing >Closed forget"},
     {Phase::init_wait, "disconnect >Closing >Closed >InitWait"},
     {Phase::closing, "error disconnect >Closing"},
     {Phase::reconfigured, ""},
     {Phase::connected, ">Connected"},
     {Phase::closing, "disconnect >Closing"},
     {Phase::closed, "disconnect >Closing >Closed"},
     {Phase::reconfigured, ""},
     {Phase::closing, "error disconnect >Closing"},
     {Phase::closing, "error disconnect >Closing"}},
    // closing
    {{Phase::gone, ">Closed forget"},
     {Phase::init_wait, ">Closed >InitWait"},
     {Phase::closing, ""},
     {Phase::closing, ""},
     {Phase::closing, ""},
     {Phase::closing, ""},
     {Phase::closed, ">Closed"},
     {Phase::closing, ""},
     {Phase::closing, ""},
     {Phase::closing, ""}},
    // closed
    {{Phase::gone, "forget"},
     {Phase::init_wait, ">InitWait"},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""}},
    // detaching
    {{Phase::gone, ">Closed forget"},
     {Phase::gone, ">Closed forget"},
     {Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::gone, ">Closed forget"},
     {Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::detaching, ""}},
    // gone
    {{Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""}},
};

// ---- expected outcome of every (phase, local event) pair, from machine_in(phase) ------------
// Columns: probe, connect_ok, connect_failed, hotplug_ready, detach, domain_gone,
// backend_removed, shutdown. Effects include the replay of the remembered frontend state.
constexpr std::size_t kLocalCount = nf::kInputCount - nf::kFrontendInputCount;
const Outcome kLocalTable[nf::kPhaseCount][kLocalCount] = {
    // unprobed (no frontend state seen)
    {{Phase::init_wait, "publish >InitWait"},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::unprobed, ""},
     {Phase::gone, ">Closed forget"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"}},
    // init_wait (no frontend state seen)
    {{Phase::init_wait, ""},
     {Phase::init_wait, ""},
     {Phase::init_wait, ""},
     {Phase::init_wait, ""},
     {Phase::detaching, ">Closing"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"}},
    // connecting (frontend Connected, hotplug not ready)
    {{Phase::connecting, ""},
     {Phase::hotplug_wait, ""},
     {Phase::closing, "error >Closing"},
     {Phase::connecting, ""},
     {Phase::detaching, "disconnect >Closing"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"}},
    // hotplug_wait (frontend Connected)
    {{Phase::hotplug_wait, ""},
     {Phase::hotplug_wait, ""},
     {Phase::hotplug_wait, ""},
     {Phase::connected, ">Connected"},
     {Phase::detaching, "disconnect >Closing"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"}},
    // connected (frontend Connected)
    {{Phase::connected, ""},
     {Phase::connected, ""},
     {Phase::connected, ""},
     {Phase::connected, ""},
     {Phase::detaching, "disconnect >Closing"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"}},
    // reconfigured (frontend Reconfiguring)
    {{Phase::reconfigured, ""},
     {Phase::reconfigured, ""},
     {Phase::reconfigured, ""},
     {Phase::reconfigured, ""},
     {Phase::detaching, "disconnect >Closing"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"},
     {Phase::gone, "disconnect forget"}},
    // closing (frontend Closing)
    {{Phase::closing, ""},
     {Phase::closing, ""},
     {Phase::closing, ""},
     {Phase::closing, ""},
     {Phase::detaching, ""},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"}},
    // closed (frontend Closed)
    {{Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::closed, ""},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"}},
    // detaching (frontend Connected)
    {{Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::detaching, ""},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"},
     {Phase::gone, "forget"}},
    // gone
    {{Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""},
     {Phase::gone, ""}},
};

struct Pair {
    Phase phase;
    std::size_t input;
};

void PrintTo(const Pair& p, std::ostream* os) {
    *os << nf::to_string(p.phase) << " x " << nf::to_string(input_at(p.input));
}

std::vector<Pair> frontend_pairs() {
    std::vector<Pair> out;
    for (Phase p : kPhases)
        for (std::size_t i = 0; i < nf::kFrontendInputCount; ++i)
            out.push_back({p, i});
    return out;
}

std::vector<Pair> local_pairs() {
    std::vector<Pair> out;
    for (Phase p : kPhases)
        for (std::size_t i = nf::kFrontendInputCount; i < nf::kInputCount; ++i)
            out.push_back({p, i});
    return out;
}

std::string pair_name(const ::testing::TestParamInfo<Pair>& info) {
    std::string name = std::string(nf::to_string(info.param.phase)) + "_" +
                       nf::to_string(input_at(info.param.input));
    for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    return name;
}

class FrontendPair : public ::testing::TestWithParam<Pair> {};
class LocalPair : public ::testing::TestWithParam<Pair> {};

} // namespace

TEST(XenbusFixture, MachinesReachTheirPhases) {
    for (Phase p : kPhases) {
        EXPECT_EQ(machine_in(p).phase(), p) << nf::to_string(p);
    }
}

TEST_P(FrontendPair, MatchesTheExpectationTable) {
    const auto [phase, index] = GetParam();
    nf::VifStateMachine m = machine_in(phase);
    const nf::Step step = m.on(input_at(index));
    const Outcome& want = kFrontendTable[static_cast<std::size_t>(phase)][index];
    EXPECT_EQ(step.from, phase);
    EXPECT_EQ(step.to, want.next) << nf::to_string(step.to) << " / " << step.rule->why;
    EXPECT_EQ(m.phase(), want.next);
    EXPECT_EQ(describe(step.effects), want.effects) << step.rule->why;
    EXPECT_EQ(step.replay_rule, nullptr); // frontend inputs are never replayed
    ASSERT_TRUE(m.last_frontend_input().has_value());
    EXPECT_EQ(*m.last_frontend_input(), input_at(index));
    EXPECT_STRNE(step.rule->why, "");
}

INSTANTIATE_TEST_SUITE_P(AllPairs, FrontendPair, ::testing::ValuesIn(frontend_pairs()), pair_name);

TEST_P(LocalPair, MatchesTheExpectationTable) {
    const auto [phase, index] = GetParam();
    nf::VifStateMachine m = machine_in(phase);
    const nf::Step step = m.on(input_at(index));
    const Outcome& want =
        kLocalTable[static_cast<std::size_t>(phase)][index - nf::kFrontendInputCount];
    EXPECT_EQ(step.to, want.next) << nf::to_string(step.to) << " / " << step.rule->why;
    EXPECT_EQ(describe(step.effects), want.effects) << step.rule->why;
    EXPECT_STRNE(step.rule->why, "");
}

INSTANTIATE_TEST_SUITE_P(AllPairs, LocalPair, ::testing::ValuesIn(local_pairs()), pair_name);

// ---- properties of every rule in the table ----------------------------------------------------

namespace {

enum class DataPath { down, pending, up };

DataPath data_path(Phase p) {
    switch (p) {
    case Phase::connecting:
        return DataPath::pending;
    case Phase::hotplug_wait:
    case Phase::connected:
    case Phase::reconfigured:
        return DataPath::up;
    default:
        return DataPath::down;
    }
}

// The backend state graph Linux's set_backend_state() walks, plus Connected <->
// Reconfigured and Reconfigured -> Closing (a reconfigured backend is a connected one).
bool legal_edge(XenbusState from, XenbusState to) {
    using S = XenbusState;
    switch (from) {
    case S::unknown:
    case S::initialising:
        return to == S::init_wait || to == S::closed;
    case S::init_wait:
        return to == S::connected || to == S::closing;
    case S::connected:
        return to == S::closing || to == S::reconfigured;
    case S::reconfigured:
        return to == S::connected || to == S::closing;
    case S::closing:
        return to == S::closed;
    case S::closed:
        return to == S::init_wait || to == S::closing;
    default:
        return false;
    }
}

} // namespace

TEST(XenbusTable, EveryRuleWalksLegalEdgesAndLandsOnThePublishedState) {
    for (Phase p : kPhases) {
        for (std::size_t i = 0; i < nf::kInputCount; ++i) {
            const nf::Rule& r = nf::rule(p, input_at(i));
            SCOPED_TRACE(std::string(nf::to_string(p)) + " x " + nf::to_string(input_at(i)));
            XenbusState at = nf::published_state(p);
            bool wrote = false;
            for (const nf::Effect& e : r.effects) {
                if (e.action != Action::write_state) continue;
                EXPECT_TRUE(legal_edge(at, e.state))
                    << nf::to_string(at) << " -> " << nf::to_string(e.state);
                at = e.state;
                wrote = true;
            }
            if (p == Phase::gone || r.next == Phase::gone) continue;
            if (wrote) {
                EXPECT_EQ(at, nf::published_state(r.next));
            } else {
                EXPECT_EQ(nf::published_state(p), nf::published_state(r.next));
            }
            if (r.hold_for_hotplug) {
                EXPECT_EQ(nf::published_state(p), nf::published_state(Phase::hotplug_wait));
            }
        }
    }
}

TEST(XenbusTable, EveryRuleKeepsTheDataPathBooks) {
    for (Phase p : kPhases) {
        for (std::size_t i = 0; i < nf::kInputCount; ++i) {
            const Input in = input_at(i);
            const nf::Rule& r = nf::rule(p, in);
            SCOPED_TRACE(std::string(nf::to_string(p)) + " x " + nf::to_string(in));
            const DataPath before = data_path(p);
            const DataPath after = data_path(r.next);
            const bool connects = r.effects.contains(Action::connect_data_path);
            const bool disconnects = r.effects.contains(Action::disconnect_data_path);
            // A connect starts only from nothing and always lands in `connecting`.
            EXPECT_EQ(connects, before == DataPath::down && after == DataPath::pending);
            // Whatever was connected or connecting is disconnected when the rule leaves it,
            // except when the connect itself failed (it undid its own work).
            const bool failed_connect = p == Phase::connecting && in == Input::connect_failed;
            EXPECT_EQ(disconnects,
                      before != DataPath::down && after == DataPath::down && !failed_connect);
            // Reconfigure only while connected.
            if (r.effects.contains(Action::reconfigure_data_path)) {
                EXPECT_TRUE(before == DataPath::up && after == DataPath::up);
            }
            // pending -> up only through connect_ok.
            if (before == DataPath::pending && after == DataPath::up) {
                EXPECT_EQ(in, Input::connect_ok);
            }
            // Features are published once, on probe.
            EXPECT_EQ(r.effects.contains(Action::publish_features),
                      p == Phase::unprobed && in == Input::probe);
            // Forget exactly when the vif goes away, and as the last effect.
            const bool forgets = r.effects.contains(Action::forget);
            EXPECT_EQ(forgets, p != Phase::gone && r.next == Phase::gone);
            if (forgets) {
                EXPECT_EQ(r.effects[r.effects.size() - 1].action, Action::forget);
            }
            // Errors are reported for frontend protocol errors and failed connects only.
            EXPECT_EQ(r.effects.contains(Action::report_error),
                      r.kind == nf::RuleKind::protocol_error || failed_connect);
            // Ignored and unexpected rules change nothing.
            if (r.kind == nf::RuleKind::ignored || r.kind == nf::RuleKind::unexpected) {
                EXPECT_EQ(r.next, p);
                EXPECT_TRUE(r.effects.empty());
            }
            EXPECT_STRNE(r.why, "");
        }
    }
}

TEST(XenbusTable, FrontendInputsAreIdempotent) {
    // Watches fire again for the same value; a repeated frontend state must do nothing more.
    for (Phase p : kPhases) {
        for (std::size_t i = 0; i < nf::kFrontendInputCount; ++i) {
            const Input in = input_at(i);
            nf::VifStateMachine m = machine_in(p);
            (void)m.on(in);
            const Phase after_first = m.phase();
            const nf::Step second = m.on(in);
            EXPECT_EQ(second.to, after_first) << nf::to_string(p) << " x " << nf::to_string(in);
            EXPECT_TRUE(second.effects.empty()) << nf::to_string(p) << " x " << nf::to_string(in);
        }
    }
}

TEST(XenbusTable, OnlyTheConnectOutcomeIsHeldForHotplug) {
    for (Phase p : kPhases)
        for (std::size_t i = 0; i < nf::kInputCount; ++i) {
            EXPECT_EQ(nf::rule(p, input_at(i)).hold_for_hotplug,
                      p == Phase::connecting && input_at(i) == Input::connect_ok);
        }
}

TEST(XenbusNames, AreDistinctAndNonEmpty) {
    std::set<std::string> names;
    for (Phase p : kPhases) {
        EXPECT_TRUE(names.insert(nf::to_string(p)).second);
    }
    names.clear();
    for (std::size_t i = 0; i < nf::kInputCount; ++i) {
        EXPECT_TRUE(names.insert(nf::to_string(input_at(i))).second);
    }
    names.clear();
    for (std::size_t s = 0; s < nf::kXenbusStateCount; ++s) {
        EXPECT_TRUE(names.insert(nf::to_string(static_cast<XenbusState>(s))).second);
    }
    EXPECT_STREQ(nf::to_string(XenbusState::init_wait), "InitWait");
    EXPECT_STREQ(nf::to_string(XenbusState::connected), "Connected");
    EXPECT_STREQ(nf::to_string(static_cast<XenbusState>(9)), "invalid");
    EXPECT_STREQ(nf::to_string(Action::forget), "forget");
    EXPECT_STREQ(nf::to_string(nf::RuleKind::protocol_error), "protocol error");
    for (std::size_t s = 0; s < nf::kXenbusStateCount; ++s) {
        EXPECT_EQ(nf::frontend_input(static_cast<XenbusState>(s)), input_at(s));
    }
}

// ---- lifecycles --------------------------------------------------------------------------------

namespace {

// Feeds inputs and collects the effects, as the daemon would perform them.
struct Driver {
    nf::VifStateMachine m;
    std::string run(std::initializer_list<Input> inputs) {
        std::string all;
        for (Input in : inputs) {
            const std::string one = describe(m.on(in).effects);
            if (!one.empty()) all += (all.empty() ? "" : " | ") + one;
        }
        return all;
    }
};

} // namespace

TEST(XenbusLifecycle, NormalConnectAtDomainCreation) {
    // libxl: backend folder (Initialising), waits for InitWait, runs the hotplug script,
    // unpauses the guest; netfront then writes its keys and goes Connected.
    Driver d;
    EXPECT_EQ(d.run({Input::probe}), "publish >InitWait");
    EXPECT_EQ(d.run({Input::hotplug_ready, Input::frontend_initialising}), "");
    EXPECT_EQ(d.run({Input::frontend_connected}), "connect");
    EXPECT_EQ(d.m.phase(), Phase::connecting);
    EXPECT_EQ(d.run({Input::connect_ok}), ">Connected");
    EXPECT_EQ(d.m.phase(), Phase::connected);
    EXPECT_EQ(d.m.written(), XenbusState::connected);
}

TEST(XenbusLifecycle, HotplugLateHoldsConnected) {
    // Hot-plugged vif: netfront connects before the hotplug script is done.
    Driver d;
    EXPECT_EQ(d.run({Input::probe, Input::frontend_connected}), "publish >InitWait | connect");
    EXPECT_EQ(d.run({Input::connect_ok}), "");
    EXPECT_EQ(d.m.phase(), Phase::hotplug_wait);
    EXPECT_EQ(d.m.written(), XenbusState::init_wait);
    EXPECT_EQ(d.run({Input::hotplug_ready}), ">Connected");
    EXPECT_EQ(d.m.phase(), Phase::connected);
}

TEST(XenbusLifecycle, GuestShutdown) {
    // xenbus_dev_shutdown(): frontend Closing, waits for our Closing, answers Closed; then
    // the toolstack destroys the domain.
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::frontend_closing}), "disconnect >Closing");
    EXPECT_EQ(d.run({Input::frontend_closed}), ">Closed");
    EXPECT_EQ(d.m.phase(), Phase::closed);
    EXPECT_EQ(d.run({Input::domain_gone}), "forget");
    EXPECT_EQ(d.run({Input::frontend_unknown, Input::backend_removed}), "");
}

TEST(XenbusLifecycle, GuestCrash) {
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::domain_gone}), "disconnect forget");
    EXPECT_EQ(d.m.phase(), Phase::gone);
    EXPECT_EQ(d.m.written(), XenbusState::connected); // nothing written for a dead domain
    EXPECT_EQ(d.run({Input::frontend_unknown, Input::backend_removed}), "");
}

TEST(XenbusLifecycle, GuestCrashSeenAsFrontendFolderRemoval) {
    // The toolstack removed the frontend folder before @releaseDomain reached us.
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::frontend_unknown}), "disconnect >Closing >Closed forget");
    EXPECT_EQ(d.run({Input::domain_gone}), "");
}

TEST(XenbusLifecycle, FrontendReconnectsWithoutBackendRestart) {
    // Guest kexec (xenbus_reset_frontend: Closing, Closed, Initialising) or driver re-probe.
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::frontend_closing}), "disconnect >Closing");
    EXPECT_EQ(d.run({Input::frontend_closed}), ">Closed");
    EXPECT_EQ(d.run({Input::frontend_initialising}), ">InitWait");
    EXPECT_EQ(d.run({Input::frontend_connected}), "connect");
    EXPECT_EQ(d.run({Input::connect_ok}), ">Connected");
    EXPECT_EQ(d.m.phase(), Phase::connected);
}

TEST(XenbusLifecycle, FrontendRestartsWithoutClosing) {
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::frontend_initialising}), "disconnect >Closing >Closed >InitWait");
    EXPECT_EQ(d.run({Input::frontend_connected, Input::connect_ok}), "connect | >Connected");
}

TEST(XenbusLifecycle, DaemonRestartReattachesToAConnectedFrontend) {
    // The old daemon stops (or crashes) while the guest is Connected: nothing is written,
    // the frontend keeps its rings, grants and (now unbound) event channels.
    nf::VifStateMachine old_daemon = machine_in(Phase::connected);
    const nf::Step stop = old_daemon.on(Input::shutdown);
    EXPECT_EQ(describe(stop.effects), "disconnect forget");
    EXPECT_EQ(old_daemon.written(), XenbusState::connected);

    // The new daemon finds backend state 4, frontend state 4 and hotplug-status connected.
    // It probes (netfront ignores InitWait unless it is Initialising), reads the frontend's
    // existing keys, reconnects to the same rings, and says Connected again (netfront then
    // only sends gratuitous ARPs).
    Driver d;
    EXPECT_EQ(d.run({Input::probe, Input::hotplug_ready}), "publish >InitWait");
    EXPECT_EQ(d.run({Input::frontend_connected}), "connect");
    EXPECT_EQ(d.run({Input::connect_ok}), ">Connected");

    // The same when the daemon reads the frontend state before probing: the remembered state
    // is applied after probe.
    Driver e;
    EXPECT_EQ(e.run({Input::frontend_connected, Input::hotplug_ready}), "");
    EXPECT_EQ(e.run({Input::probe}), "publish >InitWait connect");
    EXPECT_EQ(e.run({Input::connect_ok}), ">Connected");
}

TEST(XenbusLifecycle, DaemonRestartWhenTheOldRingsAreUnusable) {
    // Re-attach fails (e.g. the frontend revoked its grants): close; netfront answers with
    // Closed and stays there until the toolstack re-plugs the vif or the guest re-probes.
    Driver d;
    d.run({Input::frontend_connected, Input::hotplug_ready, Input::probe});
    EXPECT_EQ(d.run({Input::connect_failed}), "error >Closing");
    EXPECT_EQ(d.run({Input::frontend_connected}), ""); // stale: no reconnect loop
    EXPECT_EQ(d.run({Input::frontend_closed}), ">Closed");
    EXPECT_EQ(d.run({Input::frontend_initialising}), ">InitWait");
}

TEST(XenbusLifecycle, FrontendChangesDuringTheConnectApplyAfterIt) {
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected});
    EXPECT_EQ(d.run({Input::frontend_closing}), "");
    EXPECT_EQ(d.m.phase(), Phase::connecting);
    EXPECT_EQ(d.run({Input::connect_ok}), ">Connected disconnect >Closing");
    EXPECT_EQ(d.m.phase(), Phase::closing);
}

TEST(XenbusLifecycle, ToolstackDetach) {
    // xl network-detach: online = 0 (and backend state 5); netfront closes.
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::detach}), "disconnect >Closing");
    EXPECT_EQ(d.run({Input::frontend_closing}), "");
    EXPECT_EQ(d.run({Input::frontend_closed}), ">Closed forget");
    EXPECT_EQ(d.m.phase(), Phase::gone);
}

TEST(XenbusLifecycle, DetachWithoutAFrontendDriver) {
    // The guest never loaded netfront: the frontend stays Initialising; nothing to wait for.
    Driver d;
    d.run({Input::probe, Input::frontend_initialising});
    EXPECT_EQ(d.run({Input::detach}), ">Closing >Closed forget");
    EXPECT_EQ(d.m.phase(), Phase::gone);
}

TEST(XenbusLifecycle, DetachDuringConnectCancelsIt) {
    Driver d;
    d.run({Input::probe, Input::frontend_connected});
    EXPECT_EQ(d.run({Input::detach}), "disconnect >Closing");
    EXPECT_EQ(d.run({Input::connect_ok}), ""); // the cancelled connect reports late
    EXPECT_EQ(d.run({Input::frontend_closed}), ">Closed forget");
}

TEST(XenbusLifecycle, XdpReconfiguration) {
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::frontend_reconfiguring}), "reconfigure >Reconfigured");
    EXPECT_EQ(d.run({Input::frontend_connected}), ">Connected");
    EXPECT_EQ(d.m.phase(), Phase::connected);
}

TEST(XenbusLifecycle, ReconfigureBeforeHotplugIsAppliedOnceConnected) {
    Driver d;
    d.run({Input::probe, Input::frontend_connected, Input::connect_ok});
    EXPECT_EQ(d.run({Input::frontend_reconfiguring}), "");
    EXPECT_EQ(d.run({Input::hotplug_ready}), ">Connected reconfigure >Reconfigured");
}

TEST(XenbusLifecycle, FrontendProtocolErrorClosesTheVif) {
    Driver d;
    d.run({Input::probe, Input::hotplug_ready, Input::frontend_connected, Input::connect_ok});
    const nf::Step bad = d.m.on(Input::frontend_invalid);
    EXPECT_EQ(bad.rule->kind, nf::RuleKind::protocol_error);
    EXPECT_EQ(describe(bad.effects), "error disconnect >Closing");
    EXPECT_EQ(d.run({Input::frontend_invalid}), ""); // reported once
    EXPECT_EQ(d.run({Input::frontend_closed, Input::frontend_initialising}), ">Closed | >InitWait");
}

TEST(XenbusLog, DescribesAStepOnOneLine) {
    nf::VifStateMachine m = machine_in(Phase::connected);
    EXPECT_EQ(nf::describe(m.on(Input::frontend_closing)),
              "connected, frontend Closing -> closing: disconnect data path, write Closing "
              "[the frontend closes (unplug, guest shutdown): disconnect and acknowledge]");
    EXPECT_EQ(nf::describe(m.on(Input::probe)),
              "closing, probe -> closing: nothing [unexpected: no connect is in flight]");
    nf::VifStateMachine fresh;
    (void)fresh.on(Input::frontend_connected);
    const std::string line = nf::describe(fresh.on(Input::probe));
    EXPECT_EQ(line.rfind("unprobed, probe -> connecting: publish features, write InitWait, "
                         "connect data path [publish the features first",
                         0),
              0U)
        << line;
    EXPECT_NE(line.find("[then the remembered frontend state: the frontend published its rings"),
              std::string::npos)
        << line;
}

TEST(XenbusLifecycle, UnexpectedEventsAreFlaggedAndChangeNothing) {
    nf::VifStateMachine m = machine_in(Phase::connected);
    for (Input in : {Input::probe, Input::connect_ok, Input::connect_failed}) {
        const nf::Step s = m.on(in);
        EXPECT_EQ(s.rule->kind, nf::RuleKind::unexpected) << nf::to_string(in);
        EXPECT_TRUE(s.effects.empty());
        EXPECT_EQ(m.phase(), Phase::connected);
    }
}

// ---- random walks --------------------------------------------------------------------------

TEST(XenbusWalk, RandomInputsKeepEveryInvariant) {
    std::mt19937 rng(20240601);
    std::uniform_int_distribution<std::size_t> pick(0, nf::kInputCount - 1);
    for (int walk = 0; walk < 300; ++walk) {
        nf::VifStateMachine m;
        DataPath dp = DataPath::down;
        bool forgotten = false;
        XenbusState at = XenbusState::initialising;
        for (int step_no = 0; step_no < 60; ++step_no) {
            const Input in = input_at(pick(rng));
            const Phase before = m.phase();
            const nf::Step s = m.on(in);
            ASSERT_EQ(s.from, before);
            ASSERT_EQ(s.to, m.phase());
            if (forgotten) {
                ASSERT_TRUE(s.effects.empty());
            }
            for (const nf::Effect& e : s.effects) {
                switch (e.action) {
                case Action::write_state:
                    ASSERT_TRUE(legal_edge(at, e.state))
                        << nf::to_string(at) << " -> " << nf::to_string(e.state);
                    at = e.state;
                    break;
                case Action::connect_data_path:
                    ASSERT_EQ(dp, DataPath::down);
                    dp = DataPath::pending;
                    break;
                case Action::disconnect_data_path:
                    ASSERT_NE(dp, DataPath::down);
                    dp = DataPath::down;
                    break;
                case Action::forget:
                    ASSERT_FALSE(forgotten);
                    forgotten = true;
                    break;
                default:
                    break;
                }
            }
            if (before == Phase::connecting && in == Input::connect_ok && dp == DataPath::pending)
                dp = DataPath::up;
            if (before == Phase::connecting && in == Input::connect_failed) dp = DataPath::down;
            if (m.phase() != Phase::gone) {
                ASSERT_EQ(dp, data_path(m.phase())) << nf::to_string(m.phase());
                ASSERT_EQ(at, nf::published_state(m.phase()));
            } else {
                ASSERT_EQ(dp, DataPath::down);
                ASSERT_TRUE(forgotten);
            }
        }
    }
}

// ---- docs/xenbus.md carries the table as the code has it -------------------------------------

namespace {

std::string effect_text(const nf::RuleEffects& effects) {
    std::string out;
    for (const nf::Effect& e : effects) {
        if (!out.empty()) out += ", ";
        out += e.action == Action::write_state ? std::string("write ") + nf::to_string(e.state)
                                               : std::string(nf::to_string(e.action));
    }
    return out.empty() ? "-" : out;
}

// One markdown table per phase; inputs that share a rule share a row.
std::string render_table() {
    std::string md;
    for (Phase p : kPhases) {
        md += "#### ";
        md += nf::to_string(p);
        md += " (publishes ";
        md += nf::to_string(nf::published_state(p));
        md += ")\n\n| input | next | effects | why |\n| --- | --- | --- | --- |\n";
        std::vector<bool> done(nf::kInputCount, false);
        for (std::size_t i = 0; i < nf::kInputCount; ++i) {
            if (done[i]) continue;
            const nf::Rule& r = nf::rule(p, input_at(i));
            std::string inputs;
            for (std::size_t j = i; j < nf::kInputCount; ++j) {
                const nf::Rule& other = nf::rule(p, input_at(j));
                const bool same = other.next == r.next && other.kind == r.kind &&
                                  other.hold_for_hotplug == r.hold_for_hotplug &&
                                  effect_text(other.effects) == effect_text(r.effects) &&
                                  std::string(other.why) == r.why;
                if (!same) continue;
                done[j] = true;
                inputs += (inputs.empty() ? "" : ", ") + std::string(nf::to_string(input_at(j)));
            }
            std::string next = nf::to_string(r.next);
            if (r.hold_for_hotplug) next += " (hotplug_wait, no effect, until hotplug ready)";
            std::string why = r.why;
            if (r.kind != nf::RuleKind::normal)
                why = "*" + std::string(nf::to_string(r.kind)) + "*: " + why;
            md += "| " + inputs + " | " + next + " | " + effect_text(r.effects) + " | " + why +
                  " |\n";
        }
        md += "\n";
    }
    return md;
}

} // namespace

TEST(XenbusDocs, TheDocumentedTableIsTheCodesTable) {
    std::string here = __FILE__;
    const std::string doc_path = here.substr(0, here.rfind("/tests/unit/")) + "/docs/xenbus.md";
    std::ifstream in(doc_path);
    ASSERT_TRUE(in.good()) << "cannot read " << doc_path;
    const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string begin = "<!-- BEGIN TRANSITION TABLE (generated by xenbus_state_test) -->\n";
    const std::string end = "<!-- END TRANSITION TABLE -->";
    const auto b = doc.find(begin);
    const auto e = doc.find(end);
    ASSERT_NE(b, std::string::npos);
    ASSERT_NE(e, std::string::npos);
    const std::string documented = doc.substr(b + begin.size(), e - b - begin.size());
    const std::string generated = render_table();
    EXPECT_EQ(documented, generated) << "docs/xenbus.md is out of date; the table is:\n"
                                     << generated;
}
