// TX offloads of guest packets: the headers of a packet the guest marked for a partial
// checksum or GSO are parsed from the daemon's private copy of its first bytes (never from
// guest memory, which the guest could change after the check), then turned into DPDK offload
// flags, or done in software when the port lacks the offload: the L4 checksum, and TCP
// segmentation (IPv4 and IPv6) into indirect mbufs that share the guest's mapped pages.
#pragma once

#include <cstdint>

struct rte_mbuf;
struct rte_mempool;

namespace dpnb::engine::detail {

struct PacketHeaders {
    std::uint16_t l2_len = 0; // Ethernet plus VLAN tags
    std::uint16_t l3_len = 0; // IPv4 header or IPv6 header plus extension headers
    std::uint16_t l4_len = 0; // TCP header (with options) or UDP header
    bool ipv4 = false;
    bool ipv6 = false;
    std::uint8_t l4_proto = 0; // IPPROTO_TCP, IPPROTO_UDP, else 0
    std::uint16_t l4_offset() const noexcept { return l2_len + l3_len; }
    std::uint16_t headers_len() const noexcept { return l2_len + l3_len + l4_len; }
};

enum class HeaderError : std::uint8_t {
    none,
    truncated,   // the headers do not fit in the copied bytes
    not_ip,      // neither IPv4 nor IPv6
    bad_ip,      // IPv4 header length or version wrong
    not_tcp_udp, // checksum offload asked for another protocol
    fragment,    // an IP fragment cannot take a partial checksum
};
const char* to_string(HeaderError e) noexcept;

// Parses the headers at the start of `data` (`avail` bytes: what was copied).
HeaderError parse_headers(const std::uint8_t* data, std::uint32_t avail, PacketHeaders& out);

// Sets l2_len/l3_len/l4_len and the checksum offload flags for a packet whose L4 checksum the
// port fills in, with the pseudo-header checksum written into the L4 header (as DPDK PMDs
// expect). `tso`: TCP segmentation with MSS `mss`. Writes only the first segment (the copy).
void set_tx_offload(rte_mbuf* m, const PacketHeaders& h, bool tso, std::uint16_t mss);

// Computes the L4 checksum over the whole chain in software and stores it. The checksum field
// must lie in the first segment.
void software_l4_checksum(rte_mbuf* m, const PacketHeaders& h);

// Software TCP segmentation of a GSO packet (headers in its first segment): writes up to
// `max_out` frames of at most `mss` payload bytes each to `out`; each frame is a fresh
// header mbuf (from `hdr_pool`) followed by indirect mbufs (from `indirect_pool`) over the
// packet's segments. IPv4 header checksums and lengths, TCP sequence numbers and flags are
// fixed; L4 checksums are offloaded when `csum_offload`, else computed. Returns the number
// of frames, or -1 (nothing allocated is left behind). `pkt` is not freed.
int segment_tcp(rte_mbuf* pkt, const PacketHeaders& h, std::uint16_t mss, bool csum_offload,
                rte_mempool* hdr_pool, rte_mempool* indirect_pool, rte_mbuf** out,
                unsigned max_out);

} // namespace dpnb::engine::detail
