# dpnetbackd-reuse: dpnetback's own netfront (dpnb-netfront --xen, docs/netfront.md) in a
# real domU, in RX mode reuse against dpnetbackd with features.ctrl_ring and
# features.static_grants (docs/protocol.md: the guest registers its RX pool over the netif
# control ring; the daemon keeps those grants mapped and finds posted buffers in its
# translation table instead of copying or mapping per packet). The guest boots without a
# vif and unloads xen-netfront, then `xl network-attach` plugs one and dpnb-netfront takes
# it: it sends N verifiable frames to dom0's dpnb0, where lab/echo-frames.py sends each back
# with the MACs swapped; the guest checks every byte of what comes back. Every sent frame
# must be answered OKAY and at least 90% must come back verified (the echo is a Python
# raw socket under emulation: it may lose frames; dpnetbackd's own drops are recorded).
# The daemon must serve the vif in reuse mode with translation-table hits.
#
# Keys: backend_state frontend_state ctrl_ring static_grants rx_mode iott_hits iott_misses
# grant_copy_ops drops echoed netfront (its summary line).
#
# e2e-group: dpnb
# e2e-timeout: 900
# e2e-project-bins: dpnetbackd dpnetbackctl
# e2e-guest-bins: dpnb-netfront
. "$E2E_ROOT/lab/lib-dpnb.sh"
FRAMES=${E2E_REUSE_FRAMES:-2000}
MAC=00:16:3e:e2:e0:41

dpnb_start_dedicated "[features]" "ctrl_ring = true" "static_grants = true" \
  "[vifs]" 'serve = "all"' 'default_rx_mode = "reuse"'
# The guest owns the whole port, and its test netfront counts every frame that is not one of
# its own as bad: keep dom0's own traffic (IPv6 router solicitations and MLD, ARP) off dpnb0.
sysctl -qw "net.ipv6.conf.$DPNB_IFACE.disable_ipv6=1"
ip link set "$DPNB_IFACE" arp off
# The guest's 2000 frames can reach the tap faster than dom0's emulated CPU runs its softirq:
# with the default backlog of 1000 frames the kernel dropped 1984 of them (dpnb0 rx_dropped)
# in a CI rehearsal. Room for the whole burst.
sysctl -qw net.core.netdev_max_backlog=10000

guest_create e2e-dpnb-reuse dpnetbackd-reuse 'vif = [ ]'
D=$E2E_DOMID
watch_guest "$D"
guest_put "$D" frames "$FRAMES"
guest_put "$D" dst-mac "$DPNB_DOM0_MAC"
guest_put "$D" mac "$MAC"
guest_wait "$D" no-netfront 180
python3 "$E2E_ROOT/lab/echo-frames.py" "$DPNB_IFACE" "$DPNB_DOM0_MAC" > "$DPNB_DIR/echo.txt" 2>&1 &
echo_pid=$!
timeout 120 xl network-attach "$D" "mac=$MAC" "script=$E2E_ROOT/lab/vif-dpnetback-lab" ||
  fail "xl network-attach $D"
guest_put "$D" vif-attached 1

BE=/local/domain/0/backend/vif/$D/0
FE=/local/domain/$D/device/vif/0
wait_for 180 "backend state Connected (4)" xs_is "$BE/state" 4
wait_for 180 "frontend state Connected (4)" xs_is "$FE/state" 4
kv backend_state "$(xenstore-read "$BE/state")"
kv frontend_state "$(xenstore-read "$FE/state")"
kv ctrl_ring "$(xenstore-exists "$FE/ctrl-ring-ref" && echo 1 || echo 0)"
kv static_grants "$(xenstore-read "$FE/feature-static-grants" 2>/dev/null || echo 0)"

# The vif's counters while the netfront runs (once it closes, the daemon detaches the vif
# and `show` has none): the last sample before the guest's exit status appears. The guest
# stays connected for 20 s (--duration) after a transfer of a few seconds, so that slow
# samples on a loaded host still see the counters.
LAST_VIF=""
sample_until_done() {
  vif_json "$D"
  [ "$(jq -r '.counters // empty' <<<"$REPLY" 2>/dev/null)" = "" ] || LAST_VIF=$REPLY
  xenstore-exists "$(guest_key "$D" nf-rc)" && return 0
  sleep 0.5
  return 1
}
wait_for 600 "dpnb-netfront to finish" sample_until_done
guest_wait "$D" nf-rc 10
rc=$REPLY
kill -TERM "$echo_pid" 2>/dev/null
wait "$echo_pid" 2>/dev/null
kv echoed "$(tail -n 1 "$DPNB_DIR/echo.txt" | awk '{ print $2 }')"
kv netfront "$(guest_get "$D" nf-summary)"
kv dpnb0_rx_dropped "$(cat "/sys/class/net/$DPNB_IFACE/statistics/rx_dropped")"
REPLY=$LAST_VIF
[ -n "$REPLY" ] || fail "no counters of vif$D.0 while the netfront ran"
log "vif: $(jq -c '{rx_mode, rx_mode_reason, counters}' <<<"$REPLY")"
kv rx_mode "$(jq -r .rx_mode <<<"$REPLY")"
kv iott_hits "$(jq -r '.counters.iott_hits // empty' <<<"$REPLY")"
kv iott_misses "$(jq -r '.counters.iott_misses // empty' <<<"$REPLY")"
kv grant_copy_ops "$(jq -r '.counters.grant_copy_ops // empty' <<<"$REPLY")"
kv drops "$(jq -r '.drops // empty' <<<"$REPLY")"
[ "$rc" = 0 ] || fail "dpnb-netfront exited with status $rc"
[ "$(jq -r .rx_mode <<<"$REPLY")" = reuse ] ||
  fail "vif$D.0 is served in RX mode $(jq -r .rx_mode <<<"$REPLY") ($(jq -r .rx_mode_reason <<<"$REPLY"))"
[ "$(jq -r '.counters.iott_hits // 0' <<<"$REPLY")" -gt 0 ] || fail "no translation-table hits in reuse mode"
dpnb_stop
dpnb_keep_log
pass
