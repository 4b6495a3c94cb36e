// Tests of the strict xenstore value parsers (dpnb/netif/xs_value.hpp): what Xen's writers
// produce is accepted, everything else is rejected with a message that names the key and
// quotes the value.
#include <cstdint>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "dpnb/netif/xs_value.hpp"

namespace nf = dpnb::netif;
using namespace std::string_literals;
using namespace std::string_view_literals;

namespace {

template <class T>
std::string error_of(const dpnb::Result<T>& r) {
    return r ? std::string("<no error>") : r.error().message;
}

} // namespace

// --- quote ----------------------------------------------------------------------------------

TEST(XsQuote, EscapesAndTruncates) {
    EXPECT_EQ(nf::quote("abc"), "\"abc\"");
    EXPECT_EQ(nf::quote(""), "\"\"");
    EXPECT_EQ(nf::quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    EXPECT_EQ(nf::quote("a\nb\x7f"), "\"a\\x0ab\\x7f\"");
    EXPECT_EQ(nf::quote("\0x"s), "\"\\x00x\"");
    EXPECT_EQ(nf::quote("\xff\x80"), "\"\\xff\\x80\"");
    EXPECT_EQ(nf::quote("abcdef", 3), "\"abc\"... (6 bytes)");
    EXPECT_EQ(nf::quote("abc", 3), "\"abc\"");
    const std::string long_value(5000, 'x');
    EXPECT_LT(nf::quote(long_value).size(), 100U);
}

// --- unsigned numbers -----------------------------------------------------------------------

TEST(XsUnsigned, AcceptsCanonicalDecimals) {
    EXPECT_EQ(*nf::parse_unsigned("0", 0, 10, "k"), 0U);
    EXPECT_EQ(*nf::parse_unsigned("7", 0, 10, "k"), 7U);
    EXPECT_EQ(*nf::parse_unsigned("10", 0, 10, "k"), 10U);
    EXPECT_EQ(*nf::parse_unsigned("18446744073709551615", 0, UINT64_MAX, "k"), UINT64_MAX);
    EXPECT_EQ(*nf::parse_unsigned("4294967295", 0, UINT32_MAX, "k"), UINT32_MAX);
}

TEST(XsUnsigned, RejectsEverythingElse) {
    for (std::string_view bad :
         {""sv, " 1"sv, "1 "sv, "+1"sv, "-1"sv, "-0"sv, "01"sv, "00"sv, "0x10"sv, "1a"sv, "a"sv,
          "1.0"sv, "1e3"sv, "\t1"sv, "1\n"sv, "\xd9\xa1"sv, "1,000"sv, "18446744073709551616"sv,
          "99999999999999999999999"sv}) {
        auto r = nf::parse_unsigned(bad, 0, UINT64_MAX, "some-key");
        EXPECT_FALSE(r) << nf::quote(bad);
        if (!r) {
            EXPECT_EQ(r.error().code, dpnb::Errc::invalid_argument);
            EXPECT_NE(r.error().message.find("some-key: "), std::string::npos) << r.error().message;
            EXPECT_NE(r.error().message.find(nf::quote(bad)), std::string::npos)
                << r.error().message;
        }
    }
    // An embedded NUL is not the end of the value.
    EXPECT_FALSE(nf::parse_unsigned("1\0"s, 0, 10, "k"));
}

TEST(XsUnsigned, EnforcesTheRange) {
    EXPECT_FALSE(nf::parse_unsigned("0", 1, 10, "k"));
    EXPECT_FALSE(nf::parse_unsigned("11", 1, 10, "k"));
    EXPECT_EQ(error_of(nf::parse_unsigned("11", 1, 10, "mtu")),
              "mtu: \"11\" is out of range (1..10)");
    EXPECT_EQ(error_of(nf::parse_unsigned("01", 0, 10, "mtu")), "mtu: \"01\" has a leading zero");
    EXPECT_EQ(error_of(nf::parse_unsigned("x", 0, 10, "mtu")),
              "mtu: \"x\" is not an unsigned decimal number");
    EXPECT_EQ(error_of(nf::parse_unsigned("", 0, 10, "mtu")),
              "mtu: \"\" is empty, expected an unsigned decimal number");
}

TEST(XsBool, OnlyZeroAndOne) {
    EXPECT_EQ(*nf::parse_bool("0", "k"), false);
    EXPECT_EQ(*nf::parse_bool("1", "k"), true);
    for (std::string_view bad : {""sv, "2"sv, "01"sv, "true"sv, "yes"sv, " 1"sv, "1 "sv, "-1"sv}) {
        EXPECT_FALSE(nf::parse_bool(bad, "k")) << nf::quote(bad);
    }
    EXPECT_EQ(error_of(nf::parse_bool("2", "feature-sg")),
              "feature-sg: \"2\" is not a boolean (\"0\" or \"1\")");
}

TEST(XsGrantRef, FullRangeButTheInvalidRef) {
    EXPECT_EQ(*nf::parse_grant_ref("0", "k"), 0U);
    EXPECT_EQ(*nf::parse_grant_ref("8", "k"), 8U);
    EXPECT_EQ(*nf::parse_grant_ref("4294967294", "k"), 4294967294U);
    EXPECT_FALSE(nf::parse_grant_ref("4294967295", "k"));
    EXPECT_NE(error_of(nf::parse_grant_ref("4294967295", "tx-ring-ref")).find("INVALID_GRANT_REF"),
              std::string::npos);
    EXPECT_FALSE(nf::parse_grant_ref("4294967296", "k"));
    EXPECT_FALSE(nf::parse_grant_ref("-1", "k"));
}

TEST(XsEvtchn, PortsOneTo2Pow17Minus1) {
    EXPECT_FALSE(nf::parse_evtchn_port("0", "k"));
    EXPECT_EQ(*nf::parse_evtchn_port("1", "k"), 1U);
    EXPECT_EQ(*nf::parse_evtchn_port("131071", "k"), 131071U);
    EXPECT_FALSE(nf::parse_evtchn_port("131072", "k"));
    EXPECT_FALSE(nf::parse_evtchn_port("4294967296", "k"));
}

TEST(XsXenbusState, ZeroToEight) {
    for (unsigned s = 0; s < nf::kXenbusStateCount; ++s) {
        auto r = nf::parse_xenbus_state(std::to_string(s), "state");
        ASSERT_TRUE(r) << s;
        EXPECT_EQ(static_cast<unsigned>(*r), s);
        EXPECT_EQ(nf::format_xenbus_state(*r), std::to_string(s));
    }
    for (std::string_view bad : {"9"sv, "10"sv, "255"sv, ""sv, "4 "sv, "04"sv, "Connected"sv}) {
        EXPECT_FALSE(nf::parse_xenbus_state(bad, "state")) << nf::quote(bad);
    }
}

TEST(XsDomid, BelowTheReservedIds) {
    EXPECT_EQ(*nf::parse_domid("0", "k"), 0);
    EXPECT_EQ(*nf::parse_domid("32751", "k"), 0x7FEF);
    EXPECT_FALSE(nf::parse_domid("32752", "k")); // DOMID_FIRST_RESERVED
    EXPECT_FALSE(nf::parse_domid("32753", "k")); // DOMID_SELF
    EXPECT_FALSE(nf::parse_domid("65535", "k"));
    EXPECT_FALSE(nf::parse_domid("65536", "k"));
}

TEST(XsHandle, NonNegativeInt) {
    EXPECT_EQ(*nf::parse_vif_handle("0", "k"), 0U);
    EXPECT_EQ(*nf::parse_vif_handle("2147483647", "k"), 2147483647U);
    EXPECT_FALSE(nf::parse_vif_handle("2147483648", "k"));
    EXPECT_FALSE(nf::parse_vif_handle("-1", "k"));
}

// --- MAC addresses --------------------------------------------------------------------------

TEST(XsMac, ParsesEitherCaseAndFormatsLowerCase) {
    auto mac = nf::parse_mac("00:16:3e:0A:bC:fF", "mac");
    ASSERT_TRUE(mac) << mac.error().message;
    const nf::MacAddress expected{{0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xff}};
    EXPECT_EQ(*mac, expected);
    EXPECT_EQ(nf::format_mac(*mac), "00:16:3e:0a:bc:ff");
    auto again = nf::parse_mac(nf::format_mac(*mac), "mac");
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *mac);
}

