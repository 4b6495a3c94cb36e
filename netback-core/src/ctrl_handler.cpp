// The control ring's request handling (ctrl_handler.hpp): one function per message, in the
// order and with the checks of Linux netback's process_ctrl_request and hash.c.
#include "dpnb/netif/ctrl_handler.hpp"

#include <algorithm>
#include <cstring>

#include "dpnb/util/reason_table.hpp"

namespace dpnb::netif::ctrl {

namespace {

constexpr CtrlErrorInfo kCtrlErrors[] = {
#define DPNB_X(name, counter, help) {CtrlError::name, counter, help},
    DPNB_NETIF_CTRL_ERRORS(DPNB_X)
#undef DPNB_X
};
static_assert(std::size(kCtrlErrors) == kCtrlErrorCount);

// The table is in enum order, so CtrlError n lives at index n - 1.
static_assert(reasons_in_enum_order(kCtrlErrors));

const CtrlErrorInfo* find(CtrlError error) noexcept {
    return find_reason(kCtrlErrors, error);
}

} // namespace

std::span<const CtrlErrorInfo> ctrl_error_table() noexcept {
    return kCtrlErrors;
}

const char* to_string(CtrlError error) noexcept {
    const CtrlErrorInfo* info = find(error);
    return info != nullptr ? info->name : "none";
}

const char* help(CtrlError error) noexcept {
    const CtrlErrorInfo* info = find(error);
    return info != nullptr ? info->help : "no error";
}

const char* type_name(std::uint16_t type) noexcept {
    switch (type) {
    case kTypeInvalid:
        return "INVALID";
    case kTypeGetHashFlags:
        return "GET_HASH_FLAGS";
    case kTypeSetHashFlags:
        return "SET_HASH_FLAGS";
    case kTypeSetHashKey:
        return "SET_HASH_KEY";
    case kTypeGetHashMappingSize:
        return "GET_HASH_MAPPING_SIZE";
    case kTypeSetHashMappingSize:
        return "SET_HASH_MAPPING_SIZE";
    case kTypeSetHashMapping:
        return "SET_HASH_MAPPING";
    case kTypeSetHashAlgorithm:
        return "SET_HASH_ALGORITHM";
    case kTypeGetGrefMappingSize:
        return "GET_GREF_MAPPING_SIZE";
    case kTypeAddGrefMapping:
        return "ADD_GREF_MAPPING";
    case kTypeDelGrefMapping:
        return "DEL_GREF_MAPPING";
    default:
        return "unknown";
    }
}

Handler::Handler(const HandlerConfig& config) noexcept : config_(config) {
    // A vif has at least one queue; a caller that says otherwise still gets a handler
    // whose mapping checks refuse every entry rather than one that divides by zero later.
    config_.num_queues = std::max<std::uint32_t>(config_.num_queues, 1);
}

Answer Handler::finish(Response rsp, CtrlError error) noexcept {
    if (rsp.status == kStatusNotSupported) ++counters_.not_supported;
    if (rsp.status == kStatusInvalidParameter) {
        ++counters_.invalid;
        if (find(error) != nullptr) ++counters_.errors[static_cast<std::size_t>(error) - 1];
    } else {
        error = CtrlError::none;
    }
    if (rsp.status != kStatusSuccess) rsp.data = 0;
    return Answer{rsp, error};
}

Plan Handler::answer(Plan p, std::uint32_t status, CtrlError error) noexcept {
    p.step = Step::answer;
    p.rsp.status = status;
    const Answer a = finish(p.rsp, error);
    p.rsp = a.rsp;
    p.error = a.error;
    return p;
}

void Handler::changed() noexcept {
    ++hash_version_;
    ++counters_.hash_changes;
}

Plan Handler::gref_plan(Plan p, const Request& req, Step step) noexcept {
    const std::uint32_t n = req.data[2];
    if (req.data[0] >= config_.num_queues)
        return answer(p, kStatusInvalidParameter, CtrlError::bad_queue);
    if (n == 0 || n > kMaxGrefsPerMessage)
        return answer(p, kStatusInvalidParameter, CtrlError::bad_gref_count);
    p.step = step;
    p.entries = n;
    p.copy = GuestCopy{req.data[1], 0, static_cast<std::uint16_t>(n * sizeof(Gref))};
    return p;
}

Plan Handler::begin(const Request& req) noexcept {
    ++counters_.requests;
    Plan p;
    p.rsp = Response{req.id, req.type, kStatusInvalidParameter, 0};
    switch (req.type) {
    case kTypeSetHashAlgorithm: { // xenvif_set_hash_alg
        const std::uint32_t alg = req.data[0];
        if (alg != hash_alg::kNone && alg != hash_alg::kToeplitz)
            return answer(p, kStatusInvalidParameter, CtrlError::bad_hash_algorithm);
        if (hash_.algorithm != alg) {
            hash_.algorithm = alg;
            changed();
        }
        return answer(p, kStatusSuccess);
    }
    case kTypeGetHashFlags: // xenvif_get_hash_flags
        if (hash_.algorithm == hash_alg::kNone) return answer(p, kStatusNotSupported);
        p.rsp.data = hash_flag::kAll;
        return answer(p, kStatusSuccess);
    case kTypeSetHashFlags: { // xenvif_set_hash_flags
        const std::uint32_t flags = req.data[0];
        if ((flags & ~hash_flag::kAll) != 0)
            return answer(p, kStatusInvalidParameter, CtrlError::bad_hash_flags);
        if (hash_.algorithm == hash_alg::kNone)
            return answer(p, kStatusInvalidParameter, CtrlError::hash_off);
        if (hash_.flags != flags) {
            hash_.flags = flags;
            changed();
        }
        return answer(p, kStatusSuccess);
    }
    case kTypeSetHashKey: { // xenvif_set_hash_key
        const std::uint32_t len = req.data[1];
        if (len > kMaxHashKeySize)
            return answer(p, kStatusInvalidParameter, CtrlError::hash_key_too_long);
        if (len == 0) { // netif.h: clears the key; nothing to copy
            if (hash_.key != decltype(hash_.key){}) {
                hash_.key = {};
                changed();
            }
            return answer(p, kStatusSuccess);
        }
        p.step = Step::copy_key;
        p.copy = GuestCopy{req.data[0], 0, static_cast<std::uint16_t>(len)};
        return p;
    }
    case kTypeGetHashMappingSize:
        p.rsp.data = kMaxHashMappingSize;
        return answer(p, kStatusSuccess);
    case kTypeSetHashMappingSize: { // xenvif_set_hash_mapping_size
        const std::uint32_t size = req.data[0];
        if (size > kMaxHashMappingSize)
            return answer(p, kStatusInvalidParameter, CtrlError::mapping_size_too_big);
        // netif.h: any previous table is invalidated and the new one is zero filled. 0 is
        // valid: a hash then selects its queue by modular arithmetic.
        if (hash_.mapping_size != size || hash_.mapping != decltype(hash_.mapping){}) {
            hash_.mapping_size = size;
            hash_.mapping = {};
            changed();
        }
        return answer(p, kStatusSuccess);
    }
    case kTypeSetHashMapping: { // xenvif_set_hash_mapping
        const std::uint32_t len = req.data[1];
        const std::uint32_t off = req.data[2];
        // XSA-270: off + len must stay inside the table. Written without the sum, which a
        // guest could wrap around 2^32 (off = 0xFFFFFFFF, len = 2).
        if (off > hash_.mapping_size || len > hash_.mapping_size - off)
            return answer(p, kStatusInvalidParameter, CtrlError::mapping_out_of_range);
        if (len == 0) return answer(p, kStatusSuccess);
        p.step = Step::copy_mapping;
        p.entries = len;
        p.offset = off;
        p.copy = GuestCopy{req.data[0], 0, static_cast<std::uint16_t>(len * sizeof(std::uint32_t))};
        return p;
    }
    case kTypeGetGrefMappingSize:
        if (!config_.static_grants) return answer(p, kStatusNotSupported);
        if (req.data[0] >= config_.num_queues)
            return answer(p, kStatusInvalidParameter, CtrlError::bad_queue);
        p.rsp.data = config_.gref_table_size;
        return answer(p, kStatusSuccess);
    case kTypeAddGrefMapping:
        if (!config_.static_grants) return answer(p, kStatusNotSupported);
        return gref_plan(p, req, Step::add_grefs);
    case kTypeDelGrefMapping:
        if (!config_.static_grants) return answer(p, kStatusNotSupported);
        return gref_plan(p, req, Step::del_grefs);
    default:
        return answer(p, kStatusNotSupported);
    }
}

Answer Handler::finish_hash(const Plan& plan, bool copied,
                            std::span<const std::byte> bytes) noexcept {
    Response rsp = plan.rsp;
    rsp.status = kStatusInvalidParameter;
    const bool key = plan.step == Step::copy_key;
    if (!key && plan.step != Step::copy_mapping) return finish(rsp, CtrlError::none);
    if (!copied || bytes.size() != plan.copy.len)
        return finish(rsp, key ? CtrlError::hash_key_unreadable : CtrlError::mapping_unreadable);
    if (key) {
        // The plan came from begin(): len is 1..40.
        decltype(hash_.key) k{};
        std::memcpy(k.data(), bytes.data(), std::min<std::size_t>(bytes.size(), k.size()));
        if (k != hash_.key) {
            hash_.key = k;
            changed();
        }
        rsp.status = kStatusSuccess;
        return finish(rsp, CtrlError::none);
    }
    // The table may have shrunk since begin() only if the server interleaved requests,
    // which it does not; checked again all the same, as the copy's destination.
    const std::uint32_t off = plan.offset;
    const std::uint32_t len = plan.entries;
    if (off > hash_.mapping_size || len > hash_.mapping_size - off ||
        bytes.size() != len * sizeof(std::uint32_t))
        return finish(rsp, CtrlError::mapping_out_of_range);
    std::array<std::uint32_t, kMaxHashMappingSize> entries{};
    std::memcpy(entries.data(), bytes.data(), bytes.size()); // little-endian, as the guest
    for (std::uint32_t i = 0; i < len; ++i)
        if (entries[i] >= config_.num_queues) return finish(rsp, CtrlError::mapping_bad_queue);
    if (!std::equal(entries.begin(), entries.begin() + len, hash_.mapping.begin() + off)) {
        std::copy(entries.begin(), entries.begin() + len, hash_.mapping.begin() + off);
        changed();
    }
    rsp.status = kStatusSuccess;
    return finish(rsp, CtrlError::none);
}

CtrlError Handler::check_gref_list(std::span<const Gref> list) noexcept {
    for (const Gref& g : list)
        if ((g.flags & ~kGrefReadonly) != 0) return CtrlError::bad_gref_flags;
    return CtrlError::none;
}

Answer Handler::finish_grefs(const Plan& plan, CtrlError error, std::uint32_t removed) noexcept {
    Response rsp = plan.rsp;
    if (plan.step != Step::add_grefs && plan.step != Step::del_grefs) {
        rsp.status = kStatusInvalidParameter;
        return finish(rsp, CtrlError::none);
    }
    // DEL answers how many entries went, also when not all did (docs/protocol.md).
    rsp.status = error == CtrlError::none ? kStatusSuccess : kStatusInvalidParameter;
    Answer out = finish(rsp, error);
    if (plan.step == Step::del_grefs && error != CtrlError::gref_list_unreadable)
        out.rsp.data = std::min(removed, plan.entries);
    return out;
}

} // namespace dpnb::netif::ctrl
