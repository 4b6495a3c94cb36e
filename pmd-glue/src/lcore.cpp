// The poll loop of one worker lcore (lcore.hpp): commands, event channels, idle sleep. The
// RX and TX stages live in rx_path.cpp and tx_path.cpp.
#include "lcore.hpp"

#include <pthread.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "engine_core.hpp"

namespace dpnb::engine::detail {

namespace {

struct ThreadSyscalls {
    std::uint64_t reads = 0;
    std::uint64_t writes = 0;
};

// The kernel's count of a thread's read- and write-family system calls (syscr, syscw of
// /proc/PID/task/TID/io; zero where the kernel has no task I/O accounting). The loop does
// not count them itself: most are the PMD's (net_tap's readv and writev, virtio_user's kicks).
ThreadSyscalls thread_syscalls(pid_t tid) {
    ThreadSyscalls r;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/io", static_cast<int>(tid));
    std::FILE* f = std::fopen(path, "re");
    if (f == nullptr) return r;
    char line[128];
    while (std::fgets(line, sizeof line, f) != nullptr) {
        unsigned long long v = 0;
        if (std::sscanf(line, "syscr: %llu", &v) == 1) r.reads = v;
        if (std::sscanf(line, "syscw: %llu", &v) == 1) r.writes = v;
    }
    std::fclose(f);
    return r;
}

// epoll tags: what woke us.
constexpr std::uint64_t kTagWake = 1;
constexpr std::uint64_t kTagEvtchn = 2;
constexpr std::uint64_t kTagNic = 3; // | port id << 16 | queue << 32

std::uint64_t nic_tag(std::uint16_t port_id, std::uint16_t queue) noexcept {
    return kTagNic | std::uint64_t{port_id} << 16 | std::uint64_t{queue} << 32;
}

// Renames the calling thread while it lives (when `on`), then gives it its name back.
class ThreadName {
public:
    ThreadName(bool on, const std::string& name) {
        if (!on || ::prctl(PR_GET_NAME, old_) != 0) return;
        set_ = ::prctl(PR_SET_NAME, name.substr(0, 15).c_str()) == 0;
    }
    ~ThreadName() {
        if (set_) (void)::prctl(PR_SET_NAME, old_);
    }
    ThreadName(const ThreadName&) = delete;
    ThreadName& operator=(const ThreadName&) = delete;

private:
    char old_[17] = {};
    bool set_ = false;
};

std::string obj_name(const char* what, unsigned instance, unsigned index) {
    return "dpnb" + std::to_string(instance) + "_" + what + std::to_string(index);
}

} // namespace

void EngineCore::ack(Command* cmd) noexcept {
    cmd->done.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    (void)!::write(ack_fd, &one, sizeof(one));
}

void EngineCore::raise_event() noexcept {
    const std::uint64_t one = 1;
    (void)!::write(event_fd, &one, sizeof(one));
}

Lcore::Lcore(EngineCore& engine, unsigned index, unsigned lcore_id)
    : engine_(engine), index_(index), lcore_id_(lcore_id) {}

Lcore::~Lcore() {
    if (cmds_ != nullptr) rte_ring_free(cmds_);
    if (inbox_ != nullptr) rte_ring_free(inbox_);
    if (hdr_pool_ != nullptr) rte_mempool_free(hdr_pool_);
    if (ext_pool_ != nullptr) rte_mempool_free(ext_pool_);
    if (copy_pool_ != nullptr) rte_mempool_free(copy_pool_);
    if (wakefd_ >= 0) ::close(wakefd_);
    if (epfd_ >= 0) ::close(epfd_);
}

Status Lcore::init(hv::BackendHypervisor& hv, unsigned tx_mbufs) {
    stall_tsc_ =
        static_cast<std::uint64_t>(engine_.opts.rx_stall_timeout.count()) * rte_get_tsc_hz() / 1000;
    auto gt = hv.open_grant_table();
    if (!gt) return std::move(gt).error();
    gt_ = std::move(*gt);
    {
        // Linux names the IRQ of every port bound through a handle after the thread that
        // opened it: a name of this lcore's own tells its IRQs from every other handle's
        // (the control thread's, the other lcores') when it looks for the one a bind made.
        ThreadName name(engine_.opts.place_interrupts,
                        "dpnb" + std::to_string(engine_.instance) + "-lc" + std::to_string(index_));
        auto ev = hv.open_event_channels();
        if (!ev) return std::move(ev).error();
        ev_ = std::move(*ev);
    }
    if (engine_.opts.place_interrupts && engine_.placement != nullptr)
        irq_action_ = ev_->irq_action();
    cpus_ = pmd::cpus_of(rte_lcore_cpuset(lcore_id_));

    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wakefd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd_ < 0 || wakefd_ < 0) return make_error(Errc::io, "lcore epoll/eventfd", errno);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = kTagWake;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &e) != 0)
        return make_error(Errc::io, "epoll_ctl(wake fd)", errno);
    e.data.u64 = kTagEvtchn;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, ev_->fd(), &e) != 0)
        return make_error(Errc::io, "epoll_ctl(event channel fd)", errno);

    const int socket = static_cast<int>(rte_lcore_to_socket_id(lcore_id_));
    const unsigned inst = engine_.instance;
    cmds_ = rte_ring_create(obj_name("cmd", inst, index_).c_str(), 64, socket,
                            RING_F_SP_ENQ | RING_F_SC_DEQ);
    inbox_ = rte_ring_create_elem(obj_name("inbox", inst, index_).c_str(), sizeof(InboxItem), 4096,
                                  socket, RING_F_SC_DEQ);
    if (cmds_ == nullptr || inbox_ == nullptr)
        return make_error(Errc::io, std::string("lcore rings: ") + rte_strerror(rte_errno));
    // Header mbufs: the copied first bytes of a guest packet, software segments' headers.
    hdr_pool_ = rte_pktmbuf_pool_create(obj_name("hdr", inst, index_).c_str(), tx_mbufs, 128, 0,
                                        RTE_PKTMBUF_HEADROOM + 256, socket);
    // Data-less mbufs: attached to mapped guest pages, or indirect over them.
    ext_pool_ = rte_pktmbuf_pool_create(obj_name("ext", inst, index_).c_str(), tx_mbufs * 4, 128, 0,
                                        0, socket);
    if (hdr_pool_ == nullptr || ext_pool_ == nullptr)
        return make_error(Errc::io, std::string("lcore TX mbuf pools: ") + rte_strerror(rte_errno));
    // Copied TX slots, a page each at most. Half as many as header mbufs: when they run out,
    // slots are mapped instead (tx_build), so the pool bounds memory, not throughput.
    if (engine_.opts.tx_copy_slot_max != 0) {
        copy_pool_ = rte_pktmbuf_pool_create(
            obj_name("tcp", inst, index_).c_str(), std::max(tx_mbufs / 2, 64U), 128, 0,
            static_cast<std::uint16_t>(RTE_PKTMBUF_HEADROOM + engine_.opts.tx_copy_slot_max),
            socket);
        if (copy_pool_ == nullptr)
            return make_error(Errc::io,
                              std::string("lcore TX copy pool: ") + rte_strerror(rte_errno));
    }

    port_paused_.assign(engine_.ports.size(), 0);
    local_.assign(engine_.ports.size(), LocalPort{});
    local_flag_ = engine_.local_flag;
    tx_stage_.assign(engine_.ports.size(), TxStage{});
    tx_stage_ports_.assign(engine_.ports.size(), 0);
    return ok();
}

