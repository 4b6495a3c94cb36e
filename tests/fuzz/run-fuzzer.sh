#!/usr/bin/env bash
# run-fuzzer.sh BINARY SEED_DIR: runs a libFuzzer target for DPNB_FUZZ_SECONDS on a scratch
# copy of its seed corpus (the committed seeds stay as they are). Exit status is libFuzzer's.
set -euo pipefail
bin=$1; seeds=$2
secs=${DPNB_FUZZ_SECONDS:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
[ -d "$seeds" ] && cp -r "$seeds"/. "$work/corpus/" 2>/dev/null || true
cd "$work"
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 corpus
