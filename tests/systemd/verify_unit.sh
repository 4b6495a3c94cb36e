#!/usr/bin/env bash
# systemd-analyze verify on dpnetbackd.service, alone and with the PCI drop-in, and
# systemd-tmpfiles on dpnetback's tmpfiles entry, as installed but with ExecStart pointing at
# the built daemon (verify checks that the binary exists). Any line of output that names the
# unit or the file fails the test: systemd-analyze reports unknown keys, bad values and
# missing binaries as warnings with status 0. systemd-analyze security must rate the unit at
# most 3.3 and the unit with the drop-in at most 3.9 (docs/operations.md records both).
# Usage: verify_unit.sh UNIT TMPFILES_CONF DPNETBACKD PCI_DROPIN
set -uo pipefail
unit=$1 tmpfiles=$2 daemon=$3 dropin=$4

command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze missing"; exit 77; }
[ -x "$daemon" ] || { echo "FAIL: $daemon is not executable"; exit 1; }

tmp=$(mktemp -d /tmp/dpnbunit.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
status=0

grep -q '^ExecStart=/usr/sbin/dpnetbackd ' "$unit" || { echo "FAIL: ExecStart is not /usr/sbin/dpnetbackd"; exit 1; }
sed "s#^ExecStart=/usr/sbin/dpnetbackd #ExecStart=$daemon #" "$unit" >"$tmp/dpnetbackd.service"
out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no ./dpnetbackd.service 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ]; then
    echo "FAIL: systemd-analyze verify exited $rc"
    status=1
fi
if echo "$out" | grep -q 'dpnetbackd'; then
    echo "FAIL: systemd-analyze verify has something to say about dpnetbackd.service"
    status=1
fi

# The exposure systemd-analyze security gives (--threshold is ten times the score).
security() { # DIR MAX_TIMES_TEN WHAT
    local out rc
    out=$(cd "$1" && SYSTEMD_UNIT_PATH="$1:" SYSTEMD_LOG_COLOR=0 \
        systemd-analyze security --offline=true --threshold="$2" ./dpnetbackd.service 2>&1)
    rc=$?
    echo "$out" | grep 'Overall exposure'
    if [ $rc -ne 0 ]; then
        echo "FAIL: $3: systemd-analyze security rates it above $(awk -v t="$2" 'BEGIN { print t / 10 }')"
        status=1
    fi
}
security "$tmp" 33 "the unit"

# The PCI drop-in, loaded from dpnetbackd.service.d beside the unit.
mkdir -p "$tmp/dropin/dpnetbackd.service.d"
cp "$tmp/dpnetbackd.service" "$tmp/dropin/"
cp "$dropin" "$tmp/dropin/dpnetbackd.service.d/"
out=$(cd "$tmp/dropin" && SYSTEMD_UNIT_PATH="$tmp/dropin:" SYSTEMD_LOG_COLOR=0 \
    systemd-analyze verify --man=no ./dpnetbackd.service 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ] || echo "$out" | grep -q 'dpnetbackd'; then
    echo "FAIL: systemd-analyze verify with the drop-in ($rc)"
    status=1
fi
out=$(cd "$tmp/dropin" && SYSTEMD_UNIT_PATH="$tmp/dropin:" systemd-analyze security --offline=true \
    ./dpnetbackd.service 2>&1)
for want in 'CapabilityBoundingSet=~CAP_SYS_ADMIN' 'CapabilityBoundingSet=~CAP_SYS_RAWIO' \
    'SystemCallFilter=~@raw-io'; do
    if ! echo "$out" | grep -q "✗ $want"; then
        echo "FAIL: the drop-in does not grant what '$want' names"
        status=1
    fi
done
security "$tmp/dropin" 39 "the unit with the PCI drop-in"

# The tmpfiles entry: parsed and applied under a scratch root.
out=$(systemd-tmpfiles --root="$tmp/root" --create "$tmpfiles" 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ] || [ -n "$out" ]; then
    echo "FAIL: systemd-tmpfiles --create exited $rc"
    status=1
fi
mode=$(stat -c %a "$tmp/root/run/dpnetback" 2>/dev/null)
if [ "$mode" != 755 ]; then
    echo "FAIL: /run/dpnetback made with mode '$mode', not 755"
    status=1
fi
[ $status -eq 0 ] && echo "PASS"
exit $status
