# dpnetbackd-package: the Debian package (debian/, built by scripts/build-package.sh) installed
# in dom0, whose root is a tmpfs overlay over the host's (nothing reaches the host, and the
# scenario has a boot of its own, so no other scenario sees it), serving an unmodified Linux
# xen-netfront guest the way an operator runs it:
#   * dpkg -i: every file where docs/operations.md says, the unit enabled and not started,
#     /run/dpnetback made by the tmpfiles entry, the man pages;
#   * the lab's Xen settings as DPNETBACKD_OPTS in /etc/default/dpnetback over the installed
#     /etc/dpnetback/dpnetback.toml (hypervisor.kind = xen, less memory, sleep when idle);
#   * the daemon started with the installed unit's ExecStart, under the unit's
#     CapabilityBoundingSet and NoNewPrivileges (dom0 runs no systemd: setpriv does that);
#     its capabilities after start-up from /proc/PID/task/*/status;
#   * a guest whose vif names the installed hotplug script (script=vif-dpnetback, found in
#     /etc/xen/scripts), which attaches it with the installed dpnetbackctl and writes
#     hotplug-status connected: handshake, ping both ways, a transfer each way with sha256;
#   * xl destroy (the script's offline), SIGTERM without leaks, dpkg --purge: files gone.
#
# Keys: pkg (the .deb installed), cap_eff/cap_prm/cap_bnd (the control thread after
# start-up, hex), cap_others (the union of every other thread's effective set), nnp,
# handshake keys, ping_*, tx_*/rx_* as kernel-netback (E2E_XFER_MIB / 4 each way).
#
# e2e-group: package
# e2e-timeout: 900
# e2e-deb: dpnetback
E2E_BIN_dpnetbackd=/usr/sbin/dpnetbackd
E2E_BIN_dpnetbackctl=/usr/bin/dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"
DPNB_SOCK=/run/dpnetback/dpnetbackd.sock # the installed configuration's
MIB=${E2E_XFER_MIB:-16}
SMALL=$((MIB / 4 > 0 ? MIB / 4 : 1))
DEB=${E2E_DEB_dpnetback:?run.sh names the package}
kv pkg "$(basename "$DEB")"

# 1. Install.
! dpkg-query -W dpnetback >/dev/null 2>&1 || fail "dpnetback is already installed in dom0"
# man-db's trigger re-indexes every manual page of the host's root, over 9p under emulation:
# 237 of the install's 262 s in dpkg's log below, and again on purge. It is Debian's, not the
# package's (the man pages are checked as files below), so dom0's overlay turns it off.
rm -f /var/lib/man-db/auto-update
t_dpkg=$SECONDS
# dpkg's own log times each step (unpack, configure, triggers): under emulation the install
# takes minutes, and this says where.
dpkg --log="$DPNB_DIR/dpkg-steps.log" -i "$DEB" > "$DPNB_DIR/dpkg-install.log" 2>&1 ||
  fail "dpkg -i: $(tail -n 3 "$DPNB_DIR/dpkg-install.log" | tr '\n' ' ')"
unit=$(dpkg -L dpnetback | grep '/systemd/system/dpnetbackd\.service$') || fail "no unit in the package"
for f in /usr/sbin/dpnetbackd /usr/bin/dpnetbackctl "$unit" /usr/lib/tmpfiles.d/dpnetback.conf \
  /etc/dpnetback/dpnetback.toml /etc/xen/scripts/vif-dpnetback \
  /usr/share/man/man8/dpnetbackd.8.gz /usr/share/man/man1/dpnetbackctl.1.gz \
  /usr/share/doc/dpnetback/operations.md \
  /usr/share/doc/dpnetback/examples/dpnetbackd-pci-noiommu.conf; do
  [ -e "$f" ] || fail "the package did not install $f"
done
[ -x /etc/xen/scripts/vif-dpnetback ] || fail "vif-dpnetback is not executable"
[ -L /etc/systemd/system/multi-user.target.wants/dpnetbackd.service ] ||
  fail "dpkg did not enable dpnetbackd.service"
[ -d /run/dpnetback ] || fail "the tmpfiles entry did not make /run/dpnetback"
! pgrep -x dpnetbackd >/dev/null || fail "the installation started dpnetbackd"
grep -q '^ExecStart=/usr/sbin/dpnetbackd --foreground --config /etc/dpnetback/dpnetback.toml ' "$unit" ||
  fail "the unit's ExecStart: $(grep '^ExecStart=' "$unit")"
