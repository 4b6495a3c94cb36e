// Hostile clients of the simulated hypervisor: malformed packets on the control socket,
// requests outside a connection's role, absurd arguments, and a guest that writes garbage
// into its own grant table. The server refuses each (or drops the connection) and keeps
// serving everybody else; the fixture checks that dpnb-simhv exits cleanly afterwards
// (no crash, no sanitizer report, no leak).
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <cstring>

#include "sim/layout.hpp"
#include "sim/protocol.hpp"
#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

using proto::Op;
using proto::Role;

// A raw connection to the control socket.
class Raw {
public:
    explicit Raw(const std::string& dir) {
        fd_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = dir + "/" + proto::kSocketName;
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        connected_ =
            ::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
    }
    bool connected() const { return connected_; }

    bool send_bytes(const void* data, std::size_t len, int fd_to_pass = -1) {
        const int fds[1] = {fd_to_pass};
        std::span<const int> span =
            fd_to_pass >= 0 ? std::span<const int>(fds) : std::span<const int>();
        return proto::send_packet(fd_.get(), data, len, span).has_value();
    }
    bool send(const proto::Request& req) { return send_bytes(&req, sizeof(req)); }

    // The reply, or nullopt when the server closed the connection.
    std::optional<proto::Reply> reply() {
        if (!wait_readable(fd_.get())) return std::nullopt;
        proto::Reply r{};
        auto n = proto::recv_packet(fd_.get(), &r, sizeof(r), fds_);
        if (!n || *n != sizeof(r)) return std::nullopt;
        return r;
    }
    // True when the server closed the connection (EOF).
    bool closed_by_server() {
        if (!wait_readable(fd_.get())) return false;
        char b[8];
        return ::recv(fd_.get(), b, sizeof(b), 0) == 0;
    }
    std::optional<Errc> call(const proto::Request& req) {
        if (!send(req)) return Errc::closed;
        auto r = reply();
        if (!r) return Errc::closed;
        if (r->status == 0) return std::nullopt;
        return static_cast<Errc>(r->status - 1);
    }
    std::vector<UniqueFd>& fds() { return fds_; }

private:
    UniqueFd fd_;
    bool connected_ = false;
    std::vector<UniqueFd> fds_;
};

proto::Request hello(Role role, std::uint64_t dom) {
    return proto::make_request(Op::hello, static_cast<std::uint64_t>(role), dom);
}

class SimHostileClientTest : public SimFixture {};

TEST_F(SimHostileClientTest, MalformedPacketsCloseOnlyTheirConnection) {
    {
        Raw c(dir());
        ASSERT_TRUE(c.connected());
        const char junk[5] = {1, 2, 3, 4, 5};
        ASSERT_TRUE(c.send_bytes(junk, sizeof(junk)));
        EXPECT_TRUE(c.closed_by_server()) << "short packet";
    }
    {
        Raw c(dir());
        proto::Request req = hello(Role::toolstack, 0);
        req.magic = 0xBAD;
        ASSERT_TRUE(c.send(req));
        EXPECT_TRUE(c.closed_by_server()) << "bad magic";
    }
    for (std::uint32_t op : {0U, static_cast<std::uint32_t>(Op::count_), 0xFFFFFFFFU}) {
        Raw c(dir());
        proto::Request req = hello(Role::toolstack, 0);
        req.op = static_cast<Op>(op);
        ASSERT_TRUE(c.send(req));
        EXPECT_TRUE(c.closed_by_server()) << "op " << op;
    }
    {
        Raw c(dir());
        proto::Request req = hello(Role::toolstack, 0);
        std::memset(req.text, 'x', sizeof(req.text)); // no terminating NUL
        ASSERT_TRUE(c.send(req));
        EXPECT_TRUE(c.closed_by_server()) << "unterminated text";
    }
    {
        Raw c(dir());
        proto::Request req = hello(Role::toolstack, 0);
        ASSERT_TRUE(c.send_bytes(&req, sizeof(req), STDIN_FILENO));
        EXPECT_TRUE(c.closed_by_server()) << "descriptors sent to the server";
    }
    {
        Raw c(dir());
        std::vector<char> big(4096, 0);
        ASSERT_TRUE(c.send_bytes(big.data(), big.size()));
        EXPECT_TRUE(c.closed_by_server()) << "oversized packet";
    }
    // Everybody else is still served.
    EXPECT_EQ(stats().domains, 1U);
}

