// The control ring's request handling (ctrl_handler.hpp), message by message, against
// netif.h and Linux netback's hash.c: statuses, response data, what each message changes,
// that a refused message changes nothing, and the counters.
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "dpnb/netif/ctrl_handler.hpp"

namespace nf = dpnb::netif;
namespace ctrl = dpnb::netif::ctrl;
using ctrl::CtrlError;
using ctrl::Step;

namespace {

ctrl::Request req(std::uint16_t type, std::uint32_t d0 = 0, std::uint32_t d1 = 0,
                  std::uint32_t d2 = 0, std::uint16_t id = 7) {
    return ctrl::Request{id, type, {d0, d1, d2}};
}

std::vector<std::byte> words(std::initializer_list<std::uint32_t> v) {
    std::vector<std::byte> out(v.size() * 4);
    std::size_t i = 0;
    for (std::uint32_t w : v) {
        std::memcpy(out.data() + 4 * i++, &w, 4);
    }
    return out;
}

// Answers a message that needs no copy.
ctrl::Response simple(ctrl::Handler& h, const ctrl::Request& r) {
    const ctrl::Plan p = h.begin(r);
    EXPECT_EQ(p.step, Step::answer) << ctrl::type_name(r.type);
    return p.rsp;
}

// Runs a message that copies `bytes` from the guest.
ctrl::Response with_copy(ctrl::Handler& h, const ctrl::Request& r,
                         const std::vector<std::byte>& bytes, bool copied = true) {
    const ctrl::Plan p = h.begin(r);
    if (p.step == Step::answer) return p.rsp;
    EXPECT_TRUE(p.step == Step::copy_key || p.step == Step::copy_mapping);
    EXPECT_LE(p.copy.offset + p.copy.len, 4096u);
    std::vector<std::byte> got = bytes;
    got.resize(p.copy.len);
    return h.finish_hash(p, copied, got).rsp;
}

ctrl::Handler toeplitz(std::uint32_t queues = 4) {
    ctrl::Handler h(ctrl::HandlerConfig{queues, false, 0});
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashAlgorithm, nf::hash_alg::kToeplitz)).status,
              ctrl::kStatusSuccess);
    return h;
}

} // namespace

TEST(CtrlHandler, ErrorTableIsInEnumOrderWithUniqueNames) {
    const auto t = ctrl::ctrl_error_table();
    ASSERT_EQ(t.size(), ctrl::kCtrlErrorCount);
    for (std::size_t i = 0; i < t.size(); ++i) {
        EXPECT_EQ(static_cast<std::size_t>(t[i].error), i + 1);
        EXPECT_STREQ(ctrl::to_string(t[i].error), t[i].name);
        for (std::size_t j = 0; j < i; ++j)
            EXPECT_STRNE(t[i].name, t[j].name);
    }
    EXPECT_STREQ(ctrl::to_string(CtrlError::none), "none");
}

TEST(CtrlHandler, ResponsesEchoIdAndType) {
    ctrl::Handler h(ctrl::HandlerConfig{});
    const ctrl::Response r = simple(h, req(99, 1, 2, 3, 0xBEEF));
    EXPECT_EQ(r.id, 0xBEEF);
    EXPECT_EQ(r.type, 99);
    EXPECT_EQ(r.status, ctrl::kStatusNotSupported);
    EXPECT_EQ(r.data, 0u);
    EXPECT_EQ(simple(h, req(ctrl::kTypeInvalid)).status, ctrl::kStatusNotSupported);
    EXPECT_EQ(h.counters().requests, 2u);
    EXPECT_EQ(h.counters().not_supported, 2u);
}