void Lcore::add_demux(std::uint16_t port_index, std::uint16_t port_id, std::uint16_t queue,
                      int intr_fd, bool intr_level) {
    NicRx n;
    n.port_index = port_index;
    n.port_id = port_id;
    n.queue = queue;
    n.intr_fd = intr_fd;
    n.intr_level = intr_level;
    nic_rx_.push_back(n);
    nic_queue_count_.store(static_cast<unsigned>(nic_rx_.size()), std::memory_order_relaxed);
    if (demux_for(port_index) == nullptr) {
        Demux d;
        d.port_index = port_index;
        demux_.push_back(std::move(d));
    }
    if (intr_fd >= 0) {
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.u64 = nic_tag(port_id, queue);
        (void)::epoll_ctl(epfd_, EPOLL_CTL_ADD, intr_fd, &e);
    }
}

bool Lcore::post(Command* cmd) {
    if (rte_ring_sp_enqueue(cmds_, cmd) != 0) return false;
    wake();
    return true;
}

void Lcore::wake() noexcept {
    const std::uint64_t one = 1;
    (void)!::write(wakefd_, &one, sizeof(one));
}

LcoreStats Lcore::stats() const {
    LcoreStats s;
    s.lcore = lcore_id_;
    s.cpus = pmd::cpu_list_text(cpus_);
    s.queues = queue_count();
    s.nic_queues = nic_queue_count_.load(std::memory_order_relaxed);
#define DPNB_X(name, help) s.name = read_counter(counters_.name);
    DPNB_LCORE_LOOP_COUNTERS(DPNB_X)
#undef DPNB_X
    if (const pid_t tid = tid_.load(std::memory_order_acquire); tid != 0) {
        const ThreadSyscalls sc = thread_syscalls(tid);
        s.read_syscalls = sc.reads;
        s.write_syscalls = sc.writes;
    }
    s.tsc_hz = rte_get_tsc_hz();
    timespec cpu{};
    if (cpu_clock_set_.load(std::memory_order_acquire) && ::clock_gettime(cpu_clock_, &cpu) == 0)
        s.cpu_ns = static_cast<std::uint64_t>(cpu.tv_sec) * 1000000000U +
                   static_cast<std::uint64_t>(cpu.tv_nsec);
#ifdef DPNB_STAGE_TIMING
    s.stage_timing = true;
#endif
    for (const StageTime& t : clock_.t)
        s.stages.push_back(StageTime{read_counter(t.cycles), read_counter(t.calls)});
    return s;
}

