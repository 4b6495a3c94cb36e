// The I/O translation table (Ram et al., VEE 2009, section 4.1) against the simulated
// hypervisor, across processes: the guest adds and removes entries through its hypercalls;
// the backend (this process) looks them up with plain memory reads, marks buffers in flight
// in the status subtable, and cannot write the address subtable. Removal is refused while a
// buffer is in flight; so is revoking a grant the table holds.
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "sim_test_util.hpp"

namespace dpnb::hv::sim::test {
namespace {

class SimTranslationTableTest : public SimFixture {
protected:
    void SetUp() override {
        SimFixture::SetUp();
        if (HasFatalFailure()) return;
        guest_ = create("guest");
    }
    DomId guest_ = kDomIdInvalid;
};

// Steps the guest performs on request; the reply is 0 on success, else 1 + Errc.
enum Step : std::uint64_t { kRemoveRw = 1, kEndRw, kAddRw, kFinish };

std::uint64_t code(const Status& st) {
    return st ? 0 : static_cast<std::uint64_t>(st.error().code) + 1;
}
constexpr std::uint64_t kBusy = static_cast<std::uint64_t>(Errc::busy) + 1;

TEST_F(SimTranslationTableTest, LookupInFlightCountsAndRemoval) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(2);
        SIM_ASSERT_OK(pages);
        std::memset(pages->page(0), 0, kPageSize);
        std::memcpy(pages->page(1), "transmit me", 11);
        auto rw = (*gh)->grant_access(kDom0, pages->page(0), false);
        auto ro = (*gh)->grant_access(kDom0, pages->page(1), true);
        SIM_ASSERT_OK(rw);
        SIM_ASSERT_OK(ro);
        SIM_ASSERT_OK((*gh)->iott_add(kDom0, *rw));
        SIM_ASSERT_OK((*gh)->iott_add(kDom0, *ro));
        SIM_EXPECT_ERRC((*gh)->iott_add(kDom0, *rw), Errc::exists);
        link.send(*rw);
        link.send(*ro);
        for (;;) {
            SIM_RECV(link, step);
            switch (step) {
            case kRemoveRw:
                link.send(code((*gh)->iott_remove(kDom0, *rw)));
                break;
            case kEndRw:
                link.send(code((*gh)->end_access(*rw)));
                break;
            case kAddRw:
                link.send(code((*gh)->iott_add(kDom0, *rw)));
                break;
            case kFinish:
                // What the backend wrote through the table landed in our page.
                EXPECT_EQ(std::memcmp(pages->page(0) + 64, "received by the NIC", 19), 0);
                SIM_EXPECT_OK((*gh)->iott_remove(kDom0, *ro));
                SIM_EXPECT_ERRC((*gh)->iott_remove(kDom0, *ro), Errc::not_found);
                SIM_EXPECT_OK((*gh)->end_access(*ro));
                link.send(0);
                return;
            default:
                ADD_FAILURE() << "unknown step " << step;
                return;
            }
        }
    });
    auto step = [&](Step s) {
        to_guest.send(s);
        return to_guest.recv().value_or(999);
    };

    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto table = (*be)->open_translation_table(guest_);
    SIM_ASSERT_OK(table);
    SIM_RECV(to_guest, rw64);
    SIM_RECV(to_guest, ro64);
    const auto rw = static_cast<GrantRef>(rw64);
    const auto ro = static_cast<GrantRef>(ro64);
    EXPECT_EQ((*table)->guest(), guest_);
    EXPECT_EQ((*table)->valid_entries(), 2U);
    const TranslationTableView view = (*table)->view();
    ASSERT_GT(view.size, rw);
    EXPECT_NE(view.entries[rw].flags & IottEntry::kWritable, 0U);
    EXPECT_EQ(view.entries[ro].flags & IottEntry::kWritable, 0U) << "read-only grant";
    EXPECT_EQ(view.entries[rw].addr % kPageSize, 0U);

    // A read-only entry serves readers only.
    EXPECT_EQ(view.acquire(ro, true), nullptr);
    std::byte* tx = view.acquire(ro, false);
    ASSERT_NE(tx, nullptr);
    EXPECT_EQ(std::memcmp(tx, "transmit me", 11), 0);
    view.release(ro);
    EXPECT_EQ(view.acquire(view.size, false), nullptr);
    EXPECT_EQ(view.acquire(rw + 1000, false), nullptr) << "no entry";

    // An RX buffer posted to the "NIC": in flight, the guest can neither remove nor revoke.
    std::byte* rx = view.acquire(rw, true);
    ASSERT_NE(rx, nullptr);
    EXPECT_EQ(view.in_flight(rw), 1U);
    const std::uint32_t gen = view.entries[rw].gen;
    EXPECT_EQ(step(kRemoveRw), kBusy);
    EXPECT_EQ(step(kEndRw), kBusy);
    EXPECT_EQ(view.entries[rw].flags & IottEntry::kValid, IottEntry::kValid) << "restored";
    std::memcpy(rx + 64, "received by the NIC", 19);
    view.release(rw);
    EXPECT_EQ(view.in_flight(rw), 0U);

    // Not in flight any more: removed; still in no state to be revoked before that.
    EXPECT_EQ(step(kRemoveRw), 0U);
    EXPECT_EQ(view.acquire(rw, true), nullptr) << "removed entries are never handed out";
    EXPECT_EQ(view.in_flight(rw), 0U);
    EXPECT_NE(view.entries[rw].gen, gen);
    EXPECT_EQ((*table)->valid_entries(), 1U);
    // The table held the grant pinned; now the guest may revoke it...
    EXPECT_EQ(step(kEndRw), 0U);
    // ...after which it cannot be added again.
    EXPECT_EQ(step(kAddRw), static_cast<std::uint64_t>(Errc::permission_denied) + 1);
    EXPECT_EQ(step(kFinish), 0U);
    EXPECT_TRUE(guest.succeeded());
    EXPECT_EQ((*table)->valid_entries(), 0U);
}

