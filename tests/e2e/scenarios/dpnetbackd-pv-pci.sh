# dpnetbackd-pv-pci: a real PCI NIC in a PV dom0 is refused before anything touches it
# (docs/operations.md, "DMA addresses and deployments"). In a PV domain /proc/self/pagemap
# gives pseudo-physical frames, not the machine addresses a device needs, so a DPDK PMD on a
# PCI NIC would make it DMA to the wrong pages (DPDK's own rings included). QEMU gives this
# boot's dom0 an emulated e1000 (run.sh: `e2e-dom0-nic`), which the scenario binds to
# uio_pci_generic as an operator would for DPDK, then starts dpnetbackd with a port on it
# (eal.no_pci = false, the NIC in pci_allow). The daemon must:
#   * read dom0's type from /sys/hypervisor/guest_type (PV) and stop before EAL starts, with
#     exit status 1 and the error that says why and which deployments work;
#   * leave the device as it found it: its PCI command register unchanged (bus mastering
#     off: no DMA was enabled), its uio device not held open, no DPDK runtime folder made.
# The shared boot is the package's (a boot costs minutes under emulation; this scenario
# needs seconds, and nothing else in that group minds an idle NIC).
#
# Keys: guest_type, nic (BDF_vendor:device), driver (after binding), pci_command_before/
# _after (hex), exit (the daemon's status), refused_before_eal (1 once every check passed).
#
# e2e-group: package
# e2e-timeout: 300
# e2e-dom0-nic: e1000
# e2e-project-bins: dpnetbackd dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"

guest_type=$(cat /sys/hypervisor/guest_type 2>/dev/null || echo unknown)
kv guest_type "$guest_type"
[ "$guest_type" = PV ] || fail "dom0 is $guest_type, not PV: this scenario checks the PV refusal"

# The emulated NIC: the one Ethernet-class device (class 0x0200xx) from Intel.
bdf=""
for d in /sys/bus/pci/devices/*; do
  case "$(cat "$d/class")" in 0x0200*) ;; *) continue ;; esac
  [ "$(cat "$d/vendor")" = 0x8086 ] || continue
  bdf=$(basename "$d")
  break
done
[ -n "$bdf" ] || fail "no emulated Intel NIC among dom0's PCI devices (run.sh adds it for e2e-dom0-nic)"
dev=/sys/bus/pci/devices/$bdf
kv nic "${bdf}_$(cut -c3- "$dev/vendor"):$(cut -c3- "$dev/device")"

# Bound the way DPDK's guide binds a NIC without an IOMMU (dpdk-devbind.py does the same
# writes): driver_override, then a probe.
modprobe uio_pci_generic || fail "modprobe uio_pci_generic failed"
if [ -e "$dev/driver" ]; then echo "$bdf" > "$dev/driver/unbind"; fi
echo uio_pci_generic > "$dev/driver_override"
echo "$bdf" > /sys/bus/pci/drivers_probe 2>/dev/null || true
driver=$(basename "$(readlink "$dev/driver" 2>/dev/null)" 2>/dev/null)
kv driver "${driver:-none}"
[ "$driver" = uio_pci_generic ] || fail "$bdf did not bind to uio_pci_generic (dmesg: $(dmesg | grep -i uio | tail -n 2))"
uio=$(ls "$dev/uio" 2>/dev/null | head -n 1)
[ -n "$uio" ] || fail "$bdf has no uio device"

# The PCI command register (offset 4): bit 2 is bus mastering, what lets the device DMA.
pci_command() { od -An -tx2 -j4 -N2 "$dev/config" | tr -d ' '; }
before=$(pci_command)
kv pci_command_before "$before"

DPNB_PORT=pci DPNB_PCI=$bdf
DPNB_EAL_EXTRA="no_pci = false
pci_allow = [\"$bdf\"]"
dpnb_config shared 1
rm -rf /var/run/dpdk/e2e
echo "==== dpnetbackd start T+$(uptime_s) (expected to refuse)" >> "$DPNB_LOG"
status=0
timeout 120 "$DPNB" -f --config "$DPNB_CONF" >> "$DPNB_LOG" 2>&1 || status=$?
kv exit "$status"
[ "$status" != 124 ] || fail "dpnetbackd still ran after 120 s: it did not refuse the PCI NIC"
[ "$status" = 1 ] || fail "dpnetbackd exited with status $status, not 1"
msg=$(grep -m1 'eal.no_pci = false in a PV domain: EAL would probe PCI devices, refused:' "$DPNB_LOG") ||
  fail "the daemon's error does not say that a PCI NIC in a PV domain is refused"
log "refused: $msg"
grep -q 'pseudo-physical' <<<"$msg" || fail "the refusal does not say why (pseudo-physical frames)"
grep -q 'What works: a PVH or HVM driver domain' <<<"$msg" || fail "the refusal does not say which deployments work"
! grep -q 'EAL: ' "$DPNB_LOG" || fail "EAL started (its log above): it may have probed the NIC"

after=$(pci_command)
kv pci_command_after "$after"
[ "$after" = "$before" ] || fail "the NIC's PCI command register changed: $before -> $after"
((0x$after & 4)) && fail "bus mastering is on: the NIC may DMA"
! fuser "/dev/$uio" >/dev/null 2>&1 || fail "/dev/$uio is held open"
[ ! -e /var/run/dpdk/e2e ] || fail "a DPDK runtime folder was made: EAL started"
kv refused_before_eal 1

# Leave dom0 as the next scenario expects it: the NIC unbound, the module unloaded.
echo "$bdf" > "$dev/driver/unbind" 2>/dev/null || true
echo > "$dev/driver_override" 2>/dev/null || true
modprobe -r uio_pci_generic 2>/dev/null || true
pass