std::uint64_t Lcore::missing_mbufs() const {
    std::uint64_t missing = 0;
    for (rte_mempool* mp : {hdr_pool_, ext_pool_, copy_pool_})
        if (mp != nullptr) missing += mp->size - rte_mempool_avail_count(mp);
    return missing;
}

// --- the loop ------------------------------------------------------------------------------

unsigned Lcore::zc_post_depth() const noexcept {
    return std::min<unsigned>(engine_.opts.zc_depth, kRingSize);
}

// A NIC queue's burst, here beside the loop that polls it on every pass (an empty poll's
// largest part): the frames go on in receive_nic_burst (rx_path.cpp).
[[gnu::always_inline]] inline bool Lcore::do_nic_rx(NicRx& nic) {
    const bool woke = std::exchange(nic.woke, false);
    if (port_paused_[nic.port_index]) return false;
    unsigned want = engine_.opts.burst;
    if (nic.burst_within_ready) {
        // net_tap readv()s a frame into its head buffer and only then allocates the
        // replacement; when the guest pool is empty it drops the frame (rx_nombuf) and, since
        // it returned fewer frames than asked, marks its RX trigger (a signal the kernel
        // raises per queued frame) as seen, so later bursts return 0 without reading until
        // the next signal. Under a flood the tun queue is full, the kernel drops new frames
        // without signalling, and the queue stalls for good although the guest re-posts.
        // Asking for no more frames than posted buffers keeps every replacement allocation
        // satisfiable: frames the guest has no buffer for wait in the tun queue, as in a NIC
        // whose descriptor ring ran dry.
        want = std::min(want, nic.q->nic.pool->ready());
        if (want == 0) return false;
    }
    rte_mbuf* pkts[kMaxBurst];
    const std::uint16_t n =
        rte_eth_rx_burst(nic.port_id, nic.queue, pkts, static_cast<std::uint16_t>(want));
    if (n == 0) {
        if (woke) nic.woke_empty = true;
        return false;
    }
    nic.woke_empty = false;
    receive_nic_burst(nic, pkts, n);
    return true;
}

// Empty polls before sleeping again when the work after a wake-up came at once and stopped:
// one event (a frame at low rate, a guest's kick), not a stream. Spinning idle_polls after
// each such event cost more than the event itself (about 250 empty polls per frame at
// 5000 frames/s on net_tap).
constexpr unsigned kShortSpin = 8;

int Lcore::run() {
    if (::pthread_getcpuclockid(::pthread_self(), &cpu_clock_) == 0)
        cpu_clock_set_.store(true, std::memory_order_release);
    tid_.store(::gettid(), std::memory_order_release);
    const unsigned full_spin = engine_.opts.idle_polls;
    const unsigned short_spin_polls = std::min(kShortSpin, full_spin);
    const unsigned zc_depth = zc_post_depth();
    unsigned idle = 0;
    unsigned polls_since_wake = 0;
    bool short_spin = false; // since the last wake-up, work came only in its first polls
    while (!stop_) {
        bool work = false;
        {
            DPNB_STAGE(clock_, Stage::commands);
            if (rte_ring_count(cmds_) != 0) work |= do_commands();
        }
        {
            DPNB_STAGE(clock_, Stage::tx_completions);
            for (GuestQueue* q : queues_)
                if (q->tx_outstanding != 0) work |= do_tx_completions(q);
        }
        {
            DPNB_STAGE(clock_, Stage::guest_tx);
            bool sent = false;
            for (GuestQueue* q : queues_)
                if (q->tx_may_have_work()) sent |= do_guest_tx(q);
            if (n_tx_stage_ports_ != 0) tx_flush_all();
            work |= sent;
        }
        {
            DPNB_STAGE(clock_, Stage::nic_rx);
            for (NicRx& n : nic_rx_)
                work |= do_nic_rx(n);
            if (rte_ring_count(inbox_) != 0) work |= do_inbox();
        }
        {
            DPNB_STAGE(clock_, Stage::rx_deliver);
            if (n_touched_ != 0 || n_copy_free_ != 0) work |= do_rx_round();
        }
        {
            DPNB_STAGE(clock_, Stage::rx_post);
            for (GuestQueue* q : queues_)
                if (q->zc_may_post(zc_depth)) work |= zc_post(q);
        }
        for (std::size_t i = 0; i < detaching_.size();) {
            if (try_finish_detach(detaching_[i])) {
                detaching_.erase(detaching_.begin() + static_cast<std::ptrdiff_t>(i));
                work = true;
            } else {
                ++i;
            }
        }
        ++polls_since_wake;
        const unsigned limit = short_spin ? short_spin_polls : full_spin;
        if (work) {
            idle = 0;
            // Work later than the first polls after a wake-up is a stream: spin in full
            // between its bursts, as before the wake-up.
            if (polls_since_wake > kShortSpin) short_spin = false;
            bump(counters_.busy_polls);
        } else {
            bump(counters_.idle_polls);
            if (++idle >= limit) {
                DPNB_STAGE(clock_, Stage::sleep);
                sleep_when_idle();
                // Woken by work, the next poll finds it and resets the count; woken by a
                // timeout (a source that cannot wake the lcore), one empty poll is enough to
                // sleep again. Spinning idle_polls after every timer tick kept an idle lcore
                // a third busy on net_tap, where each empty poll is a readv().
                short_spin = true;
                polls_since_wake = 0;
                idle = short_spin_polls == 0 ? 0 : short_spin_polls - 1;
            }
        }
    }
    return 0;
}

