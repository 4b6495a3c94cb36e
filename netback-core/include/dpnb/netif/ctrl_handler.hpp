// The backend's half of the netif control ring as pure code: what each request a frontend
// puts on the ring asks for, whether it is valid, what it changes in the vif's hash state and
// what the response says (xen/io/netif.h "Control messages", docs/protocol.md). The server
// that owns the ring (pmd-glue's CtrlServer, the tests' reflector) copies requests out of the
// shared page, does the grant copies and the persistent-grant table operations a plan asks
// for, and puts the responses on the ring; it decides nothing itself.
//
// Two steps per request. begin() looks at the copied request alone: messages that need no
// guest memory are answered there, the others come back as a plan naming one grant copy out
// of the guest (offset 0, at most a page) and where to continue. finish_hash() takes the
// bytes that copy brought and applies the change all or nothing; the static-grant messages
// end in check_gref_list() and finish_grefs() around the server's table operation.
//
// Bounds are Linux netback's (hash.c, interface.c): key at most 40 octets, mapping table at
// most 128 entries, a SET_HASH_MAPPING inside the table (the XSA-270 check, without
// overflow), every mapping entry below the vif's queues, the four defined hash types,
// algorithm NONE or TOEPLITZ. A bad value is answered INVALID_PARAMETER and counted by
// reason; the vif keeps working. Every status is SUCCESS, NOT_SUPPORTED or
// INVALID_PARAMETER. Nothing here allocates, throws or asserts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dpnb/netif/ctrl_ring.hpp"
#include "dpnb/netif/flow_hash.hpp"

namespace dpnb::netif::ctrl {

// X(enumerator, counter name, help text): one table yields the enum, the metric's reason
// label and its help.
#define DPNB_NETIF_CTRL_ERRORS(X)                                                                  \
    X(bad_queue, "bad_queue", "a static-grant message names a queue the vif does not have")        \
    X(bad_gref_count, "bad_gref_count", "a static-grant list of 0 or more than 512 entries")       \
    X(gref_list_unreadable, "gref_list_unreadable",                                                \
      "the static-grant list could not be copied from (or back to) the guest")                     \
    X(bad_gref_flags, "bad_gref_flags", "a static-grant entry with an unknown flag bit")           \
    X(gref_refused, "gref_refused",                                                                \
      "the persistent-grant table refused an ADD or did not remove every entry of a DEL")          \
    X(bad_hash_algorithm, "bad_hash_algorithm", "an algorithm other than NONE or TOEPLITZ")        \
    X(bad_hash_flags, "bad_hash_flags", "hash type bits other than the four netif.h defines")      \
    X(hash_off, "hash_off", "SET_HASH_FLAGS while the algorithm is NONE")                          \
    X(hash_key_too_long, "hash_key_too_long", "a hash key longer than 40 octets")                  \
    X(hash_key_unreadable, "hash_key_unreadable", "the hash key could not be copied")              \
    X(mapping_size_too_big, "mapping_size_too_big", "a mapping table of more than 128 entries")    \
    X(mapping_out_of_range, "mapping_out_of_range",                                                \
      "SET_HASH_MAPPING's offset + length beyond the table size (XSA-270)")                        \
    X(mapping_bad_queue, "mapping_bad_queue", "a mapping entry names a queue the vif lacks")       \
    X(mapping_unreadable, "mapping_unreadable", "the mapping could not be copied")

enum class CtrlError : std::uint8_t {
    none = 0,
#define DPNB_X(name, counter, help) name,
    DPNB_NETIF_CTRL_ERRORS(DPNB_X)
#undef DPNB_X
};

struct CtrlErrorInfo {
    CtrlError error;
    const char* name; // metric reason label, e.g. "mapping_out_of_range"
    const char* help;
};

// Every reason in declaration order (CtrlError::none is not in the table).
std::span<const CtrlErrorInfo> ctrl_error_table() noexcept;
inline constexpr std::size_t kCtrlErrorCount = 14;
const char* to_string(CtrlError error) noexcept; // the reason's name; "none"
const char* help(CtrlError error) noexcept;

// The message's name in netif.h without the prefix ("SET_HASH_KEY"), "unknown" otherwise.
const char* type_name(std::uint16_t type) noexcept;

struct HandlerConfig {
    std::uint32_t num_queues = 1; // multi-queue-num-queues: 1..kMaxQueuesLimit
    // The frontend negotiated feature-static-grants: the server holds a persistent-grant
    // table, whose size GET_GREF_MAPPING_SIZE answers. Otherwise those messages are
    // NOT_SUPPORTED.
    bool static_grants = false;
    std::uint32_t gref_table_size = 0;
};

enum class Step : std::uint8_t {
    answer,       // the response is final
    copy_key,     // copy `copy` from the guest, then finish_hash()
    copy_mapping, // copy `copy` from the guest, then finish_hash()
    add_grefs,    // copy the list, check_gref_list(), add to the table, finish_grefs()
    del_grefs,    // copy the list, remove from the table, copy the list back, finish_grefs()
};

// One grant copy out of the guest: `len` bytes of grant `gref` from `offset`. offset + len
// never exceeds the page.
struct GuestCopy {
    GrantRef gref = 0;
    std::uint16_t offset = 0;
    std::uint16_t len = 0;
};

struct Plan {
    Step step = Step::answer;
    Response rsp{}; // final for Step::answer; the request's id and type otherwise
    CtrlError error = CtrlError::none; // why rsp is INVALID_PARAMETER
    GuestCopy copy{};
    std::uint32_t entries = 0; // gref lists: entries; SET_HASH_MAPPING: table entries
    std::uint32_t offset = 0;  // SET_HASH_MAPPING: first table entry written
};

// A final response and, when it is INVALID_PARAMETER, why.
struct Answer {
    Response rsp{};
    CtrlError error = CtrlError::none;
};

// Where a list or key lands: large enough for the largest copy a plan asks for.
inline constexpr std::size_t kCopyBufferSize = kMaxGrefsPerMessage * sizeof(Gref);
static_assert(kCopyBufferSize >= kMaxHashMappingSize * sizeof(std::uint32_t));
static_assert(kCopyBufferSize >= kMaxHashKeySize && kCopyBufferSize <= 4096);

struct CtrlCounters {
    std::uint64_t requests = 0;
    std::uint64_t not_supported = 0;
    std::uint64_t invalid = 0;      // answered INVALID_PARAMETER, by reason in `errors`
    std::uint64_t hash_changes = 0; // accepted messages that changed the hash state
    std::array<std::uint64_t, kCtrlErrorCount> errors{}; // ctrl_error_table() order
};

class Handler {
public:
    explicit Handler(const HandlerConfig& config) noexcept;

