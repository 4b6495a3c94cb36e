#!/usr/bin/env bash
# The vif-dpnetback hotplug script run the way libxl runs it (XENBUS_PATH, vif, type_if and
# an action), against the simulated hypervisor and Xen's own xenstore-* tools
# (xenstore-utils, pointed at the simulator's xenstore with XENSTORED_PATH). Cases:
#   attach       dpnetbackd (vifs.serve = "adopted-only", vifs.hotplug_wait = "always") and a
#                guest whose vif is plugged libxl-style (hotplug-status ""): `online`
#                writes hotplug-status = connected, the daemon serves the vif and it reaches
#                Connected; `offline` detaches it and removes hotplug-status; a second
#                `offline` (the vif no longer served) is not an error; SIGTERM stops the
#                daemon with status 0.
#   attach-all   the same with vifs.serve = "all", libxl's order: the daemon serves the vif
#                at once and holds Connected (backend InitWait) until the script has run.
#   daemon-down  only the simulator: `online` fails with hotplug-status = error and a
#                readable hotplug-error; `offline` is not an error; a folder whose keys
#                disagree with its path, or whose mac is bad, is refused with the reason.
# Usage: vif_hotplug_test.sh CASE --script S --ctl C --daemon D --netfront N --simhv H
# Waiting is by polling with generous deadlines; nothing relies on a sleep.
set -uo pipefail

case_name=$1
shift
while [ $# -gt 0 ]; do
    case "$1" in
        --script) script=$2 ;;
        --ctl) ctl=$2 ;;
        --daemon) daemon=$2 ;;
        --netfront) netfront=$2 ;;
        --simhv) simhv=$2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift 2
done

if ! command -v xenstore-read >/dev/null || ! command -v python3 >/dev/null; then
    echo "SKIP: xenstore-utils (xenstore-read) or python3 missing"
    exit 77
fi

tmp=$(mktemp -d /tmp/dpnbvh.XXXXXX)
sim=$tmp/sim
sock=$tmp/ctl.sock
export XENSTORED_PATH=$sim/xenstore-0.sock
pids=()
failed=0

cleanup() {
    local p f
    if [ "$failed" -ne 0 ] && [ -S "$sock" ]; then
        echo "----- dpnetbackctl list --json"
        "$ctl" --socket "$sock" --timeout 10 --json list 2>&1
    fi
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    if [ "$failed" -ne 0 ]; then
        for f in "$tmp"/*.log; do
            [ -e "$f" ] || continue
            echo "----- $f"
            tail -n 60 "$f"
        done
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    failed=1
    exit 1
}

pass() {
    echo "ok: $*"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for $what"
        sleep 0.1
    done
}

# Runs the script as libxl does: `<action> type_if=vif`, XENBUS_PATH, vif and script set.
hotplug() {
    local action=$1 path=$2 socket=$3
    local name=${path#/local/domain/*/backend/vif/}
    env -i PATH="$PATH" XENSTORED_PATH="$XENSTORED_PATH" XENBUS_PATH="$path" \
        vif="vif${name%%/*}.${name#*/}" script="$script" \
        DPNB_SOCKET="$socket" DPNB_CTL="$ctl" DPNB_DEFAULTS=/nonexistent DPNB_SYSLOG=0 \
        DPNB_TIMEOUT=120 "$script" "$action" type_if=vif 2>>"$tmp/hotplug.log"
}

xs_read() { xenstore-read "$1" 2>/dev/null; }

# The vif's entry in `dpnetbackctl list --json`, as "role phase attached", or "absent".
vif_line() {
    "$ctl" --socket "$sock" --timeout 120 --json list 2>>"$tmp/ctl.log" | python3 -c '
import json, sys
want = sys.argv[1]
for v in json.load(sys.stdin)["result"]["vifs"]:
    if v["vif"] == want:
        print(v["role"], v["phase"], "attached" if v["attached"] else "detached")
        break
else:
    print("absent")
' "$1"
}

vif_is() { [ "$(vif_line "$1")" = "$2" ]; }
vif_not_attached() {
    local l
    l=$(vif_line "$1")
    case "$l" in *" attached") return 1 ;; esac
    [ -n "$l" ]
}
vif_not_served() {
    case "$(vif_line "$1")" in
        absent | forgotten*) return 0 ;;
        *) return 1 ;;
    esac
}
node_is() { [ "$(xs_read "$1")" = "$2" ]; }
node_absent() { ! xenstore-read "$1" >/dev/null 2>&1; }
# True once the socket exists, or once the process is gone (the caller then says so).
socket_or_exit() { [ -e "$1" ] || ! kill -0 "$2" 2>/dev/null; }
has_vif_folder() { [ -n "$(xenstore-list /local/domain/0/backend/vif 2>/dev/null)" ]; }