TEST(XsMac, RejectsOtherSpellings) {
    for (std::string_view bad :
         {""sv, "00:16:3e:00:00"sv, "00:16:3e:00:00:01:02"sv, "00-16-3e-00-00-01"sv,
          "0:16:3e:0:0:1"sv, "00163e000001"sv, "00:16:3e:00:00:01:"sv, " 00:16:3e:00:00:01"sv,
          "00:16:3e:00:00:01 "sv, "00:16:3e:00:00:0g"sv, "00:16:3e:00:00:1"sv,
          "00:16:3e:00:000:1"sv, "00::16:3e:00:00:01"sv, "0x:16:3e:00:00:01"sv}) {
        auto r = nf::parse_mac(bad, "mac");
        EXPECT_FALSE(r) << nf::quote(bad);
        if (!r) {
            EXPECT_NE(r.error().message.find("is not a MAC address"), std::string::npos);
        }
    }
}

TEST(XsMac, VifMacMustBeUnicastAndNonZero) {
    EXPECT_TRUE(nf::parse_vif_mac("00:16:3e:00:00:01", "mac"));
    EXPECT_TRUE(nf::parse_vif_mac("02:00:00:00:00:01", "mac")); // locally administered: fine
    EXPECT_TRUE(nf::parse_mac("01:00:5e:00:00:01", "mac"));
    EXPECT_FALSE(nf::parse_vif_mac("01:00:5e:00:00:01", "mac"));
    EXPECT_FALSE(nf::parse_vif_mac("33:33:00:00:00:01", "mac"));
    EXPECT_FALSE(nf::parse_vif_mac("ff:ff:ff:ff:ff:ff", "mac"));
    EXPECT_FALSE(nf::parse_vif_mac("FF:FF:FF:FF:FF:FF", "mac"));
    EXPECT_FALSE(nf::parse_vif_mac("00:00:00:00:00:00", "mac"));
    EXPECT_NE(
        error_of(nf::parse_vif_mac("ff:ff:ff:ff:ff:ff", "mac")).find("multicast or broadcast"),
        std::string::npos);
    EXPECT_NE(error_of(nf::parse_vif_mac("00:00:00:00:00:00", "mac")).find("all-zero"),
              std::string::npos);
}

