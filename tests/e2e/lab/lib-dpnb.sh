# lib-dpnb.sh: what the dpnetbackd scenarios share in dom0 (bash; sourced after lib-dom0.sh
# by scenarios/dpnetbackd-*.sh).
#
# dpnetbackd runs in dom0 with hypervisor.kind = "xen" and one port into dom0's stack, the
# tap dpnb0 (198.18.0.1/24 in dom0): the guests' frames leave the daemon there and dom0's
# kernel answers them, so dom0's own nc and ping are the far end of every test. The port is
# DPNB_PORT:
#   vhost  (default) virtio_user over dom0's /dev/vhost-net: the tap's kernel side keeps TSO
#          and checksum offloads both ways (64 KiB GSO packets, no per-segment system call);
#   tap    net_tap: GSO packets segmented in software, one writev per segment; what the
#          scenarios whose RX modes need a zero-copy queue use (dpnb_start_dedicated).
# The daemon logs to a file that a failure prints (its last lines) and that is kept with the
# lab's logs.
#
# Guests run scenarios/dpnetbackd-guest.guest.sh, a command loop: dom0 writes data/e2e/cmd-N
# ("up ADDR", "ping IP N", "gen MIB", "send IP PORT", "recv PORT", "stats", "queues") and
# the guest answers data/e2e/done-N (gcmd below), so one guest serves any sequence of steps.

DPNB=${E2E_BIN_dpnetbackd:?dpnetbackd is not built}
DPNBCTL=${E2E_BIN_dpnetbackctl:?dpnetbackctl is not built}
DPNB_DIR=/run/e2e/dpnb-$E2E_NAME
DPNB_LOG=$DPNB_DIR/dpnetbackd.log
DPNB_CONF=$DPNB_DIR/dpnetback.toml
DPNB_SOCK=$DPNB_DIR/dpnetbackd.sock
DPNB_PID=""
DPNB_IFACE=dpnb0
DPNB_PORT=${DPNB_PORT:-vhost}
DPNB_MTU=${DPNB_MTU:-1500}
DPNB_DOM0_MAC=02:00:00:e2:e0:fe
DOM0_IP=198.18.0.1
TICK=$(getconf CLK_TCK)
mkdir -p "$DPNB_DIR"
declare -A GCMD_N

# The daemon's log goes with every failure (and into the lab's output folder).
dpnb_keep_log() {
  [ -f "$DPNB_LOG" ] || return 0
  if mountpoint -q /run/e2e-out 2>/dev/null; then
    cp "$DPNB_LOG" "/run/e2e-out/$E2E_NAME-dpnetbackd.log" 2>/dev/null
  fi
}
fail() {
  log "FAIL: $*"
  if [ -f "$DPNB_LOG" ]; then
    echo "---- dpnetbackd log ($DPNB_LOG, last 80 lines)"
    tail -n 80 "$DPNB_LOG" | sed 's/^/    dpnetbackd| /'
    if [ -x "$DPNBCTL" ] && [ -S "$DPNB_SOCK" ]; then
      echo "---- dpnetbackctl list"
      timeout 10 "$DPNBCTL" -s "$DPNB_SOCK" list 2>&1 | sed 's/^/    | /'
      # Every counter that is not zero, per vif and per lcore: which drop, which error.
      echo "---- counters (not zero)"
      for v in $(ctlj list 2>/dev/null | jq -r '.vifs[].vif' 2>/dev/null); do
        echo "    $v: $(ctlj show "$v" 2>/dev/null | jq -c '.counters // {} | with_entries(select(.value != 0))' 2>/dev/null)"
      done
      echo "    lcores: $(ctlj stats 2>/dev/null | jq -c '[.lcores[] | with_entries(select(.value != 0))]' 2>/dev/null)"
    fi
  fi
  dpnb_keep_log
  kv reason "$*"
  result FAIL
}

ctl() { timeout 30 "$DPNBCTL" -s "$DPNB_SOCK" "$@"; }
# ctlj COMMAND...: the daemon's answer as JSON (dpnetbackctl --json wraps it in
# {"ok": true, "result": ...}); fails (status 1) when the daemon refused.
ctlj() {
  local out
  out=$(ctl --json "$@") || return 1
  jq -ce '.result' <<<"$out"
}

# dpnb_config STEERING RX_QUEUES [TOML_LINE...]: the scenario's configuration (port DPNB_PORT
# with MTU DPNB_MTU); extra lines are appended (later sections, e.g. "[features]"
# "max_queues = 2").
dpnb_config() {
  local steering=$1 rxq=$2 device port_lines=""
  shift 2
  case $DPNB_PORT in
    # A queue pair (a tap queue) per RX queue; the daemon demultiplexes them all in software.
    # 1024 descriptors as the ring: LRO frames of 64 KiB take about 32 2 KiB buffers each.
    vhost)
      device="virtio_user0,path=/dev/vhost-net,queues=$rxq,queue_size=1024,iface=$DPNB_IFACE"
      port_lines="rx_desc = 1024"
      ;;
    tap) device="net_tap0,iface=$DPNB_IFACE" ;;
    # A PCI NIC by address (dpnetbackd-pv-pci; DPNB_EAL_EXTRA lets EAL probe it).
    pci) device=${DPNB_PCI:?DPNB_PCI names the NIC} ;;
    *) fail "DPNB_PORT must be vhost, tap or pci, not '$DPNB_PORT'" ;;
  esac
  cat > "$DPNB_CONF" <<EOF
