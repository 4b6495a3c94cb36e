// XenDomains with a fake libxenctrl and a fake xenstore: the "next domain" answer of
// xc_domain_getinfolist, the fallback to xenstore in a driver domain, names, and how a
// backend learns its own domain id.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "fake_xenstore.hpp"
#include "xen/domains.hpp"

namespace dpnb::hv::xen {
namespace {

using test::FakeXenstore;

// Domains that exist, in id order, as the hypervisor would enumerate them.
class FakeInfo final : public DomainInfoSource {
public:
    std::vector<DomainInfo> domains;
    Errc fail = Errc::internal; // anything but internal: every call fails with it
    // Outlives the fake, which XenDomains drops when it falls back to xenstore.
    std::shared_ptr<int> calls = std::make_shared<int>(0);

    Result<std::optional<DomainInfo>> first_from(DomId first) override {
        ++*calls;
        if (fail != Errc::internal) return make_error(fail, "fake getinfolist");
        for (const DomainInfo& d : domains)
            if (d.domid >= first) return std::optional<DomainInfo>(d);
        return std::optional<DomainInfo>{};
    }
};

struct Rig {
    FakeInfo* info = nullptr; // owned by `domains` (until it falls back)
    std::shared_ptr<int> info_calls;
    FakeXenstore* xs = nullptr;
    std::unique_ptr<XenDomains> domains;

    explicit Rig(bool with_info = true) {
        std::unique_ptr<FakeInfo> i;
        if (with_info) {
            i = std::make_unique<FakeInfo>();
            info = i.get();
            info_calls = i->calls;
        }
        auto x = std::make_unique<FakeXenstore>();
        xs = x.get();
        domains = std::make_unique<XenDomains>(std::move(i), std::move(x), 0);
    }
};

TEST(XenDomains, AMissingDomainIsNotConfusedWithTheNextOne) {
    Rig s;
    s.info->domains = {{0, false, false}, {3, false, false}, {9, true, true}};
    auto missing = s.domains->state(5); // getinfolist answers with dom 9
    ASSERT_TRUE(missing);
    EXPECT_FALSE(missing->exists);

    auto three = s.domains->state(3);
    ASSERT_TRUE(three);
    EXPECT_TRUE(three->exists);
    EXPECT_FALSE(three->dying);

    auto nine = s.domains->state(9);
    ASSERT_TRUE(nine);
    EXPECT_TRUE(nine->exists);
    EXPECT_TRUE(nine->dying);
    EXPECT_TRUE(nine->shutdown);

    auto past_the_end = s.domains->state(12);
    ASSERT_TRUE(past_the_end);
    EXPECT_FALSE(past_the_end->exists);
    EXPECT_EQ(s.xs->reads, 0) << "xenstore is not asked while libxenctrl answers";
}

TEST(XenDomains, DriverDomainFallsBackToXenstoreForGood) {
    Rig s;
    s.info->fail = Errc::permission_denied;
    s.xs->nodes["/local/domain/4"] = "";
    s.xs->errors["/local/domain/6"] = Errc::permission_denied;

    auto four = s.domains->state(4);
    ASSERT_TRUE(four);
    EXPECT_TRUE(four->exists);
    EXPECT_FALSE(s.domains->has_domain_info());
    EXPECT_NE(s.domains->fallback_reason().find("fake getinfolist"), std::string::npos);

    auto six = s.domains->state(6);
    ASSERT_TRUE(six);
    EXPECT_TRUE(six->exists) << "EACCES: the node exists, it is just not ours to read";
    auto five = s.domains->state(5);
    ASSERT_TRUE(five);
    EXPECT_FALSE(five->exists);
    EXPECT_EQ(*s.info_calls, 1) << "libxenctrl is not asked again";
}

TEST(XenDomains, OtherFailuresAreReportedNotHidden) {
    Rig s;
    s.info->fail = Errc::io;
    auto r = s.domains->state(1);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::io);
    EXPECT_TRUE(s.domains->has_domain_info());

    Rig no_xc(false);
    EXPECT_FALSE(no_xc.domains->has_domain_info());
    no_xc.xs->errors["/local/domain/2"] = Errc::io;
    EXPECT_FALSE(no_xc.domains->state(2));
}

TEST(XenDomains, NamesComeFromXenstoreAndArePrintable) {
    Rig s;
    s.xs->nodes["/local/domain/3/name"] = "web-01";
    s.xs->nodes["/local/domain/4/name"] = std::string("bad\x1b[2Jname");
    s.xs->nodes["/local/domain/5/name"] = "";
    auto n = s.domains->name(3);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, "web-01");
    ASSERT_FALSE(s.domains->name(4));
    EXPECT_EQ(s.domains->name(4).error().code, Errc::protocol);
    EXPECT_FALSE(s.domains->name(5));
    EXPECT_EQ(s.domains->name(6).error().code, Errc::not_found);
    EXPECT_EQ(s.domains->self(), 0);
}

TEST(XenDomains, ParseDomid) {
    EXPECT_EQ(parse_domid("0"), DomId{0});
    EXPECT_EQ(parse_domid("5"), DomId{5});
    EXPECT_EQ(parse_domid("32751"), DomId{32751});
    EXPECT_FALSE(parse_domid("32752")) << "DOMID_SELF and above are not domains";
    EXPECT_FALSE(parse_domid(""));
    EXPECT_FALSE(parse_domid("-1"));
    EXPECT_FALSE(parse_domid("07"));
    EXPECT_FALSE(parse_domid("5 "));
    EXPECT_FALSE(parse_domid("123456"));
}

class TempFile {
public:
    explicit TempFile(const std::string& text) {
        char name[] = "/tmp/dpnb-xen-caps-XXXXXX";
        const int fd = ::mkstemp(name);
        EXPECT_GE(fd, 0);
        ::close(fd);
        path_ = name;
        std::ofstream(path_) << text;
    }
    ~TempFile() { std::remove(path_.c_str()); }
    const char* path() const { return path_.c_str(); }

private:
    std::string path_;
};

TEST(XenSelf, FromXenstoreThenFromCapabilities) {
    FakeXenstore xs;
    xs.nodes["domid"] = "12";
    auto id = discover_self(xs, "/nonexistent/capabilities");
    ASSERT_TRUE(id);
    EXPECT_EQ(*id, 12);

    FakeXenstore empty;
    TempFile dom0("control_d\n");
    id = discover_self(empty, dom0.path());
    ASSERT_TRUE(id);
    EXPECT_EQ(*id, 0);

    FakeXenstore garbage;
    garbage.nodes["domid"] = "12abc";
    TempFile domu("\n");
    id = discover_self(garbage, domu.path());
    ASSERT_FALSE(id);
    EXPECT_EQ(id.error().code, Errc::not_found);
    EXPECT_NE(id.error().message.find("12abc"), std::string::npos) << id.error().message;
}

} // namespace
} // namespace dpnb::hv::xen
