# lib-guest.sh: helpers for the guest half of a scenario (busybox sh in a lab domU;
# sourced). A guest reports to dom0 through xenstore under its own
# /local/domain/<id>/data/e2e/ (relative paths: xenstored resolves them against the
# caller's home) and logs to its console (hvc0), which xenconsoled keeps in dom0.

say() { echo "E2EG T+$(cut -d' ' -f1 /proc/uptime) $*"; }
put() { xenstore-write "data/e2e/$1" "$2"; }
get() { xenstore-read "data/e2e/$1" 2>/dev/null; }
# fail WHY: reports the failure to dom0 (data/e2e/error), which stops waiting at once.
fail() {
  say "FAIL $*"
  put error "$*"
  exit 1
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# wait_key KEY SECONDS: waits until dom0 wrote KEY; its value in REPLY.
wait_key() {
  n=$(($2 * 5))
  while ! REPLY=$(xenstore-read "data/e2e/$1" 2>/dev/null); do
    n=$((n - 1))
    [ $n -gt 0 ] || fail "timeout $2 s waiting for dom0's key $1"
    usleep 200000
  done
}

# wait_cmd SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_cmd() {
  n=$(($1 * 5))
  what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    [ $n -gt 0 ] || fail "timeout waiting for $what"
    usleep 200000
  done
}

# net_up DEV ADDRESS/PREFIX: waits for DEV (netfront may still be connecting), brings it up.
net_up() {
  wait_cmd 60 "interface $1" ip link show "$1"
  ip link set "$1" up || fail "ip link set $1 up"
  ip addr add "$2" dev "$1" || fail "ip addr add $2 dev $1"
}

# tcp_listening PORT: something listens on TCP PORT here.
tcp_listening() { netstat -ltn | grep -q ":$1 "; }