# written by tests/e2e/lab/lib-dpnb.sh for $E2E_NAME
[hypervisor]
kind = "xen"

[log]
level = "info"
target = "stderr"

[eal]
main_lcore = 0
worker_lcores = [1]
no_huge = true
memory_mb = 256
file_prefix = "e2e"
${DPNB_EAL_EXTRA:-}

[port.uplink]
device = "$device"
steering = "$steering"
rx_queues = $rxq
mtu = $DPNB_MTU
$port_lines
${DPNB_PORT_EXTRA:-}

[engine]
# Software emulation: the guests share the two emulated CPUs with dom0, and a poll loop that
# spins 256 empty polls before it sleeps took three quarters of a vCPU and starved the guest
# (150 kbit/s guest to dom0 in the lab). Sleep at once when idle (woken by event channels
# and tap RX interrupts, as the in-kernel netback is), and 2 ms when a source cannot wake
# the lcore.
idle_polls = 0
poll_sleep_us = 2000
$([ "${E2E_DPNB_PLACE:-1}" != 0 ] || printf 'place_interrupts = false\nplace_vhost_workers = false\n')

[management]
socket = "$DPNB_SOCK"

[metrics]
port = 0
EOF
  printf '%s\n' "$@" >> "$DPNB_CONF"
}

dpnb_alive() { [ -n "$DPNB_PID" ] && kill -0 "$DPNB_PID" 2>/dev/null; }
dpnb_answers() { dpnb_alive && ctl version >/dev/null 2>&1; }

# A heartbeat on the serial console every 30 s while the scenario runs (stage 2 ends it with
# the scenario's process group) but not inside a measured window (window_begin): dom0's
# load, the daemon's CPU (and its threads'), each vif's backend/frontend state. Under
# emulation on a loaded host a slow step and a hung one look alike otherwise; and under
# emulation CPU time grows with the host's load (dom0 cannot tell time it was not run).
DPNB_MON=""
dpnb_monitor() {
  local d h vifs me=$$
  while sleep 30; do
    [ ! -e "$WINDOW_QUIET" ] || continue
    vifs=""
    for d in $(timeout 5 xenstore-list /local/domain/0/backend/vif 2>/dev/null); do
      for h in $(timeout 5 xenstore-list "/local/domain/0/backend/vif/$d" 2>/dev/null); do
        vifs+=" vif$d.$h=$(timeout 5 xenstore-read "/local/domain/0/backend/vif/$d/$h/state" 2>/dev/null)/$(timeout 5 xenstore-read "/local/domain/$d/device/vif/$h/state" 2>/dev/null)"
      done
    done
    log "heartbeat: load $(cut -d' ' -f1-3 /proc/loadavg); dpnetbackd (pid cpu; per thread) $(ps -C dpnetbackd -o pid=,time= 2>/dev/null | tr -s ' \n' ' ')($(ps -L -C dpnetbackd -o comm=,time= 2>/dev/null | awk '$2 != "00:00:00" { printf "%s%s=%s", n++ ? " " : "", $1, $2 }')); vifs (backend/frontend)${vifs:- none}; daemon's vifs (rx/tx packets, drops) $(timeout 10 "$DPNBCTL" -s "$DPNB_SOCK" --json list 2>/dev/null | jq -r '[.result.vifs[] | "\(.vif):\(.rx_packets)/\(.tx_packets)/\(.drops)"] | join(" ")' 2>/dev/null); dpnb0 rx/tx/drops $(cat /sys/class/net/$DPNB_IFACE/statistics/{rx_packets,tx_packets,rx_dropped} 2>/dev/null | tr '\n' /); tcp $(awk '/^Tcp:/ { n++; if (n == 1) for (i = 1; i <= NF; i++) k[i] = $i; else for (i = 1; i <= NF; i++) if (k[i] ~ /InSegs|OutSegs|RetransSegs|InErrs|InCsumErrors/) printf "%s=%s ", k[i], $i }' /proc/net/snmp); scenario runs: $(ps --ppid "$me" -o etimes=,args= 2>/dev/null | grep -v -e 'sleep 30' -e 'bash -c' -e 'dpnetbackd -f' | tr -s ' \n' ' ' | cut -c1-200)"
  done
}

