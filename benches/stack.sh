#!/usr/bin/env bash
# refapp's cached GET / through fabrs's rendered nginx vs nginx serving a
# static file of the same size (wrk, same machine, one run), and the worker's
# thumbnail rendering vs Pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
cargo test -q -p refapp --test e2e_nginx -- --ignored --nocapture bench_cached_index_vs_static_file 2>&1 | grep -v '^running\|^test result\|^$'
crates/refapp/scripts/bench-thumbnails
