#!/usr/bin/env bash
# README's first command: installs what is missing, builds dpnetback (release), and shows the
# daemon at work on any Linux machine, serving each guest zero copy where it can:
#   - dpnetbackd on config/demo.toml: the built-in defaults (the simulated Xen hypervisor
#     inside the daemon, DPDK without hugepages) with one net_tap port per guest (only the
#     paths, the taps' names and the EAL file prefix are changed, so that it collides with
#     nothing running);
#   - three simulated guests (dpnb-netfront), one RX mode each: web1 map (its buffers are
#     grant-mapped per frame), web2 reuse (its buffers are in the I/O translation table), db1
#     copy (the daemon grant-copies into its buffers); db1 also sends to its tap;
#   - dpnb-peer on each tap's kernel side sends verifiable 1514-byte frames to that tap's
#     guest, one guest at a time, and receives what db1 sends;
#   - dpnetbackctl list and stats, an excerpt of the Prometheus endpoint;
#   - SIGTERM: the guests are closed, every grant released, the daemon says so and exits 0;
#   - a table per guest: RX mode, frames, grant operations per frame, translation-table hits,
#     the guest's reuse rate, and the lcore's CPU cycles per frame (its thread's CPU time
#     while that guest alone received, from dpnetbackctl stats, times the TSC rate).
#
# Root is needed for the daemon (tap interfaces, DPDK), for dpnb-peer (a raw AF_PACKET
# socket), and therefore for the guests and dpnetbackctl too: the embedded simulator's folder
# and the management socket belong to the daemon's user (root only). Building runs as you;
# the rest goes through sudo when you are not root.
#
#   scripts/demo.sh              the daemon demo (above)
#   scripts/demo.sh --protocol   the older demo: the netif protocol core alone, narrated
#                                (dpnb-protocol-demo, no root, no DPDK)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${DPNB_JOBS:-$(nproc)}
build=build/release

scripts/install-deps.sh build test # the build configures the tests too
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

if [ "${1:-}" = "--protocol" ]; then
  cmake --build "$build" -j "$jobs" --target dpnb-protocol-demo
  exec "$build/tests/tools/dpnb-protocol-demo"
fi
if [ $# -gt 0 ]; then
  echo "usage: scripts/demo.sh [--protocol]" >&2
  exit 2
fi

cmake --build "$build" -j "$jobs" --target dpnetbackd dpnetbackctl dpnb-netfront dpnb-peer
daemon_bin=$PWD/$build/daemon/dpnetbackd/dpnetbackd
ctl_bin=$PWD/$build/daemon/dpnetbackctl/dpnetbackctl
netfront_bin=$PWD/$build/guest/dpnb-netfront
peer_bin=$PWD/$build/tests/tools/dpnb-peer

# A prefix rather than a function, so that "$!" of a background command is the program itself
# (or sudo, which passes signals on), not a subshell.
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
as_root() { "${SUDO[@]}" "$@"; }

work=$(mktemp -d /tmp/dpnb-demo.XXXXXX)
sim=$work/sim
sock=$work/dpnetbackd.sock
daemon_pid=""
guest_pids=()
frames=20000 # per guest, 1514 bytes each, at $rate frames/s
rate=10000
sent=5000    # db1 to its tap

# The guests, in the order they connect (domains 1, 2, 3), with their port in
# config/demo.toml and that tap's kernel-side name for this run.
guests=(web1 web2 db1)
declare -A port iface vif mac
n=$(($$ % 1000))
for i in 0 1 2; do
  g=${guests[$i]}
  port[$g]=tap-$g
  iface[$g]=dpnb$n$g
  vif[$g]=vif$((i + 1)).0
  mac[$g]=00:16:3e:00:0$((i + 1)):00
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ctl() { as_root "$ctl_bin" --socket "$sock" "$@"; }

cleanup() {
  local status=$?
  for p in "${guest_pids[@]}" $daemon_pid; do
    as_root kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ $status -ne 0 ]; then
    echo "demo failed (status $status); logs kept in $work" >&2
  else
    as_root rm -rf "$work"
  fi
}
trap cleanup EXIT

