// The netfront's counters, declared once in a table that yields the enum, the counter names
// (for the summary line and JSON) and their help text, as VPP declares its error counters.
// One Netfront runs on one thread, so each counter has exactly one writer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dpnb::netfront {

// X(name, help)
#define DPNB_NETFRONT_COUNTERS(X)                                                                  \
    X(tx_frames, "frames handed to the TX ring")                                                   \
    X(tx_frames_ok, "TX frames the backend answered NETIF_RSP_OKAY")                               \
    X(tx_bytes_ok, "bytes of the TX frames answered OKAY")                                         \
    X(tx_frames_error, "TX frames answered NETIF_RSP_ERROR")                                       \
    X(tx_frames_dropped, "TX frames answered NETIF_RSP_DROPPED")                                   \
    X(tx_frames_bad_status, "TX frames answered with a status netif.h does not define")            \
    X(tx_frames_aborted, "TX frames still unanswered when the connection went down")               \
    X(tx_slots, "TX ring slots used for data")                                                     \
    X(tx_ring_full, "sends refused because the TX ring had no room (retry later)")                 \
    X(tx_bad_response, "TX responses with an impossible id or for an inactive request (broken)")   \
    X(rx_frames, "frames received and handed to the stack")                                        \
    X(rx_bytes, "bytes of the frames received")                                                    \
    X(rx_slots, "RX ring slots that carried data")                                                 \
    X(rx_error_status, "RX responses with a negative status (backend error or drop)")              \
    X(rx_bad_offset, "RX responses whose offset and length leave the posted buffer")               \
    X(rx_bad_id, "RX responses whose id is not the one posted in that ring slot")                  \
    X(rx_bad_extra, "RX extra-info slots of an unknown type, or missing")                          \
    X(rx_bad_gso, "RX GSO extra-info with size 0 or an unknown GSO type")                          \
    X(rx_too_many_slots, "RX frames spanning more slots than a frontend must accept")              \
    X(rx_incomplete, "RX frames whose last published response still says more_data")               \
    X(rx_runt, "RX frames shorter than an Ethernet header")                                        \
    X(rx_no_buffer, "RX refills cut short because no buffer could be allocated or granted")        \
    X(ring_overflow, "response producer index ahead of the requests (broken)")                     \
    X(grant_still_in_use, "grants the backend still used after answering (broken)")                \
    X(grants_deferred, "grants whose end of access had to be retried later")                       \
    X(broken, "times the vif was disabled for a protocol violation by the backend")                \
    X(notify_tx, "notifications sent on the TX event channel")                                     \
    X(notify_rx, "notifications sent on the RX event channel")                                     \
    X(events, "notifications received")                                                            \
    X(connects, "handshakes completed (state Connected written)")                                  \
    X(disconnects, "connections torn down")                                                        \
    X(connect_failures, "handshakes that failed (bad backend keys, resources)")                    \
    X(rx_posts, "RX buffers posted (first posts, not re-posts)")                                   \
    X(rx_reposts, "RX buffers posted again unused (extra-info slots, bad responses)")              \
    X(reuse_hits, "RX buffers posted from a page already in the translation table")                \
    X(reuse_misses, "RX buffers that needed a new page (grant + registration)")                    \
    X(unregistered_posts, "RX buffers posted from a page not (yet) registered: grant copy")        \
    X(pool_pages_added, "pages that joined the RX buffer pool")                                    \
    X(pool_pages_removed, "pages that left the RX buffer pool (entry removed, access ended)")      \
    X(pool_removals_refused, "registration removals refused (buffer in flight): retried")          \
    X(pool_register_failures, "pages whose registration was refused (served by grant copy)")       \
    X(ctrl_messages, "static-grant and hash messages sent on the control ring")                    \
    X(ctrl_hash_refused, "hash messages the backend refused on the control ring")                  \
    X(ctrl_errors, "control-ring protocol violations by the backend (static grants disabled)")

enum class Counter : std::uint8_t {
#define DPNB_X(name, help) name,
    DPNB_NETFRONT_COUNTERS(DPNB_X)
#undef DPNB_X
};

inline constexpr std::size_t kCounterCount = 0
#define DPNB_X(name, help) +1
    DPNB_NETFRONT_COUNTERS(DPNB_X)
#undef DPNB_X
    ;

struct CounterInfo {
    Counter counter;
    std::string_view name;
    std::string_view help;
};

// Every counter in declaration order.
const std::array<CounterInfo, kCounterCount>& counter_table() noexcept;

class Counters {
public:
    std::uint64_t get(Counter c) const noexcept { return values_[static_cast<std::size_t>(c)]; }
    std::uint64_t operator[](Counter c) const noexcept { return get(c); }
    void add(Counter c, std::uint64_t n = 1) noexcept { values_[static_cast<std::size_t>(c)] += n; }

private:
    std::array<std::uint64_t, kCounterCount> values_{};
};

} // namespace dpnb::netfront
