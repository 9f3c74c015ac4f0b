#!/usr/bin/env bash
# CPU time the collector spends per record (user+sys from /proc), for A/B
# comparisons of collector builds on a machine too busy for wall-clock rates.
# Usage: benches/ingest-cpu.sh COLLECTOR_BINARY [RECORDS] [PROTOCOL]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1; records=${2:-200000}; proto=${3:-grpc}
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$data" "$data.out"' EXIT
"$bin" serve --data-dir "$data" --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 > "$data.out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q listening "$data.out" 2>/dev/null && break; sleep 0.1; done
ep=$(sed -n "s/.*otlp_${proto}=\([^ ]*\).*/\1/p" "$data.out")
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
out=$(./target/release/examples/loadgen --endpoint "http://$ep" --protocol "$proto" --records "$records" --concurrency 8 --batch 500 | tail -1)
t1=$(ticks)
hz=$(getconf CLK_TCK)
peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
echo "$(basename "$bin") $proto: $out cpu_s=$(python3 -c "print(round(($t1-$t0)/$hz,2))") cpu_us_per_record=$(python3 -c "print(round(($t1-$t0)/$hz/$records*1e6,2))") peak_rss_kb=$peak"
