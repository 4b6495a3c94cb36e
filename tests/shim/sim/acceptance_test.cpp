// The acceptance test of the simulated hypervisor: ONE backend process and TWO guest
// processes (alice and bob) exchange grants, events and xenstore state through the
// hypervisor interfaces only (BackendHypervisor, GuestHypervisor), the way a netback and its
// netfronts do:
//
//   toolstack (this test process)   creates the domains and their device folders in xenstore
//   guest                           shares a ring page, an RX page and a translation-table
//                                   buffer, allocates an event channel, publishes them in
//                                   xenstore, says "ping" on the ring and kicks the backend
//   backend                         follows xenstore (watches), maps the ring, binds the
//                                   channel, answers with a grant copy into the RX page and a
//                                   "NIC write" into the buffer it finds in the translation
//                                   table, and kicks back
//   then                            bob disconnects in order (xenbus Closing/Closed, every
//                                   grant revoked), alice is destroyed under the backend's
//                                   feet (it learns from @releaseDomain and cleans up), and
//                                   the hypervisor is left with nothing pinned, bound or leaked
//
// The processes never talk to each other except through the hypervisor; the Links to the
// test process only report progress and say when to go on.
#include <poll.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "dpnb/hv/xenstore_client.hpp"
#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

// --- what both ends agree on --------------------------------------------------------------

// The page a guest shares first: a one-slot request/response "ring".
struct SharedRing {
    std::uint32_t req_ready;
    std::uint32_t rsp_ready;
    char req[64];
    char rsp[64];
};

enum XenbusState : int {
    kInitWait = 2,
    kInitialised = 3,
    kConnected = 4,
    kClosing = 5,
    kClosed = 6
};

std::string frontend_path(DomId g) {
    return "/local/domain/" + std::to_string(g) + "/device/vif/0";
}
std::string backend_path(DomId g) {
    return "/local/domain/0/backend/vif/" + std::to_string(g) + "/0";
}

// Guest-written values are parsed, never trusted.
std::optional<std::uint32_t> parse_u32(const Result<std::string>& value) {
    if (!value) return std::nullopt;
    std::uint32_t v = 0;
    const char* end = value->data() + value->size();
    auto [p, ec] = std::from_chars(value->data(), end, v);
    if (ec != std::errc() || p != end || value->empty()) return std::nullopt;
    return v;
}

// Commands from the test process.
enum Command : std::uint64_t { kDisconnect = 1, kExit = 2, kQuit = 3 };

// --- the toolstack: device folders as libxl makes them ---------------------------------------

Status add_vif(Xenstore& xs, DomId g) {
    return run_transaction(xs, [&](XsTxn t) -> Status {
        const std::string fe = frontend_path(g);
        const std::string be = backend_path(g);
        // The backend folder belongs to dom0 and is readable by the guest; the frontend
        // folder belongs to the guest and is readable by dom0. Children inherit.
        if (Status st = xs.mkdir(t, be); !st) return st;
        if (Status st = xs.set_permissions(t, be, {{kDom0, XsPerm::none}, {g, XsPerm::read}}); !st)
            return st;
        if (Status st = xs.mkdir(t, fe); !st) return st;
        if (Status st = xs.set_permissions(t, fe, {{g, XsPerm::none}, {kDom0, XsPerm::read}}); !st)
            return st;
        for (auto [path, value] : {std::pair{be + "/frontend", fe},
                                   {be + "/frontend-id", std::to_string(g)},
                                   {be + "/state", std::string("1")},
                                   {fe + "/backend", be},
                                   {fe + "/backend-id", std::string("0")},
                                   {fe + "/state", std::string("1")}})
            if (Status st = xs.write(t, path, value); !st) return st;
        return ok();
    });
}

// --- the backend process ---------------------------------------------------------------------

class MiniBackend {
public:
    MiniBackend(BackendHypervisor& hv, const Link& harness) : hv_(hv), harness_(harness) {}

