#!/usr/bin/env bash
# plan and create-env of staging and production against moto, side by side:
# API calls made, and wall time with 0 ms and 100 ms injected per request
# (tests/peers/fault_proxy.py). The longest sequential chain of calls is
# measured, not guessed: (wall at 100 ms - wall at 0 ms) / 100 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
cargo build -q -p fabrs-cli
fabrs=$(realpath "${CARGO_TARGET_DIR:-target}/debug/fabrs")
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 NO_COLOR=1
export FABRS_SECRET_DB_PASSWORD=bench FABRS_SECRET_CACHE_PASSWORD=bench FABRS_SECRET_QUEUE_PASSWORD=bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

run() { # env latency_ms → "plan_calls plan_ms create_calls create_ms"
  local env=$1 latency=$2 mp pp moto proxy
  mp=$(free_port); pp=$(free_port)
  MOTO_EC2_LOAD_DEFAULT_AMIS=false .venv/bin/moto_server -H 127.0.0.1 -p "$mp" >/dev/null 2>&1 & moto=$!
  wait_port "$mp"
  python3 tests/peers/fault_proxy.py --port "$pp" --upstream "http://127.0.0.1:$mp" --latency-ms "$latency" & proxy=$!
  wait_port "$pp"
  local t0 t1 t2 pc cc
  # moto's first requests are slow (it builds its regions): warm it up, untimed.
  "$fabrs" --endpoint-url "http://127.0.0.1:$mp" plan "$env" >/dev/null 2>&1
  t0=$(date +%s%N)
  pc=$("$fabrs" -v --endpoint-url "http://127.0.0.1:$pp" plan "$env" 2>&1 >/dev/null | sed -n 's/^api calls: \([0-9]*\) operations.*/\1/p')
  t1=$(date +%s%N)
  cc=$("$fabrs" -v --endpoint-url "http://127.0.0.1:$pp" create-env "$env" --yes 2>&1 >/dev/null | sed -n 's/^api calls: \([0-9]*\) operations.*/\1/p')
  t2=$(date +%s%N)
  kill $moto $proxy 2>/dev/null; wait $moto $proxy 2>/dev/null || true
  echo "$pc $(( (t1 - t0) / 1000000 )) $cc $(( (t2 - t1) / 1000000 ))"
}

printf '%-11s %-9s %10s %12s %12s %14s %16s\n' env command api-calls "wall@0ms" "wall@100ms" "chain (calls)" "calls/chain"
for env in staging production; do
  read -r p0 pt0 c0 ct0 < <(run "$env" 0)
  read -r p1 pt1 c1 ct1 < <(run "$env" 100)
  for cmd in plan create-env; do
    if [ $cmd = plan ]; then n=$p0; a=$pt0; b=$pt1; else n=$c0; a=$ct0; b=$ct1; fi
    chain=$(( (b - a) / 100 ))
    ratio=$(python3 -c "print(f'{$n/max($chain,1):.1f}')")
    printf '%-11s %-9s %10s %10sms %10sms %14s %16s\n' "$env" "$cmd" "$n" "$a" "$b" "$chain" "$ratio"
  done
done