// --- commands ------------------------------------------------------------------------------

bool Lcore::do_commands() {
    if (rte_ring_count(cmds_) == 0) return false;
    void* objs[16];
    const unsigned n = rte_ring_sc_dequeue_burst(cmds_, objs, 16, nullptr);
    for (unsigned i = 0; i < n; ++i)
        handle(static_cast<Command*>(objs[i]));
    return n != 0;
}

void Lcore::handle(Command* cmd) {
    switch (cmd->kind) {
    case Command::Kind::attach:
        attach_queue(cmd);
        return;
    case Command::Kind::detach:
        for (GuestQueue* q : cmd->queues) {
            q->detaching = true;
            for (auto it = nic_rx_.begin(); it != nic_rx_.end();) {
                if (it->q == q) {
                    if (it->intr_fd >= 0)
                        (void)::epoll_ctl(epfd_, EPOLL_CTL_DEL, it->intr_fd, nullptr);
                    it = nic_rx_.erase(it);
                } else {
                    ++it;
                }
            }
            rte_pktmbuf_free_bulk(q->pending.data(), q->n_pending);
            q->n_pending = 0;
            if (q->zc) {
                zc_drop_posted(q); // buffers the NIC has not taken yet
                cmd->nic_held = cmd->nic_held || q->zc->posted != 0;
            }
        }
        nic_queue_count_.store(static_cast<unsigned>(nic_rx_.size()), std::memory_order_relaxed);
        if (!try_finish_detach(cmd)) detaching_.push_back(cmd);
        return;
    case Command::Kind::release_nic:
        release_nic(cmd);
        return;
    case Command::Kind::steer_add: {
        Demux* d = demux_for(cmd->port_index);
        if (d == nullptr) {
            cmd->result = make_error(Errc::internal, "steer_add on a lcore without that demux");
        } else {
            std::uint64_t k = 0;
            std::memcpy(&k, cmd->mac.bytes.data(), 6);
            const Target t{cmd->target_lcore == index_ ? queue_by_key(cmd->key) : nullptr, cmd->key,
                           cmd->target_lcore};
            d->unicast[k] = t;
            d->all.push_back(t);
        }
        engine_.ack(cmd);
        return;
    }
    case Command::Kind::steer_remove: {
        if (Demux* d = demux_for(cmd->port_index); d != nullptr) {
            for (auto it = d->unicast.begin(); it != d->unicast.end();)
                it = it->second.key == cmd->key ? d->unicast.erase(it) : std::next(it);
            d->all.erase(std::remove_if(d->all.begin(), d->all.end(),
                                        [&](const Target& t) { return t.key == cmd->key; }),
                         d->all.end());
        }
        engine_.ack(cmd);
        return;
    }
    case Command::Kind::local_add:
        local_add(cmd);
        engine_.ack(cmd);
        return;
    case Command::Kind::local_remove:
        local_remove(cmd);
        engine_.ack(cmd);
        return;
    case Command::Kind::set_mode:
        for (GuestQueue* q : cmd->queues) {
            if (cmd->have_view) {
                q->view = cmd->view;
                q->have_view = true;
            }
            q->mode = cmd->mode;
            if (q->index == 0) q->shared->rx_mode.store(static_cast<std::uint8_t>(cmd->mode));
        }
        engine_.ack(cmd);
        return;
    case Command::Kind::set_rate:
        for (GuestQueue* q : cmd->queues) {
            q->rate = RateState{};
            if (cmd->rate && cmd->rate->bytes != 0 && cmd->rate->usec != 0) {
                q->rate.on = true;
                q->rate.credit_bytes = cmd->rate->bytes;
                q->rate.period_tsc = usec_to_tsc(cmd->rate->usec);
                // As Linux netback: a burst may use up to 128 KiB when the credit is smaller,
                // so that a 64 KiB GSO packet can always go out.
                q->rate.max_credit = std::max<std::uint64_t>(cmd->rate->bytes, 131072);
                q->rate.remaining = cmd->rate->bytes;
                q->rate.next_refill = rte_get_tsc_cycles() + q->rate.period_tsc;
            }
        }
        engine_.ack(cmd);
        return;
    case Command::Kind::set_mcast_control:
        for (GuestQueue* q : cmd->queues)
            q->mcast->enabled = cmd->flag;
        engine_.ack(cmd);
        return;
    case Command::Kind::set_hash:
        for (GuestQueue* q : cmd->queues)
            q->hash = cmd->hash;
        engine_.ack(cmd);
        return;
    case Command::Kind::port_pause:
    case Command::Kind::port_resume:
        if (cmd->port_index < port_paused_.size())
            port_paused_[cmd->port_index] = cmd->kind == Command::Kind::port_pause ? 1 : 0;
        engine_.ack(cmd);
        return;
    case Command::Kind::stop:
        stop_ = true;
        engine_.ack(cmd);
        return;
    }
}

