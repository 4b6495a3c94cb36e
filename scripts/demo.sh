#!/usr/bin/env bash
# README's first command: installs what is missing, builds dpnetback (release), and runs the
# demo. Today the demo is the netif protocol core at work (dpnb-protocol-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${DPNB_JOBS:-$(nproc)}
scripts/install-deps.sh build test   # the build configures the tests too
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "$jobs" --target dpnb-protocol-demo
exec build/release/tests/tools/dpnb-protocol-demo
