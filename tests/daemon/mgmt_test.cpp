// The management protocol (request/response codec, vif names, arguments) and the server
// (framing, bounds, timeouts, permissions: socket mode and SO_PEERCRED), with a test handler.
#include <gtest/gtest.h>

#include <filesystem>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dpnb/daemon/mgmt_server.hpp"
#include "loop_helper.hpp"

namespace dpnb::daemon {
namespace {

using mgmt::Json;

TEST(MgmtProtocol, RequestRoundTrip) {
    mgmt::Request r;
    r.command = "show";
    r.args = {{"vif", "vif3.0"}};
    r.id = 7;
    const std::string line = mgmt::format_request(r);
    ASSERT_EQ(line.back(), '\n');
    auto back = mgmt::parse_request(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->command, "show");
    EXPECT_EQ(back->args, r.args);
    EXPECT_EQ(back->id, Json(7));
}

TEST(MgmtProtocol, BadRequests) {
    struct Case {
        std::string line;
        std::string message;
    };
    const Case cases[] = {
        {"", "request is not valid JSON"},
        {"{", "request is not valid JSON"},
        {"[1]", "request is not a JSON object"},
        {"{}", "no \"command\""},
        {R"({"command": 5})", "\"command\" must be a command name (lower case letters, '-')"},
        {R"({"command": "Show"})", "\"command\" must be a command name (lower case letters, '-')"},
        {R"({"command": "list", "args": []})", "\"args\" must be an object"},
        {R"({"command": "list", "id": {}})", "\"id\" must be an integer or a short string"},
        {R"({"command": "list", "extra": 1})", "unknown request field \"extra\""},
        {R"({"command": "list", "version": 2})", "protocol version 2 is not 1"},
        {std::string(20, '[') + std::string(20, ']'), "request nested deeper than 16"},
        {std::string(mgmt::kMaxRequest + 1, ' '), "request longer than 65536 bytes"},
    };
    for (const Case& c : cases) {
        auto r = mgmt::parse_request(c.line);
        ASSERT_FALSE(r) << c.line.substr(0, 40);
        EXPECT_EQ(r.error().message, c.message) << c.line.substr(0, 40);
    }
}

TEST(MgmtProtocol, Responses) {
    auto ok = mgmt::parse_response(mgmt::format_ok(3, {{"a", 1}}));
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->ok);
    EXPECT_EQ(ok->result, (Json{{"a", 1}}));
    auto err = mgmt::parse_response(mgmt::format_error(nullptr, "not_found", "no such vif"));
    ASSERT_TRUE(err);
    EXPECT_FALSE(err->ok);
    EXPECT_EQ(err->error_code, "not_found");
    EXPECT_EQ(err->error_message, "no such vif");
    EXPECT_FALSE(mgmt::parse_response(R"({"result": 1})"));
    EXPECT_FALSE(mgmt::parse_response(R"({"ok": false})"));
    // Invalid UTF-8 from xenstore does not break the encoder.
    EXPECT_TRUE(mgmt::parse_response(mgmt::format_ok(nullptr, {{"name", "bad\xff"}})));
}

TEST(MgmtProtocol, VifNames) {
    auto a = mgmt::parse_vif_ref("vif3.0");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->dom, 3);
    EXPECT_EQ(a->handle, 0u);
    auto b = mgmt::parse_vif_ref("/local/domain/0/backend/vif/12/1");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->dom, 12);
    EXPECT_EQ(b->handle, 1u);
    for (const char* bad : {"vif", "vif3", "vif3.", "vif.0", "vif03.0", "vif3.00", "vif-1.0",
                            "vif32752.0", "eth0", "vif3.0x", "/local/domain/0/backend/vbd/1/0"})
        EXPECT_FALSE(mgmt::parse_vif_ref(bad)) << bad;
    EXPECT_EQ(mgmt::parse_vif_ref("vif03.0").error().message,
              "\"vif03.0\" is not a vif name (vif<domid>.<handle>, e.g. vif3.0) or a backend "
              "path");
}

TEST(MgmtProtocol, Arguments) {
    const Json args = {{"s", "x"}, {"n", 5}, {"neg", -1}, {"big", 300}};
    EXPECT_EQ(*mgmt::arg_string(args, "s"), "x");
    EXPECT_EQ(mgmt::arg_string(args, "missing").error().message, "missing argument \"missing\"");
    EXPECT_EQ(mgmt::arg_string(args, "n").error().message, "argument \"n\" must be a string");
    EXPECT_EQ(**mgmt::arg_optional_uint(args, "n", 10), 5u);
    EXPECT_FALSE(*mgmt::arg_optional_uint(args, "missing", 10));
    EXPECT_EQ(mgmt::arg_optional_uint(args, "neg", 10).error().message,
              "argument \"neg\" must be a non-negative integer");
    EXPECT_EQ(mgmt::arg_optional_uint(args, "big", 255).error().message,
              "argument \"big\": 300 is out of range 0..255");
}

