#!/usr/bin/env bash
# boot.sh's exit status when QEMU stops on its own, with a stand-in for qemu-system-x86_64
# (first on PATH) that writes a serial line and exits 1.5 s after it started: between two of
# boot.sh's polls (one a second), so that only a last look at the log after QEMU exits finds
# the line. Cases: dom0's "E2E-STAGE2 done" (status 0), a dom0 panic (3), nothing (4).
# Usage: boot_status_test.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/dpnbboot.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/lab/out"

cat >"$tmp/bin/qemu-system-x86_64" <<'QEMU'
#!/usr/bin/env bash
# Finds -serial file:LOG among the arguments, writes $FAKE_QEMU_LINE to it, and exits.
log=
while [ $# -gt 0 ]; do
  [ "$1" = -serial ] && log=${2#file:}
  shift
done
sleep 1.5
[ -z "$FAKE_QEMU_LINE" ] || printf '%s\r\n' "$FAKE_QEMU_LINE" >>"$log"
exit 0
QEMU
chmod +x "$tmp/bin/qemu-system-x86_64"

status=0
check() { # LINE EXPECTED_STATUS
  local rc
  FAKE_QEMU_LINE=$1 KV=test PATH="$tmp/bin:$PATH" "$here/boot.sh" "$tmp/lab" "$tmp/serial.log" 60 \
    2>"$tmp/boot.err"
  rc=$?
  if [ $rc -eq "$2" ]; then
    echo "ok: '${1:-nothing}' -> status $rc"
  else
    echo "FAIL: '${1:-nothing}' -> status $rc, expected $2 ($(cat "$tmp/boot.err"))"
    status=1
  fi
}
check "E2E-STAGE2 done" 0
check "Kernel panic - not syncing: Attempted to kill init!" 3
check "" 4
[ $status -eq 0 ] && echo PASS
exit $status
