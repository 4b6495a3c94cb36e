# dpnetbackd-vs-netback: issue 13's comparison, both backends in rounds of their own within
# one boot. Under software emulation a boot's speed differs from the next one's by more than
# the backends differ (bench/results/2026-12-07-lab-placement.txt: the in-kernel netback
# alone moved 24.7 -> 39.0 Mbit/s between two boots), so a ratio is only worth something
# when both sides ran in the same boot, interleaved, several times each.
#
# One guest at a time (the dpnetbackd-guest command loop, an unmodified xen-netfront) stays
# up while its vif changes backend: per round, `xl network-attach` of a vif served by the
# in-kernel xen-netback on a bridge (module loaded, bridge xenbr0 = 198.18.0.1/24), a TCP
# transfer each way, `xl network-detach`, module and bridge removed; then the same with
# dpnetbackd serving the vif (started for the leg, its vhost port dpnb0 = 198.18.0.1/24,
# shared queue, RX mode copy), stopped after it (so that neither backend's idle presence
# costs the other's windows). Which backend goes first alternates per round. Each transfer
# is E2E_XFER_MIB MiB (16 by default) with sha256 at both ends, its dom0 CPU measured in a
# window that holds only the transfer (lib-dom0.sh), and for dpnetbackd the daemon's and
# vhost-net's share of it (lib-dpnb.sh daemon_begin/daemon_end).
# Two guests, one after the other: one vCPU (one queue with either backend) and four vCPUs
# (netfront asks for four queues: dpnetbackd gives four, Linux's netback as many as dom0 has
# vCPUs, two here; `qN_{knb,dpnb}_queues` say what each got).
#
# Keys: per round rR{q1,q4}{knb,dpnb}_{tx,rx}_* (xfer_tx/xfer_rx's); the medians over the
# rounds qN_{knb,dpnb}_{tx,rx}_{mbit,dom0_ns_per_byte,dom0_ctxt_per_mib,xen_dom0_ns_per_byte,
# domu_ns_per_byte,dom0_skb_bytes,dom0_user_share,dom0_sys_share,dom0_softirq_share} (where
# the time went, lib-dom0.sh metrics; skb bytes: the mean packet on vifD.0 or dpnb0), for
# knb _netback_cpu_share (its kernel threads), for dpnb _daemon_cpu_share, _daemon_sys_share,
# _vhost_cpu_share, _per32_notify, _per32_grant_copy, _per32_sleep; for rx both backends'
# _dom0_min_rtt_ms, _dom0_rtt_ms and _dom0_cwnd (dom0's sending socket, lib-dom0.sh
# tcp_rtt_keys: what bounds the size of dom0's packets) and per round _rx_iface_tso (TSO on
# the interface at the transfer's start and end); dom0_tcp_cc and dom0_tso_rtt_log; and
# qN_{tx,rx}_{mbit,dom0_ns_per_byte,dom0_ctxt_per_mib,xen_dom0_ns_per_byte,domu_ns_per_byte,
# dom0_skb_bytes}_ratio = dpnetbackd's median over netback's (throughput above 1 is faster;
# CPU per byte below 1 is cheaper; xen_dom0 and domu: dom0's and the guest's vCPU time as
# Xen accounts it). run.sh prints the ratio lines; `bench/lab.sh --runs N
# dpnetbackd-vs-netback` takes medians over boots.
#   E2E_VS_ROUNDS  rounds per guest (default 3); E2E_VS_GUESTS  "1 4" (vCPU counts, default)
#
# e2e-group: base
# e2e-timeout: 5400
# e2e-default: no
# e2e-project-bins: dpnetbackd dpnetbackctl
# e2e-guest-bins: ping
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
ROUNDS=${E2E_VS_ROUNDS:-3}
GUESTS=${E2E_VS_GUESTS:-1 4}
GUEST_IP=198.18.0.2
MAC=00:16:3e:e2:e0:61
BE_ROOT=/local/domain/0/backend/vif

[ "$DPNB_PORT" = vhost ] || fail "dpnetbackd-vs-netback compares the vhost port (DPNB_PORT=vhost)"
module_gone xen_netback || fail "xen-netback is loaded before the first round"
# The lab knob pins by hand; the daemon places its own wake-ups here (its default).
unset E2E_DPNB_PIN

# vif_up DOMID PREFIX: the re-attached vif (handle 0 again: libxl takes the lowest free one)
# Connected on both sides, the guest's interface up, ARP warm both ways (one ping each way).
vif_up() {
  local d=$1 p=$2 be=$BE_ROOT/$1/0 fe=/local/domain/$1/device/vif/0
  wait_for 600 "guest $d: backend Connected (4)" xs_is "$be/state" 4
  wait_for 600 "guest $d: frontend Connected (4)" xs_is "$fe/state" 4
  QUEUES=$(xenstore-read "$fe/multi-queue-num-queues" 2>/dev/null || echo 1)
  gcmd "$d" 120 "up $GUEST_IP/24"
  busybox ping -c 1 -W 10 "$GUEST_IP" > /dev/null 2>&1
  gcmd "$d" 120 "ping $DOM0_IP 1"
  [ "$REPLY" -ge 1 ] 2>/dev/null || fail "$p: guest $d does not reach dom0 ($DOM0_IP)"
}
# vif_down DOMID: xl network-detach of vif 0; its backend folder gone.
vif_down() {
  timeout 180 xl network-detach "$1" 0 || fail "xl network-detach $1 0"
  wait_for 120 "backend folder of vif$1.0 removed" no_folder "$BE_ROOT/$1/0"
}

