# dpnetbackd-move: a guest served by dpnetbackd that moves, as operators move guests every
# day, and a frontend that reconnects on its own. Each step ends with a ping each way and a
# transfer each way checked by sha256, and the domain left behind must be gone for good
# (Xen keeps a dying domain while dom0 still maps or pins its grants, so a grant the daemon
# did not release keeps it in `xl list`), with its vif forgotten by the daemon:
#  1. xl save, then xl restore: the restored guest is a new domain whose netfront connects
#     to a new vif with new rings (the old domain went away with its rings mapped).
#  2. xl migrate to this host (`-s ""` runs the receiver here instead of over ssh): the
#     same, live, with the old domain destroyed by xl after the new one runs. Live migration
#     of a PV guest needs log-dirty mode, which Xen implements with shadow paging; Debian
#     12's Xen 4.17 is built without it (CONFIG_SHADOW_PAGING is not set: xc "Failed to
#     enable logdirty"), and the lab's guests are PV (QEMU TCG has no HAP for PVH/HVM), so
#     there the step is recorded as not testable (migrate=not_testable:...) and skipped.
#  3. netfront reload in the guest (rmmod, insmod): the frontend goes Closing, Closed and
#     Initialising on the same vif; the backend prepares for a reconnect (InitWait, as Linux
#     netback does) and serves the new rings.
# The daemon is stopped with SIGTERM at the end without leaked grants.
#
# Keys: save_secs, restore_secs, restored_domid, migrate (done or not_testable:WHY),
# migrate_secs, migrated_domid, reload_secs,
# and per step ping_*, tx_*/rx_* (kernel-netback's keys, prefixed restore_, migrate_,
# reload_), old_gone_secs_* (the old domain's departure from xl list).
#
# Not in the default run (README's test command): about 6 minutes of save images and
# transfers; run it by name.
# e2e-group: dpnb
# e2e-default: no
# e2e-timeout: 1500
# e2e-project-bins: dpnetbackd dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
SMALL=$((MIB / 4 > 0 ? MIB / 4 : 1))
NAME=e2e-dpnb-move
IP=198.18.0.2


# moved OLD NEW PREFIX: the guest that was domain OLD runs as domain NEW: the old one and
# its vif are gone, the new vif connects, and traffic flows both ways.
moved() {
  local old=$1 new=$2 p=$3 t0=$SECONDS
  wait_for 120 "domain $old to leave xl list (a grant still held keeps it)" not_in_xl_list "$old"
  kv "old_gone_secs_${p%_}" $((SECONDS - t0))
  wait_for 60 "dpnetbackd to forget vif$old.0" vif_unknown "$old"
  # The guest's command loop goes on where it was; its keys live under the new domain.
  GCMD_N[$new]=${GCMD_N[$old]}
  watch_guest "$new"
  handshake "$new" "$p"
  ping_both "$new" "$IP" "$p"
  xfer_tx "$new" "$SMALL" 5201 "$p"
  xfer_rx "$new" "$IP" "$SMALL" 5202 "$p"
}

# The shared queue: the old and the new domain of a migration are both served for a moment.
dpnb_start_steered "[vifs]" 'serve = "all"' 'default_rx_mode = "copy"'

# A small guest: a save image and a second copy during migration must fit the lab.
dpnb_guest "$NAME" 00:16:3e:e2:e0:41 'memory = 128'
D=$E2E_DOMID
watch_guest "$D"
handshake "$D"
gcmd "$D" 120 "up $IP/24"
ping_both "$D" "$IP" first_
xfer_rx "$D" "$IP" "$SMALL" 5200 first_

# 1. Save and restore.
img=/run/e2e/$NAME.save
watch_guest ""
t0=$SECONDS
timeout 300 xl save "$D" "$img" || fail "xl save $D"
kv save_secs $((SECONDS - t0))
t0=$SECONDS
timeout 300 xl restore "$img" || fail "xl restore $img"
kv restore_secs $((SECONDS - t0))
rm -f "$img"
R=$(xl domid "$NAME") || fail "no domain $NAME after xl restore"
kv restored_domid "$R"
[ "$R" != "$D" ] || fail "the restored guest kept domain id $D"
moved "$D" "$R" restore_

# 2. Live migration to this host.
M=$R
xen_config=/boot/xen-$(xl info | sed -n 's/^xen_version *: *\([0-9]*\.[0-9]*\).*/\1/p')-amd64.config
if [ -f "$xen_config" ] && ! grep -q '^CONFIG_SHADOW_PAGING=y' "$xen_config"; then
  kv migrate "not_testable:$(basename "$xen_config"):no_CONFIG_SHADOW_PAGING:no_PV_log-dirty"
  log "live migration skipped: $xen_config has no shadow paging (PV log-dirty)"
else
  watch_guest ""
  t0=$SECONDS
  timeout 600 xl migrate -s "" "$R" "xl migrate-receive" || fail "xl migrate $R"
  kv migrate_secs $((SECONDS - t0))
  M=$(xl domid "$NAME") || fail "no domain $NAME after xl migrate"
  kv migrated_domid "$M"
  [ "$M" != "$R" ] || fail "the migrated guest kept domain id $R"
  kv migrate done
  moved "$R" "$M" migrate_
fi

# 3. The frontend reconnects on its own.
t0=$SECONDS
gcmd "$M" 180 reload-netfront
handshake "$M" reload_
kv reload_secs $((SECONDS - t0))
gcmd "$M" 120 "up $IP/24"
ping_both "$M" "$IP" reload_
xfer_tx "$M" "$SMALL" 5203 reload_
xfer_rx "$M" "$IP" "$SMALL" 5204 reload_

ctl list | sed 's/^/    | /'
dpnb_stop
dpnb_keep_log
pass
