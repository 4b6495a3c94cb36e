// The guest-buffer mempool under a real net_tap queue, without the engine: buffers pushed
// in order are the buffers the kernel's readv() writes, in that order; the frame that lands
// in the start-up placeholder is recognisable; an empty FIFO is back-pressure; releasing the
// queue hands the buffer it held back as "returned"; every header comes home; a header the
// owner keeps is rebound per post and never reaches the free list. The "guest
// pages" are plain memory here: the point is where the bytes land.
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "dpnb/pmd/eal.hpp"
#include "dpnb/pmd/guest_pool.hpp"
#include "dpnb/pmd/port.hpp"
#include "harness.hpp"

namespace dpnb::component {
namespace {

using pmd::GuestBufferPool;
using pmd::GuestBufKind;

struct PageDeleter {
    void operator()(std::byte* p) const { std::free(p); }
};

class GuestPoolTap : public ::testing::Test {
protected:
    void SetUp() override {
        std::string why;
        if (!tap_available(&why)) GTEST_SKIP() << "tap tests need " << why;
        CT_ASSERT_OK(pmd::init_eal(test_eal()));
    }
};

// Receives until `want` frames arrived (or the timeout), on this thread.
std::vector<rte_mbuf*> receive(std::uint16_t port, std::size_t want, int timeout_ms) {
    std::vector<rte_mbuf*> got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
        rte_mbuf* b[32];
        const std::uint16_t n = rte_eth_rx_burst(port, 0, b, 32);
        got.insert(got.end(), b, b + n);
        if (n == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return got;
}

TEST_F(GuestPoolTap, TheNicWritesPostedBuffersInPostingOrder) {
    const std::string iface = tap_name(90);
    pmd::PortConfig pc;
    pc.name = "pooltap";
    pc.device = "net_tap_pool,iface=" + iface;
    pc.steering = pmd::Steering::dedicated_port;
    pc.rx_desc = 8;
    pc.rx_interrupts = false;
    auto port = pmd::Port::open(pc);
    CT_ASSERT_OK(port);
    std::string why;
    ASSERT_TRUE((*port)->can_zero_copy(&why)) << why;
    EXPECT_EQ((*port)->caps().driver_caps.rx_buffers, pmd::RxBufferUse::in_order);

    pmd::GuestPoolConfig gc;
    gc.name = "ct_pool";
    gc.headers = 64;
    gc.placeholders = 16;
    auto pool = GuestBufferPool::create(gc);
    CT_ASSERT_OK(pool);
    GuestBufferPool& gp = **pool;
    rte_mempool* mp = gp.mempool();
    CT_ASSERT_OK((*port)->configure(std::span(&mp, 1), 1, true));
    CT_ASSERT_OK((*port)->start());
    gp.set_start_mode(false);
    // net_tap filled its chain at set-up: placeholders only.
    EXPECT_EQ(gp.counts().placeholders_handed, 8u);

    constexpr unsigned kPosted = 16;
    std::unique_ptr<std::byte, PageDeleter> mem(
        static_cast<std::byte*>(std::aligned_alloc(4096, 4096 * (kPosted + 1))));
    std::memset(mem.get(), 0, 4096 * (kPosted + 1));
    auto page = [&](unsigned i) { return mem.get() + std::size_t{i} * 4096; };
    for (unsigned i = 0; i < kPosted; ++i) {
        rte_mbuf* m = gp.take_header();
        ASSERT_NE(m, nullptr);
        ASSERT_TRUE(gp.push_ready(m, page(i), GuestBufKind::guest, 1000 + i));
    }

    TapPeer peer(iface);
    ASSERT_TRUE(peer.ok());
    // Frame 0 lands in the placeholder at the head of net_tap's chain; frames 1..15 in
    // buffers 0..14; frame 16 is read into buffer 15 but no buffer is left to replace it:
    // net_tap drops it and keeps buffer 15 (back-pressure).
    std::vector<std::vector<std::byte>> sent;
    for (unsigned i = 0; i <= kPosted; ++i) {
        sent.push_back(payload_frame(guest_mac(1), peer_mac(), i, 7, 60 + 90 * i));
        ASSERT_TRUE(peer.send(sent.back()));
    }
    auto got = receive((*port)->id(), kPosted, 30'000);
    ASSERT_EQ(got.size(), kPosted);
    EXPECT_EQ(GuestBufferPool::info(got[0]).kind, GuestBufKind::placeholder);
    rte_pktmbuf_free(got[0]);
    for (unsigned k = 1; k < kPosted; ++k) {
        rte_mbuf* m = got[k];
        const auto& info = GuestBufferPool::info(m);
        ASSERT_EQ(info.kind, GuestBufKind::guest) << "frame " << k;
        EXPECT_EQ(info.post, 1000 + k - 1) << "buffers must fill in posting order";
        // The bytes are in the "guest page", after the headroom: nobody copied them.
        EXPECT_EQ(rte_pktmbuf_mtod(m, std::byte*), page(k - 1) + RTE_PKTMBUF_HEADROOM);
        ASSERT_EQ(m->pkt_len, sent[k].size());
        EXPECT_EQ(std::memcmp(page(k - 1) + RTE_PKTMBUF_HEADROOM, sent[k].data(), sent[k].size()),
                  0);
        gp.recycle(m);
    }
    EXPECT_TRUE(receive((*port)->id(), 1, 300).empty()) << "no buffer was posted for frame 16";

    // One more buffer: the next frame goes into buffer 15, still in order.
    {
        rte_mbuf* m = gp.take_header();
        ASSERT_NE(m, nullptr);
        ASSERT_TRUE(gp.push_ready(m, page(kPosted), GuestBufKind::guest, 1000 + kPosted));
        const auto extra = payload_frame(guest_mac(1), peer_mac(), 99, 7, 1514);
        ASSERT_TRUE(peer.send(extra));
        auto more = receive((*port)->id(), 1, 30'000);
        ASSERT_EQ(more.size(), 1u);
        EXPECT_EQ(GuestBufferPool::info(more[0]).post, 1000 + kPosted - 1);
        EXPECT_EQ(std::memcmp(page(kPosted - 1) + RTE_PKTMBUF_HEADROOM, extra.data(), extra.size()),
                  0);
        gp.recycle(more[0]);
    }

    // Releasing the queue frees the buffer net_tap held: it comes back bound, "returned".
    CT_ASSERT_OK((*port)->stop());
    gp.set_start_mode(true);
    CT_ASSERT_OK((*port)->setup_rx_queue(0, gp.mempool()));
    rte_mbuf* back = gp.pop_returned();
    ASSERT_NE(back, nullptr);
    EXPECT_EQ(GuestBufferPool::info(back).post, 1000 + kPosted);
    gp.recycle(back);
    EXPECT_EQ(gp.pop_returned(), nullptr);
    port->reset(); // closes the port: its placeholders come home
    const pmd::GuestPoolCounts c = gp.counts();
    EXPECT_EQ(c.headers_free, c.headers);
    EXPECT_EQ(c.placeholders_free, c.placeholders);
    EXPECT_EQ(c.ready, 0u);
}

// The zero-copy pipeline keeps one header per post slot (ZeroCopyRx::headers): the same
// header is bound and pushed again for each buffer its slot posts, never through the free
// list; the PMD allocates exactly the posted headers in post order, each with its new
// buffer; a kept header the PMD frees while bound comes back "returned", never free; the
// owner gives it back at the end.
TEST(GuestPool, AKeptHeaderIsReboundForEachPostAndNeverFreedByThePmd) {
    CT_ASSERT_OK(pmd::init_eal(test_eal()));
    pmd::GuestPoolConfig gc;
    gc.name = "ct_pool_kept";
    gc.headers = 8;
    auto pool = GuestBufferPool::create(gc);
    CT_ASSERT_OK(pool);
    GuestBufferPool& gp = **pool;
    gp.set_start_mode(false);
    rte_mempool* mp = gp.mempool();
    std::unique_ptr<std::byte, PageDeleter> mem(
        static_cast<std::byte*>(std::aligned_alloc(4096, 4096 * 4)));
    auto page = [&](unsigned i) { return mem.get() + std::size_t{i} * 4096; };

    rte_mbuf* kept[2] = {gp.take_header(), gp.take_header()};
    ASSERT_NE(kept[0], nullptr);
    ASSERT_NE(kept[1], nullptr);
    ASSERT_NE(kept[0], kept[1]);
    EXPECT_EQ(gp.counts().headers_free, 6u);
    for (unsigned post = 0; post < 6; ++post) {
        rte_mbuf* m = kept[post % 2];
        // A frame the NIC wrote last time: the next bind rewrites what a PMD reads.
        m->data_len = 60;
        m->pkt_len = 60;
        m->ol_flags = RTE_MBUF_F_RX_L4_CKSUM_GOOD;
        ASSERT_TRUE(gp.push_ready(m, page(post % 4) + 2048, GuestBufKind::guest, post, 2048));
        void* got = nullptr;
        ASSERT_EQ(rte_mempool_get(mp, &got), 0) << "post " << post;
        ASSERT_EQ(got, m) << "the PMD gets the posted header";
        EXPECT_EQ(GuestBufferPool::info(m).post, post);
        EXPECT_TRUE(GuestBufferPool::info(m).bound);
        EXPECT_EQ(m->buf_addr, page(post % 4) + 2048);
        EXPECT_EQ(m->buf_len, 2048);
        EXPECT_EQ(m->data_off, RTE_PKTMBUF_HEADROOM);
        EXPECT_EQ(m->data_len, 0);
        EXPECT_EQ(m->pkt_len, 0u);
        EXPECT_EQ(m->ol_flags, 0u);
        EXPECT_EQ(gp.counts().headers_free, 6u) << "a kept header never reaches the free list";
    }
    void* none = nullptr;
    EXPECT_LT(rte_mempool_get(mp, &none), 0) << "nothing posted: back-pressure";

    // The PMD gives up a posted buffer: the header comes back returned, still bound.
    ASSERT_TRUE(gp.push_ready(kept[0], page(0), GuestBufKind::guest, 6));
    void* got = nullptr;
    ASSERT_EQ(rte_mempool_get(mp, &got), 0);
    rte_mempool_put(mp, got);
    EXPECT_EQ(gp.pop_returned(), kept[0]);
    EXPECT_EQ(gp.pop_returned(), nullptr);
    EXPECT_EQ(gp.counts().headers_free, 6u);

    gp.recycle(kept[0]);
    gp.recycle(kept[1]);
    const pmd::GuestPoolCounts c = gp.counts();
    EXPECT_EQ(c.headers_free, c.headers);
    EXPECT_EQ(c.ready, 0u);
    EXPECT_EQ(c.returned, 0u);
}

TEST(PortClassification, CopyingPmdsAreNotZeroCopy) {
    CT_ASSERT_OK(pmd::init_eal(test_eal()));
    pmd::PortConfig pc;
    pc.name = "nullport";
    pc.device = "net_null_cls";
    pc.steering = pmd::Steering::dedicated_port;
    auto port = pmd::Port::open(pc);
    CT_ASSERT_OK(port);
    std::string why;
    EXPECT_FALSE((*port)->can_zero_copy(&why));
    EXPECT_NE(why.find("net_null"), std::string::npos) << why;
    EXPECT_EQ((*port)->caps().driver_caps.rx_buffers, pmd::RxBufferUse::own_memory);
}

// rx_peer_fills_pool: a net_ring port whose peer fills the RX queue's buffers is in order
// (zero copy) and bursts are not capped by the posted buffers; a PMD that does not hand over
// a peer's mbufs refuses the setting.
TEST(PortClassification, APeerThatFillsThePoolMakesNetRingZeroCopy) {
    CT_ASSERT_OK(pmd::init_eal(test_eal()));
    rte_ring* r = rte_ring_create("clsring", 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(r, nullptr);
    pmd::PortConfig pc;
    pc.name = "ringport";
    pc.device = ring_ethdev("clsring", r, r);
    ASSERT_FALSE(pc.device.empty());
    pc.steering = pmd::Steering::dedicated_port;
    {
        auto port = pmd::Port::open(pc);
        CT_ASSERT_OK(port);
        std::string why;
        EXPECT_FALSE((*port)->can_zero_copy(&why)) << "net_ring alone hands over daemon mbufs";
        EXPECT_NE(why.find("peer"), std::string::npos) << why;
    }
    pc.rx_peer_fills_pool = true;
    {
        auto port = pmd::Port::open(pc);
        CT_ASSERT_OK(port);
        std::string why;
        EXPECT_TRUE((*port)->can_zero_copy(&why)) << why;
        EXPECT_EQ((*port)->caps().driver_caps.rx_buffers, pmd::RxBufferUse::in_order);
        EXPECT_FALSE((*port)->caps().driver_caps.burst_within_ready);
    }
    pmd::PortConfig null;
    null.name = "nullfill";
    null.device = "net_null_fill";
    null.steering = pmd::Steering::dedicated_port;
    null.rx_peer_fills_pool = true;
    auto refused = pmd::Port::open(null);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, Errc::invalid_argument);
    EXPECT_NE(refused.error().message.find("rx_peer_fills_pool"), std::string::npos);
    rte_ring_free(r);
}

TEST(EalOptions, RefusesWhatCannotWork) {
    pmd::EalOptions o = test_eal();
    o.worker_lcores = {};
    EXPECT_FALSE(pmd::eal_arguments(o).has_value());
    o = test_eal();
    o.worker_lcores = {0, 1};
    EXPECT_FALSE(pmd::eal_arguments(o).has_value()) << "main lcore among the workers";
    o = test_eal();
    o.memory_mb = 0;
    EXPECT_FALSE(pmd::eal_arguments(o).has_value()) << "no_huge without -m";
    o = test_eal();
    o.extra_args = {"--in-memory"};
    EXPECT_FALSE(pmd::eal_arguments(o).has_value());
    o = test_eal();
    o.pci_allow = {"0000:01:00.0"};
    EXPECT_FALSE(pmd::eal_arguments(o).has_value()) << "no_pci with an allow list";
    auto args = pmd::eal_arguments(test_eal());
    CT_ASSERT_OK(args);
    const std::string joined = [&] {
        std::string s;
        for (const auto& a : *args)
            s += a + " ";
        return s;
    }();
    EXPECT_NE(joined.find("--no-huge -m 512"), std::string::npos) << joined;
    EXPECT_NE(joined.find("--no-pci"), std::string::npos) << joined;
    // A second initialisation with other arguments is refused, with the same accepted.
    CT_ASSERT_OK(pmd::init_eal(test_eal()));
    o = test_eal();
    o.log_level = "debug";
    auto again = pmd::init_eal(o);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, Errc::exists);
}

} // namespace
} // namespace dpnb::component
