# kernel-netback, the guest's half (see kernel-netback.sh): eth0 is xen-netfront.
. /e2e/lib-guest.sh
net_up eth0 198.18.0.2/24
put net-up 1
ping -c 3 -W 5 198.18.0.1 > /tmp/ping.txt 2>&1
put ping "$(grep -c 'bytes from' /tmp/ping.txt)"

wait_key xfer-mib 120
dd if=/dev/urandom of=/tmp/tx.bin bs=1048576 count="$REPLY" 2>/dev/null || fail "dd"
put tx-sum "$(sha256sum < /tmp/tx.bin | cut -d' ' -f1)"
wait_key go-tx 300
t0=$(uptime_s)
nc 198.18.0.1 5001 < /tmp/tx.bin || fail "nc to dom0"
t1=$(uptime_s)
put tx-secs "$(elapsed "$t0" "$t1")"
rm -f /tmp/tx.bin
say "sent to dom0 in $(elapsed "$t0" "$t1") s"

wait_key go-rx 300
mkfifo /tmp/hold
nc -l -p 5002 < /tmp/hold > /tmp/rx.bin &
listener=$!
exec 7> /tmp/hold
wait_cmd 30 "listener on 5002" tcp_listening 5002
put rx-ready 1
wait "$listener" || fail "nc listener"
exec 7>&-
put rx-sum "$(sha256sum < /tmp/rx.bin | cut -d' ' -f1)"
put rx-bytes "$(stat -c %s /tmp/rx.bin)"
say "received $(stat -c %s /tmp/rx.bin) bytes from dom0"