TEST_F(SimHostileClientTest, RolesAndArgumentsAreChecked) {
    const DomId guest = create("guest");
    {
        Raw c(dir());
        EXPECT_EQ(c.call(proto::make_request(Op::stats)), Errc::permission_denied)
            << "request before hello";
        EXPECT_TRUE(c.closed_by_server()) << "a connection that did not say hello is dropped";
    }
    {
        Raw c(dir());
        EXPECT_EQ(c.call(hello(static_cast<Role>(77), 0)), Errc::invalid_argument)
            << "unknown role";
        EXPECT_TRUE(c.closed_by_server()) << "a failed hello ends the connection";
    }
    {
        Raw c(dir());
        EXPECT_EQ(c.call(hello(Role::guest, 0)), Errc::invalid_argument) << "dom0 is no guest";
    }
    {
        Raw c(dir());
        EXPECT_EQ(c.call(hello(Role::guest, 0xFFFF'FFFF'FFFFULL)), Errc::not_found);
    }
    {
        Raw c(dir());
        EXPECT_EQ(c.call(hello(Role::backend, guest + 10)), Errc::not_found);
    }
    Raw g(dir());
    ASSERT_EQ(g.call(hello(Role::guest, guest)), std::nullopt);
    EXPECT_EQ(g.fds().size(), 2U) << "memory and grant table";
    {
        Raw again(dir());
        ASSERT_TRUE(again.send(hello(Role::guest, guest)));
        auto r = again.reply();
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->status - 1, static_cast<int>(Errc::busy)) << "a domain has one guest process";
    }
    // Outside the guest's role.
    EXPECT_EQ(g.call(hello(Role::toolstack, 0)), Errc::permission_denied);
    proto::Request create_req = proto::make_request(Op::create_domain, 16, 1, 1);
    proto::set_text(create_req.text, sizeof(create_req.text), "sneaky");
    EXPECT_EQ(g.call(create_req), Errc::permission_denied);
    EXPECT_EQ(g.call(proto::make_request(Op::destroy_domain, guest)), Errc::permission_denied);
    EXPECT_EQ(g.call(proto::make_request(Op::attach_guest, guest)), Errc::permission_denied);
    EXPECT_EQ(g.call(proto::make_request(Op::iott_open, guest)), Errc::permission_denied);
    // Absurd arguments.
    const std::uint64_t huge = ~std::uint64_t{0};
    EXPECT_EQ(g.call(proto::make_request(Op::evtchn_close, huge)), Errc::invalid_argument);
    EXPECT_EQ(g.call(proto::make_request(Op::evtchn_bind_unbound, huge, 0)),
              Errc::invalid_argument);
    EXPECT_EQ(g.call(proto::make_request(Op::evtchn_unbind, 1, huge)), Errc::invalid_argument);
    EXPECT_EQ(g.call(proto::make_request(Op::iott_add, huge, huge)), Errc::not_found);
    EXPECT_EQ(g.call(proto::make_request(Op::iott_add, 0, huge)), Errc::invalid_argument);
    EXPECT_EQ(g.call(proto::make_request(Op::iott_remove, 0, huge)), Errc::not_found);
    EXPECT_EQ(g.call(proto::make_request(Op::domain_name, huge)), Errc::not_found);
    // Another connection's event-channel handle is not ours to use.
    Raw b(dir());
    ASSERT_EQ(b.call(hello(Role::backend, 0)), std::nullopt);
    ASSERT_TRUE(b.send(proto::make_request(Op::evtchn_open)));
    auto opened = b.reply();
    ASSERT_TRUE(opened.has_value());
    ASSERT_EQ(opened->status, 0);
    EXPECT_EQ(g.call(proto::make_request(Op::evtchn_bind_unbound, opened->val[0], 0)),
              Errc::invalid_argument);
    EXPECT_EQ(g.call(proto::make_request(Op::evtchn_close, opened->val[0])),
              Errc::invalid_argument);
    // Toolstack arguments.
    Raw t(dir());
    ASSERT_EQ(t.call(hello(Role::toolstack, 0)), std::nullopt);
    for (auto [pages, frames, name] :
         {std::tuple<std::uint64_t, std::uint64_t, const char*>{0, 1, "a"},
          {huge, 1, "a"},
          {16, 0, "a"},
          {16, 1000, "a"},
          {16, 1, ""},
          {16, 1, "bad name"},
          {16, 1, "guest"}}) {
        proto::Request req = proto::make_request(Op::create_domain, pages, frames, 1);
        proto::set_text(req.text, sizeof(req.text), name);
        EXPECT_TRUE(t.call(req).has_value()) << pages << " " << frames << " '" << name << "'";
    }
    EXPECT_EQ(t.call(proto::make_request(Op::destroy_domain, 0)), Errc::permission_denied);
    EXPECT_EQ(t.call(proto::make_request(Op::destroy_domain, huge)), Errc::not_found);
    EXPECT_EQ(stats().domains, 2U);
}

