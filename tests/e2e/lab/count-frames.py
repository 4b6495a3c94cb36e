#!/usr/bin/env python3
"""count-frames.py IFACE MAC_A MAC_B IP_A: dom0's packet capture for dpnetbackd-local.

Reads every frame IFACE receives (dom0's side of dpnetbackd's tap: what the daemon sent on
the wire) until SIGTERM or SIGINT, then prints "between N spoofed S":
  N  unicast frames from one of MAC_A, MAC_B to the other (guest-to-guest on the wire);
  S  frames with MAC_B as source that guest A sent (IPv4 source or ARP sender IP_A).
No tcpdump in the lab's dom0: an AF_PACKET socket of every protocol does the same.
"""
import signal
import socket
import sys

iface = sys.argv[1]
mac_a, mac_b = (bytes.fromhex(m.replace(":", "")) for m in sys.argv[2:4])
ip_a = socket.inet_aton(sys.argv[4])
stop = False


def on_signal(*_):
    global stop
    stop = True


def from_a(frame):
    kind = frame[12:14]
    if kind == b"\x08\x00":
        return frame[26:30] == ip_a  # IPv4 source
    if kind == b"\x08\x06":
        return frame[28:32] == ip_a  # ARP sender protocol address
    return False


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
s.bind((iface, 0))
s.settimeout(0.5)
between = spoofed = 0
while not stop:
    try:
        frame, addr = s.recvfrom(65535)
    except (socket.timeout, InterruptedError):
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(frame) < 32:
        continue  # dom0's own frames into the tap
    dst, src = frame[0:6], frame[6:12]
    if {dst, src} == {mac_a, mac_b}:
        between += 1
    if src == mac_b and from_a(frame):
        spoofed += 1
print(f"between {between} spoofed {spoofed}", flush=True)
