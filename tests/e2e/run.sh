#!/usr/bin/env bash
# run.sh: dpnetback's end-to-end tests in the Xen lab (README.md here). Boots Xen 4.17 with
# a PV dom0 under QEMU once per group of scenarios, runs the group's scenarios in dom0, and
# prints one verdict line per scenario and a summary table.
#
# Usage: tests/e2e/run.sh [options] [scenario...]
#   (default: every scenario but those whose `e2e-default: no` keeps them for runs by name)
#   -b, --build DIR   the CMake build folder with dpnetback's binaries
#                     (default: $DPNB_E2E_BUILD, else build/e2e)
#   -o, --out DIR     keep every serial log, guest console and dom0 log under DIR
#   -k, --keep        keep the lab's temporary folders
#   -l, --list        list the scenarios and their groups
#       --bins        list the programs the scenarios take from the build folder or the
#                     host (e2e-project-bins, e2e-guest-bins), one per line
#   -d, --deb FILE    the Debian package for scenarios that install it (default:
#                     $DPNB_E2E_DEB, else build/package/dpnetback_*.deb: scripts/build-package.sh)
# Environment: E2E_XFER_MIB (MiB per transfer direction in kernel-netback, default 16);
#   E2E_STRACE=1: dpnetbackd-basic counts the daemon's system calls per packet with strace
#   during its four-queue guest's transfers (slows them: their q4_ figures mean little);
#   DPNB_PORT=tap: the dpnetbackd scenarios' port into dom0 is net_tap instead of virtio_user
#   over vhost-net (lab/lib-dpnb.sh), e.g. to compare the two. The daemon puts its event
#   channels' IRQs and its port's vhost-net workers on its lcore's CPU itself (dom0's CPU 1;
#   every transfer records where they are: *_irq_cpus, *_vhost_cpus); E2E_DPNB_PLACE=0 turns
#   that off (engine.place_interrupts, engine.place_vhost_workers) for a comparison run;
#   E2E_DPNB_PIN=MASK (hex; the lcore's CPU 1: mask 2) then pins them by hand to dom0's CPUs
#   in MASK, and with the daemon placing them checks that they are there (*_place_check).
#   E2E_PLACEMENT_ROUNDS, E2E_VS_ROUNDS, E2E_VS_GUESTS: rounds of dpnetbackd-placement and
#   dpnetbackd-vs-netback, and the latter's guests (their vCPU counts, "1 4").
#   E2E_RX_SENDER=sendfile: dom0 sends its dom0-to-guest transfers with sendfile(2)
#   (lab/send-file.py) instead of busybox nc's small writes (lab/lib-dpnb.sh xfer_rx).
# Exit status: 0 all passed, 1 a scenario failed, 2 usage, 77 the lab's packages are missing
# (CTest's SKIP_RETURN_CODE; scripts/install-deps.sh e2e installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

build=${DPNB_E2E_BUILD:-$root/build/e2e}
deb=${DPNB_E2E_DEB:-} out="" keep=0 list=0 bins=0 wanted=()
while [ $# -gt 0 ]; do
  case $1 in
    -b | --build) build=$2; shift 2 ;;
    -o | --out) out=$2; shift 2 ;;
    -k | --keep) keep=1; shift ;;
    -l | --list) list=1; shift ;;
    --bins) bins=1; shift ;;
    -d | --deb) deb=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) wanted+=("$1"); shift ;;
  esac
done