TEST(CtrlHandler, AlgorithmNoneOrToeplitz) {
    ctrl::Handler h(ctrl::HandlerConfig{});
    EXPECT_EQ(h.hash().algorithm, nf::hash_alg::kNone);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashAlgorithm, 2)).status, ctrl::kStatusInvalidParameter);
    EXPECT_EQ(h.hash_version(), 0u);
    EXPECT_EQ(h.counters().errors[static_cast<int>(CtrlError::bad_hash_algorithm) - 1], 1u);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashAlgorithm, nf::hash_alg::kToeplitz)).status,
              ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().algorithm, nf::hash_alg::kToeplitz);
    EXPECT_EQ(h.hash_version(), 1u);
    // Setting what is set already changes nothing.
    (void)simple(h, req(ctrl::kTypeSetHashAlgorithm, nf::hash_alg::kToeplitz));
    EXPECT_EQ(h.hash_version(), 1u);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashAlgorithm, nf::hash_alg::kNone)).status,
              ctrl::kStatusSuccess);
    EXPECT_FALSE(h.hash().active());
}

TEST(CtrlHandler, FlagsNeedAnAlgorithmAndOnlyTheFourTypes) {
    ctrl::Handler h(ctrl::HandlerConfig{});
    // Linux: GET is NOT_SUPPORTED and SET INVALID_PARAMETER while the algorithm is NONE.
    EXPECT_EQ(simple(h, req(ctrl::kTypeGetHashFlags)).status, ctrl::kStatusNotSupported);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashFlags, nf::hash_flag::kIpv4)).status,
              ctrl::kStatusInvalidParameter);
    EXPECT_EQ(h.counters().errors[static_cast<int>(CtrlError::hash_off) - 1], 1u);
    h = toeplitz();
    const ctrl::Response get = simple(h, req(ctrl::kTypeGetHashFlags));
    EXPECT_EQ(get.status, ctrl::kStatusSuccess);
    EXPECT_EQ(get.data, nf::hash_flag::kAll);
    for (std::uint32_t bad : {0x10u, 0x80000000u, nf::hash_flag::kAll | 0x20u}) {
        EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashFlags, bad)).status,
                  ctrl::kStatusInvalidParameter);
        EXPECT_EQ(h.hash().flags, 0u);
    }
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashFlags, nf::hash_flag::kIpv4Tcp)).status,
              ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().flags, nf::hash_flag::kIpv4Tcp);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashFlags, 0)).status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().flags, 0u);
}

TEST(CtrlHandler, KeyIsCopiedZeroPaddedAndBoundedBy40Octets) {
    ctrl::Handler h = toeplitz();
    std::vector<std::byte> key(40);
    for (std::size_t i = 0; i < key.size(); ++i)
        key[i] = static_cast<std::byte>(i + 1);
    ctrl::Plan p = h.begin(req(ctrl::kTypeSetHashKey, 55, 40));
    ASSERT_EQ(p.step, Step::copy_key);
    EXPECT_EQ(p.copy.gref, 55u);
    EXPECT_EQ(p.copy.offset, 0u);
    EXPECT_EQ(p.copy.len, 40u);
    EXPECT_EQ(h.finish_hash(p, true, key).rsp.status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().key[39], 40);
    // A shorter key clears the octets past it.
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashKey, 55, 3), key).status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().key[2], 3);
    EXPECT_EQ(h.hash().key[3], 0);
    // 41 octets: refused before any copy.
    p = h.begin(req(ctrl::kTypeSetHashKey, 55, 41));
    EXPECT_EQ(p.step, Step::answer);
    EXPECT_EQ(p.rsp.status, ctrl::kStatusInvalidParameter);
    EXPECT_EQ(p.error, CtrlError::hash_key_too_long);
    EXPECT_EQ(h.begin(req(ctrl::kTypeSetHashKey, 55, 0xFFFFFFFF)).error,
              CtrlError::hash_key_too_long);
    // A copy that fails changes nothing.
    const auto before = h.hash();
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashKey, 55, 8), key, false).status,
              ctrl::kStatusInvalidParameter);
    EXPECT_EQ(h.hash(), before);
    EXPECT_EQ(h.counters().errors[static_cast<int>(CtrlError::hash_key_unreadable) - 1], 1u);
    // Size 0: the key is cleared without a copy.
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashKey, 0, 0)).status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().key, (std::array<std::uint8_t, 40>{}));
}