TEST_F(SimTranslationTableTest, AddressSubtableIsReadOnlyForTheBackend) {
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(1);
        SIM_ASSERT_OK(pages);
        auto ref = (*gh)->grant_access(kDom0, pages->page(0), false);
        SIM_ASSERT_OK(ref);
        SIM_ASSERT_OK((*gh)->iott_add(kDom0, *ref));
        link.send(*ref);
        SIM_RECV(link, done);
    });
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto table = (*be)->open_translation_table(guest_);
    SIM_ASSERT_OK(table);
    SIM_RECV(to_guest, ref);
    const TranslationTableView view = (*table)->view();
    auto* entry = const_cast<IottEntry*>(&view.entries[ref]);
    const std::uint64_t addr = entry->addr;
    // A backend that tries to point an entry elsewhere faults...
    EXPECT_TRUE(
        killed_by(write_in_child(reinterpret_cast<volatile std::byte*>(&entry->addr)), SIGSEGV));
    // ...and cannot make the subtable writable.
    auto* page = reinterpret_cast<std::byte*>(reinterpret_cast<std::uintptr_t>(view.entries) &
                                              ~(kPageSize - 1));
    EXPECT_NE(::mprotect(page, kPageSize, PROT_READ | PROT_WRITE), 0);
    EXPECT_EQ(entry->addr, addr);
    // The status subtable is ours to write.
    view.status[ref] = 0;
    to_guest.send(1);
    EXPECT_TRUE(guest.succeeded());
}

TEST_F(SimTranslationTableTest, GuestHypercallsValidateTheGrant) {
    const DomId other = create("other");
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(2);
        SIM_ASSERT_OK(pages);
        auto for_other = (*gh)->grant_access(other, pages->page(0), false);
        auto revoked = (*gh)->grant_access(kDom0, pages->page(1), false);
        SIM_ASSERT_OK(for_other);
        SIM_ASSERT_OK(revoked);
        SIM_ASSERT_OK((*gh)->end_access(*revoked));
        SIM_EXPECT_ERRC((*gh)->iott_add(kDom0, *for_other), Errc::permission_denied);
        SIM_EXPECT_ERRC((*gh)->iott_add(kDom0, *revoked), Errc::permission_denied);
        SIM_EXPECT_ERRC((*gh)->iott_add(kDom0, 1U << 30), Errc::invalid_argument);
        SIM_EXPECT_ERRC((*gh)->iott_add(static_cast<DomId>(other + 30), *for_other),
                        Errc::not_found);
        SIM_EXPECT_ERRC((*gh)->iott_remove(kDom0, *for_other), Errc::not_found);
        // The table of (guest, other) is a different table.
        SIM_EXPECT_OK((*gh)->iott_add(other, *for_other));
        SIM_EXPECT_ERRC((*gh)->end_access(*for_other), Errc::busy);
        SIM_EXPECT_OK((*gh)->iott_remove(other, *for_other));
        SIM_EXPECT_OK((*gh)->end_access(*for_other));
    });
    EXPECT_TRUE(guest.succeeded());
}

