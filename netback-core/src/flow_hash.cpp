// Toeplitz hashing, flow keys and queue selection (flow_hash.hpp).
#include "dpnb/netif/flow_hash.hpp"

#include <algorithm>
#include <cstring>

#include "dpnb/netif/packet_headers.hpp"

namespace dpnb::netif {

namespace {

constexpr std::uint32_t kIpv4AddrOffset = 12; // source, then destination
constexpr std::uint32_t kIpv6AddrOffset = 8;
constexpr std::uint32_t kPortsLen = 4; // source port, then destination port

// Microsoft's RSS verification key: the default of most NICs' RSS (and of DPDK's drivers).
constexpr std::array<std::uint8_t, kMaxHashKeySize> kDefaultKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
    0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
    0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

void append(FlowKey& k, const std::uint8_t* p, std::uint32_t n) noexcept {
    std::memcpy(k.bytes.data() + k.len, p, n);
    k.len = static_cast<std::uint8_t>(k.len + n);
}

} // namespace

const char* hash_algorithm_name(std::uint32_t algorithm) noexcept {
    switch (algorithm) {
    case hash_alg::kNone:
        return "none";
    case hash_alg::kToeplitz:
        return "toeplitz";
    default:
        return "unknown";
    }
}

const char* hash_type_name(std::uint8_t type) noexcept {
    switch (type) {
    case hash_type::kIpv4:
        return "ipv4";
    case hash_type::kIpv4Tcp:
        return "ipv4_tcp";
    case hash_type::kIpv6:
        return "ipv6";
    case hash_type::kIpv6Tcp:
        return "ipv6_tcp";
    default:
        return "unknown";
    }
}

std::uint32_t toeplitz_hash(std::span<const std::uint8_t> key,
                            std::span<const std::uint8_t> data) noexcept {
    auto key_byte = [&](std::size_t i) -> std::uint64_t { return i < key.size() ? key[i] : 0; };
    // A 64-bit window over the key: its top 32 bits are the key bits aligned with the data
    // bit being looked at; the low 32 bits are the key bits the next byte shifts in.
    std::uint64_t window = 0;
    std::size_t next = 0;
    for (; next < 8; ++next)
        window = window << 8 | key_byte(next);
    std::uint32_t hash = 0;
    for (const std::uint8_t byte : data) {
        for (int bit = 7; bit >= 0; --bit) {
            if ((byte >> bit) & 1U) hash ^= static_cast<std::uint32_t>(window >> 32);
            window <<= 1;
        }
        window |= key_byte(next++);
    }
    return hash;
}

FlowKey flow_key(std::span<const std::uint8_t> frame, std::uint32_t flags) noexcept {
    FlowKey k;
    IpHeaders ip;
    if ((flags & hash_flag::kAll) == 0) return k;
    if (parse_ip_headers(frame.data(), static_cast<std::uint32_t>(frame.size()), ip) !=
        IpHeaderError::none)
        return k;
    const std::uint32_t l4 = ip.l4_offset();
    const bool tcp = ip.proto == kIpProtoTcp && !ip.fragment && frame.size() >= l4 + kPortsLen;
    const bool v4 = ip.version == 4;
    const std::uint32_t tcp_flag = v4 ? hash_flag::kIpv4Tcp : hash_flag::kIpv6Tcp;
    const std::uint32_t ip_flag = v4 ? hash_flag::kIpv4 : hash_flag::kIpv6;
    const std::uint8_t* addrs = frame.data() + ip.l2_len + (v4 ? kIpv4AddrOffset : kIpv6AddrOffset);
    const std::uint32_t addrs_len = v4 ? 8 : 32;
    if (tcp && (flags & tcp_flag) != 0) {
        append(k, addrs, addrs_len);
        append(k, frame.data() + l4, kPortsLen);
        k.type = v4 ? hash_type::kIpv4Tcp : hash_type::kIpv6Tcp;
    } else if ((flags & ip_flag) != 0) {
        append(k, addrs, addrs_len);
        k.type = v4 ? hash_type::kIpv4 : hash_type::kIpv6;
    }
    return k;
}

std::optional<FlowHash> flow_hash(const HashConfig& config,
                                  std::span<const std::uint8_t> frame) noexcept {
    if (!config.active()) return std::nullopt;
    const FlowKey k = flow_key(frame, config.flags);
    if (k.len == 0) return std::nullopt;
    return FlowHash{toeplitz_hash(config.key, std::span(k.bytes.data(), k.len)), k.type};
}

std::uint32_t default_flow_hash(std::span<const std::uint8_t> frame) noexcept {
    IpHeaders ip;
    if (parse_ip_headers(frame.data(), static_cast<std::uint32_t>(frame.size()), ip) !=
        IpHeaderError::none)
        return 0;
    FlowKey k;
    const bool v4 = ip.version == 4;
    append(k, frame.data() + ip.l2_len + (v4 ? kIpv4AddrOffset : kIpv6AddrOffset), v4 ? 8 : 32);
    const std::uint32_t l4 = ip.l4_offset();
    if ((ip.proto == kIpProtoTcp || ip.proto == kIpProtoUdp) && !ip.fragment &&
        frame.size() >= l4 + kPortsLen)
        append(k, frame.data() + l4, kPortsLen);
    return toeplitz_hash(kDefaultKey, std::span(k.bytes.data(), k.len));
}

std::uint32_t hash_queue(const HashConfig& config, std::uint32_t hash,
                         std::uint32_t queues) noexcept {
    if (queues == 0) return 0;
    const std::uint32_t size = std::min(config.mapping_size, kMaxHashMappingSize);
    const std::uint32_t q = size == 0 ? hash % queues : config.mapping[hash % size];
    return q < queues ? q : q % queues;
}

ExtraInfo hash_extra(const FlowHash& hash) noexcept {
    ExtraInfo e{};
    e.type = extra::kHash;
    e.flags = 0;
    e.u.hash.type = hash.type;
    e.u.hash.algorithm = static_cast<std::uint8_t>(hash_alg::kToeplitz);
    for (unsigned i = 0; i < 4; ++i)
        e.u.hash.value[i] = static_cast<std::uint8_t>(hash.value >> (8 * i));
    return e;
}

} // namespace dpnb::netif