    // Looks at one copied request. Step::answer responses are final (and the state change,
    // if any, applied); the other steps continue in finish_hash() or finish_grefs().
    Plan begin(const Request& req) noexcept;

    // Ends SET_HASH_KEY or SET_HASH_MAPPING: `copied` says whether the grant copy worked
    // and `bytes` is what it brought (plan.copy.len of them). Applies the change only if
    // everything is valid.
    Answer finish_hash(const Plan& plan, bool copied, std::span<const std::byte> bytes) noexcept;

    // ADD_GREF_MAPPING's list, copied: CtrlError::none, or why the message is refused.
    static CtrlError check_gref_list(std::span<const Gref> list) noexcept;

    // Ends a static-grant message. `error` is the server's verdict (none: the table took
    // every entry); `removed` is DEL's count, answered in the response's data.
    Answer finish_grefs(const Plan& plan, CtrlError error, std::uint32_t removed) noexcept;

    const HashConfig& hash() const noexcept { return hash_; }
    // Bumped by every accepted change of hash(): the server hands the state to the data
    // path when it moved.
    std::uint64_t hash_version() const noexcept { return hash_version_; }
    const HandlerConfig& config() const noexcept { return config_; }
    const CtrlCounters& counters() const noexcept { return counters_; }

private:
    Plan answer(Plan p, std::uint32_t status, CtrlError error = CtrlError::none) noexcept;
    Answer finish(Response rsp, CtrlError error) noexcept;
    void changed() noexcept;
    Plan gref_plan(Plan p, const Request& req, Step step) noexcept;

    HandlerConfig config_;
    HashConfig hash_;
    std::uint64_t hash_version_ = 0;
    CtrlCounters counters_;
};

} // namespace dpnb::netif::ctrl
