#!/usr/bin/env bash
# Stress mode: the simulator-backed tests (the simulated hypervisor's, xenstore's, the test
# netfront's against its reflector, the control plane's, and the engine's over net_ring)
# again and again under CPU contention, to catch the races a quiet machine hides: busy loops
# and the tests share the same CPUs, the tests run in random order, several at once, each
# in its own process as CTest runs them. It stops at the first failure and prints the
# failing test's name and output; it never starts a new chunk of tests after its budget.
#   usage: scripts/stress-tests.sh [BUILD_DIR]      (default build/asan, configured here)
#   DPNB_STRESS_SECONDS  time budget (default 300); the last chunk may run past it
#   DPNB_STRESS_LOAD     busy loops beside the tests (default: CPUs + 1)
#   DPNB_STRESS_JOBS     tests run at once (default: twice the CPUs)
#   DPNB_STRESS_CPUS     CPU list the loops and the tests are pinned to (default: all of ours)
#   DPNB_STRESS_TESTS    a CTest -R regex that narrows the selection (one test, repeated)
#   DPNB_STRESS_TIMEOUT  seconds one test may take (default 600); a hang is a failure too
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/asan}
budget=${DPNB_STRESS_SECONDS:-300}
ncpu=$(nproc)
load=${DPNB_STRESS_LOAD:-$((ncpu + 1))}
jobs=${DPNB_STRESS_JOBS:-$((ncpu * 2))}
cpus=${DPNB_STRESS_CPUS:-$(taskset -pc $$ | sed 's/.*: //')}
per_test=${DPNB_STRESS_TIMEOUT:-600}

# Labels shim and component, less the tests that need root and the kernel (tap devices,
# network namespaces, systemd): those exercise the kernel more than our own wake-ups.
labels='^(shim|component)$'
# (component_tests' fixtures over net_tap; daemon_process_tests: Daemon*.)
needs_kernel='^(systemd\.|GuestPoolTap\.|EngineTap\.|RxModes/EngineTap|RxModes/TapFlood\.|Mischief/Hostile\.|HostileControlRing\.|Daemon)'

[ -f "$build/CTestTestfile.cmake" ] || {
  echo "stress: no CTest tree in $build (build it first)" >&2
  exit 2
}
select=(-L "$labels" -E "$needs_kernel")
[ -z "${DPNB_STRESS_TESTS:-}" ] || select+=(-R "$DPNB_STRESS_TESTS")
# Stress only what this tree builds now: a build directory configured from another checkout
# is refused, and the selected tests' executables are brought up to date first; either would
# otherwise run old code (and report its old flakes as new ones).
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null)
if [ "$(realpath -m "${src:-/nonexistent}")" != "$(pwd -P)" ]; then
  echo "stress: $build was configured from ${src:-an unknown tree}, not from $(pwd -P)" >&2
  exit 2
fi
if [ -f "$build/build.ninja" ] && command -v ninja >/dev/null; then
  mapfile -t exes < <(ctest --test-dir "$build" --show-only=json-v1 "${select[@]}" |
    python3 -c 'import json, sys
for e in sorted({t["command"][0] for t in json.load(sys.stdin)["tests"] if t.get("command")}):
    print(e)')
  targets=()
  for e in "${exes[@]}"; do
    case "$(realpath -m "$e")" in "$(realpath -m "$build")"/*)
      targets+=("$(realpath -m --relative-to="$build" "$e")") ;;
    esac
  done
  # (ninja -n cannot tell: with CMake's CONFIGURE_DEPENDS globs a dry run always stops at
  # regenerating the build files.) A no-op when they are up to date.
  if ! nice ninja -C "$build" "${targets[@]}" >"$build/stress-build.log" 2>&1; then
    echo "stress: building the test executables failed ($build/stress-build.log)" >&2
    exit 2
  fi
fi
mapfile -t tests < <(ctest --test-dir "$build" -N "${select[@]}" |
  sed -n 's/^ *Test *#[0-9][0-9]*: //p')
if [ ${#tests[@]} -eq 0 ]; then
  echo "stress: no test selected in $build" >&2
  exit 2
fi
if printf '%s\n' "${tests[@]}" | grep -q '_NOT_BUILT$'; then
  echo "stress: some selected executables are not built in $build" >&2
  exit 2
fi
# A chunk is run by name (-R '^(a|b)$', names escaped), not by number: numbers change when
# an executable is rebuilt and its tests discovered again.
exact() {
  printf '^(%s)$' "$(printf '%s\n' "$@" | sed 's/[][\\.*^$+?(){}|]/\\&/g' | paste -sd'|')"
}

logs=$(mktemp -d "${TMPDIR:-/tmp}/dpnb-stress.XXXXXX")
loops=()
stop_loops() {
  for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${loops[@]}"; do wait "$pid" 2>/dev/null || true; done
  loops=()
}
trap 'stop_loops; rm -rf "$logs"' EXIT
for ((i = 0; i < load; i++)); do
  taskset -c "$cpus" bash -c 'while :; do :; done' &
  loops+=($!)
done

echo "stress: ${#tests[@]} tests, ${budget} s, ${load} busy loop(s) and ${jobs} test(s) at a time on CPUs ${cpus}"
# Chunks of a few tests, so that the budget is checked often; every round runs each
# selected test once, in a new random order.
chunk=$((jobs * 4))
start=$SECONDS
round=0
runs=0
while ((SECONDS - start < budget)); do
  round=$((round + 1))
  mapfile -t order < <(printf '%s\n' "${tests[@]}" | shuf)
  for ((k = 0; k < ${#order[@]} && SECONDS - start < budget; k += chunk)); do
    part=("${order[@]:k:chunk}")
    log="$logs/chunk.log"
    if ! taskset -c "$cpus" ctest --test-dir "$build" -R "$(exact "${part[@]}")" \
      -j "$jobs" --timeout "$per_test" --output-on-failure >"$log" 2>&1; then
      stop_loops
      echo "== stress: FAILED in round $round after $((SECONDS - start)) s ($runs tests passed before)"
      sed -n '/The following tests FAILED/,$p' "$log"
      echo "== output of the tests run with it (ctest --output-on-failure):"
      cat "$log"
      exit 1
    fi
    runs=$((runs + ${#part[@]}))
  done
  echo "stress: $((SECONDS - start)) s: round $round, $runs tests passed so far"
done
echo "stress: $runs tests passed, $round round(s) of ${#tests[@]}, $((SECONDS - start)) s beside ${load} busy loop(s), no failure"