# case_attach SERVE: "adopted-only" (the script's attach makes the daemon serve the vif) or
# "all" (libxl's own order: the daemon serves the vif at once, the frontend connects, and
# Connected is held until the script writes hotplug-status).
case_attach() {
    local serve=$1 pid=$$
    cat >"$tmp/dpnetback.toml" <<EOF
[hypervisor]
kind = "sim"
[hypervisor.sim]
dir = "$sim"
embedded = true
[log]
target = "stderr"
[eal]
main_lcore = 0
worker_lcores = [1]
file_prefix = "dpnbvh$pid"
[port.uplink]
device = "net_tap_vh,iface=dpnbvh$pid"
[vifs]
serve = "$serve"
hotplug_wait = "always"
[management]
socket = "$sock"
[metrics]
port = 0
EOF
    "$daemon" --foreground --config "$tmp/dpnetback.toml" >"$tmp/daemon.log" 2>&1 &
    local daemon_pid=$!
    pids+=("$daemon_pid")
    # The socket exists before the daemon is ready; a request on it is answered once it is.
    wait_for 120 "the management socket" socket_or_exit "$sock" "$daemon_pid"
    kill -0 "$daemon_pid" 2>/dev/null || fail "dpnetbackd exited during start-up"
    "$ctl" --socket "$sock" --timeout 300 version >>"$tmp/ctl.log" 2>&1 ||
        fail "dpnetbackd did not become ready"
    pass "dpnetbackd ready"

    "$netfront" --sim-dir "$sim" --name g --hotplug-status pending --echo \
        --connect-timeout 600 >"$tmp/netfront.log" 2>&1 &
    pids+=("$!")
    wait_for 120 "the guest's vif folder" has_vif_folder
    local domid
    domid=$(xenstore-list /local/domain/0/backend/vif | head -n1)
    local bp=/local/domain/0/backend/vif/$domid/0
    wait_for 120 "the vif's hotplug-status \"\"" node_is "$bp/hotplug-status" ""
    if [ "$serve" = all ]; then
        wait_for 300 "vif$domid.0 held for the hotplug script" \
            vif_is "vif$domid.0" "served hotplug_wait attached"
        [ "$(xs_read "$bp/state")" = 2 ] || fail "Connected not held: state $(xs_read "$bp/state")"
        pass "vif$domid.0 served at once, Connected held (backend InitWait) until the script"
    else
        [ "$(xs_read "$bp/state")" = 1 ] ||
            fail "an unadopted vif was touched: state $(xs_read "$bp/state")"
    fi

    hotplug online "$bp" "$sock" || fail "online exited $?"
    [ "$(xs_read "$bp/hotplug-status")" = connected ] ||
        fail "hotplug-status is \"$(xs_read "$bp/hotplug-status")\", not connected"
    pass "online: hotplug-status = connected"
    wait_for 300 "vif$domid.0 Connected" vif_is "vif$domid.0" "served connected attached"
    wait_for 120 "backend state 4" node_is "$bp/state" 4
    pass "vif$domid.0 served and Connected"

    hotplug offline "$bp" "$sock" || fail "offline exited $?"
    node_absent "$bp/hotplug-status" || fail "offline left hotplug-status"
    wait_for 300 "vif$domid.0 detached" vif_not_attached "vif$domid.0"
    pass "offline: detached ($(vif_line "vif$domid.0")), hotplug-status removed"
    # The frontend answers Closing with Closed; the daemon then forgets the vif.
    wait_for 300 "vif$domid.0 forgotten" vif_not_served "vif$domid.0"

    hotplug offline "$bp" "$sock" || fail "a second offline exited $? (the vif is not served)"
    grep -q "no longer serves" "$tmp/hotplug.log" || fail "the second offline did not say why"
    pass "offline of a vif no longer served: not an error"

    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
    local status=$?
    pids=("${pids[@]/$daemon_pid/}")
    [ "$status" -eq 0 ] || fail "dpnetbackd exited $status after SIGTERM"
    pass "SIGTERM: dpnetbackd exited 0"
}

