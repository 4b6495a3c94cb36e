# dpnetbackd-paper, the guest's half (see dpnetbackd-paper.sh): no kernel netfront; once dom0
# plugged the vif, dpnb-netfront --xen takes it in reuse mode (its RX pool registered over
# the control ring) and receives what dom0 sends until dom0 writes "stop". Reports nf-rc
# (its exit status) and nf-summary (its summary line).
. /e2e/lib-guest.sh
rmmod xen_netfront 2>/dev/null
! grep -q '^xen_netfront ' /proc/modules || fail "xen-netfront is still loaded"
wait_key mac 60
mac=$REPLY
put no-netfront 1
wait_key vif-attached 300
dpnb-netfront --xen --mac "$mac" --rx-mode reuse --connect-timeout 120 --duration 1800 \
  > /tmp/nf.txt 2>&1 &
nf=$!
wait_key stop 1800
kill -INT "$nf"
wait "$nf"
rc=$?
sed 's/^/nf| /' /tmp/nf.txt
put nf-summary "$(tail -n 1 /tmp/nf.txt | cut -c1-400)"
put nf-rc "$rc"
