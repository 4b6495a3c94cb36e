// libFuzzer target for what the TX path reads in a guest's frame before the NIC sees it: the
// header length (frame_headers_len, XSA-423) and the IP source check (check_ip_source). The
// frame sits in a buffer of its exact size, so any read past the bytes given is an ASan
// report. Invariants: a header length within the bytes is exact (the same when given just
// those bytes); both walkers read nothing beyond the headers (the verdict on the headers
// alone is the verdict on the whole frame).
//
// Input layout: [0] how many of the addresses below are allowed (mod 9); [1..32] eight IPv4
// addresses; [33..] the frame (tests/fuzz/make_seeds_frames.py writes seeds in it).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "dpnb/netif/ip_filter.hpp"
#include "dpnb/netif/packet_headers.hpp"
#include "fuzz_support.hpp"

namespace nf = dpnb::netif;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::size_t kHeader = 33;
    if (size < kHeader || size - kHeader > 65535) return 0;
    std::vector<nf::Ipv4Address> allowed(data[0] % 9U);
    for (std::size_t i = 0; i < allowed.size(); ++i)
        std::memcpy(allowed[i].bytes.data(), data + 1 + i * 4, 4);
    const auto len = static_cast<std::uint32_t>(size - kHeader);
    auto frame = std::make_unique<std::uint8_t[]>(len == 0 ? 1 : len);
    std::memcpy(frame.get(), data + kHeader, len);
    const std::uint8_t* f = len == 0 ? nullptr : frame.get();

    const std::uint32_t h = nf::frame_headers_len(f, len);
    const nf::IpSourceVerdict v = nf::check_ip_source(f, len, allowed);
    if (h <= len) {
        CHECK(nf::frame_headers_len(f, h) == h);
        CHECK(nf::check_ip_source(f, h, allowed) == v);
    }
    return 0;
}