class MgmtServer : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/dpnb-mgmt-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        chmod(dir_.c_str(), 0755);
        config_.socket = dir_ + "/d.sock";
        config_.timeout = std::chrono::milliseconds(60'000);
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop);
        loop_ = std::move(*loop);
    }
    void TearDown() override {
        server_.reset();
        std::filesystem::remove_all(dir_);
    }
    void start() {
        auto s = ManagementServer::create(*loop_, config_,
                                          [this](const mgmt::Request& r, const PeerCred& p) {
                                              last_peer_ = p;
                                              mgmt::Response out;
                                              if (r.command == "echo") {
                                                  out.ok = true;
                                                  out.result = r.args;
                                              } else {
                                                  out.error_code = "not_found";
                                                  out.error_message = "no " + r.command;
                                              }
                                              return out;
                                          });
        ASSERT_TRUE(s) << s.error().message;
        server_ = std::move(*s);
    }
    // Raw exchange: sends `data`, reads until the server closes or a line arrives.
    std::string raw(const std::string& data, bool until_close) {
        return test::run_with_loop(*loop_, [&] {
            const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un a{};
            a.sun_family = AF_UNIX;
            std::strcpy(a.sun_path, config_.socket.c_str());
            if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
                return std::string("connect failed");
            std::size_t sent = 0;
            while (sent < data.size()) {
                const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
                if (n <= 0) break;
                sent += static_cast<std::size_t>(n);
            }
            std::string in;
            char buf[4096];
            while (true) {
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0) break;
                in.append(buf, static_cast<std::size_t>(n));
                if (!until_close && in.find('\n') != std::string::npos) break;
            }
            ::close(fd);
            return in;
        });
    }

    std::string dir_;
    ManagementConfig config_;
    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<ManagementServer> server_;
    PeerCred last_peer_;
};

TEST_F(MgmtServer, AnswersRequestsInOrderOnOneConnection) {
    start();
    struct stat st {};
    ASSERT_EQ(stat(config_.socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    const std::string out = raw("{\"command\":\"echo\",\"args\":{\"a\":1},\"id\":1}\n"
                                "{\"command\":\"nope\",\"id\":2}\n",
                                /*until_close=*/false);
    auto first = mgmt::parse_response(out.substr(0, out.find('\n')));
    ASSERT_TRUE(first) << out;
    EXPECT_TRUE(first->ok);
    EXPECT_EQ(first->id, Json(1));
    EXPECT_EQ(first->result, (Json{{"a", 1}}));
    EXPECT_EQ(last_peer_.uid, geteuid());
    EXPECT_EQ(last_peer_.pid, getpid());
}

TEST_F(MgmtServer, ClientLibrary) {
    start();
    auto reply = test::run_with_loop(*loop_, [&] {
        auto c = mgmt::Client::connect(config_.socket, std::chrono::seconds(60));
        if (!c) return std::vector<Result<mgmt::Response>>{c.error()};
        mgmt::Request a{"echo", {{"x", "y"}}, nullptr};
        mgmt::Request b{"other", Json::object(), nullptr};
        return std::vector<Result<mgmt::Response>>{c->call(a), c->call(b)};
    });
    ASSERT_EQ(reply.size(), 2u);
    ASSERT_TRUE(reply[0]) << reply[0].error().message;
    EXPECT_TRUE(reply[0]->ok);
    EXPECT_EQ(reply[0]->result, (Json{{"x", "y"}}));
    ASSERT_TRUE(reply[1]);
    EXPECT_FALSE(reply[1]->ok);
    EXPECT_EQ(reply[1]->error_code, "not_found");
    EXPECT_EQ(server_->stats().ok.at("echo"), 1u);
    EXPECT_EQ(server_->stats().failed.at("other"), 1u);
}

TEST_F(MgmtServer, BadRequestClosesTheConnection) {
    start();
    const std::string out = raw("this is not json\n{\"command\":\"echo\"}\n", /*until_close=*/true);
    auto r = mgmt::parse_response(out.substr(0, out.find('\n')));
    ASSERT_TRUE(r) << out;
    EXPECT_FALSE(r->ok);
    EXPECT_EQ(r->error_code, "bad_request");
    EXPECT_EQ(r->error_message, "request is not valid JSON");
    EXPECT_EQ(out.find('\n'), out.size() - 1) << "nothing after the error: " << out;
    EXPECT_EQ(server_->stats().bad_requests, 1u);
}

TEST_F(MgmtServer, OversizedRequestIsRefused) {
    start();
    const std::string out = raw(std::string(mgmt::kMaxRequest + 100, 'x'), /*until_close=*/true);
    auto r = mgmt::parse_response(out.substr(0, out.find('\n')));
    ASSERT_TRUE(r) << out.substr(0, 200);
    EXPECT_EQ(r->error_code, "bad_request");
    EXPECT_EQ(r->error_message, "request longer than 65536 bytes");
}

TEST_F(MgmtServer, SilentClientIsDisconnectedAfterTheTimeout) {
    config_.timeout = std::chrono::milliseconds(100);
    start();
    // The loop's caller runs expire() (the daemon's timer); here the client waits for EOF
    // while the test thread keeps expiring.
    auto fut = std::async(std::launch::async, [&] {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, config_.socket.c_str());
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -2L;
        char c;
        const long n = ::recv(fd, &c, 1, 0); // blocks until the server closes
        ::close(fd);
        return n;
    });
    const auto end = std::chrono::steady_clock::now() + test::kDeadline;
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
           std::chrono::steady_clock::now() < end) {
        ASSERT_TRUE(loop_->run_once(std::chrono::milliseconds(20)));
        server_->expire();
    }
    EXPECT_EQ(fut.get(), 0L);
    EXPECT_EQ(server_->stats().timeouts, 1u);
}

