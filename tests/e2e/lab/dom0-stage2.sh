#!/bin/bash
# dom0-stage2.sh: dom0's stage 2 in the Xen lab (run by dom0-init once the host's root is
# dom0's root). Brings up the Xen toolstack (xenfs, the Xen device modules, oxenstored,
# xen-init-dom0, xenconsoled), then runs the plan's scenarios one after the other, each
# under its own hard timeout, prints each verdict line for the host, cleans up after each
# (guests destroyed, network links and kernel modules the scenario added removed), copies
# the guests' console logs to the host, and powers the machine off.
#
# The plan ($LAB/plan, written by tests/e2e/run.sh, LAB from e2e.lab= on the command line)
# names the scenarios and where everything is. Lines the host reads:
#     E2E-BEGIN <scenario>        E2E <scenario> PASS|FAIL k=v ...     E2E-END <scenario> secs=N
#     E2E-FATAL <why>             E2E-STAGE2 done
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LAB=$(sed -n 's/.*e2e\.lab=\([^ ]*\).*/\1/p' /proc/cmdline)
if ! [ -r "$LAB/plan" ]; then
  echo "E2E-FATAL stage2: no plan at '$LAB/plan'"
  poweroff -f
fi
set -a
. "$LAB/plan"
set +a
. "$E2E_ROOT/lab/lib-dom0.sh"
E2E_NAME=stage2
XEN_BIN=/usr/lib/xen-4.17/bin
OUT=/run/e2e-out

finish() {
  if mountpoint -q "$OUT"; then
    cp -r /var/log/xen "$OUT/xen-logs" 2>/dev/null
    dmesg > "$OUT/dom0-dmesg.txt" 2>/dev/null
    umount "$OUT"
  fi
  log "done"
  echo "E2E-STAGE2 done"
  sync
  poweroff -f
}

# The lab itself is broken: every scenario fails with the reason.
fatal() {
  echo "E2E-FATAL stage2: $*"
  local s
  for s in $E2E_SCENARIOS; do
    echo "E2E $s FAIL reason=lab:${*// /_}"
  done
  finish
}

# poll SECONDS COMMAND...: like wait_for, for stage 2 (which has no scenario to fail).
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}

links() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }
modules() { awk '{ print $1 }' /proc/modules | sort; }

cleanup_after() {
  local s=$1 links_before=$2 mods_before=$3 d l m
  # Every guest, not only the scenario's: the next scenario starts with dom0 alone.
  for d in $(xl list 2>/dev/null | awk 'NR > 1 && $2 != 0 { print $1 }'); do
    log "destroying $d"
    timeout 120 xl destroy "$d" || log "xl destroy $d failed"
  done
  for l in $(comm -13 <(echo "$links_before") <(links)); do
    ip link del "$l" 2>/dev/null
  done
  # Modules the scenario loaded (e.g. xen-netback, bridge), so that the next one starts
  # from the same kernel: in passes, as a module goes only after its users.
  local pass left
  for pass in 1 2 3 4; do
    left=$(comm -13 <(echo "$mods_before") <(modules))
    [ -n "$left" ] || break
    for m in $left; do rmmod "$m" 2>/dev/null; done
  done
  left=$(comm -13 <(echo "$mods_before") <(modules))
  [ -z "$left" ] || log "cannot unload: $(echo $left)"
}

run_scenario() {
  local s=$1 to_var to res rc t0 secs verdict g f links_before mods_before
  to_var=E2E_TIMEOUT_${s//-/_}
  to=${!to_var:-300}
  res=/run/e2e/$s.result
  rm -f "$res"
  : > "/run/e2e/$s.guests"
  links_before=$(links)
  mods_before=$(modules)
  echo "E2E-BEGIN $s T+$(uptime_s) timeout=${to}s"
  t0=$SECONDS
  # timeout(1) puts itself and the scenario in a process group of its own (its id is
  # timeout's pid) and signals all of it at the deadline; what the scenario left running
  # (a daemon, a listener) is ended with the group once it returns.
  E2E_NAME=$s E2E_RESULT=$res timeout -k 10 "$to" \
    bash -c '. "$E2E_ROOT/lab/lib-dom0.sh" && . "$1"' scenario "$E2E_ROOT/scenarios/$s.sh" \
    </dev/null &
  local group=$!
  wait "$group"
  rc=$?
  kill -TERM -- "-$group" 2>/dev/null && sleep 1 && kill -KILL -- "-$group" 2>/dev/null
  secs=$((SECONDS - t0))
  if [ -s "$res" ]; then
    verdict=$(head -n 1 "$res")
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    verdict="E2E $s FAIL reason=timeout_${to}s"
  else
    verdict="E2E $s FAIL reason=exit_status_${rc}_without_verdict"
  fi
  echo "$verdict"
  if [ "${verdict#"E2E $s PASS"}" = "$verdict" ]; then
    for g in $(cat "/run/e2e/$s.guests"); do
      f=$(guest_console "$g")
      echo "---- console of guest $g: its scripts (last 60 lines), its kernel (last 20 lines)"
      tr -d '\r' < "$f" 2>/dev/null | grep -av '^\[ *[0-9]' | tail -n 60 | sed "s/^/[$g] /"
      tr -d '\r' < "$f" 2>/dev/null | grep -a '^\[ *[0-9]' | tail -n 20 | sed "s/^/[$g] /"
    done
  fi
  cleanup_after "$s" "$links_before" "$mods_before"
  echo "E2E-END $s secs=$secs"
}

log "start (group ${E2E_GROUP}: ${E2E_SCENARIOS})"
mkdir -p /proc/xen /dev/pts /run/e2e /run/xenstored /var/lib/xen /var/log/xen/console /var/run/xen
mount -t xenfs xenfs /proc/xen || fatal "cannot mount xenfs"
grep -q control_d /proc/xen/capabilities || fatal "not dom0 (/proc/xen/capabilities)"
mount -t devpts devpts /dev/pts || fatal "cannot mount devpts (xenconsoled needs it)"
# devtmpfs has no /dev/fd (udev makes it): bash's process substitution needs it.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd; do
  modprobe "$m" || fatal "modprobe $m"
done
mkdir -p "$OUT"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labout "$OUT" ||
  log "no output share: logs stay in dom0"

"$XEN_BIN/oxenstored" --pid-file /run/xenstored.pid || fatal "oxenstored did not start"
poll 120 xenstore-list / || fatal "xenstored does not answer"
"$XEN_BIN/xen-init-dom0" || fatal "xen-init-dom0 failed"
"$XEN_BIN/xenconsoled" --log=guest --log-dir=/var/log/xen/console \
  --pid-file=/run/xenconsoled.pid || fatal "xenconsoled did not start"
log "toolstack up: $(xl info 2>/dev/null | awk '/^xen_version/ { print "xen " $3 }')"

for s in $E2E_SCENARIOS; do
  run_scenario "$s"
done
finish
