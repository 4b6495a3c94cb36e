# dpnetbackd-basic: dpnetbackd (hypervisor.kind = "xen") serves unmodified Linux
# xen-netfront guests in place of the in-kernel netback, which is not loaded. One port into
# dom0's stack (dpnb0 = 198.18.0.1/24 in dom0; lab/lib-dpnb.sh's DPNB_PORT: virtio_user over
# /dev/vhost-net by default, with MTU 9000) with "mac_flow" steering: each guest gets its own
# NIC RX queue through an rte_flow MAC rule (if the port refuses, the run falls back to
# "shared" and says why in steering_fallback). For a guest with one queue (1 vCPU) and one
# with four (4 vCPUs: Linux netfront asks for one queue per vCPU; features.max_queues = 4;
# split event channels): the xenstore handshake reaches Connected (4) on both sides with
# hotplug-status connected (lab/vif-dpnetback-lab), ping both ways, and a TCP transfer each
# way whose sha256 matches at both ends, first in RX mode copy, then in map (changed on the
# running vif with `dpnetbackctl set`). The four-queue guest's RX interrupts (/proc/interrupts)
# must rise on every queue while dom0 pings it from 32 addresses (RX spread by flow hash). On
# a vhost port the first guest then runs jumbo
# frames: dom0's dpnb0 and the guest's eth0 at MTU 9000, ping -M do -s 8972 both ways
# (unfragmented 9000-byte packets) and a transfer each way (jumbo_ keys). Every transfer
# records the mean packet dom0's stack saw on dpnb0 (*_dom0_skb_bytes): on a vhost port
# GSO packets cross whole, so guest to dom0 it must exceed a frame; the daemon's share of
# dom0's busy CPU (*_daemon_cpu_share, from /proc/PID/stat) and the lcores' system and
# hypervisor calls per 32 packets the vif moved, by kind (*_per32_{grant_copy,grant_map,
# grant_unmap,notify,read,write,sleep}; docs/metrics.md). At the end SIGTERM must stop the
# daemon without leaked grants.
#
# E2E_STRACE=1: `strace -c -f` on the daemon during the four-queue guest's transfer each way
# (which it slows; guest 1's figures stay clean): strace_{tx,rx}_calls, _calls_per_pkt (per
# packet of that guest's) and _top (the most frequent calls).
#
# Keys as kernel-netback's for the first guest in copy mode (tx_*, rx_*: {bytes,secs,mbit,
# dom0_cpu_s,dom0_ns_per_byte}; tx = guest to dom0), prefixed map_ for RX mode map, q4_ and
# q4map_ for the four-queue guest (E2E_XFER_MIB / 4 MiB each), q4_rx_irqs_{before,after};
# steering, rx_queue (the NIC queue the daemon gave the guest), rx_mode, queues,
# split_evtchn, ping_*; port_kind, port_rx_offloads, port_tx_offloads, tap_offloads
# (ethtool -k of dpnb0); jumbo_*.
#
# e2e-group: base
# e2e-timeout: 2400
# e2e-project-bins: dpnetbackd dpnetbackctl
# e2e-guest-bins: ping
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
SMALL=$((MIB / 4 > 0 ? MIB / 4 : 1))

! grep -q '^xen_netback ' /proc/modules || fail "xen-netback is loaded: it would serve the vifs"

# strace_begin / strace_end PREFIX PACKETS: the daemon's system calls (every thread) while
# the transfer between them ran, per packet of the guest's (E2E_STRACE=1 only).
STRACE_PID=""
strace_begin() {
  [ "${E2E_STRACE:-0}" = 1 ] || return 0
  strace -c -f -q -p "$DPNB_PID" -o "$DPNB_DIR/strace.txt" &
  STRACE_PID=$!
  sleep 2
}
strace_end() {
  [ -n "$STRACE_PID" ] || return 0
  kill -INT "$STRACE_PID"
  wait "$STRACE_PID" 2>/dev/null
  STRACE_PID=""
  local calls
  # strace -c columns: % time, seconds, usecs/call, calls, [errors,] syscall.
  calls=$(awk '$NF == "total" { print $4 }' "$DPNB_DIR/strace.txt")
  kv "strace_$1_calls" "${calls:-0}"
  kv "strace_$1_calls_per_pkt" "$(awk -v c="${calls:-0}" -v p="$2" 'BEGIN { printf "%.2f", (p > 0 ? c / p : 0) }')"
  kv "strace_$1_top" "$(awk '$NF != "total" && $1 ~ /^[0-9.]+$/ { print $4, $NF }' "$DPNB_DIR/strace.txt" |
    sort -rn | head -n 5 | awk '{ printf "%s%s:%s", (NR > 1 ? "," : ""), $2, $1 }')"
  sed 's/^/    strace| /' "$DPNB_DIR/strace.txt"
}
vif_packets() { vif_field "$1" ".$2"; echo "${REPLY:-0}"; }

