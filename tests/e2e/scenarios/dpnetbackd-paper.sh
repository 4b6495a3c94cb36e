# dpnetbackd-paper: the paper's figures 3 and 4 (the driver domain's CPU per received packet
# in each RX mode) on a real Xen. dpnetback's own netfront (dpnb-netfront --xen, RX pool
# registered over the control ring with static grants) in a real domU on a port of its own
# (dedicated_port on net_tap: the device writes into the guest's buffers) receives a paced
# stream of verifiable frames that dom0 sends into dpnb0 (dpnb-send-frames: bursts of up to
# 32 frames per sendmmsg, bench/sender), at 60 and
# 1514 bytes, while the running vif is switched between RX modes copy (grant copy per
# frame), map (the NIC writes into the guest's buffer, mapped per frame) and reuse (mapped
# once, found in the translation table). For each mode and size: the frames delivered, the
# daemon process's CPU per frame (/proc/PID/stat, every thread) and its lcores' (the loop's
# thread CPU time, in ns and TSC cycles), grant operations and translation-table hits per
# frame. Timings under QEMU TCG mean something only against each other in one boot: the
# figure is the ratio of map and reuse to copy. By name only (not in README's test
# command): about 3 minutes of a boot at the defaults.
#
# E2E_PAPER_RATE (frames/s, default 10000; 0: as fast as the tap takes them) and
# E2E_PAPER_SECS (per point, default 10). The rate sets how many frames one wake-up of the
# lcore finds: at the 1000 frames/s a sender with a system call per frame reached under
# emulation, every frame woke the lcore on its own and the modes differed by little more
# than their wake-ups.
# Keys, per MODE in copy map reuse and SIZE in 60 1514: MODE_SIZE_{sent,delivered,
# daemon_ns_per_pkt,lcore_ns_per_pkt,lcore_cycles_per_pkt,grant_copy_per_pkt,
# grant_map_per_pkt,iott_hits_per_pkt,drops,sender_refused (frames the tap did not take)};
# MODE_SIZE_vs_copy_lcore (the lcores' CPU per
# frame against copy's at that size); netfront (its summary line).
#
# e2e-group: dpnb
# e2e-timeout: 1500
# e2e-default: no
# e2e-project-bins: dpnetbackd dpnetbackctl dpnb-send-frames
# e2e-guest-bins: dpnb-netfront
. "$E2E_ROOT/lab/lib-dpnb.sh"
RATE=${E2E_PAPER_RATE:-10000}
SECS=${E2E_PAPER_SECS:-10}
MAC=00:16:3e:e2:e0:51

dpnb_start_dedicated "[features]" "ctrl_ring = true" "static_grants = true" \
  "[vifs]" 'serve = "all"' 'default_rx_mode = "reuse"'
# Only the stream reaches the guest: no IPv6 or ARP of dom0's on dpnb0.
sysctl -qw "net.ipv6.conf.$DPNB_IFACE.disable_ipv6=1"
ip link set "$DPNB_IFACE" arp off

guest_create e2e-dpnb-paper dpnetbackd-paper 'vif = [ ]'
D=$E2E_DOMID
watch_guest "$D"
guest_put "$D" mac "$MAC"
guest_wait "$D" no-netfront 180
timeout 120 xl network-attach "$D" "mac=$MAC" "script=$E2E_ROOT/lab/vif-dpnetback-lab" ||
  fail "xl network-attach $D"
guest_put "$D" vif-attached 1
BE=/local/domain/0/backend/vif/$D/0
FE=/local/domain/$D/device/vif/0
wait_for 180 "backend state Connected (4)" xs_is "$BE/state" 4
wait_for 180 "frontend state Connected (4)" xs_is "$FE/state" 4
kv static_grants "$(xenstore-read "$FE/feature-static-grants" 2>/dev/null || echo 0)"

# sample: "rx_packets drops grant_copy_ops grant_map_ops iott_hits daemon_ticks lcore_ns
# tsc_hz" now.
sample() {
  local v s
  vif_json "$D"
  v=$(jq -r '[.counters.rx_packets, .drops, .counters.grant_copy_ops, .counters.grant_map_ops,
    .counters.iott_hits] | map(. // 0) | @tsv' <<<"$REPLY")
  s=$(ctlj stats | jq -r '[([.lcores[].cpu_ns] | add // 0), (.lcores[0].tsc_hz // 0)] | @tsv')
  echo "$v $(awk '{ print $14 + $15 }' "/proc/$DPNB_PID/stat") $s"
}
per() { awk -v a="$1" -v n="$2" -v f="${3:-1}" 'BEGIN { printf "%.2f", (n > 0 ? a * f / n : 0) }'; }

declare -A LCORE_NS
for size in 60 1514; do
  for mode in copy map reuse; do
    p=${mode}_${size}_
    why=$(ctl set "vif$D.0" rx-mode "$mode" 2>&1) || { kv "${p}refused" "$(tr -s ' \n' '_' <<<"$why" | cut -c1-120)"; continue; }
    vif_field "$D" .rx_mode
    [ "$REPLY" = "$mode" ] || fail "vif$D.0 is in RX mode '$REPLY' after set $mode"
    sleep 1
    read -r r0 dr0 gc0 gm0 ih0 t0 ns0 hz <<<"$(sample)"
    read -r _ sent _ _ _ refused < <("$E2E_BIN_dpnb_send_frames" "$DPNB_IFACE" "$MAC" "$DPNB_DOM0_MAC" \
      "$size" "$RATE" "$SECS") || true
    sleep 1
    read -r r1 dr1 gc1 gm1 ih1 t1 ns1 hz <<<"$(sample)"
    n=$((r1 - r0))
    kv "${p}sent" "${sent:-0}"
    kv "${p}delivered" "$n"
    kv "${p}drops" $((dr1 - dr0))
    kv "${p}sender_refused" "${refused:-0}"
    kv "${p}daemon_ns_per_pkt" "$(per $((t1 - t0)) "$n" "$((1000000000 / TICK))")"
    kv "${p}lcore_ns_per_pkt" "$(per $((ns1 - ns0)) "$n")"
    kv "${p}lcore_cycles_per_pkt" "$(awk -v a=$((ns1 - ns0)) -v n="$n" -v hz="$hz" 'BEGIN { printf "%.0f", (n > 0 ? a * hz / 1e9 / n : 0) }')"
    kv "${p}grant_copy_per_pkt" "$(per $((gc1 - gc0)) "$n")"
    kv "${p}grant_map_per_pkt" "$(per $((gm1 - gm0)) "$n")"
    kv "${p}iott_hits_per_pkt" "$(per $((ih1 - ih0)) "$n")"
    LCORE_NS[$p]=$(per $((ns1 - ns0)) "$n")
    [ "$n" -gt 0 ] || fail "RX mode $mode, $size bytes: no frame reached the guest of ${sent:-0} sent"
    [ "${LCORE_NS[copy_${size}_]:-}" = "" ] ||
      kv "${p}vs_copy_lcore" "$(awk -v a="${LCORE_NS[$p]}" -v b="${LCORE_NS[copy_${size}_]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
  done
done

guest_put "$D" stop 1
guest_wait "$D" nf-rc 60
rc=$REPLY
kv netfront "$(guest_get "$D" nf-summary | tr -s ' ' '_' | cut -c1-300)"
[ "$rc" = 0 ] || fail "dpnb-netfront exited with status $rc"
dpnb_stop
dpnb_keep_log
pass