// A guest of port `port_index` that this lcore's guests on the port deliver to directly.
void Lcore::local_add(Command* cmd) {
    if (cmd->port_index >= local_.size()) {
        cmd->result = make_error(Errc::internal, "local_add for an unknown port");
        return;
    }
    LocalPort& lp = local_[cmd->port_index];
    LocalTarget t;
    t.to = Target{cmd->target_lcore == index_ ? queue_by_key(cmd->key) : nullptr, cmd->key,
                  cmd->target_lcore};
    std::memcpy(&t.mac, cmd->mac.bytes.data(), 6);
    t.features = cmd->rx_features;
    lp.unicast[t.mac] = t;
    lp.all.push_back(t);
}

void Lcore::local_remove(Command* cmd) {
    if (cmd->port_index >= local_.size()) return;
    LocalPort& lp = local_[cmd->port_index];
    for (auto it = lp.unicast.begin(); it != lp.unicast.end();)
        it = it->second.to.key == cmd->key ? lp.unicast.erase(it) : std::next(it);
    std::erase_if(lp.all, [&](const LocalTarget& t) { return t.to.key == cmd->key; });
}

void Lcore::attach_queue(Command* cmd) {
    std::vector<GuestQueue*> bound;
    auto unbind_all = [&] {
        for (GuestQueue* q : bound) {
            if (q->tx_port != 0) (void)ev_->unbind(q->tx_port);
            if (q->rx_port != 0 && q->rx_port != q->tx_port) (void)ev_->unbind(q->rx_port);
            q->tx_port = q->rx_port = 0;
        }
    };
    for (GuestQueue* q : cmd->queues) {
        bound.push_back(q);
        q->irq = {-1, -1};
        auto tp = bind_placed(q, q->tx_remote, 0);
        if (!tp) {
            unbind_all();
            cmd->result =
                make_error(Errc::protocol, "binding event channel " + std::to_string(q->tx_remote) +
                                               " of domain " + std::to_string(q->dom) + ": " +
                                               tp.error().message);
            engine_.ack(cmd);
            return;
        }
        q->tx_port = q->rx_port = *tp;
        if (q->split_evtchn) {
            auto rp = bind_placed(q, q->rx_remote, 1);
            if (!rp) {
                unbind_all();
                cmd->result = make_error(Errc::protocol,
                                         "binding event channel " + std::to_string(q->rx_remote) +
                                             " of domain " + std::to_string(q->dom) + ": " +
                                             rp.error().message);
                engine_.ack(cmd);
                return;
            }
            q->rx_port = *rp;
        }
    }
    for (GuestQueue* q : cmd->queues) {
        q->owner = this;
        q->rx_check = netif::RxRequestCheck(q->rx_buffers);
        q->rx_geo = q->rx_check.geometry();
        std::snprintf(q->name, sizeof(q->name), "vif%u.%u", unsigned{q->vif.dom},
                      unsigned{q->vif.handle});
        queues_.push_back(q);
        by_key_[queue_key_slot(q->key)] = q;
        by_port_[q->tx_port] = q;
        by_port_[q->rx_port] = q;
        if (q->nic.kind != NicKind::none) {
            NicRx n;
            n.port_index = q->nic.port_index;
            n.port_id = q->nic.port_id;
            n.queue = q->nic.queue;
            n.q = q;
            n.intr_fd = q->nic.intr_fd;
            n.intr_level = q->nic.intr_level;
            n.burst_within_ready =
                q->zc &&
                engine_.ports[q->nic.port_index]->port->caps().driver_caps.burst_within_ready;
            if (n.intr_fd >= 0) {
                epoll_event e{};
                e.events = EPOLLIN;
                e.data.u64 = nic_tag(n.port_id, n.queue);
                (void)::epoll_ctl(epfd_, EPOLL_CTL_ADD, n.intr_fd, &e);
            }
            nic_rx_.push_back(n);
        }
        if (q->index == 0) q->shared->rx_mode.store(static_cast<std::uint8_t>(q->mode));
    }
    queue_count_.store(static_cast<unsigned>(queues_.size()), std::memory_order_relaxed);
    nic_queue_count_.store(static_cast<unsigned>(nic_rx_.size()), std::memory_order_relaxed);
    engine_.ack(cmd);
}