case_daemon_down() {
    mkfifo "$tmp/ready"
    "$simhv" --dir "$sim" serve --ready-fd 3 3>"$tmp/ready" >"$tmp/simhv.log" 2>&1 &
    pids+=("$!")
    local line=""
    read -r -t 120 line <"$tmp/ready"
    [ "$line" = READY=1 ] || fail "dpnb-simhv did not start"

    # A vif folder as libxl leaves it before it runs the script.
    local bp=/local/domain/0/backend/vif/7/0
    xenstore-write "$bp/frontend" /local/domain/7/device/vif/0 "$bp/frontend-id" 7 \
        "$bp/online" 1 "$bp/state" 1 "$bp/mac" 00:16:3e:00:07:00 "$bp/handle" 0 \
        "$bp/script" /etc/xen/scripts/vif-dpnetback "$bp/hotplug-status" "" ||
        fail "cannot write the vif folder"

    hotplug online "$bp" "$tmp/nothing.sock" && fail "online succeeded without a daemon"
    [ "$(xs_read "$bp/hotplug-status")" = error ] ||
        fail "hotplug-status is \"$(xs_read "$bp/hotplug-status")\", not error"
    local err
    err=$(xs_read "$bp/hotplug-error")
    case "$err" in
        *"vif7.0"*"dpnetbackd did not take the vif"*"no such socket (is dpnetbackd running?)"*) ;;
        *) fail "hotplug-error \"$err\" does not say what went wrong" ;;
    esac
    pass "online without a daemon: hotplug-status = error, hotplug-error \"$err\""

    hotplug offline "$bp" "$tmp/nothing.sock" || fail "offline without a daemon exited $?"
    node_absent "$bp/hotplug-status" || fail "offline left hotplug-status"
    node_absent "$bp/hotplug-error" || fail "offline left hotplug-error"
    pass "offline without a daemon: not an error, hotplug nodes removed"

    # Keys that disagree with the folder's path, and a bad MAC: refused before the daemon
    # is asked.
    xenstore-write "$bp/frontend-id" 8 "$bp/hotplug-status" ""
    hotplug online "$bp" "$tmp/nothing.sock" && fail "online took a frontend-id of another domain"
    case "$(xs_read "$bp/hotplug-error")" in
        *"frontend-id 8 does not match"*) ;;
        *) fail "hotplug-error \"$(xs_read "$bp/hotplug-error")\" (frontend-id mismatch)" ;;
    esac
    xenstore-write "$bp/frontend-id" 7 "$bp/mac" 00:16:3e:00:07 "$bp/hotplug-status" ""
    hotplug online "$bp" "$tmp/nothing.sock" && fail "online took a bad mac"
    case "$(xs_read "$bp/hotplug-error")" in
        *"mac \"00:16:3e:00:07\""*"is not a MAC address"*) ;;
        *) fail "hotplug-error \"$(xs_read "$bp/hotplug-error")\" (bad mac)" ;;
    esac
    [ "$(xs_read "$bp/hotplug-status")" = error ] || fail "bad mac: hotplug-status not error"
    pass "inconsistent folders refused with the reason"

    # An emulated NIC's tap (HVM, type_if = tap, add): QEMU's, left alone.
    xenstore-write "$bp/hotplug-status" ""
    env -i PATH="$PATH" XENSTORED_PATH="$XENSTORED_PATH" XENBUS_PATH="$bp" \
        INTERFACE=vif7.0-emu DPNB_SOCKET="$tmp/nothing.sock" DPNB_CTL="$ctl" \
        DPNB_DEFAULTS=/nonexistent DPNB_SYSLOG=0 "$script" add type_if=tap 2>>"$tmp/hotplug.log" ||
        fail "add for a tap exited $?"
    node_is "$bp/hotplug-status" "" || fail "add for a tap touched the vif's hotplug-status"
    pass "an emulated NIC's tap left alone"

    # Not a vif folder at all: refused, and nothing written there.
    xenstore-write /local/domain/0/backend/vbd/7/0/frontend-id 7
    hotplug online /local/domain/0/backend/vbd/7/0 "$tmp/nothing.sock" &&
        fail "online took a vbd folder"
    node_absent /local/domain/0/backend/vbd/7/0/hotplug-status || fail "wrote into a vbd folder"
    pass "a folder that is not a vif's refused"
}

case "$case_name" in
    attach) case_attach adopted-only ;;
    attach-all) case_attach all ;;
    daemon-down) case_daemon_down ;;
    *) echo "unknown case $case_name" >&2; exit 2 ;;
esac
echo "PASS: $case_name"
