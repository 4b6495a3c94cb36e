# dpnetbackd-placement: where the daemon's wake-ups run, paired within one boot. Timings
# under emulation differ from boot to boot by more than the effect, so this scenario takes
# both sides in the same boot, alternating, with the in-kernel netback's figures from the
# same boot beside them (run it with kernel-netback: `run.sh kernel-netback
# dpnetbackd-placement`, or `bench/lab.sh kernel-netback dpnetbackd-placement` over boots).
# One 1-vCPU guest on the vhost port (as dpnetbackd-basic's first), then ROUNDS rounds of a
# transfer each way in three placements, their order rotated every round:
#   on   the IRQs of the daemon's event channels (evtchn:dpnb<N>-lc<M>, the lcores' handles,
#        and evtchn:dpnetbackd in /proc/interrupts) and vhost-net's workers (vhost-PID) on
#        the lcore's CPU (1), what engine.place_interrupts and engine.place_vhost_workers
#        both on give: a guest's notification wakes the lcore on its own vCPU, and the
#        worker the lcore kicks runs there too;
#   irq  the IRQs on the lcore's CPU, the workers wherever the scheduler puts them
#        (place_interrupts on, place_vhost_workers off);
#   off  the IRQs on the other vCPU (0) and the workers unpinned: what Linux's round-robin
#        binding of user event channels gives every other channel (drivers/xen/evtchn.c),
#        so each wake-up is an IPI through the hypervisor.
# Keys: per round rN{on,irq,off}_{tx,rx}_* (xfer_tx/xfer_rx's), and the medians over the
# rounds on_/irq_/off_{tx,rx}_{mbit,dom0_ns_per_byte,dom0_ctxt_per_mib,daemon_cpu_share,
# vhost_cpu_share}, which run.sh and bench/lab.sh set against kernel-netback's; irqs and
# workers: what was placed.
#   E2E_PLACEMENT_ROUNDS  rounds (default 3); E2E_XFER_MIB: MiB per transfer (default 16)
#
# e2e-group: base
# e2e-timeout: 1500
# e2e-default: no
# e2e-project-bins: dpnetbackd dpnetbackctl
# e2e-guest-bins: ping
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
ROUNDS=${E2E_PLACEMENT_ROUNDS:-3}
LCORE_MASK=2 OTHER_MASK=1 ALL_MASK=3

! grep -q '^xen_netback ' /proc/modules || fail "xen-netback is loaded: it would serve the vifs"
[ "$DPNB_PORT" = vhost ] || fail "dpnetbackd-placement measures the vhost port (DPNB_PORT=vhost)"
[ "$(nproc)" -ge 2 ] || fail "dom0 has one vCPU: nothing to place"
# The lab knob would pin before every transfer and undo the "off" rounds.
unset E2E_DPNB_PIN

dpnb_start_steered "[vifs]" 'serve = "all"' 'default_rx_mode = "copy"'
dpnb_guest e2e-dpnb-place 00:16:3e:e2:e0:51
D=$E2E_DOMID
watch_guest "$D"
handshake "$D"
gcmd "$D" 120 "up 198.18.0.2/24"
ping_both "$D" 198.18.0.2 ""

# place IRQ_MASK WORKER_MASK: the daemon's event-channel IRQs and vhost workers (hex masks).
place() {
  local irq t irqs workers
  irqs=$(awk -F: '/evtchn:(dpnb[0-9]+-lc[0-9]+|dpnetbackd|lcore-worker)/ { gsub(/ /, "", $1); printf "%s ", $1 }' /proc/interrupts)
  workers=$(pgrep -x "vhost-$DPNB_PID" | tr '\n' ' ')
  [ -n "$irqs" ] || fail "no IRQ of the daemon's event channels in /proc/interrupts"
  [ -n "$workers" ] || fail "no vhost-$DPNB_PID worker: is the port on vhost-net?"
  for irq in $irqs; do
    echo "$1" > "/proc/irq/$irq/smp_affinity" || fail "IRQ $irq: smp_affinity $1 refused"
  done
  for t in $workers; do taskset -p "$2" "$t" >/dev/null || fail "vhost worker $t: taskset $2 refused"; done
  PLACED_IRQS=$irqs PLACED_WORKERS=$workers
}

port=5100
for ((r = 1; r <= ROUNDS; r++)); do
  case $((r % 3)) in
    1) order="off irq on" ;;
    2) order="on off irq" ;;
    0) order="irq on off" ;;
  esac
  for state in $order; do
    case $state in
      on) place $LCORE_MASK $LCORE_MASK ;;
      irq) place $LCORE_MASK $ALL_MASK ;;
      off) place $OTHER_MASK $ALL_MASK ;;
    esac
    log "round $r, placement $state: irqs $PLACED_IRQS workers $PLACED_WORKERS"
    xfer_tx "$D" "$MIB" $((port++)) "r$r$state"_
    xfer_rx "$D" 198.18.0.2 "$MIB" $((port++)) "r$r$state"_
  done
done
kv irqs "$(echo $PLACED_IRQS | tr ' ' ,)"
kv workers "$(echo $PLACED_WORKERS | tr ' ' ,)"

# The medians over the rounds, per placement and key.
for state in on irq off; do
  for key in tx_mbit tx_dom0_ns_per_byte tx_dom0_ctxt_per_mib tx_daemon_cpu_share tx_vhost_cpu_share \
    rx_mbit rx_dom0_ns_per_byte rx_dom0_ctxt_per_mib rx_daemon_cpu_share rx_vhost_cpu_share; do
    m=$(kv_median "r[0-9]*${state}_${key}")
    kv "${state}_$key" "${m:-0}"
  done
done
dpnb_stop
pass
