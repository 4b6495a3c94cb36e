// The Xen PV network protocol on the wire: request, response and extra-info slots, flag
// bits, status codes and shared-ring geometry, laid out byte for byte as Xen's public
// io/netif.h, io/ring.h and grant_table.h define them. This header is the contract with
// every frontend; it has no dependency on Xen's headers (tests/unit/wire_layout_test.cpp
// compares it against them).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpnb::netif {

using GrantRef = std::uint32_t; // grant_ref_t
using RingIdx = std::uint32_t;  // RING_IDX: free-running, wraps at 2^32
using DomId = std::uint16_t;    // domid_t

inline constexpr std::size_t kPageSize = 4096; // XEN_PAGE_SIZE
inline constexpr std::uint16_t kEthHeaderLen = 14;

// XEN_NETIF_NR_SLOTS_MIN: every backend must accept packets of up to this many slots.
inline constexpr unsigned kLegacyMaxSlots = 18;
// XEN_NETIF_MAX_TX_SIZE: the size field of the first TX slot is 16 bits.
inline constexpr unsigned kMaxTxSize = 0xFFFF;

// --- guest transmit (frontend -> backend) -------------------------------------------------

namespace txf {                                          // NETTXF_*
inline constexpr std::uint16_t kCsumBlank = 1U << 0;     // protocol checksum field is blank
inline constexpr std::uint16_t kDataValidated = 1U << 1; // checksum already validated
inline constexpr std::uint16_t kMoreData = 1U << 2;      // another data slot follows
inline constexpr std::uint16_t kExtraInfo = 1U << 3;     // an extra-info slot follows
} // namespace txf

struct TxRequest { // netif_tx_request_t
    GrantRef gref;
    std::uint16_t offset;
    std::uint16_t flags;
    std::uint16_t id;
    std::uint16_t size; // first slot: whole packet; later slots: this fragment
};
static_assert(sizeof(TxRequest) == 12 && alignof(TxRequest) == 4);
static_assert(offsetof(TxRequest, gref) == 0 && offsetof(TxRequest, offset) == 4 &&
              offsetof(TxRequest, flags) == 6 && offsetof(TxRequest, id) == 8 &&
              offsetof(TxRequest, size) == 10);

struct TxResponse { // netif_tx_response_t
    std::uint16_t id;
    std::int16_t status;
};
static_assert(sizeof(TxResponse) == 4);

// --- guest receive (backend -> frontend) --------------------------------------------------

namespace rxf { // NETRXF_*
inline constexpr std::uint16_t kDataValidated = 1U << 0;
inline constexpr std::uint16_t kCsumBlank = 1U << 1;
inline constexpr std::uint16_t kMoreData = 1U << 2;
inline constexpr std::uint16_t kExtraInfo = 1U << 3;
inline constexpr std::uint16_t kGsoPrefix = 1U << 4; // legacy, never produced by dpnetback
} // namespace rxf

struct RxRequest { // netif_rx_request_t
    std::uint16_t id;
    std::uint16_t pad;
    GrantRef gref;
};
static_assert(sizeof(RxRequest) == 8);
static_assert(offsetof(RxRequest, id) == 0 && offsetof(RxRequest, gref) == 4);

struct RxResponse { // netif_rx_response_t
    std::uint16_t id;
    std::uint16_t offset;
    std::uint16_t flags;
    std::int16_t status; // > 0: bytes in this slot; < 0: NETIF_RSP_*
};
static_assert(sizeof(RxResponse) == 8);
static_assert(offsetof(RxResponse, offset) == 2 && offsetof(RxResponse, flags) == 4 &&
              offsetof(RxResponse, status) == 6);

// --- extra info (overlays a TX request or an RX response slot) ----------------------------

namespace extra {                            // XEN_NETIF_EXTRA_TYPE_*
inline constexpr std::uint8_t kNone = 0;     // never valid on the wire
inline constexpr std::uint8_t kGso = 1;      // u.gso
inline constexpr std::uint8_t kMcastAdd = 2; // u.mcast
inline constexpr std::uint8_t kMcastDel = 3; // u.mcast
inline constexpr std::uint8_t kHash = 4;     // u.hash
inline constexpr std::uint8_t kTypeMax = 5;
inline constexpr std::uint8_t kFlagMore = 1U << 0; // XEN_NETIF_EXTRA_FLAG_MORE
} // namespace extra

namespace gso { // XEN_NETIF_GSO_TYPE_*
inline constexpr std::uint8_t kNone = 0;
inline constexpr std::uint8_t kTcpV4 = 1;
inline constexpr std::uint8_t kTcpV6 = 2;
} // namespace gso

namespace hash_type { // _XEN_NETIF_CTRL_HASH_TYPE_* (bit numbers, used in u.hash.type)
inline constexpr std::uint8_t kIpv4 = 0;
inline constexpr std::uint8_t kIpv4Tcp = 1;
inline constexpr std::uint8_t kIpv6 = 2;
inline constexpr std::uint8_t kIpv6Tcp = 3;
inline constexpr std::uint8_t kMax = 4;
} // namespace hash_type

