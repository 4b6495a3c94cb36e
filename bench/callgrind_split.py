#!/usr/bin/env python3
"""Instructions per packet of dpnetback's poll loop, split by stage, from callgrind dumps.

bench/callgrind.sh runs dpnb-bench-datapath under `valgrind --tool=callgrind` with
collection on only inside the lcores' poll loop (`--toggle-collect` on Lcore::run); the tool
zeroes the counts when a measured window starts and dumps them when it ends (client
requests, "window <device> <mode> <size> <phase>"), so each dump holds the instructions the
lcore executed (user space only: syscalls, the kernel and the hypervisor are not counted)
during exactly the window whose packets the tool's JSON reports.

The split charges each call from uncharged code (the poll loop's own) into a stage with the
call's inclusive cost (everything the callee did, including what it called, so a stage
called from inside another stage counts for the outer one):
  grant         GrantTable / TranslationTable (map, unmap, copy, the reuse lookups)
  notification  EventChannels::notify
  nic           the PMD's burst functions and ethdev (DPDK's librte_net_* and librte_ethdev)
  mbuf          mbuf pools (librte_mempool*, librte_ring, librte_mbuf)
  sleep         Lcore::sleep_when_idle: arming the wake-ups and the epoll wait of an
                lcore that found nothing for its idle-poll budget
  ring          what is left: the netif rings (their parsing is inlined into the loop),
                validation, headers, copies into mbufs and the loop itself

Every instruction of a window is charged to the packets delivered in it, the polls that
found nothing included. Under callgrind one thread of the process runs at a time, so the
generator's thread and the lcore take turns and the lcore spins empty while the generator
waits for its turn: a cost of valgrind's scheduler more than of the design. The tool's
calibration window ("idle DEVICE MODE SIZE": the same guests attached, no traffic) says
what one empty poll costs (its instructions outside sleep_when_idle over its empty polls;
a deterministic path), and each row also carries the work per packet without the window's
empty polls and sleeps: `work_per_packet` = (instructions - sleep - idle polls x
`idle_poll_instructions`) / packets, the figure at saturation, where the queues never run
dry. Both are reported; neither replaces the other.
Usage: callgrind_split.py --json BENCH.json DUMP... > split.json
"""
import argparse
import json
import re
import sys

STAGES = [
    ("grant", lambda ob, fn: re.search(r"(GrantTable|TranslationTable)::", fn) is not None),
    ("notification", lambda ob, fn: re.search(r"EventChannels::notify\(", fn) is not None),
    ("nic", lambda ob, fn: re.search(r"librte_(net_|ethdev)", ob) is not None),
    ("mbuf", lambda ob, fn: re.search(r"librte_(mempool|ring|mbuf)", ob) is not None),
    ("sleep", lambda ob, fn: re.search(r"Lcore::sleep_when_idle\(", fn) is not None),
]


def stage_of(ob, fn):
    for name, pred in STAGES:
        if pred(ob, fn):
            return name
    return None


def parse(path):
    """Returns (label, total Ir, {stage: Ir})."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    kind_of = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl",
               "cfl": "fl", "fn": "fn", "cfn": "fn"}

    def name(key, value):
        table = names[kind_of[key]]
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    label, total = "", 0
    ob = fn = ""
    cob = cfn = None
    in_call = False
    split = {s: 0 for s, _ in STAGES}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("desc: Trigger:"):
                label = line.split("Client Request:", 1)[-1].strip()
                continue
            if line.startswith(("totals:", "summary:")):
                total = int(line.split()[1])
                continue
            m = re.match(r"(ob|fl|fi|fe|fn|cob|cfi|cfl|cfn)=(.*)$", line)
            if m:
                key, value = m.group(1), name(m.group(1), m.group(2))
                if key == "ob":
                    ob = value
                elif key == "fn":
                    fn = value
                    cob = None
                elif key == "cob":
                    cob = value
                elif key == "cfn":
                    cfn = value
                continue
            if line.startswith("calls="):
                in_call = True
                continue
            if in_call and line and (line[0].isdigit() or line[0] in "+-*"):
                in_call = False
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                callee_ob = cob if cob is not None else ob
                to = stage_of(callee_ob, cfn or "")
                # Only entries from uncharged code: a stage's inclusive cost already holds
                # what it calls (the tap PMD allocating mbufs is NIC work, not mbuf work).
                if to is not None and stage_of(ob, fn) is None:
                    split[to] += cost
                cob = None
                continue
    return label, total, split


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True, help="dpnb-bench-datapath --json-file output")
    ap.add_argument("dumps", nargs="+")
    a = ap.parse_args()
    with open(a.json, encoding="utf-8") as f:
        bench = json.load(f)
    packets, extra, calibration = {}, {}, {}
    for case in bench.get("cases", []):
        if "idle" in case:
            calibration[f"idle {case['device']} {case['mode']} {case['size']}"] = case["idle"]
        for phase in ("rx", "tx", "local"):
            if phase in case and "packets" in case[phase]:
                key = f"window {case['device']} {case['mode']} {case['size']} {phase}"
                packets[key] = case[phase]["packets"]
                # Frames the window dropped (their work is charged to the delivered ones) and
                # whether the generator waited for the guests' buffers: a reader judges the
                # row by them.
                extra[key] = {k: case[phase][k] for k in ("drops", "backpressure", "idle_polls")
                              if k in case[phase]}
    rows, idle_cost, no_cost = [], {}, {}
    dumps = [parse(d) for d in a.dumps]
    for label, total, split in dumps:
        cal = calibration.get(label)
        if not cal:
            continue
        case = label[len("idle "):]
        # A calibration window that moved packets or found work is no calibration: its
        # windows get no work_per_packet, and say why.
        if cal.get("idle_polls") and not cal.get("packets") and not cal.get("busy_polls"):
            idle_cost[case] = (total - split["sleep"]) / cal["idle_polls"]
        else:
            no_cost[case] = (f"calibration window not idle: {cal.get('packets', 0)} packets, "
                             f"{cal.get('busy_polls', 0)} busy and "
                             f"{cal.get('idle_polls', 0)} empty polls")
            print(f"callgrind_split: {label}: {no_cost[case]}", file=sys.stderr)
    for label, total, split in dumps:
        if not label.startswith("window "):
            continue
        _, device, mode, size, phase = label.split()
        pk = packets.get(label, 0)
        per = (lambda v: v / pk if pk else 0.0)
        charged = sum(split.values())
        stages = {s: per(v) for s, v in split.items()}
        stages["ring"] = per(total - charged)
        row = {"device": device, "mode": mode, "size": int(size), "phase": phase,
               "packets": pk, "instructions": total,
               "instructions_per_packet": per(total), "stages_per_packet": stages,
               **extra.get(label, {})}
        cost = idle_cost.get(f"{device} {mode} {size}")
        if cost is not None and "idle_polls" in row and pk:
            idle = row["idle_polls"] * cost
            row["idle_poll_instructions"] = cost
            row["work_per_packet"] = max(0.0, total - split["sleep"] - idle) / pk
        elif f"{device} {mode} {size}" in no_cost:
            row["work_per_packet_missing"] = no_cost[f"{device} {mode} {size}"]
        rows.append(row)
    rows.sort(key=lambda r: (r["phase"], r["device"], r["size"],
                             ["copy", "map", "reuse"].index(r["mode"])
                             if r["mode"] in ("copy", "map", "reuse") else 9))
    json.dump({"rows": rows}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