// Binds `remote` of q's guest and, with place_interrupts, moves the IRQ Linux made for the
// new port to this lcore's CPUs (`which`: 0 the TX or shared channel, 1 the RX one). A
// placement that fails leaves the guest served: a counter and a rate-limited line.
Result<hv::EvtchnPort> Lcore::bind_placed(GuestQueue* q, hv::EvtchnPort remote, unsigned which) {
    if (!engine_.opts.place_interrupts || engine_.placement == nullptr) {
        q->irq_placement = pmd::IrqPlacement::off;
        return ev_->bind_interdomain(q->dom, remote);
    }
    if (!irq_action_) {
        q->irq_placement = pmd::IrqPlacement::no_irq;
        return ev_->bind_interdomain(q->dom, remote);
    }
    std::optional<std::vector<unsigned>> before;
    if (auto b = engine_.placement->irqs_named(*irq_action_)) before = std::move(*b);
    auto port = ev_->bind_interdomain(q->dom, remote);
    if (!port) return port;
    pmd::IrqPlaced r = pmd::place_new_irq(*engine_.placement, *irq_action_, before, cpus_);
    if (r.irq) q->irq[which] = static_cast<int>(*r.irq);
    // The queue's result is its worst: a failure of either channel shows.
    if (which == 0 || pmd::placement_failed(r.result)) q->irq_placement = r.result;
    if (pmd::placement_failed(r.result)) {
        bump(counters_.irq_placement_failures);
        if (placement_log_.allow())
            spdlog::warn("vif{}.{} queue {}: event channel {}: IRQ not moved to CPU(s) {} of "
                         "lcore {}: {} ({} line(s) suppressed)",
                         unsigned{q->vif.dom}, unsigned{q->vif.handle}, q->index, *port,
                         pmd::cpu_list_text(cpus_), lcore_id_, r.error,
                         placement_log_.take_suppressed());
    }
    return port;
}

bool Lcore::try_finish_detach(Command* cmd) {
    for (GuestQueue* q : cmd->queues) {
        do_tx_completions(q);
        if (q->tx_outstanding != 0) {
            tx_cleanup_held();
            return false;
        }
    }
    if (!cmd->nic_held)
        for (GuestQueue* q : cmd->queues)
            finish_queue(q);
    engine_.ack(cmd);
    return true;
}

void Lcore::release_nic(Command* cmd) {
    for (GuestQueue* q : cmd->queues) {
        if (q->zc) zc_collect_returned(q);
        finish_queue(q);
    }
    engine_.ack(cmd);
}

void Lcore::finish_queue(GuestQueue* q) {
    if (q->zc) zc_finish(q);
    if (q->tx_port != 0) {
        by_port_.erase(q->tx_port);
        (void)ev_->unbind(q->tx_port);
    }
    if (q->rx_port != 0 && q->rx_port != q->tx_port) {
        by_port_.erase(q->rx_port);
        (void)ev_->unbind(q->rx_port);
    }
    q->tx_port = q->rx_port = 0;
    by_key_[queue_key_slot(q->key)] = nullptr;
    queues_.erase(std::remove(queues_.begin(), queues_.end(), q), queues_.end());
    if (q->rx_touched) {
        q->rx_touched = false;
        auto end = std::remove(touched_.begin(), touched_.begin() + n_touched_, q);
        n_touched_ = static_cast<std::uint32_t>(end - touched_.begin());
    }
    // A steering command normally removed the queue's demux targets first; none may outlive it.
    for (Demux& d : demux_) {
        for (auto& [mac, t] : d.unicast)
            if (t.local == q) t.local = nullptr;
        for (Target& t : d.all)
            if (t.local == q) t.local = nullptr;
    }
    queue_count_.store(static_cast<unsigned>(queues_.size()), std::memory_order_relaxed);
}