TEST(CtrlHandler, MappingSizeUpTo128AndZeroMeansModular) {
    ctrl::Handler h = toeplitz();
    const ctrl::Response get = simple(h, req(ctrl::kTypeGetHashMappingSize));
    EXPECT_EQ(get.status, ctrl::kStatusSuccess);
    EXPECT_EQ(get.data, nf::kMaxHashMappingSize);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashMappingSize, 129)).status,
              ctrl::kStatusInvalidParameter);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashMappingSize, 0xFFFFFFFF)).status,
              ctrl::kStatusInvalidParameter);
    EXPECT_EQ(h.hash().mapping_size, 0u);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashMappingSize, 128)).status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().mapping_size, 128u);
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashMapping, 9, 2, 10), words({3, 1})).status,
              ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().mapping[11], 1u);
    // A new size invalidates the table: zero filled.
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashMappingSize, 16)).status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().mapping[10], 0u);
    EXPECT_EQ(h.hash().mapping[11], 0u);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashMappingSize, 0)).status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().mapping_size, 0u);
}

TEST(CtrlHandler, MappingWritesInsideTheTableOnly) {
    ctrl::Handler h = toeplitz(4);
    ASSERT_EQ(simple(h, req(ctrl::kTypeSetHashMappingSize, 8)).status, ctrl::kStatusSuccess);
    // The whole table.
    ctrl::Plan p = h.begin(req(ctrl::kTypeSetHashMapping, 21, 8, 0));
    ASSERT_EQ(p.step, Step::copy_mapping);
    EXPECT_EQ(p.copy.gref, 21u);
    EXPECT_EQ(p.copy.len, 32u);
    EXPECT_EQ(h.finish_hash(p, true, words({0, 1, 2, 3, 3, 2, 1, 0})).rsp.status,
              ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().mapping[4], 3u);
    // The last entry alone, and an empty write at the end.
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashMapping, 21, 1, 7), words({2})).status,
              ctrl::kStatusSuccess);
    EXPECT_EQ(h.hash().mapping[7], 2u);
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashMapping, 21, 0, 8)).status, ctrl::kStatusSuccess);
    // One past the end, and the wrapping sums XSA-270 was about.
    const auto before = h.hash();
    for (auto [len, off] : {std::pair<std::uint32_t, std::uint32_t>{1, 8},
                            {2, 7},
                            {9, 0},
                            {0, 9},
                            {2, 0xFFFFFFFF},
                            {0xFFFFFFFF, 2},
                            {0x40000001, 0xC0000000}}) {
        const ctrl::Plan bad = h.begin(req(ctrl::kTypeSetHashMapping, 21, len, off));
        EXPECT_EQ(bad.step, Step::answer) << len << " at " << off;
        EXPECT_EQ(bad.rsp.status, ctrl::kStatusInvalidParameter);
        EXPECT_EQ(bad.error, CtrlError::mapping_out_of_range);
    }
    // An entry naming queue 4 of a 4-queue vif: nothing is written, not even the good ones.
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashMapping, 21, 3, 0), words({1, 1, 4})).status,
              ctrl::kStatusInvalidParameter);
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashMapping, 21, 1, 0), words({0xFFFFFFFF})).status,
              ctrl::kStatusInvalidParameter);
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashMapping, 21, 2, 0), words({1, 1}), false).status,
              ctrl::kStatusInvalidParameter);
    EXPECT_EQ(h.hash(), before);
    const auto& e = h.counters().errors;
    EXPECT_EQ(e[static_cast<int>(CtrlError::mapping_out_of_range) - 1], 7u);
    EXPECT_EQ(e[static_cast<int>(CtrlError::mapping_bad_queue) - 1], 2u);
    EXPECT_EQ(e[static_cast<int>(CtrlError::mapping_unreadable) - 1], 1u);
    EXPECT_EQ(h.counters().invalid, 10u);
    // Without a table, any entry is out of range.
    ctrl::Handler fresh = toeplitz();
    EXPECT_EQ(fresh.begin(req(ctrl::kTypeSetHashMapping, 21, 1, 0)).error,
              CtrlError::mapping_out_of_range);
}

