# dpnetbackd-local: two unmodified Linux xen-netfront guests on one dpnetbackd port (shared
# steering, copy mode) reach each other through the daemon's guest-to-guest delivery
# (docs/datapath.md, "Local delivery"), never through the wire:
#   1. each pings the other;
#   2. a file each way (A to B, then B to A), checked by size and sha256;
#   3. over 1 and 2, dom0's capture on the tap (lab/count-frames.py) sees no unicast frame
#      between the two guests' MACs, and the daemon counts them as local (local_tx_packets at
#      the sender, local_rx_packets at the receiver);
#   4. A takes B's MAC as its own address and sends pings to B's MAC and ARP broadcasts: the
#      daemon drops them (A's tx_drop_spoofed), dom0's capture sees none of them, B gets
#      nothing while A has its MAC (B's local_rx_packets does not move); with its own
#      address back, A's pings to B are answered again.
# In README's test command (issue 15 asks it there): about 3.5 minutes of the dpnb group's
# boot with E2E_XFER_MIB=4.
#
# Keys: a_*/b_* (handshake, ping_* to dom0), ping_ab, ping_ba, ab_*/ba_* (as metrics()),
# wire_between, a_local_tx, b_local_rx, b_local_tx, a_local_rx, spoof_drops, spoof_wire,
# spoof_b_local_rx, ping_ab_after.
#
# e2e-group: dpnb
# e2e-timeout: 1200
# e2e-project-bins: dpnetbackd dpnetbackctl
. "$E2E_ROOT/lab/lib-dpnb.sh"
BYTES=$((${E2E_XFER_MIB:-16} * 1048576))
MAC_A=00:16:3e:e2:e0:31
MAC_B=00:16:3e:e2:e0:32
SPOOFS=10

dpnb_config shared 1 "[vifs]" 'serve = "all"'
dpnb_start
kv steering shared

dpnb_guest e2e-local-a $MAC_A
A=$E2E_DOMID
dpnb_guest e2e-local-b $MAC_B
B=$E2E_DOMID
declare -A IP=([$A]=198.18.0.4 [$B]=198.18.0.5) P=([$A]=a_ [$B]=b_)
for d in $A $B; do
  watch_guest "$d"
  handshake "$d" "${P[$d]}"
done
for d in $A $B; do
  watch_guest "$d"
  gcmd "$d" 120 "up ${IP[$d]}/24"
  ping_both "$d" "${IP[$d]}" "${P[$d]}"
done

# dom0's capture: what the daemon sends out on the tap from here on.
python3 "$E2E_ROOT/lab/count-frames.py" "$DPNB_IFACE" $MAC_A $MAC_B "${IP[$A]}" \
  > "$DPNB_DIR/capture.txt" 2>&1 &
CAP=$!
capture_stop() {
  kill -TERM "$CAP" 2>/dev/null
  wait_pid 30 "the capture to stop" "$CAP"
  REPLY=$(cat "$DPNB_DIR/capture.txt")
  log "capture: $REPLY"
}

# 1. Pings between the guests.
ping_g2g "$A" "${IP[$A]}" "$B" "${IP[$B]}"

# 2. A file each way.
xfer_g2g "$A" "$B" "${IP[$B]}" 7001 ab
xfer_g2g "$B" "$A" "${IP[$A]}" 7002 ba

# 3. None of it on the wire; all of it counted as local.
capture_stop
read -r _ between _ _ <<<"$REPLY"
kv wire_between "$between"
[ "$between" = 0 ] || fail "dom0 saw $between frames between the guests on the tap"
declare -A LTX LRX
for d in $A $B; do
  vif_field "$d" .counters.local_tx_packets
  LTX[$d]=$REPLY
  vif_field "$d" .counters.local_rx_packets
  LRX[$d]=$REPLY
done
kv a_local_tx "${LTX[$A]}"
kv a_local_rx "${LRX[$A]}"
kv b_local_tx "${LTX[$B]}"
kv b_local_rx "${LRX[$B]}"
min=$((BYTES / 65536)) # far fewer frames than this would mean the data went elsewhere
for d in $A $B; do
  [ "${LTX[$d]:-0}" -ge "$min" ] && [ "${LRX[$d]:-0}" -ge "$min" ] ||
    fail "guest $d: local_tx_packets ${LTX[$d]}, local_rx_packets ${LRX[$d]}: the transfers were not delivered locally"
done

# 4. A with B's MAC.
python3 "$E2E_ROOT/lab/count-frames.py" "$DPNB_IFACE" $MAC_A $MAC_B "${IP[$A]}" \
  > "$DPNB_DIR/capture.txt" 2>&1 &
CAP=$!
vif_field "$A" .counters.tx_drop_spoofed
d0=$REPLY
watch_guest "$A"
# A takes B's MAC first (one probe each way), and B's count starts only then: a frame A sent
# with its own MAC just before (a late TCP ACK, an ARP refresh) may still reach B, rightly.
gcmd "$A" 300 "spoof $MAC_B ${IP[$B]} $MAC_B 1"
sleep 1
vif_field "$B" .counters.local_rx_packets
r0=$REPLY
gcmd "$A" 300 "spoof $MAC_B ${IP[$B]} $MAC_B $SPOOFS"
sleep 2
# While A has B's MAC, everything it sends has a foreign source: B gets nothing of it.
vif_field "$B" .counters.local_rx_packets
kv spoof_b_local_rx $((REPLY - r0))
[ "$REPLY" = "$r0" ] || fail "guest B got $((REPLY - r0)) frames from its port while A spoofed its MAC"
capture_stop
read -r _ _ _ spoofed <<<"$REPLY"
vif_field "$A" .counters.tx_drop_spoofed
kv spoof_drops $((REPLY - d0))
kv spoof_wire "$spoofed"
[ $((REPLY - d0)) -ge "$SPOOFS" ] || fail "the daemon dropped $((REPLY - d0)) spoofed frames of guest A, expected $SPOOFS or more"
[ "$spoofed" = 0 ] || fail "dom0 saw $spoofed frames of guest A with guest B's MAC"
gcmd "$A" 120 unspoof
gcmd "$A" 120 "ping ${IP[$B]} 3"
kv ping_ab_after "$REPLY"
[ "$REPLY" -ge 1 ] 2>/dev/null || fail "guest A's own traffic to B does not flow after the spoofing"

ctl show "vif$A.0" | sed 's/^/    | /'
dpnb_stop
dpnb_keep_log
pass
