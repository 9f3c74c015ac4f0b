"""docs/external-tables.md's DuckDB views, run by DuckDB over a dataset
written by the real layer and collector (examples/answer_dataset.rs): same
columns and same rows as `audit-collector query` over the same files. The
views' S3 lines (httpfs, the secret) are the only part left out: the CI
machine has no bucket DuckDB could reach."""

import json
import os
import pathlib
import re
import subprocess

import duckdb
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("AUDIT_COLLECTOR_BIN", ROOT / "target" / "debug" / "audit-collector"))
DOC = (ROOT / "docs" / "external-tables.md").read_text()
VIEWS = re.search(r"<!-- sql:duckdb-s3 -->\n```sql\n(.*?)```", DOC, re.S).group(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    parent = tmp_path_factory.mktemp("external")
    subprocess.run(
        ["cargo", "run", "-q", "--example", "answer_dataset", str(parent / "audit-data")],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    if not BIN.exists():
        subprocess.run(["cargo", "build", "--bin", "audit-collector"], cwd=ROOT, check=True)
    root = str(parent / "audit-data")
    con = duckdb.connect()
    for stmt in VIEWS.replace("s3://bucket/prefix", root).split(";"):
        s = stmt.strip()
        if s and not s.startswith(("INSTALL", "LOAD", "CREATE SECRET")):
            con.execute(s)
    return {"con": con, "dir": root}


def ours(data, sql):
    r = subprocess.run([str(BIN), "query", "--data-dir", data["dir"], "--format", "json", sql],
                       capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("table", ["audit", "violations"])
def test_duckdb_views_have_the_commands_columns_and_rows(data, table):
    con = data["con"]
    cols = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
    mine = ours(data, f"SELECT * FROM {table} LIMIT 1")
    assert mine and cols == list(mine[0].keys())
    sql = f"SELECT event_id, seq, collector_id, date, hour FROM {table} ORDER BY event_id"
    duck = [dict(zip(["event_id", "seq", "collector_id", "date", "hour"], r))
            for r in con.execute(sql).fetchall()]
    assert duck, f"no rows in {table}"
    for d in duck:
        d["date"] = d["date"].isoformat()
    assert duck == ours(data, sql)


def test_duckdb_types_are_the_documented_ones(data):
    # The doc's type table, DuckDB column (the last), backticks dropped.
    table = re.search(r"\| Parquet \(Arrow\) \|.*?\n\n", DOC, re.S).group(0)
    documented = {row.rsplit("|", 2)[1].strip().strip("`")
                  for row in table.strip().splitlines()[2:]}
    types = dict(data["con"].execute(
        "SELECT column_name, column_type FROM (DESCRIBE audit)").fetchall())
    assert set(types.values()) <= documented, set(types.values()) - documented
    assert (types["date"], types["hour"], types["seq"], types["start_time"]) == \
        ("DATE", "VARCHAR", "UBIGINT", "TIMESTAMPTZ_NS")
