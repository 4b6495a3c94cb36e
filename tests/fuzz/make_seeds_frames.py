#!/usr/bin/env python3
"""Seeds for fuzz_frame_headers (tests/fuzz/fuzz_frame_headers.cpp): allowed addresses, then
frames of the layouts the TX path meets (IPv4/IPv6 TCP and UDP, VLAN tags, IPv6 extension
and fragment headers, ARP, DHCP from 0.0.0.0)."""
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                         "corpus", "fuzz_frame_headers")
os.makedirs(out, exist_ok=True)
addrs = bytes([2, 10, 0, 0, 2, 192, 168, 1, 2]) + bytes(24)


def eth(t, tags=0):
    f = b"\x02" * 12
    for i in range(tags):
        f += b"\x81\x00\x00" + bytes([i + 1])
    return f + struct.pack(">H", t)


def ipv4(src, proto, frag=0):
    return bytes([0x45, 0, 0, 0, 0, 0]) + struct.pack(">H", frag) + bytes([64, proto, 0, 0]) \
        + bytes(src) + bytes([10, 0, 0, 1])


def ipv6(nxt):
    return bytes([0x60, 0, 0, 0, 0, 0, nxt, 64]) + bytes(32)


tcp = struct.pack(">HHIIBBHHH", 1000, 80, 1, 0, 0x80, 0x18, 100, 0, 0) + bytes(12)
udp_dhcp = struct.pack(">HHHH", 68, 67, 8, 0)
seeds = {
    "ipv4_tcp": eth(0x0800) + ipv4([10, 0, 0, 2], 6) + tcp + b"x" * 20,
    "ipv4_spoofed": eth(0x0800, 1) + ipv4([10, 0, 0, 3], 17) + udp_dhcp,
    "dhcp": eth(0x0800) + ipv4([0, 0, 0, 0], 17) + udp_dhcp + bytes(20),
    "ipv4_fragment": eth(0x0800) + ipv4([10, 0, 0, 2], 6, 0x10) + b"y" * 30,
    "ipv6_ext_tcp": eth(0x86DD, 2) + ipv6(0) + bytes([43, 0]) + bytes(6) + bytes([6, 1])
    + bytes(14) + tcp,
    "ipv6_fragment": eth(0x86DD) + ipv6(44) + bytes([17, 0, 0, 1, 0, 0, 0, 7]) + udp_dhcp,
    "arp": eth(0x0806) + bytes([0, 1, 8, 0, 6, 4, 0, 1]) + b"\x02" * 6 + bytes([10, 0, 0, 9])
    + bytes(6) + bytes([10, 0, 0, 1]),
}
for name, frame in seeds.items():
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(addrs + frame)
