#!/usr/bin/env bash
# Answerability benchmark: `who` (point lookup by event_id) and `activity`
# (one agent, one hour) with the release binary, next to exactly the same
# SQL (printed by `--show-sql`) in DuckDB over the same files, in one run.
#
#   benches/answer.sh [ROWS] [DIR]      # defaults: 10000000 /tmp/audit-bench-answer
#
# The dataset is generated once with examples/gen_dataset.rs (kept under
# /tmp, never in the repo) and reused while its manifest exists.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
DIR=${2:-/tmp/audit-bench-answer}
RUNS=${RUNS:-3}

cargo build --release -q --bin audit-collector
cargo build --release -q --example gen_dataset
BIN=target/release/audit-collector
python3 -m pip install --quiet --disable-pip-version-check "duckdb>=2.0,<3"

if [ ! -f "$DIR/manifest/gen-1.jsonl" ]; then
    rm -rf "$DIR"
    start=$(date +%s.%N)
    target/release/examples/gen_dataset "$DIR" "$ROWS" > "$DIR.json"
    echo "generated in $(echo "$(date +%s.%N) - $start" | bc) s"
fi
cat "$DIR.json"
du -sh "$DIR/audit"

python3 - "$BIN" "$DIR" "$DIR.json" "$RUNS" <<'PY'
import json, statistics, subprocess, sys, time
import duckdb

bin_, data, info_path, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
info = json.load(open(info_path))
files = int(subprocess.run(["sh", "-c", f"find {data}/audit -name '*.parquet' | wc -l"],
                           capture_output=True, text=True).stdout)
who = [bin_, "who", "--data-dir", data, "--format", "json", info["event_id"]]
act = [bin_, "activity", "--data-dir", data, "--format", "json", "--agent", info["agent"],
       "--from", info["from"], "--to", info["to"]]

def sql_of(cmd):
    return subprocess.run(cmd + ["--show-sql"], check=True, capture_output=True, text=True).stdout

def time_cli(cmd):
    ts, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), len(json.loads(out))

def time_duck(sql):
    ts, n = [], None
    for _ in range(runs):
        t = time.perf_counter()
        con = duckdb.connect()  # fresh each run, like a fresh CLI process
        con.execute(f"CREATE VIEW audit AS SELECT * FROM read_parquet('{data}/audit/**/*.parquet', hive_partitioning = true)")
        n = len(con.execute(sql).fetchall())
        ts.append(time.perf_counter() - t)
        con.close()
    return statistics.median(ts), n

print(f"\n{info['rows']:,} rows in {files} files; median of {runs} runs, page cache warm\n")
print(f"| question | audit-collector (release, whole process) | DuckDB {duckdb.__version__} (python, connect + view + query) | rows |")
print("|---|---|---|---|")
for name, cmd in [("who EVENT_ID", who), (f"activity --agent {info['agent']}, one hour", act)]:
    c, n1 = time_cli(cmd)
    d, n2 = time_duck(sql_of(cmd))
    assert n1 == n2, (name, n1, n2)
    print(f"| `{name}` | {c*1000:.0f} ms | {d*1000:.0f} ms | {n1} |")
PY
