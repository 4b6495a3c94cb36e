// Finding which grant of a failed batch map was bad (see map_status.hpp).
#include "xen/map_status.hpp"

#include <cerrno>

#include "dpnb/netif/wire.hpp"

namespace dpnb::hv::xen {

namespace gntst = netif::gntst;

namespace {

struct Probe {
    BatchMapper& mapper;
    std::span<const std::uint32_t> domids;
    std::span<const std::uint32_t> refs;
    bool writable;
    std::span<std::int16_t> status;

    // Maps [first, first + n) as one batch; true when it mapped (and was unmapped again).
    bool try_range(std::size_t first, std::size_t n, bool w, int& err) {
        void* p = mapper.map_batch(domids.subspan(first, n), refs.subspan(first, n), w, err);
        if (p == nullptr) return false;
        mapper.unmap_batch(p, static_cast<std::uint32_t>(n));
        return true;
    }

    void fill(std::size_t first, std::size_t n, std::int16_t st) {
        for (std::size_t i = first; i < first + n; ++i)
            status[i] = st;
    }

    // [first, first + n) is known to fail as a whole.
    void split(std::size_t first, std::size_t n) {
        if (n == 1) {
            refused(first);
            return;
        }
        const std::size_t half = n / 2;
        range(first, half);
        range(first + half, n - half);
    }

    void range(std::size_t first, std::size_t n) {
        if (n == 1) {
            single(first);
            return;
        }
        int err = 0;
        if (try_range(first, n, writable, err)) {
            fill(first, n, gntst::kOkay);
        } else if (err == EINVAL) {
            split(first, n);
        } else {
            // Not the guest's doing (ENOMEM, a full gntdev): nothing more to learn here.
            fill(first, n, gntst::kGeneralError);
        }
    }

    // A single grant whose fate is not known yet.
    void single(std::size_t i) {
        int err = 0;
        if (try_range(i, 1, writable, err)) {
            status[i] = gntst::kOkay;
            return;
        }
        if (err != EINVAL) {
            status[i] = gntst::kGeneralError;
            return;
        }
        refused(i);
    }

    // A single grant that Xen refused: say why.
    void refused(std::size_t i) {
        if (writable) {
            int ro_err = 0;
            if (try_range(i, 1, false, ro_err)) {
                status[i] = gntst::kPermissionDenied; // a read-only grant asked for writing
                return;
            }
        }
        status[i] = gntst::kBadGntref;
    }
};

} // namespace

void discover_map_status(BatchMapper& mapper, std::span<const std::uint32_t> domids,
                         std::span<const std::uint32_t> refs, bool writable,
                         std::span<std::int16_t> status) {
    const std::size_t n = refs.size();
    if (n == 0) return;
    Probe probe{mapper, domids, refs, writable, status};
    probe.split(0, n);

    bool any_failed = false;
    for (std::size_t i = 0; i < n; ++i)
        any_failed = any_failed || status[i] != gntst::kOkay;
    if (!any_failed) probe.fill(0, n, gntst::kGeneralError);
}

} // namespace dpnb::hv::xen
