// The simulated twin of MAC steering rules (pmd::SimMacRules): what a test's NIC reads must
// be what the engine asked for, per port, and a refusing NIC refuses.
#include <gtest/gtest.h>

#include "dpnb/pmd/mac_rules.hpp"

namespace dpnb::pmd {
namespace {

const netif::MacAddress kA{{0x00, 0x16, 0x3e, 0, 0, 1}};
const netif::MacAddress kB{{0x00, 0x16, 0x3e, 0, 0, 2}};

TEST(SimMacRules, SteersEachMacOfAPortToItsQueueUntilRemoved) {
    SimMacRules r;
    ASSERT_TRUE(r.validate(3, 1));
    auto a = r.add(3, kA, 1);
    auto b = r.add(3, kB, 2);
    ASSERT_TRUE(a);
    ASSERT_TRUE(b);
    EXPECT_EQ(r.queue_for(3, kA), 1);
    EXPECT_EQ(r.queue_for(3, kB), 2);
    EXPECT_EQ(r.queue_for(4, kA), 0) << "rules are per port";
    EXPECT_EQ(r.queue_for(3, netif::MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}), 0);
    EXPECT_EQ(r.rules(3), 2u);
    auto twice = r.add(3, kA, 2);
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code, Errc::busy);
    EXPECT_FALSE(r.remove(4, *a)) << "another port's rule";
    EXPECT_TRUE(r.remove(3, *a));
    EXPECT_FALSE(r.remove(3, *a)) << "removed twice";
    EXPECT_EQ(r.queue_for(3, kA), 0);
    EXPECT_EQ(r.rules(3), 1u);
}

TEST(SimMacRules, ANicWithoutRulesRefusesThem) {
    SimMacRules r;
    r.refuse(true);
    EXPECT_FALSE(r.validate(0, 1));
    auto a = r.add(0, kA, 1);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, Errc::unsupported);
    EXPECT_EQ(r.rules(0), 0u);
}

} // namespace
} // namespace dpnb::pmd
