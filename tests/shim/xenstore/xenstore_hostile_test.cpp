// Raw xs_wire clients against the simulated xenstore server. Mostly hostile and broken
// ones: oversized and garbage headers, malformed payloads, disconnects in the middle of a
// message, clients that never read, too many connections, random streams; each test checks
// that the offender gets an error or is disconnected, and that everybody else is still
// served and the tree is still consistent (XS_CONTROL "check"). Also the dom0-only requests
// (INTRODUCE, RELEASE, SET_TARGET, ...) and RESET_WATCHES, spoken raw.
#include <cerrno>
#include <cstdint>
#include <random>

#include <xen/io/xs_wire.h>

#include "xs_test_util.hpp"

namespace dpnb::hv::test {
namespace {

std::string z(const std::string& s) {
    return s + std::string(1, '\0');
}

class HostileTest : public XenstoreTest {
protected:
    void SetUp() override {
        XenstoreTest::SetUp();
        ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    }

    // The server still answers dom0, and its tree is consistent.
    void expect_healthy() {
        auto dom0 = connect(0);
        ASSERT_TRUE(dom0);
        EXPECT_EQ(dom0->read(kNoTxn, "/local/domain/5/name").value_or(""), "guest5");
        RawClient raw(server_->socket_path(0));
        ASSERT_TRUE(raw.connected());
        ASSERT_TRUE(raw.send_msg(XS_CONTROL, 1, z("check")));
        auto reply = raw.receive();
        ASSERT_TRUE(reply);
        EXPECT_EQ(reply->type, static_cast<std::uint32_t>(XS_CONTROL));
        EXPECT_EQ(reply->payload, z("OK"));
    }

