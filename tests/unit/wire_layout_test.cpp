// Compares dpnetback's wire types with Xen's own public headers (io/netif.h, io/ring.h,
// grant_table.h): sizes, field offsets, flag values, status codes and ring geometry; and the
// control ring's hash constants and Toeplitz hash with netif.h's own.
#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" {
#include <xen/grant_table.h>
#define XEN_NETIF_DEFINE_TOEPLITZ // netif.h's reference xen_netif_toeplitz_hash
#include <xen/io/netif.h>
}

#include <gtest/gtest.h>

#include "dpnb/netif/ctrl_ring.hpp"
#include "dpnb/netif/flow_hash.hpp"
#include "dpnb/netif/wire.hpp"

namespace nf = dpnb::netif;

#define EXPECT_SAME_FIELD(ours, theirs, field)                                                     \
    do {                                                                                           \
        EXPECT_EQ(offsetof(ours, field), offsetof(theirs, field)) << #field;                       \
        EXPECT_EQ(sizeof(ours::field), sizeof(theirs::field)) << #field;                           \
    } while (0)

TEST(WireLayout, TxRequestMatchesNetifH) {
    EXPECT_EQ(sizeof(nf::TxRequest), sizeof(netif_tx_request_t));
    EXPECT_SAME_FIELD(nf::TxRequest, netif_tx_request_t, gref);
    EXPECT_SAME_FIELD(nf::TxRequest, netif_tx_request_t, offset);
    EXPECT_SAME_FIELD(nf::TxRequest, netif_tx_request_t, flags);
    EXPECT_SAME_FIELD(nf::TxRequest, netif_tx_request_t, id);
    EXPECT_SAME_FIELD(nf::TxRequest, netif_tx_request_t, size);
}

TEST(WireLayout, TxResponseMatchesNetifH) {
    EXPECT_EQ(sizeof(nf::TxResponse), sizeof(netif_tx_response_t));
    EXPECT_SAME_FIELD(nf::TxResponse, netif_tx_response_t, id);
    EXPECT_SAME_FIELD(nf::TxResponse, netif_tx_response_t, status);
}

TEST(WireLayout, RxRequestAndResponseMatchNetifH) {
    EXPECT_EQ(sizeof(nf::RxRequest), sizeof(netif_rx_request_t));
    EXPECT_SAME_FIELD(nf::RxRequest, netif_rx_request_t, id);
    EXPECT_SAME_FIELD(nf::RxRequest, netif_rx_request_t, gref);
    EXPECT_EQ(sizeof(nf::RxResponse), sizeof(netif_rx_response_t));
    EXPECT_SAME_FIELD(nf::RxResponse, netif_rx_response_t, id);
    EXPECT_SAME_FIELD(nf::RxResponse, netif_rx_response_t, offset);
    EXPECT_SAME_FIELD(nf::RxResponse, netif_rx_response_t, flags);
    EXPECT_SAME_FIELD(nf::RxResponse, netif_rx_response_t, status);
}

TEST(WireLayout, ExtraInfoMatchesNetifH) {
    EXPECT_EQ(sizeof(nf::ExtraInfo), sizeof(netif_extra_info_t));
    EXPECT_SAME_FIELD(nf::ExtraInfo, netif_extra_info_t, type);
    EXPECT_SAME_FIELD(nf::ExtraInfo, netif_extra_info_t, flags);
    EXPECT_EQ(offsetof(nf::ExtraInfo, u.gso.size), offsetof(netif_extra_info_t, u.gso.size));
    EXPECT_EQ(offsetof(nf::ExtraInfo, u.gso.type), offsetof(netif_extra_info_t, u.gso.type));
    EXPECT_EQ(offsetof(nf::ExtraInfo, u.gso.features),
              offsetof(netif_extra_info_t, u.gso.features));
    EXPECT_EQ(offsetof(nf::ExtraInfo, u.mcast.addr), offsetof(netif_extra_info_t, u.mcast.addr));
    EXPECT_EQ(offsetof(nf::ExtraInfo, u.hash.type), offsetof(netif_extra_info_t, u.hash.type));
    EXPECT_EQ(offsetof(nf::ExtraInfo, u.hash.algorithm),
              offsetof(netif_extra_info_t, u.hash.algorithm));
    EXPECT_EQ(offsetof(nf::ExtraInfo, u.hash.value), offsetof(netif_extra_info_t, u.hash.value));
}

