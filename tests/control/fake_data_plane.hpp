// TEST-ONLY: an engine::DataPlane for the control plane's tests. It records every call, can
// be told to refuse the next attach, and queues events (vif_disabled, mode_fallback) as a
// real data plane would report them.
//
// With a BackendHypervisor it also takes the vif's resources as a real data plane does:
// attach() maps both ring pages of every queue and binds its event channels (a grant or port
// the frontend did not really give fails the attach with Errc::protocol), detach() unbinds and
// unmaps them, and serve() answers every TX request NETIF_RSP_OKAY (no frame goes anywhere;
// RX buffers are left posted). That is enough to show that a frontend's rings work, that a
// restarted daemon can take them over, and that nothing is left mapped or bound.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "dpnb/engine/data_plane.hpp"
#include "dpnb/hv/hypervisor.hpp"

namespace dpnb::control::test {

class FakeDataPlane final : public engine::DataPlane {
public:
    // `hv` may be null: then nothing is mapped and serve() does nothing.
    static Result<std::unique_ptr<FakeDataPlane>> create(hv::BackendHypervisor* hv);
    ~FakeDataPlane() override;

    Status attach(const engine::VifSpec& spec) override;
    Status detach(const engine::VifId& id) override;
    Status set_rx_mode(const engine::VifId& id, engine::RxMode mode) override;
    Status set_rate(const engine::VifId& id, std::optional<netif::RateLimit> rate) override;
    Status set_mcast_control(const engine::VifId& id, bool on) override;
    std::vector<engine::VifStatus> list() const override;
    Result<engine::VifStatus> status(const engine::VifId& id) const override;
    int events_fd() const override { return event_fd_; }
    std::optional<engine::DataPlaneEvent> next_event() override;

    // --- test controls ---
    void fail_next_attach(Error e) { fail_next_ = std::move(e); }
    void inject(engine::DataPlaneEvent ev);
    // Readable when a bound event channel fired; then call serve().
    int serve_fd() const;
    // Answers the TX requests of every attached vif.
    void serve();

    struct Calls {
        std::vector<engine::VifSpec> attach; // every attach() call, refused ones included
        std::vector<engine::VifId> detach;
        std::vector<std::pair<engine::VifId, engine::RxMode>> rx_mode;
        std::vector<std::pair<engine::VifId, std::optional<netif::RateLimit>>> rate;
        std::vector<std::pair<engine::VifId, bool>> mcast_control;
    };
    const Calls& calls() const { return calls_; }
    bool attached(const engine::VifId& id) const { return vifs_.contains(id); }
    std::optional<engine::VifSpec> spec(const engine::VifId& id) const;
    std::size_t attached_count() const { return vifs_.size(); }
    std::uint64_t tx_answered() const { return tx_answered_; }
    std::uint64_t mapped_pages() const;

    struct Vif;

private:
    explicit FakeDataPlane(hv::BackendHypervisor* hv);
    void release(Vif& v);

    hv::BackendHypervisor* hv_;
    std::unique_ptr<hv::GrantTable> gt_;
    std::unique_ptr<hv::EventChannels> ev_;
    int event_fd_ = -1;
    std::map<engine::VifId, std::unique_ptr<Vif>> vifs_;
    std::deque<engine::DataPlaneEvent> events_;
    std::optional<Error> fail_next_;
    Calls calls_;
    std::uint64_t tx_answered_ = 0;
};

} // namespace dpnb::control::test
