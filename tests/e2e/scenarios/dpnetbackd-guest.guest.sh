# The guest of the dpnetbackd scenarios (lab/lib-dpnb.sh): an unmodified Linux xen-netfront
# (eth0, or the first ethN) and a command loop. dom0 writes data/e2e/cmd-N, the guest runs it and answers
# data/e2e/done-N; a command that goes wrong reports data/e2e/error (dom0 stops at once).
#   up ADDR/PREFIX     bring ethN up                           -> ok
#   ping IP N          N pings                                 -> replies
#   gen MIB            /tmp/tx.bin of random bytes             -> its sha256
#   send IP PORT       nc /tmp/tx.bin to IP:PORT               -> seconds
#   recv PORT          listen (ready-N once listening)         -> "bytes sha256"
#   stats              eth0's counters                         -> "rx_bytes rx_packets tx_bytes tx_packets"
#   queues             netfront's queues                       -> "rx tx"
#   irqs               netfront's RX interrupts per queue      -> "0:N,1:N,..."
#   reload-netfront    unbind the vifs, rmmod xen_netfront, insmod it again -> ok
#                      (the frontend closes and connects anew with new rings)
#   spoof MAC IP PEER_MAC N   with MAC as eth's address: N pings to IP sent to PEER_MAC
#                      (a static ARP entry) and N ARP requests for IP (broadcast) -> ok
#   unspoof            eth's own address back                  -> ok
#   mtu N              the interface's MTU                     -> ok
#   pingdf IP N SIZE   N pings of SIZE bytes, never fragmented -> replies
#                      (iputils ping -M do, in the initramfs when a scenario lists it)
. /e2e/lib-guest.sh
# The netfront's interface: eth0, or whatever name a re-attached vif got.
ifname() { ls /sys/class/net | grep '^eth' | head -n 1; }
has_if() { [ -n "$(ifname)" ]; }
no_if() { [ -z "$(ifname)" ]; }
i=0
while :; do
  wait_key "cmd-$i" 1800
  set -- $REPLY
  op=$1
  shift
  case $op in
    up)
      wait_cmd 60 "a netfront interface" has_if
      net_up "$(ifname)" "$1"
      r=ok
      ;;
    ping)
      ping -c "$2" -W 5 "$1" > /tmp/ping.txt 2>&1
      r=$(grep -c 'bytes from' /tmp/ping.txt)
      ;;
    gen)
      dd if=/dev/urandom of=/tmp/tx.bin bs=1048576 count="$1" 2>/dev/null || fail "dd"
      r=$(sha256sum < /tmp/tx.bin | cut -d' ' -f1)
      ;;
    send)
      t0=$(uptime_s)
      nc "$1" "$2" < /tmp/tx.bin || fail "nc to $1:$2"
      t1=$(uptime_s)
      r=$(elapsed "$t0" "$t1")
      say "sent $(stat -c %s /tmp/tx.bin) bytes to $1:$2 in $r s"
      ;;
    recv)
      rm -f /tmp/hold /tmp/rx.bin
      mkfifo /tmp/hold
      nc -l -p "$1" < /tmp/hold > /tmp/rx.bin &
      listener=$!
      exec 7> /tmp/hold
      wait_cmd 30 "listener on $1" tcp_listening "$1"
      put "ready-$i" 1
      wait "$listener" || fail "nc listener on $1"
      exec 7>&-
      r="$(stat -c %s /tmp/rx.bin) $(sha256sum < /tmp/rx.bin | cut -d' ' -f1)"
      say "received $r on $1"
      rm -f /tmp/rx.bin
      ;;
    stats)
      s=/sys/class/net/$(ifname)/statistics
      r="$(cat $s/rx_bytes) $(cat $s/rx_packets) $(cat $s/tx_bytes) $(cat $s/tx_packets)"
      ;;
    queues)
      q=/sys/class/net/$(ifname)/queues
      r="$(ls $q | grep -c rx-) $(ls $q | grep -c tx-)"
      ;;
    irqs)
      # netfront's RX interrupts per queue, "0:N,1:N,...": its IRQs are named vif<devid>-q<n>
      # (one per queue) or vif<devid>-q<n>-rx and -tx (split event channels).
      r=$(awk '$NF ~ /-q[0-9]+(-rx)?$/ {
          s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i
          q = $NF; sub(/.*-q/, "", q); sub(/-rx$/, "", q)
          printf "%s%s:%s", sep, q, s; sep = ","
        }' /proc/interrupts)
      ;;
    reload-netfront)
      m=$(grep '/xen-netfront\.ko$' /modlist) || fail "xen-netfront is not in /modlist"
      # xenbus holds the driver's module while it is bound to a device (xenbus_dev_probe's
      # try_module_get, Linux 5.x on), so the vifs are unbound first: netfront's remove
      # closes the frontend, as a module unload did before.
      for v in /sys/bus/xen/drivers/vif/vif-*; do
        [ -e "$v" ] && echo "${v##*/}" > /sys/bus/xen/drivers/vif/unbind
      done
      rmmod xen_netfront 2>/tmp/rmmod.err ||
        fail "rmmod xen_netfront: $(cat /tmp/rmmod.err) (refcnt $(cat /sys/module/xen_netfront/refcnt 2>/dev/null))"
      wait_cmd 60 "the netfront interface to go" no_if
      insmod "$m" || fail "insmod $m"
      r=ok
      ;;
    spoof)
      dev=$(ifname)
      [ -e /tmp/own-mac ] || cat "/sys/class/net/$dev/address" > /tmp/own-mac
      ip link set dev "$dev" down && ip link set dev "$dev" address "$1" && ip link set dev "$dev" up ||
        fail "setting $dev's address to $1"
      arp -i "$dev" -s "$2" "$3" || fail "arp -s $2 $3"
      ping -c "$4" -W 1 "$2" > /dev/null 2>&1
      arping -c "$4" -w "$4" -I "$dev" "$2" > /dev/null 2>&1
      arp -i "$dev" -d "$2" 2>/dev/null
      r=ok
      ;;
    unspoof)
      dev=$(ifname)
      ip link set dev "$dev" down && ip link set dev "$dev" address "$(cat /tmp/own-mac)" &&
        ip link set dev "$dev" up || fail "setting $dev's address back"
      rm -f /tmp/own-mac
      r=ok
      ;;
    mtu)
      ip link set "$(ifname)" mtu "$1" || fail "ip link set mtu $1"
      r=ok
      ;;
    pingdf)
      # By path: busybox's shell runs its own applets before PATH (FEATURE_SH_STANDALONE),
      # and busybox's ping has no -M.
      /bin/ping -n -M do -s "$3" -c "$2" -W 5 "$1" > /tmp/ping.txt 2>&1
      r=$(grep -c 'bytes from' /tmp/ping.txt)
      say "pingdf: $(tail -n 2 /tmp/ping.txt | tr '\n' ' ')"
      ;;
    *)
      fail "unknown command '$op'"
      ;;
  esac
  put "done-$i" "$r"
  i=$((i + 1))
done