TEST_F(MgmtServer, SecondServerOnTheSamePathIsRefused) {
    start();
    auto again = ManagementServer::create(
        *loop_, config_, [](const mgmt::Request&, const PeerCred&) { return mgmt::Response{}; });
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, Errc::exists);
    EXPECT_EQ(again.error().message,
              config_.socket + ": another dpnetbackd is running (the socket answers)");
}

TEST_F(MgmtServer, StaleSocketFileIsReplaced) {
    {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, config_.socket.c_str());
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        ::close(fd); // bound, never listening: what a crashed daemon leaves
    }
    start();
    const std::string out = raw("{\"command\":\"echo\"}\n", false);
    EXPECT_NE(out.find("\"ok\":true"), std::string::npos) << out;
}

TEST_F(MgmtServer, UnknownGroupIsAnError) {
    config_.group = "dpnb-no-such-group";
    auto s = ManagementServer::create(
        *loop_, config_, [](const mgmt::Request&, const PeerCred&) { return mgmt::Response{}; });
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().message, "[management] group: group \"dpnb-no-such-group\" does not exist");
}

TEST(MgmtPeer, Rules) {
    EXPECT_TRUE(peer_allowed({1, 0, 0}, std::nullopt));
    EXPECT_TRUE(peer_allowed({1, geteuid(), 0}, std::nullopt));
    const uid_t other = geteuid() == 0 ? 12345 : 0;
    if (other != 0) {
        EXPECT_FALSE(peer_allowed({getpid(), other, 4242}, std::nullopt));
        EXPECT_TRUE(peer_allowed({getpid(), other, 4242}, 4242));
        EXPECT_FALSE(peer_allowed({getpid(), other, 4243}, 4242));
        // Supplementary groups come from /proc/<pid>/status: ours.
        std::vector<gid_t> groups(getgroups(0, nullptr));
        getgroups(static_cast<int>(groups.size()), groups.data());
        for (gid_t g : groups) {
            if (g != 4243) {
                EXPECT_TRUE(peer_allowed({getpid(), other, 4243}, g));
            }
        }
    }
}

// Runs `fn` in a child process as uid/gid `id` (root only); returns its exit status.
template <class F>
int as_user(uid_t uid, gid_t gid, F fn) {
    const pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(100);
        _exit(fn());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 101;
}

class MgmtPermissions : public MgmtServer {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root to play another user";
        MgmtServer::SetUp();
    }
    // In a child running as nobody: 0 allowed, 1 refused at connect (socket mode), 2 refused
    // by the daemon (SO_PEERCRED), 3 other.
    int try_as_nobody(gid_t gid) {
        const std::string path = config_.socket;
        return test::run_with_loop(*loop_, [&] {
            return as_user(65534, gid, [&] {
                auto c = mgmt::Client::connect(path, std::chrono::seconds(60));
                if (!c) return c.error().code == Errc::permission_denied ? 1 : 3;
                auto r = c->call({"echo", Json::object(), nullptr});
                if (!r) return 3;
                if (r->ok) return 0;
                return r->error_code == "permission_denied" ? 2 : 3;
            });
        });
    }
};

TEST_F(MgmtPermissions, RootOnlyByDefault) {
    start();
    EXPECT_EQ(try_as_nobody(65534), 1);
}

TEST_F(MgmtPermissions, ConfiguredGroupMayConnect) {
    group* g = getgrgid(65534); // nogroup on Debian
    if (!g) GTEST_SKIP() << "no group 65534";
    config_.group = g->gr_name;
    start();
    struct stat st {};
    ASSERT_EQ(stat(config_.socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_gid, 65534u);
    EXPECT_EQ(try_as_nobody(65534), 0);
    // Taking the group away on reload closes the door again.
    config_.group = "";
    ASSERT_TRUE(server_->apply(config_));
    EXPECT_EQ(try_as_nobody(65534), 1);
}

TEST_F(MgmtPermissions, PeerCredentialsAreCheckedEvenIfTheSocketIsOpen) {
    start();
    // An operator's mistake (or an fd passed on): the file is world-writable.
    ASSERT_EQ(chmod(config_.socket.c_str(), 0666), 0);
    EXPECT_EQ(try_as_nobody(65534), 2);
    EXPECT_EQ(server_->stats().denied, 1u);
}

} // namespace
} // namespace dpnb::daemon