# Polls for a condition (a command that succeeds) for up to $1 seconds.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then return 1; fi
    sleep 0.2
  done
}
daemon_ready() { grep -q "dpnetbackd ready" "$work/daemon.log" 2>/dev/null || [ ! -d "/proc/$daemon_pid" ]; }
connected() { # vif...
  local out
  out=$(ctl --json list) || return 1
  for v in "$@"; do
    python3 -c 'import json,sys
d=json.load(sys.stdin)
v=[x for x in d["result"]["vifs"] if x["vif"]==sys.argv[1]]
sys.exit(0 if v and v[0]["phase"]=="connected" and v[0].get("state")=="running" else 1)' "$v" <<<"$out" || return 1
  done
}
rx_packets() { # vif: frames delivered to it so far
  ctl --json show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["counters"]["rx_packets"])'
}
received() { [ "$(rx_packets "$1")" -ge "$2" ]; }
snapshot() { # name: the vif's counters and the lcores' CPU time, for the table
  ctl --json show "${vif[$1]}" >"$work/$1.$2.show.json"
  ctl --json stats >"$work/$1.$2.stats.json"
}

step "dpnetbackd: config/demo.toml (embedded simulated Xen, a net_tap port per guest, no hugepages)"
overrides=(hypervisor.sim.dir="\"$sim\"" management.socket="\"$sock\"" metrics.port=0
  log.target=stderr eal.file_prefix="dpnb-demo-$$")
for i in 0 1 2; do
  g=${guests[$i]}
  overrides+=(port.${port[$g]}.device="\"net_tap$((i + 1)),iface=${iface[$g]}\"")
done
"${SUDO[@]}" "$daemon_bin" --foreground --config config/demo.toml "${overrides[@]}" \
  2>"$work/daemon.log" &
daemon_pid=$!
wait_until 120 daemon_ready || { echo "dpnetbackd did not start"; cat "$work/daemon.log"; exit 1; }
[ -d "/proc/$daemon_pid" ] || { echo "dpnetbackd exited:"; cat "$work/daemon.log"; exit 1; }
grep -E "hypervisor: |port |metrics: |dpnetbackd ready" "$work/daemon.log" | sed 's/^/  /' | cut -c1-160
# Without addresses the kernel still sends IPv6 chatter (router solicitations, MLD) on a new
# interface; the guests would count it as frames that fail their verification. A tap queues
# at most txqueuelen frames for the daemon (then the kernel drops): a second of traffic, so
# that a busy machine that holds the lcore or a guest back for a while loses nothing.
for g in "${guests[@]}"; do
  as_root sysctl -q -w "net.ipv6.conf.${iface[$g]}.disable_ipv6=1" || true
  as_root ip link set dev "${iface[$g]}" txqueuelen $rate || true
done
db1_tap_mac=$(cat "/sys/class/net/${iface[db1]}/address")

step "three guests: dpnb-netfront creates a domain, plugs a vif (as xl network-attach), connects"
# db1 sends as soon as it is connected: the tap's kernel side listens first.
"${SUDO[@]}" "$peer_bin" --iface "${iface[db1]}" receive --count "$sent" --timeout 60 \
  2>"$work/receive.err" >"$work/receive.out" &
receiver=$!
wait_until 30 grep -q "receiving on" "$work/receive.err"
extra_web1=()
extra_web2=(--rx-mode reuse)
extra_db1=(--send "$sent" --size 1000 --dst-mac "$db1_tap_mac")
for g in "${guests[@]}"; do
  declare -n extra="extra_$g"
  "${SUDO[@]}" "$netfront_bin" --sim-dir "$sim" --name "$g" --receive "$frames" --duration 600 \
    "${extra[@]}" >"$work/$g.out" 2>"$work/$g.err" &
  guest_pids+=($!)
  unset -n extra
  wait_until 120 connected "${vif[$g]}" || { ctl list; cat "$work/$g.err"; exit 1; }
done
ctl list
echo "  (each guest has a tap port of its own, so the NIC writes into the guest's own buffers:"
echo "   web1's are grant-mapped for each frame, web2's are in the I/O translation table; db1's"
echo "   port runs in copy mode: the NIC writes daemon buffers that are grant-copied)"

step "guest -> tap: db1 sent $sent frames to its tap's MAC ($db1_tap_mac), dpnb-peer verifies"
wait $receiver || true
cat "$work/receive.out"