struct ExtraInfo { // netif_extra_info_t
    std::uint8_t type;
    std::uint8_t flags;
    union {
        struct {
            std::uint16_t size; // GSO MSS
            std::uint8_t type;  // gso::*
            std::uint8_t pad;
            std::uint16_t features;
        } gso;
        struct {
            std::uint8_t addr[6];
        } mcast;
        struct {
            std::uint8_t type;
            std::uint8_t algorithm;
            std::uint8_t value[4];
        } hash;
        std::uint16_t pad[3];
    } u;
};
static_assert(sizeof(ExtraInfo) == 8 && alignof(ExtraInfo) == 2);
static_assert(offsetof(ExtraInfo, u) == 2);

// --- status codes -------------------------------------------------------------------------

namespace rsp { // NETIF_RSP_*
inline constexpr std::int16_t kDropped = -2;
inline constexpr std::int16_t kError = -1;
inline constexpr std::int16_t kOkay = 0;
inline constexpr std::int16_t kNull = 1; // response slot that answers an extra-info slot
} // namespace rsp

// --- shared ring geometry (io/ring.h DEFINE_RING_TYPES) -----------------------------------

// The 64-byte header every shared ring page starts with.
struct SharedRingHeader {
    RingIdx req_prod;
    RingIdx req_event;
    RingIdx rsp_prod;
    RingIdx rsp_event;
    std::uint8_t pvt[4];
    std::uint8_t pad[44];
};
static_assert(sizeof(SharedRingHeader) == 64);
static_assert(offsetof(SharedRingHeader, rsp_prod) == 8 &&
              offsetof(SharedRingHeader, rsp_event) == 12);

// __RD32: round down to a power of two.
constexpr std::uint32_t round_down_pow2(std::uint32_t x) {
    std::uint32_t p = 1;
    while (x != 0 && p <= x / 2)
        p <<= 1;
    return x == 0 ? 0 : p;
}

// __CONST_RING_SIZE: entries of `entry_size` bytes that fit in one page after the header.
constexpr std::uint32_t ring_size(std::size_t entry_size, std::size_t bytes = kPageSize) {
    return round_down_pow2(
        static_cast<std::uint32_t>((bytes - sizeof(SharedRingHeader)) / entry_size));
}

// A TX ring slot holds a TxRequest, a TxResponse or an ExtraInfo: 12 bytes.
inline constexpr std::size_t kTxEntrySize = sizeof(TxRequest);
// An RX ring slot holds an RxRequest, an RxResponse or an ExtraInfo: 8 bytes.
inline constexpr std::size_t kRxEntrySize = sizeof(RxRequest);
static_assert(sizeof(ExtraInfo) <= kTxEntrySize && sizeof(ExtraInfo) <= kRxEntrySize);

inline constexpr std::uint32_t kTxRingSize = ring_size(kTxEntrySize); // NET_TX_RING_SIZE = 256
inline constexpr std::uint32_t kRxRingSize = ring_size(kRxEntrySize); // NET_RX_RING_SIZE = 256
static_assert(kTxRingSize == 256 && kRxRingSize == 256);

// --- grant table v1 (grant_table.h), written by guests, read by the hypervisor -------------

struct GrantEntryV1 { // grant_entry_v1_t
    std::uint16_t flags;
    DomId domid;
    std::uint32_t frame;
};
static_assert(sizeof(GrantEntryV1) == 8);

namespace gtf { // GTF_*
inline constexpr std::uint16_t kInvalid = 0;
inline constexpr std::uint16_t kPermitAccess = 1;
inline constexpr std::uint16_t kAcceptTransfer = 2;
inline constexpr std::uint16_t kTransitive = 3;
inline constexpr std::uint16_t kTypeMask = 3;
inline constexpr std::uint16_t kReadonly = 1U << 2;
inline constexpr std::uint16_t kReading = 1U << 3; // set by the hypervisor while mapped/copied
inline constexpr std::uint16_t kWriting = 1U << 4; // set by the hypervisor while mapped writable
inline constexpr std::uint16_t kPwt = 1U << 5;
inline constexpr std::uint16_t kPcd = 1U << 6;
inline constexpr std::uint16_t kPat = 1U << 7;
inline constexpr std::uint16_t kSubPage = 1U << 8;
} // namespace gtf

// GNTST_*: per-operation status of grant map/unmap/copy.
namespace gntst {
inline constexpr std::int16_t kOkay = 0;
inline constexpr std::int16_t kGeneralError = -1;
inline constexpr std::int16_t kBadDomain = -2;
inline constexpr std::int16_t kBadGntref = -3;
inline constexpr std::int16_t kBadHandle = -4;
inline constexpr std::int16_t kBadVirtAddr = -5;
inline constexpr std::int16_t kBadDevAddr = -6;
inline constexpr std::int16_t kNoDeviceSpace = -7;
inline constexpr std::int16_t kPermissionDenied = -8;
inline constexpr std::int16_t kBadPage = -9;
inline constexpr std::int16_t kBadCopyArg = -10;
inline constexpr std::int16_t kAddressTooBig = -11;
inline constexpr std::int16_t kEagain = -12;
inline constexpr std::int16_t kNoSpace = -13;
} // namespace gntst

} // namespace dpnb::netif
