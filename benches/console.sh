#!/usr/bin/env bash
# Console benchmark: each view of the release binary's console, answered
# over loopback, on the 10 M-row dataset of benches/answer.sh (generated
# once with examples/gen_dataset.rs, kept under /tmp, never in the repo).
#
#   benches/console.sh [ROWS] [DIR]      # defaults: 10000000 /tmp/audit-bench-answer
#
# Each view is asked once to warm the page cache, then RUNS times (default
# 5); the table gives the median and the slowest, whole request to whole
# answer (the access row of each question made durable included). Trail
# health answers from the latest background verify: the script first waits
# for that run and reports how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
DIR=${2:-/tmp/audit-bench-answer}
RUNS=${RUNS:-5}

cargo build --release -q --bin audit-collector
cargo build --release -q --example gen_dataset
BIN=target/release/audit-collector

if [ ! -f "$DIR/manifest/gen-1.jsonl" ]; then
    rm -rf "$DIR"
    start=$(date +%s.%N)
    target/release/examples/gen_dataset "$DIR" "$ROWS" > "$DIR.json"
    echo "generated in $(echo "$(date +%s.%N) - $start" | bc) s"
fi
cat "$DIR.json"

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
token=bench-console-token-0123456789
echo "bench:$token" > "$work/viewers"
mkfifo "$work/out"
RUST_LOG=warn "$BIN" console --data-dir "$DIR" --listen 127.0.0.1:0 \
    --tokens-file "$work/viewers" --access-dir "$work/access" > "$work/out" &
pid=$!
exec 3< "$work/out"
read -r line <&3
base=$(tr ' ' '\n' <<<"$line" | grep '^http://')
echo "$line"

python3 - "$base" "$token" "$DIR.json" "$RUNS" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request

base, token, info_path, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
info = json.load(open(info_path))
whole = ("2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z")

def ask(path):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return time.perf_counter() - t, status, body.decode()

t0 = time.perf_counter()
while True:
    _, status, body = ask("/health")
    if ">VERIFYING<" not in body and "under way" not in body:
        break
    time.sleep(0.5)
print(f"\nbackground verify finished {time.perf_counter() - t0:.1f} s after the first trail-health request")

q = urllib.parse.urlencode
views = [
    ("Find an action: event id", "/find?" + q({"event_id": info["event_id"]})),
    ("Find: search by target, whole dataset (48 h)", "/find?" + q({"target": "obj_4242", "from": whole[0], "to": whole[1]})),
    ("Prove human", "/prove?" + q({"event_id": info["event_id"]})),
    ("Timeline: agent, one hour", "/timeline?" + q({"agent": info["agent"], "from": info["from"], "to": info["to"]})),
    ("Timeline: agent, whole dataset", "/timeline?" + q({"agent": info["agent"], "from": whole[0], "to": whole[1]})),
    ("Timeline: owner, whole dataset", "/timeline?" + q({"owner": "usr_007", "from": whole[0], "to": whole[1]})),
    ("Timeline: owner, ten years, page 100", "/timeline?" + q({"owner": "usr_007", "from": "2016-11-01", "to": "2026-11-30", "page": 100})),
    ("Timeline export CSV: agent, one hour", "/timeline.csv?" + q({"agent": info["agent"], "from": info["from"], "to": info["to"]})),
    ("Violations: whole dataset", "/violations?" + q({"from": whole[0], "to": whole[1]})),
    ("Trail health (latest verify)", "/health"),
    ("Who looked", "/access"),
]
print(f"\n{info['rows']:,} rows; median and slowest of {runs} requests after one warm-up\n")
print("| view | median | slowest | status |")
print("|---|---|---|---|")
for name, path in views:
    ask(path)
    ts, status = [], None
    for _ in range(runs):
        t, status, _ = ask(path)
        ts.append(t)
    print(f"| {name} | {statistics.median(ts)*1000:.0f} ms | {max(ts)*1000:.0f} ms | {status} |")
PY