# leg_knb DOMID PREFIX: the in-kernel netback serves the guest for one transfer each way.
leg_knb() {
  local d=$1 p=$2
  netback_leg_begin xenbr0 "$DOM0_IP/24"
  timeout 180 xl network-attach "$d" "mac=$MAC" bridge=xenbr0 "script=$E2E_ROOT/lab/vif-bridge-lab" ||
    fail "xl network-attach $d (netback)"
  vif_up "$d" "$p"
  KNB_QUEUES=$QUEUES
  # The mean packet dom0's stack saw (*_dom0_skb_bytes) on netback's own interface, as on
  # the daemon's dpnb0: how much of the guest's GSO reached dom0 whole.
  DPNB_IFACE=vif$d.0
  xfer_tx "$d" "$MIB" $((PORT++)) "$p"
  xfer_rx "$d" "$GUEST_IP" "$MIB" $((PORT++)) "$p"
  DPNB_IFACE=dpnb0
  vif_down "$d"
  netback_leg_end xenbr0
}

# leg_dpnb DOMID PREFIX: dpnetbackd serves the guest for one transfer each way.
DPNB_CONFIGURED=0
leg_dpnb() {
  local d=$1 p=$2 n=${#E2E_KV[@]}
  if [ $DPNB_CONFIGURED = 0 ]; then
    # The port's description once (kv keys); later starts reuse the configuration.
    dpnb_start_steered "[features]" "max_queues = 4" "[vifs]" 'serve = "all"' 'default_rx_mode = "copy"'
    DPNB_CONFIGURED=1
  else
    dpnb_start
    E2E_KV=("${E2E_KV[@]:0:n}")
  fi
  timeout 180 xl network-attach "$d" "mac=$MAC" "script=$E2E_ROOT/lab/vif-dpnetback-lab" ||
    fail "xl network-attach $d (dpnetbackd)"
  vif_up "$d" "$p"
  DPNB_QUEUES=$QUEUES
  xfer_tx "$d" "$MIB" $((PORT++)) "$p"
  xfer_rx "$d" "$GUEST_IP" "$MIB" $((PORT++)) "$p"
  vif_down "$d"
  wait_for 60 "dpnetbackd to forget vif$d.0" vif_unknown "$d"
  dpnb_stop
}

PORT=5200
kv dom0_tcp_cc "$(sysctl -n net.ipv4.tcp_congestion_control 2>/dev/null)"
kv dom0_tso_rtt_log "$(sysctl -n net.ipv4.tcp_tso_rtt_log 2>/dev/null)"
for vcpus in $GUESTS; do
  q=q$vcpus
  guest_create "e2e-vs-$q" dpnetbackd-guest "vcpus = $vcpus"
  D=$E2E_DOMID
  watch_guest "$D"
  GCMD_N[$D]=0
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="knb dpnb"; else order="dpnb knb"; fi
    for b in $order; do
      log "guest $q, round $r of $ROUNDS: $b"
      "leg_$b" "$D" "r$r$q${b}_"
    done
  done
  kv "${q}_knb_queues" "$KNB_QUEUES"
  kv "${q}_dpnb_queues" "$DPNB_QUEUES"
  timeout 120 xl destroy "$D" || fail "xl destroy $D"

  for dir in tx rx; do
    for key in mbit dom0_ns_per_byte dom0_ctxt_per_mib xen_dom0_ns_per_byte domu_ns_per_byte dom0_skb_bytes; do
      k=$(kv_median "r[0-9]*${q}knb_${dir}_$key") d=$(kv_median "r[0-9]*${q}dpnb_${dir}_$key")
      kv "${q}_knb_${dir}_$key" "${k:-0}"
      kv "${q}_dpnb_${dir}_$key" "${d:-0}"
      kv "${q}_${dir}_${key}_ratio" "$(awk -v a="${d:-0}" -v b="${k:-0}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
    done
    # Where dom0's time went: both backends' user/system/softirq split, netback's threads,
    # the daemon's process (and its part in the kernel), vhost-net's workers.
    for b in knb dpnb; do
      for key in dom0_user_share dom0_sys_share dom0_softirq_share; do
        kv "${q}_${b}_${dir}_$key" "$(kv_median "r[0-9]*${q}${b}_${dir}_$key")"
      done
    done
    if [ "$dir" = rx ]; then
      for b in knb dpnb; do
        for key in dom0_min_rtt_ms dom0_rtt_ms dom0_cwnd; do
          kv "${q}_${b}_rx_$key" "$(kv_median "r[0-9]*${q}${b}_rx_$key")"
        done
      done
    fi
    kv "${q}_knb_${dir}_netback_cpu_share" "$(kv_median "r[0-9]*${q}knb_${dir}_netback_cpu_share")"
    for key in daemon_cpu_share daemon_sys_share vhost_cpu_share per32_notify per32_grant_copy per32_sleep; do
      kv "${q}_dpnb_${dir}_$key" "$(kv_median "r[0-9]*${q}dpnb_${dir}_$key")"
    done
  done
done
dpnb_keep_log
pass
