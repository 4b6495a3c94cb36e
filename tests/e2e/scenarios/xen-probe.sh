# xen-probe: dpnetback's real Xen hypercall-shim (hypercall-shim/src/xen) against a real
# Xen and a real Linux domU, through dpnb-xen-probe. The guest shares two writable pages
# and one read-only page through gntalloc, each set with an unbound event channel
# (`share`); dom0, as the backend, opens the backend (`info`), maps the grants read-only
# and writable, grant-copies from and into them, runs the persistent-grant table round
# trip, checks that refused grants are reported per grant (a ref that does not exist, a
# writable map of a read-only grant) and that a copy from a bad ref fails cleanly, and
# notifies both event channels, which the guest answers. The guest then checks that what
# dom0 wrote (map --rw, copy --to-guest) is in its pages. Every probe run must give the
# exit status expected of it; its output is kept in the console log for the failure report.
#
# Keys: one per step (info map_ro map_rw copy_from copy_to persistent bad_ref_map
# bad_ref_copy ro_map_rw ro_map_ro evtchn evtchn_ro guest_pages), each ok or what went wrong.
#
# e2e-group: base
# e2e-timeout: 600
# e2e-project-bins: dpnb-xen-probe
# e2e-guest-bins: dpnb-xen-probe
PROBE=${E2E_BIN_dpnb_xen_probe:?dpnb-xen-probe is not built}
# A ref beyond the guest's grant table as it is now (Linux starts it small and grows it on
# demand; Xen 4.17 allows 64 frames, refs below 32768).
BAD_REF=32000

# step KEY EXPECTED_STATUS PATTERN... -- PROBE_ARGS...: runs the probe in dom0, expects its
# exit status and every PATTERN (grep -E) in its output; kv KEY ok, or fails the scenario.
step() {
  local key=$1 want=$2 pats=() out rc p
  shift 2
  while [ "$1" != -- ]; do
    pats+=("$1")
    shift
  done
  shift
  log "dpnb-xen-probe $*"
  out=$(timeout 120 "$PROBE" "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed 's/^/    | /'
  if [ "$rc" -ne "$want" ]; then
    kv "$key" "exit_$rc"
    fail "dpnb-xen-probe $1: exit status $rc, expected $want"
  fi
  for p in "${pats[@]}"; do
    if ! grep -qE -- "$p" <<<"$out"; then
      kv "$key" "missing_output"
      fail "dpnb-xen-probe $1: no line matching '$p'"
    fi
  done
  kv "$key" ok
}

guest_create e2e-probe xen-probe
D=$E2E_DOMID
watch_guest "$D"
guest_wait "$D" rw-refs 240
read -r A B <<<"$REPLY"
guest_wait "$D" rw-port 30
P=$REPLY
guest_wait "$D" ro-ref 60
C=$REPLY
guest_wait "$D" ro-port 30
Q=$REPLY
log "guest $D shares writable refs $A $B (port $P), read-only ref $C (port $Q)"

# Domain information: libxenctrl answers a query for a missing domain with the next one, so
# the shim must check the id: D+1 does not exist yet, and below D only dom0 is left (stage 2
# destroyed the guests of earlier scenarios), so D-1 is gone when it is not dom0.
gone=()
[ "$D" -lt 2 ] || gone=("dom $((D - 1)): exists=0")
step info 0 "kind=xen self=0" "dom 0: exists=1 dying=0 shutdown=0 name=Domain-0" \
  "dom $D: exists=1 dying=0 shutdown=0 name=e2e-probe" "dom $((D + 1)): exists=0" "${gone[@]}" -- \
  info --dom 0 --dom "$D" --dom "$((D + 1))" --dom "$((D - 1))"
step map_ro 0 "mapped 2 pages" '\|dpnb page 0' '\|dpnb page 1' 'unmapped \(mapped_pages=0\)' -- \
  map --dom "$D" --ref "$A" --ref "$B"
step map_rw 0 'wrote "dpnb-xen-probe"' 'unmapped \(mapped_pages=0\)' -- \
  map --dom "$D" --ref "$A" --rw
step copy_from 0 "copied 64 bytes from ref $B" '\|dpnb page 1' -- \
  copy --dom "$D" --ref "$B" --len 64
step copy_to 0 "copied 64 bytes to ref $B at offset 64" -- \
  copy --dom "$D" --ref "$B" --offset 64 --len 64 --to-guest
step persistent 0 "added 2 persistent grants" '\|dpnb-xen-probe' \
  "ok   remove while in flight: buffer in flight" "removed 2 of 2" "unmapped=0 leaked=0" -- \
  persistent --dom "$D" --ref "$A" --ref "$B"
# Refused grants: gntdev says only EINVAL for a batch; the shim finds which grant and why.
step bad_ref_map 1 "ref $A=0 ref $BAD_REF=-3" -- map --dom "$D" --ref "$A" --ref "$BAD_REF"
step bad_ref_copy 1 "FAIL copy: GNTST -" -- copy --dom "$D" --ref "$BAD_REF" --len 64
step ro_map_rw 1 "ref $C=-8" -- map --dom "$D" --ref "$C" --rw
step ro_map_ro 0 '\|dpnb page 0' -- map --dom "$D" --ref "$C"
# Last: the notifications release the guest's share commands.
step evtchn 0 "pending after the bind" "ok   event on port" -- evtchn --dom "$D" --port "$P" --timeout-ms 60000
step evtchn_ro 0 "pending after the bind" "ok   event on port" -- evtchn --dom "$D" --port "$Q" --timeout-ms 60000

guest_wait "$D" verdict 180
kv guest_pages "$REPLY"
[ "$REPLY" = ok ] || fail "guest: $REPLY"
pass
