// The real client (libxenstore through open_xenstore) against the simulated server: nodes,
// relative paths, permissions per domain (guests run in forked child processes connected
// through their own domain's socket), transactions, watches and domain introduction and
// release.
#include <algorithm>
#include <atomic>
#include <thread>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "xs_test_util.hpp"

namespace dpnb::hv::test {
namespace {

using Perms = std::vector<XsPerm>;
using Names = std::vector<std::string>;

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// --- nodes ------------------------------------------------------------------------------

TEST_F(XenstoreTest, InitialTreeAsXenstoredAndInitDom0LeaveIt) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    EXPECT_EQ(xs->read(kNoTxn, "/local/domain/0/name").value_or(""), "Domain-0");
    EXPECT_EQ(xs->read(kNoTxn, "/local/domain/0/domid").value_or(""), "0");
    auto root = xs->directory(kNoTxn, "/");
    ASSERT_TRUE(root);
    EXPECT_TRUE(contains(*root, "local"));
    EXPECT_TRUE(contains(*root, "tool"));
    auto perms = xs->get_permissions(kNoTxn, "/");
    ASSERT_TRUE(perms);
    EXPECT_EQ(*perms, (Perms{{0, XsPerm::none}}));
    EXPECT_EQ(xs->domain_path(7).value_or(""), "/local/domain/7");
}

TEST_F(XenstoreTest, WriteReadDirectoryRm) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    ASSERT_TRUE(xs->write(kNoTxn, "/test/a", "hello"));
    ASSERT_TRUE(xs->write(kNoTxn, "/test/b", ""));
    EXPECT_EQ(xs->read(kNoTxn, "/test/a").value_or("?"), "hello");
    EXPECT_EQ(xs->read(kNoTxn, "/test/b").value_or("?"), "");
    EXPECT_EQ(xs->directory(kNoTxn, "/test").value_or(Names{}), (Names{"a", "b"}));

    // Values are octet strings: nuls and high bytes round-trip.
    const std::string binary("a\0b\xff", 4);
    ASSERT_TRUE(xs->write(kNoTxn, "/test/bin", binary));
    EXPECT_EQ(xs->read(kNoTxn, "/test/bin").value_or(""), binary);

    ASSERT_TRUE(xs->mkdir(kNoTxn, "/test/dir"));
    ASSERT_TRUE(xs->mkdir(kNoTxn, "/test/dir")); // already there: fine
    EXPECT_EQ(xs->read(kNoTxn, "/test/dir").value_or("?"), "");

    ASSERT_TRUE(xs->rm(kNoTxn, "/test"));
    auto gone = xs->read(kNoTxn, "/test/a");
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, Errc::not_found);
    EXPECT_FALSE(contains(xs->directory(kNoTxn, "/").value_or(Names{}), "test"));
}

TEST_F(XenstoreTest, WriteCreatesParentsWithEmptyValuesAndInheritedPermissions) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    ASSERT_TRUE(xs->mkdir(kNoTxn, "/p"));
    ASSERT_TRUE(xs->set_permissions(kNoTxn, "/p", {{0, XsPerm::none}, {4, XsPerm::read}}));
    ASSERT_TRUE(xs->write(kNoTxn, "/p/q/r/s", "v"));
    EXPECT_EQ(xs->read(kNoTxn, "/p/q").value_or("?"), "");
    EXPECT_EQ(xs->read(kNoTxn, "/p/q/r").value_or("?"), "");
    // dom0 is privileged: what it creates keeps the parent's owner.
    EXPECT_EQ(xs->get_permissions(kNoTxn, "/p/q/r/s").value_or(Perms{}),
              (Perms{{0, XsPerm::none}, {4, XsPerm::read}}));
}

TEST_F(XenstoreTest, RmIsFineForAMissingNodeButNotForAMissingParent) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    ASSERT_TRUE(xs->mkdir(kNoTxn, "/r"));
    EXPECT_TRUE(xs->rm(kNoTxn, "/r/missing"));
    auto st = xs->rm(kNoTxn, "/r/missing/deeper");
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, Errc::not_found);
    auto root = xs->rm(kNoTxn, "/");
    ASSERT_FALSE(root);
    EXPECT_EQ(root.error().code, Errc::invalid_argument);
}