# dpnb_try_start [OVERRIDE...]: starts the daemon with $DPNB_CONF; returns 1 (no verdict)
# when it exits or does not answer within 180 s, so that a scenario may try another set-up.
# Once it answers, dpnb0 gets dom0's address and a fixed MAC (a restarted daemon makes a
# new tap device; the guests' ARP entries stay right).
dpnb_try_start() { dpnb_try_launch "$DPNB" -f --config "$DPNB_CONF" "$@"; }
# dpnb_try_launch COMMAND...: dpnb_try_start with the daemon's whole command line (it may
# start with a launcher that execs the daemon, e.g. setpriv).
dpnb_try_launch() {
  local deadline=$((SECONDS + 180))
  # net_tap and vhost-net's tap open /dev/net/tun, which dom0's devtmpfs has once tun is
  # loaded; virtio_user opens /dev/vhost-net.
  modprobe tun || { log "modprobe tun failed"; return 1; }
  if [ "$DPNB_PORT" = vhost ]; then
    modprobe vhost_net || { log "modprobe vhost_net failed"; return 1; }
  fi
  # The metrics endpoint binds 127.0.0.1: after kernel-netback in the same boot, dom0's lo
  # was found without it ("Cannot assign requested address").
  ip link set lo up
  if [ -z "$DPNB_MON" ]; then
    dpnb_monitor &
    DPNB_MON=$!
  fi
  echo "==== dpnetbackd start T+$(uptime_s): $*" >> "$DPNB_LOG"
  "$@" >> "$DPNB_LOG" 2>&1 &
  DPNB_PID=$!
  log "dpnetbackd started (pid $DPNB_PID)"
  until dpnb_answers; do
    if ! dpnb_alive; then
      wait "$DPNB_PID" 2>/dev/null
      log "dpnetbackd exited with status $? before answering"
      DPNB_PID=""
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "dpnetbackd does not answer on $DPNB_SOCK"
      kill -KILL "$DPNB_PID" 2>/dev/null
      DPNB_PID=""
      return 1
    fi
    sleep 0.5
  done
  ip link show "$DPNB_IFACE" >/dev/null 2>&1 || { log "no $DPNB_IFACE"; return 1; }
  ip link set "$DPNB_IFACE" address "$DPNB_DOM0_MAC" || return 1
  ip addr replace "$DOM0_IP/24" dev "$DPNB_IFACE" || return 1
  ip link set "$DPNB_IFACE" up || return 1
  log "dpnetbackd answers; $DPNB_IFACE is $DOM0_IP/24 ($DPNB_PORT port)"
  kv port_kind "$DPNB_PORT"
  # The tap's offloads follow what virtio_user negotiated (TSO only with RX checksums).
  kv tap_offloads "$(ethtool -k "$DPNB_IFACE" 2>/dev/null | awk -F': ' \
    '/^(tx-checksumming|scatter-gather|tcp-segmentation-offload|generic-segmentation-offload):/ \
    { sub(/ .*/, "", $2); printf "%s%s=%s", n++ ? "," : "", $1, $2 }')"
}
dpnb_start() { dpnb_try_start "$@" || fail "dpnetbackd did not start (its log above)"; }
# iface_tso: "on" or "off", the TCP segmentation offload dom0's stack sees on DPNB_IFACE now
# (a socket takes the interface's offloads when it connects).
iface_tso() {
  ethtool -k "$DPNB_IFACE" 2>/dev/null | awk -F': ' '/^tcp-segmentation-offload:/ { sub(/ .*/, "", $2); print $2 }'
}

# dpnb_start_dedicated [TOML_LINE...]: dpnb0 as the one member of the group "guests" with
# "dedicated_port" steering: the guest served gets the whole port (its RX queue is its own,
# so RX modes map and reuse are possible on net_tap, which has no rte_flow); guests served one
# after another get it in turn. The extra lines must not set [vifs] default_port. Always a
# net_tap port: map and reuse need a queue whose device writes into guest buffers, and a
# vhost backend writes only into DPDK's memory (virtio_user ports always copy).
dpnb_start_dedicated() {
  DPNB_PORT=tap
  DPNB_PORT_EXTRA='group = "guests"'
  dpnb_config dedicated_port 1 "$@"
  DPNB_PORT_EXTRA=""
  sed -i 's/^\[vifs\]$/[vifs]\ndefault_port = "guests"/' "$DPNB_CONF"
  grep -q '^default_port' "$DPNB_CONF" || printf '[vifs]\ndefault_port = "guests"\n' >> "$DPNB_CONF"
  STEERING=dedicated_port
  dpnb_start
  kv steering dedicated_port
}

