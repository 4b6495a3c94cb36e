// Every way a connected vif goes down: the frontend closes, the guest crashes or is destroyed
// (@releaseDomain), the toolstack sets online = 0 or removes the folders, the data plane
// disables the vif. Each time: the data plane detaches it (nothing stays mapped), the states
// walk as docs/xenbus.md says, and nothing is written into a folder that is gone.
#include "harness.hpp"

namespace dpnb::control::test {
namespace {

class ControlTeardown : public ControlFixture {};

TEST_F(ControlTeardown, FrontendCloseDetachesAndWalksToClosed) {
    start_daemon();
    Running r = run_guest("close");
    ASSERT_NE(r.guest, nullptr);
    EXPECT_GT(dp_->mapped_pages(), 0U);

    EXPECT_EQ(ask(*r.guest, "close " + std::to_string(kTimeoutMs)), "ok");
    ASSERT_TRUE(backend_state_is(r.dom, "6"));
    EXPECT_EQ(read(frontend_path(r.dom) + "/state"), "6");
    EXPECT_FALSE(dp_->attached(r.id()));
    ASSERT_EQ(dp_->calls().detach.size(), 1U);
    EXPECT_EQ(dp_->calls().detach[0], r.id());
    EXPECT_EQ(dp_->mapped_pages(), 0U);
    auto info = vif(r.dom);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->phase, netif::Phase::closed);
    EXPECT_EQ(info->role, VifRole::served); // waits for the frontend to come back
    EXPECT_FALSE(info->attached);
    EXPECT_FALSE(read(error_path(r.dom)).has_value());
}

enum class Death { crash, destroy };

void PrintTo(Death d, std::ostream* os) {
    *os << (d == Death::crash ? "crash" : "toolstack destroy");
}

class ControlGuestDeath : public ControlFixture, public ::testing::WithParamInterface<Death> {};

// The guest dies mid-connection: its domain goes (@releaseDomain; the simulated toolstack
// also removes its xenstore home). The vif is detached and forgotten and nothing is written:
// the backend folder still says Connected until the toolstack removes it.
TEST_P(ControlGuestDeath, DetachesAndForgetsWithoutWriting) {
    start_daemon();
    Running r = run_guest("dies");
    Running other = run_guest("lives");
    ASSERT_NE(r.guest, nullptr);
    ASSERT_NE(other.guest, nullptr);
    if (GetParam() == Death::crash)
        r.guest->kill();
    else
        CT_ASSERT_OK(toolstack_->destroy_domain(r.dom));

    ASSERT_TRUE(pump_until([&] {
        auto v = vif(r.dom);
        return v && v->role == VifRole::forgotten;
    }));
    EXPECT_FALSE(dp_->attached(r.id()));
    EXPECT_EQ(dp_->calls().detach, std::vector<engine::VifId>{r.id()});
    EXPECT_EQ(read(backend_path(r.dom) + "/state"), "4");
    EXPECT_FALSE(read(error_path(r.dom)).has_value());

    // The toolstack cleans up; the vif leaves the list and the domain is freed: no grant or
    // port of it is held any more.
    CT_ASSERT_OK(netfront::destroy_vif(*xs_, r.dom, hv::kDom0, 0));
    ASSERT_TRUE(pump_until([&] { return !vif(r.dom).has_value(); }));
    EXPECT_FALSE(read(backend_path(r.dom)).has_value());
    EXPECT_TRUE(domain_freed(r.dom));

    // The other guest did not notice.
    EXPECT_EQ(ask(*other.guest, "state"), "connected");
    EXPECT_EQ(ask(*other.guest, "send 4 " + std::to_string(kTimeoutMs)), "ok 4 0");
    EXPECT_TRUE(dp_->attached(other.id()));
}

INSTANTIATE_TEST_SUITE_P(Ways, ControlGuestDeath, ::testing::Values(Death::crash, Death::destroy),
                         [](const ::testing::TestParamInfo<Death>& i) {
                             return i.param == Death::crash ? "Crash" : "ToolstackDestroy";
                         });

// `xl network-detach`: online = 0 and Closing from the toolstack; the backend detaches, the
// frontend closes, the backend answers Closed and forgets the vif; then the folders go.
TEST_F(ControlTeardown, OnlineZeroDetachesThenTheFoldersGo) {
    start_daemon();
    Running r = run_guest("detach");
    ASSERT_NE(r.guest, nullptr);
    CT_ASSERT_OK(netfront::request_vif_removal(*xs_, r.dom, hv::kDom0, 0));
    ASSERT_TRUE(backend_state_is(r.dom, "6"));
    ASSERT_TRUE(pump_until([&] {
        auto v = vif(r.dom);
        return v && v->role == VifRole::forgotten;
    }));
    EXPECT_FALSE(dp_->attached(r.id()));
    EXPECT_EQ(dp_->calls().detach.size(), 1U);
    EXPECT_EQ(ask(*r.guest, "state"), "closed");

    CT_ASSERT_OK(netfront::destroy_vif(*xs_, r.dom, hv::kDom0, 0));
    ASSERT_TRUE(pump_until([&] { return !vif(r.dom).has_value(); }));
    EXPECT_EQ(ask(*r.guest, "wait gone " + std::to_string(kTimeoutMs)), "ok");
    EXPECT_EQ(dp_->mapped_pages(), 0U);
    EXPECT_EQ(cp_->counters().event(ControlEvent::vifs_forgotten), 1U);
}

// The toolstack removes both folders at once (libxl's forced removal): the vif is detached and
// forgotten, and no late state write brings the backend folder back.
TEST_F(ControlTeardown, RemovedFoldersAreNotRecreated) {
    start_daemon();
    Running r = run_guest("rm");
    ASSERT_NE(r.guest, nullptr);
    CT_ASSERT_OK(netfront::destroy_vif(*xs_, r.dom, hv::kDom0, 0));
    ASSERT_TRUE(pump_until([&] { return !vif(r.dom).has_value(); }));
    EXPECT_FALSE(dp_->attached(r.id()));
    EXPECT_EQ(dp_->calls().detach.size(), 1U);
    EXPECT_FALSE(read(backend_path(r.dom)).has_value());
    EXPECT_FALSE(read("/local/domain/0/backend/vif/" + std::to_string(r.dom)).has_value());
    EXPECT_FALSE(read(error_path(r.dom)).has_value());
    EXPECT_EQ(ask(*r.guest, "wait gone " + std::to_string(kTimeoutMs)), "ok");
    EXPECT_EQ(dp_->mapped_pages(), 0U);
}

// A fatal protocol error seen by the data plane (Linux's xenvif_fatal_tx_err): detach, Closing
// with the reason in the error node, Closed when the frontend answers. Other vifs go on.
TEST_F(ControlTeardown, DataPlaneDisabledVifCloses) {
    start_daemon();
    GuestOptions once;
    once.reconnect = false;
    Running r = run_guest("fatal", once);
    Running other = run_guest("fine");
    ASSERT_NE(r.guest, nullptr);
    ASSERT_NE(other.guest, nullptr);

    dp_->inject({engine::DataPlaneEvent::Kind::vif_disabled, r.id(),
                 "queue 0: a TX packet of 40 slots (fatal above 20)"});
    ASSERT_TRUE(backend_state_is(r.dom, "6"));
    EXPECT_FALSE(dp_->attached(r.id()));
    EXPECT_EQ(dp_->calls().detach, std::vector<engine::VifId>{r.id()});
    auto err = read(error_path(r.dom));
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->rfind("71 ", 0), 0U) << *err;
    EXPECT_NE(err->find("a TX packet of 40 slots"), std::string::npos) << *err;
    EXPECT_EQ(ask(*r.guest, "state"), "closed");
    auto info = vif(r.dom);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->phase, netif::Phase::closed);
    EXPECT_EQ(info->last_error_kind, ControlError::data_plane_disabled);
    EXPECT_EQ(cp_->counters().error(ControlError::data_plane_disabled), 1U);

    EXPECT_EQ(ask(*other.guest, "send 4 " + std::to_string(kTimeoutMs)), "ok 4 0");
    EXPECT_EQ(read(backend_path(other.dom) + "/state"), "4");
}

// A mode fallback is only recorded; the vif keeps running.
TEST_F(ControlTeardown, ModeFallbackIsRecorded) {
    options_.default_rx_mode = engine::RxMode::reuse;
    start_daemon();
    Running r = run_guest("fallback");
    ASSERT_NE(r.guest, nullptr);
    dp_->inject({engine::DataPlaneEvent::Kind::mode_fallback, r.id(),
                 "no translation table on this hypervisor: copy"});
    ASSERT_TRUE(pump_until([&] { return !vif(r.dom)->rx_mode_reason.empty(); }));
    EXPECT_EQ(vif(r.dom)->rx_mode_reason, "no translation table on this hypervisor: copy");
    EXPECT_TRUE(dp_->attached(r.id()));
    EXPECT_EQ(read(backend_path(r.dom) + "/state"), "4");
}

} // namespace
} // namespace dpnb::control::test
