#!/usr/bin/env bash
# Medians of the Xen lab's throughput figures over several boots, one scenario against a
# reference in the same boots. Timings under QEMU TCG mean nothing on their own and vary
# from boot to boot; a ratio within one boot is the figure (README, "The Xen lab").
#   bench/lab.sh [--runs N] [--build DIR] [--out FILE.md] [--json FILE.json] REFERENCE SCENARIO...
#   bench/lab.sh [options] SCENARIO   (a scenario that pairs its backends itself)
# e.g. bench/lab.sh --runs 3 kernel-netback-local dpnetbackd-local (guest to guest: netback
# and a bridge against the daemon's local delivery), or kernel-netback dpnetbackd-basic; or
# bench/lab.sh --runs 1 dpnetbackd-vs-netback, whose rounds interleave both backends in one
# boot and whose own *_ratio keys are dpnetbackd's medians over netback's.
# Each run is one tests/e2e/run.sh of the scenarios named (all in one boot when they share
# a group); E2E_XFER_MIB (default 16 here) sets the transfer size. Prints, per scenario, the
# median of every *_mbit, *_dom0_ns_per_byte, *_dom0_ctxt_per_mib, *_share (the daemon's,
# vhost-net's, netback's threads', dom0's user/sys/softirq), *_per32_* (system calls per 32 packets) and *_per_pkt key over the runs
# that passed and, per run, its ratio to the reference's same key in that run (where the
# reference has it); with --out, the table goes there too;
# with --json, the medians as {"scenario": {"KEY": median, "KEY_ratio": median ratio}} (with
# the date, the runs and the transfer size), the form bench/results keeps. Keys of single
# rounds (rN...) stay out of the table: the scenario's medians over them are in.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runs=3 build="$here/../build/release" out="" json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift ;;
    --build) build="$2"; shift ;;
    --out) out="$2"; shift ;;
    --json) json="$2"; shift ;;
    -*) echo "usage: $0 [--runs N] [--build DIR] [--out FILE.md] [--json FILE] REFERENCE SCENARIO..." >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || { echo "usage: $0 [--runs N] [--build DIR] [--out FILE.md] [--json FILE] [REFERENCE] SCENARIO..." >&2; exit 2; }
logs=$(mktemp -d /tmp/dpnb-lab-bench-XXXXXX)
for ((i = 1; i <= runs; i++)); do
  echo "== lab run $i of $runs: $*"
  E2E_XFER_MIB=${E2E_XFER_MIB:-16} "$here/../tests/e2e/run.sh" --build "$build" \
    --out "$logs/run-$i" "$@" > "$logs/run-$i.log" 2>&1 || echo "   (run $i: a scenario failed; its figures are left out)"
  grep -aE '^E2E [a-z0-9-]+ (PASS|FAIL)' "$logs/run-$i.log" | cut -c1-160 || true
done
E2E_XFER_MIB=${E2E_XFER_MIB:-16} python3 - "$logs" "$runs" "$json" "$@" <<'PY' | tee "${out:-/dev/null}"
import datetime, json, os, re, statistics, sys
logs, runs, json_out, ref, others = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
keys = re.compile(r'(_mbit|_ns_per_byte|_dom0_ctxt_per_mib|_skb_bytes|_share|_per32_[a-z_]+|_per_pkt|_vs_copy_lcore|_ratio)$')
one_round = re.compile(r'^r[0-9]+')
per_run = []  # {scenario: {key: value}} for scenarios that passed
for i in range(1, runs + 1):
    got = {}
    for line in open(f"{logs}/run-{i}.log", errors="replace"):
        m = re.match(r'E2E (\S+) PASS (.*)$', line.strip())
        if m:
            got[m.group(1)] = {k: float(v) for k, v in re.findall(r'(\S+)=([0-9.]+)(?=\s|$)', m.group(2))
                               if keys.search(k) and not one_round.match(k)}
    per_run.append(got)
def med(xs):
    return f"{statistics.median(xs):.2f}" if xs else "-"
print(f"# Xen lab: {' '.join(others) or ref} against {ref if others else 'its own pairs'}, {runs} boots (medians)\n")
print("| scenario | key | median | runs | median ratio to " + ref + " (same boot) |")
print("|---|---|---|---|---|")
for s in [ref] + others:
    ks = sorted({k for r in per_run for k in r.get(s, {})})
    for k in ks:
        vals = [r[s][k] for r in per_run if k in r.get(s, {})]
        ratios = [r[s][k] / r[ref][k] for r in per_run
                  if s != ref and k in r.get(s, {}) and k in r.get(ref, {}) and r[ref][k] > 0]
        print(f"| {s} | {k} | {med(vals)} | {len(vals)} | {med(ratios) if s != ref else ''} |")
print("\nFor `_mbit` a ratio above 1 is faster than the reference; for `_dom0_ns_per_byte` below 1 is cheaper.")
if json_out:
    doc = {"date": datetime.date.today().isoformat(), "runs": runs, "reference": ref,
           "xfer_mib": int(os.environ["E2E_XFER_MIB"]), "scenarios": {}}
    for s in [ref] + others:
        d = {}
        for k in sorted({k for r in per_run for k in r.get(s, {})}):
            vals = [r[s][k] for r in per_run if k in r.get(s, {})]
            ratios = [r[s][k] / r[ref][k] for r in per_run
                      if s != ref and k in r.get(s, {}) and k in r.get(ref, {}) and r[ref][k] > 0]
            if vals:
                d[k] = round(statistics.median(vals), 3)
            if ratios:
                d[k + "_ratio"] = round(statistics.median(ratios), 3)
        d["runs_passed"] = sum(1 for r in per_run if s in r)
        doc["scenarios"][s] = d
    with open(json_out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
PY
echo "logs: $logs"
