# dpnetbackd-reuse, the guest's half (see dpnetbackd-reuse.sh): no kernel netfront; once
# dom0 plugged the vif, dpnb-netfront --xen takes it in reuse mode and sends its frames to
# dom0's echo. Reports nf-rc (its exit status) and nf-summary (its summary line).
. /e2e/lib-guest.sh
rmmod xen_netfront 2>/dev/null
! grep -q '^xen_netfront ' /proc/modules || fail "xen-netfront is still loaded"
for m in /dev/xen/gntalloc /dev/xen/evtchn /dev/xen/xenbus; do
  [ -e "$m" ] || fail "no $m"
done
wait_key frames 120
frames=$REPLY
wait_key dst-mac 60
dst=$REPLY
wait_key mac 60
mac=$REPLY
put no-netfront 1
wait_key vif-attached 300
dpnb-netfront --xen --mac "$mac" --rx-mode reuse --send "$frames" --size 1000 \
  --dst-mac "$dst" --receive $((frames * 9 / 10)) --connect-timeout 120 --duration 20 \
  > /tmp/nf.txt 2>&1
rc=$?
sed 's/^/nf| /' /tmp/nf.txt
put nf-summary "$(tail -n 1 /tmp/nf.txt | cut -c1-400)"
put nf-rc "$rc"
