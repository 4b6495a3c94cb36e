// dpnb::Errc's one table: every code has a row with a distinct name and text and an errno;
// errnos map back to their code (except internal, which peers hear as EIO); the errno a peer
// is told prefers the failed call's own.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include "dpnb/util/result.hpp"

namespace dpnb {
namespace {

TEST(ErrcTable, EveryCodeHasARowInEnumOrder) {
    const auto table = errc_table();
    ASSERT_EQ(table.size(), static_cast<std::size_t>(Errc::internal) + 1);
    std::set<std::string_view> names, texts;
    for (std::size_t i = 0; i < table.size(); ++i) {
        const ErrcInfo& r = table[i];
        EXPECT_EQ(static_cast<std::size_t>(r.code), i);
        EXPECT_EQ(&errc_info(r.code), &r);
        EXPECT_FALSE(r.name.empty());
        EXPECT_FALSE(r.text.empty());
        EXPECT_GT(r.sys_errno, 0) << r.name;
        EXPECT_TRUE(names.insert(r.name).second) << "name used twice: " << r.name;
        EXPECT_TRUE(texts.insert(r.text).second) << "text used twice: " << r.text;
        // Names are the management protocol's wire codes: lower case and '_'.
        for (char c : r.name) {
            EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << r.name;
        }
        EXPECT_EQ(errc_name(r.code), r.name);
        EXPECT_EQ(std::string(to_string(r.code)), r.text);
        EXPECT_EQ(to_errno(r.code), r.sys_errno);
    }
}

TEST(ErrcTable, NamesTextsAndErrnosOfTheCodes) {
    EXPECT_EQ(errc_name(Errc::not_found), "not_found");
    EXPECT_STREQ(to_string(Errc::not_found), "not found");
    EXPECT_EQ(to_errno(Errc::invalid_argument), EINVAL);
    EXPECT_EQ(to_errno(Errc::not_found), ENOENT);
    EXPECT_EQ(to_errno(Errc::permission_denied), EACCES);
    EXPECT_EQ(to_errno(Errc::exists), EEXIST);
    EXPECT_EQ(to_errno(Errc::again), EAGAIN);
    EXPECT_EQ(to_errno(Errc::busy), EBUSY);
    EXPECT_EQ(to_errno(Errc::protocol), EPROTO);
    EXPECT_EQ(to_errno(Errc::unsupported), EOPNOTSUPP);
    EXPECT_EQ(to_errno(Errc::io), EIO);
    EXPECT_EQ(to_errno(Errc::closed), ENOTCONN);
    EXPECT_EQ(to_errno(Errc::internal), EIO);
}

TEST(ErrcTable, ErrnosRoundTrip) {
    for (const ErrcInfo& r : errc_table()) {
        // internal shares EIO with io: a peer cannot tell a bug from an I/O error.
        if (r.code == Errc::internal) {
            EXPECT_EQ(errc_from_errno(r.sys_errno), Errc::io);
            continue;
        }
        EXPECT_EQ(errc_from_errno(r.sys_errno), r.code) << r.name;
        for (int e : r.also_from) {
            if (e != 0) {
                EXPECT_EQ(errc_from_errno(e), r.code) << r.name << " from " << e;
            }
        }
    }
    EXPECT_EQ(errc_from_errno(EPERM), Errc::permission_denied);
    EXPECT_EQ(errc_from_errno(EPIPE), Errc::closed);
    EXPECT_EQ(errc_from_errno(ECONNRESET), Errc::closed);
    EXPECT_EQ(errc_from_errno(ENOSYS), Errc::unsupported);
    EXPECT_EQ(errc_from_errno(E2BIG), Errc::invalid_argument);
    EXPECT_EQ(errc_from_errno(ENOSPC), Errc::io) << "an errno no row claims";
    EXPECT_EQ(errc_from_errno(0), Errc::io);
}

TEST(ErrcTable, AnErrorsErrnoPrefersTheFailedCalls) {
    EXPECT_EQ(to_errno(make_error(Errc::protocol, "bad key")), EPROTO);
    EXPECT_EQ(to_errno(make_error(Errc::io, "read", ENOSPC)), ENOSPC);
    EXPECT_EQ(to_errno(make_error(Errc::permission_denied, "open", EPERM)), EPERM);
    EXPECT_EQ(to_errno(make_error(Errc::internal, "bug")), EIO);
}

TEST(ErrcTable, DescribeUsesTheText) {
    EXPECT_EQ(make_error(Errc::busy, "").describe(), "busy");
    EXPECT_EQ(make_error(Errc::io, "", EIO).describe(),
              std::string("I/O error: ") + std::strerror(EIO));
    EXPECT_EQ(make_error(Errc::io, "write x").describe(), "write x");
}

} // namespace
} // namespace dpnb