TEST_F(XenstoreTest, InvalidPathsAreRejected) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    for (const char* bad : {"/a//b", "/a/", "/a b", "/a\xc3\xa9", "/a.b", ""}) {
        auto st = xs->write(kNoTxn, bad, "x");
        ASSERT_FALSE(st) << bad;
        EXPECT_EQ(st.error().code, Errc::invalid_argument) << bad;
    }
    EXPECT_FALSE(xs->write(kNoTxn, std::string_view("/a\0b", 4), "x"));
    // Longer than XENSTORE_ABS_PATH_MAX.
    std::string longpath = "/" + std::string(3100, 'x');
    auto st = xs->write(kNoTxn, longpath, "x");
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, Errc::invalid_argument);
}

TEST_F(XenstoreTest, LongDirectoriesArePagedWithDirectoryPart) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    // 300 names of 24 bytes: far more than one XENSTORE_PAYLOAD_MAX reply.
    std::vector<std::string> names;
    for (int i = 0; i < 300; ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "child-with-a-long-name-%03d", i);
        names.emplace_back(name);
    }
    ASSERT_TRUE(run_transaction(*xs, [&](XsTxn t) -> Status {
        for (const auto& n : names)
            if (auto st = xs->write(t, "/big/" + n, "x"); !st) return st;
        return ok();
    }));
    auto listed = xs->directory(kNoTxn, "/big");
    ASSERT_TRUE(listed) << listed.error().describe();
    EXPECT_EQ(*listed, names);
}

// --- domains, relative paths and permissions --------------------------------------------

TEST_F(XenstoreTest, IntroduceDomainBuildsTheHomeFolderAsLibxl) {
    auto dom0 = connect(0);
    ASSERT_TRUE(dom0);
    ASSERT_TRUE(dom0->watch("@introduceDomain", "intro"));
    auto initial = next_event(*dom0);
    ASSERT_TRUE(initial);
    EXPECT_EQ(initial->path, "@introduceDomain");

    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    auto ev = next_event(*dom0);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->path, "@introduceDomain");
    EXPECT_EQ(ev->token, "intro");

    EXPECT_EQ(dom0->read(kNoTxn, "/local/domain/5/name").value_or(""), "guest5");
    EXPECT_EQ(dom0->read(kNoTxn, "/local/domain/5/domid").value_or(""), "5");
    EXPECT_EQ(dom0->get_permissions(kNoTxn, "/local/domain/5").value_or(Perms{}),
              (Perms{{0, XsPerm::none}, {5, XsPerm::read}}));
    EXPECT_EQ(dom0->get_permissions(kNoTxn, "/local/domain/5/data").value_or(Perms{}),
              (Perms{{5, XsPerm::none}}));
    struct stat st;
    EXPECT_EQ(::stat(server_->socket_path(5).c_str(), &st), 0);

    auto again = server_->introduce_domain(5, "guest5");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, Errc::exists);
    EXPECT_FALSE(server_->introduce_domain(0, "dom0"));
}

TEST_F(XenstoreTest, GuestUsesRelativePathsAndOwnsWhatItCreates) {
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    const std::string socket = server_->socket_path(5);
    std::string result = run_in_child([&] {
        auto xs = open_xenstore(socket);
        if (!xs) return std::string("open: ") + xs.error().describe();
        std::string out;
        out += (*xs)->read(kNoTxn, "name").value_or("<fail>") + ";";
        out += describe((*xs)->write(kNoTxn, "data/x", "1")) + ";";
        out += (*xs)->read(kNoTxn, "/local/domain/5/data/x").value_or("<fail>") + ";";
        out += (*xs)->domain_path(5).value_or("<fail>");
        return out;
    });
    EXPECT_EQ(result, "guest5;ok;1;/local/domain/5");

    auto dom0 = connect(0);
    ASSERT_TRUE(dom0);
    EXPECT_EQ(dom0->read(kNoTxn, "/local/domain/5/data/x").value_or(""), "1");
    EXPECT_EQ(dom0->get_permissions(kNoTxn, "/local/domain/5/data/x").value_or(Perms{}),
              (Perms{{5, XsPerm::none}}));
}

