// The netfront's control path: the xenbus handshake with the backend (Linux netfront's
// netfront_probe / talk_to_netback / xennet_connect / netback_changed), the reconnection
// after the backend went away, the orderly close, and the poll loop that drives the queues.
#include "dpnb/netfront/netfront.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "ctrl_ring.hpp"
#include "dpnb/netif/features.hpp"
#include "queue.hpp"

namespace dpnb::netfront {

using netif::XenbusState;
namespace nkey = netif::key;

namespace {

constexpr std::string_view kBackendToken = "dpnb-netfront-backend";

Status ignore_missing(Status st) {
    if (!st && st.error().code == Errc::not_found) return ok();
    return st;
}

} // namespace

const char* to_string(RxMode m) noexcept {
    return m == RxMode::reuse ? "reuse" : "copy";
}

const char* to_string(TxStatus s) noexcept {
    switch (s) {
    case TxStatus::okay:
        return "okay";
    case TxStatus::error:
        return "error";
    case TxStatus::dropped:
        return "dropped";
    case TxStatus::bad_status:
        return "bad_status";
    case TxStatus::aborted:
        return "aborted";
    }
    return "?";
}

const char* to_string(LinkState s) noexcept {
    switch (s) {
    case LinkState::initialising:
        return "initialising";
    case LinkState::connecting:
        return "connecting";
    case LinkState::connected:
        return "connected";
    case LinkState::failing:
        return "failing";
    case LinkState::closing:
        return "closing";
    case LinkState::closed:
        return "closed";
    case LinkState::gone:
        return "gone";
    }
    return "?";
}

std::size_t RxFrameView::copy_to(std::span<std::byte> out) const {
    std::size_t n = 0;
    for (const RxSegment& s : segments) {
        const std::size_t take = std::min<std::size_t>(s.len, out.size() - n);
        std::copy_n(s.data, take, out.data() + n);
        n += take;
        if (n == out.size()) break;
    }
    return n;
}

// --- life cycle -------------------------------------------------------------------------------

Netfront::Netfront(hv::GuestHypervisor& hv, const NetfrontOptions& options)
    : hv_(hv), options_(options) {
    if (options_.max_queues == 0) options_.max_queues = 1;
    options_.max_queues = std::min(options_.max_queues, netif::kMaxQueuesLimit);
}

Result<std::unique_ptr<Netfront>> Netfront::create(hv::GuestHypervisor& hv,
                                                   const NetfrontOptions& options) {
    std::unique_ptr<Netfront> nf(new Netfront(hv, options));
    if (Status st = nf->init(); !st) return st.error();
    return nf;
}

Status Netfront::init() {
    auto xs = hv_.open_xenstore();
    if (!xs) return std::move(xs).error();
    xs_ = std::move(*xs);
    auto ev = hv_.open_event_channels();
    if (!ev) return std::move(ev).error();
    evtchn_ = std::move(*ev);

    auto home = xs_->domain_path(hv_.self());
    if (!home) return std::move(home).error();
    const std::string dev = "device/vif/" + netif::format_unsigned(options_.handle);
    fe_path_ = *home + "/" + dev;
    error_path_ = *home + "/error/" + dev + "/error";

    // The toolstack's keys (our own folder, written by dom0): where the backend is.
    auto backend = xs_->read(hv::kNoTxn, fe_path_ + "/backend");
    if (!backend) return std::move(backend).error();
    auto backend_id = xs_->read(hv::kNoTxn, fe_path_ + "/backend-id");
    if (!backend_id) return std::move(backend_id).error();
    auto id = netif::parse_domid(*backend_id, "backend-id");
    if (!id) return std::move(id).error();
    auto bp = netif::parse_backend_path(*backend);
    if (!bp) return std::move(bp).error();
    if (bp->backend != *id || bp->frontend != hv_.self() || bp->handle != options_.handle)
        return make_error(Errc::protocol, fe_path_ + "/backend " + netif::quote(*backend) +
                                              " does not name this vif's backend");
    backend_ = *id;
    be_path_ = *backend;

    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return make_error(Errc::io, "epoll_create1", errno);
    for (int fd : {xs_->watch_fd(), evtchn_->fd()}) {
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = fd;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e) != 0)
            return make_error(Errc::io, "epoll_ctl", errno);
    }

    // xennet_create_dev: Initialising, then wait for the backend (netback_changed).
    if (Status st = switch_state(XenbusState::initialising); !st) return st;
    state_ = LinkState::initialising;
    return xs_->watch(be_path_, kBackendToken);
}

