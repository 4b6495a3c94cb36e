#!/usr/bin/env bash
# CTest smoke test of dpnb-bench-datapath (label bench): every mode for about 2 s with
# --json; the output must parse and packets must have moved both ways in every case that
# ran. No speed assertion: the machine is shared and slow, speed goals belong in reports.
set -euo pipefail
tool="$1"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Paced: every mode at the same load, which the simulated guests keep up with.
"$tool" --duration 2 --warmup 0.3 --sizes 64 --modes copy,map,reuse --rate 5000 --no-testpmd --json >"$out"
python3 - "$out" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
ran = 0
for c in doc["cases"]:
    name = f'{c["device"]} {c["mode"]} {c["size"]}'
    if "error" in c:
        if c["device"] == "tap" and not doc.get("tap_available", False):
            print(f"{name}: skipped ({c['error']})")
            continue
        sys.exit(f"{name}: {c['error']}")
    if "leaks" in c:
        sys.exit(f"{name}: leaks at shutdown: {c['leaks']}")
    for d in ("rx", "tx"):
        m = c.get(d, {})
        if "error" in m:
            sys.exit(f"{name} {d}: {m['error']}")
        if m.get("packets", 0) <= 0:
            sys.exit(f"{name} {d}: no packets moved")
        print(f'{name} {d}: {m["packets"]} packets, {m["mpps"]:.3f} Mpps')
    ran += 1
if ran == 0:
    sys.exit("no case ran")
PY

# A guest that shrinks its pool below its working set every 0.5 s (dpnb-netfront
# --pool-shrink-every): pages leave the translation table and rejoin, so more pages are added
# than the working set of 256 posted + 64 held buffers (320 full pages) that a fixed target
# ends with. Needs tap (zero copy).
"$tool" --duration 2 --warmup 0.3 --devices tap --modes reuse --sizes 1514 --phases rx \
  --rate 5000 --hold 64 --pool-target 160 --pool-shrink-every 0.5 --no-testpmd --json >"$out"
python3 - "$out" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
if not doc.get("tap_available", False):
    print("shrink: skipped (no tap)")
    sys.exit(0)
c = doc["cases"][0]
if "error" in c or "error" in c.get("rx", {}):
    sys.exit(f"shrink: {c.get('error') or c['rx']['error']}")
g = c["rx"]["guest_side"][0]
added, removed = g.get("pool_pages_added", 0), g.get("pool_pages_removed", 0)
print(f"shrink: {added} pages added, {removed} removed, reuse rate {g.get('reuse_rate')}")
if added <= 320 + 64:
    sys.exit(f"shrink: {added} pages added: the pool did not shrink and regrow")
if removed != added:
    sys.exit(f"shrink: {added} pages added but {removed} removed by the end")
PY
