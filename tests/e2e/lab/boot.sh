#!/bin/bash
# boot.sh LAB LOG TIMEOUT_S: boots Xen 4.17 and a PV dom0 under QEMU (TCG: software
# emulation; nested KVM hangs on these machines) and lets dom0 run tests/e2e/lab/
# dom0-stage2.sh with the plan in LAB. LAB holds xen (the uncompressed hypervisor),
# dom0-initrd.gz, plan and out/ (shared writable with dom0 for its logs). The serial console
# (Xen, dom0's console) goes to LOG.
#
# dom0's root is the host's root over virtio-9p, read-only, so LAB must be a host path
# without commas or spaces (QEMU's multiboot module list).
#
# Exit status: 0 when dom0 finished its stage 2, 2 at the timeout, 3 when Xen or dom0
# crashed, 4 when QEMU stopped without either. QEMU is always gone when this returns.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab=$1 log=$2 timeout_s=$3
KV=${KV:-$(ls /boot | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)}

case $lab in *,* | *' '*)
  echo "boot.sh: lab folder '$lab' has a comma or a space" >&2
  exit 4
  ;;
esac

# -cpu max crashes the PV dom0 early; SSE4.2 is what DPDK needs.
qemu=(qemu-system-x86_64 -accel tcg,thread=multi
  -cpu qemu64,+sse4.1,+sse4.2,+ssse3,+popcnt -smp 2 -m 2048
  -display none -monitor none -no-reboot -serial "file:$log"
  -kernel "$lab/xen"
  -append "dom0_mem=1024M console=com1 loglvl=all guest_loglvl=all noreboot"
  -initrd "/boot/vmlinuz-$KV console=hvc0 earlyprintk=xen e2e.stage2=$here/dom0-stage2.sh e2e.lab=$lab,$lab/dom0-initrd.gz"
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$lab/out,mount_tag=labout,security_model=none")
# E2E_DOM0_NIC=MODEL (a scenario's `e2e-dom0-nic`): a PCI NIC QEMU emulates for dom0, with no
# network behind it (the scenario binds it, nothing is sent).
[ -z "${E2E_DOM0_NIC:-}" ] || qemu+=(-device "$E2E_DOM0_NIC,mac=52:54:00:e2:e0:02")

: > "$log"
"${qemu[@]}" < /dev/null > "$lab/qemu.stderr" 2>&1 &
pid=$!
stop_qemu() {
  kill "$pid" 2>/dev/null
  for _ in $(seq 20); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
trap 'stop_qemu; exit 130' INT TERM

# What the serial log says so far: 0 when dom0 finished its stage 2, 3 after a crash, 1
# while neither.
log_verdict() {
  if grep -q 'E2E-STAGE2 done' "$log"; then return 0; fi
  if grep -qE 'Kernel panic - not syncing|Panic on CPU|Domain 0 crashed' "$log"; then return 3; fi
  return 1
}

start=$SECONDS
status=4
while kill -0 "$pid" 2>/dev/null; do
  log_verdict
  case $? in
  0)
    status=0
    # dom0 powers off; Xen then stops the machine. Give it a moment, then stop QEMU.
    for _ in $(seq 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    break
    ;;
  3)
    sleep 2 # the rest of the panic message
    status=3
    break
    ;;
  esac
  if ((SECONDS - start > timeout_s)); then
    echo "E2E-TIMEOUT the lab did not finish in ${timeout_s} s" >> "$log"
    status=2
    break
  fi
  sleep 1
done
stop_qemu
# QEMU may exit between two polls, right after dom0 printed its last line and powered off:
# read the whole log once more before calling that a stop without either.
if [ $status -eq 4 ]; then
  log_verdict
  verdict=$?
  [ $verdict -eq 1 ] || status=$verdict
fi
if [ $status -eq 4 ] && [ -s "$lab/qemu.stderr" ]; then
  sed 's/^/qemu: /' "$lab/qemu.stderr" >> "$log"
fi
echo "boot.sh: $((SECONDS - start)) s, status $status" >&2
exit $status
