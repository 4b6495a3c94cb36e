#!/usr/bin/env bash
# README's test command: installs what is missing, builds dpnetback with ASan+UBSan, runs
# every test (unit, component, the simulator-backed ones again under CPU contention, fuzz,
# each for a bounded time, format), then builds the Debian package (checked by lintian)
# and runs the end-to-end suite on a real Xen booted under QEMU (tests/e2e, with the
# release build and the package), and prints a summary.
#   DPNB_FUZZ_SECONDS  seconds per fuzz target (default 30)
#   DPNB_STRESS_SECONDS  seconds of the stress mode, scripts/stress-tests.sh (default 120 here)
#   DPNB_JOBS          parallel build jobs (default: number of CPUs)
#   DPNB_E2E           0: leave the Xen lab out (it adds about 10-20 minutes on 2 cores)
#   E2E_XFER_MIB       MiB per transfer in the lab (default 4 here: ratios, not volume)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${DPNB_JOBS:-$(nproc)}
export DPNB_FUZZ_SECONDS=${DPNB_FUZZ_SECONDS:-30}
export DPNB_STRESS_SECONDS=${DPNB_STRESS_SECONDS:-120}

# phase NAME: the previous phase ends and NAME begins; the summary lists each one's seconds,
# so that a CI run's time can be read from its log (CI must stay under about 60 minutes).
phases=() phase_name="" phase_t0=$SECONDS
phase() {
  [ -z "$phase_name" ] || phases+=("$phase_name $((SECONDS - phase_t0)) s")
  phase_name=$1 phase_t0=$SECONDS
}
phase "install"

scripts/install-deps.sh build test

phase "build asan"
echo "== build (ASan+UBSan)"
cmake -S . -B build/asan -G Ninja -DDPNB_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/asan -j "$jobs"

# The release tree feeds the Xen lab only: build the programs its scenarios name
# (e2e-project-bins, e2e-guest-bins), not the tests and benchmarks a second time.
phase "build release"
echo "== build (release: the programs the Xen lab runs)"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
mapfile -t lab_bins < <(tests/e2e/run.sh --bins |
  grep -Fx -f <(ninja -C build/release -t targets all | sed -n 's/: phony$//p'))
cmake --build build/release -j "$jobs" --target "${lab_bins[@]}"

phase "build fuzz"
echo "== build (libFuzzer, clang)"
CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DDPNB_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j "$jobs"

status=0
phase "tests"
echo "== tests"
# The Xen lab's CTest entry (e2e) runs below with the release build, not under ASan here.
ctest --test-dir build/asan --output-on-failure --timeout 900 -E '^e2e$' -j "$jobs" \
  | tee build/asan-ctest.log || status=1
phase "stress"
echo "== stress (${DPNB_STRESS_SECONDS} s: simulator-backed tests repeated beside busy loops)"
scripts/stress-tests.sh build/asan | tee build/stress.log || status=1
phase "fuzz"
echo "== fuzz (${DPNB_FUZZ_SECONDS} s per target)"
ctest --test-dir build/fuzz --output-on-failure | tee build/fuzz-ctest.log || status=1

e2e_summary="" package_summary=""
if [ "${DPNB_E2E:-1}" != 0 ]; then
  # The lab's dpnetbackd-package scenario installs it in dom0.
  phase "package"
  echo "== Debian package (debian/, lintian)"
  scripts/install-deps.sh package
  DPNB_JOBS=$jobs scripts/build-package.sh build/package | tee build/package.log || status=1
  package_summary=$(grep -E '^build-package: (built|lintian)' build/package.log || true)
  phase "end to end"
  echo "== end to end: Xen 4.17 under QEMU, Linux xen-netfront guests (tests/e2e)"
  scripts/install-deps.sh e2e
  rm -rf build/e2e-logs
  E2E_XFER_MIB=${E2E_XFER_MIB:-4} tests/e2e/run.sh --build build/release --out build/e2e-logs \
    --deb "$(ls -t build/package/dpnetback_*.deb 2>/dev/null | head -n 1)" \
    | tee build/e2e.log || status=1
  # run.sh's own summary: one verdict per scenario, then the ratio line.
  e2e_summary=$(sed -n '/^== e2e summary/,$p' build/e2e.log |
    grep -E '^  E2E |^== dpnetbackd / in-kernel' | sed 's/^  //' | cut -c1-160 || true)
else
  echo "== end to end: left out (DPNB_E2E=0)"
fi

phase ""
echo "== summary"
echo "  phases: $(printf '%s, ' "${phases[@]}" | sed 's/, $//') ($SECONDS s in all)"
grep -h 'tests passed' build/asan-ctest.log build/fuzz-ctest.log | sed 's/^/  /'
grep -h -e '^stress: .* no failure' -e '^== stress: FAILED' -A2 build/stress.log | sed 's/^/  /' || true
[ -z "$package_summary" ] || sed 's/^/  /' <<<"$package_summary"
[ -z "$e2e_summary" ] || sed 's/^/  /' <<<"$e2e_summary"
if [ $status -ne 0 ]; then echo "FAILED"; exit 1; fi
echo "ALL TESTS PASSED"