    void run() {
        auto xs = hv_.open_xenstore();
        SIM_ASSERT_OK(xs);
        xs_ = std::move(*xs);
        auto ev = hv_.open_event_channels();
        SIM_ASSERT_OK(ev);
        ev_ = std::move(*ev);
        auto gt = hv_.open_grant_table();
        SIM_ASSERT_OK(gt);
        gt_ = std::move(*gt);
        SIM_ASSERT_OK(xs_->watch("/local/domain/0/backend/vif", "vifs"));
        SIM_ASSERT_OK(xs_->watch("@releaseDomain", "release"));

        while (!quit_) {
            pollfd fds[] = {
                {xs_->watch_fd(), POLLIN, 0}, {ev_->fd(), POLLIN, 0}, {harness_.fd(), POLLIN, 0}};
            ASSERT_GT(::poll(fds, 3, kTimeoutMs), 0) << "backend: nothing happened for too long";
            if (fds[0].revents != 0) on_xenstore();
            if (fds[1].revents != 0) on_events();
            if (fds[2].revents != 0) on_command();
            if (::testing::Test::HasFatalFailure()) return;
        }
    }

private:
    struct Vif {
        DomId dom = kDomIdInvalid;
        std::string name;
        std::string fe;
        GrantMapping ring;
        EvtchnPort port = 0;
        std::unique_ptr<TranslationTable> iott;
        GrantRef rx_ref = 0;
        GrantRef buf_ref = 0;
        bool answered = false;
    };

    void on_xenstore() {
        for (;;) {
            auto ev = xs_->read_watch();
            ASSERT_TRUE(ev.has_value());
            if (!ev->has_value()) return;
            const std::string& token = (*ev)->token;
            if (token == "vifs") on_vif_list();
            if (token == "release") on_release_domain();
            if (token.rfind("fe:", 0) == 0) {
                auto dom = parse_u32(token.substr(3));
                if (dom && vifs_.count(static_cast<DomId>(*dom)) != 0)
                    on_frontend_state(vifs_[static_cast<DomId>(*dom)]);
            }
        }
    }

    // backend/vif changed: a new guest to serve (InitWait), or a folder the toolstack removed.
    void on_vif_list() {
        auto doms = xs_->directory(kNoTxn, "/local/domain/0/backend/vif");
        std::set<DomId> listed;
        if (doms)
            for (const std::string& d : *doms)
                if (auto dom = parse_u32(d); dom && *dom < kDomIdSelf)
                    listed.insert(static_cast<DomId>(*dom));
        for (DomId dom : listed) {
            if (vifs_.count(dom) != 0) continue;
            auto state = hv_.domains().state(dom);
            if (!state || !state->exists || state->dying) continue;
            Vif& vif = vifs_[dom];
            vif.dom = dom;
            auto name = hv_.domains().name(dom);
            SIM_ASSERT_OK(name);
            vif.name = *name;
            auto fe = xs_->read(kNoTxn, backend_path(dom) + "/frontend");
            SIM_ASSERT_OK(fe);
            vif.fe = *fe;
            SIM_ASSERT_OK(
                xs_->write(kNoTxn, backend_path(dom) + "/state", std::to_string(kInitWait)));
            SIM_ASSERT_OK(xs_->watch(vif.fe + "/state", "fe:" + std::to_string(dom)));
        }
        for (auto it = vifs_.begin(); it != vifs_.end();) {
            if (listed.count(it->first) == 0) {
                disconnect(it->second, true);
                it = vifs_.erase(it);
            } else {
                ++it;
            }
        }
    }

    void on_frontend_state(Vif& vif) {
        auto state = parse_u32(xs_->read(kNoTxn, vif.fe + "/state"));
        if (!state) return; // gone or garbage: @releaseDomain will tell
        if (*state == kInitialised && !vif.ring) connect(vif);
        if (*state == kClosing && vif.ring) {
            disconnect(vif, false);
            SIM_ASSERT_OK(
                xs_->write(kNoTxn, backend_path(vif.dom) + "/state", std::to_string(kClosed)));
        }
    }

    void connect(Vif& vif) {
        auto ring_ref = parse_u32(xs_->read(kNoTxn, vif.fe + "/ring-ref"));
        auto rx_ref = parse_u32(xs_->read(kNoTxn, vif.fe + "/rx-ref"));
        auto buf_ref = parse_u32(xs_->read(kNoTxn, vif.fe + "/iott-ref"));
        auto port = parse_u32(xs_->read(kNoTxn, vif.fe + "/event-channel"));
        ASSERT_TRUE(ring_ref && rx_ref && buf_ref && port) << "frontend of " << vif.name;
        std::int16_t st = 1;
        const GrantMapRequest req{vif.dom, *ring_ref, true};
        vif.ring = gt_->map({&req, 1}, {&st, 1});
        ASSERT_TRUE(vif.ring) << "map ring of " << vif.name << ": " << st;
        auto local = ev_->bind_interdomain(vif.dom, *port);
        SIM_ASSERT_OK(local);
        vif.port = *local;
        auto iott = hv_.open_translation_table(vif.dom);
        SIM_ASSERT_OK(iott);
        vif.iott = std::move(*iott);
        vif.rx_ref = *rx_ref;
        vif.buf_ref = *buf_ref;
        SIM_ASSERT_OK(
            xs_->write(kNoTxn, backend_path(vif.dom) + "/state", std::to_string(kConnected)));
    }