TEST_F(XenstoreTest, GuestIsConfinedByPermissions) {
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    ASSERT_TRUE(server_->introduce_domain(6, "guest6"));
    auto dom0 = connect(0);
    ASSERT_TRUE(dom0);
    // A folder dom0 shares with domain 5 (read and write), readable by everyone else.
    ASSERT_TRUE(dom0->mkdir(kNoTxn, "/shared"));
    ASSERT_TRUE(dom0->set_permissions(kNoTxn, "/shared", {{0, XsPerm::read}, {5, XsPerm::both}}));
    ASSERT_TRUE(dom0->write(kNoTxn, "/shared/hello", "world"));

    const std::string socket5 = server_->socket_path(5);
    std::string result = run_in_child([&] {
        auto xs = open_xenstore(socket5);
        if (!xs) return std::string("open failed");
        Xenstore& g = **xs;
        std::vector<std::string> r;
        r.push_back(describe(g.read(kNoTxn, "/local/domain/0/name")));    // dom0's
        r.push_back(describe(g.read(kNoTxn, "/local/domain/0/nothing"))); // hidden: EACCES
        r.push_back(describe(g.read(kNoTxn, "nothing")));                 // own home: ENOENT
        r.push_back(describe(g.write(kNoTxn, "name", "evil")));           // read-only to it
        r.push_back(describe(g.write(kNoTxn, "/local/domain/6/data/x", "1")));
        r.push_back(describe(g.read(kNoTxn, "/local/domain/6/name")));
        r.push_back(describe(g.rm(kNoTxn, "/local/domain/5")));
        r.push_back(g.read(kNoTxn, "/shared/hello").value_or("<fail>"));
        r.push_back(describe(g.write(kNoTxn, "/shared/mine", "5")));
        // Not its node to give away, nor its own to give away.
        r.push_back(describe(g.set_permissions(kNoTxn, "/shared", {{5, XsPerm::none}})));
        r.push_back(describe(g.set_permissions(kNoTxn, "/shared/mine", {{0, XsPerm::none}})));
        r.push_back(describe(
            g.set_permissions(kNoTxn, "/shared/mine", {{5, XsPerm::none}, {6, XsPerm::read}})));
        std::string out;
        for (const auto& s : r)
            out += s + ",";
        return out;
    });
    EXPECT_EQ(result, "permission_denied,permission_denied,not_found,permission_denied,"
                      "permission_denied,permission_denied,permission_denied,world,ok,"
                      "permission_denied,permission_denied,ok,");

    // What domain 5 created is its own; domain 6 was granted read on it.
    EXPECT_EQ(dom0->get_permissions(kNoTxn, "/shared/mine").value_or(Perms{}),
              (Perms{{5, XsPerm::none}, {6, XsPerm::read}}));
    const std::string socket6 = server_->socket_path(6);
    std::string result6 = run_in_child([&] {
        auto xs = open_xenstore(socket6);
        if (!xs) return std::string("open failed");
        return (*xs)->read(kNoTxn, "/shared/mine").value_or("<fail>") + "," +
               describe((*xs)->write(kNoTxn, "/shared/mine", "6")) + "," +
               (*xs)->read(kNoTxn, "/shared/hello").value_or("<fail>");
    });
    EXPECT_EQ(result6, "5,permission_denied,world");

    // dom0 may do anything anywhere.
    EXPECT_TRUE(dom0->write(kNoTxn, "/shared/mine", "0"));
    EXPECT_TRUE(dom0->write(kNoTxn, "/local/domain/5/data/by-dom0", "x"));
    EXPECT_TRUE(dom0->rm(kNoTxn, "/local/domain/5/data/by-dom0"));
}