// A guest that writes its grant table by hand, as a hostile kernel could.
TEST_F(SimHostileClientTest, GarbageGrantEntriesAreRefusedWithXensStatus) {
    const DomId guest = create("guest", 16);
    auto [to_guest, to_backend] = Link::make();
    Child hostile([&, &link = to_backend] {
        proto::Response hello_rsp;
        auto ch = proto::Channel::connect(dir(), Role::guest, guest, &hello_rsp);
        SIM_ASSERT_OK(ch);
        const auto entries = static_cast<std::uint32_t>(hello_rsp.reply.val[2]);
        void* p = ::mmap(nullptr, entries * sizeof(GrantWords), PROT_READ | PROT_WRITE, MAP_SHARED,
                         hello_rsp.fds[1].get(), 0);
        ASSERT_NE(p, MAP_FAILED);
        auto* table = static_cast<GrantWords*>(p);
        namespace gtf = netif::gtf;
        // ref 10: a frame beyond the guest's 16 pages; ref 11: a transitive entry (v2 only);
        // ref 12: accept-transfer; ref 13: a valid entry whose flags already claim
        // GTF_reading (a guest lying about the hypervisor's bits changes nothing).
        table[10] = {GrantWords::make_header(gtf::kPermitAccess, kDom0), 1000};
        table[11] = {GrantWords::make_header(gtf::kTransitive, kDom0), 1};
        table[12] = {GrantWords::make_header(gtf::kAcceptTransfer, kDom0), 2};
        table[13] = {GrantWords::make_header(gtf::kPermitAccess | gtf::kReading, kDom0), 3};
        link.send(1);
        SIM_RECV(link, mapped13);
        // While the backend maps ref 13, the guest rewrites it to point elsewhere.
        std::atomic_ref<std::uint32_t>(table[13].frame).store(4);
        link.send(1);
        SIM_RECV(link, done);
        // The backend wrote frame 3, the one pinned first, not the 4 we switched to.
        void* mem =
            ::mmap(nullptr, 16 * kPageSize, PROT_READ, MAP_SHARED, hello_rsp.fds[0].get(), 0);
        ASSERT_NE(mem, MAP_FAILED);
        EXPECT_EQ(static_cast<const std::byte*>(mem)[3 * kPageSize], std::byte{0x77});
        EXPECT_EQ(static_cast<const std::byte*>(mem)[4 * kPageSize], std::byte{0});
        // The hypervisor cleared GTF_reading on unmap, whatever we wrote.
        EXPECT_EQ(GrantWords::flags_of(table[13].header) & gtf::kReading, 0);
        // The translation-table hypercall refuses the same garbage.
        auto add = [&](std::uint64_t ref) {
            auto r = (*ch)->call(proto::make_request(Op::iott_add, kDom0, ref), 0);
            return r ? Errc::internal : r.error().code;
        };
        EXPECT_EQ(add(10), Errc::invalid_argument);
        EXPECT_EQ(add(11), Errc::permission_denied);
        EXPECT_EQ(add(12), Errc::permission_denied);
        link.send(1);
    });
    SIM_RECV(to_guest, written);
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto gt = (*be)->open_grant_table();
    SIM_ASSERT_OK(gt);
    auto map1 = [&](GrantRef ref, std::int16_t& st, bool writable = false) {
        const GrantMapRequest req{guest, ref, writable};
        return (*gt)->map({&req, 1}, {&st, 1});
    };
    std::int16_t st = 1;
    EXPECT_FALSE(map1(10, st));
    EXPECT_EQ(st, netif::gntst::kBadPage);
    EXPECT_FALSE(map1(11, st));
    EXPECT_EQ(st, netif::gntst::kGeneralError);
    EXPECT_FALSE(map1(12, st));
    EXPECT_EQ(st, netif::gntst::kGeneralError);
    GrantMapping m = map1(13, st, true);
    ASSERT_TRUE(m) << st;
    to_guest.send(1);
    SIM_RECV(to_guest, rewritten);
    // The pinned frame is the one validated at the first pin (Xen's active entry).
    GrantMapping m2 = map1(13, st);
    ASSERT_TRUE(m2) << st;
    m.page(0)[0] = std::byte{0};
    EXPECT_EQ(m2.page(0)[0], std::byte{0});
    m.page(0)[0] = std::byte{0x77};
    EXPECT_EQ(m2.page(0)[0], std::byte{0x77}) << "both mappings are of frame 3";
    SIM_EXPECT_OK((*gt)->unmap(m));
    SIM_EXPECT_OK((*gt)->unmap(m2));
    to_guest.send(1);
    SIM_RECV(to_guest, checked);
    EXPECT_TRUE(hostile.succeeded());
    EXPECT_EQ(stats().pinned_grants, 0U);
}

} // namespace
} // namespace dpnb::hv::sim::test