    // Tears a connected vif down and tells the test process; a vif already torn down (bob
    // after Closing, when his domain later dies) has nothing left to release.
    void disconnect(Vif& vif, bool domain_gone) {
        if (!vif.ring) return;
        SIM_EXPECT_OK(gt_->unmap(vif.ring));
        if (vif.port != 0) SIM_EXPECT_OK(ev_->unbind(vif.port));
        if (vif.iott) {
            EXPECT_EQ(vif.iott->view().in_flight(vif.buf_ref), 0U);
        }
        vif.iott.reset();
        vif.port = 0;
        // A dead domain's state is gone; a live one is told it is done with.
        if (domain_gone) {
            auto state = hv_.domains().state(vif.dom);
            SIM_ASSERT_OK(state);
            EXPECT_TRUE(!state->exists || state->dying);
        }
        harness_.send(vif.dom);
    }

    void on_events() {
        for (;;) {
            auto port = ev_->pending();
            SIM_ASSERT_OK(port);
            if (!port->has_value()) return;
            SIM_ASSERT_OK(ev_->unmask(**port));
            for (auto& [dom, vif] : vifs_)
                if (vif.port == **port && vif.ring) serve(vif);
        }
    }

    // The guest said something on its ring: answer by grant copy and by a "NIC write" into
    // the buffer registered in the translation table.
    void serve(Vif& vif) {
        auto* ring = reinterpret_cast<SharedRing*>(vif.ring.page(0));
        if (vif.answered ||
            std::atomic_ref<std::uint32_t>(ring->req_ready).load(std::memory_order_acquire) == 0)
            return;
        char req[sizeof(ring->req) + 1] = {};
        std::memcpy(req, ring->req, sizeof(ring->req)); // copy out, then look at it
        EXPECT_EQ(std::string(req), "ping from " + vif.name);

        const std::string pong = "pong to " + vif.name;
        auto seg = GrantCopySegment::to_guest(pong.c_str(), vif.dom, vif.rx_ref, 0,
                                              static_cast<std::uint16_t>(pong.size() + 1));
        SIM_ASSERT_OK(gt_->copy({&seg, 1}));
        ASSERT_EQ(seg.status, netif::gntst::kOkay);

        const TranslationTableView view = vif.iott->view();
        std::byte* buf = view.acquire(vif.buf_ref, true);
        ASSERT_NE(buf, nullptr) << vif.name << " registered no buffer";
        const std::string frame = "frame for " + vif.name;
        std::memcpy(buf, frame.c_str(), frame.size() + 1);
        view.release(vif.buf_ref);

        std::strcpy(ring->rsp, "done");
        std::atomic_ref<std::uint32_t>(ring->rsp_ready).store(1, std::memory_order_release);
        SIM_ASSERT_OK(ev_->notify(vif.port));
        vif.answered = true;
    }

    void on_release_domain() {
        for (auto it = vifs_.begin(); it != vifs_.end();) {
            auto state = hv_.domains().state(it->first);
            if (state && (!state->exists || state->dying)) {
                disconnect(it->second, true);
                it = vifs_.erase(it);
            } else {
                ++it;
            }
        }
    }

    void on_command() {
        auto cmd = harness_.recv();
        ASSERT_TRUE(cmd.has_value());
        ASSERT_EQ(*cmd, kQuit);
        EXPECT_TRUE(vifs_.empty());
        EXPECT_EQ(gt_->mapped_pages(), 0U);
        quit_ = true;
    }

    BackendHypervisor& hv_;
    const Link& harness_;
    std::unique_ptr<Xenstore> xs_;
    std::unique_ptr<EventChannels> ev_;
    std::unique_ptr<GrantTable> gt_;
    std::map<DomId, Vif> vifs_;
    bool quit_ = false;
};

// --- a guest process -------------------------------------------------------------------------

