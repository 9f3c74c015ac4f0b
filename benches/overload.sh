#!/usr/bin/env bash
# Collector memory under sustained overload: several load generators, each
# with many clients, drive one collector (default settings, fsync on) past
# what it can store; the collector throttles (429/503, UNAVAILABLE) and the
# loadgens retry. Prints the collector's RSS sampled through the run (it
# must level off, not grow), its peak, the throttled answers, and checks that
# every acknowledged record is stored. The peak is the collector's VmHWM,
# read until it exits (its shutdown seal included).
# Usage: benches/overload.sh [LOADGENS] [RECORDS_EACH] [CLIENTS_EACH] [QUEUE_DEPTH]
# QUEUE_DEPTH (requests waiting for the writer, default 1024) below the
# number of clients makes the collector throttle instead of queueing.
set -euo pipefail
cd "$(dirname "$0")/.."
gens=${1:-3}; records=${2:-400000}; clients=${3:-32}; depth=${4:-1024}
# One build for both (as benches/ingest.sh): built apart, the example's
# dev-dependencies change the features of shared dependencies, and each
# build redoes the other's.
cargo build --release -q --no-default-features --bin audit-collector --example loadgen
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$data" "$data.out" "$data.toml" "$data".lg*' EXIT
printf '[store]\nqueue_depth = %s\n' "$depth" > "$data.toml"
./target/release/audit-collector serve --config "$data.toml" --data-dir "$data/store" \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 > "$data.out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q listening "$data.out" 2>/dev/null && break; sleep 0.1; done
grpc=$(sed -n 's/.*otlp_grpc=\([^ ]*\).*/\1/p' "$data.out")
lgpids=()
for i in $(seq "$gens"); do
    ./target/release/examples/loadgen --endpoint "http://$grpc" --protocol grpc \
        --records "$records" --concurrency "$clients" --batch 500 > "$data.lg$i" 2>&1 &
    lgpids+=($!)
done
samples=()
while kill -0 "${lgpids[@]}" 2>/dev/null; do
    samples+=("$(awk '/VmRSS/ {print int($2/1024)}' /proc/$pid/status)")
    sleep 0.5
done
wait "${lgpids[@]}" || true
acked=0; throttled=0
for i in $(seq "$gens"); do
    line=$(tail -1 "$data.lg$i"); echo "loadgen $i: $line"
    acked=$(( acked + $(sed -n 's/.*acked=\([0-9]*\).*/\1/p' <<< "$line") ))
    throttled=$(( throttled + $(sed -n 's/.*throttled=\([0-9]*\).*/\1/p' <<< "$line") ))
done
echo "rss_mib_every_0.5s: ${samples[*]}"
# The peak includes the shutdown seal: VmHWM is read until the process is gone.
hwm() { awk '/VmHWM/ {print int($2/1024)}' /proc/$pid/status 2>/dev/null || true; }
peak_mib=$(hwm)
kill -TERM $pid
while kill -0 $pid 2>/dev/null; do h=$(hwm); peak_mib=${h:-$peak_mib}; sleep 0.1; done
wait $pid || true
# The summary line (a coverage line follows it).
stored=$(./target/release/audit-collector verify --data-dir "$data/store" | grep -E '^(intact|NOT INTACT):')
echo "collector peak_rss_mib=$peak_mib (VmHWM) throttled_answers=$throttled acked_records=$acked"
echo "verify: $stored"
rows=$(sed -n 's/.* \([0-9]*\) rows.*/\1/p' <<< "$stored")
[ "$rows" = "$acked" ] && echo "every acknowledged record stored: yes" || { echo "stored $rows != acked $acked"; exit 1; }
