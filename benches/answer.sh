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
BIN=target/release/audit-collector
python3 -m pip install --quiet --disable-pip-version-check "duckdb>=2.0,<3"

if [ ! -f "$DIR/manifest/gen-1.jsonl" ]; then
    # Only now: an example links the dev-dependencies, a long release build.
    cargo build --release -q --example gen_dataset
    rm -rf "$DIR"
    start=$(date +%s.%N)
    target/release/examples/gen_dataset "$DIR" "$ROWS" > "$DIR.json"
    echo "generated in $(echo "$(date +%s.%N) - $start" | bc) s"
fi
cat "$DIR.json"
du -sh "$DIR/audit"
# Each command records its question (who looked) before answering: in a
# fresh access dataset beside the data, not in the working tree.
ACCESS="$DIR-access"
rm -rf "$ACCESS"
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' (uncommitted changes)'); load: $(uptime)"

python3 - "$BIN" "$DIR" "$DIR.json" "$RUNS" "$ACCESS" <<'PY'
import datetime, json, statistics, subprocess, sys, time
import duckdb

bin_, data, info_path, runs, access = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
info = json.load(open(info_path))
files = int(subprocess.run(["sh", "-c", f"find {data}/audit -name '*.parquet' | wc -l"],
                           capture_output=True, text=True).stdout)
who = [bin_, "who", "--data-dir", data, "--access-dir", access, "--format", "json", info["event_id"]]
act = [bin_, "activity", "--data-dir", data, "--access-dir", access, "--format", "json", "--agent", info["agent"],
       "--from", info["from"], "--to", info["to"]]

def sql_of(cmd):
    return subprocess.run(cmd + ["--show-sql"], check=True, capture_output=True, text=True).stdout

def located(sql, event_id):
    """The SQL with the hour-partition predicate `who` adds first for a
    UUIDv7 id (its time +/- 1 h), so DuckDB may skip the same files."""
    ms = int(event_id.replace("-", "")[:12], 16)
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    lo, hi = t - datetime.timedelta(hours=1), t + datetime.timedelta(hours=1)
    d = lambda x: x.strftime("%Y-%m-%d")
    h = lambda x: x.strftime("%H")
    return (f"{sql.rstrip()}\n  AND (date > DATE '{d(lo)}' OR (date = DATE '{d(lo)}' AND hour >= '{h(lo)}'))"
            f"\n  AND (date < DATE '{d(hi)}' OR (date = DATE '{d(hi)}' AND hour <= '{h(hi)}'))")

def run_cli(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    n = len(json.loads(p.stdout)) if p.returncode == 0 else 0
    return elapsed, n

def run_duck(sql):
    t = time.perf_counter()
    con = duckdb.connect()  # fresh each run, like a fresh CLI process
    con.execute(f"CREATE VIEW audit AS SELECT * FROM read_parquet('{data}/audit/**/*.parquet', hive_partitioning = true)")
    n = len(con.execute(sql).fetchall())
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed, n

def timed(cases):
    """Median of `runs` runs of each case, the cases interleaved run by run
    so that a burst of load on the shared machine hits them alike."""
    ts = [[] for _ in cases]
    ns = [None] * len(cases)
    for _ in range(runs):
        for i, run in enumerate(cases):
            t, ns[i] = run()
            ts[i].append(t)
    return [statistics.median(t) for t in ts], ns

missing = "01a1998e-4400-7000-8000-ffffffffffff"  # a v7 id in the data's hours, stored nowhere
print(f"\n{info['rows']:,} rows in {files} files; median of {runs} interleaved runs, page cache warm\n")
print(f"| question | audit-collector (release, whole process) | DuckDB {duckdb.__version__} (python, connect + view + query) | ratio | DuckDB given the located SQL | rows |")
print("|---|---|---|---|---|---|")
for name, cmd, event_id, expect in [
    ("who EVENT_ID", who, info["event_id"], None),
    ("who, an id stored nowhere (located look, then every file)", who[:-1] + [missing], missing, 0),
    (f"activity --agent {info['agent']}, one hour", act, None, None),
]:
    sql = sql_of(cmd)
    cases = [lambda: run_cli(cmd), lambda: run_duck(sql)]
    if event_id:
        loc = located(sql, event_id)
        cases.append(lambda: run_duck(loc))
    (c, d, *l), (n1, n2, *n3) = timed(cases)
    assert n1 == n2 and all(n == n1 for n in n3), (name, n1, n2, n3)
    assert expect is None or n1 == expect, (name, n1)
    located_col = f"{l[0]*1000:.0f} ms" if l else "(the SQL has it)"
    print(f"| `{name}` | {c*1000:.0f} ms | {d*1000:.0f} ms | {c/d:.2f} | {located_col} | {n1} |")
PY
