#!/usr/bin/env bash
# Deduplication memory: the collector's resident memory, idle after
# sealing, as distinct event ids pile up inside the dedup window (24 h by
# default): RUNS loadgen runs of RECORDS each (ids unique across runs),
# the RSS printed after each. Before the bounded dedup, every id of the
# window was held in memory (about 110 MB per million).
# Usage: benches/dedup-memory.sh [RUNS] [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}; records=${2:-1000000}
# The lean sidecar (no DataFusion): what runs in production beside the app.
cargo build --release -q --no-default-features --bin audit-collector
cargo build --release -q --no-default-features --example loadgen
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$data" "$data.out"' EXIT
./target/release/audit-collector serve --data-dir "$data" --seal-interval-secs 2 \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 > "$data.out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q listening "$data.out" 2>/dev/null && break; sleep 0.1; done
grpc=$(sed -n 's/.*otlp_grpc=\([^ ]*\).*/\1/p' "$data.out")
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "start rss_kb=$(rss)"
for i in $(seq "$runs"); do
    rate=$(./target/release/examples/loadgen --endpoint "http://$grpc" --records "$records" \
        --concurrency 8 --batch 500 | tail -1)
    sleep 5 # past the seal interval: everything sealed, the writer idle
    echo "ids=$(( i * records )) rss_kb=$(rss) $rate"
done
echo "peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
kill -TERM $pid; wait $pid || true
./target/release/audit-collector verify --data-dir "$data" | tail -2
