#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tx_parser (tests/fuzz/corpus/fuzz_tx_parser/).

Each seed is a TX ring as a frontend left it, in the layout fuzz_tx_parser.cpp reads:
a 16-byte header (limits, req_prod - start, start index, flags) and 12-byte ring slots.
Run it again after changing the layout; the output is deterministic.
    tests/fuzz/make_seeds_tx.py [output_dir]
"""
import os
import struct
import sys

# io/netif.h
NETTXF_CSUM_BLANK = 1 << 0
NETTXF_DATA_VALIDATED = 1 << 1
NETTXF_MORE_DATA = 1 << 2
NETTXF_EXTRA_INFO = 1 << 3
EXTRA_GSO, EXTRA_MCAST_ADD, EXTRA_MCAST_DEL, EXTRA_HASH = 1, 2, 3, 4
EXTRA_FLAG_MORE = 1
GSO_TCPV4, GSO_TCPV6 = 1, 2


def req(rid, size, flags=0, offset=0, gref=None):
    """netif_tx_request: gref u32, offset u16, flags u16, id u16, size u16."""
    return struct.pack("<IHHHH", 1000 + rid if gref is None else gref, offset, flags, rid, size)


def gso(mss, gtype=GSO_TCPV4, more=False):
    """netif_extra_info with u.gso, padded to a 12-byte TX slot."""
    return struct.pack("<BBHBBH", EXTRA_GSO, EXTRA_FLAG_MORE if more else 0, mss, gtype, 0, 0) + bytes(4)


def mcast(add, mac, more=False):
    kind = EXTRA_MCAST_ADD if add else EXTRA_MCAST_DEL
    return struct.pack("<BB", kind, EXTRA_FLAG_MORE if more else 0) + bytes(mac) + bytes(4)


def hash_extra(htype, value, more=False):
    return struct.pack("<BBBBI", EXTRA_HASH, EXTRA_FLAG_MORE if more else 0, htype, 1, value) + bytes(4)


def raw_extra(etype, flags=0):
    return struct.pack("<BB", etype, flags) + bytes(10)


def chain(first_id, lens, first_flags=0, extras=()):
    """One data packet: lens are each slot's own length, the first slot's size is the total."""
    flags = first_flags
    if len(lens) > 1:
        flags |= NETTXF_MORE_DATA
    if extras:
        flags |= NETTXF_EXTRA_INFO
    slots = [req(first_id, sum(lens) & 0xFFFF, flags)]
    slots += list(extras)
    for i, n in enumerate(lens[1:], start=1):
        slots.append(req(first_id + i, n, NETTXF_MORE_DATA if i + 1 < len(lens) else 0))
    return slots


def seed(slots, prod=None, start=0, max_slots=18, fatal_slots=20, max_packet_len=65535,
         max_frame_len=0, per_slot=False):
    prod = len(slots) if prod is None else prod
    header = struct.pack("<BBHHHIB3x", max_slots, fatal_slots, max_packet_len, max_frame_len,
                         prod, start & 0xFFFFFFFF, 1 if per_slot else 0)
    assert len(header) == 16
    body = b"".join(slots)
    assert all(len(s) == 12 for s in slots)
    return header + body


MAC = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB]

SEEDS = {
    "single_slot": seed(chain(0, [1514], NETTXF_DATA_VALIDATED)),
    "multi_slot": seed(chain(0, [54, 4096, 2000], NETTXF_CSUM_BLANK)),
    "gso_extra": seed(chain(0, [66, 4096, 4096, 4096], NETTXF_CSUM_BLANK, [gso(1448)])),
    "gso_hash_extras": seed(chain(0, [1514], 0, [gso(1440, GSO_TCPV6, more=True),
                                                  hash_extra(1, 0xDEADBEEF)])),
    "mcast_add": seed([req(0, 0, NETTXF_EXTRA_INFO), mcast(True, MAC)]),
    "mcast_del_per_slot": seed([req(0, 0, NETTXF_EXTRA_INFO), mcast(False, MAC)], per_slot=True),
    "several_packets_wrapping": seed(
        chain(0, [60]) + chain(1, [100, 200], 0, [gso(1000)]) + chain(3, [1514])
        + [req(4, 0, NETTXF_EXTRA_INFO), mcast(True, MAC)] + chain(5, [14, 0, 500]),
        start=0xFFFFFFFA, per_slot=True),
    "mtu_limited": seed(chain(0, [1000, 600]) + chain(2, [1518]), max_frame_len=1518),
    # malformed: drops
    "drop_19_slots": seed(chain(0, [100] * 19)),
    "drop_size_overflow": seed([req(0, 4464, NETTXF_MORE_DATA), req(1, 4096, NETTXF_MORE_DATA),
                                req(2, 4096, 0)]),
    "drop_short_first_slot": seed(chain(0, [0, 1000])),
    "drop_runt": seed(chain(0, [10])),
    "drop_duplicate_extra": seed(chain(0, [1000], 0, [gso(1000, more=True), gso(500)])),
    "drop_mcast_with_data": seed(chain(0, [60, 60], 0, [mcast(True, MAC)])),
    # malformed: fatal
    "fatal_more_data_past_prod": seed(chain(0, [100, 100, 100])[:2]),
    "fatal_extra_past_prod": seed([req(0, 100, NETTXF_EXTRA_INFO)]),
    "fatal_21_slots": seed(chain(0, [100] * 21)),
    "fatal_crosses_page": seed([req(0, 200, 0, offset=4000)]),
    "fatal_bad_extra_type": seed(chain(0, [100], 0, [raw_extra(0)])),
    "fatal_gso_size_zero": seed(chain(0, [100], 0, [gso(0)])),
    "fatal_ring_overflow": seed(chain(0, [60]), prod=257),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "fuzz_tx_parser")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {out}")


if __name__ == "__main__":
    main()