TEST_F(XenstoreTest, ReleaseDomainCleansUpAndFiresReleaseDomain) {
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    auto dom0 = connect(0);
    ASSERT_TRUE(dom0);
    ASSERT_TRUE(dom0->mkdir(kNoTxn, "/shared"));
    ASSERT_TRUE(dom0->set_permissions(kNoTxn, "/shared", {{0, XsPerm::none}, {5, XsPerm::both}}));
    ASSERT_TRUE(dom0->mkdir(kNoTxn, "/granted"));
    ASSERT_TRUE(dom0->set_permissions(kNoTxn, "/granted", {{0, XsPerm::none}, {5, XsPerm::read}}));
    const std::string socket5 = server_->socket_path(5);
    std::string created = run_in_child([&] {
        auto xs = open_xenstore(socket5);
        if (!xs) return std::string("open failed");
        return describe((*xs)->write(kNoTxn, "/shared/by-5", "x"));
    });
    ASSERT_EQ(created, "ok");

    ASSERT_TRUE(dom0->watch("@releaseDomain", "rel"));
    ASSERT_TRUE(dom0->watch("/local/domain/5", "home"));
    (void)events_until(*dom0, "rel");
    (void)events_until(*dom0, "home");

    ASSERT_TRUE(server_->release_domain(5));
    bool saw_home = false;
    for (auto& ev : events_until(*dom0, "rel"))
        if (ev.token == "home" && ev.path == "/local/domain/5") saw_home = true;
    EXPECT_TRUE(saw_home);

    EXPECT_EQ(describe(dom0->read(kNoTxn, "/local/domain/5/name")), "not_found");
    EXPECT_EQ(describe(dom0->read(kNoTxn, "/shared/by-5")), "not_found"); // it owned it
    EXPECT_EQ(dom0->get_permissions(kNoTxn, "/granted").value_or(Perms{}),
              (Perms{{0, XsPerm::none}}));
    struct stat st;
    EXPECT_NE(::stat(socket5.c_str(), &st), 0);
    EXPECT_EQ(server_->release_domain(5).error().code, Errc::not_found);
    EXPECT_FALSE(server_->release_domain(0));
}

TEST_F(XenstoreTest, ReleaseDomainClosesItsConnections) {
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    const std::string socket5 = server_->socket_path(5);
    int to_child[2], to_parent[2];
    ASSERT_EQ(::pipe(to_child), 0);
    ASSERT_EQ(::pipe(to_parent), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        auto xs = open_xenstore(socket5);
        char c = xs && (*xs)->read(kNoTxn, "name") ? 'c' : 'x';
        (void)!::write(to_parent[1], &c, 1);
        (void)!::read(to_child[0], &c, 1); // wait until released
        int code = xs && !(*xs)->read(kNoTxn, "name") ? 0 : 1;
        ::_exit(code);
    }
    char c = 0;
    ASSERT_EQ(::read(to_parent[0], &c, 1), 1);
    ASSERT_EQ(c, 'c');
    ASSERT_TRUE(server_->release_domain(5));
    ASSERT_EQ(::write(to_child[1], "go", 1), 1);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the guest could still use its connection after release";
    for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]})
        ::close(fd);
}

// --- transactions -----------------------------------------------------------------------

TEST_F(XenstoreTest, TransactionCommitIsAtomicAndAbortDiscards) {
    auto a = connect(0);
    auto b = connect(0);
    ASSERT_TRUE(a && b);
    auto t = a->transaction_start();
    ASSERT_TRUE(t);
    ASSERT_TRUE(a->write(*t, "/tx/x", "1"));
    ASSERT_TRUE(a->write(*t, "/tx/y", "2"));
    EXPECT_EQ(a->read(*t, "/tx/x").value_or(""), "1"); // its own view
    EXPECT_EQ(describe(b->read(kNoTxn, "/tx/x")), "not_found");
    ASSERT_TRUE(a->transaction_end(*t, true));
    EXPECT_EQ(b->read(kNoTxn, "/tx/x").value_or(""), "1");
    EXPECT_EQ(b->read(kNoTxn, "/tx/y").value_or(""), "2");

    auto u = a->transaction_start();
    ASSERT_TRUE(u);
    ASSERT_TRUE(a->write(*u, "/tx/x", "changed"));
    ASSERT_TRUE(a->rm(*u, "/tx/y"));
    ASSERT_TRUE(a->transaction_end(*u, false));
    EXPECT_EQ(b->read(kNoTxn, "/tx/x").value_or(""), "1");
    EXPECT_EQ(b->read(kNoTxn, "/tx/y").value_or(""), "2");

    // A finished transaction is gone.
    EXPECT_EQ(describe(a->read(*u, "/tx/x")), "not_found");
    EXPECT_EQ(describe(a->transaction_end(*u, true)), "not_found");
}

