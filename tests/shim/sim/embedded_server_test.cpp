// The server embedded in a process (Server::start), as a test harness or the daemon runs it:
// one server per folder, stale sockets are replaced, clients see Errc::closed when it stops.
// The guest process is forked before the server's threads start.
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "sim/os.hpp"
#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

TEST(SimEmbeddedServer, ServesGuestsAndBackendFromAThread) {
    TempDir dir;
    auto [to_guest, to_harness] = Link::make();
    Child guest([&, &link = to_harness] {
        SIM_RECV(link, dom);
        auto gh = connect_guest(dir.path(), static_cast<DomId>(dom));
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(1);
        SIM_ASSERT_OK(pages);
        std::memcpy(pages->page(0), "embedded", 8);
        auto ref = (*gh)->grant_access(kDom0, pages->page(0), true);
        SIM_ASSERT_OK(ref);
        link.send(*ref);
        SIM_RECV(link, done);
    });

    spdlog::set_level(spdlog::level::warn);
    auto server = Server::start(dir.path());
    SIM_ASSERT_OK(server);
    EXPECT_EQ((*server)->dir(), dir.path());
    SIM_EXPECT_ERRC(Server::start(dir.path()), Errc::exists);

    auto ts = Toolstack::connect(dir.path());
    SIM_ASSERT_OK(ts);
    DomainConfig config;
    config.name = "embedded-guest";
    config.memory_pages = 8;
    config.grant_frames = 1;
    auto dom = (*ts)->create_domain(config);
    SIM_ASSERT_OK(dom);
    to_guest.send(*dom);

    auto be = connect_backend(dir.path());
    SIM_ASSERT_OK(be);
    EXPECT_EQ((*be)->kind(), "sim");
    EXPECT_EQ((*be)->self(), kDom0);
    auto gt = (*be)->open_grant_table();
    SIM_ASSERT_OK(gt);
    SIM_RECV(to_guest, ref);
    std::int16_t st = 1;
    const GrantMapRequest req{*dom, static_cast<GrantRef>(ref), false};
    GrantMapping m = (*gt)->map({&req, 1}, {&st, 1});
    ASSERT_TRUE(m) << st;
    EXPECT_EQ(std::memcmp(m.page(0), "embedded", 8), 0);
    SIM_EXPECT_OK((*gt)->unmap(m));
    auto domains = (*ts)->list_domains();
    SIM_ASSERT_OK(domains);
    ASSERT_EQ(domains->size(), 2U);
    EXPECT_EQ((*domains)[0].name, "Domain-0");
    EXPECT_EQ((*domains)[1].name, "embedded-guest");
    EXPECT_TRUE((*domains)[1].guest_connected);
    EXPECT_EQ((*domains)[1].memory_pages, 8U);
    EXPECT_EQ((*domains)[1].grant_entries, 512U);

    // Stopping the server: every client call fails cleanly.
    server->reset();
    SIM_EXPECT_ERRC((*ts)->stats(), Errc::closed);
    SIM_EXPECT_ERRC((*be)->domains().name(kDom0), Errc::closed);
    SIM_EXPECT_ERRC((*be)->open_event_channels(), Errc::closed);
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

TEST(SimEmbeddedServer, ReplacesAStaleSocket) {
    TempDir dir;
    // A socket file nobody listens on, as a crashed server leaves it.
    const std::string path = dir.path() + "/simhv.sock";
    {
        UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
    }
    spdlog::set_level(spdlog::level::warn);
    auto server = Server::start(dir.path());
    SIM_ASSERT_OK(server);
    auto ts = Toolstack::connect(dir.path());
    SIM_ASSERT_OK(ts);
    auto s = (*ts)->stats();
    SIM_ASSERT_OK(s);
    EXPECT_EQ(s->domains, 1U);
    EXPECT_EQ(s->connections, 1U);
}

TEST(SimEmbeddedServer, ClientsFailCleanlyWithoutAServer) {
    TempDir dir;
    SIM_EXPECT_ERRC(Toolstack::connect(dir.path()), Errc::not_found);
    SIM_EXPECT_ERRC(connect_backend(dir.path()), Errc::not_found);
    SIM_EXPECT_ERRC(connect_guest(dir.path(), 1), Errc::not_found);
}

} // namespace
} // namespace dpnb::hv::sim::test
