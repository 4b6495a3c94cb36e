#!/usr/bin/env bash
# CTest smoke test of dpnb-bench-datapath's stall phase (label bench): a guest stopped while
# the generator floods it, twice, with a short rx_stall_timeout; checks what must hold
# whatever the machine's speed: the backlog stayed within its limits and was dropped once the
# queue stalled, the stalled guest's frames were dropped unstaged, the other guest was served
# while the first was stopped, and each stop ended with the queue running and the guest
# receiving again. No timing or memory assertion: bench/results/2026-12-07-stall.md has the
# long run and its figures.
set -euo pipefail
tool="$1"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$tool" --devices ring --modes copy --sizes 1514 --phases stall --rate 20000 \
  --rx-stall-timeout-ms 200 --stall-window 1.2 --stall-recover 1 --stall-cycles 2 \
  --stall-sample 0.2 --no-testpmd --json >"$out"
python3 - "$out" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
c = doc["cases"][0]
st = c.get("stall", {})
for e in (c.get("error"), c.get("leaks"), st.get("error")):
    if e:
        sys.exit(f"stall: {e}")
s, samples = st["summary"], st["samples"]
print("stall summary:", json.dumps(s))
if s["max_backlog_frames"] > 256 or s["max_backlog_bytes"] > 512 * 1024:
    sys.exit("stall: the backlog went past 256 frames or 512 KiB")
if not s["stalled_seen"]:
    sys.exit("stall: the stopped guest's queue never stalled")
for cycle in sorted({x["cycle"] for x in samples if x["guest"] == "stopped"}):
    stopped = [x for x in samples if x["cycle"] == cycle and x["guest"] == "stopped"]
    if any(x["guest_proc_state"] != "T" for x in stopped):
        sys.exit(f"stall: guest 0 was not stopped throughout cycle {cycle}")
    last = stopped[-1]
    if last["stalled_queues"] != 1 or last["backlog_frames"] != 0 or last["backlog_bytes"] != 0:
        sys.exit(f"stall: cycle {cycle} ended stopped with {last}")
    before = [x for x in samples if x["t"] < stopped[0]["t"]][-1]
    if last["healthy_guest_rx"] <= before["healthy_guest_rx"]:
        sys.exit(f"stall: the other guest got nothing while guest 0 was stopped (cycle {cycle})")
if samples[-1]["drop_stalled"] == 0:
    sys.exit("stall: no frame dropped as stalled")
if not s["recovered_every_cycle"]:
    sys.exit("stall: a cycle did not end with the queue running and the guest receiving")
PY
