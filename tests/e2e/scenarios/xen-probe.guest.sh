# xen-probe, the guest's half (see xen-probe.sh): dpnb-xen-probe share, twice.
. /e2e/lib-guest.sh
for m in /dev/xen/gntalloc /dev/xen/evtchn /dev/xen/xenbus; do
  [ -e "$m" ] || fail "no $m"
done
dpnb-xen-probe share --peer 0 --pages 2 --timeout-ms 300000 > /tmp/rw.log 2>&1 &
rw=$!
dpnb-xen-probe share --peer 0 --pages 1 --readonly --timeout-ms 300000 > /tmp/ro.log 2>&1 &
ro=$!

# ref_of LOG PAGE / port_of LOG: what share printed.
ref_of() { sed -n "s/^ok   page $2: ref \([0-9]*\)$/\1/p" "$1"; }
port_of() { sed -n 's/^ok   unbound port \([0-9]*\) .*/\1/p' "$1"; }
wait_cmd 120 "share (writable) to print its port" grep -q 'unbound port' /tmp/rw.log
wait_cmd 120 "share (read-only) to print its port" grep -q 'unbound port' /tmp/ro.log
put rw-refs "$(ref_of /tmp/rw.log 0) $(ref_of /tmp/rw.log 1)"
put rw-port "$(port_of /tmp/rw.log)"
put ro-ref "$(ref_of /tmp/ro.log 0)"
put ro-port "$(port_of /tmp/ro.log)"
say "shared: $(cat /tmp/rw.log /tmp/ro.log | tr '\n' ';')"

wait "$rw"
rw_rc=$?
wait "$ro"
ro_rc=$?
sed 's/^/rw| /' /tmp/rw.log
sed 's/^/ro| /' /tmp/ro.log
# What dom0 wrote: map --rw put "dpnb-xen-probe" at 0 of page 0, copy --to-guest put
# abc...z at 64 of page 1; the read-only page is as we left it.
v=ok
[ $rw_rc -eq 0 ] || v="share_rw_exit_$rw_rc"
[ $ro_rc -eq 0 ] || v="share_ro_exit_$ro_rc"
grep -q '^page 0 at 0: dpnb-xen-probe' /tmp/rw.log || v=page0_not_written_by_map
grep -q '^page 1 at 64: abcdefghijklmnopqrstuvwxyzabcdef' /tmp/rw.log || v=page1_not_written_by_copy
grep -q '^page 0 at 0: dpnb page 0' /tmp/ro.log || v=readonly_page_changed
grep -q 'event on port .*answered' /tmp/rw.log || v=no_event_rw
put verdict "$v"
say "verdict $v"
