// The messages between dpnb-vhost-peer and the test that drives it: one message per
// SOCK_SEQPACKET datagram, a fixed header then `len` bytes of frame (or of error text).
// Both ends run on the same machine and build, so the header travels as it lies in memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpnb::vhost_peer {

enum class MsgKind : std::uint32_t {
    ready = 1, // peer -> test: the vhost-user socket listens; virtio_user may connect
    send = 2,  // test -> peer: transmit the frame on `queue` with the offload fields set
    sent = 3,  // peer -> test: the answer to `send`: len = 1 when the port took the frame
    frame = 4, // peer -> test: a packet the port received, with what the vhost library set
    error = 5, // peer -> test: the set-up failed; the payload is the reason
};

struct MsgHeader {
    MsgKind kind = MsgKind::frame;
    std::uint16_t queue = 0;
    std::uint16_t nb_segs = 0;  // frame: segments of the received chain
    std::uint64_t ol_flags = 0; // send: RTE_MBUF_F_TX_*; frame: RTE_MBUF_F_RX_* as received
    std::uint16_t tso_segsz = 0;
    std::uint16_t l2_len = 0; // send: header lengths for the offloads
    std::uint16_t l3_len = 0;
    std::uint16_t l4_len = 0;
    std::uint32_t len = 0; // bytes after the header
    std::uint32_t reserved = 0;
};
static_assert(sizeof(MsgHeader) == 32);

// The largest frame either way: a 64 KiB GSO packet and its headers.
inline constexpr std::size_t kMaxFrame = 65536 + 256;
inline constexpr std::size_t kMaxMessage = sizeof(MsgHeader) + kMaxFrame;

} // namespace dpnb::vhost_peer
