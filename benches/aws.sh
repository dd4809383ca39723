#!/usr/bin/env bash
# plan, create-env, plan of the built stack and destroy-env, of staging and
# production, against a seeded moto through tests/peers/fault_proxy.py: the
# API calls each command made and the round trips it made in series, both
# counted from the proxy's trace (benches/series.py), and its wall time with
# 0 ms and 100 ms injected per request. Each run on a fresh moto.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
# FABRS_BIN: a fabrs binary already built (the workspace's test build has one).
if [ -z "${FABRS_BIN:-}" ]; then
  cargo build -q -p fabrs-cli
  FABRS_BIN="${CARGO_TARGET_DIR:-target}/debug/fabrs"
fi
fabrs=$(realpath "$FABRS_BIN")
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 NO_COLOR=1
export FABRS_SECRET_DB_PASSWORD=bench-Pa55word FABRS_SECRET_CACHE_PASSWORD=bench-Pa55word \
       FABRS_SECRET_QUEUE_PASSWORD=bench-Pa55word
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

# run ENV LATENCY: one line per command: "<command> <calls> <series> <wall ms>"
run() {
  local env=$1 latency=$2 mp pp moto proxy
  mp=$(free_port); pp=$(free_port)
  MOTO_EC2_LOAD_DEFAULT_AMIS=false MOTO_AMIS_PATH=tests/peers/moto-amis.json MOTO_SSM_PUBLIC_PARAMETERS=tests/peers/moto-public-parameters.json \
    .venv/bin/moto_server -H 127.0.0.1 -p "$mp" >/dev/null 2>&1 & moto=$!
  wait_port "$mp"
  # What a user makes by hand before create-env (AMIs, key pair, certificate).
  .venv/bin/python tests/peers/moto-seed --endpoint "http://127.0.0.1:$mp" >/dev/null
  # moto's first requests are slow (it builds its regions): warm it up, untimed.
  # Its -v output names the plan's dependency depth, in changes
  # (fabrs_plan::graph::depth) and in round trips (graph::round_trips).
  "$fabrs" -v --endpoint-url "http://127.0.0.1:$mp" plan "$env" >/dev/null 2>"$work/depth" || true
  echo "depth $(sed -n 's/.*dependency depth: \([0-9]*\) changes, \([0-9]*\) round trips.*/\1 \2/p' "$work/depth") 0"
  local step=0
  while read -r name args; do
    step=$((step + 1))
    local tr="$work/$env-$latency-$step.trace"
    python3 tests/peers/fault_proxy.py --port "$pp" --upstream "http://127.0.0.1:$mp" \
      --latency-ms "$latency" --trace "$tr" & proxy=$!
    wait_port "$pp"
    local t0 t1
    t0=$(date +%s%N)
    # shellcheck disable=SC2086
    "$fabrs" --endpoint-url "http://127.0.0.1:$pp" $args >/dev/null 2>"$work/err" \
      || { [ "$name" = plan ] || [ "$name" = plan-built ] || { cat "$work/err" >&2; exit 1; }; }
    t1=$(date +%s%N)
    kill $proxy; wait $proxy 2>/dev/null || true
    read -r _ calls _ series < <(python3 benches/series.py "$tr")
    echo "$name $calls $series $(( (t1 - t0) / 1000000 ))"
  done <<STEPS
plan plan $env
create-env create-env $env --yes
plan-built plan $env
destroy-env destroy-env $env --yes --disable-deletion-protection --skip-final-snapshot
STEPS
  kill $moto; wait $moto 2>/dev/null || true
}

printf '%-11s %-12s %9s %18s %10s %11s\n' env command api-calls "round trips (series)" "wall@0ms" "wall@100ms"
for env in staging production; do
  mapfile -t zero < <(run "$env" 0)
  mapfile -t slow < <(run "$env" 100)
  for i in "${!zero[@]}"; do
    read -r name calls series w0 <<<"${zero[$i]}"
    read -r _ calls1 series1 w1 <<<"${slow[$i]}"
    if [ "$name" = depth ]; then
      # "depth <changes> <round trips> 0": issue 11's bound for create-env
      # is 1.5 x the round trips the graph needs.
      printf '%-11s %-12s %s\n' "$env" depth "$calls changes, $series round trips (fabrs_plan::graph; create-env's bound: 1.5 x $series = $(python3 -c "print(1.5 * $series)"))"
      continue
    fi
    printf '%-11s %-12s %9s %18s %8sms %9sms\n' "$env" "$name" "$calls1" "$series1" "$w0" "$w1"
  done
done