// --- IPv4 and rate --------------------------------------------------------------------------

TEST(XsIpv4, DottedQuads) {
    auto ip = nf::parse_ipv4("198.18.0.1", "ip");
    ASSERT_TRUE(ip);
    EXPECT_EQ(nf::format_ipv4(*ip), "198.18.0.1");
    EXPECT_TRUE(nf::parse_ipv4("0.0.0.0", "ip"));
    EXPECT_TRUE(nf::parse_ipv4("255.255.255.255", "ip"));
    for (std::string_view bad :
         {""sv, "1.2.3"sv, "1.2.3.4.5"sv, "256.1.1.1"sv, "1.2.3.04"sv, "1..3.4"sv, "1.2.3.4."sv,
          ".1.2.3.4"sv, "a.b.c.d"sv, "1.2.3.-4"sv, " 1.2.3.4"sv, "1.2.3.4/24"sv})
        EXPECT_FALSE(nf::parse_ipv4(bad, "ip")) << nf::quote(bad);
}

TEST(XsIpv4, SpaceSeparatedLists) {
    auto one = nf::parse_ipv4_list("198.18.0.1", "ip");
    ASSERT_TRUE(one);
    EXPECT_EQ(one->size(), 1U);
    auto two = nf::parse_ipv4_list("  198.18.0.1   198.18.0.2 ", "ip");
    ASSERT_TRUE(two);
    ASSERT_EQ(two->size(), 2U);
    EXPECT_EQ(nf::format_ipv4((*two)[1]), "198.18.0.2");
    EXPECT_FALSE(nf::parse_ipv4_list("", "ip"));
    EXPECT_FALSE(nf::parse_ipv4_list("   ", "ip"));
    EXPECT_FALSE(nf::parse_ipv4_list("198.18.0.1,198.18.0.2", "ip"));
    EXPECT_FALSE(nf::parse_ipv4_list("198.18.0.1 x", "ip"));
    EXPECT_FALSE(nf::parse_ipv4_list("198.18.0.1\t198.18.0.2", "ip"));
}

