#!/usr/bin/env bash
# Whole-process time of `fabrs validate` (goal: under 20 ms), measured with
# hyperfine next to `true` (the cost of starting any process here).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
cargo build -q --release -p fabrs-cli
bin="${CARGO_TARGET_DIR:-target}/release/fabrs"
hyperfine -N --warmup 10 --runs 200 \
  "$bin validate environments/staging.yaml" \
  "$bin validate environments/production.yaml" \
  "true"