// --- events and sleep ----------------------------------------------------------------------

// The guest notifications that fired: counted, and their ports unmasked so that the next
// one wakes us. Read only when epoll said the event-channel fd is readable: a read that finds
// nothing is a system call per sleep for nothing (docs/metrics.md, "System calls per packet").
void Lcore::do_events() {
    for (;;) {
        auto p = ev_->pending();
        if (!p || !p->has_value()) break;
        const hv::EvtchnPort port = **p;
        if (auto it = by_port_.find(port); it != by_port_.end())
            bump(it->second->counters.c.notify_received);
        (void)ev_->unmask(port);
    }
}

bool Lcore::dma_map_run(GuestQueue* q, hv::DmaMapper* dma, const hv::GrantMapping& m) {
    bump(counters_.dma_map_calls);
    const std::size_t len = std::size_t{m.count} * hv::kPageSize;
    if (Status st = dma->map(reinterpret_cast<std::uintptr_t>(m.base), len); !st) [[unlikely]] {
        bump(counters_.dma_map_failures);
        DPNB_DP_LOG(q->log, WARN, "{} queue {}: IOMMU map of {} page(s) refused: {}", q->name,
                    q->index, m.count, st.error().message);
        return false;
    }
    return true;
}

Status Lcore::unmap_run(GuestQueue* q, hv::DmaMapper*& dma, hv::GrantMapping& m) {
    if (dma != nullptr) {
        bump(counters_.dma_unmap_calls);
        const std::size_t len = std::size_t{m.count} * hv::kPageSize;
        if (Status st = dma->unmap(reinterpret_cast<std::uintptr_t>(m.base), len); !st)
            [[unlikely]] {
            bump(counters_.dma_unmap_failures);
            DPNB_DP_LOG(q->log, ERROR,
                        "{} queue {}: IOMMU unmap of {} page(s) refused, their grants stay "
                        "mapped: {}",
                        q->name, q->index, m.count, st.error().message);
            return st;
        }
        dma = nullptr;
    }
    return grant_unmap(m);
}

void Lcore::disable(GuestQueue* q, const char* what, const char* detail) {
    if (q->disabled) return;
    q->disabled = true;
    const char* sep = *detail != '\0' ? ": " : "";
    spdlog::warn("{} queue {}: disabled: {}{}{}", q->name, q->index, what, sep, detail);
    if (!q->shared->disabled.load(std::memory_order_relaxed)) {
        std::snprintf(q->shared->disabled_reason, sizeof(q->shared->disabled_reason), "%s%s%s",
                      what, sep, detail);
        q->shared->disabled.store(true, std::memory_order_release);
        engine_.raise_event();
    }
}

void Lcore::report_fallback(GuestQueue* q, RxMode mode, const char* why) {
    spdlog::warn("{} queue {}: RX mode {} -> {}: {}", q->name, q->index, to_string(q->mode),
                 to_string(mode), why);
    q->mode = mode;
    if (q->index == 0) q->shared->rx_mode.store(static_cast<std::uint8_t>(mode));
    if (!q->shared->fallback.load(std::memory_order_relaxed)) {
        std::snprintf(q->shared->fallback_reason, sizeof(q->shared->fallback_reason), "%s", why);
        q->shared->fallback.store(true, std::memory_order_release);
        engine_.raise_event();
    }
}

void Lcore::notify_rx(GuestQueue* q) {
    bump(counters_.notify_calls);
    if (ev_->notify(q->rx_port)) bump(q->counters.c.notify_sent);
}

void Lcore::notify_tx(GuestQueue* q) {
    bump(counters_.notify_calls);
    if (ev_->notify(q->tx_port)) bump(q->counters.c.notify_sent);
}

void Lcore::listen_nic(NicRx& n, bool on) {
    if (n.listening == on) return;
    epoll_event e{};
    e.events = on ? std::uint32_t{EPOLLIN} : 0U;
    e.data.u64 = nic_tag(n.port_id, n.queue);
    if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, n.intr_fd, &e) == 0) n.listening = on;
}

