#!/usr/bin/env bash
# Collector ingest throughput, fsync on: loadgen -> OTLP -> WAL (group
# commit, fsync) -> Parquet sealed at shutdown, on this machine, loopback.
# Usage: benches/ingest.sh [RECORDS] [CONCURRENCY] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}; conc=${2:-8}; batch=${3:-500}
# The lean sidecar (no DataFusion): what runs in production beside the app.
cargo build --release -q -p audit-collector --no-default-features --bin audit-collector
cargo build --release -q --example loadgen
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
./target/release/audit-collector serve --data-dir "$data" \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 > "$data.out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q listening "$data.out" 2>/dev/null && break; sleep 0.1; done
grpc=$(sed -n 's/.*otlp_grpc=\([^ ]*\).*/\1/p' "$data.out")
http=$(sed -n 's/.*otlp_http=\([^ ]*\).*/\1/p' "$data.out")
echo "grpc: $(./target/release/examples/loadgen --endpoint "http://$grpc" --protocol grpc --records "$records" --concurrency "$conc" --batch "$batch" | tail -1)"
echo "http: $(./target/release/examples/loadgen --endpoint "http://$http" --protocol http --records "$records" --concurrency "$conc" --batch "$batch" | tail -1)"
fsyncs=$(curl -s "http://$http/metrics" | awk '/^audit_collector_wal_fsyncs_total/ {print $2}')
peak_kb=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
bytes=$(du -sb "$data/audit" | cut -f1)
echo "wal_fsyncs=$fsyncs peak_rss_kb=$peak_kb parquet_bytes=$bytes bytes_per_record=$(( bytes / (2 * records) ))"
./target/release/audit-collector verify --data-dir "$data" | tail -1
rm -f "$data.out"
