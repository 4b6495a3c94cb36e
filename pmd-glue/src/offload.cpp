// TX header parsing, checksum offload and software TCP segmentation (offload.hpp).
#include "offload.hpp"

#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <algorithm>
#include <cstring>

#include "dpnb/netif/packet_headers.hpp"

namespace dpnb::engine::detail {
namespace {

// Where the L4 checksum field sits in the L4 header.
std::uint16_t l4_csum_offset(std::uint8_t proto) noexcept {
    return proto == IPPROTO_TCP ? offsetof(rte_tcp_hdr, cksum) : offsetof(rte_udp_hdr, dgram_cksum);
}

std::uint16_t pseudo_header(const std::uint8_t* l3, const PacketHeaders& h, std::uint64_t flags) {
    return h.ipv4 ? rte_ipv4_phdr_cksum(reinterpret_cast<const rte_ipv4_hdr*>(l3), flags)
                  : rte_ipv6_phdr_cksum(reinterpret_cast<const rte_ipv6_hdr*>(l3), flags);
}

void store16(std::uint8_t* p, std::uint16_t v) noexcept {
    std::memcpy(p, &v, sizeof(v)); // checksums are stored as computed (network order sums)
}

} // namespace

const char* to_string(HeaderError e) noexcept {
    switch (e) {
    case HeaderError::none:
        return "none";
    case HeaderError::truncated:
        return "headers longer than the copied bytes";
    case HeaderError::not_ip:
        return "not IPv4 or IPv6";
    case HeaderError::bad_ip:
        return "malformed IP header";
    case HeaderError::not_tcp_udp:
        return "not TCP or UDP";
    case HeaderError::fragment:
        return "IP fragment";
    }
    return "unknown";
}

HeaderError parse_headers(const std::uint8_t* d, std::uint32_t avail, PacketHeaders& out) {
    out = PacketHeaders{};
    netif::IpHeaders ip;
    switch (netif::parse_ip_headers(d, avail, ip)) {
    case netif::IpHeaderError::none:
        break;
    case netif::IpHeaderError::truncated:
        return HeaderError::truncated;
    case netif::IpHeaderError::not_ip:
        return HeaderError::not_ip;
    case netif::IpHeaderError::bad_ip:
        return HeaderError::bad_ip;
    }
    if (ip.fragment) return HeaderError::fragment;
    const std::uint32_t l4_at = ip.l4_offset();
    std::uint32_t l4 = 0;
    if (ip.proto == IPPROTO_TCP) {
        if (avail < l4_at + sizeof(rte_tcp_hdr)) return HeaderError::truncated;
        l4 = (d[l4_at + 12] >> 4) * 4U;
        if (l4 < sizeof(rte_tcp_hdr)) return HeaderError::bad_ip;
    } else if (ip.proto == IPPROTO_UDP) {
        l4 = sizeof(rte_udp_hdr);
    } else {
        return HeaderError::not_tcp_udp;
    }
    if (avail < l4_at + l4) return HeaderError::truncated;
    out.l2_len = ip.l2_len;
    out.l3_len = ip.l3_len;
    out.l4_len = static_cast<std::uint16_t>(l4);
    out.ipv4 = ip.version == 4;
    out.ipv6 = ip.version == 6;
    out.l4_proto = ip.proto;
    return HeaderError::none;
}

void set_tx_offload(rte_mbuf* m, const PacketHeaders& h, bool tso, std::uint16_t mss) {
    m->l2_len = h.l2_len;
    m->l3_len = h.l3_len;
    m->l4_len = h.l4_len;
    std::uint64_t flags = h.ipv4 ? RTE_MBUF_F_TX_IPV4 : RTE_MBUF_F_TX_IPV6;
    if (tso) {
        flags |= RTE_MBUF_F_TX_TCP_SEG;
        m->tso_segsz = mss;
    } else {
        flags |= h.l4_proto == IPPROTO_TCP ? RTE_MBUF_F_TX_TCP_CKSUM : RTE_MBUF_F_TX_UDP_CKSUM;
    }
    auto* base = rte_pktmbuf_mtod(m, std::uint8_t*);
    std::uint8_t* l3 = base + h.l2_len;
    if (h.ipv4 && tso) {
        // Segments get their own IPv4 checksums from the device.
        flags |= RTE_MBUF_F_TX_IP_CKSUM;
        reinterpret_cast<rte_ipv4_hdr*>(l3)->hdr_checksum = 0;
    }
    m->ol_flags |= flags;
    // Recomputed here rather than trusted from the guest's partial checksum.
    store16(base + h.l4_offset() + l4_csum_offset(h.l4_proto), pseudo_header(l3, h, flags));
}

void software_l4_checksum(rte_mbuf* m, const PacketHeaders& h) {
    auto* base = rte_pktmbuf_mtod(m, std::uint8_t*);
    std::uint8_t* field = base + h.l4_offset() + l4_csum_offset(h.l4_proto);
    store16(field, 0);
    std::uint16_t raw = 0;
    if (rte_raw_cksum_mbuf(m, h.l4_offset(), m->pkt_len - h.l4_offset(), &raw) != 0) return;
    std::uint32_t sum = raw;
    sum += pseudo_header(base + h.l2_len, h, 0);
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    auto cksum = static_cast<std::uint16_t>(~sum & 0xFFFF);
    if (cksum == 0 && h.l4_proto == IPPROTO_UDP) cksum = 0xFFFF;
    store16(field, cksum);
}

int segment_tcp(rte_mbuf* pkt, const PacketHeaders& h, std::uint16_t mss, bool csum_offload,
                rte_mempool* hdr_pool, rte_mempool* indirect_pool, rte_mbuf** out,
                unsigned max_out) {
    const std::uint32_t hdr_len = h.headers_len();
    if (mss == 0 || h.l4_proto != IPPROTO_TCP || pkt->data_len < hdr_len || pkt->pkt_len <= hdr_len)
        return -1;
    const std::uint32_t payload = pkt->pkt_len - hdr_len;
    const std::uint32_t nseg = (payload + mss - 1) / mss;
    if (nseg > max_out) return -1;
    const auto* src = rte_pktmbuf_mtod(pkt, const std::uint8_t*);
    const auto* tcp0 = reinterpret_cast<const rte_tcp_hdr*>(src + h.l4_offset());
    const std::uint32_t seq0 = rte_be_to_cpu_32(tcp0->sent_seq);
    const std::uint8_t flags0 = tcp0->tcp_flags;
    const std::uint16_t id0 =
        h.ipv4 ? rte_be_to_cpu_16(reinterpret_cast<const rte_ipv4_hdr*>(src + h.l2_len)->packet_id)
               : 0;

    // Walks the payload across the chain: segment `cur` and the offset in it.
    rte_mbuf* cur = pkt;
    std::uint32_t cur_off = hdr_len;
    unsigned made = 0;
    auto fail = [&] {
        for (unsigned i = 0; i < made; ++i)
            rte_pktmbuf_free(out[i]);
        return -1;
    };
    for (std::uint32_t s = 0; s < nseg; ++s) {
        const std::uint32_t len = std::min<std::uint32_t>(mss, payload - s * mss);
        rte_mbuf* hm = rte_pktmbuf_alloc(hdr_pool);
        if (hm == nullptr || rte_pktmbuf_tailroom(hm) < hdr_len) {
            if (hm != nullptr) rte_pktmbuf_free(hm);
            return fail();
        }
        auto* d = rte_pktmbuf_mtod(hm, std::uint8_t*);
        std::memcpy(d, src, hdr_len);
        hm->data_len = static_cast<std::uint16_t>(hdr_len);
        hm->pkt_len = hdr_len;
        out[made++] = hm;
        std::uint32_t need = len;
        while (need > 0) {
            while (cur != nullptr && cur_off >= cur->data_len) {
                cur = cur->next;
                cur_off = 0;
            }
            if (cur == nullptr) return fail();
            const std::uint32_t take = std::min<std::uint32_t>(need, cur->data_len - cur_off);
            rte_mbuf* mi = rte_pktmbuf_alloc(indirect_pool);
            if (mi == nullptr) return fail();
            rte_pktmbuf_attach(mi, cur);
            mi->data_off = static_cast<std::uint16_t>(cur->data_off + cur_off);
            mi->data_len = static_cast<std::uint16_t>(take);
            mi->pkt_len = take;
            if (rte_pktmbuf_chain(hm, mi) != 0) {
                rte_pktmbuf_free(mi);
                return fail();
            }
            cur_off += take;
            need -= take;
        }
        // Fix the copied headers for this segment.
        std::uint8_t* l3 = d + h.l2_len;
        if (h.ipv4) {
            auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
            ip->total_length =
                rte_cpu_to_be_16(static_cast<std::uint16_t>(h.l3_len + h.l4_len + len));
            ip->packet_id = rte_cpu_to_be_16(static_cast<std::uint16_t>(id0 + s));
            ip->hdr_checksum = 0;
            ip->hdr_checksum = rte_ipv4_cksum(ip);
        } else {
            auto* ip = reinterpret_cast<rte_ipv6_hdr*>(l3);
            ip->payload_len = rte_cpu_to_be_16(
                static_cast<std::uint16_t>(h.l3_len - sizeof(rte_ipv6_hdr) + h.l4_len + len));
        }
        auto* tcp = reinterpret_cast<rte_tcp_hdr*>(d + h.l4_offset());
        tcp->sent_seq = rte_cpu_to_be_32(seq0 + s * mss);
        std::uint8_t f = flags0;
        if (s + 1 != nseg) f &= static_cast<std::uint8_t>(~(RTE_TCP_FIN_FLAG | RTE_TCP_PSH_FLAG));
        if (s != 0) f &= static_cast<std::uint8_t>(~RTE_TCP_CWR_FLAG);
        tcp->tcp_flags = f;
        hm->ol_flags = 0;
        if (csum_offload)
            set_tx_offload(hm, h, false, 0);
        else
            software_l4_checksum(hm, h);
    }
    return static_cast<int>(made);
}

} // namespace dpnb::engine::detail