# A vhost port carries jumbo frames (net_tap takes 1522-byte frames at most).
[ "$DPNB_PORT" != vhost ] || DPNB_MTU=9000
dpnb_start_steered "[features]" "max_queues = 4" "[vifs]" 'serve = "all"' 'default_rx_mode = "copy"'

# 1. One queue.
dpnb_guest e2e-dpnb1 00:16:3e:e2:e0:11
D=$E2E_DOMID
watch_guest "$D"
handshake "$D"
log "guest $D: handshake done"
vif_field "$D" .data_plane.rx_queue
kv rx_queue "${REPLY:-shared}"
[ "$STEERING" != mac_flow ] || [ -n "$REPLY" ] || fail "mac_flow: the vif has no NIC queue of its own"
gcmd "$D" 120 "up 198.18.0.2/24"
log "guest $D: eth0 up"
ping_both "$D" 198.18.0.2 ""
vif_field "$D" .rx_mode
kv rx_mode "$REPLY"
[ "$REPLY" = copy ] || fail "vif$D.0 is in RX mode '$REPLY', not copy"
xfer_tx "$D" "$MIB" 5001 ""
if [ "$DPNB_PORT" = vhost ]; then
  # GSO packets cross the tap whole: dom0's stack sees packets larger than a frame.
  [ "$SKB_BYTES" -gt 1514 ] ||
    fail "guest to dom0: dom0 saw packets of $SKB_BYTES bytes on average on $DPNB_IFACE, not GSO packets"
  vif_field "$D" .counters.tx_tso
  kv tx_tso "${REPLY:-0}"
  [ "${REPLY:-0}" -gt 0 ] || fail "no guest GSO packet went to the port whole (tx_tso 0)"
fi
xfer_rx "$D" 198.18.0.2 "$MIB" 5002 ""

# map needs a NIC queue of the guest's own (zero copy); on a shared queue (net_tap without
# rte_flow) the daemon refuses it with its reason, which the verdict records.
if why=$(ctl set "vif$D.0" rx-mode map 2>&1); then
  vif_json "$D"
  mode=$(jq -r .rx_mode <<<"$REPLY")
  kv map_rx_mode "$mode"
  [ "$mode" = map ] || fail "vif$D.0 stays in RX mode '$mode' ($(jq -r .rx_mode_reason <<<"$REPLY"))"
  xfer_tx "$D" "$MIB" 5003 map_
  xfer_rx "$D" 198.18.0.2 "$MIB" 5004 map_
elif [ "$STEERING" = shared ] && grep -q 'needs a zero-copy NIC queue' <<<"$why"; then
  kv map_rx_mode "refused:${why##*: vif$D.0: }"
else
  fail "dpnetbackctl set vif$D.0 rx-mode map: $why"
fi
vif_json "$D"
kv grant_map_ops "$(jq -r '.counters.grant_map_ops // empty' <<<"$REPLY")"
kv grant_copy_ops "$(jq -r '.counters.grant_copy_ops // empty' <<<"$REPLY")"
kv drops "$(jq -r '.drops // empty' <<<"$REPLY")"
kv rx_lro "$(jq -r '.counters.rx_lro // empty' <<<"$REPLY")"

# Jumbo frames: the port has MTU 9000 since the start; dom0's interface and the guest's go
# to 9000 too. Pings of 8972 bytes (9000-byte IP packets) that must not be fragmented, both
# ways, then a transfer each way; back to 1500 for the next guest.
if [ "$DPNB_PORT" = vhost ]; then
  ip link set "$DPNB_IFACE" mtu 9000 || fail "ip link set $DPNB_IFACE mtu 9000"
  gcmd "$D" 60 "mtu 9000"
  ping -n -M do -s 8972 -c 3 -W 5 198.18.0.2 > "$DPNB_DIR/ping-jumbo.txt" 2>&1
  replies=$(grep -c 'bytes from' "$DPNB_DIR/ping-jumbo.txt")
  kv jumbo_ping_d2g "$replies"
  gcmd "$D" 120 "pingdf $DOM0_IP 3 8972"
  kv jumbo_ping_g2d "$REPLY"
  [ "$replies" -ge 1 ] || fail "no reply to dom0's unfragmented 9000-byte ping: $(tail -n 3 "$DPNB_DIR/ping-jumbo.txt" | tr '\n' ' ')"
  [ "$REPLY" -ge 1 ] 2>/dev/null || fail "no reply to the guest's unfragmented 9000-byte ping of dom0"
  xfer_tx "$D" "$MIB" 5005 jumbo_
  xfer_rx "$D" 198.18.0.2 "$MIB" 5006 jumbo_
  vif_json "$D"
  kv jumbo_drops "$(jq -r '.drops // empty' <<<"$REPLY")"
  ip link set "$DPNB_IFACE" mtu 1500
  gcmd "$D" 60 "mtu 1500"
