// Without Xen (no /dev/xen), every way in fails cleanly: Errc::unsupported and a message
// that names the missing device. Also the errno-to-Errc rules and the quiet logger.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdarg>

#include "dpnb/hv/xen.hpp"
#include "xen/domains.hpp"
#include "xen/xen_errors.hpp"
#include "xen/xen_log.hpp"

namespace dpnb::hv {
namespace {

bool has_xen() {
    return xen::device_present("/dev/xen");
}

#define SKIP_ON_XEN()                                                                              \
    if (has_xen()) GTEST_SKIP() << "/dev/xen exists: the Xen lab covers this machine"

template <class T>
void expect_missing(const Result<T>& r, const char* device) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::unsupported) << r.error().describe();
    EXPECT_NE(r.error().message.find(device), std::string::npos) << r.error().describe();
    EXPECT_NE(r.error().message.find("not running under Xen"), std::string::npos);
}

TEST(XenOpen, BackendNamesTheMissingGrantDevice) {
    SKIP_ON_XEN();
    expect_missing(open_xen_backend(), "/dev/xen/gntdev");
}

TEST(XenOpen, GuestNamesTheMissingGntalloc) {
    SKIP_ON_XEN();
    expect_missing(open_xen_guest(), "/dev/xen/gntalloc");
}

TEST(XenOpen, PartsNameTheirDevices) {
    SKIP_ON_XEN();
    expect_missing(open_xen_grant_table(), "/dev/xen/gntdev");
    expect_missing(open_xen_event_channels(), "/dev/xen/evtchn");
    expect_missing(xen::open_xenctrl_info(), "/dev/xen/privcmd");
}

TEST(XenOpen, GuestRefusesAnInvalidPeer) {
    XenGuestOptions o;
    o.peer = kDomIdSelf;
    auto g = open_xen_guest(o);
    ASSERT_FALSE(g);
    EXPECT_EQ(g.error().code, Errc::invalid_argument);
}

TEST(XenErrors, ErrnoDecidesTheCode) {
    const Error missing = xen::device_error(xen::kEvtchnPath, "xenevtchn_open", ENOENT);
    EXPECT_EQ(missing.code, Errc::unsupported);
    EXPECT_NE(missing.message.find("xen-evtchn"), std::string::npos) << missing.message;

    const Error denied = xen::device_error(xen::kGntdevPath, "xengnttab_open", EACCES, "lib said");
    EXPECT_EQ(denied.code, Errc::permission_denied);
    EXPECT_EQ(denied.sys_errno, EACCES);
    EXPECT_NE(denied.message.find("/dev/xen/gntdev"), std::string::npos);
    EXPECT_NE(denied.message.find("lib said"), std::string::npos);

    EXPECT_EQ(xen::device_error(xen::kGntdevPath, "x", EIO).code, Errc::io);
    EXPECT_EQ(xen::device_error(xen::kGntdevPath, "x", ENODEV).code, Errc::unsupported);
}

void log_through(xentoollog_logger* l, xentoollog_level level, int err, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    l->vmessage(l, level, err, "gnttab", fmt, ap);
    va_end(ap);
}

TEST(XenLog, KeepsTheLastErrorAndIgnoresChatter) {
    xen::QuietLogger log;
    EXPECT_EQ(log.last(), "");
    log_through(log.get(), XTL_DEBUG, -1, "%s", "noise");
    EXPECT_EQ(log.last(), "");
    log_through(log.get(), XTL_ERROR, EINVAL, "mmap of %d pages failed", 3);
    EXPECT_NE(log.last().find("gnttab: mmap of 3 pages failed"), std::string::npos) << log.last();
    EXPECT_NE(log.last().find("Invalid argument"), std::string::npos) << log.last();
    log.clear();
    EXPECT_EQ(log.last(), "");
}

} // namespace
} // namespace dpnb::hv
