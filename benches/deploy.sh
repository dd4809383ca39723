#!/usr/bin/env bash
# A deploy of staging (2 web, 1 worker, migrations over a real sshd) against
# moto through tests/peers/fault_proxy.py at 100 ms per request: its API calls
# and round trips in series (from the proxy's trace, benches/series.py), with
# the longest chain of calls. moto reports new instances healthy at once.
# Runs the ignored test `bench_deploy_calls_and_round_trips` of
# crates/fabrs-cli/tests/deploy.rs (its moto, sshd and project set-up).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
cargo test -q -p fabrs-cli --test deploy bench_deploy_calls_and_round_trips -- --ignored --nocapture 2>&1 \
  | sed -n '/^deploy calls/,/^$/p'