Netfront::~Netfront() {
    if (!queues_.empty()) disconnect();
    retry_deferred();
    if (!deferred_.empty())
        spdlog::warn("netfront: {} grant(s) still in use by the backend at exit", deferred_.size());
    pool_.reset();
    if (xs_) (void)xs_->unwatch(be_path_, kBackendToken);
    evtchn_.reset();
    xs_.reset();
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

int Netfront::fd() const noexcept {
    return epoll_fd_;
}

bool Netfront::using_static_grants() const noexcept {
    return ctrl_ != nullptr && ctrl_->static_grants();
}

bool Netfront::hash_accepted() const noexcept {
    return ctrl_ != nullptr && ctrl_->hash_accepted();
}

unsigned Netfront::num_queues() const noexcept {
    return static_cast<unsigned>(queues_.size());
}

PoolStats Netfront::pool_stats() const {
    return pool_ ? pool_->stats() : PoolStats{};
}

double Netfront::reuse_rate() const noexcept {
    const std::uint64_t posts = counters_[Counter::rx_posts];
    return posts == 0
               ? 0.0
               : static_cast<double>(counters_[Counter::reuse_hits]) / static_cast<double>(posts);
}

void Netfront::set_pool_target_pages(std::uint32_t pages) {
    options_.pool_target_pages = pages;
    if (pool_) pool_->set_target_pages(pages);
}

std::uint32_t Netfront::tx_in_flight() const noexcept {
    std::uint32_t n = 0;
    for (const auto& q : queues_)
        n += q->tx_in_flight();
    return n;
}

std::uint16_t Netfront::rx_buffer_size() const noexcept {
    if (pool_) return pool_->config().buffer_size;
    return options_.half_page_buffers ? 2048 : 4096;
}

// --- xenstore -------------------------------------------------------------------------------

Status Netfront::switch_state(XenbusState s) {
    // __xenbus_switch_state: only while our state node exists, so that a folder the
    // toolstack removed is not brought back.
    const std::string path = fe_path_ + "/state";
    Status st = hv::run_transaction(*xs_, [&](hv::XsTxn t) -> Status {
        auto cur = xs_->read(t, path);
        if (!cur) return cur.error();
        return xs_->write(t, path, netif::format_xenbus_state(s));
    });
    if (!st && st.error().code == Errc::not_found) state_ = LinkState::gone;
    return st;
}

void Netfront::report_error(const Error& e) {
    last_error_ = e.describe();
    spdlog::warn("netfront {}: {}", fe_path_, last_error_);
    // xenbus_dev_error(): "<errno> <message>" under error/device/vif/<handle>/error.
    (void)xs_->write(hv::kNoTxn, error_path_,
                     std::to_string(to_errno(e)) + " " + e.message.substr(0, 1024));
}

Result<std::optional<XenbusState>> Netfront::read_backend_state() {
    // A node that does not exist reads as ENOENT, or as EACCES when its parent is not
    // readable by us either (the toolstack removed the vif's backend folder).
    auto missing = [](const Error& e) {
        return e.code == Errc::not_found || e.code == Errc::permission_denied;
    };
    auto v = xs_->read(hv::kNoTxn, be_path_ + "/state");
    if (!v) {
        if (!missing(v.error())) return std::move(v).error();
        auto dir = xs_->read(hv::kNoTxn, be_path_);
        if (!dir && missing(dir.error())) return std::optional<XenbusState>(); // gone
        if (!dir) return std::move(dir).error();
        return std::optional<XenbusState>(XenbusState::unknown);
    }
    auto s = netif::parse_xenbus_state(*v, "state");
    if (!s) { // xenbus_read_driver_state() reads garbage as Unknown
        spdlog::debug("netfront: backend state: {}", s.error().describe());
        return std::optional<XenbusState>(XenbusState::unknown);
    }
    return std::optional<XenbusState>(*s);
}

bool Netfront::backend_online() {
    auto v = xs_->read(hv::kNoTxn, be_path_ + "/online");
    return v && *v == "1";
}

Status Netfront::handle_xenstore() {
    for (;;) {
        auto ev = xs_->read_watch();
        if (!ev) return std::move(ev).error();
        if (!ev->has_value()) break;
        if ((*ev)->token == kBackendToken) xs_pending_ = true;
    }
    if (!xs_pending_) return ok();
    xs_pending_ = false;
    Status st = evaluate();
    if (!st && st.error().code != Errc::closed) {
        // A failed read is retried on the next watch event; only a lost connection to
        // xenstore is the caller's problem.
        spdlog::warn("netfront {}: {}", fe_path_, st.error().describe());
        return ok();
    }
    return st;
}

// netback_changed(), level-triggered: acts on the backend's current state until nothing
// changes any more.
Status Netfront::evaluate() {
    for (int round = 0; round < 8; ++round) {
        if (state_ == LinkState::gone) return ok();
        auto read = read_backend_state();
        if (!read) return std::move(read).error();
        const std::optional<XenbusState> bs = *read;
        const LinkState before = state_;
        const bool closing = bs && (*bs == XenbusState::closing || *bs == XenbusState::closed);

        if (!bs) { // the backend folder is gone: the vif was removed
            if (!queues_.empty()) disconnect();
            state_ = LinkState::gone;
            return ok();
        }
        switch (state_) {
        case LinkState::initialising:
            if (*bs == XenbusState::init_wait) {
                if (Status st = connect(); !st) {
                    ++failed_connects_;
                    counters_.add(Counter::connect_failures);
                    report_error(st.error());
                    if (!queues_.empty()) disconnect();
                    // xenbus_dev_fatal(): Closing, and the backend follows.
                    if (switch_state(XenbusState::closing)) state_ = LinkState::failing;
                }
            }
            break;
        case LinkState::connecting:
            if (*bs == XenbusState::connected) {
                state_ = LinkState::connected;
                failed_connects_ = 0;
            } else if (closing) {
                ++failed_connects_;
                disconnect();
                if (switch_state(XenbusState::closed)) state_ = LinkState::closed;
            }
            break;
        case LinkState::connected:
            if (closing) { // xenbus_frontend_closed()
                disconnect();
                if (switch_state(XenbusState::closed)) state_ = LinkState::closed;
            }
            break;
        case LinkState::failing:
            if (closing && switch_state(XenbusState::closed)) state_ = LinkState::closed;
            break;
        case LinkState::closing:
            if (closing) {
                disconnect();
                (void)switch_state(XenbusState::closed);
                state_ = LinkState::gone;
            }
            break;
        case LinkState::closed:
            // The backend offers a new connection (restarted daemon, re-probed vif): start
            // over as a re-probed device would.
            if (options_.auto_reconnect && failed_connects_ < options_.max_failed_connects &&
                (*bs == XenbusState::init_wait || *bs == XenbusState::closed) && backend_online()) {
                if (switch_state(XenbusState::initialising)) state_ = LinkState::initialising;
            }
            break;
        case LinkState::gone:
            break;
        }
        if (state_ == before) return ok();
    }
    return ok();
}

Result<BackendFeatures> Netfront::read_backend_features() {
    BackendFeatures f;
    auto read_bool = [&](std::string_view key, bool& out) -> Status {
        auto v = xs_->read(hv::kNoTxn, be_path_ + "/" + std::string(key));
        if (!v) return ignore_missing(v.error());
        auto b = netif::parse_bool(*v, key);
        if (!b) return make_error(Errc::protocol, "backend " + b.error().message);
        out = *b;
        return ok();
    };
    for (auto [key, out] :
         {std::pair{nkey::kFeatureRxCopy, &f.rx_copy}, std::pair{nkey::kFeatureSg, &f.sg},
          std::pair{nkey::kFeatureGsoTcpv4, &f.gso_tcpv4},
          std::pair{nkey::kFeatureGsoTcpv6, &f.gso_tcpv6},
          std::pair{nkey::kFeatureIpv6CsumOffload, &f.ipv6_csum_offload},
          std::pair{nkey::kFeatureSplitEventChannels, &f.split_event_channels},
          std::pair{nkey::kFeatureXdpHeadroom, &f.xdp_headroom},
          std::pair{nkey::kFeatureRxBufferOffset, &f.rx_buffer_offset},
          std::pair{nkey::kFeatureCtrlRing, &f.ctrl_ring},
          std::pair{nkey::kFeatureStaticGrants, &f.static_grants}})
        if (Status st = read_bool(key, *out); !st) return st.error();
    auto mq = xs_->read(hv::kNoTxn, be_path_ + "/" + std::string(nkey::kMultiQueueMaxQueues));
    if (mq) {
        auto n = netif::parse_unsigned(*mq, 1, 0xFFFFFFFFU, nkey::kMultiQueueMaxQueues);
        if (!n) return make_error(Errc::protocol, "backend " + n.error().message);
        f.max_queues = static_cast<unsigned>(std::min<std::uint64_t>(*n, netif::kMaxQueuesLimit));
    } else if (mq.error().code != Errc::not_found) {
        return std::move(mq).error();
    }
    return f;
}

Status Netfront::write_keys() {
    const std::string fe = fe_path_ + "/";
    const unsigned nq = num_queues();
    return hv::run_transaction(*xs_, [&](hv::XsTxn t) -> Status {
        // Keys an earlier connection may have left with another layout (split or not, one
        // queue or several): the backend must see exactly this connection's.
        for (std::string_view k :
             {nkey::kMultiQueueNumQueues, nkey::kTxRingRef, nkey::kRxRingRef, nkey::kEventChannel,
              nkey::kEventChannelTx, nkey::kEventChannelRx, nkey::kFeatureRxBufferOffset,
              nkey::kRxBufferSize, nkey::kFeatureStaticGrants, nkey::kCtrlRingRef,
              nkey::kEventChannelCtrl})
            if (Status st = ignore_missing(xs_->rm(t, fe + std::string(k))); !st) return st;
        auto names = xs_->directory(t, fe_path_);
        if (!names) return names.error();
        for (const std::string& n : *names)
            if (netif::parse_queue_name(n))
                if (Status st = ignore_missing(xs_->rm(t, fe + n)); !st) return st;

        auto w = [&](const std::string& path, std::string_view k, const std::string& v) {
            return xs_->write(t, path + std::string(k), v);
        };
        if (features_.max_queues)
            if (Status st = w(fe, nkey::kMultiQueueNumQueues, netif::format_unsigned(nq)); !st)
                return st;
        for (const auto& q : queues_) { // write_queue_xenstore_keys
            const std::string path = nq == 1 ? fe : fe + netif::queue_name(q->index()) + "/";
            if (Status st = w(path, nkey::kTxRingRef, netif::format_unsigned(q->tx_ring_ref()));
                !st)
                return st;
            if (Status st = w(path, nkey::kRxRingRef, netif::format_unsigned(q->rx_ring_ref()));
                !st)
                return st;
            if (!q->split()) {
                if (Status st = w(path, nkey::kEventChannel, netif::format_unsigned(q->tx_port()));
                    !st)
                    return st;
            } else {
                if (Status st =
                        w(path, nkey::kEventChannelTx, netif::format_unsigned(q->tx_port()));
                    !st)
                    return st;
                if (Status st =
                        w(path, nkey::kEventChannelRx, netif::format_unsigned(q->rx_port()));
                    !st)
                    return st;
            }
        }
        const std::pair<std::string_view, bool> flags[] = {
            {nkey::kRequestRxCopy, true},
            {nkey::kFeatureRxNotify, true},
            {nkey::kFeatureSg, options_.rx_sg},
            {nkey::kFeatureGsoTcpv4, options_.rx_gso_tcpv4},
            {nkey::kFeatureGsoTcpv6, options_.rx_gso_tcpv6},
            {nkey::kFeatureIpv6CsumOffload, options_.ipv6_csum_offload},
        };
        for (const auto& [k, v] : flags)
            if (Status st = w(fe, k, netif::format_bool(v)); !st) return st;
        if (ctrl_) { // docs/protocol.md: opt in to static grants
            if (ctrl_->static_grants())
                if (Status st = w(fe, nkey::kFeatureStaticGrants, "1"); !st) return st;
            if (Status st = w(fe, nkey::kCtrlRingRef, netif::format_unsigned(ctrl_->ring_ref()));
                !st)
                return st;
            if (Status st = w(fe, nkey::kEventChannelCtrl, netif::format_unsigned(ctrl_->port()));
                !st)
                return st;
        }
        if (use_buffer_offset_) {
            if (Status st = w(fe, nkey::kFeatureRxBufferOffset, "1"); !st) return st;
            if (Status st =
                    w(fe, nkey::kRxBufferSize, netif::format_unsigned(pool_->config().buffer_size));
                !st)
                return st;
        }
        return ok();
    });
}

// xennet_connect + talk_to_netback.
Status Netfront::connect() {
    auto feat = read_backend_features();
    if (!feat) return std::move(feat).error();
    features_ = *feat;
    if (!features_.rx_copy)
        // ENODEV, as Linux netfront's xennet_connect answers it.
        return make_error(Errc::unsupported, "backend does not support copying receive path",
                          ENODEV);

    auto mac = xs_->read(hv::kNoTxn, fe_path_ + "/mac");
    if (!mac)
        return make_error(mac.error().code, "reading " + fe_path_ + "/mac: " + mac.error().message);
    auto parsed_mac = netif::parse_mac(*mac, "mac");
    if (!parsed_mac) return std::move(parsed_mac).error();
    mac_ = *parsed_mac;
    trusted_ = true; // "trusted" absent: 1
    if (auto t = xs_->read(hv::kNoTxn, fe_path_ + "/trusted"); t) {
        auto b = netif::parse_bool(*t, "trusted");
        if (!b) return std::move(b).error();
        trusted_ = *b;
    }

    if (features_.xdp_headroom) // talk_to_netback_xdp: no XDP program, no headroom
        if (Status st =
                xs_->write(hv::kNoTxn, fe_path_ + "/" + std::string(nkey::kXdpHeadroom), "0");
            !st)
            return st;

    use_buffer_offset_ = options_.half_page_buffers && features_.rx_buffer_offset;
    if (options_.half_page_buffers && !features_.rx_buffer_offset)
        spdlog::info("netfront {}: the backend does not offer {}; using full-page buffers",
                     fe_path_, nkey::kFeatureRxBufferOffset);
    const std::uint16_t buffer_size = use_buffer_offset_ ? 2048 : 4096;
    const unsigned nq = std::min(options_.max_queues, features_.max_queues.value_or(1U));
    const std::uint32_t per_page = 4096U / buffer_size;
    const std::uint32_t target =
        options_.pool_target_pages != 0
            ? options_.pool_target_pages
            : (Queue::kRingSize * nq + options_.hold_depth + per_page - 1) / per_page;
    if (pool_ && pool_->config().buffer_size != buffer_size) {
        if (pool_->stats().pages != 0)
            return make_error(Errc::busy, "RX buffers of the previous connection are still in "
                                          "use by the backend; cannot change their size");
        pool_.reset();
    }
    if (!pool_) {
        RxPoolConfig pc;
        pc.backend = backend_;
        pc.reuse = options_.rx_mode == RxMode::reuse;
        pc.buffer_size = buffer_size;
        pc.target_pages = target;
        pc.hold_depth = options_.hold_depth;
        pool_ = std::make_unique<RxBufferPool>(hv_, pc, counters_);
    } else {
        pool_->set_target_pages(target);
    }

    if (options_.rx_mode == RxMode::reuse) {
        if (features_.static_grants && features_.ctrl_ring) {
            // Stock Xen: the backend keeps a persistent-grant table filled over the control
            // ring. It starts empty with every connection.
            ctrl_ = std::make_unique<CtrlRing>(*this);
            if (Status st = ctrl_->setup(true); !st) return st;
            pool_->set_registrar(ctrl_.get());
        } else {
            if (!iott_) iott_ = std::make_unique<IottRegistrar>(hv_, backend_);
            pool_->set_registrar(iott_.get());
        }
    }

    if (options_.hash && features_.ctrl_ring) {
        if (!ctrl_) {
            ctrl_ = std::make_unique<CtrlRing>(*this);
            if (Status st = ctrl_->setup(false); !st) return st;
        }
        ctrl_->request_hash(*options_.hash);
    }

    broken_ = false; // a reconnect clears it (talk_to_netback)
    const bool split = options_.split_event_channels && features_.split_event_channels;
    for (unsigned i = 0; i < nq; ++i) {
        queues_.push_back(std::make_unique<Queue>(*this, i));
        if (Status st = queues_.back()->setup(split); !st) return st;
    }
    if (Status st = write_keys(); !st) return st;

    for (const auto& q : queues_) { // xennet_connect: kick, then fill the RX rings
        q->kick();
        q->process(Handlers{});
    }
    if (Status st = switch_state(XenbusState::connected); !st) return st;
    state_ = LinkState::connecting;
    counters_.add(Counter::connects);
    spdlog::info("netfront {}: connected, {} queue(s), {} event channels, {} RX{}, {}-byte "
                 "buffers",
                 fe_path_, nq, split ? "split" : "single", to_string(options_.rx_mode),
                 using_static_grants() ? " (static grants)" : "", buffer_size);
    return ok();
}

// xennet_disconnect_backend.
void Netfront::disconnect() {
    for (auto& q : queues_)
        q->teardown();
    queues_.clear();
    if (ctrl_) {
        // The backend's persistent-grant table ends with the connection (docs/protocol.md).
        if (pool_ && ctrl_->static_grants()) {
            pool_->forget_registrations();
            pool_->set_registrar(nullptr);
        }
        ctrl_->teardown();
        ctrl_.reset();
    }
    if (pool_) pool_->release_all();
    fired_.clear();
    counters_.add(Counter::disconnects);
}

void Netfront::mark_broken(const std::string& why) {
    if (broken_) return;
    broken_ = true;
    counters_.add(Counter::broken);
    last_error_ = why;
    spdlog::warn("netfront {}: {}; disabled for further use", fe_path_, why);
}

void Netfront::retry_deferred() {
    std::erase_if(deferred_, [&](const Deferred& d) {
        if (!hv_.end_access(d.ref)) return false;
        if (d.page != nullptr) (void)hv_.free_pages({d.page, 1});
        if (d.buffer != kNoBuffer && pool_) {
            pool_->buffer(d.buffer).post_gref = hv::kGrantRefInvalid;
            pool_->give_back(d.buffer);
        }
        return true;
    });
}

// --- data path --------------------------------------------------------------------------------

void Netfront::run_queues(const Handlers& handlers) {
    for (int round = 0; round < 64; ++round) {
        for (auto& q : queues_)
            q->process(handlers);
        for (hv::EvtchnPort p : fired_)
            (void)evtchn_->unmask(p);
        fired_.clear();
        bool more = false;
        for (auto& q : queues_)
            more = q->more_work() || more;
        if (!more) break;
    }
}

Status Netfront::poll(std::chrono::milliseconds timeout, const Handlers& handlers) {
    if (timeout.count() > 0) {
        epoll_event events[4];
        const int n = ::epoll_wait(epoll_fd_, events, 4, static_cast<int>(timeout.count()));
        if (n < 0 && errno != EINTR) return make_error(Errc::io, "epoll_wait", errno);
    }
    if (Status st = handle_xenstore(); !st) return st;
    for (;;) {
        auto port = evtchn_->pending();
        if (!port) return std::move(port).error();
        if (!port->has_value()) break;
        fired_.push_back(**port);
        counters_.add(Counter::events);
    }
    if (ctrl_) ctrl_->process();
    if (!queues_.empty()) {
        run_queues(handlers);
    } else {
        for (hv::EvtchnPort p : fired_)
            (void)evtchn_->unmask(p);
        fired_.clear();
    }
    if (pool_) pool_->maintain();
    if (!deferred_.empty()) retry_deferred();
    if (!aborted_.empty()) {
        std::vector<TxCompletion> done;
        done.swap(aborted_);
        if (handlers.on_tx)
            for (const TxCompletion& c : done)
                handlers.on_tx(c);
    }
    return ok();
}

Status Netfront::wait_connected(std::chrono::milliseconds timeout, const Handlers& handlers) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (state_ != LinkState::connected) {
        if (state_ == LinkState::gone)
            return make_error(Errc::closed,
                              "the vif is gone" + (last_error_.empty() ? "" : ": " + last_error_));
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline)
            return make_error(Errc::again, std::string("not connected (state ") +
                                               to_string(state_) + ")" +
                                               (last_error_.empty() ? "" : ": " + last_error_));
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        if (Status st =
                poll(std::min(left, std::chrono::milliseconds(100)) + std::chrono::milliseconds(1),
                     handlers);
            !st)
            return st;
    }
    return ok();
}

