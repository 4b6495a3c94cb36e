// Domain lifecycle against the simulated hypervisor: a guest destroyed (by the toolstack or
// by the death of its process) while the backend maps its pages; a backend process that dies
// with mappings; and the leak checks afterwards (pins, the server's domain, descriptors).
#include <chrono>
#include <thread>

#include "dpnb/hv/xenstore_client.hpp"
#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

// Polls `pred` until it holds, for at most the test timeout. For conditions another process
// brings about asynchronously (the server noticing a closed connection); not a delay.
template <class Pred>
bool eventually(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

// Waits for the next watch event with `token`, skipping others.
std::optional<XsWatchEvent> next_event(Xenstore& xs, std::string_view token) {
    for (;;) {
        auto ev = xs.read_watch();
        if (!ev) return std::nullopt;
        if (ev->has_value()) {
            if ((*ev)->token == token) return **ev;
            continue;
        }
        if (!wait_readable(xs.watch_fd())) return std::nullopt;
    }
}

class SimLifecycleTest : public SimFixture {};

// A guest that grants `pages` writable pages to dom0, sends the references, and then waits
// until it is told to go (or is destroyed under its feet).
std::function<void()> granting_guest(const std::string& dir, DomId dom, std::uint32_t pages,
                                     const Link& link, bool expect_destroyed) {
    return [=, &link] {
        auto gh = connect_guest(dir, dom);
        SIM_ASSERT_OK(gh);
        auto mem = (*gh)->alloc_pages(pages);
        SIM_ASSERT_OK(mem);
        for (std::uint32_t i = 0; i < pages; ++i) {
            auto ref = (*gh)->grant_access(kDom0, mem->page(i), false);
            SIM_ASSERT_OK(ref);
            link.send(*ref);
        }
        auto ev = (*gh)->open_event_channels();
        SIM_ASSERT_OK(ev);
        auto port = (*ev)->bind_unbound(kDom0);
        SIM_ASSERT_OK(port);
        link.send(*port);
        SIM_RECV(link, go);
        if (expect_destroyed) {
            // The domain is gone: hypercalls fail, they do not hang or crash.
            SIM_EXPECT_ERRC((*gh)->iott_add(kDom0, 8), Errc::closed);
            SIM_EXPECT_ERRC((*gh)->open_event_channels(), Errc::closed);
        }
    };
}

TEST_F(SimLifecycleTest, GuestDestroyedWhileBackendMapsItsPages) {
    const DomId guest_dom = create("guest");
    auto [to_guest, to_backend] = Link::make();
    Child guest(granting_guest(dir(), guest_dom, 3, to_backend, true));

    const int fds_before = count_open_fds();
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto xs = (*be)->open_xenstore();
    SIM_ASSERT_OK(xs);
    SIM_ASSERT_OK((*xs)->watch("@releaseDomain", "release"));
    ASSERT_TRUE(next_event(**xs, "release").has_value()) << "the watch fires when registered";
    const int fds_connected = count_open_fds();

    {
        auto gt = (*be)->open_grant_table();
        SIM_ASSERT_OK(gt);
        auto ev = (*be)->open_event_channels();
        SIM_ASSERT_OK(ev);
        std::vector<GrantMapRequest> reqs;
        for (int i = 0; i < 3; ++i) {
            SIM_RECV(to_guest, ref);
            reqs.push_back({guest_dom, static_cast<GrantRef>(ref), true});
        }
        SIM_RECV(to_guest, remote_port);
        auto port = (*ev)->bind_interdomain(guest_dom, static_cast<EvtchnPort>(remote_port));
        SIM_ASSERT_OK(port);
        std::vector<std::int16_t> status(3);
        GrantMapping m = (*gt)->map(reqs, status);
        ASSERT_TRUE(m);
        EXPECT_EQ(toolstack_->domain_info(guest_dom)->pinned_grants, 3U);

        // The toolstack destroys the guest while we map its pages.
        SIM_ASSERT_OK(toolstack_->destroy_domain(guest_dom));

        // We learn it from @releaseDomain and from the domain state.
        ASSERT_TRUE(next_event(**xs, "release").has_value());
        auto state = (*be)->domains().state(guest_dom);
        SIM_ASSERT_OK(state);
        EXPECT_TRUE(state->exists);
        EXPECT_TRUE(state->dying);
        SIM_EXPECT_ERRC((*ev)->notify(*port), Errc::closed);
        // New maps of a dying domain are refused; ours stays valid memory until we unmap.
        std::int16_t st = 1;
        EXPECT_FALSE((*gt)->map({reqs.data(), 1}, {&st, 1}));
        EXPECT_EQ(st, netif::gntst::kBadDomain);
        m.page(2)[5] = std::byte{1};
        auto info = toolstack_->domain_info(guest_dom);
        SIM_ASSERT_OK(info);
        EXPECT_TRUE(info->dying);
        EXPECT_EQ(info->pinned_grants, 3U) << "the server waits for our mappings";
        EXPECT_EQ(stats().dying_domains, 1U);

        // Clean-up as the control plane does it.
        SIM_ASSERT_OK((*gt)->unmap(m));
        SIM_ASSERT_OK((*ev)->unbind(*port));
    }
    // The server frees the domain once nothing of it is held.
    SIM_EXPECT_ERRC(toolstack_->domain_info(guest_dom), Errc::not_found);
    const ServerStats s = stats();
    EXPECT_EQ(s.domains, 1U) << "only dom0 is left";
    EXPECT_EQ(s.dying_domains, 0U);
    EXPECT_EQ(s.pinned_grants, 0U);
    EXPECT_EQ(s.event_channel_ports, 0U);
    auto state = (*be)->domains().state(guest_dom);
    SIM_ASSERT_OK(state);
    EXPECT_FALSE(state->exists);
    EXPECT_EQ(s.backend_attachments, 0U) << "our process let go of the guest";
    // Learning that the domain is gone dropped what the backend held of it (its memory,
    // grant table, active table and ledger), while the backend itself lives on.
    EXPECT_EQ(count_open_fds(), fds_connected) << "descriptors of the dead guest leaked";

    xs->reset();
    be->reset();
    EXPECT_EQ(count_open_fds(), fds_before) << "descriptors leaked";
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimLifecycleTest, GuestProcessDeathDestroysItsDomain) {
    const DomId guest_dom = create("crashing");
    auto [to_guest, to_backend] = Link::make();
    Child guest(granting_guest(dir(), guest_dom, 1, to_backend, false));
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto gt = (*be)->open_grant_table();
    SIM_ASSERT_OK(gt);
    SIM_RECV(to_guest, ref);
    SIM_RECV(to_guest, port);
    std::int16_t st = 1;
    const GrantMapRequest req{guest_dom, static_cast<GrantRef>(ref), true};
    GrantMapping m = (*gt)->map({&req, 1}, {&st, 1});
    ASSERT_TRUE(m);

    ::kill(guest.pid(), SIGKILL);
    EXPECT_TRUE(killed_by(guest.wait(), SIGKILL));
    // libxl's default on_crash="destroy": the domain dies with its process.
    EXPECT_TRUE(eventually([&] {
        auto s = (*be)->domains().state(guest_dom);
        return s && s->dying;
    }));
    m.page(0)[0] = std::byte{7}; // still our mapping
    SIM_ASSERT_OK((*gt)->unmap(m));
    EXPECT_EQ(stats().domains, 1U);
    EXPECT_EQ(stats().pinned_grants, 0U);
}

TEST_F(SimLifecycleTest, BackendProcessDeathReleasesItsPins) {
    const DomId guest_dom = create("guest");
    auto [to_backend, from_backend] = Link::make();
    auto [to_guest, from_guest] = Link::make();
    // The backend maps two grants, keeps them mapped, and dies.
    Child backend([&, &link = from_backend] {
        auto be = connect_backend(dir());
        SIM_ASSERT_OK(be);
        auto gt = (*be)->open_grant_table();
        SIM_ASSERT_OK(gt);
        SIM_RECV(link, a);
        SIM_RECV(link, b);
        const GrantMapRequest reqs[] = {{guest_dom, static_cast<GrantRef>(a), true},
                                        {guest_dom, static_cast<GrantRef>(b), true}};
        std::int16_t status[2];
        GrantMapping m = (*gt)->map(reqs, status);
        ASSERT_TRUE(m);
        link.send(1);
        SIM_RECV(link, never);
    });

    auto gh = connect_guest(dir(), guest_dom);
    SIM_ASSERT_OK(gh);
    auto mem = (*gh)->alloc_pages(2);
    SIM_ASSERT_OK(mem);
    auto a = (*gh)->grant_access(kDom0, mem->page(0), false);
    auto b = (*gh)->grant_access(kDom0, mem->page(1), false);
    SIM_ASSERT_OK(a);
    SIM_ASSERT_OK(b);
    to_backend.send(*a);
    to_backend.send(*b);
    SIM_RECV(to_backend, mapped);
    SIM_EXPECT_ERRC((*gh)->end_access(*a), Errc::busy);

    ::kill(backend.pid(), SIGKILL);
    EXPECT_TRUE(killed_by(backend.wait(), SIGKILL));
    // As when a process with gntdev mappings dies: its pins go, the guest may revoke.
    EXPECT_TRUE(eventually([&] { return stats().pinned_grants == 0; }));
    SIM_EXPECT_OK((*gh)->end_access(*a));
    SIM_EXPECT_OK((*gh)->end_access(*b));
    EXPECT_EQ(stats().backend_attachments, 0U);
}

TEST_F(SimLifecycleTest, DyingGuestWithBuffersInFlightIsFreedAfterRelease) {
    const DomId guest_dom = create("guest");
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_dom);
        SIM_ASSERT_OK(gh);
        auto mem = (*gh)->alloc_pages(1);
        SIM_ASSERT_OK(mem);
        auto ref = (*gh)->grant_access(kDom0, mem->page(0), false);
        SIM_ASSERT_OK(ref);
        SIM_ASSERT_OK((*gh)->iott_add(kDom0, *ref));
        link.send(*ref);
        SIM_RECV(link, done);
    });
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto table = (*be)->open_translation_table(guest_dom);
    SIM_ASSERT_OK(table);
    SIM_RECV(to_guest, ref);
    const TranslationTableView view = (*table)->view();
    std::byte* buf = view.acquire(static_cast<GrantRef>(ref), true);
    ASSERT_NE(buf, nullptr);

    SIM_ASSERT_OK(toolstack_->destroy_domain(guest_dom));
    // The "NIC" may still write the buffer: the domain cannot be freed yet...
    buf[0] = std::byte{1};
    EXPECT_EQ(view.acquire(static_cast<GrantRef>(ref), true), nullptr) << "no new acquisitions";
    auto info = toolstack_->domain_info(guest_dom);
    SIM_ASSERT_OK(info);
    EXPECT_TRUE(info->dying);
    EXPECT_EQ(info->pinned_grants, 1U);
    // ...until the buffer comes back.
    view.release(static_cast<GrantRef>(ref));
    EXPECT_TRUE(eventually([&] { return stats().domains == 1; }));
    EXPECT_EQ(stats().translation_tables, 0U);
    EXPECT_EQ(stats().pinned_grants, 0U);
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

} // namespace
} // namespace dpnb::hv::sim::test
