#!/usr/bin/env python3
"""send-frames.py IFACE DST_MAC SRC_MAC SIZE RATE SECONDS: a paced stream of dpnb-netfront's
verifiable payload frames (guest/include/dpnb/netfront/payload.hpp) out of IFACE, for a
guest's receive path. SIZE bytes each (without FCS, 38..1514), RATE frames per second for
SECONDS. The frames belong to stream 0xFFFFFFFF, which no netfront sends, so a receiver
verifies every byte and counts no duplicates; 256 are built once and sent in turn (building
each under emulation would cost more than sending it). Prints "sent N secs S".
"""
import socket
import struct
import sys
import time

iface, dst, src = sys.argv[1], sys.argv[2], sys.argv[3]
size, rate, seconds = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
mac = lambda m: bytes.fromhex(m.replace(":", ""))
STREAM = 0xFFFFFFFF


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def frame(seq):
    # As build_payload_frame: Ethernet header (ethertype 0x88B5), magic "DPNB", sequence,
    # length, stream, a pattern of the sequence, FNV-1a of bytes 14..end-4 (little endian).
    f = bytearray(size)
    f[0:6], f[6:12], f[12:14] = mac(dst), mac(src), b"\x88\xb5"
    struct.pack_into("<IQII", f, 14, 0x44504E42, seq, size, STREAM)
    end = size - 4
    for i in range(34, end):
        f[i] = (seq * 0x9E3779B1 + i * 31 + 0xA5) & 0xFF
    struct.pack_into("<I", f, end, fnv1a(f[14:end]))
    return bytes(f)


frames = [frame(s) for s in range(256)]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
# Bursts of up to 16 frames on a clock: a sleep per frame would cost more than the frame.
sent, t0 = 0, time.monotonic()
end = t0 + seconds
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - t0) * rate)
    burst = min(due - sent, 16)
    if burst <= 0:
        time.sleep(min(0.002, end - now))
        continue
    for _ in range(burst):
        try:
            s.send(frames[sent & 255])
        except OSError:  # the tap's queue is full: the frame is lost, as on a wire
            pass
        sent += 1
print(f"sent {sent} secs {time.monotonic() - t0:.2f}", flush=True)
