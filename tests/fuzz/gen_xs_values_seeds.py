#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_xs_values (tests/fuzz/corpus/fuzz_xs_values/).

Input format (see fuzz_xs_values.cpp): byte 0 = offered features, byte 1 = max queues - 1
(bits 0-2) | static grants (bit 3) | dynamic multicast (bit 4) | fault injection (bit 5),
byte 2 = which read fails, then "key=value" lines. Every byte is also a state-machine input
(byte % 18: 0-8 frontend states, 9 invalid, 10 probe, 11 connect ok, 12 connect failed,
13 hotplug ready, 14 detach, 15 domain gone, 16 backend removed, 17 shutdown).

Deterministic: the same files every run. Usage: gen_xs_values_seeds.py [OUT_DIR]
"""
import os
import sys

ALL_FEATURES = 0xFF        # sg gso4 gso6 ipv6csum mcast split ctrl xdp
DEFAULT_FEATURES = 0x3F    # dpnetback defaults: no ctrl ring, no XDP headroom


def header(features=ALL_FEATURES, max_queues=4, static=False, dyn_mcast=True, fault=None,
           rx_offset=False):
    b1 = (max_queues - 1) & 0x07
    if rx_offset:
        b1 |= 0x40
    if static:
        b1 |= 0x08
    if dyn_mcast:
        b1 |= 0x10
    if fault is not None:
        b1 |= 0x20
    return bytes([features, b1, fault or 0])


def lines(pairs):
    return "\n".join(f"{k}={v}" for k, v in pairs).encode("latin-1")


LINUX_1Q = [
    ("backend", "/local/domain/0/backend/vif/1/0"),
    ("backend-id", "0"),
    ("handle", "0"),
    ("mac", "00:16:3e:5c:01:02"),
    ("state", "4"),
    ("trusted", "1"),
    ("mtu", "1500"),
    ("multi-queue-num-queues", "1"),
    ("tx-ring-ref", "2303"),
    ("rx-ring-ref", "2304"),
    ("event-channel-tx", "18"),
    ("event-channel-rx", "19"),
    ("request-rx-copy", "1"),
    ("feature-rx-notify", "1"),
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "1"),
    ("feature-gso-tcpv6", "1"),
    ("feature-ipv6-csum-offload", "1"),
    ("xdp-headroom", "0"),
]


def linux_2q():
    out = [kv for kv in LINUX_1Q
           if kv[0] not in ("tx-ring-ref", "rx-ring-ref", "event-channel-tx",
                            "event-channel-rx", "multi-queue-num-queues")]
    out.append(("multi-queue-num-queues", "2"))
    for q, (tx, rx, etx, erx) in enumerate([(2303, 2304, 18, 19), (2561, 2562, 20, 21)]):
        out += [(f"queue-{q}/tx-ring-ref", tx), (f"queue-{q}/rx-ring-ref", rx),
                (f"queue-{q}/event-channel-tx", etx), (f"queue-{q}/event-channel-rx", erx)]
    return out


def replace(pairs, **changes):
    changes = {k.replace("_", "-"): v for k, v in changes.items()}
    out = [(k, changes.pop(k, v)) for k, v in pairs]
    out += list(changes.items())
    return [(k, v) for k, v in out if v is not None]


OLD_FRONTEND = [("tx-ring-ref", "8"), ("rx-ring-ref", "9"), ("event-channel", "3"),
                ("request-rx-copy", "1")]

LIBXL_BACKEND = [
    ("frontend", "/local/domain/1/device/vif/0"),
    ("frontend-id", "1"),
    ("handle", "0"),
    ("mac", "00:16:3e:5c:01:02"),
    ("online", "1"),
    ("script", "/etc/xen/scripts/vif-dpnetback"),
    ("type", "vif"),
    ("bridge", "xenbr0"),
    ("hotplug-status", "connected"),
    ("rate", "12500000,50000"),
    ("ip", "198.18.0.2 198.18.0.3"),
    ("state", "2"),
]

VALUES = [
    ("mac", "FF:ff:ff:ff:ff:ff"), ("mac", "01:00:5e:00:00:01"), ("mac", "00:00:00:00:00:00"),
    ("path", "/local/domain/5/device/vif/0"),
    ("path", "/local/domain/0/backend/vif/5/0/hotplug-status"),
    ("path", "/local/domain/05/device/vif/0"), ("queue", "queue-63"), ("queue", "queue-07"),
    ("n", "18446744073709551615"), ("n", "18446744073709551616"), ("n", "-0"), ("n", "0x1f"),
    ("ip", "255.255.255.255 0.0.0.0"), ("rate", "1,4294967295"), ("state", "8"),
    ("hotplug-status", "error"),
]

# Machine sequences (as bytes, each % 18 is an input).
PROBE, OK, FAIL, HOTPLUG, DETACH, GONE, REMOVED, SHUTDOWN = 10, 11, 12, 13, 14, 15, 16, 17
CONNECTED, CLOSING, CLOSED, INITIALISING, RECONFIGURING, UNKNOWN, INVALID = 4, 5, 6, 1, 7, 0, 9

SEEDS = {
    "linux_netfront_1q_split": header() + lines(LINUX_1Q),
    "linux_netfront_2q_split": header() + lines(linux_2q()),
    "linux_netfront_defaults": header(DEFAULT_FEATURES, 1) + lines(LINUX_1Q),
    "old_frontend_single_channel": header(DEFAULT_FEATURES, 1) + lines(OLD_FRONTEND),
    "ctrl_ring_static_grants": header(static=True) + lines(replace(
        LINUX_1Q, ctrl_ring_ref="77", event_channel_ctrl="25", feature_static_grants="1",
        request_multicast_control="1", xdp_headroom="256")),
    "rx_buffer_offset_half_pages": header(rx_offset=True) + lines(replace(
        LINUX_1Q, feature_rx_buffer_offset="1", rx_buffer_size="2048", xdp_headroom="256")),
    "rx_buffer_offset_not_offered": header() + lines(replace(
        LINUX_1Q, feature_rx_buffer_offset="1", rx_buffer_size="2048")),
    "both_channel_forms": header() + lines(replace(LINUX_1Q, event_channel="18")),
    "toplevel_keys_with_2q": header() + lines(replace(LINUX_1Q, multi_queue_num_queues="2")),
    "too_many_queues": header(max_queues=2) + lines(replace(linux_2q(),
                                                            multi_queue_num_queues="3")),
    "shared_ring_pages": header() + lines(replace(linux_2q(), **{"queue-1/tx-ring-ref": "2304"})),
    "no_rx_copy": header() + lines(replace(LINUX_1Q, request_rx_copy="0")),
    "bad_numbers": header() + lines(replace(LINUX_1Q, tx_ring_ref="4294967295",
                                            mtu="0065536", event_channel_rx="")),
    "reader_fault": header(fault=7) + lines(linux_2q()),
    "libxl_backend_folder": header() + lines(LIBXL_BACKEND),
    "values": header() + lines(VALUES),
    "lifecycle_connect_shutdown": bytes([PROBE, HOTPLUG, INITIALISING, CONNECTED, OK,
                                         CLOSING, CLOSED, GONE]),
    "lifecycle_reconnect": bytes([PROBE, CONNECTED, OK, HOTPLUG, CLOSING, CLOSED,
                                  INITIALISING, CONNECTED, OK, RECONFIGURING, CONNECTED,
                                  SHUTDOWN]),
    "lifecycle_reattach": bytes([CONNECTED, HOTPLUG, PROBE, OK, DETACH, CLOSED]),
    "lifecycle_failures": bytes([PROBE, CONNECTED, FAIL, CONNECTED, INVALID, CLOSED,
                                 INITIALISING, CONNECTED, DETACH, OK, UNKNOWN, REMOVED]),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "fuzz_xs_values")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {out}")


if __name__ == "__main__":
    main()
