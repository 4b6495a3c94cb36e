#!/usr/bin/env bash
# systemd-analyze verify on dpnetbackd.service, and systemd-tmpfiles on dpnetback's tmpfiles
# entry, as installed but with ExecStart pointing at the built daemon (verify checks that the
# binary exists). Any line of output that names the unit or the file fails the test:
# systemd-analyze reports unknown keys, bad values and missing binaries as warnings with
# status 0.
# Usage: verify_unit.sh UNIT TMPFILES_CONF DPNETBACKD
set -uo pipefail
unit=$1 tmpfiles=$2 daemon=$3

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
