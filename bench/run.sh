#!/usr/bin/env bash
# The benchmark suite in one command: runs dpnb-bench-datapath in every configuration the
# report needs, then bench/report.py merges the results into bench/results/<date>.json,
# bench/results/<date>.md and PNG plots (gnuplot). docs/benchmarks.md explains each figure.
#   bench/run.sh [--quick] [--build DIR] [--out DIR]
# --quick: a smoke run (about 1-2 minutes) with short windows; the full run takes about
# 10 minutes on the project's 2-core machine. Needs root for net_tap (zero-copy cases).
# Section 7 (the peer on real Xen) is read from the saved outputs of tests/e2e/run.sh when
# DPNB_LAB_SUMMARY names them (FILE[:FILE...], later verdicts win); otherwise "not run".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/../build/bench-rel"
out="$here/results"
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --build) build="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--build DIR] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
tool="$build/bench/dpnb-bench-datapath"
if [ ! -x "$tool" ]; then
  echo "run.sh: $tool missing; build it with:" >&2
  echo "  cmake -S . -B build/bench-rel -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPNB_STAGE_TIMING=ON" >&2
  echo "  cmake --build build/bench-rel -j2 --target dpnb-bench-datapath" >&2
  exit 2
fi
date="$(date -u +%Y-%m-%d)"
work="$(mktemp -d /tmp/dpnb-bench-run-XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

if [ $quick -eq 1 ]; then
  PACED=5000; D=1; SCALE_GUESTS="1 2"; SCALE_LCORES="1"; LAT=100; IDLE=3; MANY=8
else
  PACED=5000; D=3; SCALE_GUESTS="1 2 4 8"; SCALE_LCORES="1 2"; LAT=500; IDLE=10; MANY=64
fi

run() { # name, args...
  local name="$1"; shift
  echo "run.sh: $name: dpnb-bench-datapath $*" >&2
  local t0=$SECONDS
  if ! "$tool" "$@" --json-file "$work/$name.json" >"$work/$name.txt" 2>"$work/$name.log"; then
    echo "run.sh: $name exited non-zero (kept its JSON; see the report)" >&2
  fi
  echo "run.sh: $name: $((SECONDS - t0)) s" >&2
}

# 1, 2: cost per packet by mechanism and frame size, beside testpmd on the same vdevs.
run mechanisms --duration $D --modes copy,map,reuse --sizes 64,1514 --phases rx,tx
# 1 again at a paced RX rate that zero-copy tap queues sustain (flat out they stall once the
# guest's buffers run out: see docs/benchmarks.md), every mechanism at the same rate.
run mechanisms-paced --duration $D --modes copy,map,reuse --sizes 64,1514 --phases rx --rate $PACED --no-testpmd
# 1 in instructions (valgrind callgrind, repeatable under load): each mechanism flat out,
# the lcore's instructions per packet and their split by stage (bench/callgrind.sh).
if command -v valgrind >/dev/null; then
  echo "run.sh: callgrind: bench/callgrind.sh (every mechanism under valgrind)" >&2
  t0=$SECONDS
  "$here/callgrind.sh" "$tool" "$work/callgrind.json" --duration $D --warmup 1 \
    --modes copy,map,reuse --sizes 64,1514 --phases rx,tx 2>"$work/callgrind.log" ||
    echo "run.sh: callgrind failed: $(tail -n 3 "$work/callgrind.log")" >&2
  echo "run.sh: callgrind: $((SECONDS - t0)) s" >&2
else
  echo "run.sh: valgrind missing: no instruction counts (scripts/install-deps.sh bench)" >&2
fi
# 3: scaling over guests and lcores (net_ring, copy: no kernel in the loop).
for l in $SCALE_LCORES; do
  for g in $SCALE_GUESTS; do
    run "scaling-l$l-g$g" --duration $D --devices ring --modes copy --sizes 64 --phases rx,tx \
      --guests "$g" --lcores "$l" --no-testpmd
  done
done
# 4: grant reuse with full and half pages, and a pool that the guest shrinks below its
# working set every 0.5 s (revocations: its pages leave the translation table, then rejoin).
run reuse-full --duration $D --devices tap --modes reuse --sizes 1514 --phases rx --rate $PACED --buffer full --hold 64 --no-testpmd
run reuse-half --duration $D --devices tap --modes reuse --sizes 1514 --phases rx --rate $PACED --buffer half --hold 64 --no-testpmd
run reuse-shrink --duration $D --devices tap --modes reuse --sizes 1514 --phases rx --rate $PACED --buffer full --hold 64 --pool-target 160 --pool-shrink-every 0.5 --no-testpmd
# 5: notifications at low rate; idle CPU with guests attached.
run lowrate --duration $D --devices ring --modes copy --sizes 64 --phases rx --rate 10000 --no-testpmd
run idle --devices ring --modes copy --sizes 64 --phases idle --idle-seconds $IDLE --no-testpmd
run idle-tap --devices tap --modes copy --sizes 64 --phases idle --idle-seconds $IDLE --no-testpmd
# 6: latency through an echoing guest (tap: the kernel side sends and times).
run latency --devices tap --modes copy,map,reuse --sizes 64 --phases latency --latency-count $LAT --no-testpmd
# 8: resident memory with 1 and many guests attached.
run memory-many --devices ring --modes copy --sizes 64 --phases idle --idle-seconds 1 --guests $MANY --no-testpmd

python3 "$here/report.py" --work "$work" --out "$out" --date "$date" --quick $quick \
  --lab "${DPNB_LAB_SUMMARY:-}"
echo "run.sh: wrote $out/$date.json, $out/$date.md and plots" >&2