# ---- scenarios: tests/e2e/scenarios/<name>.sh (dom0) and <name>.guest.sh (guest) ----
meta() { sed -n "s/^# $2: *//p" "$here/scenarios/$1.sh" | head -n 1; }
all=()
for f in "$here"/scenarios/*.sh; do
  case $f in *.guest.sh) continue ;; esac
  all+=("$(basename "$f" .sh)")
done
if [ $list -eq 1 ]; then
  for s in "${all[@]}"; do
    printf '%-20s group=%-10s timeout=%ss%s\n' "$s" "$(meta "$s" e2e-group)" "$(meta "$s" e2e-timeout)" \
      "$([ "$(meta "$s" e2e-default)" != no ] || echo ' (by name only)')"
  done
  exit 0
fi
if [ ${#wanted[@]} -eq 0 ]; then
  for s in "${all[@]}"; do
    [ "$(meta "$s" e2e-default)" = no ] || wanted+=("$s")
  done
fi
if [ $bins -eq 1 ]; then
  for s in "${wanted[@]}"; do
    meta "$s" e2e-project-bins | tr ' ' '\n'
    meta "$s" e2e-guest-bins | tr ' ' '\n'
  done | grep . | sort -u
  exit 0
fi
# dom0 runs the binaries from its own working folder: the build folder's absolute path.
[ ! -d "$build" ] || build=$(cd "$build" && pwd)
for s in "${wanted[@]}"; do
  [ -f "$here/scenarios/$s.sh" ] || { echo "run.sh: no scenario '$s' (--list)" >&2; exit 2; }
done

# ---- the lab's packages (scripts/install-deps.sh e2e) ----
KV=${KV:-$(ls /boot 2>/dev/null | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)}
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=("qemu-system-x86_64 (qemu-system-x86)")
[ -f /boot/xen-4.17-amd64.gz ] || missing+=("/boot/xen-4.17-amd64.gz (xen-hypervisor-4.17-amd64)")
for b in xl oxenstored xen-init-dom0 xenconsoled; do
  [ -x "/usr/lib/xen-4.17/bin/$b" ] || missing+=("$b (xen-utils-4.17)")
done
command -v xenstore-read >/dev/null || missing+=("xenstore-read (xenstore-utils)")
{ [ -n "$KV" ] && [ -d "/lib/modules/$KV" ]; } || missing+=("a kernel in /boot with its modules (linux-image-amd64)")
command -v busybox >/dev/null && ! ldd "$(command -v busybox)" >/dev/null 2>&1 ||
  missing+=("static busybox (busybox-static)")
for b in cpio modprobe xz gzip; do
  command -v "$b" >/dev/null || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "e2e: SKIPPED, the Xen lab needs: ${missing[*]}"
  echo "e2e: install them with scripts/install-deps.sh e2e"
  exit 77
fi

# One lab at a time on this machine: QEMU's TCG uses every core.
exec 9> "${TMPDIR:-/tmp}/dpnb-e2e.lock"
if ! flock -n 9; then
  echo "e2e: another lab is running; waiting for it"
  flock -w 7200 9 || { echo "e2e: gave up waiting for the other lab" >&2; exit 1; }
fi

labs=()
cleanup() {
  if [ $keep -eq 0 ]; then
    for l in "${labs[@]}"; do rm -rf "$l"; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -z "$out" ] || mkdir -p "$out"
declare -A verdict secs group_of
t_all=$SECONDS

# find_deb NAME: the Debian package NAME (--deb, else the newest of build/package).
find_deb() {
  if [ -n "$deb" ]; then
    [ -f "$deb" ] && readlink -f "$deb"
    return
  fi
  ls -t "$root/build/package/$1"_*_"$(dpkg --print-architecture)".deb 2>/dev/null | head -n 1 | grep .
}

# find_bin NAME: a dpnetback binary in the build folder.
find_bin() {
  [ -d "$build" ] || return 1
  find "$build" -type f -name "$1" -perm -u+x -not -path '*/CMakeFiles/*' 2>/dev/null | head -n 1 | grep .
}

# diagnose LOG SCENARIO...: what a CI log needs to explain a failure.
diagnose() {
  local log=$1 s
  shift
  echo "---- serial console: lines that look like errors (last 60)"
  grep -naE 'E2E-FATAL|E2E-TIMEOUT|E2E [a-z0-9-]+ FAIL|FAIL|Kernel panic|Panic on CPU|BUG:|WARNING:|Oops|Call Trace|segfault|general protection|libxl: error|[Ee]rror|timed out|refused' "$log" |
    grep -v 'E2E-LOG .*dpnb-xen-probe' | tail -n 60 || true
  for s in "$@"; do
    if grep -q "E2E-BEGIN $s " "$log"; then
      echo "---- serial console: scenario $s (last 150 lines)"
      sed -n "/E2E-BEGIN $s /,/E2E-END $s /p" "$log" | tail -n 150
    fi
  done
  echo "---- serial console: last 80 lines"
  tail -n 80 "$log"
}

run_group() {
  local g=$1 lab log s to total=0 f b path rc dom0_nic="" missing_bins=() scenarios=() guest_bins=() run=()
  shift
  scenarios=("$@")
  lab=$(mktemp -d "${TMPDIR:-/tmp}/dpnb-e2e.XXXXXX")
  labs+=("$lab")
  mkdir -p "$lab/out"
  log=$lab/serial.log
  echo "== e2e group $g: ${scenarios[*]} (lab $lab)"

  {
    printf 'E2E_ROOT=%q\nE2E_LAB=%q\nE2E_GROUP=%q\n' "$here" "$lab" "$g"
    printf 'E2E_KERNEL=%q\nE2E_DOMU_INITRD=%q\n' "/boot/vmlinuz-$KV" "$lab/domu-initrd.gz"
    [ -z "${E2E_XFER_MIB:-}" ] || printf 'E2E_XFER_MIB=%q\n' "$E2E_XFER_MIB"
    [ -z "${E2E_STRACE:-}" ] || printf 'E2E_STRACE=%q\n' "$E2E_STRACE"
    [ -z "${E2E_DPNB_PIN:-}" ] || printf 'E2E_DPNB_PIN=%q\n' "$E2E_DPNB_PIN"
    [ -z "${E2E_PLACEMENT_ROUNDS:-}" ] || printf 'E2E_PLACEMENT_ROUNDS=%q\n' "$E2E_PLACEMENT_ROUNDS"
    [ -z "${E2E_VS_ROUNDS:-}" ] || printf 'E2E_VS_ROUNDS=%q\n' "$E2E_VS_ROUNDS"
    [ -z "${E2E_VS_GUESTS:-}" ] || printf 'E2E_VS_GUESTS=%q\n' "$E2E_VS_GUESTS"
    [ -z "${E2E_RX_SENDER:-}" ] || printf 'E2E_RX_SENDER=%q\n' "$E2E_RX_SENDER"
    [ -z "${E2E_DPNB_PLACE:-}" ] || printf 'E2E_DPNB_PLACE=%q\n' "$E2E_DPNB_PLACE"
    [ -z "${DPNB_PORT:-}" ] || printf 'DPNB_PORT=%q\n' "$DPNB_PORT"
  } > "$lab/plan"
  guest_bins=(xenstore-read xenstore-write xenstore-exists xenstore-rm xenstore-ls)
  for s in "${scenarios[@]}"; do
    # Scenarios whose binaries are not built fail here; the others still run.
    missing_bins=()
    for b in $(meta "$s" e2e-project-bins); do
      if path=$(find_bin "$b"); then
        printf 'E2E_BIN_%s=%q\n' "${b//-/_}" "$path" >> "$lab/plan"
      else
        missing_bins+=("$b")
      fi
    done
    if [ ${#missing_bins[@]} -gt 0 ]; then
      verdict[$s]="E2E $s FAIL reason=not_built:${missing_bins[*]// /,}_in_$build"
      secs[$s]=0
      echo "e2e: $s needs ${missing_bins[*]} from $build: build it, e.g." \
        "cmake -S . -B build/e2e -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo &&" \
        "cmake --build build/e2e --target ${missing_bins[*]}" >&2
      continue
    fi
    # Scenarios that install the package: the host's path is dom0's (its root is the host's).
    b=$(meta "$s" e2e-deb)
    if [ -n "$b" ]; then
      if path=$(find_deb "$b"); then
        printf 'E2E_DEB_%s=%q\n' "${b//-/_}" "$path" >> "$lab/plan"
      else
        verdict[$s]="E2E $s FAIL reason=not_built:$b.deb"
        secs[$s]=0
        echo "e2e: $s needs the $b package: scripts/build-package.sh, or --deb FILE" >&2
        continue
      fi
    fi
    for b in $(meta "$s" e2e-guest-bins); do
      if path=$(find_bin "$b"); then guest_bins+=("$path"); else guest_bins+=("$b"); fi
    done
    b=$(meta "$s" e2e-dom0-nic)
    [ -z "$b" ] || dom0_nic=$b
    to=$(meta "$s" e2e-timeout)
    to=${to:-300}
    printf 'E2E_TIMEOUT_%s=%q\n' "${s//-/_}" "$to" >> "$lab/plan"
    total=$((total + to))
    run+=("$s")
  done
  [ ${#run[@]} -gt 0 ] || return 0
  printf 'E2E_SCENARIOS=%q\n' "${run[*]}" >> "$lab/plan"

  zcat /boot/xen-4.17-amd64.gz > "$lab/xen"
  KV=$KV "$here/lab/mkinitrd.sh" -o "$lab/dom0-initrd.gz" -i "$here/lab/dom0-init" \
    -m virtio_pci -m 9pnet_virtio -m 9p -m overlay
  local gargs=(-o "$lab/domu-initrd.gz" -i "$here/lab/domu-init"
    -m xen-netfront -m xen-evtchn -m xen-gntalloc
    -f "$here/lab/lib-guest.sh:/e2e/lib-guest.sh" -d "$here/scenarios:/e2e/scenarios")
  for b in $(printf '%s\n' "${guest_bins[@]}" | awk '!seen[$0]++'); do gargs+=(-b "$b"); done
  KV=$KV "$here/lab/mkinitrd.sh" "${gargs[@]}"

  # Boot allowance (Xen, dom0, toolstack: 1-2 minutes on a loaded 2-core machine) plus every
  # scenario's own timeout: the hard limit of this run.
  local t0=$SECONDS
  rc=0
  KV=$KV E2E_DOM0_NIC=$dom0_nic "$here/lab/boot.sh" "$lab" "$log" $((300 + total)) || rc=$?
  tr -d '\r' < "$log" > "$log.txt"
  log=$log.txt
  echo "== e2e group $g: lab ran $((SECONDS - t0)) s (boot.sh status $rc)"

  local failed=()
  for s in "${run[@]}"; do
    local line
    line=$(grep -aoE "E2E $s (PASS|FAIL)( .*)?$" "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then
      case $rc in
        0) line="E2E $s FAIL reason=no_verdict" ;;
        2) line="E2E $s FAIL reason=lab_timeout" ;;
        3) line="E2E $s FAIL reason=xen_or_dom0_crashed" ;;
        *) line="E2E $s FAIL reason=qemu_stopped" ;;
      esac
    fi
    verdict[$s]=$line
    secs[$s]=$(grep -aoE "E2E-END $s secs=[0-9]+" "$log" | tail -n 1 | sed 's/.*secs=//' || true)
    echo "$line"
    case $line in "E2E $s PASS"*) ;; *) failed+=("$s") ;; esac
  done
  if [ ${#failed[@]} -gt 0 ] || [ $rc -ne 0 ]; then
    diagnose "$log" "${failed[@]}"
  fi
  if [ -n "$out" ]; then
    mkdir -p "$out/$g"
    cp "$log" "$out/$g/serial.log"
    cp -r "$lab/out/." "$out/$g/" 2>/dev/null || true
    echo "== e2e group $g: logs in $out/$g"
  fi
}

# Groups in order of first appearance; a group's scenarios share one boot.
groups=()
declare -A members
for s in "${wanted[@]}"; do
  g=$(meta "$s" e2e-group)
  g=${g:-$s}
  group_of[$s]=$g
  [ -n "${members[$g]+x}" ] || groups+=("$g")
  members[$g]="${members[$g]:-} $s"
done
for g in "${groups[@]}"; do
  # shellcheck disable=SC2086 # scenario names have no spaces
  run_group "$g" ${members[$g]}
done

echo
echo "== e2e summary ($((SECONDS - t_all)) s)"
printf '%-20s %-10s %-6s %6s\n' scenario group result secs
status=0
for s in "${wanted[@]}"; do
  line=${verdict[$s]:-"E2E $s FAIL reason=not_run"}
  r=$(awk '{ print $3 }' <<<"$line")
  [ "$r" = PASS ] || status=1
  printf '%-20s %-10s %-6s %6s\n' "$s" "${group_of[$s]}" "$r" "${secs[$s]:--}"
done
for s in "${wanted[@]}"; do
  echo "  ${verdict[$s]:-"E2E $s FAIL reason=not_run"}"
done
# dpnetbackd against the in-kernel netback, as ratios (numbers under emulation mean little
# alone; both run in the base group's boot): throughput each way, dom0 CPU per byte and
# dom0 context switches per MiB. ratio_line TITLE DPNB_SCENARIO DPNB_PREFIX KNB_SCENARIO
# KNB_PREFIX: one line when both scenarios passed in this run.
key_of() { grep -oE " $2=[0-9.]+" <<<"$1" | head -n 1 | cut -d= -f2; }
ratio_line() {
  local dnb=${verdict[$2]:-} knb=${verdict[$4]:-} line k a b
  [[ $dnb == *" PASS "* && $knb == *" PASS "* ]] || return 0
  line="== $1:"
  for k in tx_mbit rx_mbit tx_dom0_ns_per_byte rx_dom0_ns_per_byte tx_dom0_ctxt_per_mib rx_dom0_ctxt_per_mib \
    tx_xen_dom0_ns_per_byte rx_xen_dom0_ns_per_byte tx_domu_ns_per_byte rx_domu_ns_per_byte; do
    a=$(key_of "$dnb" "$3$k") b=$(key_of "$knb" "$5$k")
    if [ -n "$a" ] && [ -n "$b" ]; then
      line+=" $k $(awk -v a="$a" -v b="$b" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }') ($a / $b)"
    else
      line+=" $k -"
    fi
  done
  echo "$line"
}
ratio_line "dpnetbackd / in-kernel netback" dpnetbackd-basic "" kernel-netback ""
ratio_line "dpnetbackd / in-kernel netback, four-vCPU guests" dpnetbackd-basic q4_ kernel-netback-q4 q4_
ratio_line "dpnetbackd, wake-ups on the lcore's vCPU / in-kernel netback" dpnetbackd-placement on_ kernel-netback ""
ratio_line "dpnetbackd, IRQs on the lcore's vCPU, vhost workers unpinned / in-kernel netback" dpnetbackd-placement irq_ kernel-netback ""
ratio_line "dpnetbackd, wake-ups across vCPUs / in-kernel netback" dpnetbackd-placement off_ kernel-netback ""
ratio_line "dpnetbackd / in-kernel netback, interleaved rounds in one boot, one-vCPU guest (medians)" \
  dpnetbackd-vs-netback q1_dpnb_ dpnetbackd-vs-netback q1_knb_
ratio_line "dpnetbackd / in-kernel netback, interleaved rounds in one boot, four-vCPU guest (medians)" \
  dpnetbackd-vs-netback q4_dpnb_ dpnetbackd-vs-netback q4_knb_
exit $status
