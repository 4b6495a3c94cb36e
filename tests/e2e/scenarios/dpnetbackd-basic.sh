# dpnetbackd-basic: dpnetbackd (hypervisor.kind = "xen") serves unmodified Linux
# xen-netfront guests in place of the in-kernel netback, which is not loaded. One net_tap
# port (dpnb0 = 198.18.0.1/24 in dom0) with "mac_flow" steering: each guest gets its own
# NIC RX queue through an rte_flow MAC rule (if the port refuses, the run falls back to
# "shared" and says why in steering_fallback). For a guest with one queue (1 vCPU) and one
# with two (2 vCPUs: Linux netfront asks for one queue per vCPU; features.max_queues = 2;
# split event channels): the xenstore handshake reaches Connected (4) on both sides with
# hotplug-status connected (lab/vif-dpnetback-lab), ping both ways, and a TCP transfer each
# way whose sha256 matches at both ends, first in RX mode copy, then in map (changed on the
# running vif with `dpnetbackctl set`). At the end SIGTERM must stop the daemon without
# leaked grants.
#
# Keys as kernel-netback's for the first guest in copy mode (tx_*, rx_*: {bytes,secs,mbit,
# dom0_cpu_s,dom0_ns_per_byte}; tx = guest to dom0), prefixed map_ for RX mode map, q2_ and
# q2map_ for the two-queue guest (E2E_XFER_MIB / 4 MiB each); steering, rx_queue (the NIC
# queue the daemon gave the guest), rx_mode, queues, split_evtchn, ping_*.
#
# e2e-group: base
# e2e-timeout: 1200
# e2e-project-bins: dpnetbackd dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
SMALL=$((MIB / 4 > 0 ? MIB / 4 : 1))

! grep -q '^xen_netback ' /proc/modules || fail "xen-netback is loaded: it would serve the vifs"

common=("[features]" "max_queues = 2" "[vifs]" 'serve = "all"' 'default_rx_mode = "copy"')
dpnb_start_steered "[features]" "max_queues = 2" "[vifs]" 'serve = "all"' 'default_rx_mode = "copy"'

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

# 2. Two queues, split event channels.
dpnb_guest e2e-dpnb2 00:16:3e:e2:e0:12 'vcpus = 2'
E=$E2E_DOMID
watch_guest "$E"
handshake "$E" q2_
[ "$(xenstore-read "/local/domain/$E/device/vif/0/multi-queue-num-queues" 2>/dev/null)" = 2 ] ||
  fail "the two-vCPU guest's netfront did not ask for two queues"
vif_field "$E" .queues
kv q2_daemon_queues "$REPLY"
[ "$REPLY" = 2 ] || fail "dpnetbackd serves vif$E.0 with '$REPLY' queues, not 2"
gcmd "$E" 120 "up 198.18.0.3/24"
ping_both "$E" 198.18.0.3 q2_
xfer_tx "$E" "$SMALL" 5011 q2_
xfer_rx "$E" 198.18.0.3 "$SMALL" 5012 q2_
if why=$(ctl set "vif$E.0" rx-mode map 2>&1); then
  xfer_tx "$E" "$SMALL" 5013 q2map_
  xfer_rx "$E" 198.18.0.3 "$SMALL" 5014 q2map_
elif [ "$STEERING" = shared ] && grep -q 'needs a zero-copy NIC queue' <<<"$why"; then
  kv q2map_rx_mode refused
else
  fail "dpnetbackctl set vif$E.0 rx-mode map: $why"
fi
vif_json "$E"
kv q2_drops "$(jq -r '.drops // empty' <<<"$REPLY")"

ctl list | sed 's/^/    | /'
dpnb_stop
dpnb_keep_log
pass
