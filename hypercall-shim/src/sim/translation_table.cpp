// SimTranslationTable: the backend's handle on the I/O translation table the simulated
// hypervisor keeps for (guest, this backend). The address subtable comes from a memfd sealed
// against new writable mappings, so it is mapped read-only here and a write faults; the
// status subtable is ours to write. `dma_base` is a read-write mapping of the whole guest
// memory (the "DMA window": what a NIC without IOMMU reaches), used only with addresses read
// from the table.
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>

#include "sim/client.hpp"

namespace dpnb::hv::sim {
namespace {

class SimTranslationTable final : public TranslationTable {
public:
    SimTranslationTable(std::shared_ptr<BackendCore> core, DomId guest, std::uint32_t size,
                        Mapping entries, Mapping status, Mapping window)
        : core_(std::move(core)), guest_(guest), size_(size), entries_(std::move(entries)),
          status_(std::move(status)), window_(std::move(window)) {}

    ~SimTranslationTable() override {
        std::uint64_t leaked = 0;
        for (std::uint32_t ref = 0; ref < size_; ++ref)
            leaked += view().in_flight(ref);
        if (leaked != 0)
            spdlog::error("translation table of domain {} closed with {} buffer(s) still "
                          "acquired; the hypervisor drops them",
                          guest_, leaked);
        (void)core_->channel()->call(proto::make_request(proto::Op::iott_close, guest_), 0);
    }

    TranslationTableView view() const override {
        return {entries_.as<const IottEntry>(), status_.as<std::uint32_t>(), size_, window_.data()};
    }
    DomId guest() const override { return guest_; }

    std::uint32_t valid_entries() const override {
        std::uint32_t n = 0;
        const IottEntry* e = entries_.as<const IottEntry>();
        for (std::uint32_t ref = 0; ref < size_; ++ref) {
            auto& flags = const_cast<std::uint32_t&>(e[ref].flags); // read-only mapping
            n += (std::atomic_ref<std::uint32_t>(flags).load(std::memory_order_acquire) &
                  IottEntry::kValid) != 0;
        }
        return n;
    }

private:
    std::shared_ptr<BackendCore> core_;
    DomId guest_;
    std::uint32_t size_;
    Mapping entries_, status_, window_;
};

} // namespace

Result<std::unique_ptr<TranslationTable>> open_translation_table(std::shared_ptr<BackendCore> core,
                                                                 DomId guest) {
    auto rsp = core->channel()->call(proto::make_request(proto::Op::iott_open, guest), 3);
    if (!rsp) return std::move(rsp).error();
    auto close = [&] {
        (void)core->channel()->call(proto::make_request(proto::Op::iott_close, guest), 0);
    };
    const auto size = static_cast<std::uint32_t>(rsp->reply.val[0]);
    auto entries = map_checked(rsp->fds[0].get(), std::size_t{size} * sizeof(IottEntry), false);
    auto status = map_checked(rsp->fds[1].get(), std::size_t{size} * sizeof(std::uint32_t), true);
    struct stat st {};
    if (::fstat(rsp->fds[2].get(), &st) != 0) {
        close();
        return sys_error(Errc::io, "fstat guest memory");
    }
    auto window = map_checked(rsp->fds[2].get(), static_cast<std::size_t>(st.st_size), true);
    if (!entries || !status || !window) {
        close();
        if (!entries) return std::move(entries).error();
        if (!status) return std::move(status).error();
        return std::move(window).error();
    }
    return std::unique_ptr<TranslationTable>(new SimTranslationTable(
        std::move(core), guest, size, std::move(*entries), std::move(*status), std::move(*window)));
}

} // namespace dpnb::hv::sim
