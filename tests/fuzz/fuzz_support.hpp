// What the libFuzzer targets over ring pages share: a trap on a broken invariant (no
// exception, no abort message: libFuzzer reports the input), a page-aligned page filled as a
// frontend left it, and little-endian reads of the input's header fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dpnb/netif/wire.hpp"

namespace dpnb::fuzz {

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

struct alignas(netif::kPageSize) Page {
    unsigned char bytes[netif::kPageSize];
};

// The shared page of a ring of `ring_size` entries of `entry_size` bytes: `n` entries from
// `src` written from ring index `start` on (at most a ring of them), req_prod at
// start + prod_delta, rsp_prod at start.
inline void fill_ring(Page& page, std::uint32_t ring_size, std::size_t entry_size,
                      std::uint32_t start, std::uint32_t prod_delta, const std::uint8_t* src,
                      std::size_t n) {
    std::memset(page.bytes, 0, sizeof(page.bytes));
    for (std::size_t i = 0; i < n && i < ring_size; ++i) {
        const std::uint32_t idx = start + static_cast<std::uint32_t>(i);
        std::memcpy(page.bytes + sizeof(netif::SharedRingHeader) +
                        (idx & (ring_size - 1)) * entry_size,
                    src + i * entry_size, entry_size);
    }
    auto* hdr = reinterpret_cast<netif::SharedRingHeader*>(page.bytes);
    hdr->req_prod = start + prod_delta;
    hdr->rsp_prod = start;
}

inline std::uint16_t le16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>(p[0] | p[1] << 8);
}
inline std::uint32_t le32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

} // namespace dpnb::fuzz
