// dpnetbackd's control thread under a control-ring flood: a raw frontend (a thread of this
// process, a guest of the daemon's simulated hypervisor) keeps its netif control ring full of
// valid SET_HASH_KEY messages, each costing the daemon a grant copy, while another vif is
// plugged and its guest (dpnb-netfront) connects. The daemon answers the flooder a budget
// at a time and returns to xenstore and its other vifs in between, so the new vif reaches
// InitWait within libxl's 10 s and then Connected; every flooded request is answered, in
// order, in the end.
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "dpnb/netif/ctrl_ring.hpp"
#include "dpnb/netif/xs_value.hpp"
#include "process_harness.hpp"
#include "raw_frontend.hpp"

namespace dpnb::daemon_test {
namespace {

namespace ctrl = netif::ctrl;

// How long libxl waits for a vif backend to reach InitWait before it gives up (FINDINGS.md).
constexpr auto kLibxlDeadline = 10s;

std::optional<std::string> backend_state(const DaemonEnv& env, unsigned dom) {
    return env.xenstore_read("/local/domain/0/backend/vif/" + std::to_string(dom) + "/0/state");
}

TEST(CtrlFlood, AnotherGuestConnectsWhileAControlRingIsFlooded) {
    DT_REQUIRE_ENVIRONMENT();
    DaemonEnv env; // features.ctrl_ring is on by default
    ASSERT_TRUE(env.start_daemon());
    const auto fd = env.create_domain("flooder");
    ASSERT_TRUE(fd);
    const hv::DomId flooder = static_cast<hv::DomId>(*fd);
    auto mac = netif::parse_mac(guest_mac(flooder), "mac");
    ASSERT_TRUE(mac);
    test::plug_vif(env.sim_dir, flooder, *mac);
    if (HasFatalFailure()) return;
    test::RawFrontend f;
    f.open(env.sim_dir, flooder, 4);
    if (HasFatalFailure()) return;
    const test::XsKeys keys = f.open_ctrl_ring(2);
    auto key_ref = f.hv->grant_access(hv::kDom0, f.pages.page(3), true);
    ASSERT_TRUE(key_ref && !keys.empty());
    for (unsigned i = 0; i < 40; ++i)
        f.pages.page(3)[i] = static_cast<std::byte>(0x40 + i);
    f.connect(keys);
    if (HasFatalFailure()) return;
    ASSERT_EQ(backend_state(env, flooder).value_or(""), "4");

    // The flood: the ring refilled as soon as responses come back, until told to stop; then
    // every request sent must have been answered, in order, with SUCCESS.
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> sent{0}, answered{0}, wrong{0};
    std::thread flood([&] {
        std::uint16_t next_id = 0, expect_id = 0;
        const auto give_up = std::chrono::steady_clock::now() + kWait;
        while (std::chrono::steady_clock::now() < give_up) {
            const netif::ResponseWindow w = f.ctrl.poll_responses();
            if (w.overflow) {
                ++wrong;
                return;
            }
            for (std::uint32_t k = 0; k < w.available; ++k) {
                const ctrl::Response r = f.ctrl.copy_response(w.cons + k);
                if (r.id != expect_id++ || r.status != ctrl::kStatusSuccess) ++wrong;
                ++answered;
            }
            f.ctrl.consume_responses(w.available);
            if (!stop) {
                while (f.ctrl.put_request({next_id, ctrl::kTypeSetHashKey, {*key_ref, 40, 0}})) {
                    ++next_id;
                    ++sent;
                }
                f.push_ctrl();
            } else if (answered == sent) {
                return;
            }
            std::this_thread::sleep_for(200us);
        }
    });
    ASSERT_TRUE(wait_for([&] { return answered > 2000; })) << "the flood was never answered";

    // A vif is plugged while the flood goes on: the daemon must see it and publish InitWait
    // within libxl's limit, then walk its guest to Connected.
    const auto gd = env.create_domain("guest");
    ASSERT_TRUE(gd);
    auto gmac = netif::parse_mac(guest_mac(*gd), "mac");
    ASSERT_TRUE(gmac);
    const std::uint64_t answered_before = answered;
    const auto t0 = std::chrono::steady_clock::now();
    test::plug_vif(env.sim_dir, static_cast<hv::DomId>(*gd), *gmac);
    const bool init_wait = wait_for([&] { return backend_state(env, *gd) == "2"; }, kWait);
    const auto t_init_wait = std::chrono::steady_clock::now();
    env.start_guest(*gd, {"--no-plug", "--echo"});
    const bool connected = wait_for([&] { return backend_state(env, *gd) == "4"; }, kWait);
    const auto t_connected = std::chrono::steady_clock::now();
    const std::uint64_t answered_meanwhile = answered - answered_before;
    stop = true;
    flood.join();
    auto ms = [&](auto t) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(t - t0).count();
    };
    std::printf("plugged vif in InitWait after %lld ms, Connected after %lld ms; %llu flooded "
                "requests answered meanwhile, %llu in all\n",
                static_cast<long long>(ms(t_init_wait)), static_cast<long long>(ms(t_connected)),
                static_cast<unsigned long long>(answered_meanwhile),
                static_cast<unsigned long long>(answered.load()));
    ASSERT_TRUE(init_wait) << "the daemon never took up the plugged vif";
    EXPECT_LT(t_init_wait - t0, kLibxlDeadline)
        << "the flooded control ring held up the control thread past libxl's deadline";
    ASSERT_TRUE(connected) << "the second guest never connected";
    EXPECT_GT(answered_meanwhile, 0u) << "the flooder was starved instead";
    EXPECT_EQ(wrong.load(), 0u);
    EXPECT_EQ(answered.load(), sent.load()) << "flooded requests left unanswered";

    // Everything counted, and the flooder's vif is still served.
    const std::string m = env.scrape();
    const std::string vif = vif_name(flooder);
    const auto ok =
        metric(m, "dpnetback_vif_ctrl_requests_total{vif=\"" + vif + "\",status=\"success\"}");
    ASSERT_TRUE(ok) << m;
    EXPECT_EQ(*ok, static_cast<double>(sent.load()));
    EXPECT_EQ(backend_state(env, flooder).value_or(""), "4");
}

} // namespace
} // namespace dpnb::daemon_test