void Lcore::sleep_when_idle() {
    // Notifications that fired while the loop was busy keep the event-channel fd readable:
    // the epoll below returns at once and reads them (their ports stay masked until then).
    const auto& o = engine_.opts;
    std::uint64_t timeout_us = static_cast<std::uint64_t>(o.max_sleep.count()) * 1000;
    const auto poll_us = static_cast<std::uint64_t>(o.poll_sleep.count());
    const std::uint64_t hz = rte_get_tsc_hz();
    const std::uint64_t now = rte_get_tsc_cycles();
    for (GuestQueue* q : queues_) {
        if (q->tx_outstanding != 0) timeout_us = std::min(timeout_us, poll_us);
        if (q->disabled || q->detaching) continue;
        // Arm the rings: a request produced after this makes the frontend notify us.
        if (!q->tx_blocked && q->tx.final_check_for_requests()) return;
        // A stalled queue recovers when its guest posts, frames or not (carrier on).
        if (q->rx_stalled && q->rx.final_check_for_requests()) {
            (void)rx_stall_over(q);
            return;
        }
        if (q->tx_blocked && q->rate.on) {
            const std::uint64_t wait =
                q->rate.next_refill > now ? (q->rate.next_refill - now) * 1000000 / hz : 0;
            timeout_us = std::min(timeout_us, wait + 1);
        } else if (q->tx_blocked) {
            timeout_us = std::min(timeout_us, poll_us);
        }
        if (q->zc && q->zc->posted < zc_post_depth()) {
            if (q->rx.final_check_for_requests()) return;
            if (!q->rx_notify) timeout_us = std::min(timeout_us, poll_us);
        }
        if (!q->zc && q->rx.unanswered() != 0) timeout_us = std::min(timeout_us, poll_us);
        // Frames wait for this guest's buffers: its next post must wake us.
        if (q->n_pending != 0 && q->rx.final_check_for_requests()) return;
    }
    if (timeout_us > poll_us) tx_cleanup_held();
    for (NicRx& n : nic_rx_) {
        if (n.intr_fd < 0) {
            timeout_us = std::min(timeout_us, poll_us);
            continue;
        }
        if (n.intr_level) {
            // Frames the guest pool cannot take keep the fd readable: the guest's event
            // channel wakes us when it posts (the RX ring was armed above).
            const bool starved = n.burst_within_ready && n.q->nic.pool->ready() == 0;
            const bool listen = !starved && !n.woke_empty;
            if (!listen && !starved) timeout_us = std::min(timeout_us, poll_us);
            listen_nic(n, listen);
            continue;
        }
        n.intr_armed = rte_eth_dev_rx_intr_enable(n.port_id, n.queue) == 0;
        if (!n.intr_armed) timeout_us = std::min(timeout_us, poll_us);
    }
    // A frame that reached a queue before it was armed raised no interrupt (vhost signals
    // only what it adds while the ring asks for interrupts): one more poll of armed queues.
    bool late = false;
    for (NicRx& n : nic_rx_)
        late = (n.intr_armed && do_nic_rx(n)) || late;
    sleeping_.store(true, std::memory_order_seq_cst);
    bool work = late || rte_ring_count(cmds_) != 0 || rte_ring_count(inbox_) != 0;
    for (GuestQueue* q : queues_)
        work = work || rte_ring_count(q->tx_done) != 0;
    if (!work) {
        bump(counters_.sleeps);
        epoll_event events[8];
        timespec ts{static_cast<time_t>(timeout_us / 1000000),
                    static_cast<long>((timeout_us % 1000000) * 1000)};
        // epoll_pwait2 (Linux 5.11) sleeps in microseconds; a driver domain on an older
        // kernel, or valgrind (bench/callgrind.sh), answers ENOSYS: fall back to epoll_wait,
        // rounding the sleep up to whole milliseconds.
        int ready = -1;
        if (!use_epoll_wait_) {
            ready = ::epoll_pwait2(epfd_, events, 8, &ts, nullptr);
            if (ready < 0 && errno == ENOSYS) use_epoll_wait_ = true;
        }
        if (use_epoll_wait_)
            ready = ::epoll_wait(epfd_, events, 8, static_cast<int>((timeout_us + 999) / 1000));
        for (int i = 0; i < ready; ++i) {
            if (events[i].data.u64 == kTagWake) {
                std::uint64_t v = 0; // an eventfd: one read takes the whole count
                (void)!::read(wakefd_, &v, sizeof(v));
                continue;
            }
            if (events[i].data.u64 == kTagEvtchn) {
                do_events();
                continue;
            }
            if ((events[i].data.u64 & 0xFFFF) != kTagNic) continue;
            for (NicRx& n : nic_rx_) {
                if (nic_tag(n.port_id, n.queue) != events[i].data.u64) continue;
                n.woke = true;
                // An armed queue's fd is an eventfd the device adds to (VFIO's MSI-X,
                // virtio_user's call fd): read, or it stays readable and every later sleep
                // returns at once (found in the Xen lab: a virtio_user port spun an idle lcore).
                eventfd_t count = 0;
                if (!n.intr_level) (void)::eventfd_read(n.intr_fd, &count);
            }
        }
    }
    sleeping_.store(false, std::memory_order_seq_cst);
    for (NicRx& n : nic_rx_)
        if (n.intr_armed) {
            rte_eth_dev_rx_intr_disable(n.port_id, n.queue);
            n.intr_armed = false;
        }
}

} // namespace dpnb::engine::detail