// Waits until `path` reads as something `accept` likes, following a watch on it.
template <class Accept>
std::optional<std::string> wait_for(Xenstore& xs, const std::string& path, Accept accept) {
    if (!xs.watch(path, path)) return std::nullopt;
    for (;;) {
        auto value = xs.read(kNoTxn, path);
        if (value && accept(*value)) {
            (void)xs.unwatch(path, path);
            return *value;
        }
        for (;;) {
            auto ev = xs.read_watch();
            if (!ev) return std::nullopt;
            if (ev->has_value()) break;
            if (!wait_readable(xs.watch_fd())) return std::nullopt;
        }
    }
}

void mini_frontend(const std::string& dir, DomId self, const std::string& name,
                   const Link& harness) {
    auto gh = connect_guest(dir, self);
    SIM_ASSERT_OK(gh);
    GuestHypervisor& hv = **gh;
    auto xs = hv.open_xenstore();
    SIM_ASSERT_OK(xs);
    auto ev = hv.open_event_channels();
    SIM_ASSERT_OK(ev);

    // The toolstack's device folder tells us where the backend is.
    const std::string fe = frontend_path(self);
    auto be = wait_for(**xs, fe + "/backend", [](const std::string& v) { return !v.empty(); });
    ASSERT_TRUE(be.has_value());

    // Share three pages: the ring, an RX page, and a buffer for the translation table.
    auto pages = hv.alloc_pages(3);
    SIM_ASSERT_OK(pages);
    std::memset(pages->base, 0, 3 * kPageSize);
    auto ring_ref = hv.grant_access(kDom0, pages->page(0), false);
    auto rx_ref = hv.grant_access(kDom0, pages->page(1), false);
    auto buf_ref = hv.grant_access(kDom0, pages->page(2), false);
    SIM_ASSERT_OK(ring_ref);
    SIM_ASSERT_OK(rx_ref);
    SIM_ASSERT_OK(buf_ref);
    SIM_ASSERT_OK(hv.iott_add(kDom0, *buf_ref));
    auto port = (*ev)->bind_unbound(kDom0);
    SIM_ASSERT_OK(port);
    SIM_ASSERT_OK(run_transaction(**xs, [&](XsTxn t) -> Status {
        for (auto [key, value] : {std::pair{"ring-ref", *ring_ref},
                                  {"rx-ref", *rx_ref},
                                  {"iott-ref", *buf_ref},
                                  {"event-channel", *port}})
            if (Status st = (*xs)->write(t, fe + "/" + key, std::to_string(value)); !st) return st;
        return (*xs)->write(t, fe + "/state", std::to_string(kInitialised));
    }));
    auto connected = wait_for(**xs, *be + "/state",
                              [](const std::string& v) { return v == std::to_string(kConnected); });
    ASSERT_TRUE(connected.has_value());

    // Say something, kick, and wait for the answer.
    auto* ring = reinterpret_cast<SharedRing*>(pages->page(0));
    std::snprintf(ring->req, sizeof(ring->req), "ping from %s", name.c_str());
    std::atomic_ref<std::uint32_t>(ring->req_ready).store(1, std::memory_order_release);
    SIM_ASSERT_OK((*ev)->notify(*port));
    while (std::atomic_ref<std::uint32_t>(ring->rsp_ready).load(std::memory_order_acquire) == 0) {
        ASSERT_TRUE(wait_readable((*ev)->fd())) << name << ": no answer";
        for (;;) {
            auto p = (*ev)->pending();
            SIM_ASSERT_OK(p);
            if (!p->has_value()) break;
            EXPECT_EQ(**p, *port);
            SIM_ASSERT_OK((*ev)->unmask(**p));
        }
    }
    EXPECT_STREQ(ring->rsp, "done");
    EXPECT_STREQ(reinterpret_cast<const char*>(pages->page(1)), ("pong to " + name).c_str())
        << "grant copy into the RX page";
    EXPECT_STREQ(reinterpret_cast<const char*>(pages->page(2)), ("frame for " + name).c_str())
        << "NIC write through the translation table";
    // In use by the backend: nothing can be taken back yet.
    SIM_EXPECT_ERRC(hv.end_access(*ring_ref), Errc::busy);
    SIM_EXPECT_ERRC(hv.end_access(*buf_ref), Errc::busy);
    harness.send(::testing::Test::HasFailure() ? 0 : 1);

    auto cmd = harness.recv();
    ASSERT_TRUE(cmd.has_value());
    if (*cmd == kDisconnect) {
        SIM_ASSERT_OK((*xs)->write(kNoTxn, fe + "/state", std::to_string(kClosing)));
        auto closed = wait_for(**xs, *be + "/state",
                               [](const std::string& v) { return v == std::to_string(kClosed); });
        ASSERT_TRUE(closed.has_value());
        // The backend let go of everything: every grant can be taken back.
        SIM_EXPECT_OK(hv.iott_remove(kDom0, *buf_ref));
        SIM_EXPECT_OK(hv.end_access(*ring_ref));
        SIM_EXPECT_OK(hv.end_access(*rx_ref));
        SIM_EXPECT_OK(hv.end_access(*buf_ref));
        SIM_EXPECT_OK((*ev)->unbind(*port));
        SIM_EXPECT_OK((*xs)->write(kNoTxn, fe + "/state", std::to_string(kClosed)));
        harness.send(::testing::Test::HasFailure() ? 0 : 1);
        cmd = harness.recv();
    }
    // kExit; a guest destroyed meanwhile finds its hypercalls refused, nothing worse.
    ASSERT_TRUE(cmd.has_value());
    EXPECT_EQ(*cmd, kExit);
}