# dpnb_start_steered [TOML_LINE...]: "mac_flow" with 3 RX queues (1 shared + 2 guests), or,
# when the daemon does not start with it, "shared" with the reason in steering_fallback.
# The port's steering, flow_rules and zero_copy go into the verdict; STEERING is set.
dpnb_start_steered() {
  local why port
  dpnb_config mac_flow 3 "$@"
  STEERING=mac_flow
  if ! dpnb_try_start; then
    # Only a refusal of the steering itself (flow rules, queues) falls back.
    why=$(sed -n '/^==== dpnetbackd start/h; /^==== dpnetbackd start/!H; ${x;p}' "$DPNB_LOG" |
      grep -aiE 'error|critical' | grep -aiE 'flow|steer|queue|mac_flow' | tail -n 2 |
      tr -s ' \n' '_' | cut -c1-200)
    [ -n "$why" ] || fail "dpnetbackd did not start (its log above)"
    log "mac_flow refused; falling back to shared: $why"
    kv steering_fallback "$why"
    dpnb_config shared 1 "$@"
    dpnb_start
    STEERING=shared
  fi
  port=$(ctlj stats | jq -c '.ports[0] | {driver, steering, flow_rules, zero_copy, rx_queues, mtu, rx_offloads, tx_offloads, copy_reason}')
  log "port: $port"
  # The daemon itself falls back to the shared queue when the port cannot steer with
  # rte_flow; say so, with the daemon's words. (pmd-glue does not use rte_flow on net_tap:
  # frames no rule matches are spread over every RX queue by the tap's kernel side, so a
  # queue could never be one guest's alone.)
  if [ "$STEERING" = mac_flow ] && [ "$(jq -r .flow_rules <<<"$port")" != true ]; then
    why=$(grep -aoE '(refuses MAC steering rules|no rte_flow MAC rules).*' "$DPNB_LOG" | tail -n 1)
    kv steering_fallback "$(jq -r .driver <<<"$port"):${why:-flow_rules=false}"
    log "mac_flow: no rte_flow rules on this port, guests share queue 0: $why"
    STEERING=shared
  fi
  kv steering "$(jq -r .steering <<<"$port")"
  kv flow_rules "$(jq -r .flow_rules <<<"$port")"
  kv zero_copy "$(jq -r .zero_copy <<<"$port")"
  kv port_rx_queues "$(jq -r .rx_queues <<<"$port")"
  kv port_rx_offloads "$(jq -r '.rx_offloads | join("+")' <<<"$port")"
  kv port_tx_offloads "$(jq -r '.tx_offloads | join("+")' <<<"$port")"
}

# dpnb_stop: SIGTERM, the graceful stop; fails the scenario when the daemon reports leaked
# grants, mbufs or guest headers, or does not stop within 60 s.
dpnb_stop() {
  dpnb_alive || return 0
  kill -TERM "$DPNB_PID"
  wait_pid 60 "dpnetbackd to stop on SIGTERM" "$DPNB_PID"
  local rc=$?
  DPNB_PID=""
  log "dpnetbackd stopped (status $rc)"
  if grep -q 'leaks at shutdown' "$DPNB_LOG"; then
    fail "dpnetbackd: $(grep -m1 -o 'leaks at shutdown.*' "$DPNB_LOG")"
  fi
  return 0
}
# dpnb_kill: SIGKILL (a crash): nothing is closed in xenstore.
dpnb_kill() {
  dpnb_alive || return 0
  kill -KILL "$DPNB_PID"
  wait "$DPNB_PID" 2>/dev/null
  DPNB_PID=""
  log "dpnetbackd killed"
}

# vif_json DOMID [HANDLE]: `dpnetbackctl show --json` of a vif, in REPLY (empty if unknown).
vif_json() { REPLY=$(ctlj show "vif$1.${2:-0}" 2>/dev/null) || REPLY=""; }
vif_field() {
  vif_json "$1" "${3:-0}"
  REPLY=$(jq -r "$2 // empty" <<<"$REPLY" 2>/dev/null)
}
vif_connected() {
  vif_json "$1" "${2:-0}"
  [ "$(jq -r '.phase // empty' <<<"$REPLY" 2>/dev/null)" = connected ]
}
# vif_known DOMID: the daemon lists a vif of DOMID.
vif_known() { ctlj list 2>/dev/null | jq -e --argjson d "$1" '[.vifs[] | select(.domid == $d)] | length > 0' >/dev/null; }
vif_unknown() { ! vif_known "$1"; }

# dpnb_guest NAME MAC [XL_LINE...]: a guest whose vif dpnetbackd serves (script: the lab's
# hotplug script), running the command loop. Sets E2E_DOMID.
dpnb_guest() {
  local name=$1 mac=$2
  shift 2
  guest_create "$name" dpnetbackd-guest \
    "vif = [ 'mac=$mac,script=$E2E_ROOT/lab/vif-dpnetback-lab' ]" "$@"
  GCMD_N[$E2E_DOMID]=0
}

# gcmd_send DOMID COMMAND: hands the guest its next command; its index in REPLY.
gcmd_send() {
  local d=$1 n=${GCMD_N[$1]:-0}
  GCMD_N[$d]=$((n + 1))
  log "guest $d cmd-$n: $2"
  guest_put "$d" "cmd-$n" "$2"
  REPLY=$n
}
# gcmd_wait DOMID INDEX SECONDS: the guest's answer to command INDEX, in REPLY.
gcmd_wait() {
  local saved=$E2E_GUEST_DOMID
  E2E_GUEST_DOMID=$1
  guest_wait "$1" "done-$2" "$3"
  E2E_GUEST_DOMID=$saved
}
# gcmd DOMID SECONDS COMMAND: runs one command in the guest; its answer in REPLY.
gcmd() {
  gcmd_send "$1" "$3"
  gcmd_wait "$1" "$REPLY" "$2"
}