    // Sends one request and returns "<TYPE-NAME>:<payload>" of the answer (error names for
    // XS_ERROR), checking that req_id and tx_id are echoed.
    std::string ask(RawClient& c, std::uint32_t type, const std::string& payload,
                    std::uint32_t tx_id = 0) {
        static std::uint32_t next_id = 100;
        const std::uint32_t id = next_id++;
        if (!c.send_msg(type, id, payload, tx_id)) return "send failed";
        auto r = c.receive();
        if (!r) return "no reply";
        EXPECT_EQ(r->req_id, id);
        EXPECT_EQ(r->tx_id, tx_id);
        if (r->type == XS_ERROR) return "ERROR:" + r->payload.substr(0, r->payload.find('\0'));
        if (r->type != type) return "wrong type " + std::to_string(r->type);
        return "OK:" + r->payload;
    }
};

TEST_F(HostileTest, OversizedLengthDisconnectsOnlyThatClient) {
    RawClient bystander(server_->socket_path(5));
    RawClient evil(server_->socket_path(5));
    ASSERT_TRUE(bystander.connected() && evil.connected());
    std::uint32_t hdr[4] = {XS_READ, 1, 0, XENSTORE_PAYLOAD_MAX + 1};
    ASSERT_TRUE(evil.send_raw(hdr, sizeof(hdr)));
    EXPECT_TRUE(evil.closed_by_server());
    EXPECT_EQ(ask(bystander, XS_READ, z("name")), "OK:guest5");
    expect_healthy();
}

TEST_F(HostileTest, HugeLengthDisconnects) {
    RawClient evil(server_->socket_path(5));
    ASSERT_TRUE(evil.connected());
    std::uint32_t hdr[4] = {XS_WRITE, 1, 0, 0xFFFFFFFFu};
    ASSERT_TRUE(evil.send_raw(hdr, sizeof(hdr)));
    EXPECT_TRUE(evil.closed_by_server());
    expect_healthy();
}

TEST_F(HostileTest, UnknownAndServerOnlyTypesGetEnosys) {
    RawClient c(server_->socket_path(5));
    ASSERT_TRUE(c.connected());
    EXPECT_EQ(ask(c, 999, z("x")), "ERROR:ENOSYS");
    EXPECT_EQ(ask(c, XS_INVALID, ""), "ERROR:ENOSYS");
    EXPECT_EQ(ask(c, XS_WATCH_EVENT, z("a") + z("b")), "ERROR:ENOSYS");
    EXPECT_EQ(ask(c, XS_ERROR, z("EINVAL")), "ERROR:ENOSYS");
    EXPECT_EQ(ask(c, 20, z("x")), "ERROR:ENOSYS"); // the removed XS_RESTRICT
    EXPECT_EQ(ask(c, XS_READ, z("name")), "OK:guest5");
    expect_healthy();
}

TEST_F(HostileTest, MalformedPayloadsGetEinval) {
    RawClient c(server_->socket_path(5));
    ASSERT_TRUE(c.connected());
    EXPECT_EQ(ask(c, XS_READ, "name"), "ERROR:EINVAL");             // no nul
    EXPECT_EQ(ask(c, XS_READ, ""), "ERROR:EINVAL");                 // nothing
    EXPECT_EQ(ask(c, XS_READ, z("name") + z("x")), "ERROR:EINVAL"); // two strings
    EXPECT_EQ(ask(c, XS_READ, z("/a//b")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_WRITE, "data/x"), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_WATCH, z("data")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_WATCH, z("data") + z("t") + z("extra")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_WATCH, z("@" + std::string(3000, 'x')) + z("t")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_DIRECTORY_PART, z("data") + z("12abc")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_DIRECTORY_PART, z("data")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_SET_PERMS, z("data")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_SET_PERMS, z("data") + z("x5")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_SET_PERMS, z("data") + z("r99999")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_SET_PERMS, z("data") + z("r")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_GET_DOMAIN_PATH, z("abc")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_GET_DOMAIN_PATH, z("-1")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_TRANSACTION_END, z("X")), "ERROR:EINVAL");
    EXPECT_EQ(ask(c, XS_TRANSACTION_END, z("T")), "ERROR:ENOENT"); // no transaction
    EXPECT_EQ(ask(c, XS_READ, z("name"), 77), "ERROR:ENOENT");     // unknown tx_id
    EXPECT_EQ(ask(c, XS_UNWATCH, z("never") + z("t")), "ERROR:ENOENT");
    // The privileged operations are dom0's.
    EXPECT_EQ(ask(c, XS_INTRODUCE, z("9") + z("1234") + z("5")), "ERROR:EACCES");
    EXPECT_EQ(ask(c, XS_RELEASE, z("5")), "ERROR:EACCES");
    EXPECT_EQ(ask(c, XS_IS_DOMAIN_INTRODUCED, z("5")), "ERROR:EACCES");
    EXPECT_EQ(ask(c, XS_SET_TARGET, z("5") + z("0")), "ERROR:EACCES");
    EXPECT_EQ(ask(c, XS_CONTROL, z("check")), "ERROR:EACCES");
    // Still a working connection.
    EXPECT_EQ(ask(c, XS_READ, z("name")), "OK:guest5");
    EXPECT_EQ(ask(c, XS_GET_DOMAIN_PATH, z("5")), "OK:" + z("/local/domain/5"));
    expect_healthy();
}

TEST_F(HostileTest, DirectoryPartWithAnyOffsetStaysInBounds) {
    RawClient dom0(server_->socket_path(0));
    ASSERT_TRUE(dom0.connected());
    EXPECT_EQ(ask(dom0, XS_WRITE, z("/d/alpha") + "1"), "OK:" + z("OK"));
    EXPECT_EQ(ask(dom0, XS_WRITE, z("/d/beta") + "2"), "OK:" + z("OK"));
    // The list is "alpha\0beta\0": offsets inside names, at the end and far beyond.
    for (std::uint32_t off : {0u, 1u, 3u, 5u, 6u, 8u, 10u, 11u, 12u, 4096u, 4294967295u}) {
        std::string answer = ask(dom0, XS_DIRECTORY_PART, z("/d") + z(std::to_string(off)));
        ASSERT_EQ(answer.rfind("OK:", 0), 0u) << off << ": " << answer;
        EXPECT_LE(answer.size(), 3u + XENSTORE_PAYLOAD_MAX);
    }
    std::string whole = ask(dom0, XS_DIRECTORY_PART, z("/d") + z("0"));
    // <generation>\0alpha\0beta\0\0
    auto gen_end = whole.find('\0');
    ASSERT_NE(gen_end, std::string::npos);
    EXPECT_EQ(whole.substr(gen_end + 1), z("alpha") + z("beta") + z(""));
    expect_healthy();
}

TEST_F(HostileTest, DisconnectInTheMiddleOfAMessage) {
    {
        RawClient c(server_->socket_path(5));
        ASSERT_TRUE(c.connected());
        std::uint32_t hdr[4] = {XS_READ, 1, 0, 5};
        ASSERT_TRUE(c.send_raw(hdr, 7)); // part of the header
    }
    {
        RawClient c(server_->socket_path(5));
        ASSERT_TRUE(c.connected());
        std::uint32_t hdr[4] = {XS_WRITE, 1, 0, 100};
        ASSERT_TRUE(c.send_raw(hdr, sizeof(hdr)));
        ASSERT_TRUE(c.send_raw("data/x\0", 7)); // part of the payload
    }
    {
        // Requests sent, then gone before the replies.
        RawClient c(server_->socket_path(5));
        ASSERT_TRUE(c.connected());
        std::string two = RawClient::message(XS_WRITE, 1, 0, z("data/y") + "v") +
                          RawClient::message(XS_READ, 2, 0, z("data/y"));
        ASSERT_TRUE(c.send_raw(two.data(), two.size()));
    }
    expect_healthy();
}

TEST_F(HostileTest, PipelinedRequestsAreAnsweredInOrder) {
    RawClient c(server_->socket_path(5));
    ASSERT_TRUE(c.connected());
    std::string batch = RawClient::message(XS_WRITE, 11, 0, z("data/p") + "v1") +
                        RawClient::message(XS_READ, 12, 0, z("data/p")) +
                        RawClient::message(XS_READ, 13, 0, z("data/missing")) +
                        RawClient::message(XS_DIRECTORY, 14, 0, z("data"));
    ASSERT_TRUE(c.send_raw(batch.data(), batch.size()));
    auto r1 = c.receive();
    auto r2 = c.receive();
    auto r3 = c.receive();
    auto r4 = c.receive();
    ASSERT_TRUE(r1 && r2 && r3 && r4);
    EXPECT_EQ(r1->req_id, 11u);
    EXPECT_EQ(r1->payload, z("OK"));
    EXPECT_EQ(r2->req_id, 12u);
    EXPECT_EQ(r2->payload, "v1");
    EXPECT_EQ(r3->req_id, 13u);
    EXPECT_EQ(r3->type, static_cast<std::uint32_t>(XS_ERROR));
    EXPECT_EQ(r3->payload, z("ENOENT"));
    EXPECT_EQ(r4->req_id, 14u);
    EXPECT_EQ(r4->payload, z("p"));
}

TEST(HostileQuotaTest, ClientThatDoesNotReadItsEventsIsDisconnected) {
    TempDir dir;
    sim::XenstoreQuotas q;
    q.output_bytes_per_connection = 64 * 1024;
    auto server = sim::XenstoreServer::start(dir.path(), q);
    ASSERT_TRUE(server);
    ASSERT_TRUE((*server)->introduce_domain(5, "guest5"));

    RawClient sleeper((*server)->socket_path(5));
    ASSERT_TRUE(sleeper.connected());
    const std::string token(2000, 't');
    ASSERT_TRUE(sleeper.send_msg(XS_WATCH, 1, z("data") + z(token)));
    // From here on the sleeper reads nothing while dom0 makes its watch fire.
    auto dom0 = open_xenstore((*server)->socket_path(0));
    ASSERT_TRUE(dom0);
    for (int i = 0; i < 800; ++i)
        ASSERT_TRUE((*dom0)->write(kNoTxn, "/local/domain/5/data/x", std::to_string(i)));
    EXPECT_TRUE(sleeper.closed_by_server());
    EXPECT_EQ((*dom0)->read(kNoTxn, "/local/domain/5/data/x").value_or(""), "799");
}

TEST(HostileQuotaTest, TooManyConnectionsAreClosedAtOnce) {
    TempDir dir;
    sim::XenstoreQuotas q;
    q.connections_per_domain = 3;
    auto server = sim::XenstoreServer::start(dir.path(), q);
    ASSERT_TRUE(server);
    ASSERT_TRUE((*server)->introduce_domain(5, "guest5"));
    const std::string path = (*server)->socket_path(5);

    auto works = [](RawClient& c) {
        if (!c.send_msg(XS_READ, 1, z("name"))) return false;
        auto r = c.receive();
        return r && r->payload == "guest5";
    };
    auto a = std::make_unique<RawClient>(path);
    RawClient b(path), c(path);
    ASSERT_TRUE(works(*a) && works(b) && works(c));
    RawClient d(path);
    ASSERT_TRUE(d.connected()); // the kernel accepts; the server closes it
    EXPECT_TRUE(d.closed_by_server());
    a.reset(); // one leaves: room for another
    // The server notices the close asynchronously; a new client is accepted once it has.
    bool accepted = false;
    for (int i = 0; i < 200 && !accepted; ++i) {
        RawClient e(path);
        accepted = works(e);
    }
    EXPECT_TRUE(accepted);
    // Other domains are not affected.
    auto dom0 = open_xenstore((*server)->socket_path(0));
    ASSERT_TRUE(dom0);
    EXPECT_TRUE((*dom0)->read(kNoTxn, "/local/domain/5/name"));
}

TEST(HostileQuotaTest, TransactionMemoryIsBoundedPerDomain) {
    TempDir dir;
    sim::XenstoreQuotas q;
    q.transaction_bytes_per_domain = 64 * 1024;
    auto server = sim::XenstoreServer::start(dir.path(), q);
    ASSERT_TRUE(server);
    ASSERT_TRUE((*server)->introduce_domain(5, "guest5"));
    auto g = open_xenstore((*server)->socket_path(5));
    ASSERT_TRUE(g);
    Xenstore& xs = **g;
    auto t = xs.transaction_start();
    ASSERT_TRUE(t);
    // Every absent node looked at is remembered for the conflict check: a hostile guest
    // could grow that without end.
    Error last;
    int reads = 0;
    for (; reads < 20000; ++reads) {
        auto r = xs.read(*t, "data/absent-" + std::to_string(reads));
        if (!r && r.error().code != Errc::not_found) {
            last = r.error();
            break;
        }
    }
    EXPECT_LT(reads, 20000);
    EXPECT_EQ(last.sys_errno, ENOSPC);
    ASSERT_TRUE(xs.transaction_end(*t, false));
    // Abandoning it gave the memory back.
    auto u = xs.transaction_start();
    ASSERT_TRUE(u);
    EXPECT_TRUE(xs.write(*u, "data/ok", "1"));
    EXPECT_TRUE(xs.transaction_end(*u, true));
}

TEST_F(HostileTest, RandomStreamsDoNotHurtTheServer) {
    std::mt19937 rng(20240501);
    auto pick = [&](std::uint32_t n) { return static_cast<std::uint32_t>(rng() % n); };
    const char* fragments[] = {"data",     "/local/domain/5/data",
                               "name",     "@releaseDomain",
                               "T",        "F",
                               "r5",       "b0",
                               "n5",       "0",
                               "/",        "..",
                               "data/a/b", ""};
    for (int round = 0; round < 20; ++round) {
        RawClient c(server_->socket_path(5));
        ASSERT_TRUE(c.connected());
        std::uint32_t sent = 0;
        for (int i = 0; i < 50; ++i) {
            std::string payload;
            std::uint32_t parts = pick(4);
            for (std::uint32_t p = 0; p < parts; ++p) {
                if (pick(4) == 0) {
                    std::uint32_t len = pick(64);
                    for (std::uint32_t k = 0; k < len; ++k)
                        payload += static_cast<char>(pick(256));
                } else {
                    payload += fragments[pick(sizeof(fragments) / sizeof(fragments[0]))];
                }
                if (pick(5) != 0) payload += '\0';
            }
            std::uint32_t type = pick(5) == 0 ? pick(1000) : pick(XS_TYPE_COUNT);
            std::uint32_t tx = pick(4) == 0 ? pick(5) : 0;
            if (!c.send_msg(type, i + 1, payload, tx)) break;
            ++sent;
        }
        // Each request gets exactly one answer (watch events may come in between).
        std::uint32_t answers = 0;
        while (answers < sent) {
            auto r = c.receive();
            if (!r) break;
            if (r->type != XS_WATCH_EVENT) ++answers;
        }
        EXPECT_EQ(answers, sent) << "round " << round;
    }
    expect_healthy();
}

TEST_F(HostileTest, TooManyWatchesAreRefusedAndOthersKeepWatching) {
    RawClient evil(server_->socket_path(5));
    ASSERT_TRUE(evil.connected());
    int accepted = 0;
    std::string refusal;
    for (int i = 0; i < 200 && refusal.empty(); ++i) {
        ASSERT_TRUE(evil.send_msg(XS_WATCH, 1, z("data") + z("t" + std::to_string(i))));
        auto reply = evil.receive();
        ASSERT_TRUE(reply);
        if (reply->type == XS_ERROR) {
            refusal = reply->payload;
        } else {
            ++accepted;
            ASSERT_TRUE(evil.receive()); // its initial firing
        }
    }
    EXPECT_EQ(accepted, 128); // xenstored's default per domain
    EXPECT_EQ(refusal, z("E2BIG"));

    ASSERT_TRUE(server_->introduce_domain(6, "guest6"));
    auto other = connect(6);
    ASSERT_TRUE(other);
    EXPECT_TRUE(other->watch("data", "fine"));
    auto ev = next_event(*other);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->token, "fine");
    expect_healthy();
}