TEST_F(XenstoreTest, ConflictingCommitFailsWithAgain) {
    auto a = connect(0);
    auto b = connect(0);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(a->write(kNoTxn, "/c/x", "0"));

    // Read, then someone else changes it.
    auto t = a->transaction_start();
    ASSERT_TRUE(t);
    ASSERT_EQ(a->read(*t, "/c/x").value_or(""), "0");
    ASSERT_TRUE(b->write(kNoTxn, "/c/x", "other"));
    ASSERT_TRUE(a->write(*t, "/c/y", "derived"));
    EXPECT_EQ(describe(a->transaction_end(*t, true)), "again");
    EXPECT_EQ(describe(b->read(kNoTxn, "/c/y")), "not_found");

    // Seen absent, then created by someone else.
    auto u = a->transaction_start();
    ASSERT_TRUE(u);
    ASSERT_EQ(describe(a->read(*u, "/c/new")), "not_found");
    ASSERT_TRUE(b->write(kNoTxn, "/c/new", "b"));
    ASSERT_TRUE(a->write(*u, "/c/new", "a"));
    EXPECT_EQ(describe(a->transaction_end(*u, true)), "again");
    EXPECT_EQ(b->read(kNoTxn, "/c/new").value_or(""), "b");

    // Unrelated changes do not conflict.
    auto v = a->transaction_start();
    ASSERT_TRUE(v);
    ASSERT_TRUE(a->read(*v, "/c/x"));
    ASSERT_TRUE(b->write(kNoTxn, "/elsewhere", "1"));
    ASSERT_TRUE(a->write(*v, "/c/x", "mine"));
    EXPECT_TRUE(a->transaction_end(*v, true));
    EXPECT_EQ(b->read(kNoTxn, "/c/x").value_or(""), "mine");
}

TEST_F(XenstoreTest, RunTransactionRetriesAfterAConflict) {
    auto a = connect(0);
    auto b = connect(0);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(a->write(kNoTxn, "/counter", "10"));
    int attempts = 0;
    Status st = run_transaction(*a, [&](XsTxn t) -> Status {
        ++attempts;
        auto v = a->read(t, "/counter");
        if (!v) return v.error();
        if (attempts == 1) {
            // Someone else increments meanwhile: our first commit must fail.
            if (auto w = b->write(kNoTxn, "/counter", "20"); !w) return w;
        }
        return a->write(t, "/counter", std::to_string(std::stoi(*v) + 1));
    });
    ASSERT_TRUE(st) << st.error().describe();
    EXPECT_EQ(attempts, 2);
    EXPECT_EQ(b->read(kNoTxn, "/counter").value_or(""), "21");
}

// --- watches ----------------------------------------------------------------------------

