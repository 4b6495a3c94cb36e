#!/usr/bin/env bash
# Instructions per packet of the poll loop, by RX mode and frame size, with a stage split
# (bench/callgrind_split.py says how each stage is charged). Runs dpnb-bench-datapath under
# valgrind's callgrind with collection on only inside the lcores' poll loop
# (Lcore::run); the tool zeroes the counts when each measured window starts and dumps them
# when it ends, so the instructions and the packets come from the same window. Instruction
# counts do not depend on the machine's load (TSC cycles do), which makes them the
# repeatable figure on a shared machine.
#   bench/callgrind.sh TOOL OUT.json [dpnb-bench-datapath options...]
# Writes OUT.json (the split) and keeps the tool's own JSON beside it as OUT.bench.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 TOOL OUT.json [options...]" >&2; exit 2; }
tool="$1" out="$2"
shift 2
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind missing (scripts/install-deps.sh bench)" >&2; exit 2; }
dumps="$(mktemp -d /tmp/dpnb-callgrind-XXXXXX)"
trap '[ -n "${DPNB_CALLGRIND_KEEP:-}" ] || rm -rf "$dumps"' EXIT
# Only this process (the engine's lcores) is traced: dpnb-simhv and the guests run natively.
valgrind --tool=callgrind --trace-children=no \
  --toggle-collect='dpnb::engine::detail::Lcore::run()' \
  --callgrind-out-file="$dumps/cg.out" \
  "$tool" "$@" --no-testpmd --json-file "${out%.json}.bench.json" \
  >"$dumps/tool.txt" 2>"$dumps/valgrind.log" || {
  echo "callgrind.sh: the tool failed under valgrind:" >&2
  tail -n 30 "$dumps/valgrind.log" >&2
  exit 1
}
shopt -s nullglob
files=("$dumps"/cg.out.*)
[ ${#files[@]} -gt 0 ] || { echo "callgrind.sh: no window dumps (see $dumps)" >&2; tail -n 30 "$dumps/valgrind.log" >&2; exit 1; }
python3 "$here/callgrind_split.py" --json "${out%.json}.bench.json" "${files[@]}" >"$out"