TEST_F(HostileTest, PrivilegedDomainRequestsFromDom0) {
    RawClient dom0(server_->socket_path(0));
    ASSERT_TRUE(dom0.connected());
    auto watcher = connect(0);
    ASSERT_TRUE(watcher);
    ASSERT_TRUE(watcher->watch("@introduceDomain", "intro"));
    ASSERT_TRUE(watcher->watch("@releaseDomain", "rel"));
    (void)events_until(*watcher, "rel"); // both initial firings

    EXPECT_EQ(ask(dom0, XS_IS_DOMAIN_INTRODUCED, z("9")), "OK:" + z("F"));
    EXPECT_EQ(ask(dom0, XS_IS_DOMAIN_INTRODUCED, z("0")), "OK:" + z("T"));
    EXPECT_EQ(ask(dom0, XS_INTRODUCE, z("9") + z("-123") + z("4")), "OK:" + z("OK"));
    EXPECT_EQ(events_until(*watcher, "intro").size(), 0u);
    EXPECT_EQ(ask(dom0, XS_INTRODUCE, z("9") + z("123") + z("4")), "OK:" + z("OK")); // again
    EXPECT_EQ(ask(dom0, XS_IS_DOMAIN_INTRODUCED, z("9")), "OK:" + z("T"));
    EXPECT_EQ(ask(dom0, XS_INTRODUCE, z("0") + z("1") + z("1")), "ERROR:EINVAL");
    EXPECT_EQ(ask(dom0, XS_INTRODUCE, z("32752") + z("1") + z("1")), "ERROR:EINVAL");
    EXPECT_EQ(ask(dom0, XS_INTRODUCE, z("9") + z("x") + z("1")), "ERROR:EINVAL");
    EXPECT_EQ(ask(dom0, XS_INTRODUCE, z("9") + z("1")), "ERROR:EINVAL");

    // Domain 9 acting for domain 5 gets domain 5's rights.
    auto d9 = connect(9);
    ASSERT_TRUE(d9);
    EXPECT_EQ(describe(d9->write(kNoTxn, "/local/domain/5/data/t", "x")), "permission_denied");
    EXPECT_EQ(ask(dom0, XS_SET_TARGET, z("9") + z("5")), "OK:" + z("OK"));
    EXPECT_EQ(describe(d9->write(kNoTxn, "/local/domain/5/data/t", "x")), "ok");
    EXPECT_EQ(ask(dom0, XS_SET_TARGET, z("9") + z("77")), "ERROR:ENOENT");

    EXPECT_EQ(ask(dom0, XS_RESUME, z("9")), "OK:" + z("OK"));
    EXPECT_EQ(ask(dom0, XS_RESUME, z("77")), "ERROR:ENOENT");

    EXPECT_EQ(ask(dom0, XS_RELEASE, z("9")), "OK:" + z("OK"));
    EXPECT_EQ(events_until(*watcher, "rel").size(), 0u);
    EXPECT_EQ(ask(dom0, XS_IS_DOMAIN_INTRODUCED, z("9")), "OK:" + z("F"));
    EXPECT_EQ(ask(dom0, XS_RELEASE, z("9")), "ERROR:ENOENT");
    EXPECT_EQ(ask(dom0, XS_RELEASE, z("0")), "ERROR:EINVAL");
    EXPECT_EQ(describe(d9->read(kNoTxn, "/local/domain/5/data/t")), "closed");

    EXPECT_EQ(ask(dom0, XS_CONTROL, z("help")).rfind("OK:check\n", 0), 0u);
    EXPECT_EQ(ask(dom0, XS_CONTROL, z("no-such-command")), "ERROR:EINVAL");
    expect_healthy();
}