log "installed $(dpkg-query -W -f '${Package} ${Version}' dpnetback) in $((SECONDS - t_dpkg)) s; unit $unit"
sed 's/^/    dpkg| /' "$DPNB_DIR/dpkg-steps.log"

# 2. Configure (as an operator would: the installed file, overrides in /etc/default) and start
# the way the unit does.
cat > /etc/default/dpnetback <<'EOF'
# written by tests/e2e/scenarios/dpnetbackd-package.sh: the Xen lab under emulation
DPNETBACKD_OPTS="hypervisor.kind=xen eal.memory_mb=256 engine.idle_polls=0 engine.poll_sleep_us=2000 log.target=stderr"
EOF
. /etc/default/dpnetback
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
read -ra cmd <<<"${exec_start//\$DPNETBACKD_OPTS/$DPNETBACKD_OPTS}"
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit")
bounding="-all$(for c in $caps; do c=${c#CAP_}; printf ',+%s' "${c,,}"; done)"
grep -q '^NoNewPrivileges=yes' "$unit" || fail "the unit has no NoNewPrivileges=yes"
log "starting: setpriv --bounding-set $bounding --inh-caps -all --no-new-privs ${cmd[*]}"
dpnb_try_launch setpriv --bounding-set "$bounding" --inh-caps -all --no-new-privs "${cmd[@]}" ||
  fail "the installed dpnetbackd did not start (its log above)"

# Its capabilities now: the control thread's sets, every other thread's effective set.
status=/proc/$DPNB_PID/status
cap() { awk -v k="$1:" '$1 == k { print $2 }' "$2"; }
kv cap_eff "$(cap CapEff "$status")"
kv cap_prm "$(cap CapPrm "$status")"
kv cap_bnd "$(cap CapBnd "$status")"
kv nnp "$(cap NoNewPrivs "$status")"
others=0
for t in /proc/"$DPNB_PID"/task/*; do
  [ "${t##*/}" != "$DPNB_PID" ] || continue
  others=$((others | 16#$(cap CapEff "$t/status")))
  [ "$(cap NoNewPrivs "$t/status")" = 1 ] || fail "thread ${t##*/} has no no_new_privs"
done
kv cap_others "$(printf '%016x' "$others")"
(((16#$(cap CapEff "$status") | others) & ~16#$(cap CapBnd "$status"))) &&
  fail "a thread holds a capability outside the unit's bounding set"
grep -a 'capabilities: kept' "$DPNB_LOG" | tail -n 1 | sed 's/^/    dpnetbackd| /'
[ "$(cap NoNewPrivs "$status")" = 1 ] || fail "the daemon has no no_new_privs"

# 3. A guest on the installed hotplug script.
guest_create e2e-pkg dpnetbackd-guest "vif = [ 'mac=00:16:3e:e2:e0:31,script=vif-dpnetback' ]"
D=$E2E_DOMID
GCMD_N[$D]=0
watch_guest "$D"
handshake "$D"
vif_known "$D" || fail "dpnetbackd does not list guest $D's vif"
gcmd "$D" 120 "up 198.18.0.2/24"
ping_both "$D" 198.18.0.2 ""
xfer_tx "$D" "$SMALL" 5001 ""
xfer_rx "$D" 198.18.0.2 "$SMALL" 5002 ""

# 4. Away: the guest (vif-dpnetback offline), the daemon, the package.
timeout 120 xl destroy "$D" || fail "xl destroy $D"
dpnb_stop
t_dpkg=$SECONDS
dpkg --purge dpnetback > "$DPNB_DIR/dpkg-purge.log" 2>&1 ||
  fail "dpkg --purge: $(tail -n 3 "$DPNB_DIR/dpkg-purge.log" | tr '\n' ' ')"
for f in /usr/sbin/dpnetbackd "$unit" /etc/dpnetback/dpnetback.toml /etc/xen/scripts/vif-dpnetback \
  /etc/systemd/system/multi-user.target.wants/dpnetbackd.service; do
  [ ! -e "$f" ] || fail "dpkg --purge left $f"
done
log "purged in $((SECONDS - t_dpkg)) s"
pass