TEST_F(XenstoreTest, WatchFiresInitiallyAndOnChangesAtOrBelowItsPath) {
    auto w = connect(0);
    auto x = connect(0);
    ASSERT_TRUE(w && x);
    ASSERT_TRUE(x->mkdir(kNoTxn, "/w/ab"));
    const std::string token = "tok: with spaces & symbols \x01";
    ASSERT_TRUE(w->watch("/w/ab", token));
    ASSERT_TRUE(w->watch("/marker", "marker"));

    auto first = next_event(*w);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->path, "/w/ab");
    EXPECT_EQ(first->token, token);
    EXPECT_TRUE(events_until(*w, "marker").empty());

    ASSERT_TRUE(x->write(kNoTxn, "/w/ab", "1"));      // the node itself
    ASSERT_TRUE(x->write(kNoTxn, "/w/ab/c/d", "2"));  // below it
    ASSERT_TRUE(x->write(kNoTxn, "/w/abc", "3"));     // a sibling sharing the prefix: no
    ASSERT_TRUE(x->write(kNoTxn, "/w", "4"));         // its parent: no
    ASSERT_TRUE(x->write(kNoTxn, "/unrelated", "5")); // no
    ASSERT_TRUE(x->rm(kNoTxn, "/w/ab/c"));            // removal below it
    ASSERT_TRUE(x->write(kNoTxn, "/marker", "sync"));
    std::vector<std::string> paths;
    for (auto& ev : events_until(*w, "marker")) {
        EXPECT_EQ(ev.token, token);
        paths.push_back(ev.path);
    }
    EXPECT_EQ(paths, (std::vector<std::string>{"/w/ab", "/w/ab/c/d", "/w/ab/c"}));

    // Removing a parent fires the watch with the watched path itself.
    ASSERT_TRUE(x->rm(kNoTxn, "/w"));
    ASSERT_TRUE(x->write(kNoTxn, "/marker", "sync"));
    auto removed = events_until(*w, "marker");
    ASSERT_EQ(removed.size(), 1u);
    EXPECT_EQ(removed[0].path, "/w/ab");

    // After unwatch: nothing more (a marker write proves the queue is drained).
    ASSERT_TRUE(w->unwatch("/w/ab", token));
    ASSERT_TRUE(x->write(kNoTxn, "/w/ab", "again"));
    ASSERT_TRUE(x->write(kNoTxn, "/marker", "sync"));
    EXPECT_TRUE(events_until(*w, "marker").empty());
    EXPECT_EQ(describe(w->unwatch("/w/ab", token)), "not_found");
}

TEST_F(XenstoreTest, DuplicateWatchIsRefused) {
    auto w = connect(0);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->watch("/d", "t"));
    EXPECT_EQ(describe(w->watch("/d", "t")), "exists");
    EXPECT_TRUE(w->watch("/d", "other-token"));
}

TEST_F(XenstoreTest, TransactionEventsFireOnlyOnCommit) {
    auto w = connect(0);
    auto x = connect(0);
    ASSERT_TRUE(w && x);
    // Created first: a transaction that adds a child to a folder conflicts with anybody
    // else adding one there meanwhile (the folder's child list is part of what it read).
    ASSERT_TRUE(x->mkdir(kNoTxn, "/txw"));
    ASSERT_TRUE(x->mkdir(kNoTxn, "/marker"));
    ASSERT_TRUE(w->watch("/txw", "t"));
    ASSERT_TRUE(w->watch("/marker", "marker"));
    (void)events_until(*w, "marker");

    auto aborted = x->transaction_start();
    ASSERT_TRUE(aborted);
    ASSERT_TRUE(x->write(*aborted, "/txw/a", "1"));
    ASSERT_TRUE(x->transaction_end(*aborted, false));
    auto committed = x->transaction_start();
    ASSERT_TRUE(committed);
    ASSERT_TRUE(x->write(*committed, "/txw/b", "1"));
    ASSERT_TRUE(x->write(kNoTxn, "/marker", "sync")); // before the commit
    EXPECT_TRUE(events_until(*w, "marker").empty());
    ASSERT_TRUE(x->transaction_end(*committed, true));
    ASSERT_TRUE(x->write(kNoTxn, "/marker", "sync"));
    auto evs = events_until(*w, "marker");
    ASSERT_EQ(evs.size(), 1u);
    EXPECT_EQ(evs[0].path, "/txw/b");
}