TEST(XsRate, BytesCommaMicroseconds) {
    auto rate = nf::parse_rate("12500000,50000", "rate");
    ASSERT_TRUE(rate);
    EXPECT_EQ(rate->bytes, 12500000U);
    EXPECT_EQ(rate->usec, 50000U);
    EXPECT_TRUE(nf::parse_rate("18446744073709551615,4294967295", "rate"));
    for (std::string_view bad : {""sv, ","sv, "1,"sv, ",1"sv, "1"sv, "1,2,3"sv, "1 ,2"sv,
                                 "1,4294967296"sv, "-1,2"sv, "01,2"sv})
        EXPECT_FALSE(nf::parse_rate(bad, "rate")) << nf::quote(bad);
}

// --- queue names and paths ------------------------------------------------------------------

TEST(XsQueueName, QueueN) {
    EXPECT_EQ(*nf::parse_queue_name("queue-0"), 0U);
    EXPECT_EQ(*nf::parse_queue_name("queue-63"), 63U);
    EXPECT_EQ(nf::queue_name(7), "queue-7");
    for (std::string_view bad : {"queue-"sv, "queue-64"sv, "queue-01"sv, "queue--1"sv, "queue-1/"sv,
                                 "Queue-1"sv, "queue1"sv, "queue-x"sv, ""sv, "queue"sv, "q"sv})
        EXPECT_FALSE(nf::parse_queue_name(bad)) << nf::quote(bad);
}

TEST(XsPaths, FrontendPath) {
    auto p = nf::parse_frontend_path("/local/domain/5/device/vif/0");
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->domid, 5);
    EXPECT_EQ(p->handle, 0U);
    EXPECT_EQ(nf::format_frontend_path(*p), "/local/domain/5/device/vif/0");
    EXPECT_TRUE(nf::parse_frontend_path("/local/domain/0/device/vif/3")); // a dom0 frontend
    for (std::string_view bad :
         {""sv, "/"sv, "local/domain/5/device/vif/0"sv, "/local/domain/5/device/vif/0/"sv,
          "/local/domain/5/device/vif"sv, "/local/domain/5/device/vbd/0"sv,
          "/local/domain/5/backend/vif/0"sv, "/local/domain//device/vif/0"sv,
          "/local/domain/05/device/vif/0"sv, "/local/domain/5/device/vif/00"sv,
          "/local/domain/32753/device/vif/0"sv, "/local/domain/5/device/vif/0/state"sv,
          "/local/domain/5/device/vif/-1"sv, "//local/domain/5/device/vif/0"sv,
          "/local/domain/5/device//vif/0"sv, "/local/domain/x/device/vif/0"sv}) {
        auto r = nf::parse_frontend_path(bad);
        EXPECT_FALSE(r) << nf::quote(bad);
        if (!r) {
            EXPECT_NE(r.error().message.find("is not a vif frontend path"), std::string::npos);
        }
    }
    EXPECT_NE(
        error_of(nf::parse_frontend_path("/local/domain/05/device/vif/0")).find("leading zero"),
        std::string::npos);
}

