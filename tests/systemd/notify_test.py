#!/usr/bin/env python3
# dpnetbackd's side of the unit's Type=notify, NotifyAccess=main and WatchdogSec=, without
# systemd: the test plays the service manager. It binds a datagram socket, starts the daemon
# with NOTIFY_SOCKET and WATCHDOG_USEC pointing at it (as systemd does), and checks, with the
# sender's credentials (SO_PASSCRED) as systemd reads them, that
#   - every message comes from the main process (NotifyAccess=main would drop others);
#   - READY=1 arrives, with a STATUS= line;
#   - WATCHDOG=1 keeps coming while the lcores run (at least three kicks);
#   - SIGTERM brings STOPPING=1 and exit status 0.
# Usage: notify_test.py DPNETBACKD
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

daemon = sys.argv[1]
WAIT = 300  # seconds: generous, the machine may be loaded


def fail(msg, log=None):
    print("FAIL:", msg)
    if log and os.path.exists(log):
        with open(log, errors="replace") as f:
            print("----- daemon log\n" + "".join(f.readlines()[-60:]))
    sys.exit(1)


with tempfile.TemporaryDirectory(prefix="dpnbnotify.", dir="/tmp") as tmp:
    pid = os.getpid()
    config = os.path.join(tmp, "dpnetback.toml")
    with open(config, "w") as f:
        f.write(f"""[hypervisor]
kind = "sim"
[hypervisor.sim]
dir = "{tmp}/sim"
[log]
target = "stderr"
[eal]
main_lcore = 0
worker_lcores = [1]
file_prefix = "dpnbnt{pid}"
[port.uplink]
device = "net_tap_nt,iface=dpnbnt{pid}"
[management]
socket = "{tmp}/ctl.sock"
[metrics]
port = 0
""")
    notify_path = os.path.join(tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(1.0)

    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="2000000")
    env.pop("WATCHDOG_PID", None)
    log = os.path.join(tmp, "daemon.log")
    with open(log, "w") as out:
        proc = subprocess.Popen([daemon, "--foreground", "--config", config], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        messages = []  # (sender pid, {key: value})

        def receive_until(pred, what):
            deadline = time.monotonic() + WAIT
            while not pred():
                if time.monotonic() > deadline:
                    fail(f"timed out waiting for {what}", log)
                try:
                    data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
                except socket.timeout:
                    # Messages sent before an exit are still queued: only an empty socket
                    # and a dead daemon end the wait.
                    if proc.poll() is not None:
                        fail(f"dpnetbackd exited ({proc.returncode}) before {what}", log)
                    continue
                sender = None
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        sender = struct.unpack("iII", payload[:12])[0]
                fields = dict(line.split("=", 1) for line in data.decode().splitlines()
                              if "=" in line)
                messages.append((sender, fields))

        def seen(key, value=None):
            return any(key in m and (value is None or m[key] == value) for _, m in messages)

        receive_until(lambda: seen("READY", "1"), "READY=1")
        ready = next(m for _, m in messages if m.get("READY") == "1")
        if "STATUS" not in ready:
            fail(f"READY=1 came without STATUS=: {ready}")
        print("ok: READY=1 with STATUS=" + ready["STATUS"])

        base = len(messages)
        receive_until(lambda: sum(1 for _, m in messages[base:] if m.get("WATCHDOG") == "1") >= 3,
                      "three WATCHDOG=1 kicks")
        print("ok: WATCHDOG=1 kicks while the lcores run")

        proc.send_signal(signal.SIGTERM)
        receive_until(lambda: seen("STOPPING", "1"), "STOPPING=1")
        try:
            status = proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            fail("dpnetbackd did not stop after SIGTERM", log)
        if status != 0:
            fail(f"dpnetbackd exited {status} after SIGTERM", log)
        print("ok: SIGTERM: STOPPING=1, exit status 0")

        senders = {s for s, _ in messages}
        if senders != {proc.pid}:
            fail(f"notifications from {senders}, not only the main process {proc.pid}")
        print(f"ok: all {len(messages)} notifications from the main process")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
print("PASS")