TEST(WireLayout, FlagsAndConstantsMatchNetifH) {
    EXPECT_EQ(nf::txf::kCsumBlank, NETTXF_csum_blank);
    EXPECT_EQ(nf::txf::kDataValidated, NETTXF_data_validated);
    EXPECT_EQ(nf::txf::kMoreData, NETTXF_more_data);
    EXPECT_EQ(nf::txf::kExtraInfo, NETTXF_extra_info);
    EXPECT_EQ(nf::rxf::kDataValidated, NETRXF_data_validated);
    EXPECT_EQ(nf::rxf::kCsumBlank, NETRXF_csum_blank);
    EXPECT_EQ(nf::rxf::kMoreData, NETRXF_more_data);
    EXPECT_EQ(nf::rxf::kExtraInfo, NETRXF_extra_info);
    EXPECT_EQ(nf::rxf::kGsoPrefix, NETRXF_gso_prefix);
    EXPECT_EQ(nf::extra::kNone, XEN_NETIF_EXTRA_TYPE_NONE);
    EXPECT_EQ(nf::extra::kGso, XEN_NETIF_EXTRA_TYPE_GSO);
    EXPECT_EQ(nf::extra::kMcastAdd, XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
    EXPECT_EQ(nf::extra::kMcastDel, XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
    EXPECT_EQ(nf::extra::kHash, XEN_NETIF_EXTRA_TYPE_HASH);
    EXPECT_EQ(nf::extra::kTypeMax, XEN_NETIF_EXTRA_TYPE_MAX);
    EXPECT_EQ(nf::extra::kFlagMore, XEN_NETIF_EXTRA_FLAG_MORE);
    EXPECT_EQ(nf::gso::kNone, XEN_NETIF_GSO_TYPE_NONE);
    EXPECT_EQ(nf::gso::kTcpV4, XEN_NETIF_GSO_TYPE_TCPV4);
    EXPECT_EQ(nf::gso::kTcpV6, XEN_NETIF_GSO_TYPE_TCPV6);
    EXPECT_EQ(nf::hash_type::kIpv4, _XEN_NETIF_CTRL_HASH_TYPE_IPV4);
    EXPECT_EQ(nf::hash_type::kIpv6Tcp, _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
    EXPECT_EQ(nf::rsp::kDropped, NETIF_RSP_DROPPED);
    EXPECT_EQ(nf::rsp::kError, NETIF_RSP_ERROR);
    EXPECT_EQ(nf::rsp::kOkay, NETIF_RSP_OKAY);
    EXPECT_EQ(nf::rsp::kNull, NETIF_RSP_NULL);
    EXPECT_EQ(nf::kLegacyMaxSlots, XEN_NETIF_NR_SLOTS_MIN);
    EXPECT_EQ(nf::kMaxTxSize, XEN_NETIF_MAX_TX_SIZE);
}

TEST(WireLayout, RingGeometryMatchesRingH) {
    EXPECT_EQ(nf::kTxRingSize, __CONST_RING_SIZE(netif_tx, 4096));
    EXPECT_EQ(nf::kRxRingSize, __CONST_RING_SIZE(netif_rx, 4096));
    EXPECT_EQ(sizeof(nf::SharedRingHeader), offsetof(struct netif_tx_sring, ring));
    EXPECT_EQ(sizeof(nf::SharedRingHeader), offsetof(struct netif_rx_sring, ring));
    EXPECT_EQ(offsetof(nf::SharedRingHeader, req_prod), offsetof(struct netif_tx_sring, req_prod));
    EXPECT_EQ(offsetof(nf::SharedRingHeader, req_event),
              offsetof(struct netif_tx_sring, req_event));
    EXPECT_EQ(offsetof(nf::SharedRingHeader, rsp_prod), offsetof(struct netif_tx_sring, rsp_prod));
    EXPECT_EQ(offsetof(nf::SharedRingHeader, rsp_event),
              offsetof(struct netif_tx_sring, rsp_event));
    EXPECT_EQ(nf::kTxEntrySize, sizeof(union netif_tx_sring_entry));
    EXPECT_EQ(nf::kRxEntrySize, sizeof(union netif_rx_sring_entry));
    for (std::uint32_t x : {1u, 2u, 3u, 5u, 255u, 256u, 257u, 336u, 504u, 65535u}) {
        EXPECT_EQ(nf::round_down_pow2(x), __RD32(x)) << x;
    }
}

TEST(WireLayout, GrantEntryMatchesGrantTableH) {
    EXPECT_EQ(sizeof(nf::GrantEntryV1), sizeof(grant_entry_v1_t));
    EXPECT_SAME_FIELD(nf::GrantEntryV1, grant_entry_v1_t, flags);
    EXPECT_SAME_FIELD(nf::GrantEntryV1, grant_entry_v1_t, domid);
    EXPECT_SAME_FIELD(nf::GrantEntryV1, grant_entry_v1_t, frame);
    EXPECT_EQ(nf::gtf::kPermitAccess, GTF_permit_access);
    EXPECT_EQ(nf::gtf::kTransitive, GTF_transitive);
    EXPECT_EQ(nf::gtf::kReadonly, GTF_readonly);
    EXPECT_EQ(nf::gtf::kReading, GTF_reading);
    EXPECT_EQ(nf::gtf::kWriting, GTF_writing);
    EXPECT_EQ(nf::gtf::kSubPage, GTF_sub_page);
    EXPECT_EQ(nf::gntst::kOkay, GNTST_okay);
    EXPECT_EQ(nf::gntst::kBadDomain, GNTST_bad_domain);
    EXPECT_EQ(nf::gntst::kBadGntref, GNTST_bad_gntref);
    EXPECT_EQ(nf::gntst::kPermissionDenied, GNTST_permission_denied);
    EXPECT_EQ(nf::gntst::kBadCopyArg, GNTST_bad_copy_arg);
    EXPECT_EQ(nf::gntst::kEagain, GNTST_eagain);
    EXPECT_EQ(nf::gntst::kNoSpace, GNTST_no_space);
}

TEST(WireLayout, ControlRingHashConstantsMatchNetifH) {
    namespace ctrl = nf::ctrl;
    EXPECT_EQ(ctrl::kTypeInvalid, XEN_NETIF_CTRL_TYPE_INVALID);
    EXPECT_EQ(ctrl::kTypeGetHashFlags, XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS);
    EXPECT_EQ(ctrl::kTypeSetHashFlags, XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS);
    EXPECT_EQ(ctrl::kTypeSetHashKey, XEN_NETIF_CTRL_TYPE_SET_HASH_KEY);
    EXPECT_EQ(ctrl::kTypeGetHashMappingSize, XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE);
    EXPECT_EQ(ctrl::kTypeSetHashMappingSize, XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE);
    EXPECT_EQ(ctrl::kTypeSetHashMapping, XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING);
    EXPECT_EQ(ctrl::kTypeSetHashAlgorithm, XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM);
    EXPECT_EQ(ctrl::kStatusSuccess, XEN_NETIF_CTRL_STATUS_SUCCESS);
    EXPECT_EQ(ctrl::kStatusNotSupported, XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(nf::hash_alg::kNone, XEN_NETIF_CTRL_HASH_ALGORITHM_NONE);
    EXPECT_EQ(nf::hash_alg::kToeplitz, XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ);
    EXPECT_EQ(nf::hash_flag::kIpv4, XEN_NETIF_CTRL_HASH_TYPE_IPV4);
    EXPECT_EQ(nf::hash_flag::kIpv4Tcp, XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
    EXPECT_EQ(nf::hash_flag::kIpv6, XEN_NETIF_CTRL_HASH_TYPE_IPV6);
    EXPECT_EQ(nf::hash_flag::kIpv6Tcp, XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
    EXPECT_EQ(nf::hash_type::kIpv4Tcp, _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
    EXPECT_EQ(nf::extra::kHash, XEN_NETIF_EXTRA_TYPE_HASH);
}

TEST(WireLayout, ToeplitzAgreesWithNetifHsReference) {
    std::uint32_t seed = 12345;
    auto next = [&] {
        seed = seed * 1103515245U + 12345U;
        return static_cast<std::uint8_t>(seed >> 16);
    };
    for (unsigned keylen : {0U, 1U, 7U, 8U, 9U, 39U, 40U}) {
        for (unsigned len : {0U, 1U, 8U, 12U, 32U, 36U}) {
            std::uint8_t key[40];
            std::uint8_t data[36];
            for (auto& b : key)
                b = next();
            for (auto& b : data)
                b = next();
            EXPECT_EQ(nf::toeplitz_hash(std::span(key, keylen), std::span(data, len)),
                      xen_netif_toeplitz_hash(key, keylen, data, len))
                << keylen << "/" << len;
        }
    }
}
