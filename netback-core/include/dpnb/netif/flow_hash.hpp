// Receive-side flow hashing as the netif control ring defines it (xen/io/netif.h, "Hash types"
// and "Hash algorithms"): a vif's hash configuration as its frontend sets it, the Toeplitz
// hash, the bytes hashed for a frame (Linux xenvif_set_skb_hash), the queue a hash selects
// (Linux xenvif_select_queue) and the hash extra-info slot a frontend receives in front of
// the frame. Pure functions: the control ring's handler (ctrl_handler.hpp) fills a
// HashConfig, the engine hands an immutable copy to the lcore that owns the vif's queues.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "dpnb/netif/wire.hpp"

namespace dpnb::netif {

// XEN_NETBK_MAX_HASH_KEY_SIZE and XEN_NETBK_MAX_HASH_MAPPING_SIZE, as Linux netback.
inline constexpr std::uint32_t kMaxHashKeySize = 40;
inline constexpr std::uint32_t kMaxHashMappingSize = 128;

namespace hash_alg { // XEN_NETIF_CTRL_HASH_ALGORITHM_*
inline constexpr std::uint32_t kNone = 0;
inline constexpr std::uint32_t kToeplitz = 1;
} // namespace hash_alg

namespace hash_flag { // XEN_NETIF_CTRL_HASH_TYPE_* (bit masks of hash_type::*)
inline constexpr std::uint32_t kIpv4 = 1U << hash_type::kIpv4;
inline constexpr std::uint32_t kIpv4Tcp = 1U << hash_type::kIpv4Tcp;
inline constexpr std::uint32_t kIpv6 = 1U << hash_type::kIpv6;
inline constexpr std::uint32_t kIpv6Tcp = 1U << hash_type::kIpv6Tcp;
inline constexpr std::uint32_t kAll = kIpv4 | kIpv4Tcp | kIpv6 | kIpv6Tcp;
} // namespace hash_flag

// A vif's hash configuration. Every field is within its bounds whenever the handler hands
// it out: algorithm NONE or TOEPLITZ, flags within hash_flag::kAll, mapping_size at most
// kMaxHashMappingSize and every entry of mapping[0, mapping_size) below the vif's queues.
struct HashConfig {
    std::uint32_t algorithm = hash_alg::kNone;
    std::uint32_t flags = 0;
    std::array<std::uint8_t, kMaxHashKeySize> key{}; // octets past the key set are zero
    // 0: a hash selects queue hash % queues ("modular arithmetic" in netif.h).
    std::uint32_t mapping_size = 0;
    std::array<std::uint32_t, kMaxHashMappingSize> mapping{}; // [mapping_size, 128) are zero

    // The frontend asked for hashes: frames get one, and a hash extra-info slot.
    bool active() const noexcept { return algorithm == hash_alg::kToeplitz; }
    bool operator==(const HashConfig&) const = default;
};

// Names for logs, the CLI and metrics: "none", "toeplitz" ("unknown" otherwise); "ipv4",
// "ipv4_tcp", "ipv6", "ipv6_tcp" for hash_type::* ("unknown" otherwise).
const char* hash_algorithm_name(std::uint32_t algorithm) noexcept;
const char* hash_type_name(std::uint8_t type) noexcept;

// The Toeplitz hash of netif.h ("Value ^= left-most 32 bits of Key[] for every 1 bit of
// Buffer[]"); key octets past the key's end count as zero.
std::uint32_t toeplitz_hash(std::span<const std::uint8_t> key,
                            std::span<const std::uint8_t> data) noexcept;

// The bytes a frame is hashed over, per netif.h's hash types: source and destination
// address, then source and destination port for TCP. The maximal enabled type is chosen
// (IPv4+TCP over IPv4); a fragment, or a TCP header shorter than its ports, hashes as IP.
struct FlowKey {
    std::array<std::uint8_t, 36> bytes{};
    std::uint8_t len = 0;  // 0: no enabled type applies to the frame
    std::uint8_t type = 0; // hash_type::* of the bytes
};

// Reads the headers at the start of `frame` (an Ethernet frame, at most two VLAN tags).
FlowKey flow_key(std::span<const std::uint8_t> frame, std::uint32_t flags) noexcept;

struct FlowHash {
    std::uint32_t value = 0;
    std::uint8_t type = 0; // hash_type::*
};

// The frame's hash under `config`; nullopt when hashing is off or no enabled type applies
// (Linux then clears the skb's hash: no hash extra, queue by hash 0).
std::optional<FlowHash> flow_hash(const HashConfig& config,
                                  std::span<const std::uint8_t> frame) noexcept;

// A frame's flow hash when the frontend set no algorithm (Linux's skb_get_hash, which
// xenvif_select_queue then takes modulo the queues): the Toeplitz hash, under the key most
// NICs' RSS uses by default, of the IP addresses and, for TCP and UDP (not a fragment), the
// ports; 0 for a frame that is not IP. One flow always gets one value.
std::uint32_t default_flow_hash(std::span<const std::uint8_t> frame) noexcept;

// The vif queue a hash selects: mapping[hash % mapping_size], or hash % queues without a
// mapping. `queues` >= 1; the result is below it whatever the configuration holds.
std::uint32_t hash_queue(const HashConfig& config, std::uint32_t hash,
                         std::uint32_t queues) noexcept;

// The XEN_NETIF_EXTRA_TYPE_HASH slot for a frame's hash (value little-endian, as Linux
// writes it).
ExtraInfo hash_extra(const FlowHash& hash) noexcept;

} // namespace dpnb::netif
