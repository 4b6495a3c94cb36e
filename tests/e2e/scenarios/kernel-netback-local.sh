# kernel-netback-local: the reference for dpnetbackd-local. Two unmodified Linux
# xen-netfront guests served by dom0's in-kernel xen-netback, their vifs on one Linux bridge
# (what an operator runs today), send each other a file each way (A to B, then B to A),
# checked by size and sha256, with the throughput and dom0's busy CPU time per byte under
# the same keys as dpnetbackd-local's, so bench/lab-local.sh can put the two side by side
# (medians of several boots: timings under QEMU TCG are only meaningful as ratios within
# one boot). By name only (not in README's test command): about 4 minutes of a boot.
#
# Keys: a_*/b_* (handshake), ping_ab, ping_ba, ab_*/ba_* (as metrics()).
#
# e2e-group: dpnb
# e2e-timeout: 1200
# e2e-default: no
# e2e-project-bins: dpnetbackd dpnetbackctl
# The guests run dpnetbackd-guest.guest.sh's command loop, whose dom0 half (gcmd, handshake,
# xfer_g2g) is in lib-dpnb.sh; no daemon is started here.
. "$E2E_ROOT/lab/lib-dpnb.sh"
BRIDGE=xenbr1
MAC_A=00:16:3e:e2:e0:41
MAC_B=00:16:3e:e2:e0:42

check "modprobe xen-netback" modprobe xen-netback
check "bridge $BRIDGE" bridge_up "$BRIDGE" 198.18.2.1/24

# knb_guest NAME MAC: a guest on the bridge, served by netback.
knb_guest() {
  guest_create "$1" dpnetbackd-guest \
    "vif = [ 'mac=$2,bridge=$BRIDGE,script=$E2E_ROOT/lab/vif-bridge-lab' ]"
  GCMD_N[$E2E_DOMID]=0
}
knb_guest e2e-knb-a $MAC_A
A=$E2E_DOMID
knb_guest e2e-knb-b $MAC_B
B=$E2E_DOMID
declare -A IP=([$A]=198.18.2.4 [$B]=198.18.2.5) P=([$A]=a_ [$B]=b_)
for d in $A $B; do
  watch_guest "$d"
  handshake "$d" "${P[$d]}"
  gcmd "$d" 120 "up ${IP[$d]}/24"
done

ping_g2g "$A" "${IP[$A]}" "$B" "${IP[$B]}"

xfer_g2g "$A" "$B" "${IP[$B]}" 7001 ab
xfer_g2g "$B" "$A" "${IP[$A]}" 7002 ba

pass
