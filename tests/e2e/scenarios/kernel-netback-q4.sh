# kernel-netback-q4: the reference for dpnetbackd-basic's four-queue guest (its q4_ keys):
# kernel-netback.sh with a four-vCPU guest and E2E_XFER_MIB / 4 each way, as
# dpnetbackd-basic's second guest. Linux's netback offers as many queues as dom0 has vCPUs
# (multi-queue-max-queues: 2 in the lab), so its guest runs two queues where dpnetbackd
# serves four (`q4_queues` says how many). Run it by name beside dpnetbackd-basic:
# `bench/lab.sh kernel-netback kernel-netback-q4 dpnetbackd-basic`, or run.sh, whose ratio
# line then carries the four-queue figures.
#
# Keys: kernel-netback's, prefixed q4_.
#
# e2e-group: base
# e2e-timeout: 1200
# e2e-default: no
MIB=${E2E_XFER_MIB:-16}
KNB_MIB=$((MIB / 4 > 0 ? MIB / 4 : 1))
KNB_PREFIX=q4_
KNB_VCPUS=4
# Four vCPUs under emulation on two host CPUs boot slowly (dpnetbackd-basic allows the same).
KNB_HANDSHAKE_S=600
. "$E2E_ROOT/scenarios/kernel-netback.sh"
