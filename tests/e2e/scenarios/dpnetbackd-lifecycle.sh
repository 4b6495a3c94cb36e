# dpnetbackd-lifecycle: what happens around a running dpnetbackd vif on real Xen.
#  1. map, then destroy: guest A in RX mode map (its RX buffers are mapped grants) sends
#     and receives MIB/4 MiB checked by sha256; then it receives a
#     transfer from dom0; `xl destroy` mid-transfer. The domain must leave `xl list`
#     (Xen keeps a dying domain while dom0 still maps its grants, so this fails if the
#     daemon leaked a mapping) and the daemon must forget the vif.
#  2. detach / attach: `xl network-detach` of guest B's vif: the daemon forgets it and the
#     backend folder goes; `xl network-attach` plugs a new vif into the running guest: it
#     reaches Connected and carries pings.
#  3. restart: SIGKILL of the daemon while B is connected: the frontend stays Connected
#     (nothing is written by a crash); a new daemon re-attaches to the same rings
#     (docs/xenbus.md, "Daemon restart, re-attach": Linux netfront cannot reconnect after
#     the backend went Closed, so the restart resumes instead); ping and a transfer each
#     way work again without rebooting the guest.
# The daemon is stopped with SIGTERM at the end without leaked grants.
#
# Keys: map_rx_mode, map_tx_*/map_rx_* (the transfers in map mode, as kernel-netback's keys),
# map_grant_map_ops, destroy_secs (xl destroy until the domain left xl list), detach, attach_handle,
# attach_ping_*, restart_frontend_state, restart_connects, restart_ping_*, restart_tx_*,
# restart_rx_*.
#
# e2e-group: dpnb
# e2e-timeout: 1200
# e2e-project-bins: dpnetbackd dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
SMALL=$((MIB / 4 > 0 ? MIB / 4 : 1))

vif_unknown_h() { ! ctlj list 2>/dev/null | jq -e --argjson d "$1" --argjson h "$2" '[.vifs[] | select(.domid == $d and .handle == $h)] | length > 0' >/dev/null; }
rx_packets_above() { vif_field "$1" .rx_packets; [ "${REPLY:-0}" -gt "$2" ]; }

dpnb_start_dedicated "[vifs]" 'serve = "all"'

# 1. xl destroy mid-transfer, RX mode map.
dpnb_guest e2e-dpnb-a 00:16:3e:e2:e0:31
A=$E2E_DOMID
watch_guest "$A"
handshake "$A" a_
gcmd "$A" 120 "up 198.18.0.2/24"
ctl set "vif$A.0" rx-mode map || fail "dpnetbackctl set vif$A.0 rx-mode map"
vif_field "$A" .rx_mode
[ "$REPLY" = map ] || fail "vif$A.0 is in RX mode '$REPLY', not map"
kv map_rx_mode map
# A checked transfer each way in map mode first (the NIC writes into the guest's own mapped
# buffers; dpnetbackd-basic's guests share a queue, where map is refused).
xfer_tx "$A" "$SMALL" 5105 map_
xfer_rx "$A" 198.18.0.2 "$SMALL" 5106 map_
vif_field "$A" .counters.grant_map_ops
kv map_grant_map_ops "$REPLY"
gcmd_send "$A" "recv 5101"
guest_wait "$A" "ready-$REPLY" 120
timeout 600 busybox nc 198.18.0.2 5101 < /dev/zero &
sender=$!
wait_for 120 "frames flowing to guest $A" rx_packets_above "$A" 2000
log "destroying guest $A mid-transfer"
watch_guest ""
t0=$SECONDS
timeout 120 xl destroy "$A" || fail "xl destroy $A"
wait_for 120 "domain $A to leave xl list (a leaked grant mapping keeps it)" not_in_xl_list "$A"
kv destroy_secs $((SECONDS - t0))
wait_for 60 "dpnetbackd to forget vif$A.0" vif_unknown "$A"
kill "$sender" 2>/dev/null
wait "$sender" 2>/dev/null
dpnb_alive || fail "dpnetbackd exited after the guest was destroyed"

# 2. network-detach, network-attach.
dpnb_guest e2e-dpnb-b 00:16:3e:e2:e0:32
B=$E2E_DOMID
watch_guest "$B"
handshake "$B" b_
gcmd "$B" 120 "up 198.18.0.3/24"
ping_both "$B" 198.18.0.3 b_
timeout 120 xl network-detach "$B" 0 || fail "xl network-detach $B 0"
wait_for 60 "backend folder of vif$B.0 removed" no_folder "/local/domain/0/backend/vif/$B/0"
wait_for 60 "dpnetbackd to forget vif$B.0" vif_unknown_h "$B" 0
kv detach ok
timeout 120 xl network-attach "$B" "mac=00:16:3e:e2:e0:33" "script=$E2E_ROOT/lab/vif-dpnetback-lab" ||
  fail "xl network-attach $B"
H=$(xenstore-list "/local/domain/0/backend/vif/$B" | head -n 1)
kv attach_handle "$H"
BE=/local/domain/0/backend/vif/$B/$H
FE=/local/domain/$B/device/vif/$H
wait_for 180 "re-attached vif: backend Connected" xs_is "$BE/state" 4
wait_for 180 "re-attached vif: frontend Connected" xs_is "$FE/state" 4
gcmd "$B" 120 "up 198.18.0.4/24"
ping_both "$B" 198.18.0.4 attach_

# 3. SIGKILL and restart while the guest runs.
dpnb_kill
sleep 2
kv restart_frontend_state_after_kill "$(xenstore-read "$FE/state")"
xs_is "$FE/state" 4 || fail "the frontend left Connected when the daemon died"
dpnb_try_start || fail "dpnetbackd did not start again"
wait_for 120 "vif$B.$H re-attached" vif_connected "$B" "$H"
kv restart_backend_state "$(xenstore-read "$BE/state")"
kv restart_frontend_state "$(xenstore-read "$FE/state")"
xs_is "$FE/state" 4 || fail "the frontend is no longer Connected after the restart"
ping_both "$B" 198.18.0.4 restart_
xfer_tx "$B" "$SMALL" 5111 restart_
xfer_rx "$B" 198.18.0.4 "$SMALL" 5112 restart_

ctl list | sed 's/^/    | /'
dpnb_stop
dpnb_keep_log
pass
