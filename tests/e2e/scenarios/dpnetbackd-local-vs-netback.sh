# dpnetbackd-local-vs-netback: issue 15's guest-to-guest comparison, both backends in rounds
# of their own within one boot, as dpnetbackd-vs-netback does for guest to dom0 (see there why
# only interleaved rounds give a ratio worth reading under software emulation; the two
# separate scenarios kernel-netback-local and dpnetbackd-local spread 0.51x-2.08x in one
# pair of boots, bench/results/2026-12-08-lab-vs-quiet.md).
#
# Two guests (the dpnetbackd-guest command loop, unmodified xen-netfront, one vCPU each) stay
# up while their vifs change backend: per round, both vifs on the in-kernel xen-netback and
# one Linux bridge (module loaded, bridge xenbr0 = 198.18.0.1/24), a transfer A to B and one
# B to A, both vifs detached, bridge and module removed; then the same with dpnetbackd serving
# both vifs on its port (shared queue, RX mode copy, local delivery: the frames between the
# guests go from one guest's grants into the other's and never reach dpnb0), stopped after.
# Which backend goes first alternates per round. Each transfer is E2E_XFER_MIB MiB (16 by
# default) with sha256 at both ends and dom0's CPU measured in a window that holds only it.
#
# Keys: per round rR{knb,dpnb}_{ab,ba}_* (metrics(); on the daemon's legs also its CPU share
# and calls per 32 of the sender's packets, daemon_end's _daemon_cpu_share, _per32_*: what
# to compare between a slow leg and a fast one) and rRdpnb_{a,b}_local_rx (frames the
# daemon delivered locally to each guest in that round, checked against the transfer's
# size); the medians over the rounds {knb,dpnb}_{ab,ba}_{mbit,dom0_ns_per_byte,
# xen_dom0_ns_per_byte,domu_ns_per_byte} and {ab,ba}_{same}_ratio = dpnetbackd's median over
# netback's (throughput above 1 is faster, CPU per byte below 1 is cheaper). `bench/lab.sh
# --runs N dpnetbackd-local-vs-netback` takes medians over boots.
#   E2E_VS_ROUNDS  rounds (default 3)
#
# e2e-group: dpnb
# e2e-timeout: 5400
# e2e-default: no
# e2e-project-bins: dpnetbackd dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
ROUNDS=${E2E_VS_ROUNDS:-3}
BE_ROOT=/local/domain/0/backend/vif
MAC_A=00:16:3e:e2:e0:51
MAC_B=00:16:3e:e2:e0:52

[ "$DPNB_PORT" = vhost ] || fail "dpnetbackd-local-vs-netback runs on the vhost port (DPNB_PORT=vhost)"
module_gone xen_netback || fail "xen-netback is loaded before the first round"


guest_create e2e-lvs-a dpnetbackd-guest
A=$E2E_DOMID
guest_create e2e-lvs-b dpnetbackd-guest
B=$E2E_DOMID
declare -A IP=([$A]=198.18.0.4 [$B]=198.18.0.5) MAC=([$A]=$MAC_A [$B]=$MAC_B)
for d in $A $B; do
  watch_guest "$d"
  GCMD_N[$d]=0
done

# vifs_up: both re-attached vifs Connected on both sides, each guest's interface up, ARP
# warm between the guests (a ping each way).
vifs_up() {
  local d be fe
  for d in $A $B; do
    be=$BE_ROOT/$d/0 fe=/local/domain/$d/device/vif/0
    wait_for 600 "guest $d: backend Connected (4)" xs_is "$be/state" 4
    wait_for 600 "guest $d: frontend Connected (4)" xs_is "$fe/state" 4
    watch_guest "$d"
    gcmd "$d" 120 "up ${IP[$d]}/24"
  done
  watch_guest "$A"
  gcmd "$A" 120 "ping ${IP[$B]} 2"
  [ "$REPLY" -ge 1 ] 2>/dev/null || fail "$1: guest A does not reach guest B"
  watch_guest "$B"
  gcmd "$B" 120 "ping ${IP[$A]} 2"
  [ "$REPLY" -ge 1 ] 2>/dev/null || fail "$1: guest B does not reach guest A"
}
# vifs_down: xl network-detach of both vif 0; their backend folders gone.
vifs_down() {
  local d
  for d in $A $B; do
    timeout 180 xl network-detach "$d" 0 || fail "xl network-detach $d 0"
  done
  for d in $A $B; do
    wait_for 120 "backend folder of vif$d.0 removed" no_folder "$BE_ROOT/$d/0"
  done
}
transfers() {
  xfer_g2g "$A" "$B" "${IP[$B]}" $((PORT++)) "${1}ab"
  xfer_g2g "$B" "$A" "${IP[$A]}" $((PORT++)) "${1}ba"
}

# leg_knb PREFIX: netback and a bridge serve both guests for one transfer each way.
leg_knb() {
  local d
  netback_leg_begin xenbr0 "$DOM0_IP/24"
  for d in $A $B; do
    timeout 180 xl network-attach "$d" "mac=${MAC[$d]}" bridge=xenbr0 \
      "script=$E2E_ROOT/lab/vif-bridge-lab" || fail "xl network-attach $d (netback)"
  done
  vifs_up "$1"
  transfers "$1"
  vifs_down
  netback_leg_end xenbr0
}

# leg_dpnb PREFIX: dpnetbackd serves both guests for one transfer each way; the frames between
# them must have been delivered locally (as many as 64 KiB frames of the transfer at least).
DPNB_CONFIGURED=0
leg_dpnb() {
  local d n=${#E2E_KV[@]} min=$((MIB * 16))
  if [ $DPNB_CONFIGURED = 0 ]; then
    dpnb_config shared 1 "[vifs]" 'serve = "all"' 'default_rx_mode = "copy"'
    DPNB_CONFIGURED=1
    dpnb_start
  else
    dpnb_start
    E2E_KV=("${E2E_KV[@]:0:n}")
  fi
  for d in $A $B; do
    timeout 180 xl network-attach "$d" "mac=${MAC[$d]}" "script=$E2E_ROOT/lab/vif-dpnetback-lab" ||
      fail "xl network-attach $d (dpnetbackd)"
  done
  vifs_up "$1"
  transfers "$1"
  for d in $A $B; do
    vif_field "$d" .counters.local_rx_packets
    kv "${1}$([ "$d" = "$A" ] && echo a || echo b)_local_rx" "${REPLY:-0}"
    [ "${REPLY:-0}" -ge "$min" ] ||
      fail "$1: guest $d got ${REPLY:-0} frames by local delivery: the transfer went elsewhere"
  done
  vifs_down
  for d in $A $B; do
    wait_for 60 "dpnetbackd to forget vif$d.0" vif_unknown "$d"
  done
  dpnb_stop
}

PORT=7100
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order="knb dpnb"; else order="dpnb knb"; fi
  for b in $order; do
    log "round $r of $ROUNDS: $b"
    "leg_$b" "r$r${b}_"
  done
done

for dir in ab ba; do
  for key in mbit dom0_ns_per_byte xen_dom0_ns_per_byte domu_ns_per_byte; do
    k=$(kv_median "r[0-9]*knb_${dir}_$key") d=$(kv_median "r[0-9]*dpnb_${dir}_$key")
    kv "knb_${dir}_$key" "${k:-0}"
    kv "dpnb_${dir}_$key" "${d:-0}"
    kv "${dir}_${key}_ratio" "$(awk -v a="${d:-0}" -v b="${k:-0}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
  done
done
dpnb_keep_log
pass