// --- the test --------------------------------------------------------------------------------

class SimAcceptanceTest : public SimFixture {};

TEST_F(SimAcceptanceTest, OneBackendTwoGuestsExchangeGrantsEventsAndXenstoreState) {
    const DomId alice = create("alice", 32);
    const DomId bob = create("bob", 32);

    auto [to_backend, backend_end] = Link::make();
    auto [to_alice, alice_end] = Link::make();
    auto [to_bob, bob_end] = Link::make();
    Child backend([&, &link = backend_end] {
        auto hv = connect_backend(dir());
        SIM_ASSERT_OK(hv);
        MiniBackend(**hv, link).run();
    });
    Child alice_proc([&, &link = alice_end] { mini_frontend(dir(), alice, "alice", link); });
    Child bob_proc([&, &link = bob_end] { mini_frontend(dir(), bob, "bob", link); });

    // The toolstack creates the device folders; everything else follows from xenstore.
    auto xs = open_xenstore(dir() + "/xenstore-0.sock");
    SIM_ASSERT_OK(xs);
    SIM_ASSERT_OK(add_vif(**xs, alice));
    SIM_ASSERT_OK(add_vif(**xs, bob));

    // 1. Both guests got their answers, by grant copy and through the translation table.
    EXPECT_EQ(to_alice.recv(), 1U);
    EXPECT_EQ(to_bob.recv(), 1U);
    EXPECT_EQ(stats().pinned_grants, 4U) << "two rings mapped, two buffers in the table";
    EXPECT_EQ(stats().event_channel_ports, 4U);

    // 2. Bob disconnects in order and takes every grant back.
    to_bob.send(kDisconnect);
    EXPECT_EQ(to_backend.recv(), bob) << "the backend tore bob's vif down";
    EXPECT_EQ(to_bob.recv(), 1U) << "bob revoked everything";
    to_bob.send(kExit);
    EXPECT_TRUE(bob_proc.succeeded());

    // 3. Alice is destroyed while the backend still maps her ring and counts her buffer.
    SIM_ASSERT_OK(toolstack_->destroy_domain(alice));
    SIM_ASSERT_OK((*xs)->rm(kNoTxn, "/local/domain/0/backend/vif/" + std::to_string(alice)));
    EXPECT_EQ(to_backend.recv(), alice) << "the backend noticed and cleaned up";
    to_alice.send(kExit);
    EXPECT_TRUE(alice_proc.succeeded());

    // 4. Nothing is left: no domain but dom0, no pin, no port, no table.
    to_backend.send(kQuit);
    EXPECT_TRUE(backend.succeeded());
    const ServerStats s = stats();
    EXPECT_EQ(s.domains, 1U);
    EXPECT_EQ(s.dying_domains, 0U);
    EXPECT_EQ(s.pinned_grants, 0U);
    EXPECT_EQ(s.event_channel_handles, 0U);
    EXPECT_EQ(s.event_channel_ports, 0U);
    EXPECT_EQ(s.translation_tables, 0U);
    EXPECT_EQ(s.backend_attachments, 0U);
    EXPECT_EQ(s.connections, 1U) << "only this toolstack";
}

} // namespace
} // namespace dpnb::hv::sim::test