TEST_F(XenstoreTest, GuestWatchesSeeOnlyWhatTheGuestMayReadAndUseRelativePaths) {
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    auto dom0 = connect(0);
    ASSERT_TRUE(dom0);
    const std::string socket5 = server_->socket_path(5);
    int go[2], ready[2];
    ASSERT_EQ(::pipe(go), 0);
    ASSERT_EQ(::pipe(ready), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // The guest: watches its own data folder (relative), dom0's folder (unreadable to
        // it) and @releaseDomain (not granted), then reports every event up to "marker".
        std::string out;
        auto xs = open_xenstore(socket5);
        if (xs && (*xs)->watch("data", "mine") && (*xs)->watch("/local/domain/0", "dom0") &&
            (*xs)->watch("@releaseDomain", "rel") && (*xs)->watch("marker", "marker")) {
            (void)events_until(**xs, "marker"); // the initial firings
            (void)!::write(ready[1], "r", 1);
            char c;
            (void)!::read(go[0], &c, 1);
            for (auto& ev : events_until(**xs, "marker"))
                out += ev.token + "=" + ev.path + ";";
        } else {
            out = "setup failed";
        }
        (void)!::write(ready[1], out.data(), out.size());
        ::_exit(0);
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ASSERT_TRUE(server_->introduce_domain(6, "guest6"));
    ASSERT_TRUE(dom0->write(kNoTxn, "/local/domain/0/secret", "x"));
    ASSERT_TRUE(dom0->write(kNoTxn, "/local/domain/5/data/seen", "x"));
    ASSERT_TRUE(server_->release_domain(6));
    ASSERT_TRUE(dom0->write(kNoTxn, "/local/domain/5/marker", "sync"));
    ASSERT_EQ(::write(go[1], "g", 1), 1);
    std::string out;
    char buf[512];
    ssize_t n;
    while ((n = ::read(ready[0], buf, sizeof(buf))) > 0)
        out.append(buf, static_cast<size_t>(n));
    ::waitpid(pid, nullptr, 0);
    EXPECT_EQ(out, "mine=data/seen;");
    for (int fd : {go[0], go[1], ready[0]})
        ::close(fd);
}

TEST_F(XenstoreTest, SpecialWatchPermissionsCanBeGranted) {
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    auto dom0 = connect(0);
    ASSERT_TRUE(dom0);
    ASSERT_TRUE(
        dom0->set_permissions(kNoTxn, "@releaseDomain", {{0, XsPerm::none}, {5, XsPerm::read}}));
    EXPECT_EQ(dom0->get_permissions(kNoTxn, "@releaseDomain").value_or(Perms{}),
              (Perms{{0, XsPerm::none}, {5, XsPerm::read}}));
    ASSERT_TRUE(server_->introduce_domain(6, "guest6"));
    auto guest = connect(5); // in-process: the socket decides the domain
    ASSERT_TRUE(guest);
    ASSERT_TRUE(guest->watch("@releaseDomain", "rel"));
    auto initial = next_event(*guest);
    ASSERT_TRUE(initial);
    EXPECT_EQ(initial->token, "rel");
    ASSERT_TRUE(server_->release_domain(6));
    auto ev = next_event(*guest);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->path, "@releaseDomain");
    // A guest cannot change who may watch.
    EXPECT_EQ(describe(guest->set_permissions(kNoTxn, "@releaseDomain", {{5, XsPerm::read}})),
              "permission_denied");
}

// --- quotas -----------------------------------------------------------------------------

TEST_F(XenstoreTest, GuestQuotasAreEnforced) {
    sim::XenstoreQuotas q;
    q.nodes_per_domain = 20;
    q.watches_per_domain = 4;
    q.transactions_per_connection = 2;
    q.entry_size = 512;
    q.perms_per_node = 2;
    start(q);
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    auto g = connect(5);
    ASSERT_TRUE(g);

    // libxl already gave it 6 nodes (data, drivers, feature, attr, error, control/shutdown).
    int created = 0;
    Status st = ok();
    for (; created < 100; ++created) {
        st = g->write(kNoTxn, "data/n" + std::to_string(created), "v");
        if (!st) break;
    }
    EXPECT_EQ(created, 14);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().sys_errno, ENOSPC);

    auto big = g->write(kNoTxn, "data/n0", std::string(600, 'x'));
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().sys_errno, ENOSPC);

    EXPECT_EQ(describe(g->set_permissions(
                  kNoTxn, "data/n0", {{5, XsPerm::none}, {1, XsPerm::read}, {2, XsPerm::read}})),
              "io");

    for (int i = 0; i < 4; ++i)
        ASSERT_TRUE(g->watch("data", "w" + std::to_string(i)));
    EXPECT_EQ(describe(g->watch("data", "one-too-many")), "invalid_argument"); // E2BIG

    auto t1 = g->transaction_start();
    auto t2 = g->transaction_start();
    ASSERT_TRUE(t1 && t2);
    auto t3 = g->transaction_start();
    ASSERT_FALSE(t3);
    EXPECT_EQ(t3.error().sys_errno, ENOSPC);

    // dom0 is not limited by guest quotas.
    auto dom0 = connect(0);
    ASSERT_TRUE(dom0);
    for (int i = 0; i < 30; ++i)
        ASSERT_TRUE(dom0->write(kNoTxn, "/many/n" + std::to_string(i), "v"));
}