# A measured window (a transfer's dom0 CPU) holds the transfer and nothing the harness adds:
# under emulation one process started in dom0 costs tens of milliseconds of its CPU, as much
# as hundreds of packets, so no polling loop (gcmd_wait starts three per 0.3 s) and no
# heartbeat runs inside it, as in kernel-netback.sh, the reference, which waits on its nc.
# window_begin / window_end (lib-dom0.sh) bracket it; gcmd_watch DOMID SECONDS COMMAND starts a
# command and one xenstore-watch on its answer (it fires when it registers and at the write),
# gcmd_watch_end waits for that write, then reads the answer into REPLY (gcmd_wait: at once,
# or by polling when the watch ended without it, e.g. the guest reported an error).
GCMD_WATCH="" GCMD_WATCH_N="" GCMD_WATCH_SECS=""
gcmd_watch() {
  local n=${GCMD_N[$1]:-0}
  timeout "$2" xenstore-watch -n 2 "$(guest_key "$1" "done-$n")" >/dev/null 2>&1 &
  GCMD_WATCH=$! GCMD_WATCH_SECS=$2
  gcmd_send "$1" "$3"
  GCMD_WATCH_N=$REPLY
}
gcmd_watch_end() {
  wait "$GCMD_WATCH" || true
  gcmd_wait "$1" "$GCMD_WATCH_N" "$GCMD_WATCH_SECS"
}

