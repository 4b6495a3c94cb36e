# kernel-netback: the reference. A PV guest with Linux xen-netfront served by dom0's
# in-kernel xen-netback on a bridge: the xenstore handshake reaches Connected on both
# sides, ping works both ways, and a TCP transfer of E2E_XFER_MIB MiB (16 by default) each
# way arrives intact (sha256 at both ends), with its throughput and dom0's busy CPU time
# per byte. The numbers mean nothing on their own under software emulation; the
# dpnetbackd scenarios are compared with them.
#
# Keys: backend_state frontend_state hotplug queues split_evtchn rx_copy (the handshake),
# ping_d2g ping_g2d (replies of 3), {tx,rx}_bytes {tx,rx}_secs {tx,rx}_mbit
# {tx,rx}_dom0_cpu_s {tx,rx}_dom0_ns_per_byte {tx,rx}_dom0_ctxt_per_mib and the busy time's
# breakdown {tx,rx}_dom0_{user,sys,softirq}_share, {tx,rx}_netback_cpu_share (metrics in
# lib-dom0.sh); tx = guest to dom0 (the guest's TX ring).
#
# kernel-netback-q4 runs this script with a four-vCPU guest (KNB_VCPUS, KNB_PREFIX,
# KNB_MIB, KNB_HANDSHAKE_S set before sourcing it).
#
# e2e-group: base
# e2e-timeout: 900
MIB=${KNB_MIB:-${E2E_XFER_MIB:-16}}
P=${KNB_PREFIX:-}
DOM0_IP=198.18.0.1
GUEST_IP=198.18.0.2
BYTES=$((MIB * 1048576))


check "modprobe xen-netback" modprobe xen-netback
check "bridge xenbr0" bridge_up xenbr0 "$DOM0_IP/24"

guest_create e2e-knb kernel-netback \
  "vif = [ 'mac=00:16:3e:e2:e0:01,bridge=xenbr0,script=$E2E_ROOT/lab/vif-bridge-lab' ]" \
  "vcpus = ${KNB_VCPUS:-1}"
D=$E2E_DOMID
watch_guest "$D"
guest_put "$D" xfer-mib "$MIB"

# 1. The xenstore handshake.
BE=/local/domain/0/backend/vif/$D/0
FE=/local/domain/$D/device/vif/0
handshake "$D" "$P" "${KNB_HANDSHAKE_S:-180}"
kv "${P}rx_copy" "$(xenstore-read "$FE/request-rx-copy" 2>/dev/null)"
log "backend: $(xenstore-ls "$BE" 2>/dev/null | tr -s ' \n' ' ')"

# 2. Ping both ways.
guest_wait "$D" net-up 180
busybox ping -c 3 -W 5 "$GUEST_IP" > /run/e2e/ping.txt 2>&1
replies=$(grep -c 'bytes from' /run/e2e/ping.txt)
kv "${P}ping_d2g" "$replies"
guest_wait "$D" ping 120
kv "${P}ping_g2d" "$REPLY"
[ "$replies" -ge 1 ] || fail "no reply to dom0's ping of the guest"
[ "$REPLY" -ge 1 ] 2>/dev/null || fail "no reply to the guest's ping of dom0"

# 3. Guest to dom0 (the guest's TX ring): dom0 listens, the guest sends. busybox nc's
# stdin is held open (a fifo) so that it does not half-close the connection at once.
guest_wait "$D" tx-sum 300
tx_sum=$REPLY
mkfifo /run/e2e/hold-tx
timeout 600 busybox nc -l -p 5001 < /run/e2e/hold-tx > /run/e2e/tx.bin &
listener=$!
exec 7> /run/e2e/hold-tx
wait_for 30 "listener on 5001" tcp_listening 5001
window_begin
guest_put "$D" go-tx 1
wait "$listener" || fail "dom0's receiver (nc) failed"
window_end
exec 7>&-
guest_wait "$D" tx-secs 60
tx_secs=$REPLY
got=$(stat -c %s /run/e2e/tx.bin)
metrics "${P}tx" "$got" "$tx_secs" "$WINDOW_TICKS" "$WINDOW_CTXT"
[ "$got" -eq "$BYTES" ] || fail "dom0 received $got bytes of $BYTES"
[ "$(sha256sum < /run/e2e/tx.bin | cut -d' ' -f1)" = "$tx_sum" ] ||
  fail "guest-to-dom0 data differs (sha256)"
rm -f /run/e2e/tx.bin

# 4. dom0 to guest (the guest's RX ring).
head -c "$BYTES" /dev/urandom > /run/e2e/rx-src.bin
rx_sum=$(sha256sum < /run/e2e/rx-src.bin | cut -d' ' -f1)
guest_put "$D" go-rx 1
guest_wait "$D" rx-ready 120
window_begin
t0=$(now)
timeout 600 busybox nc "$GUEST_IP" 5002 < /run/e2e/rx-src.bin || fail "dom0's sender (nc) failed"
t1=$(now)
window_end
guest_wait "$D" rx-sum 300
guest_rx_sum=$REPLY
guest_wait "$D" rx-bytes 60
metrics "${P}rx" "$REPLY" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "$WINDOW_TICKS" "$WINDOW_CTXT"
[ "$REPLY" -eq "$BYTES" ] || fail "the guest received $REPLY bytes of $BYTES"
[ "$guest_rx_sum" = "$rx_sum" ] || fail "dom0-to-guest data differs (sha256)"
pass
