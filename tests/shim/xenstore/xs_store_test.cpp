// Unit tests of the simulated server's tree (hypercall-shim/src/xenstore/xs_store.hpp) and
// path parsing, without sockets: permission rules, errno choice, implicit creation,
// transactions and their conflicts (the examples of xenstored_transaction.c), the events
// every change produces, and the clean-up when a domain goes away.
#include <gtest/gtest.h>

#include <cerrno>

#include "xenstore/xs_path.hpp"
#include "xenstore/xs_store.hpp"

namespace dpnb::hv::sim::xs {
namespace {

const Caller kDom0Caller{0, true, std::nullopt};
const Caller kGuest5{5, false, std::nullopt};
const Caller kGuest6{6, false, std::nullopt};

// --- paths ------------------------------------------------------------------------------

TEST(XsPath, NodePathValidity) {
    EXPECT_TRUE(is_valid_node_path("/"));
    EXPECT_TRUE(is_valid_node_path("/local/domain/0/a-b_c@d"));
    EXPECT_FALSE(is_valid_node_path(""));
    EXPECT_FALSE(is_valid_node_path("local"));
    EXPECT_FALSE(is_valid_node_path("/a/"));
    EXPECT_FALSE(is_valid_node_path("/a//b"));
    EXPECT_FALSE(is_valid_node_path("/a.b"));
    EXPECT_FALSE(is_valid_node_path(std::string_view("/a\0b", 4)));
    EXPECT_TRUE(is_valid_node_path("/" + std::string(kAbsPathMax - 1, 'x')));
    EXPECT_FALSE(is_valid_node_path("/" + std::string(kAbsPathMax, 'x')));
}

TEST(XsPath, CanonicalPathsAreRelativeToTheHomeFolder) {
    EXPECT_EQ(canonical_node_path("data/x", 7).value_or(""), "/local/domain/7/data/x");
    EXPECT_EQ(canonical_node_path("/abs", 7).value_or(""), "/abs");
    EXPECT_FALSE(canonical_node_path("", 7));
    EXPECT_FALSE(canonical_node_path("a//b", 7));
    EXPECT_FALSE(canonical_node_path(std::string(kRelPathMax + 1, 'x'), 7));
}

TEST(XsPath, ParentsChildrenAndIsChild) {
    EXPECT_EQ(parent_of("/a/b"), "/a");
    EXPECT_EQ(parent_of("/a"), "/");
    EXPECT_EQ(basename_of("/a/b"), "b");
    EXPECT_EQ(child_path("/", "a"), "/a");
    EXPECT_EQ(child_path("/a", "b"), "/a/b");
    EXPECT_TRUE(is_child("/a/b", "/a"));
    EXPECT_TRUE(is_child("/a", "/a"));
    EXPECT_FALSE(is_child("/ab", "/a"));
    EXPECT_FALSE(is_child("/a", "/a/b"));
    EXPECT_TRUE(is_child("@releaseDomain", "/")); // xenstored's quirk
    EXPECT_TRUE(is_child("@releaseDomain", "@releaseDomain"));
}

TEST(XsPath, NumbersAndPermissionStrings) {
    EXPECT_EQ(parse_domid("0").value_or(1), 0);
    EXPECT_EQ(parse_domid("65535").value_or(0), 65535);
    EXPECT_FALSE(parse_domid("65536"));
    EXPECT_FALSE(parse_domid("-1"));
    EXPECT_FALSE(parse_domid(" 1"));
    EXPECT_FALSE(parse_domid(""));
    EXPECT_FALSE(parse_u32("4294967296"));
    EXPECT_EQ(parse_u32("4294967295").value_or(0), 4294967295u);
    EXPECT_EQ(parse_perm("b12").value_or(Perm{}), (Perm{12, kPermRead | kPermWrite}));
    EXPECT_EQ(parse_perm("n0").value_or(Perm{1, 1}), (Perm{0, kPermNone}));
    EXPECT_FALSE(parse_perm("x1"));
    EXPECT_FALSE(parse_perm("r"));
    EXPECT_EQ(format_perm(Perm{3, kPermWrite}), "w3");
    std::size_t trailing = 0;
    auto parts = split_strings(std::string_view("a\0bc\0d", 6), &trailing);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[1], "bc");
    EXPECT_EQ(trailing, 1u);
}

// --- permissions ------------------------------------------------------------------------

TEST(XsPerms, OwnerPrivilegedListedAndDefault) {
    const PermList perms{{5, kPermRead}, {6, kPermWrite}, {7, kPermNone}};
    EXPECT_EQ(perm_for(kDom0Caller, perms), kPermRead | kPermWrite | kPermOwner);
    EXPECT_EQ(perm_for(kGuest5, perms), kPermRead | kPermWrite | kPermOwner);
    EXPECT_EQ(perm_for(kGuest6, perms), kPermWrite);
    EXPECT_EQ(perm_for(Caller{7, false, std::nullopt}, perms), kPermNone);
    EXPECT_EQ(perm_for(Caller{8, false, std::nullopt}, perms), kPermRead); // the default
    // Acting for a target gives the target's rights.
    EXPECT_EQ(perm_for(Caller{9, false, DomId{6}}, perms), kPermWrite);
    EXPECT_EQ(perm_for(Caller{9, false, DomId{5}}, perms), kPermRead | kPermWrite | kPermOwner);
}

class StoreTest : public ::testing::Test {
protected:
    int write(const Caller& who, const std::string& path, const std::string& value) {
        Events ev;
        return store.write(store.global(), who, path, value, ev);
    }
    int set_perms(const Caller& who, const std::string& path, PermList perms) {
        Events ev;
        return store.set_perms(store.global(), who, path, std::move(perms), ev);
    }
    std::string read(const Caller& who, const std::string& path) {
        std::string value;
        int err = store.read(store.global(), who, path, value);
        return err ? "errno " + std::to_string(err) : value;
    }
    PermList perms_of(const std::string& path) {
        PermList perms;
        EXPECT_EQ(store.get_perms(store.global(), kDom0Caller, path, perms), 0);
        return perms;
    }

