#!/usr/bin/env bash
# Collector ingest throughput, fsync on: loadgen -> OTLP -> WAL (group
# commit, fsync) -> Parquet sealed at shutdown, on this machine, loopback;
# then the same load against rotel's receive-and-discard OTLP receiver
# (`--exporter blackhole`, from PyPI) in the same run, for the ratio.
# Prints the ratios first, then each side's rates and peak RSS (VmHWM of
# the collector, the larger of its two runs, and of rotel, which serves
# both protocols in turn), the commit measured and the machine load
# before and after.
# Usage: benches/ingest.sh [RECORDS] [CONCURRENCY] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}; conc=${2:-8}; batch=${3:-500}
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo -dirty)"
load_before=$(uptime | sed 's/.*load average: //')
# The lean sidecar (no DataFusion): what runs in production beside the app.
# One build for both: built apart, the example's dev-dependencies change
# the features of shared dependencies, and each build redoes the other's.
cargo build --release -q --no-default-features --bin audit-collector --example loadgen
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore rotel
rotel=$(python3 -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
loadgen() { ./target/release/examples/loadgen --endpoint "http://$1" --protocol "$2" \
    --records "$records" --concurrency "$conc" --batch "$batch" | tail -1; }
rate() { sed -n 's/.*rate=\([0-9]*\).*/\1/p' <<< "$1"; }
data=$(mktemp -d)
trap 'kill $pid $rpid 2>/dev/null || true; rm -rf "$data"' EXIT
pid=; rpid=
# Each protocol against a fresh collector, as rotel gets each protocol
# afresh: the seal of the 200,000-row buffer (seal_rows) then falls after
# each timed window, at SIGTERM, instead of inside the second protocol's.
collector() { # PROTOCOL -> "LOADGEN_LINE|PEAK_KB|FSYNCS|VERIFY"
    local dir="$data/$1"; mkdir -p "$dir"
    ./target/release/audit-collector serve --data-dir "$dir" \
        --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 > "$dir.out" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$dir.out" 2>/dev/null && break; sleep 0.1; done
    local ep http line fsyncs peak
    ep=$(sed -n "s/.*otlp_$1=\([^ ]*\).*/\1/p" "$dir.out")
    http=$(sed -n 's/.*otlp_http=\([^ ]*\).*/\1/p' "$dir.out")
    line=$(loadgen "$ep" "$1")
    fsyncs=$(curl -s "http://$http/metrics" | awk '/^audit_collector_wal_fsyncs_total/ {print $2}')
    peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    kill -TERM $pid; wait $pid || true; pid=
    echo "$line|$peak|$fsyncs|$(./target/release/audit-collector verify --data-dir "$dir" 2>&1 | grep intact)"
}
IFS='|' read -r ours_grpc peak_grpc fsyncs_grpc verify_grpc <<< "$(collector grpc)"
IFS='|' read -r ours_http peak_http fsyncs_http verify_http <<< "$(collector http)"
peak_kb=$(( peak_grpc > peak_http ? peak_grpc : peak_http ))
bytes=$(du -sb "$data"/*/audit | awk '{s+=$1} END {print s}')
# The blackhole baseline, same load, same run.
ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(2)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
read -r rg rh <<< "$ports"
"$rotel" start --exporter blackhole --otlp-grpc-endpoint "127.0.0.1:$rg" \
    --otlp-http-endpoint "127.0.0.1:$rh" > /dev/null 2>&1 &
rpid=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$rg") 2>/dev/null && break; sleep 0.1; done
bh_grpc=$(loadgen "127.0.0.1:$rg" grpc)
bh_http=$(loadgen "127.0.0.1:$rh" http)
rpeak_kb=$(awk '/VmHWM/ {print $2}' /proc/$rpid/status)
kill -TERM $rpid; wait $rpid 2>/dev/null || true
ratio() { python3 -c "print(round($(rate "$1")/$(rate "$2"),2))"; }
echo "ratio grpc=$(ratio "$ours_grpc" "$bh_grpc") http=$(ratio "$ours_http" "$bh_http") (collector / rotel blackhole)"
echo "collector grpc: $ours_grpc"
echo "blackhole grpc: $bh_grpc"
echo "collector http: $ours_http"
echo "blackhole http: $bh_http"
echo "peak_rss_mib collector=$(( peak_kb / 1024 )) (grpc $(( peak_grpc / 1024 )), http $(( peak_http / 1024 ))) rotel=$(( rpeak_kb / 1024 ))"
echo "wal_fsyncs grpc=$fsyncs_grpc http=$fsyncs_http parquet_bytes=$bytes bytes_per_record=$(( bytes / (2 * records) ))"
echo "verify grpc: $verify_grpc"
echo "verify http: $verify_http"
echo "commit=$commit load_before=$load_before load_after=$(uptime | sed 's/.*load average: //')"
