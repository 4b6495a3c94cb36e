#!/usr/bin/env python3
"""echo-frames.py IFACE MAC [ETHERTYPE]: dom0's far end for dpnb-netfront's test frames.

Every frame of ETHERTYPE (default 0x88B5, dpnb-netfront's payload frames) that arrives on
IFACE addressed to MAC goes back out of IFACE with the two MAC addresses swapped, so that a
guest's `dpnb-netfront --send N --dst-mac MAC --receive N` gets its own frames back through
dpnetbackd's RX path. Runs until SIGTERM or SIGINT and prints "echoed N" (also every 5 s).
"""
import signal
import socket
import sys
import time

iface, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
ethertype = int(sys.argv[3], 0) if len(sys.argv) > 3 else 0x88B5
stop = False


def on_signal(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
# A burst of the guest's ring must not overflow the socket (root: FORCE passes rmem_max).
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
s.bind((iface, 0))
s.settimeout(0.5)
echoed = 0
errors = 0
last = time.monotonic()
while not stop:
    try:
        frame, addr = s.recvfrom(65536)
    except socket.timeout:
        frame = None
    except InterruptedError:
        continue
    except OSError:  # ENETDOWN while the port is down: wait for it to come back
        time.sleep(0.1)
        continue
    if frame and addr[2] != socket.PACKET_OUTGOING and frame[0:6] == mac:
        try:
            s.send(frame[6:12] + frame[0:6] + frame[12:])
            echoed += 1
        except OSError as e:  # the port goes down when the guest leaves: say so, go on
            errors += 1
            if errors == 1:
                print(f"send: {e}", file=sys.stderr, flush=True)
    if time.monotonic() - last >= 5:
        print(f"echoed {echoed} send_errors {errors}", flush=True)
        last = time.monotonic()
print(f"echoed {echoed} send_errors {errors}", flush=True)
