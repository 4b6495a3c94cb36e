#!/usr/bin/env python3
"""send-file.py HOST PORT FILE: dom0's sender for a dom0-to-guest transfer, as a file server
sends: one TCP connection, the file handed to the kernel with sendfile(2) (the stack sizes
its packets from what it holds, not from a program's write size), then the write side
closed and the peer's close awaited.

busybox nc, the default sender, writes what it reads in small chunks; when the backend's
interface frees each packet at once, every chunk leaves dom0 as a packet of its own, so the
sender's write size, not the backend, can set the packet size (lib-dpnb.sh xfer_rx,
E2E_RX_SENDER).
"""
import socket
import sys


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with socket.create_connection((host, port), timeout=60) as s, open(path, "rb") as f:
        s.settimeout(None)
        s.sendfile(f)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
