#!/usr/bin/env bash
# `cmake --install` of the build tree: under a scratch prefix, and staged for /usr with
# DESTDIR (a distribution's layout: /etc, /usr/sbin). Checks that every file lands where
# docs/operations.md says, that the installed unit names the installed paths and passes
# systemd-analyze verify as installed, and that a second install keeps an edited
# configuration.
# Usage: install_test.sh CMAKE BUILD_DIR
set -uo pipefail
cmake=$1 build=$2

tmp=$(mktemp -d /tmp/dpnbinst.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

prefix=$tmp/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install --prefix exited $?"; }
for f in sbin/dpnetbackd bin/dpnetbackctl lib/systemd/system/dpnetbackd.service \
    lib/tmpfiles.d/dpnetback.conf etc/dpnetback/dpnetback.toml etc/xen/scripts/vif-dpnetback \
    share/doc/dpnetback/operations.md share/doc/dpnetback/config-reference.md \
    share/doc/dpnetback/dpnetback.toml.example \
    share/doc/dpnetback/examples/dpnetbackd-pci-noiommu.conf; do
    [ -f "$prefix/$f" ] || fail "$f not installed"
done
[ -x "$prefix/etc/xen/scripts/vif-dpnetback" ] || fail "vif-dpnetback is not executable"
# The man pages, when the build had help2man (scripts/install-deps.sh package).
if grep -q '^DPNB_HELP2MAN:FILEPATH=/' "$build/CMakeCache.txt"; then
    for f in share/man/man8/dpnetbackd.8 share/man/man1/dpnetbackctl.1; do
        [ -f "$prefix/$f" ] || fail "$f not installed"
    done
    grep -q '^\.SH "EXIT STATUS"' "$prefix/share/man/man8/dpnetbackd.8" ||
        fail "dpnetbackd.8 lacks the sections of docs/man/dpnetbackd.h2m"
fi
unit=$prefix/lib/systemd/system/dpnetbackd.service
grep -qx "ExecStart=$prefix/sbin/dpnetbackd --foreground --config $prefix/etc/dpnetback/dpnetback.toml \$DPNETBACKD_OPTS" "$unit" ||
    fail "ExecStart does not name the installed paths: $(grep ExecStart= "$unit")"
grep -q "^EnvironmentFile=-$prefix/etc/default/dpnetback$" "$unit" || fail "EnvironmentFile not under the prefix"
if command -v systemd-analyze >/dev/null; then
    out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$unit" 2>&1)
    [ -z "$out" ] || fail "systemd-analyze verify on the installed unit: $out"
fi
echo "ok: installed under $prefix"

# A second install keeps the operator's configuration.
echo "# edited" >>"$prefix/etc/dpnetback/dpnetback.toml"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install2.log" 2>&1 || fail "second install exited $?"
tail -n1 "$prefix/etc/dpnetback/dpnetback.toml" | grep -qx "# edited" || fail "a reinstall replaced the configuration"
echo "ok: a reinstall keeps the configuration"

# Staged for /usr: /etc files in /etc, the unit naming /usr/sbin and /etc as shipped.
stage=$tmp/stage
DESTDIR=$stage "$cmake" --install "$build" --prefix /usr >"$tmp/install3.log" 2>&1 ||
    { cat "$tmp/install3.log"; fail "DESTDIR install exited $?"; }
for f in usr/sbin/dpnetbackd usr/bin/dpnetbackctl usr/lib/systemd/system/dpnetbackd.service \
    usr/lib/tmpfiles.d/dpnetback.conf etc/dpnetback/dpnetback.toml etc/xen/scripts/vif-dpnetback; do
    [ -f "$stage/$f" ] || fail "/$f not staged"
done
[ ! -e "$stage/usr/etc" ] || fail "files staged under /usr/etc"
grep -q "^ExecStart=/usr/sbin/dpnetbackd --foreground --config /etc/dpnetback/dpnetback.toml " \
    "$stage/usr/lib/systemd/system/dpnetbackd.service" || fail "the /usr unit's ExecStart changed"
echo "ok: staged for /usr with DESTDIR"
echo PASS
