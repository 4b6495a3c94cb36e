// The toolstack client of the simulated hypervisor (what xl is to Xen): create and destroy
// domains, list them, read the server's counters.
#include "dpnb/hv/sim.hpp"
#include "sim/protocol.hpp"

namespace dpnb::hv::sim {
namespace {

using proto::Op;

class SimToolstack final : public Toolstack {
public:
    explicit SimToolstack(std::shared_ptr<proto::Channel> ch) : ch_(std::move(ch)) {}

    Result<DomId> create_domain(const DomainConfig& config) override {
        if (config.name.size() >= sizeof(proto::Request::text))
            return make_error(Errc::invalid_argument, "domain name too long");
        auto req = proto::make_request(Op::create_domain, config.memory_pages, config.grant_frames,
                                       config.destroy_when_guest_exits);
        proto::set_text(req.text, sizeof(req.text), config.name);
        auto rsp = ch_->call(req, 0);
        if (!rsp) return std::move(rsp).error();
        return static_cast<DomId>(rsp->reply.val[0]);
    }

    Status destroy_domain(DomId dom) override {
        auto rsp = ch_->call(proto::make_request(Op::destroy_domain, dom), 0);
        if (!rsp) return std::move(rsp).error();
        return ok();
    }

    Result<DomainInfo> domain_info(DomId dom) override {
        auto info = info_from(dom);
        if (!info) return info;
        if (info->dom != dom) return make_error(Errc::not_found, "no such domain");
        return info;
    }

    Result<std::vector<DomainInfo>> list_domains() override {
        std::vector<DomainInfo> out;
        std::uint32_t next = 0;
        while (next < kDomIdInvalid) {
            auto info = info_from(static_cast<DomId>(next));
            if (!info) {
                if (info.error().code == Errc::not_found) break;
                return std::move(info).error();
            }
            next = std::uint32_t{info->dom} + 1;
            out.push_back(std::move(*info));
        }
        return out;
    }

    Result<ServerStats> stats() override {
        auto rsp = ch_->call(proto::make_request(Op::stats), 0);
        if (!rsp) return std::move(rsp).error();
        const auto& v = rsp->reply.val;
        ServerStats s;
        s.domains = static_cast<std::uint32_t>(v[0]);
        s.dying_domains = static_cast<std::uint32_t>(v[1]);
        s.connections = static_cast<std::uint32_t>(v[2]);
        s.event_channel_handles = static_cast<std::uint32_t>(v[3]);
        s.event_channel_ports = static_cast<std::uint32_t>(v[4]);
        s.translation_tables = static_cast<std::uint32_t>(v[5]);
        s.translation_entries = v[6];
        s.pinned_grants = v[7];
        s.backend_attachments = static_cast<std::uint32_t>(v[8]);
        return s;
    }

private:
    // The first domain whose id is >= dom.
    Result<DomainInfo> info_from(DomId dom) {
        auto rsp = ch_->call(proto::make_request(Op::domain_info, dom), 0);
        if (!rsp) return std::move(rsp).error();
        const auto& v = rsp->reply.val;
        DomainInfo info;
        info.dom = static_cast<DomId>(v[0]);
        info.dying = v[1] != 0;
        info.guest_connected = v[2] != 0;
        info.memory_pages = static_cast<std::uint32_t>(v[3]);
        info.grant_entries = static_cast<std::uint32_t>(v[4]);
        info.pinned_grants = v[5];
        info.event_channels = static_cast<std::uint32_t>(v[6]);
        info.name = rsp->reply.text;
        return info;
    }

    std::shared_ptr<proto::Channel> ch_;
};

} // namespace

Result<std::unique_ptr<Toolstack>> Toolstack::connect(const std::string& dir) {
    auto ch = proto::Channel::connect(dir, proto::Role::toolstack, kDom0, nullptr);
    if (!ch) return std::move(ch).error();
    return std::unique_ptr<Toolstack>(new SimToolstack(std::move(*ch)));
}

} // namespace dpnb::hv::sim