TEST(XsPaths, BackendPath) {
    auto p = nf::parse_backend_path("/local/domain/0/backend/vif/12/1");
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->backend, 0);
    EXPECT_EQ(p->frontend, 12);
    EXPECT_EQ(p->handle, 1U);
    EXPECT_EQ(nf::format_backend_path(*p), "/local/domain/0/backend/vif/12/1");
    EXPECT_EQ(nf::format_backend_error_path(*p), "/local/domain/0/error/backend/vif/12/1");
    // A driver domain as backend.
    auto dd = nf::parse_backend_path("/local/domain/3/backend/vif/12/0");
    ASSERT_TRUE(dd);
    EXPECT_EQ(dd->backend, 3);
    for (std::string_view bad :
         {"/local/domain/0/backend/vif/12"sv, "/local/domain/0/backend/vif/12/1/"sv,
          "/local/domain/0/backend/vbd/12/1"sv, "/local/domain/0/backend/vif/12/1/state"sv,
          "/local/domain/0/backend/vif/012/1"sv, "/local/domain/0/backend/vif/32752/1"sv,
          "/local/domain/0/device/vif/12/1"sv, "/local/domain/00/backend/vif/12/1"sv,
          "local/domain/0/backend/vif/12/1"sv, "/local/domain/0/backend/vif//12/1"sv})
        EXPECT_FALSE(nf::parse_backend_path(bad)) << nf::quote(bad);
}

TEST(XsPaths, BackendNodeForWatchEvents) {
    auto folder = nf::parse_backend_node("/local/domain/0/backend/vif/12/1");
    ASSERT_TRUE(folder);
    EXPECT_EQ(folder->vif, (nf::BackendPath{0, 12, 1}));
    EXPECT_EQ(folder->key, "");
    auto state = nf::parse_backend_node("/local/domain/0/backend/vif/12/1/state");
    ASSERT_TRUE(state);
    EXPECT_EQ(state->key, "state");
    auto deep = nf::parse_backend_node("/local/domain/0/backend/vif/12/1/a/b");
    ASSERT_TRUE(deep);
    EXPECT_EQ(deep->key, "a/b");
    for (std::string_view bad :
         {"/local/domain/0/backend/vif"sv, "/local/domain/0/backend/vif/12"sv,
          "/local/domain/0/backend/vif/12/1/"sv, "/local/domain/0/backend/vif/12/1//state"sv,
          "/local/domain/0/backend/vif/12/1/state/"sv, "/local/domain/0/backend/vif/12/x/state"sv,
          "@releaseDomain"sv})
        EXPECT_FALSE(nf::parse_backend_node(bad)) << nf::quote(bad);
}

// --- formatters -----------------------------------------------------------------------------

TEST(XsFormat, WhatTheBackendWrites) {
    EXPECT_EQ(nf::format_unsigned(0), "0");
    EXPECT_EQ(nf::format_unsigned(4096), "4096");
    EXPECT_EQ(nf::format_bool(true), "1");
    EXPECT_EQ(nf::format_bool(false), "0");
    EXPECT_EQ(nf::format_xenbus_state(nf::XenbusState::connected), "4");
    EXPECT_EQ(nf::format_xenbus_state(nf::XenbusState::init_wait), "2");
}

TEST(XsFormat, NumbersRoundTrip) {
    for (std::uint64_t v :
         std::initializer_list<std::uint64_t>{0, 1, 9, 10, 131071, 4294967295ULL, UINT64_MAX}) {
        const std::string text = nf::format_unsigned(v);
        auto back = nf::parse_unsigned(text, 0, UINT64_MAX, "k");
        ASSERT_TRUE(back);
        EXPECT_EQ(*back, v);
    }
}