TEST(CtrlHandler, HashMessagesDoNotNeedAnAlgorithmExceptFlags) {
    // Linux accepts key and mapping messages whatever the algorithm (the frontend may set
    // them before choosing it).
    ctrl::Handler h(ctrl::HandlerConfig{2, false, 0});
    EXPECT_EQ(simple(h, req(ctrl::kTypeSetHashMappingSize, 2)).status, ctrl::kStatusSuccess);
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashMapping, 1, 2, 0), words({1, 0})).status,
              ctrl::kStatusSuccess);
    EXPECT_EQ(with_copy(h, req(ctrl::kTypeSetHashKey, 1, 4), words({0x01020304})).status,
              ctrl::kStatusSuccess);
    EXPECT_FALSE(h.hash().active());
}

TEST(CtrlHandler, StaticGrantMessagesOnlyWhenNegotiated) {
    ctrl::Handler off(ctrl::HandlerConfig{2, false, 0});
    for (std::uint16_t t :
         {ctrl::kTypeGetGrefMappingSize, ctrl::kTypeAddGrefMapping, ctrl::kTypeDelGrefMapping})
        EXPECT_EQ(simple(off, req(t, 0, 5, 1)).status, ctrl::kStatusNotSupported);

    ctrl::Handler h(ctrl::HandlerConfig{2, true, 1024});
    ctrl::Response r = simple(h, req(ctrl::kTypeGetGrefMappingSize, 1));
    EXPECT_EQ(r.status, ctrl::kStatusSuccess);
    EXPECT_EQ(r.data, 1024u);
    r = simple(h, req(ctrl::kTypeGetGrefMappingSize, 2));
    EXPECT_EQ(r.status, ctrl::kStatusInvalidParameter);
    EXPECT_EQ(r.data, 0u);

    ctrl::Plan p = h.begin(req(ctrl::kTypeAddGrefMapping, 1, 77, 512));
    ASSERT_EQ(p.step, Step::add_grefs);
    EXPECT_EQ(p.copy.gref, 77u);
    EXPECT_EQ(p.copy.len, 4096u);
    EXPECT_EQ(p.entries, 512u);
    EXPECT_EQ(h.finish_grefs(p, CtrlError::none, 0).rsp.status, ctrl::kStatusSuccess);
    EXPECT_EQ(h.begin(req(ctrl::kTypeAddGrefMapping, 2, 77, 1)).error, CtrlError::bad_queue);
    EXPECT_EQ(h.begin(req(ctrl::kTypeAddGrefMapping, 0, 77, 0)).error, CtrlError::bad_gref_count);
    EXPECT_EQ(h.begin(req(ctrl::kTypeDelGrefMapping, 0, 77, 513)).error, CtrlError::bad_gref_count);

    // DEL answers the entries removed, also when it is refused because some stayed.
    p = h.begin(req(ctrl::kTypeDelGrefMapping, 0, 77, 3));
    ASSERT_EQ(p.step, Step::del_grefs);
    r = h.finish_grefs(p, CtrlError::none, 3).rsp;
    EXPECT_EQ(r.status, ctrl::kStatusSuccess);
    EXPECT_EQ(r.data, 3u);
    const ctrl::Answer refused = h.finish_grefs(p, CtrlError::gref_refused, 2);
    EXPECT_EQ(refused.error, CtrlError::gref_refused);
    r = refused.rsp;
    EXPECT_EQ(r.status, ctrl::kStatusInvalidParameter);
    EXPECT_EQ(r.data, 2u);
    r = h.finish_grefs(p, CtrlError::gref_list_unreadable, 2).rsp;
    EXPECT_EQ(r.data, 0u);

    const ctrl::Gref good[] = {{5, 0, 0}, {6, ctrl::kGrefReadonly, 0}};
    const ctrl::Gref bad[] = {{5, 0, 0}, {6, 0x2, 0}};
    EXPECT_EQ(ctrl::Handler::check_gref_list(good), CtrlError::none);
    EXPECT_EQ(ctrl::Handler::check_gref_list(bad), CtrlError::bad_gref_flags);
    // None of this touched the hash.
    EXPECT_EQ(h.hash_version(), 0u);
}
