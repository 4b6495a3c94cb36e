# lib-dom0.sh: what dom0's stage 2 and the dom0 half of every scenario share (bash; sourced).
#
# A scenario script runs in dom0 with E2E_NAME (its name), E2E_RESULT (where its verdict
# goes) and the lab plan's variables (E2E_ROOT, E2E_LAB, E2E_KERNEL, E2E_DOMU_INITRD,
# E2E_BIN_<name>). It ends with pass or fail, which write the verdict that stage 2 prints as
# the one line the host collects:
#     E2E <scenario> PASS|FAIL key=value ...
# Helpers that must be able to fail the scenario never run in a subshell: they hand values
# back in variables (E2E_DOMID, REPLY), not on stdout.
# Guests talk to dom0 through xenstore, under their own /local/domain/<id>/data/e2e/ (a
# folder the toolstack makes writable by the guest), never through the network under test.

E2E_KV=()
E2E_GUEST_DOMID=""

now() { date +%s.%N; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
log() { echo "E2E-LOG T+$(uptime_s) ${E2E_NAME:-stage2}: $*"; }

# kv KEY VALUE: adds key=value to the summary line (spaces in VALUE become '_').
kv() {
  local v=${2// /_}
  E2E_KV+=("$1=${v:-none}")
}

# kv_median PATTERN: the median of the values of every key added so far that matches the
# sed pattern PATTERN (e.g. "r[0-9]*on_tx_mbit": one key over a scenario's rounds); empty
# when none does.
kv_median() { printf '%s\n' "${E2E_KV[@]}" | sed -n "s/^$1=//p" | median; }
# median: the median of the numbers on standard input, one per line; nothing when none.
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%g", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

result() {
  local verdict=$1
  log "verdict $verdict"
  echo "E2E ${E2E_NAME} ${verdict} ${E2E_KV[*]}" > "${E2E_RESULT:-/dev/stdout}"
  [ "$verdict" = PASS ]
  exit $?
}
pass() { result PASS; }
# fail REASON: ends the scenario with FAIL reason=REASON (and every key added so far).
fail() {
  log "FAIL: $*"
  kv reason "$*"
  result FAIL
}

# check DESCRIPTION COMMAND...: fails the scenario when COMMAND fails.
check() {
  local what=$1
  shift
  "$@" || fail "$what"
}

# guest_error: the error a guest reported (data/e2e/error), if any.
guest_error() {
  [ -n "$E2E_GUEST_DOMID" ] || return 1
  xenstore-read "/local/domain/$E2E_GUEST_DOMID/data/e2e/error" 2>/dev/null
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.3 s until it succeeds; fails
# the scenario at the deadline, or at once when the watched guest reports an error.
wait_for() {
  local secs=$1 what=$2 deadline err
  shift 2
  deadline=$((SECONDS + secs))
  until "$@"; do
    if err=$(guest_error); then fail "guest: $err (while waiting for $what)"; fi
    ((SECONDS < deadline)) || fail "timeout ${secs}s: $what"
    sleep 0.3
  done
}

xs_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
no_folder() { ! xenstore-exists "$1"; }
# in_xl_list DOMID: the domain is listed by domain id (a dying domain is listed as "(null)").
in_xl_list() { xl list | awk 'NR > 1 { print $2 }' | grep -qx "$1"; }
not_in_xl_list() { ! in_xl_list "$1"; }

# handshake DOMID [PREFIX] [SECONDS]: a guest's vif 0, backend (whichever serves it) and
# frontend, Connected (4) within SECONDS (180); keys added (hotplug, queues, split_evtchn).
handshake() {
  local d=$1 p=${2:-} secs=${3:-180} be=/local/domain/0/backend/vif/$1/0 fe=/local/domain/$1/device/vif/0
  wait_for "$secs" "guest $d: backend state Connected (4)" xs_is "$be/state" 4
  wait_for "$secs" "guest $d: frontend state Connected (4)" xs_is "$fe/state" 4
  kv "${p}backend_state" "$(xenstore-read "$be/state")"
  kv "${p}frontend_state" "$(xenstore-read "$fe/state")"
  kv "${p}hotplug" "$(xenstore-read "$be/hotplug-status")"
  kv "${p}queues" "$(xenstore-read "$fe/multi-queue-num-queues" 2>/dev/null || echo 1)"
  kv "${p}split_evtchn" "$(xenstore-exists "$fe/event-channel-tx" || xenstore-exists "$fe/queue-0/event-channel-tx" && echo 1 || echo 0)"
}

# guest_create NAME GUEST_SCRIPT [CONFIG_LINE...]: creates a PV guest running
# scenarios/GUEST_SCRIPT.guest.sh from the lab's domU initramfs; extra xl.cfg lines (vif=,
# memory=, ...) come after the defaults and override them. Sets E2E_DOMID.
guest_create() {
  local name=$1 script=$2 cfg=/run/e2e/$1.cfg
  shift 2
  {
    echo "name = \"$name\""
    echo 'type = "pv"'
    echo "kernel = \"$E2E_KERNEL\""
    echo "ramdisk = \"$E2E_DOMU_INITRD\""
    echo "extra = \"console=hvc0 loglevel=5 e2e.guest=$script\""
    echo 'memory = 256'
    echo 'vcpus = 1'
    echo 'on_crash = "preserve"'
    printf '%s\n' "$@"
  } > "$cfg"
  echo "$name" >> "/run/e2e/$E2E_NAME.guests"
  log "xl create $name ($script)"
  timeout 300 xl create -q "$cfg" || fail "xl create $name"
  E2E_DOMID=$(xl domid "$name") || fail "no domain id for $name"
  log "guest $name is domain $E2E_DOMID"
}

# watch_guest DOMID: wait_for fails early on this guest's data/e2e/error.
watch_guest() { E2E_GUEST_DOMID=$1; }

guest_key() { echo "/local/domain/$1/data/e2e/$2"; }
guest_get() { xenstore-read "$(guest_key "$1" "$2")" 2>/dev/null; }
guest_put() { xenstore-write "$(guest_key "$1" "$2")" "$3"; }
# guest_wait DOMID KEY SECONDS: waits until the guest wrote KEY; its value in REPLY.
guest_wait() {
  wait_for "$3" "guest $1 key $2" xenstore-exists "$(guest_key "$1" "$2")"
  REPLY=$(guest_get "$1" "$2")
}

guest_console() { echo "/var/log/xen/console/guest-$1.log"; }

# window_begin / window_end: a measured window (one transfer) in dom0: its busy CPU ticks
# (user + nice + system + irq + softirq of all vCPUs) in WINDOW_TICKS and its context switches (/proc/stat ctxt: under PV
# each one that changes address space is a hypercall and a TLB flush) in WINDOW_CTXT. One
# process at each end, the same for every backend. While a window is open WINDOW_QUIET
# exists: background helpers (lib-dpnb.sh's heartbeat) start nothing then.
# Where the busy time went, for metrics' breakdown: WINDOW_USER (user + nice: processes,
# the daemon's poll loop among them), WINDOW_SYS (system: system calls and kernel threads,
# with the hypercalls they make: a PV kernel cannot tell time in Xen from its own),
# WINDOW_SOFT (irq + softirq: interrupt handlers, the stack's receive and the bridge), and
# with xen-netback loaded WINDOW_NETBACK, the ticks of its kernel threads (vif<D>.<H>-q<N>-
# guest-rx, -dealloc: the guest's RX copies and TX completions; its TX work runs in NAPI,
# i.e. softirq), sampled just outside the window. And as Xen accounts it (`xl list`, 0.1 s
# steps, sampled outside the window): WINDOW_XEN_DOM0, the seconds dom0's vCPUs ran (its
# busy time plus what Xen did on them that dom0's clock does not show as busy), and
# WINDOW_XEN_DOMU, the seconds the other domains' vCPUs ran (the guests under test: what
# the backend's way of working costs them).
WINDOW_QUIET=/run/e2e/measuring
cpu_sample() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $2 + $3, $4, $7 + $8 } $1 == "ctxt" { print $2 }' /proc/stat |
    tr '\n' ' '
}
# netback_ticks: CPU ticks of xen-netback's kernel threads, or nothing when it is not loaded.
netback_ticks() {
  [ -r /proc/modules ] && [[ $(< /proc/modules) == *xen_netback* ]] || return 0
  cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 ~ /^\(vif[0-9]+\.[0-9]+-q[0-9]+-/ { s += $14 + $15 } END { print s + 0 }'
}
# xen_cpu_sample: "DOM0_SECONDS OTHERS_SECONDS" of vCPU time as Xen accounts it (xl list).
xen_cpu_sample() {
  timeout 20 xl list 2>/dev/null |
    awk 'NR > 1 { if ($2 == 0) d += $NF; else o += $NF } END { if (NR > 1) printf "%.1f %.1f\n", d, o }'
}
WINDOW0="" WINDOW_NB0="" WINDOW_XEN0="" WINDOW_TICKS=0 WINDOW_CTXT=0 WINDOW_USER=0 WINDOW_SYS=0
WINDOW_SOFT=0 WINDOW_NETBACK="" WINDOW_XEN_DOM0="" WINDOW_XEN_DOMU=""
window_begin() {
  WINDOW_XEN0=$(xen_cpu_sample)
  WINDOW_NB0=$(netback_ticks)
  : > "$WINDOW_QUIET"
  WINDOW0=$(cpu_sample)
}
window_end() {
  local t0 u0 s0 q0 x0 t1 u1 s1 q1 x1 nb1 xen1
  read -r t0 u0 s0 q0 x0 <<<"$WINDOW0"
  read -r t1 u1 s1 q1 x1 <<<"$(cpu_sample)"
  rm -f "$WINDOW_QUIET"
  nb1=$(netback_ticks)
  WINDOW_TICKS=$((t1 - t0)) WINDOW_CTXT=$((x1 - x0))
  WINDOW_USER=$((u1 - u0)) WINDOW_SYS=$((s1 - s0)) WINDOW_SOFT=$((q1 - q0))
  WINDOW_NETBACK=""
  [ -z "$WINDOW_NB0" ] || [ -z "$nb1" ] || WINDOW_NETBACK=$((nb1 - WINDOW_NB0))
  xen1=$(xen_cpu_sample)
  WINDOW_XEN_DOM0="" WINDOW_XEN_DOMU=""
  if [ -n "$WINDOW_XEN0" ] && [ -n "$xen1" ]; then
    read -r WINDOW_XEN_DOM0 WINDOW_XEN_DOMU <<<"$(awk -v a="$WINDOW_XEN0" -v b="$xen1" \
      'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f %.1f", y[1] - x[1], y[2] - x[2] }')"
  fi
}

# metrics PREFIX BYTES SECONDS TICKS [CTXT]: throughput, dom0 CPU per byte and (with CTXT)
# dom0's context switches per MiB of one direction; the keys every backend's scenario gives.
# With the last window's breakdown: PREFIX_dom0_{user,sys,softirq}_share of its busy ticks
# and, with xen-netback loaded, PREFIX_netback_cpu_share (its threads); with Xen's accounting,
# PREFIX_xen_dom0_ns_per_byte and PREFIX_domu_ns_per_byte (dom0's and the guests' vCPU time
# per byte as Xen counts it).
metrics() {
  kv "$1_bytes" "$2"
  kv "$1_secs" "$3"
  kv "$1_mbit" "$(awk -v b="$2" -v s="$3" 'BEGIN { printf "%.1f", (s > 0 ? b * 8 / s / 1e6 : 0) }')"
  kv "$1_dom0_cpu_s" "$(awk -v t="$4" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')"
  kv "$1_dom0_ns_per_byte" \
    "$(awk -v t="$4" -v hz="$(getconf CLK_TCK)" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? t / hz * 1e9 / b : 0) }')"
  [ -z "${5:-}" ] ||
    kv "$1_dom0_ctxt_per_mib" "$(awk -v x="$5" -v b="$2" 'BEGIN { printf "%.0f", (b > 0 ? x * 1048576 / b : 0) }')"
  [ "$4" = "$WINDOW_TICKS" ] || return 0
  kv "$1_dom0_user_share" "$(awk -v a="$WINDOW_USER" -v t="$4" 'BEGIN { printf "%.2f", (t > 0 ? a / t : 0) }')"
  kv "$1_dom0_sys_share" "$(awk -v a="$WINDOW_SYS" -v t="$4" 'BEGIN { printf "%.2f", (t > 0 ? a / t : 0) }')"
  kv "$1_dom0_softirq_share" "$(awk -v a="$WINDOW_SOFT" -v t="$4" 'BEGIN { printf "%.2f", (t > 0 ? a / t : 0) }')"
  [ -z "$WINDOW_NETBACK" ] ||
    kv "$1_netback_cpu_share" "$(awk -v a="$WINDOW_NETBACK" -v t="$4" 'BEGIN { printf "%.2f", (t > 0 ? a / t : 0) }')"
  [ -z "$WINDOW_XEN_DOM0" ] || {
    kv "$1_xen_dom0_ns_per_byte" "$(awk -v s="$WINDOW_XEN_DOM0" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? s * 1e9 / b : 0) }')"
    kv "$1_domu_ns_per_byte" "$(awk -v s="$WINDOW_XEN_DOMU" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? s * 1e9 / b : 0) }')"
  }
}

# tcp_info_sampler DEST_IP:PORT FILE: appends the kernel's view of dom0's TCP connection to
# DEST (`ss -ti`: smoothed and minimum RTT, cwnd, pacing rate) to FILE, 2 s after the start
# and every 5 s after, until killed. Few samples: each is a process dom0 runs inside the
# measured window, the same number for every backend.
tcp_info_sampler() {
  sleep 2
  while :; do
    ss -Htin dst "$1" >> "$2" 2>/dev/null
    sleep 5
  done
}
# tcp_rtt_keys PREFIX FILE: PREFIX_min_rtt_ms (the connection's minimum RTT at the last
# sample), PREFIX_rtt_ms and PREFIX_cwnd (the medians of the samples' smoothed RTT and
# congestion window, in segments): what could bound the size of dom0's packets (TSO
# autosizing by the minimum RTT, the window), beside what it was (*_dom0_skb_bytes).
tcp_rtt_keys() {
  [ -s "$2" ] || return 0
  local min srtt cwnd
  min=$(grep -o 'minrtt:[0-9.]*' "$2" | tail -n 1 | cut -d: -f2)
  srtt=$(grep -o ' rtt:[0-9.]*' "$2" | cut -d: -f2 | median)
  cwnd=$(grep -o ' cwnd:[0-9]*' "$2" | cut -d: -f2 | median)
  [ -z "$min" ] || kv "$1_min_rtt_ms" "$min"
  [ -z "$srtt" ] || kv "$1_rtt_ms" "$srtt"
  [ -z "$cwnd" ] || kv "$1_cwnd" "$cwnd"
}

# wait_pid SECONDS DESCRIPTION PID: waits for a background child; its exit status.
wait_pid() {
  local secs=$1 what=$2 pid=$3 deadline
  deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill "$pid" 2>/dev/null
      fail "timeout ${secs}s: $what"
    fi
    sleep 0.2
  done
  wait "$pid"
}

# tcp_listening PORT: something listens on TCP PORT in dom0.
tcp_listening() { ss -Hltn "sport = :$1" | grep -q .; }

# bridge_up NAME ADDRESS/PREFIX: a Linux bridge with an address, for vifs of the in-kernel
# netback (tests/e2e/lab/vif-bridge-lab attaches them).
bridge_up() {
  ip link show "$1" >/dev/null 2>&1 || ip link add "$1" type bridge || return 1
  ip link set "$1" up || return 1
  ip addr replace "$2" dev "$1"
}

# netback_leg_begin BRIDGE ADDRESS/PREFIX / netback_leg_end BRIDGE: the in-kernel netback and
# a bridge for one leg of a comparison that moves vifs between backends, and both gone
# after it (dpnetbackd-vs-netback, dpnetbackd-local-vs-netback), so that neither backend's
# idle presence costs the other's windows.
module_gone() { ! grep -q "^$1 " /proc/modules; }
rmmod_netback() { module_gone xen_netback || rmmod xen-netback 2>/dev/null; module_gone xen_netback; }
netback_leg_begin() {
  modprobe xen-netback || fail "modprobe xen-netback"
  bridge_up "$1" "$2" || fail "bridge $1"
}
netback_leg_end() {
  ip link del "$1" || fail "ip link del $1"
  wait_for 60 "xen-netback unloaded" rmmod_netback
}
