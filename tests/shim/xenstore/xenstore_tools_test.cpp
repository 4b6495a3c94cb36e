// Xen's own command-line tools (Debian package xenstore-utils) against the simulated
// server, pointed at its sockets with XENSTORED_PATH: an independent check that the server
// speaks the wire protocol as libxenstore expects. Skipped when the tools are missing.
#include <cstdio>
#include <string>

#include <unistd.h>

#include "xs_test_util.hpp"

namespace dpnb::hv::test {
namespace {

class XenstoreToolsTest : public XenstoreTest {
protected:
    void SetUp() override {
        if (::access("/usr/bin/xenstore-ls", X_OK) != 0)
            GTEST_SKIP() << "xenstore-utils is not installed";
        XenstoreTest::SetUp();
    }

    // Runs `command` with XENSTORED_PATH pointing at domain `dom`'s socket; returns its
    // output (stdout and stderr) and sets `status` to its exit code.
    std::string run(DomId dom, const std::string& command, int* status = nullptr) {
        std::string full =
            "XENSTORED_PATH='" + server_->socket_path(dom) + "' " + command + " 2>&1";
        FILE* pipe = ::popen(full.c_str(), "r");
        if (!pipe) return "popen failed";
        std::string out;
        char buf[1024];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0)
            out.append(buf, n);
        int rc = ::pclose(pipe);
        if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        return out;
    }
};

TEST_F(XenstoreToolsTest, WriteReadListLsRmAsDom0) {
    int status = -1;
    run(0, "xenstore-write /cli/a hello /cli/b/c world", &status);
    EXPECT_EQ(status, 0);
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    EXPECT_EQ(xs->read(kNoTxn, "/cli/a").value_or(""), "hello");
    EXPECT_EQ(xs->read(kNoTxn, "/cli/b/c").value_or(""), "world");

    EXPECT_EQ(run(0, "xenstore-read /cli/a"), "hello\n");
    EXPECT_EQ(run(0, "xenstore-list /cli"), "a\nb\n");
    std::string ls = run(0, "xenstore-ls -f /cli", &status);
    EXPECT_EQ(status, 0);
    EXPECT_NE(ls.find("/cli/a = \"hello\""), std::string::npos) << ls;
    EXPECT_NE(ls.find("/cli/b/c = \"world\""), std::string::npos) << ls;

    run(0, "xenstore-chmod /cli/a n0 r5", &status);
    EXPECT_EQ(status, 0);
    std::string perms = run(0, "xenstore-ls -p /cli");
    EXPECT_NE(perms.find("n0,r5"), std::string::npos) << perms;

    run(0, "xenstore-exists /cli/nothing", &status);
    EXPECT_NE(status, 0);
    run(0, "xenstore-rm /cli", &status);
    EXPECT_EQ(status, 0);
    EXPECT_EQ(describe(xs->read(kNoTxn, "/cli/a")), "not_found");
}

TEST_F(XenstoreToolsTest, WholeTreeListsAsDom0) {
    ASSERT_TRUE(server_->introduce_domain(3, "vm3"));
    int status = -1;
    std::string ls = run(0, "xenstore-ls -f", &status);
    EXPECT_EQ(status, 0) << ls;
    EXPECT_NE(ls.find("/local/domain/0/name = \"Domain-0\""), std::string::npos) << ls;
    EXPECT_NE(ls.find("/local/domain/3/name = \"vm3\""), std::string::npos) << ls;
}

TEST_F(XenstoreToolsTest, GuestToolsUseRelativePathsAndAreConfined) {
    ASSERT_TRUE(server_->introduce_domain(5, "guest5"));
    int status = -1;
    EXPECT_EQ(run(5, "xenstore-read name"), "guest5\n");
    run(5, "xenstore-write data/from-tool yes", &status);
    EXPECT_EQ(status, 0);
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    EXPECT_EQ(xs->read(kNoTxn, "/local/domain/5/data/from-tool").value_or(""), "yes");
    std::string denied = run(5, "xenstore-read /local/domain/0/name", &status);
    EXPECT_NE(status, 0) << denied;
}

TEST_F(XenstoreToolsTest, WatchToolSeesTheInitialEventAndAChange) {
    auto xs = connect(0);
    ASSERT_TRUE(xs);
    ASSERT_TRUE(xs->mkdir(kNoTxn, "/watched"));
    // xenstore-watch -n 2 prints the initial firing and one change, one line each (it
    // flushes per event), then exits. Its first line proves the watch is registered.
    std::string cmd =
        "XENSTORED_PATH='" + server_->socket_path(0) + "' xenstore-watch -n 2 /watched 2>&1";
    FILE* tool = ::popen(cmd.c_str(), "r");
    ASSERT_NE(tool, nullptr);
    char line[256] = {};
    ASSERT_NE(std::fgets(line, sizeof(line), tool), nullptr);
    EXPECT_STREQ(line, "/watched\n");
    ASSERT_TRUE(xs->write(kNoTxn, "/watched/x", "1"));
    ASSERT_NE(std::fgets(line, sizeof(line), tool), nullptr);
    EXPECT_STREQ(line, "/watched/x\n");
    int rc = ::pclose(tool);
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
}

} // namespace
} // namespace dpnb::hv::test
