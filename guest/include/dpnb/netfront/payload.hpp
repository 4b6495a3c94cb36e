// Verifiable test frames for the netfront tool, tests and benchmarks: an Ethernet header
// (ethertype 0x88B5, IEEE "local experimental"), a small header (magic, sequence number,
// stream id, frame length), a pattern derived from the sequence number, and an FNV-1a
// checksum at the end. A receiver can check every byte of a frame without knowing what was
// sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dpnb/netif/xs_value.hpp"

namespace dpnb::netfront {

inline constexpr std::uint16_t kPayloadEthertype = 0x88B5;
inline constexpr std::uint32_t kPayloadMagic = 0x44504E42; // "DPNB"
// Ethernet header, magic, sequence, length, stream, checksum.
inline constexpr std::size_t kPayloadMinFrame = 14 + 4 + 8 + 4 + 4 + 4;

struct PayloadHeader {
    netif::MacAddress dst;
    netif::MacAddress src;
    std::uint64_t seq = 0;
    std::uint32_t stream = 0;
};

// Fills `frame` (its whole size, at least kPayloadMinFrame bytes). False if too short.
bool build_payload_frame(std::span<std::byte> frame, const PayloadHeader& h);

enum class PayloadCheck : std::uint8_t {
    ok,
    too_short,
    bad_ethertype,
    bad_magic,
    bad_length,
    bad_pattern,
    bad_checksum,
};
const char* to_string(PayloadCheck c) noexcept;

struct PayloadInfo {
    PayloadCheck result = PayloadCheck::too_short;
    PayloadHeader header;
};

PayloadInfo check_payload_frame(std::span<const std::byte> frame);

// Swaps destination and source MAC (an echo).
void swap_macs(std::span<std::byte> frame);

} // namespace dpnb::netfront
