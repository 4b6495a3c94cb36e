// Building and checking the verifiable test frames (payload.hpp).
#include "dpnb/netfront/payload.hpp"

#include <algorithm>

namespace dpnb::netfront {
namespace {

constexpr std::size_t kMagicOff = 14;
constexpr std::size_t kSeqOff = 18;
constexpr std::size_t kLenOff = 26;
constexpr std::size_t kStreamOff = 30;
constexpr std::size_t kPatternOff = 34;

void put(std::span<std::byte> f, std::size_t off, std::uint64_t v, std::size_t bytes) {
    for (std::size_t i = 0; i < bytes; ++i)
        f[off + i] = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}

std::uint64_t get(std::span<const std::byte> f, std::size_t off, std::size_t bytes) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i)
        v |= static_cast<std::uint64_t>(f[off + i]) << (8 * i);
    return v;
}

std::byte pattern(std::uint64_t seq, std::size_t i) {
    return static_cast<std::byte>((seq * 0x9E3779B1ULL + i * 31 + 0xA5) & 0xFF);
}

std::uint32_t fnv1a(std::span<const std::byte> data) {
    std::uint32_t h = 2166136261U;
    for (std::byte b : data) {
        h ^= static_cast<std::uint8_t>(b);
        h *= 16777619U;
    }
    return h;
}

} // namespace

bool build_payload_frame(std::span<std::byte> f, const PayloadHeader& h) {
    if (f.size() < kPayloadMinFrame) return false;
    for (std::size_t i = 0; i < 6; ++i) {
        f[i] = static_cast<std::byte>(h.dst.bytes[i]);
        f[6 + i] = static_cast<std::byte>(h.src.bytes[i]);
    }
    f[12] = static_cast<std::byte>(kPayloadEthertype >> 8);
    f[13] = static_cast<std::byte>(kPayloadEthertype & 0xFF);
    put(f, kMagicOff, kPayloadMagic, 4);
    put(f, kSeqOff, h.seq, 8);
    put(f, kLenOff, f.size(), 4);
    put(f, kStreamOff, h.stream, 4);
    const std::size_t end = f.size() - 4;
    for (std::size_t i = kPatternOff; i < end; ++i)
        f[i] = pattern(h.seq, i);
    put(f, end, fnv1a(f.subspan(14, end - 14)), 4);
    return true;
}

const char* to_string(PayloadCheck c) noexcept {
    switch (c) {
    case PayloadCheck::ok:
        return "ok";
    case PayloadCheck::too_short:
        return "too_short";
    case PayloadCheck::bad_ethertype:
        return "bad_ethertype";
    case PayloadCheck::bad_magic:
        return "bad_magic";
    case PayloadCheck::bad_length:
        return "bad_length";
    case PayloadCheck::bad_pattern:
        return "bad_pattern";
    case PayloadCheck::bad_checksum:
        return "bad_checksum";
    }
    return "?";
}

PayloadInfo check_payload_frame(std::span<const std::byte> f) {
    PayloadInfo info;
    if (f.size() < kPayloadMinFrame) return info;
    for (std::size_t i = 0; i < 6; ++i) {
        info.header.dst.bytes[i] = static_cast<std::uint8_t>(f[i]);
        info.header.src.bytes[i] = static_cast<std::uint8_t>(f[6 + i]);
    }
    if (get(f, 12, 1) != (kPayloadEthertype >> 8) || get(f, 13, 1) != (kPayloadEthertype & 0xFF)) {
        info.result = PayloadCheck::bad_ethertype;
        return info;
    }
    if (get(f, kMagicOff, 4) != kPayloadMagic) {
        info.result = PayloadCheck::bad_magic;
        return info;
    }
    info.header.seq = get(f, kSeqOff, 8);
    info.header.stream = static_cast<std::uint32_t>(get(f, kStreamOff, 4));
    if (get(f, kLenOff, 4) != f.size()) {
        info.result = PayloadCheck::bad_length;
        return info;
    }
    const std::size_t end = f.size() - 4;
    for (std::size_t i = kPatternOff; i < end; ++i)
        if (f[i] != pattern(info.header.seq, i)) {
            info.result = PayloadCheck::bad_pattern;
            return info;
        }
    if (get(f, end, 4) != fnv1a(f.subspan(14, end - 14))) {
        info.result = PayloadCheck::bad_checksum;
        return info;
    }
    info.result = PayloadCheck::ok;
    return info;
}

void swap_macs(std::span<std::byte> f) {
    if (f.size() < 12) return;
    std::swap_ranges(f.begin(), f.begin() + 6, f.begin() + 6);
}

} // namespace dpnb::netfront
