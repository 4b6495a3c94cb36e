// The netif control ring on the wire (xen/io/netif.h: struct xen_netif_ctrl_request,
// xen_netif_ctrl_response, xen_netif_gref, the request types and statuses), as ring views of
// ring.hpp, for the hash and static-grant messages of docs/protocol.md: the test netfront is
// the frontend side; the daemon's engine (pmd-glue/src/ctrl_server) and the tests' reflector
// the backend side, both answering through ctrl_handler.hpp. Byte for byte as Xen's header
// (tests/guest compares them).
#pragma once

#include <cstddef>
#include <cstdint>

#include "dpnb/netif/ring.hpp"

namespace dpnb::netif::ctrl {

struct Request { // xen_netif_ctrl_request
    std::uint16_t id;
    std::uint16_t type;
    std::uint32_t data[3];
};
static_assert(sizeof(Request) == 16);

struct Response { // xen_netif_ctrl_response
    std::uint16_t id;
    std::uint16_t type;
    std::uint32_t status;
    std::uint32_t data;
};
static_assert(sizeof(Response) == 12);

struct Gref { // xen_netif_gref
    std::uint32_t ref;
    std::uint16_t flags;
    std::uint16_t status;
};
static_assert(sizeof(Gref) == 8);

inline constexpr std::uint16_t kTypeInvalid = 0; // XEN_NETIF_CTRL_TYPE_*
inline constexpr std::uint16_t kTypeGetHashFlags = 1;
inline constexpr std::uint16_t kTypeSetHashFlags = 2;
inline constexpr std::uint16_t kTypeSetHashKey = 3;
inline constexpr std::uint16_t kTypeGetHashMappingSize = 4;
inline constexpr std::uint16_t kTypeSetHashMappingSize = 5;
inline constexpr std::uint16_t kTypeSetHashMapping = 6;
inline constexpr std::uint16_t kTypeSetHashAlgorithm = 7;
inline constexpr std::uint16_t kTypeGetGrefMappingSize = 8;
inline constexpr std::uint16_t kTypeAddGrefMapping = 9;
inline constexpr std::uint16_t kTypeDelGrefMapping = 10;
inline constexpr std::uint32_t kStatusSuccess = 0; // XEN_NETIF_CTRL_STATUS_*
inline constexpr std::uint32_t kStatusNotSupported = 1;
inline constexpr std::uint32_t kStatusInvalidParameter = 2;
inline constexpr std::uint16_t kGrefReadonly = 1U << 0; // XEN_NETIF_CTRLF_GREF_readonly
// Entries of xen_netif_gref in one list page.
inline constexpr std::uint32_t kMaxGrefsPerMessage = 4096 / sizeof(Gref);

struct RingProto {
    using Request = ctrl::Request;
    using Response = ctrl::Response;
    // DEFINE_RING_TYPES sizes entries by the union of request and response.
    static constexpr std::size_t kEntrySize = sizeof(Request);
    static constexpr bool kExtrasInRequests = false;
};

using FrontRing = netif::FrontRing<RingProto>;
using BackRing = netif::BackRing<RingProto>;
static_assert(FrontRing::kSize == 128);

} // namespace dpnb::netif::ctrl