    XenstoreQuotas quotas;
    Store store{quotas};
};

TEST_F(StoreTest, ErrnoTellsNothingAboutHiddenNodes) {
    ASSERT_EQ(write(kDom0Caller, "/secret/inner", "x"), 0); // n0: hidden from guests
    ASSERT_EQ(write(kDom0Caller, "/open", ""), 0);
    ASSERT_EQ(set_perms(kDom0Caller, "/open", {{0, kPermRead}}), 0);
    EXPECT_EQ(read(kGuest5, "/secret/inner"), "errno " + std::to_string(EACCES));
    EXPECT_EQ(read(kGuest5, "/secret/absent"), "errno " + std::to_string(EACCES));
    EXPECT_EQ(read(kGuest5, "/open/absent"), "errno " + std::to_string(ENOENT));
    EXPECT_EQ(read(kGuest5, "/open/absent/deeper"), "errno " + std::to_string(ENOENT));
    // Creating needs write on the nearest existing ancestor.
    EXPECT_EQ(write(kGuest5, "/open/new", "v"), EACCES);
    EXPECT_TRUE(store.check());
}

TEST_F(StoreTest, ImplicitParentsInheritAndUnprivilegedCreatorsOwn) {
    ASSERT_EQ(write(kDom0Caller, "/area", ""), 0);
    ASSERT_EQ(set_perms(kDom0Caller, "/area", {{0, kPermNone}, {5, kPermWrite}, {6, kPermRead}}),
              0);
    ASSERT_EQ(write(kGuest5, "/area/a/b", "v"), 0);
    EXPECT_EQ(perms_of("/area/a"), (PermList{{5, kPermNone}, {5, kPermWrite}, {6, kPermRead}}));
    EXPECT_EQ(perms_of("/area/a/b"), (PermList{{5, kPermNone}, {5, kPermWrite}, {6, kPermRead}}));
    EXPECT_EQ(store.global().owned_by(5), 2u);
    // dom0's creations keep the parent's owner.
    ASSERT_EQ(write(kDom0Caller, "/area/c", "v"), 0);
    EXPECT_EQ(perms_of("/area/c")[0].id, 0);
    EXPECT_TRUE(store.check());
}

TEST_F(StoreTest, RmProducesOneEventForTheNodeAndExactOnesBelow) {
    ASSERT_EQ(write(kDom0Caller, "/t/a/b", "1"), 0);
    ASSERT_EQ(write(kDom0Caller, "/t/a/c", "2"), 0);
    Events ev;
    ASSERT_EQ(store.rm(store.global(), kDom0Caller, "/t/a", ev), 0);
    ASSERT_EQ(ev.size(), 3u);
    EXPECT_EQ(ev[0].path, "/t/a");
    EXPECT_FALSE(ev[0].exact);
    EXPECT_EQ(ev[1].path, "/t/a/b");
    EXPECT_TRUE(ev[1].exact);
    EXPECT_EQ(ev[2].path, "/t/a/c");
    EXPECT_TRUE(ev[2].exact);
    std::vector<std::string> children;
    std::uint64_t gen = 0;
    ASSERT_EQ(store.directory(store.global(), kDom0Caller, "/t", children, gen), 0);
    EXPECT_TRUE(children.empty());
    EXPECT_TRUE(store.check());
}

TEST_F(StoreTest, DirectoryGenerationChangesWithTheChildren) {
    ASSERT_EQ(write(kDom0Caller, "/g/a", "1"), 0);
    std::vector<std::string> children;
    std::uint64_t gen1 = 0, gen2 = 0, gen3 = 0;
    ASSERT_EQ(store.directory(store.global(), kDom0Caller, "/g", children, gen1), 0);
    ASSERT_EQ(write(kDom0Caller, "/g/a", "2"), 0); // a child's value: not the list
    ASSERT_EQ(store.directory(store.global(), kDom0Caller, "/g", children, gen2), 0);
    EXPECT_EQ(gen1, gen2);
    ASSERT_EQ(write(kDom0Caller, "/g/b", "1"), 0);
    ASSERT_EQ(store.directory(store.global(), kDom0Caller, "/g", children, gen3), 0);
    EXPECT_NE(gen2, gen3);
    EXPECT_EQ(children, (std::vector<std::string>{"a", "b"}));
}

TEST_F(StoreTest, SetPermsRulesForGuests) {
    ASSERT_EQ(write(kDom0Caller, "/s", ""), 0);
    ASSERT_EQ(set_perms(kDom0Caller, "/s", {{0, kPermNone}, {5, kPermRead | kPermWrite}}), 0);
    ASSERT_EQ(write(kGuest5, "/s/mine", "v"), 0);
    EXPECT_EQ(set_perms(kGuest5, "/s", {{0, kPermRead}}), EACCES);     // not the owner
    EXPECT_EQ(set_perms(kGuest5, "/s/mine", {{6, kPermNone}}), EPERM); // giving it away
    EXPECT_EQ(set_perms(kGuest5, "/s/mine", {{5, kPermNone}, {6, kPermRead}}), 0);
    PermList many(quotas.perms_per_node + 1, Perm{5, kPermRead});
    EXPECT_EQ(set_perms(kGuest5, "/s/mine", many), ENOSPC);
    Events ev;
    ASSERT_EQ(store.set_perms(store.global(), kDom0Caller, "/s/mine", {{0, kPermNone}}, ev), 0);
    ASSERT_EQ(ev.size(), 1u);
    // Those who could read it before the change still hear about it.
    bool old_perms_count = false;
    for (const auto& p : ev[0].readable_if_any)
        if (perm_for(kGuest6, p) & kPermRead) old_perms_count = true;
    EXPECT_TRUE(old_perms_count);
}

TEST_F(StoreTest, GuestQuotas) {
    quotas.nodes_per_domain = 3;
    quotas.entry_size = 100;
    Store small(quotas);
    Events ev;
    ASSERT_EQ(small.write(small.global(), kDom0Caller, "/q", "", ev), 0);
    ASSERT_EQ(small.set_perms(small.global(), kDom0Caller, "/q", {{5, kPermNone}}, ev), 0);
    EXPECT_EQ(small.write(small.global(), kGuest5, "/q/a/b/c", "", ev), ENOSPC); // 3 + 1
    EXPECT_EQ(small.write(small.global(), kGuest5, "/q/a/b", "", ev), 0);
    EXPECT_EQ(small.write(small.global(), kGuest5, "/q/a/b", std::string(80, 'x'), ev), ENOSPC);
    EXPECT_EQ(small.write(small.global(), kDom0Caller, "/q/a/b", std::string(80, 'x'), ev), 0);
    EXPECT_TRUE(small.check());
}

// --- transactions -----------------------------------------------------------------------

TEST_F(StoreTest, TransactionSeesItsOwnChangesAndCommitsThem) {
    ASSERT_EQ(write(kDom0Caller, "/x", "0"), 0);
    Transaction t(store, 1, kDom0Caller);
    Events ev;
    ASSERT_EQ(store.write(t, kDom0Caller, "/x", "1", ev), 0);
    ASSERT_EQ(store.write(t, kDom0Caller, "/y/z", "2", ev), 0);
    t.add_events(std::move(ev));
    std::string value;
    ASSERT_EQ(store.read(t, kDom0Caller, "/y/z", value), 0);
    EXPECT_EQ(value, "2");
    EXPECT_EQ(read(kDom0Caller, "/x"), "0");
    EXPECT_EQ(read(kDom0Caller, "/y/z"), "errno " + std::to_string(ENOENT));
    Events fired;
    ASSERT_EQ(store.commit(t, fired), 0);
    EXPECT_EQ(read(kDom0Caller, "/x"), "1");
    EXPECT_EQ(read(kDom0Caller, "/y/z"), "2");
    ASSERT_EQ(fired.size(), 2u);
    EXPECT_EQ(fired[1].path, "/y/z");
    EXPECT_TRUE(store.check());
}

// The four examples at the top of xenstored_transaction.c.
TEST_F(StoreTest, TransactionConflictsAsXenstored) {
    ASSERT_EQ(write(kDom0Caller, "/A", "a"), 0);
    ASSERT_EQ(write(kDom0Caller, "/B", "b"), 0);
    std::string v;
    Events ev;
    { // 1. read A, write B: fine
        Transaction t(store, 1, kDom0Caller);
        ASSERT_EQ(store.read(t, kDom0Caller, "/A", v), 0);
        ASSERT_EQ(store.write(t, kDom0Caller, "/B", "1", ev), 0);
        EXPECT_EQ(store.commit(t, ev), 0);
    }
    { // 2. read A, A written meanwhile, write B: EAGAIN
        Transaction t(store, 1, kDom0Caller);
        ASSERT_EQ(store.read(t, kDom0Caller, "/A", v), 0);
        ASSERT_EQ(write(kDom0Caller, "/A", "other"), 0);
        ASSERT_EQ(store.write(t, kDom0Caller, "/B", "2", ev), 0);
        EXPECT_EQ(store.commit(t, ev), EAGAIN);
        EXPECT_EQ(read(kDom0Caller, "/B"), "1");
    }
    { // 3. read A, A deleted meanwhile: EAGAIN
        Transaction t(store, 1, kDom0Caller);
        ASSERT_EQ(store.read(t, kDom0Caller, "/A", v), 0);
        ASSERT_EQ(store.rm(store.global(), kDom0Caller, "/A", ev), 0);
        ASSERT_EQ(store.write(t, kDom0Caller, "/B", "3", ev), 0);
        EXPECT_EQ(store.commit(t, ev), EAGAIN);
    }
    ASSERT_EQ(write(kDom0Caller, "/A", "a"), 0);
    { // 4. two interleaved transactions: the first to commit wins
        Transaction t1(store, 1, kDom0Caller);
        Transaction t2(store, 2, kDom0Caller);
        ASSERT_EQ(store.read(t1, kDom0Caller, "/A", v), 0);
        ASSERT_EQ(store.read(t2, kDom0Caller, "/B", v), 0);
        ASSERT_EQ(store.write(t1, kDom0Caller, "/B", "t1", ev), 0);
        ASSERT_EQ(store.write(t2, kDom0Caller, "/A", "t2", ev), 0);
        EXPECT_EQ(store.commit(t1, ev), 0);
        EXPECT_EQ(store.commit(t2, ev), EAGAIN);
        EXPECT_EQ(read(kDom0Caller, "/B"), "t1");
        EXPECT_EQ(read(kDom0Caller, "/A"), "a");
    }
    EXPECT_TRUE(store.check());
}

TEST_F(StoreTest, TransactionCreatingAndRemovingKeepsTheTreeConsistent) {
    ASSERT_EQ(write(kDom0Caller, "/k/old/child", "1"), 0);
    Transaction t(store, 1, kDom0Caller);
    Events ev;
    ASSERT_EQ(store.write(t, kDom0Caller, "/k/new/deep/er", "1", ev), 0);
    ASSERT_EQ(store.rm(t, kDom0Caller, "/k/old", ev), 0);
    ASSERT_EQ(store.write(t, kDom0Caller, "/k/new/deep", "x", ev), 0);
    ASSERT_EQ(store.rm(t, kDom0Caller, "/k/new/deep/er", ev), 0);
    ASSERT_EQ(store.commit(t, ev), 0);
    EXPECT_TRUE(store.check());
    std::vector<std::string> children;
    std::uint64_t gen;
    ASSERT_EQ(store.directory(store.global(), kDom0Caller, "/k", children, gen), 0);
    EXPECT_EQ(children, (std::vector<std::string>{"new"}));
    EXPECT_EQ(read(kDom0Caller, "/k/new/deep"), "x");
    EXPECT_EQ(read(kDom0Caller, "/k/old/child"), "errno " + std::to_string(ENOENT));
}

TEST_F(StoreTest, TransactionQuotaIsCheckedAgainOnCommit) {
    quotas.nodes_per_domain = 2;
    Store small(quotas);
    Events ev;
    ASSERT_EQ(small.write(small.global(), kDom0Caller, "/q", "", ev), 0);
    ASSERT_EQ(small.set_perms(small.global(), kDom0Caller, "/q",
                              {{0, kPermNone}, {5, kPermRead | kPermWrite}}, ev),
              0);
    Transaction t(small, 1, kGuest5);
    ASSERT_EQ(small.write(t, kGuest5, "/q/t1", "", ev), 0);
    ASSERT_EQ(small.write(t, kGuest5, "/q/t2", "", ev), 0);
    EXPECT_EQ(small.write(t, kGuest5, "/q/t3", "", ev), ENOSPC);
    // Meanwhile the domain comes to own a node the transaction never looked at: no
    // conflict, but together they would exceed the quota.
    ASSERT_EQ(small.write(small.global(), kDom0Caller, "/elsewhere", "", ev), 0);
    ASSERT_EQ(small.set_perms(small.global(), kDom0Caller, "/elsewhere", {{5, kPermNone}}, ev), 0);
    EXPECT_EQ(small.commit(t, ev), ENOSPC);
    std::string v;
    EXPECT_EQ(small.read(small.global(), kDom0Caller, "/q/t1", v), ENOENT);
    EXPECT_TRUE(small.check());
}

// --- domains ----------------------------------------------------------------------------

TEST_F(StoreTest, RemoveDomainDeletesItsNodesAndItsGrants) {
    ASSERT_EQ(write(kDom0Caller, "/home5", ""), 0);
    ASSERT_EQ(set_perms(kDom0Caller, "/home5", {{5, kPermNone}, {6, kPermRead}}), 0);
    ASSERT_EQ(write(kDom0Caller, "/home5/by-dom0", "x"), 0); // inherits owner 5
    ASSERT_EQ(write(kDom0Caller, "/grant", ""), 0);
    ASSERT_EQ(set_perms(kDom0Caller, "/grant", {{0, kPermNone}, {5, kPermRead}, {6, kPermRead}}),
              0);
    ASSERT_EQ(
        store.set_special_perms(kDom0Caller, "@releaseDomain", {{5, kPermNone}, {6, kPermRead}}),
        0);
    Events ev;
    store.remove_domain(5, ev);
    EXPECT_EQ(read(kDom0Caller, "/home5"), "errno " + std::to_string(ENOENT));
    EXPECT_EQ(perms_of("/grant"), (PermList{{0, kPermNone}, {6, kPermRead}}));
    PermList special;
    ASSERT_EQ(store.get_special_perms(kDom0Caller, "@releaseDomain", special), 0);
    EXPECT_EQ(special, (PermList{{0, kPermNone}, {6, kPermRead}}));
    ASSERT_FALSE(ev.empty());
    EXPECT_EQ(ev[0].path, "/home5");
    EXPECT_EQ(store.global().owned_by(5), 0u);
    EXPECT_TRUE(store.check());
}

} // namespace
} // namespace dpnb::hv::sim::xs
