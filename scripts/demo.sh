#!/usr/bin/env bash
# README's first command: installs what is missing, builds dpnetback (release), and shows the
# daemon at work on any Linux machine:
#   - dpnetbackd on its built-in defaults: the simulated Xen hypervisor inside the daemon, one
#     net_tap port, DPDK without hugepages (only the paths, the tap's name and the EAL file
#     prefix are changed, so that it does not collide with anything running);
#   - three simulated guests (dpnb-netfront): two echo what they receive, one of them with a
#     pool of RX pages registered in the I/O translation table (reuse mode), the third sends;
#   - traffic both ways on the tap's kernel side with dpnb-peer (rate, RTT);
#   - dpnetbackctl list and stats, an excerpt of the Prometheus endpoint;
#   - SIGTERM: the guests are closed, every grant released, the daemon says so and exits 0.
#
# Root is needed for the daemon (a tap interface, DPDK), for dpnb-peer (a raw AF_PACKET
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
iface=dpnbdemo$(($$ % 1000))
daemon_pid=""
guest_pids=()

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ctl() { as_root "$ctl_bin" --socket "$sock" "$@"; }
peer() { as_root "$peer_bin" --iface "$iface" "$@"; }

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

step "dpnetbackd: built-in defaults (embedded simulated Xen, net_tap port $iface, no hugepages)"
"${SUDO[@]}" "$daemon_bin" --foreground --config config/dpnetback.toml \
  hypervisor.sim.dir="\"$sim\"" management.socket="\"$sock\"" metrics.port=0 \
  log.target=stderr eal.file_prefix="dpnb-demo-$$" \
  port.uplink.device="\"net_tap0,iface=$iface\"" 2>"$work/daemon.log" &
daemon_pid=$!
wait_until 120 daemon_ready || { echo "dpnetbackd did not start"; cat "$work/daemon.log"; exit 1; }
[ -d "/proc/$daemon_pid" ] || { echo "dpnetbackd exited:"; cat "$work/daemon.log"; exit 1; }
grep -E "hypervisor: |port |metrics: |dpnetbackd ready" "$work/daemon.log" | sed 's/^/  /' | cut -c1-160
# Without addresses the kernel still sends IPv6 chatter (router solicitations, MLD) on a new
# interface; the guests would count it as frames that fail their verification.
as_root sysctl -q -w "net.ipv6.conf.$iface.disable_ipv6=1" || true

step "three guests: dpnb-netfront creates a domain, plugs a vif (as xl network-attach), connects"
"${SUDO[@]}" "$netfront_bin" --sim-dir "$sim" --name web1 --echo >"$work/web1.out" 2>&1 &
guest_pids+=($!)
wait_until 120 connected vif1.0 || { ctl list; exit 1; } # web1 is domain 1, web2 domain 2
"${SUDO[@]}" "$netfront_bin" --sim-dir "$sim" --name web2 --echo --rx-mode reuse \
  >"$work/web2.out" 2>&1 &
guest_pids+=($!)
wait_until 120 connected vif1.0 vif2.0 || { ctl list; exit 1; }
ctl list
echo "  (web2 keeps its RX pages registered in the I/O translation table, the paper's grant reuse;"
echo "   the daemon reads the table on ports that give each guest a zero-copy NIC queue, mac_flow"
echo "   or dedicated_port; this tap port shares one queue, so it grant-copies for every guest)"

tap_mac=$(cat "/sys/class/net/$iface/address")
mac1=00:16:3e:00:01:00
mac2=00:16:3e:00:02:00

step "tap -> guests -> tap: dpnb-peer sends verifiable frames, web1 and web2 echo them"
peer echo --to "$mac1,$mac2" --count 20000 --size 1000

step "guest -> tap: db1 sends 20000 frames to the tap's MAC ($tap_mac), dpnb-peer verifies"
"${SUDO[@]}" "$peer_bin" --iface "$iface" receive --count 20000 --timeout 120 \
  2>"$work/receive.err" >"$work/receive.out" &
receiver=$!
wait_until 30 grep -q "receiving on" "$work/receive.err"
as_root "$netfront_bin" --sim-dir "$sim" --name db1 --send 20000 --size 1000 --dst-mac "$tap_mac"
wait $receiver || true
cat "$work/receive.out"

step "dpnetbackctl list"
ctl list
step "dpnetbackctl show vif2.0 (excerpt)"
ctl show vif2.0 | head -24
step "dpnetbackctl stats"
ctl stats
port=$(ctl --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["management"]["metrics_endpoint"]["port"])')
step "Prometheus: http://127.0.0.1:$port/metrics (excerpt)"
python3 -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
  "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
grep -E '^dpnetback_(vifs_connected|vif_packets_total|vif_bytes_total|vif_iott_lookups_total|vif_iott_hit_ratio|vif_rx_mode|port_packets_total|lcore_polls_total)' \
  "$work/metrics.txt" || true
echo "  ... $(grep -c '^# TYPE' "$work/metrics.txt") metric families in all (docs/metrics.md)"

step "SIGTERM: the daemon closes every vif, releases every grant, stops"
as_root kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=""
grep -E "SIGTERM|every vif closed|shut down cleanly|dpnetbackd stopped" "$work/daemon.log" | sed 's/^/  /' | cut -c1-160 || true
echo "  dpnetbackd exit status: $status"
for p in "${guest_pids[@]}"; do as_root kill -TERM "$p" 2>/dev/null || true; done
for p in "${guest_pids[@]}"; do wait "$p" 2>/dev/null || true; done
guest_pids=()
step "the guests' own summaries"
cat "$work/web1.out" "$work/web2.out" | grep "^dpnb-netfront" | cut -c1-200
[ $status -eq 0 ]
