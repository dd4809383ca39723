#!/usr/bin/env bash
# refapp's cached GET / through fabrs's rendered nginx vs nginx serving a
# static file of the same size (wrk, same machine, one run), and the worker's
# thumbnail rendering vs Pillow. Release builds throughout: `cargo test
# --release` makes the test's CARGO_BIN_EXE_refapp the optimized binary (the
# debug build serves the cached page about 3x slower and measured that instead).
# The first part prints requests/s and p99 of both sides and their ratio
# (issue 11's target: app/static >= 0.50, in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
echo "== refapp cached GET / vs static file (release build)"
cargo test --release --locked -q -p refapp --test e2e_nginx -- --ignored --nocapture bench_cached_index_vs_static_file 2>&1 | grep -v '^running\|^test result\|^$'
crates/refapp/scripts/bench-thumbnails
