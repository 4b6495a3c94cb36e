# dpnetbackd-two-guests: two Linux xen-netfront guests on one dpnetbackd port (mac_flow:
# a NIC RX queue each, else shared with the reason in steering_fallback). The daemon lists
# two vifs with the toolstack's two MACs (distinct) and, with mac_flow, two distinct NIC
# queues; both guests ping dom0; then both transfer at once, each way (guest to dom0
# together, then dom0 to both together), each stream checked by size and sha256. Isolation:
# each guest's netfront counts every frame the backend puts on its RX ring
# (/sys/class/net/eth0/statistics, before any filtering by the guest's stack), so over the
# concurrent transfers a guest that also got the other's frames would count about twice
# its own traffic; each must stay under 1.3 times what it was sent itself (payload plus
# headers and its ACKs); the daemon's per-vif RX bytes are recorded next to it.
#
# Keys: steering, a_*/b_* (handshake, rx_queue, mac, ping_*, tx_*/rx_* as kernel-netback,
# rx_seen = the guest's RX bytes over the transfers, rx_ratio = rx_seen / bytes sent to it).
#
# e2e-group: dpnb
# e2e-timeout: 1200
# e2e-project-bins: dpnetbackd dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"
MIB=${E2E_XFER_MIB:-16}
HALF=$((MIB / 2 > 0 ? MIB / 2 : 1))
BYTES=$((HALF * 1048576))

dpnb_start_steered "[vifs]" 'serve = "all"'

dpnb_guest e2e-dpnb-a 00:16:3e:e2:e0:21
A=$E2E_DOMID
dpnb_guest e2e-dpnb-b 00:16:3e:e2:e0:22
B=$E2E_DOMID
declare -A IP=([$A]=198.18.0.2 [$B]=198.18.0.3) P=([$A]=a_ [$B]=b_) MAC=([$A]=00:16:3e:e2:e0:21 [$B]=00:16:3e:e2:e0:22)
for d in $A $B; do
  watch_guest "$d"
  handshake "$d" "${P[$d]}"
done
queues=()
for d in $A $B; do
  vif_json "$d"
  mac=$(jq -r .mac <<<"$REPLY")
  q=$(jq -r '.data_plane.rx_queue // "shared"' <<<"$REPLY")
  kv "${P[$d]}mac" "$mac"
  kv "${P[$d]}rx_queue" "$q"
  [ "$mac" = "${MAC[$d]}" ] || fail "vif$d.0 has MAC $mac, the toolstack gave ${MAC[$d]}"
  queues+=("$q")
done
if [ "$STEERING" = mac_flow ]; then
  [ "${queues[0]}" != shared ] && [ "${queues[1]}" != shared ] && [ "${queues[0]}" != "${queues[1]}" ] ||
    fail "mac_flow: the guests' NIC queues are ${queues[*]}, not two distinct queues"
fi
for d in $A $B; do
  watch_guest "$d"
  gcmd "$d" 120 "up ${IP[$d]}/24"
  ping_both "$d" "${IP[$d]}" "${P[$d]}"
done

# Counters before the transfers: the guest's netfront and the daemon's vif.
declare -A G0 V0
for d in $A $B; do
  gcmd "$d" 60 stats
  G0[$d]=${REPLY%% *}
  vif_field "$d" .rx_bytes
  V0[$d]=$REPLY
done

# 1. Both guests send to dom0 at once.
declare -A SUM LST N HOLD
for d in $A $B; do
  guest_gen "$d" "$HALF"
  SUM[$d]=$REPLY
  mkfifo "$DPNB_DIR/hold-$d"
  timeout 900 busybox nc -l -p "50$d" < "$DPNB_DIR/hold-$d" > "$DPNB_DIR/tx-$d.bin" &
  LST[$d]=$!
  # The listener's shell opens the fifo for reading, which blocks until a writer opens it:
  # hold it open now (it keeps nc's stdin from ending), then wait for the socket.
  exec {fd}> "$DPNB_DIR/hold-$d"
  HOLD[$d]=$fd
  wait_for 30 "listener on 50$d" tcp_listening "50$d"
done
# One window over both transfers (lib-dom0.sh): it ends when both of dom0's receivers are
# done, and each guest's keys carry dom0's CPU for the two together against its own bytes.
window_begin
for d in $A $B; do
  gcmd_send "$d" "send $DOM0_IP 50$d"
  N[$d]=$REPLY
done
for d in $A $B; do
  wait "${LST[$d]}" || fail "dom0's receiver (nc) for guest $d failed"
done
window_end
for d in $A $B; do
  gcmd_wait "$d" "${N[$d]}" 900
  secs=$REPLY
  got=$(stat -c %s "$DPNB_DIR/tx-$d.bin")
  metrics "${P[$d]}tx" "$got" "$secs" "$WINDOW_TICKS" "$WINDOW_CTXT"
  [ "$got" -eq "$BYTES" ] || fail "guest $d to dom0: $got bytes of $BYTES"
  [ "$(sha256sum < "$DPNB_DIR/tx-$d.bin" | cut -d' ' -f1)" = "${SUM[$d]}" ] ||
    fail "guest $d to dom0: data differs (sha256)"
done
for d in $A $B; do fd=${HOLD[$d]}; exec {fd}>&-; done

# 2. dom0 sends to both guests at once.
declare -A SND
for d in $A $B; do
  head -c "$BYTES" /dev/urandom > "$DPNB_DIR/rx-$d.bin"
  SUM[$d]=$(sha256sum < "$DPNB_DIR/rx-$d.bin" | cut -d' ' -f1)
  gcmd_send "$d" "recv 60$d"
  N[$d]=$REPLY
done
for d in $A $B; do guest_wait "$d" "ready-${N[$d]}" 120; done
window_begin
t0=$(now)
for d in $A $B; do
  timeout 900 busybox nc "${IP[$d]}" "60$d" < "$DPNB_DIR/rx-$d.bin" &
  SND[$d]=$!
done
for d in $A $B; do
  wait "${SND[$d]}" || fail "dom0's sender (nc) to guest $d failed"
done
t1=$(now)
window_end
for d in $A $B; do
  gcmd_wait "$d" "${N[$d]}" 300
  read -r got gsum <<<"$REPLY"
  metrics "${P[$d]}rx" "$got" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
    "$WINDOW_TICKS" "$WINDOW_CTXT"
  [ "$got" -eq "$BYTES" ] || fail "dom0 to guest $d: $got bytes of $BYTES"
  [ "$gsum" = "${SUM[$d]}" ] || fail "dom0 to guest $d: data differs (sha256)"
done

# 3. Isolation.
for d in $A $B; do
  gcmd "$d" 60 stats
  seen=$((${REPLY%% *} - G0[$d]))
  vif_field "$d" .rx_bytes
  vseen=$((REPLY - V0[$d]))
  ratio=$(awk -v s="$seen" -v b="$BYTES" 'BEGIN { printf "%.3f", s / b }')
  kv "${P[$d]}rx_seen" "$seen"
  kv "${P[$d]}rx_ratio" "$ratio"
  kv "${P[$d]}daemon_rx_bytes" "$vseen"
  awk -v r="$ratio" 'BEGIN { exit !(r < 1.3) }' ||
    fail "guest $d's netfront got $seen bytes for $BYTES sent to it: it sees the other guest's traffic"
done

ctl list | sed 's/^/    | /'
dpnb_stop
dpnb_keep_log
pass
