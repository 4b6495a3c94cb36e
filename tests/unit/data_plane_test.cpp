// The control/data plane contract's names and counter table.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "dpnb/engine/data_plane.hpp"

using namespace dpnb::engine;

TEST(DataPlane, RxModeNamesRoundTrip) {
    for (RxMode m : {RxMode::copy, RxMode::map, RxMode::reuse}) {
        auto parsed = parse_rx_mode(to_string(m));
        ASSERT_TRUE(parsed.has_value());
        EXPECT_EQ(*parsed, m);
    }
    auto bad = parse_rx_mode("flip");
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, dpnb::Errc::invalid_argument);
    EXPECT_NE(bad.error().message.find("\"flip\""), std::string::npos);
    EXPECT_FALSE(parse_rx_mode("").has_value());
    EXPECT_FALSE(parse_rx_mode("COPY").has_value());
}

TEST(DataPlane, VifNamesFollowLinux) {
    EXPECT_EQ(to_string(VifId{5, 0}), "vif5.0");
    EXPECT_EQ(to_string(VifId{32752, 7}), "vif32752.7");
}

TEST(DataPlane, CounterTableMatchesStruct) {
    VifCounters c;
    auto table = vif_counter_table();
    ASSERT_EQ(table.size() * sizeof(std::uint64_t), sizeof(VifCounters));
    // Give every counter a distinct value through the struct and read it back by index.
    auto* raw = reinterpret_cast<std::uint64_t*>(&c);
    for (std::size_t i = 0; i < table.size(); ++i)
        raw[i] = 1000 + i;
    std::set<std::string> names;
    for (std::size_t i = 0; i < table.size(); ++i) {
        EXPECT_EQ(counter_value(c, i), 1000 + i) << table[i].name;
        EXPECT_TRUE(names.insert(table[i].name).second) << "duplicate " << table[i].name;
        EXPECT_NE(std::string(table[i].help), "");
    }
    EXPECT_EQ(counter_value(c, table.size()), 0u);
    EXPECT_EQ(c.rx_packets, 1000u);
}