fi

# 2. Four queues, split event channels. RX reaches every queue: 32 flows from dom0 (pings
# from 32 addresses of dpnb0; the daemon hashes a frame's addresses, and ports for TCP and
# UDP, to pick the vif's queue, as Linux's netback) must raise the netfront's RX interrupt
# on each of the four queues. The hash is a fixed function of the addresses, so the spread
# is the same on every run.
dpnb_guest e2e-dpnb4 00:16:3e:e2:e0:12 'vcpus = 4'
E=$E2E_DOMID
watch_guest "$E"
# Four vCPUs under emulation on two host CPUs boot slowly (on a loaded host its netfront had
# not begun its handshake after 180 s).
handshake "$E" q4_ 600
[ "$(xenstore-read "/local/domain/$E/device/vif/0/multi-queue-num-queues" 2>/dev/null)" = 4 ] ||
  fail "the four-vCPU guest's netfront did not ask for four queues"
vif_field "$E" .queues
kv q4_daemon_queues "$REPLY"
[ "$REPLY" = 4 ] || fail "dpnetbackd serves vif$E.0 with '$REPLY' queues, not 4"
gcmd "$E" 120 "up 198.18.0.3/24"
ping_both "$E" 198.18.0.3 q4_
gcmd "$E" 60 irqs
irq0=$REPLY
for k in $(seq 100 131); do ip addr add "198.18.0.$k/24" dev "$DPNB_IFACE"; done
# All at once: one after the other they took minutes under emulation (each its own ARP).
pings=()
for k in $(seq 100 131); do
  ping -n -c 2 -W 5 -I "198.18.0.$k" 198.18.0.3 > /dev/null 2>&1 &
  pings+=($!)
done
wait "${pings[@]}" || true
for k in $(seq 100 131); do ip addr del "198.18.0.$k/24" dev "$DPNB_IFACE"; done
gcmd "$E" 60 irqs
kv q4_rx_irqs_before "$irq0"
kv q4_rx_irqs_after "$REPLY"
for q in 0 1 2 3; do
  a=$(tr ',' '\n' <<<"$irq0" | awk -F: -v q="$q" '$1 == q { print $2 }')
  b=$(tr ',' '\n' <<<"$REPLY" | awk -F: -v q="$q" '$1 == q { print $2 }')
  [ -n "$b" ] || fail "the guest has no RX interrupt of queue $q ($REPLY)"
  [ "$b" -gt "${a:-0}" ] || fail "RX did not reach queue $q of 4: its interrupts $irq0 -> $REPLY"
done
p0=$(vif_packets "$E" tx_packets)
strace_begin
xfer_tx "$E" "$SMALL" 5011 q4_
strace_end tx $(($(vif_packets "$E" tx_packets) - p0))
p0=$(vif_packets "$E" rx_packets)
strace_begin
xfer_rx "$E" 198.18.0.3 "$SMALL" 5012 q4_
strace_end rx $(($(vif_packets "$E" rx_packets) - p0))
if why=$(ctl set "vif$E.0" rx-mode map 2>&1); then
  xfer_tx "$E" "$SMALL" 5013 q4map_
  xfer_rx "$E" 198.18.0.3 "$SMALL" 5014 q4map_
elif [ "$STEERING" = shared ] && grep -q 'needs a zero-copy NIC queue' <<<"$why"; then
  kv q4map_rx_mode refused
else
  fail "dpnetbackctl set vif$E.0 rx-mode map: $why"
fi
vif_json "$E"
kv q4_drops "$(jq -r '.drops // empty' <<<"$REPLY")"

ctl list | sed 's/^/    | /'
dpnb_stop
dpnb_keep_log
pass