for g in "${guests[@]}"; do
  step "tap -> $g: dpnb-peer sends $frames frames of 1514 bytes at $rate/s on ${iface[$g]}, $g checks every byte"
  before=$(rx_packets "${vif[$g]}")
  snapshot "$g" before
  as_root "$peer_bin" --iface "${iface[$g]}" send --to "${mac[$g]}" --count "$frames" \
    --size 1514 --rate "$rate"
  wait_until 30 received "${vif[$g]}" $((before + frames)) || echo "  (not every frame arrived)"
  snapshot "$g" after
done

step "dpnetbackctl list"
ctl list
step "dpnetbackctl show vif2.0 (excerpt)"
ctl show vif2.0 | head -24
step "dpnetbackctl stats"
ctl stats
metrics_port=$(ctl --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["management"]["metrics_endpoint"]["port"])')
step "Prometheus: http://127.0.0.1:$metrics_port/metrics (excerpt)"
python3 -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
  "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt"
grep -E '^dpnetback_(vifs_connected|vif_packets_total|vif_iott_lookups_total|vif_iott_hit_ratio|vif_rx_mode|vif_grant_operations_total|lcore_cpu_seconds_total|lcore_polls_total)' \
  "$work/metrics.txt" || true
echo "  ... $(grep -c '^# TYPE' "$work/metrics.txt") metric families in all (docs/metrics.md)"

step "SIGTERM: the daemon closes every vif, releases every grant, stops"
as_root kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=""
grep -E "SIGTERM|every vif closed|shut down cleanly|dpnetbackd stopped" "$work/daemon.log" | sed 's/^/  /' | cut -c1-160 || true
echo "  dpnetbackd exit status: $status"
for p in "${guest_pids[@]}"; do wait "$p" 2>/dev/null || true; done
guest_pids=()
step "the guests' own summaries"
for g in "${guests[@]}"; do grep "^dpnb-netfront" "$work/$g.out" | cut -c1-200; done

step "per guest: what the daemon did for each frame it received (1514 bytes, $rate frames/s)"
python3 - "$work" "$frames" "${guests[@]}" <<'EOF'
import json, re, sys
work, sent, guests = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(path):
    with open(path) as f:
        return json.load(f)
rows = [("guest", "vif", "RX mode", "frames", "lost", "map/frame", "unmap/frame", "copy/frame",
         "IOTT hits", "reuse rate", "lcore cycles/frame")]
for g in guests:
    b = load(f"{work}/{g}.before.show.json")["result"]
    a = load(f"{work}/{g}.after.show.json")["result"]
    d = {k: a["counters"][k] - b["counters"][k] for k in a["counters"]}
    frames = d["rx_packets"]
    lb = load(f"{work}/{g}.before.stats.json")["result"]["lcores"]
    la = load(f"{work}/{g}.after.stats.json")["result"]["lcores"]
    cpu_ns = sum(x["cpu_ns"] for x in la) - sum(x["cpu_ns"] for x in lb)
    hz = la[0]["tsc_hz"] if la else 0
    m = re.search(r"reuse_rate=([0-9.]+)", open(f"{work}/{g}.out").read())
    reuse = "-" if a["rx_mode"] != "reuse" else f"{100 * float(m[1]):.1f} %" if m else "?"
    per = lambda k: f"{d[k] / frames:.2f}" if frames else "-"
    cycles = f"{cpu_ns * hz / 1e9 / frames:.0f}" if frames and hz else "-"
    rows.append((g, a["vif"], a["rx_mode"], str(frames), str(max(sent - frames, 0)),
                 per("grant_map_ops"), per("grant_unmap_ops"), per("grant_copy_ops"),
                 str(d["iott_hits"]), reuse, cycles))
widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for r in rows:
    print("  " + "  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
print(f"  frames: delivered of the {sent} sent. lcore cycles/frame: the CPU time of the lcore's")
print("  thread while that guest alone received (dpnetback_lcore_cpu_seconds_total) times the TSC")
print("  rate, over its frames. reuse rate: the guest's own (its RX posts that found their page")
print("  already registered, docs/netfront.md).")
EOF
[ $status -eq 0 ]