# daemon_begin / daemon_end PREFIX DOMID: what the daemon did during a transfer between
# them (nothing when no daemon runs: the kernel-netback reference); daemon_end comes after
# window_end. Keys PREFIXdaemon_cpu_share (the daemon's CPU ticks, /proc/PID/stat, over
# dom0's busy ticks in the window: the rest is dom0's stack, its other processes and the
# hypervisor's work on dom0's vCPUs), PREFIXdaemon_sys_share (the part of it in the kernel:
# its ioctls, grant copies and notifications among them, with the hypercalls they make, and
# vhost kicks), PREFIXvhost_cpu_share (the same for the kernel's vhost
# worker threads of a vhost port, vhost-PID: what moves frames between the port's rings and
# the tap) and PREFIXper32_{grant_copy,grant_map,grant_unmap,notify,read,write,sleep}: the
# lcores' calls of each kind per 32 packets the vif moved either way (docs/metrics.md,
# "System calls per packet").
DAEMON_T0="" DAEMON_S0="" DAEMON_V0="" DAEMON_CALLS0="" DAEMON_PKTS0=""
# daemon_ticks: the daemon's "user system" CPU ticks (every thread).
daemon_ticks() { awk '{ print $14, $15 }' "/proc/$DPNB_PID/stat" 2>/dev/null || echo 0 0; }
vhost_ticks() {
  local t files=()
  for t in $(pgrep -x "vhost-$DPNB_PID"); do files+=("/proc/$t/stat"); done
  [ ${#files[@]} -gt 0 ] || { echo 0; return; }
  awk '{ s += $14 + $15 } END { print s + 0 }' "${files[@]}" 2>/dev/null || echo 0
}
daemon_calls() {
  ctlj stats | jq -r '[.lcores[] | [.grant_copy_calls, .grant_map_calls, .grant_unmap_calls,
    .notify_calls, .read_syscalls, .write_syscalls, .sleeps]] | transpose | map(add // 0) | @tsv'
}
vif_moved() { vif_json "$1"; jq -r '(.counters.rx_packets // 0) + (.counters.tx_packets // 0)' <<<"$REPLY"; }
share() { awk -v d="$1" -v c="$2" 'BEGIN { printf "%.2f", (c > 0 ? d / c : 0) }'; }
# dpnb_pin: where the daemon's event-channel IRQs and vhost-net's workers of its port run,
# before each transfer (guests bind channels as they connect). The daemon places them itself
# (engine.place_interrupts, engine.place_vhost_workers: the lcore's CPUs) unless
# E2E_DPNB_PLACE=0 turned that off (dpnb_config); then E2E_DPNB_PIN=MASK (hex, run.sh) pins
# them by hand as before, for a comparison run. Either way the IRQs (evtchn:dpnb<N>-lc<M>,
# the lcores' handles; evtchn:dpnetbackd, the control rings') with their smp_affinity_list
# and the workers with their Cpus_allowed_list are logged, and daemon_end records them
# (PREFIXirq_cpus, PREFIXvhost_cpus: "IRQ:CPUS,..." and "TID:CPUS,...") with the daemon's
# failed placements (PREFIXplace_failures). With placement on, E2E_DPNB_PIN is a check:
# PREFIXplace_check is ok when every lcore IRQ and worker is on exactly MASK's CPUs.
DPNB_PLACE_IRQS="" DPNB_PLACE_VHOST="" DPNB_PLACE_CHECK="" DPNB_PLACE_FAILS=""
mask_cpus() { # hex mask -> CPU list, e.g. 2 -> 1, 6 -> 1-2 (at most 64 CPUs)
  local m=$((16#${1//,/})) c=0 out="" lo=-1
  while [ $c -le 64 ]; do
    if [ $c -lt 64 ] && (( (m >> c) & 1 )); then
      [ $lo -ge 0 ] || lo=$c
    elif [ $lo -ge 0 ]; then
      out+="${out:+,}$lo"; [ $((c - 1)) -eq $lo ] || out+="-$((c - 1))"; lo=-1
    fi
    c=$((c + 1))
  done
  echo "$out"
}
dpnb_pin() {
  local t irq workers irqs lcore_irqs want="" list ok=1
  workers=$(pgrep -x "vhost-$DPNB_PID" | tr '\n' ' ')
  irqs=$(awk -F: '/evtchn:(dpnb[0-9]+-lc[0-9]+|dpnetbackd|lcore-worker)/ { gsub(/ /, "", $1); printf "%s ", $1 }' /proc/interrupts)
  lcore_irqs=$(awk -F: '/evtchn:dpnb[0-9]+-lc[0-9]+/ { gsub(/ /, "", $1); printf "%s ", $1 }' /proc/interrupts)
  if [ "${E2E_DPNB_PLACE:-1}" = 0 ] && [ -n "${E2E_DPNB_PIN:-}" ]; then
    for t in $workers; do taskset -p "$E2E_DPNB_PIN" "$t" >/dev/null 2>&1; done
    for irq in $irqs; do echo "$E2E_DPNB_PIN" > "/proc/irq/$irq/smp_affinity" 2>/dev/null; done
    log "pinned by hand to $E2E_DPNB_PIN: vhost workers ${workers}irqs $irqs"
  fi
  [ -z "${E2E_DPNB_PIN:-}" ] || want=$(mask_cpus "$E2E_DPNB_PIN")
  DPNB_PLACE_IRQS="" DPNB_PLACE_VHOST=""
  for irq in $irqs; do
    list=$(cat "/proc/irq/$irq/smp_affinity_list" 2>/dev/null || echo "?")
    DPNB_PLACE_IRQS+="${DPNB_PLACE_IRQS:+,}$irq:$list"
    case " $lcore_irqs " in *" $irq "*) [ -z "$want" ] || [ "$list" = "$want" ] || ok=0 ;; esac
  done
  for t in $workers; do
    list=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$t/status" 2>/dev/null)
    DPNB_PLACE_VHOST+="${DPNB_PLACE_VHOST:+,}$t:${list:-?}"
    [ -z "$want" ] || [ "$list" = "$want" ] || ok=0
  done
  DPNB_PLACE_FAILS=$(ctlj stats | jq -r '([.lcores[].irq_placement_failures // 0] | add // 0)
    + ([.ports[].vhost_placement_failures // 0] | add // 0)' 2>/dev/null || echo "?")
  DPNB_PLACE_CHECK=""
  if [ "${E2E_DPNB_PLACE:-1}" != 0 ] && [ -n "$want" ]; then
    DPNB_PLACE_CHECK=$([ $ok = 1 ] && echo ok || echo mismatch)
  fi
  log "placement ($([ "${E2E_DPNB_PLACE:-1}" = 0 ] && echo "daemon's off" || echo "by the daemon")):" \
    "irqs ${DPNB_PLACE_IRQS:-none} vhost workers ${DPNB_PLACE_VHOST:-none}" \
    "failures $DPNB_PLACE_FAILS${DPNB_PLACE_CHECK:+ check against $want: $DPNB_PLACE_CHECK}"
}
daemon_begin() {
  DAEMON_T0=""
  dpnb_alive || return 0
  dpnb_pin
  read -r DAEMON_T0 DAEMON_S0 <<<"$(daemon_ticks)"
  DAEMON_V0=$(vhost_ticks) DAEMON_CALLS0=$(daemon_calls)
  DAEMON_PKTS0=$(vif_moved "$1")
}
daemon_end() {
  [ -n "$DAEMON_T0" ] && dpnb_alive || return 0
  local t1 s1 v1 calls1 pkts i name a0 a1
  read -r t1 s1 <<<"$(daemon_ticks)"
  v1=$(vhost_ticks) calls1=$(daemon_calls) pkts=$(($(vif_moved "$2") - DAEMON_PKTS0))
  kv "$1daemon_cpu_share" "$(share $((t1 + s1 - DAEMON_T0 - DAEMON_S0)) "$WINDOW_TICKS")"
  kv "$1daemon_sys_share" "$(share $((s1 - DAEMON_S0)) "$WINDOW_TICKS")"
  kv "$1vhost_cpu_share" "$(share $((v1 - DAEMON_V0)) "$WINDOW_TICKS")"
  kv "$1vif_packets" "$pkts"
  kv "$1irq_cpus" "$DPNB_PLACE_IRQS"
  kv "$1vhost_cpus" "$DPNB_PLACE_VHOST"
  kv "$1place_failures" "$DPNB_PLACE_FAILS"
  [ -z "$DPNB_PLACE_CHECK" ] || kv "$1place_check" "$DPNB_PLACE_CHECK"
  read -r -a a0 <<<"$DAEMON_CALLS0"
  read -r -a a1 <<<"$calls1"
  i=0
  for name in grant_copy grant_map grant_unmap notify read write sleep; do
    kv "$1per32_$name" "$(awk -v n=$((${a1[i]:-0} - ${a0[i]:-0})) -v p="$pkts" 'BEGIN { printf "%.2f", (p > 0 ? n * 32 / p : 0) }')"
    i=$((i + 1))
  done
}

# iface_counts DIRECTION: dpnb0's "bytes packets" received (rx) or sent (tx) by dom0's
# kernel, as /proc/net/dev counts them: a GSO packet is one packet.
iface_counts() {
  local s=/sys/class/net/$DPNB_IFACE/statistics
  echo "$(cat "$s/$1_bytes" 2>/dev/null || echo 0) $(cat "$s/$1_packets" 2>/dev/null || echo 0)"
}
# skb_size KEY "BYTES0 PACKETS0" "BYTES1 PACKETS1": the mean packet dom0's stack saw on
# dpnb0 between two iface_counts, as key KEY and in SKB_BYTES. Above a frame when GSO
# packets cross the tap whole (a vhost port); at most a frame when every segment crosses on
# its own (net_tap).
SKB_BYTES=0
skb_size() {
  local b0 p0 b1 p1
  read -r b0 p0 <<<"$2"
  read -r b1 p1 <<<"$3"
  SKB_BYTES=$(((p1 - p0) > 0 ? (b1 - b0) / (p1 - p0) : 0))
  kv "$1" "$SKB_BYTES"
}

# ping_both DOMID GUEST_IP PREFIX: 3 pings each way, at least one reply each.
ping_both() {
  local replies
  busybox ping -c 3 -W 5 "$2" > "$DPNB_DIR/ping.txt" 2>&1
  replies=$(grep -c 'bytes from' "$DPNB_DIR/ping.txt")
  kv "${3}ping_d2g" "$replies"
  gcmd "$1" 120 "ping $DOM0_IP 3"
  kv "${3}ping_g2d" "$REPLY"
  [ "$replies" -ge 1 ] || fail "guest $1: no reply to dom0's ping of $2"
  [ "$REPLY" -ge 1 ] 2>/dev/null || fail "guest $1: no reply to its ping of dom0"
}

# Random data is made once per guest and size (the guest's /tmp/tx.bin) and once per size
# in dom0: under emulation 16 MiB from /dev/urandom take minutes, and rounds of a
# comparison send the same amount again and again. guest_gen DOMID MIB: the guest's
# /tmp/tx.bin holds MIB MiB of random bytes; their sha256 in REPLY.
declare -A XFER_GEN
guest_gen() {
  local d=$1 mib=$2
  local had=${XFER_GEN[$d]:-}
  if [ "${had%% *}" != "$mib" ]; then
    gcmd "$d" 300 "gen $mib"
    XFER_GEN[$d]="$mib $REPLY"
  fi
  REPLY=${XFER_GEN[$d]#* }
}
# xfer_tx DOMID MIB PORT PREFIX: the guest sends MIB MiB to dom0 (its TX ring); checks size
# and sha256; metrics PREFIX_tx.
xfer_tx() {
  local d=$1 mib=$2 port=$3 p=$4 sum secs got n n0 listener f=$DPNB_DIR/tx-$1.bin
  guest_gen "$d" "$mib"
  sum=$REPLY
  rm -f "$DPNB_DIR/hold-$d"
  mkfifo "$DPNB_DIR/hold-$d"
  timeout 600 busybox nc -l -p "$port" < "$DPNB_DIR/hold-$d" > "$f" &
  listener=$!
  exec 7> "$DPNB_DIR/hold-$d"
  wait_for 30 "listener on $port" tcp_listening "$port"
  daemon_begin "$d"
  n0=$(iface_counts rx)
  window_begin
  gcmd_send "$d" "send $DOM0_IP $port"
  n=$REPLY
  wait "$listener" || fail "dom0's receiver (nc) on $port failed"
  window_end
  daemon_end "${p}tx_" "$d"
  gcmd_wait "$d" "$n" 400
  secs=$REPLY
  skb_size "${p}tx_dom0_skb_bytes" "$n0" "$(iface_counts rx)"
  exec 7>&-
  got=$(stat -c %s "$f")
  metrics "${p}tx" "$got" "$secs" "$WINDOW_TICKS" "$WINDOW_CTXT"
  [ "$got" -eq $((mib * 1048576)) ] || fail "guest $d to dom0: $got bytes of $((mib * 1048576))"
  [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$sum" ] || fail "guest $d to dom0: data differs (sha256)"
  rm -f "$f"
}

# xfer_rx DOMID GUEST_IP MIB PORT PREFIX: dom0 sends MIB MiB to the guest (its RX ring);
# metrics PREFIX_rx, PREFIX_rx_dom0_{min_rtt_ms,rtt_ms,cwnd} from dom0's sending socket and
# PREFIX_rx_iface_tso (TSO on the interface at the start / the end). E2E_RX_SENDER=sendfile
# sends with lab/send-file.py (sendfile(2)) instead of busybox nc's small writes.
xfer_rx() {
  local d=$1 ip=$2 mib=$3 port=$4 p=$5 sum n t0 t1 n0 sampler tso0 f=$DPNB_DIR/rx-src-$3.bin
  local tcp_info=$DPNB_DIR/tcp-info-$1-$4.txt
  if [ ! -f "$f" ] || [ -z "${XFER_GEN[dom0/$mib]:-}" ]; then
    head -c $((mib * 1048576)) /dev/urandom > "$f"
    XFER_GEN[dom0/$mib]=$(sha256sum < "$f" | cut -d' ' -f1)
  fi
  sum=${XFER_GEN[dom0/$mib]}
  gcmd_send "$d" "recv $port"
  n=$REPLY
  guest_wait "$d" "ready-$n" 120
  daemon_begin "$d"
  n0=$(iface_counts tx)
  rm -f "$tcp_info"
  tso0=$(iface_tso)
  window_begin
  t0=$(now)
  tcp_info_sampler "$ip:$port" "$tcp_info" &
  sampler=$!
  if [ "${E2E_RX_SENDER:-nc}" = sendfile ]; then
    timeout 400 python3 "$E2E_ROOT/lab/send-file.py" "$ip" "$port" "$f" ||
      fail "dom0's sender (sendfile) to guest $d failed"
  else
    timeout 400 busybox nc "$ip" "$port" < "$f" || fail "dom0's sender (nc) to guest $d failed"
  fi
  t1=$(now)
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  window_end
  daemon_end "${p}rx_" "$d"
  skb_size "${p}rx_dom0_skb_bytes" "$n0" "$(iface_counts tx)"
  tcp_rtt_keys "${p}rx_dom0" "$tcp_info"
  # TSO on the interface when dom0's socket connected and when it finished: dom0's packets of
  # about one MSS (*_dom0_skb_bytes) with TSO on mean the socket itself built them small.
  kv "${p}rx_iface_tso" "${tso0:-none}/$(iface_tso)"
  gcmd_wait "$d" "$n" 300
  read -r got gsum <<<"$REPLY"
  metrics "${p}rx" "$got" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "$WINDOW_TICKS" "$WINDOW_CTXT"
  [ "$got" -eq $((mib * 1048576)) ] || fail "dom0 to guest $d: $got bytes of $((mib * 1048576))"
  [ "$gsum" = "$sum" ] || fail "dom0 to guest $d: data differs (sha256)"
}

# ping_g2g A A_IP B B_IP: 5 pings each way between two guests, 3 replies at least each;
# keys ping_ab, ping_ba.
ping_g2g() {
  watch_guest "$1"
  gcmd "$1" 120 "ping $4 5"
  kv ping_ab "$REPLY"
  [ "$REPLY" -ge 3 ] 2>/dev/null || fail "guest A: $REPLY of 5 pings to guest B answered"
  watch_guest "$3"
  gcmd "$3" 120 "ping $2 5"
  kv ping_ba "$REPLY"
  [ "$REPLY" -ge 3 ] 2>/dev/null || fail "guest B: $REPLY of 5 pings to guest A answered"
}

# xfer_g2g FROM TO TO_IP PORT PREFIX: guest FROM sends E2E_XFER_MIB MiB (16 by default) to
# guest TO; checks size and sha256; metrics PREFIX (dom0's CPU counts whatever dom0 did for
# it: the daemon's lcores, or netback and the bridge) and, when the daemon serves them,
# daemon_end's PREFIX_ keys (its CPU share, calls per 32 of the sender's packets).
xfer_g2g() {
  local s=$1 r=$2 ip=$3 port=$4 p=$5 mib=${E2E_XFER_MIB:-16} sum n secs got gsum
  watch_guest "$s"
  guest_gen "$s" "$mib"
  sum=$REPLY
  gcmd_send "$r" "recv $port"
  n=$REPLY
  guest_wait "$r" "ready-$n" 120
  daemon_begin "$s"
  window_begin
  gcmd_watch "$s" 600 "send $ip $port"
  gcmd_watch_end "$s"
  window_end
  secs=$REPLY
  daemon_end "${p}_" "$s"
  gcmd_wait "$r" "$n" 300
  read -r got gsum <<<"$REPLY"
  metrics "$p" "$got" "$secs" "$WINDOW_TICKS" "$WINDOW_CTXT"
  [ "$got" -eq $((mib * 1048576)) ] || fail "guest $s to guest $r: $got bytes of $((mib * 1048576))"
  [ "$gsum" = "$sum" ] || fail "guest $s to guest $r: data differs (sha256)"
}
