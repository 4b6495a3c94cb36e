#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ctrl_ring (tests/fuzz/corpus/fuzz_ctrl_ring/).

Each seed is a control ring as a frontend left it plus the guest page its grant copies read,
in the layout fuzz_ctrl_ring.cpp reads: a 16-byte header (queues, static grants,
req_prod - start, start index, budget, table verdicts), 16-byte requests, then the page.
Run it again after changing the layout; the output is deterministic.
    tests/fuzz/make_seeds_ctrl.py [output_dir]
"""
import os
import struct
import sys

# io/netif.h XEN_NETIF_CTRL_TYPE_*
GET_HASH_FLAGS, SET_HASH_FLAGS, SET_HASH_KEY = 1, 2, 3
GET_HASH_MAPPING_SIZE, SET_HASH_MAPPING_SIZE, SET_HASH_MAPPING = 4, 5, 6
SET_HASH_ALGORITHM = 7
GET_GREF_MAPPING_SIZE, ADD_GREF_MAPPING, DEL_GREF_MAPPING = 8, 9, 10
TOEPLITZ = 1
ALL_TYPES = 0xF
MS_KEY = bytes([0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
                0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
                0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa])
GOOD_REF, BAD_REF = 10, 11  # odd references fail to copy


def req(rid, rtype, d0=0, d1=0, d2=0):
    """xen_netif_ctrl_request: id u16, type u16, data u32[3]."""
    return struct.pack("<HHIII", rid, rtype, d0, d1, d2)


def seed(reqs, page=b"", queues=4, static=False, start=0, budget=8, table=0, prod=None):
    prod = len(reqs) if prod is None else prod
    hdr = struct.pack("<BBHIBB6x", queues - 1, 1 if static else 0, prod, start, budget, table)
    return hdr + b"".join(reqs) + page


def words(*v):
    return struct.pack("<%dI" % len(v), *v)


def windows_style_setup(queues=4):
    """The sequence a Windows PV frontend sends at connect (algorithm, flags, key, table)."""
    return [
        req(1, SET_HASH_ALGORITHM, TOEPLITZ),
        req(2, GET_HASH_FLAGS),
        req(3, SET_HASH_FLAGS, ALL_TYPES),
        req(4, SET_HASH_KEY, GOOD_REF, 40),
        req(5, GET_HASH_MAPPING_SIZE),
        req(6, SET_HASH_MAPPING_SIZE, 128),
        req(7, SET_HASH_MAPPING, GOOD_REF, 128, 0),
    ]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_ctrl_ring")
    os.makedirs(out, exist_ok=True)
    table_page = words(*[i % 4 for i in range(128)])
    seeds = {
        "hash_setup": seed(windows_style_setup(), MS_KEY + bytes(472) + table_page),
        "hash_setup_mapping_page": seed(windows_style_setup(), table_page),
        "hash_key_sizes": seed([req(1, SET_HASH_KEY, GOOD_REF, n) for n in (0, 1, 39, 40, 41, 4096)],
                               MS_KEY),
        "xsa270_edges": seed([
            req(1, SET_HASH_MAPPING_SIZE, 8),
            req(2, SET_HASH_MAPPING, GOOD_REF, 8, 0),
            req(3, SET_HASH_MAPPING, GOOD_REF, 1, 8),
            req(4, SET_HASH_MAPPING, GOOD_REF, 2, 0xFFFFFFFF),
            req(5, SET_HASH_MAPPING, GOOD_REF, 0xFFFFFFFF, 1),
            req(6, SET_HASH_MAPPING, GOOD_REF, 0x80000000, 0x80000000),
            req(7, SET_HASH_MAPPING, GOOD_REF, 0, 8),
        ], words(0, 1, 2, 3, 3, 2, 1, 0)),
        "mapping_bad_queue": seed([
            req(1, SET_HASH_MAPPING_SIZE, 4),
            req(2, SET_HASH_MAPPING, GOOD_REF, 4, 0),
            req(3, SET_HASH_MAPPING, BAD_REF, 4, 0),
        ], words(0, 1, 2, 4), queues=4),
        "flags_and_algorithms": seed([
            req(1, SET_HASH_FLAGS, 1),
            req(2, GET_HASH_FLAGS),
            req(3, SET_HASH_ALGORITHM, 2),
            req(4, SET_HASH_ALGORITHM, TOEPLITZ),
            req(5, SET_HASH_FLAGS, 0x10),
            req(6, SET_HASH_FLAGS, ALL_TYPES),
            req(7, SET_HASH_ALGORITHM, 0),
            req(8, 99),
            req(9, 0),
        ]),
        "static_grants": seed([
            req(1, GET_GREF_MAPPING_SIZE, 0),
            req(2, ADD_GREF_MAPPING, 0, GOOD_REF, 2),
            req(3, ADD_GREF_MAPPING, 0, GOOD_REF, 0),
            req(4, ADD_GREF_MAPPING, 0, GOOD_REF, 513),
            req(5, ADD_GREF_MAPPING, 4, GOOD_REF, 1),
            req(6, DEL_GREF_MAPPING, 0, GOOD_REF, 2),
            req(7, DEL_GREF_MAPPING, 0, BAD_REF, 1),
        ], struct.pack("<IHH", 100, 0, 0) + struct.pack("<IHH", 101, 0x80, 0), static=True,
            table=0x40),
        "static_grants_not_negotiated": seed([
            req(1, GET_GREF_MAPPING_SIZE, 0), req(2, ADD_GREF_MAPPING, 0, GOOD_REF, 1)]),
        "full_ring_wrapping": seed([req(i, SET_HASH_FLAGS if i % 3 else SET_HASH_KEY, GOOD_REF, 40)
                                    for i in range(128)], MS_KEY, start=0xFFFFFFC0, budget=16),
        "producer_overflow": seed([req(1, GET_HASH_FLAGS)], prod=200),
    }
    for name, data in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