TEST_F(HostileTest, ResetWatchesDropsWatchesAndTransactions) {
    RawClient c(server_->socket_path(5));
    ASSERT_TRUE(c.connected());
    EXPECT_EQ(ask(c, XS_WATCH, z("data") + z("t")), "OK:" + z("OK"));
    auto initial = c.receive();
    ASSERT_TRUE(initial);
    EXPECT_EQ(initial->type, static_cast<std::uint32_t>(XS_WATCH_EVENT));
    EXPECT_EQ(initial->payload, z("data") + z("t"));
    std::string started = ask(c, XS_TRANSACTION_START, z(""));
    ASSERT_EQ(started.rfind("OK:", 0), 0u);
    auto tx = static_cast<std::uint32_t>(std::stoul(started.substr(3)));
    EXPECT_EQ(ask(c, XS_READ, z("name"), tx), "OK:guest5");
    EXPECT_EQ(ask(c, XS_TRANSACTION_START, z(""), tx), "ERROR:EBUSY"); // no nesting

    EXPECT_EQ(ask(c, XS_RESET_WATCHES, z("")), "OK:" + z("OK"));
    EXPECT_EQ(ask(c, XS_READ, z("name"), tx), "ERROR:ENOENT");
    EXPECT_EQ(ask(c, XS_UNWATCH, z("data") + z("t")), "ERROR:ENOENT");
    // No event any more: the next message is the reply to this write.
    EXPECT_EQ(ask(c, XS_WRITE, z("data/after") + "1"), "OK:" + z("OK"));
    expect_healthy();
}

} // namespace
} // namespace dpnb::hv::test