// --- the server's life, the client's edges ---------------------------------------------

TEST_F(XenstoreTest, ASecondServerOnTheSameFolderIsRefused) {
    auto second = sim::XenstoreServer::start(dir_.path());
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, Errc::busy);
    auto xs = connect(0); // the first one is unharmed
    ASSERT_TRUE(xs);
    EXPECT_TRUE(xs->read(kNoTxn, "/local/domain/0/name"));
}

TEST(XenstoreServerStart, AStaleSocketIsReplaced) {
    TempDir dir;
    const std::string path = dir.path() + "/xenstore-0.sock";
    // What a crashed server leaves: a bound socket nobody listens on.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
    auto server = sim::XenstoreServer::start(dir.path());
    ASSERT_TRUE(server) << server.error().describe();
    auto xs = open_xenstore((*server)->socket_path(0));
    ASSERT_TRUE(xs);
    EXPECT_TRUE((*xs)->read(kNoTxn, "/local/domain/0/name"));
}

TEST_F(XenstoreTest, PublicMethodsMayBeCalledFromManyThreads) {
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 10; ++i) {
                DomId dom = static_cast<DomId>(10 + t * 10 + i);
                if (!server_->introduce_domain(dom, "vm" + std::to_string(dom))) ++failures;
            }
            for (int i = 0; i < 10; i += 2)
                if (!server_->release_domain(static_cast<DomId>(10 + t * 10 + i))) ++failures;
        });
    }
    for (auto& th : threads)
        th.join();
    EXPECT_EQ(failures.load(), 0);
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    auto doms = xs->directory(kNoTxn, "/local/domain");
    ASSERT_TRUE(doms);
    EXPECT_EQ(doms->size(), 1u + 20u); // dom0 and the odd ones
}

TEST_F(XenstoreTest, OneClientMayBeSharedByThreads) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                std::string path = "/mt/" + std::to_string(t) + "/" + std::to_string(i);
                if (!xs->write(kNoTxn, path, std::to_string(i))) ++failures;
                if (xs->read(kNoTxn, path).value_or("") != std::to_string(i)) ++failures;
            }
        });
    }
    for (auto& th : threads)
        th.join();
    EXPECT_EQ(failures.load(), 0);
}

TEST_F(XenstoreTest, OpenErrorsAndTheEnvironmentIsRestored) {
    auto missing = open_xenstore(dir_.path() + "/xenstore-99.sock");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Errc::not_found);
    auto too_long = open_xenstore("/" + std::string(200, 'x'));
    ASSERT_FALSE(too_long);
    EXPECT_EQ(too_long.error().code, Errc::invalid_argument);

    ::unsetenv("XENSTORED_PATH");
    ASSERT_TRUE(connect(0));
    EXPECT_EQ(std::getenv("XENSTORED_PATH"), nullptr);
    ::setenv("XENSTORED_PATH", "/somewhere/else", 1);
    ASSERT_TRUE(connect(0));
    EXPECT_STREQ(std::getenv("XENSTORED_PATH"), "/somewhere/else");
    ::unsetenv("XENSTORED_PATH");
}

TEST_F(XenstoreTest, AGoneServerGivesClosed) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    ASSERT_TRUE(xs->read(kNoTxn, "/local/domain/0/name"));
    server_.reset(); // closes every connection before it returns
    EXPECT_EQ(describe(xs->read(kNoTxn, "/local/domain/0/name")), "closed");
    EXPECT_EQ(describe(xs->write(kNoTxn, "/x", "1")), "closed");
}

} // namespace
} // namespace dpnb::hv::test