// The race of translation_table.hpp with real processes: the backend acquires and releases
// as fast as it can while the guest removes and re-adds the entry. The guest stamps the
// page with the round number before each add and with kRemoved right after each successful
// removal, so a buffer handed out after its entry was removed would show kRemoved.
TEST_F(SimTranslationTableTest, AcquireNeverSucceedsAfterRemoval) {
    constexpr std::uint64_t kRounds = 300;
    constexpr std::uint64_t kRemoved = ~std::uint64_t{0};
    auto [to_guest, to_backend] = Link::make();
    Child guest([&, &link = to_backend] {
        auto gh = connect_guest(dir(), guest_);
        SIM_ASSERT_OK(gh);
        auto pages = (*gh)->alloc_pages(1);
        SIM_ASSERT_OK(pages);
        auto ref = (*gh)->grant_access(kDom0, pages->page(0), false);
        SIM_ASSERT_OK(ref);
        std::atomic_ref<std::uint64_t> stamp(*reinterpret_cast<std::uint64_t*>(pages->page(0)));
        link.send(*ref);
        SIM_RECV(link, ready);
        // Until both outcomes were seen: removals that succeeded and removals refused
        // because the backend held the buffer.
        std::uint64_t refused = 0;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(50);
        for (std::uint64_t round = 1; round <= kRounds || refused == 0; ++round) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no removal was refused";
            stamp.store(round, std::memory_order_seq_cst);
            SIM_ASSERT_OK((*gh)->iott_add(kDom0, *ref));
            for (;;) {
                const Status st = (*gh)->iott_remove(kDom0, *ref);
                if (st) break;
                ASSERT_EQ(st.error().code, Errc::busy);
                ++refused;
            }
            stamp.store(kRemoved, std::memory_order_seq_cst);
        }
        link.send(refused);
    });
    auto be = connect_backend(dir());
    SIM_ASSERT_OK(be);
    auto table = (*be)->open_translation_table(guest_);
    SIM_ASSERT_OK(table);
    SIM_RECV(to_guest, ref);
    const TranslationTableView view = (*table)->view();
    to_guest.send(1);
    std::uint64_t hits = 0;
    std::uint64_t violations = 0;
    for (;;) {
        if (std::byte* p = view.acquire(static_cast<GrantRef>(ref), true)) {
            ++hits;
            std::atomic_ref<std::uint64_t> stamp(*reinterpret_cast<std::uint64_t*>(p));
            // Hold the buffer a while, as the NIC would, checking it before and after.
            violations += stamp.load(std::memory_order_seq_cst) == kRemoved;
            for (int i = 0; i < 2000; ++i)
                violations += stamp.load(std::memory_order_relaxed) == kRemoved;
            violations += stamp.load(std::memory_order_seq_cst) == kRemoved;
            view.release(static_cast<GrantRef>(ref));
        }
        if (wait_readable(to_guest.fd(), 0)) break;
    }
    SIM_RECV(to_guest, refused);
    EXPECT_EQ(violations, 0U) << hits << " acquisitions, " << refused << " refused removals";
    RecordProperty("acquisitions", std::to_string(hits));
    RecordProperty("refused_removals", std::to_string(refused));
    EXPECT_TRUE(guest.succeeded());
    EXPECT_EQ((*table)->valid_entries(), 0U);
}

} // namespace
} // namespace dpnb::hv::sim::test
