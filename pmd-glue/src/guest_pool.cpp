// The guest-buffer mempool and its "dpnb_guest" mempool ops (dpnb/pmd/guest_pool.hpp).
#include "dpnb/pmd/guest_pool.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <mutex>
#include <new>

namespace dpnb::pmd {
namespace {

constexpr const char* kOpsName = "dpnb_guest";
constexpr std::uint16_t kPrivSize =
    static_cast<std::uint16_t>(RTE_ALIGN_CEIL(sizeof(GuestBufInfo), RTE_MBUF_PRIV_ALIGN));

GuestBufferPool* pool_of(const rte_mempool* mp) {
    return static_cast<GuestBufferPool*>(mp->pool_data);
}

int ops_alloc(rte_mempool* mp) {
    mp->pool_data = mp->pool_config; // the GuestBufferPool, given to set_ops_byname
    return mp->pool_data != nullptr ? 0 : -EINVAL;
}
void ops_free(rte_mempool* mp) {
    mp->pool_data = nullptr;
}
int ops_enqueue(rte_mempool* mp, void* const* objs, unsigned n) {
    pool_of(mp)->ops_enqueue(objs, n);
    return 0;
}
int ops_dequeue(rte_mempool* mp, void** objs, unsigned n) {
    return pool_of(mp)->ops_dequeue(objs, n);
}
unsigned ops_get_count(const rte_mempool* mp) {
    return pool_of(mp)->ops_count();
}

Status register_ops() {
    static std::once_flag once;
    static int rc = 0;
    std::call_once(once, [] {
        static rte_mempool_ops ops{};
        std::strncpy(ops.name, kOpsName, sizeof(ops.name) - 1);
        ops.alloc = ops_alloc;
        ops.free = ops_free;
        ops.enqueue = ops_enqueue;
        ops.dequeue = ops_dequeue;
        ops.get_count = ops_get_count;
        rc = rte_mempool_register_ops(&ops);
    });
    if (rc < 0)
        return make_error(Errc::internal,
                          std::string("registering mempool ops dpnb_guest: ") + rte_strerror(-rc) +
                              " (DPDK allows " + std::to_string(RTE_MEMPOOL_MAX_OPS_IDX) +
                              " mempool ops per process)",
                          -rc);
    return ok();
}

void init_header(rte_mempool* mp, void*, void* obj, unsigned) {
    auto* m = static_cast<rte_mbuf*>(obj);
    std::memset(static_cast<void*>(m), 0, mp->elt_size);
    m->priv_size = kPrivSize;
    m->pool = mp;
    m->nb_segs = 1;
    m->port = RTE_MBUF_PORT_INVALID;
    m->next = nullptr;
    rte_mbuf_refcnt_set(m, 1);
    new (rte_mbuf_to_priv(m)) GuestBufInfo{};
}

} // namespace

Result<std::unique_ptr<GuestBufferPool>> GuestBufferPool::create(const GuestPoolConfig& config) {
    if (config.name.empty() || config.name.size() > 24)
        return make_error(Errc::invalid_argument,
                          "guest pool name must have 1..24 characters: \"" + config.name + "\"");
    if (config.headers == 0)
        return make_error(Errc::invalid_argument, "guest pool needs at least one header");
    if (Status st = register_ops(); !st) return st.error();
    std::unique_ptr<GuestBufferPool> p(new GuestBufferPool(config));
    if (Status st = p->init(); !st) return st.error();
    return p;
}

Status GuestBufferPool::init() {
    iova_is_va_ = rte_eal_iova_mode() == RTE_IOVA_VA;
    free_.init(config_.headers);
    ready_.init(config_.headers);
    returned_.init(config_.headers);

    daemon_bytes_ = std::size_t{config_.placeholders + config_.bounce_buffers} * kBufferSize;
    if (daemon_bytes_ != 0) {
        daemon_mem_ = static_cast<std::byte*>(rte_zmalloc_socket(
            ("dpnb_gb_" + config_.name).c_str(), daemon_bytes_, kBufferSize, config_.socket));
        if (daemon_mem_ == nullptr)
            return make_error(Errc::io, "guest pool " + config_.name + ": no memory for " +
                                            std::to_string(daemon_bytes_) +
                                            " bytes of daemon buffers");
        for (unsigned i = 0; i < config_.placeholders; ++i)
            placeholders_free_.push_back(daemon_mem_ + std::size_t{i} * kBufferSize);
        for (unsigned i = 0; i < config_.bounce_buffers; ++i)
            bounce_free_.push_back(daemon_mem_ +
                                   std::size_t{config_.placeholders + i} * kBufferSize);
    }

    mp_ = rte_mempool_create_empty(config_.name.c_str(), config_.headers,
                                   sizeof(rte_mbuf) + kPrivSize, 0,
                                   sizeof(rte_pktmbuf_pool_private), config_.socket, 0);
    if (mp_ == nullptr)
        return make_error(
            Errc::io, "rte_mempool_create_empty(" + config_.name + "): " + rte_strerror(rte_errno),
            rte_errno);
    if (int rc = rte_mempool_set_ops_byname(mp_, kOpsName, this); rc != 0)
        return make_error(Errc::internal, "rte_mempool_set_ops_byname(dpnb_guest): " +
                                              std::string(rte_strerror(-rc)));
    // What PMDs read to size their buffers: a page of data room, our private area.
    auto* mbp = static_cast<rte_pktmbuf_pool_private*>(rte_mempool_get_priv(mp_));
    mbp->mbuf_data_room_size = kBufferSize;
    mbp->mbuf_priv_size = kPrivSize;
    mbp->flags = 0;
    populating_ = true; // objects arrive in ops_enqueue before init_header ran
    const int populated = rte_mempool_populate_default(mp_);
    populating_ = false;
    if (populated < 0 || static_cast<unsigned>(populated) != config_.headers)
        return make_error(Errc::io, "rte_mempool_populate_default(" + config_.name + "): " +
                                        (populated < 0 ? rte_strerror(-populated)
                                                       : "populated only part of the pool"));
    // populate_default enqueued every object before we could initialise them; headers are
    // initialised now, in place (they sit in free_).
    rte_mempool_obj_iter(mp_, init_header, nullptr);
    return ok();
}

GuestBufferPool::~GuestBufferPool() {
    if (mp_ != nullptr) {
        const GuestPoolCounts c = counts();
        if (c.headers_free != c.headers)
            spdlog::error("guest pool {}: {} of {} mbuf headers not back at destruction ({} in "
                          "the FIFO, {} returned unanswered)",
                          config_.name, c.headers - c.headers_free, c.headers, c.ready, c.returned);
        rte_mempool_free(mp_);
    }
    if (daemon_mem_ != nullptr) rte_free(daemon_mem_);
}

GuestPoolCounts GuestBufferPool::counts() const noexcept {
    GuestPoolCounts c;
    c.headers = config_.headers;
    c.headers_free = free_.size();
    c.ready = ready_.size();
    c.returned = returned_.size();
    c.placeholders = config_.placeholders;
    c.placeholders_free = static_cast<unsigned>(placeholders_free_.size());
    c.bounce = config_.bounce_buffers;
    c.bounce_free = static_cast<unsigned>(bounce_free_.size());
    c.placeholders_handed = placeholders_handed_;
    return c;
}

int GuestBufferPool::ops_dequeue(void** objs, unsigned n) noexcept {
    if (ready_.size() >= n) {
        for (unsigned i = 0; i < n; ++i)
            objs[i] = ready_.pop();
        return 0;
    }
    if (start_mode_ && ready_.size() == 0 && free_.size() >= n && placeholders_free_.size() >= n) {
        for (unsigned i = 0; i < n; ++i) {
            auto* m = static_cast<rte_mbuf*>(free_.pop());
            std::byte* buf = placeholders_free_.back();
            placeholders_free_.pop_back();
            attach(m, buf, kBufferSize);
            info(m).kind = GuestBufKind::placeholder;
            objs[i] = m;
        }
        placeholders_handed_ += n;
        return 0;
    }
    return -ENOBUFS;
}

void GuestBufferPool::ops_enqueue(void* const* objs, unsigned n) noexcept {
    if (populating_) {
        for (unsigned k = 0; k < n; ++k)
            (void)free_.push(objs[k]);
        return;
    }
    for (unsigned k = 0; k < n; ++k) {
        auto* m = static_cast<rte_mbuf*>(objs[k]);
        GuestBufInfo& i = info(m);
        if (i.kind == GuestBufKind::placeholder) {
            placeholders_free_.push_back(i.buffer);
            detach(m);
            (void)free_.push(m);
        } else if (i.bound) {
            // A buffer the PMD gave up without delivering a frame in it: the lcore answers
            // its request (and unmaps or releases the buffer) before the header is reused.
            (void)returned_.push(m);
        } else {
            detach(m);
            (void)free_.push(m);
        }
    }
}

unsigned GuestBufferPool::ops_count() const noexcept {
    return free_.size() + ready_.size();
}

} // namespace dpnb::pmd
