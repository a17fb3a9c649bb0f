#!/usr/bin/env bash
# Side by side: the load generator (examples/loadgen.rs, a process of its own) against
# `ucan-gateway serve` with its embedded defaults and against a real @ucanto/server 11 doing the same
# `/wasm/run` work (benches/compare/server.mjs), in alternating phases, one server running at a time.
# Every phase verifies sampled answers (a receipt signed by the server's key with the right sum).
#
#   benches/compare/run.sh [ROUNDS]        # environment: GATEWAY_REQUESTS, UCANTO_REQUESTS, CONNECTIONS, CHAIN
#
# Prints one line per phase and, at the end, the median of each side and their ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=${1:-3}
gateway_requests=${GATEWAY_REQUESTS:-20000}
ucanto_requests=${UCANTO_REQUESTS:-2000}
connections=${CONNECTIONS:-32}
chain=${CHAIN:-1}
port=${PORT:-18180}

cargo build --release --locked --quiet --bin ucan-gateway --example loadgen
(cd benches/compare && npm ci --no-audit --no-fund --silent)
gateway=target/release/ucan-gateway
loadgen=target/release/examples/loadgen

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$gateway" key generate -o "$work/root.key" >/dev/null 2>&1

# CPU seconds (user + system) of a process so far, from /proc.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

wait_ready() {
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server on port $port did not come up" >&2
  exit 1
}

# phase NAME REQUESTS WIRE [AUDIENCE]: drives the running server, prints one line, records inv/s.
phase() {
  local name=$1 requests=$2 wire=$3 audience=${4:-}
  local before after out
  before=$(cpu_of "$server_pid")
  out=$("$loadgen" --url "http://127.0.0.1:$port" --root-key "$work/root.key" --requests "$requests" \
    --connections "$connections" --chain "$chain" --wire "$wire" --check 50 --json \
    ${audience:+--audience "$audience"})
  after=$(cpu_of "$server_pid")
  echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
name, requests, rates = sys.argv[1], int(sys.argv[2]), sys.argv[5]
cpu = float(sys.argv[4]) - float(sys.argv[3])
ok, bad = r["statuses"].get("200", 0), r["checked_bad"]
if ok != requests or bad:
    sys.exit(f"{name}: {ok} of {requests} answered 200, {bad} sampled answers wrong: {r}")
rate, p50, p99, checked = r["per_second"], r["p50_ms"], r["p99_ms"], r["checked"]
print(f"{name:<20} {rate:>8.0f} inv/s  p50 {p50:>7.2f} ms  p99 {p99:>7.2f} ms  "
      f"server CPU {cpu * 1e6 / requests:>6.0f} us/inv  checked {checked}")
print(name, rate, file=open(rates, "a"))
' "$name" "$requests" "$before" "$after" "$work/rates"
}

start_gateway() {
  rm -rf "$work/gw"
  "$gateway" serve --data-dir "$work/gw" --key "$work/root.key" --listen "127.0.0.1:$port" \
    >"$work/gateway.log" 2>&1 &
  server_pid=$!
  wait_ready livez
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

for round in $(seq 1 "$rounds"); do
  start_gateway
  phase "gateway container" "$gateway_requests" container
  stop_server

  start_gateway
  phase "gateway ucanto-car" "$gateway_requests" ucanto
  stop_server

  node benches/compare/server.mjs "$work/root.key" "$port" >"$work/ucanto.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 200); do grep -q '^ready ' "$work/ucanto.log" && break; sleep 0.05; done
  did=$(sed -n 's/^ready //p' "$work/ucanto.log")
  [ -n "$did" ] || { cat "$work/ucanto.log" >&2; exit 1; }
  phase "@ucanto/server 11" "$ucanto_requests" ucanto "$did"
  stop_server
  echo "-- round $round of $rounds done"
done

python3 - "$work/rates" <<'EOF'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    name, rate = line.rsplit(" ", 1)
    rates.setdefault(name, []).append(float(rate))
median = {name: statistics.median(v) for name, v in rates.items()}
peer = median["@ucanto/server 11"]
for name, m in median.items():
    print(f"median {name:<22} {m:>9.0f} inv/s  {m / peer:>6.1f}x @ucanto/server")
EOF
