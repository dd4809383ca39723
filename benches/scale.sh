#!/usr/bin/env bash
# Does plan grow with the account? Plan of a built staging with 0, 10 and 30
# other environments of the same project in the same account (copies of
# staging under other names, made by create-env), against a seeded moto
# through tests/peers/fault_proxy.py at 100 ms per request: API calls and
# round trips in series (from the proxy's trace, benches/series.py) and wall
# time, the median of 3 plans each. Issue 11 item 6.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scripts/setup >/dev/null
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

mkdir -p "$work/project/environments"
cp environments/staging.yaml "$work/project/environments/"
mp=$(free_port)
MOTO_EC2_LOAD_DEFAULT_AMIS=false MOTO_AMIS_PATH=tests/peers/moto-amis.json \
  MOTO_SSM_PUBLIC_PARAMETERS=tests/peers/moto-public-parameters.json \
  .venv/bin/moto_server -H 127.0.0.1 -p "$mp" >/dev/null 2>&1 &
wait_port "$mp"
.venv/bin/python tests/peers/moto-seed --endpoint "http://127.0.0.1:$mp" >/dev/null
cd "$work/project"
make_env() { "$fabrs" --endpoint-url "http://127.0.0.1:$mp" create-env "$1" --yes >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }; }
make_env staging

# plan staging 3 times through the proxy: "<calls> <series> <median wall ms>"
measure() {
  local pp walls=() calls series
  pp=$(free_port)
  for run in 1 2 3; do
    local tr="$work/trace-$1-$run"
    python3 "$repo/tests/peers/fault_proxy.py" --port "$pp" --upstream "http://127.0.0.1:$mp" \
      --latency-ms 100 --trace "$tr" & local proxy=$!
    wait_port "$pp"
    local t0 t1
    t0=$(date +%s%N)
    "$fabrs" --endpoint-url "http://127.0.0.1:$pp" plan staging >/dev/null 2>"$work/err" \
      || { cat "$work/err" >&2; exit 1; }
    t1=$(date +%s%N)
    kill $proxy; wait $proxy 2>/dev/null || true
    read -r _ calls _ series < <(python3 "$repo/benches/series.py" "$tr")
    # SCALE_TRACES=DIR keeps the traces (which calls grew: benches/series.py --chain).
    if [ -n "${SCALE_TRACES:-}" ]; then mkdir -p "$SCALE_TRACES" && cp "$tr" "$SCALE_TRACES/"; fi
    walls+=($(( (t1 - t0) / 1000000 )))
  done
  mapfile -t sorted < <(printf '%s\n' "${walls[@]}" | sort -n)
  echo "$calls $series ${sorted[1]}"
}

printf '%-26s %9s %20s %12s\n' "other environments" api-calls "round trips (series)" "wall@100ms"
made=0
for others in 0 10 30; do
  while [ "$made" -lt "$others" ]; do
    made=$((made + 1))
    sed "s/^environment: staging$/environment: other$made/" "$repo/environments/staging.yaml" \
      > "environments/other$made.yaml"
    make_env "other$made"
  done
  read -r calls series wall < <(measure "$others")
  printf '%-26s %9s %20s %10sms\n' "$others" "$calls" "$series" "$wall"
done