Status Netfront::send(unsigned queue, const TxFrame& frame) {
    if (broken_) return make_error(Errc::closed, "vif disabled: " + last_error_);
    if (queues_.empty() || (state_ != LinkState::connecting && state_ != LinkState::connected))
        return make_error(Errc::closed,
                          std::string("not connected (state ") + to_string(state_) + ")");
    if (queue >= queues_.size())
        return make_error(Errc::invalid_argument, "no queue " + std::to_string(queue));
    return queues_[queue]->send(frame);
}

Status Netfront::close(std::chrono::milliseconds timeout) {
    if (state_ == LinkState::gone) return ok();
    if (state_ == LinkState::connecting || state_ == LinkState::connected) {
        if (switch_state(XenbusState::closing)) {
            state_ = LinkState::closing;
            const auto deadline = std::chrono::steady_clock::now() + timeout;
            while (state_ != LinkState::gone && std::chrono::steady_clock::now() < deadline)
                if (Status st = poll(std::chrono::milliseconds(50)); !st) break;
        }
    }
    const bool timed_out = state_ != LinkState::gone;
    if (!queues_.empty()) disconnect();
    if (state_ != LinkState::gone) (void)switch_state(XenbusState::closed);
    state_ = LinkState::gone;
    retry_deferred();
    if (timed_out && !deferred_.empty())
        return make_error(Errc::again, "the backend did not close in time; " +
                                           std::to_string(deferred_.size()) +
                                           " grant(s) still in use");
    return ok();
}

} // namespace dpnb::netfront
