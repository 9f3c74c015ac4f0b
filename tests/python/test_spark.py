"""docs/external-tables.md's Spark SQL run by Spark (local mode, one
session for the module) over a dataset written by the real layer and
collector (examples/answer_dataset.rs). The doc drives the test: its
`CREATE TABLE` blocks are run as written (only the bucket becomes the local
directory), with the Spark setting and the `MSCK REPAIR TABLE` the doc
names, and every column they declare must hold, in every row, what
`audit-collector query` reads from the same files; `activity` and `who`
asked in Spark SQL answer what the commands answer. A file of the first
schema beside the v2 files reads in the same table with the added columns
null."""

import calendar
import datetime as dt
import decimal
import json
import os
import pathlib
import re
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest
from pyspark.sql import Row, SparkSession

import answer_data

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = answer_data.BIN
DOC = (ROOT / "docs" / "external-tables.md").read_text()
SECTION = re.search(r"\n## Spark SQL\n(.*?)\n## ", DOC, re.S).group(1)
DDL = re.findall(r"```sql\n(.*?)```", SECTION, re.S)
# The reader setting the doc's type notes give for nanosecond timestamps.
SETTING = re.search(r"`(spark\.sql\.[\w.]+)=(\w+)`", DOC).groups()
# The doc's conversion of a nanosecond BIGINT to a Spark timestamp.
TO_TIMESTAMP = re.search(r"`(timestamp_micros\(start_time DIV 1000\))`", DOC).group(1)
# The audit columns the first files lack, from their one definition.
AUDIT_ADDED = re.findall(r'"(\w+)"', re.search(
    r"pub const AUDIT_ADDED: &\[&str\] = &\[(.*?)\];",
    (ROOT / "schema" / "src" / "record.rs").read_text(), re.S).group(1))


def table_name(ddl):
    return re.search(r"CREATE TABLE (\w+)", ddl).group(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    parent = tmp_path_factory.mktemp("spark")
    info = answer_data.write(parent / "audit-data")
    answer_data.collector()
    root = (parent / "audit-data").as_uri()
    spark = (SparkSession.builder.master("local[1]").appName("external-tables")
             .config(*SETTING)
             .config("spark.sql.warehouse.dir", str(parent / "warehouse"))
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", "1")
             .config("spark.ui.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    assert "MSCK REPAIR TABLE" in SECTION
    tables = []
    for ddl in DDL:
        spark.sql(ddl.replace("s3a://bucket/prefix", root).strip().rstrip(";"))
        tables.append(table_name(ddl))
        # The doc's step for hours that appeared after the table was made.
        spark.sql(f"MSCK REPAIR TABLE {tables[-1]}")
    info.update(spark=spark, dir=str(parent / "audit-data"), tables=tables)
    info.update(mixed(spark, parent))
    yield info
    spark.stop()


def mixed(spark, parent):
    """The doc's audit table over a copy of the dataset holding, beside the
    collector's files, a file of the first schema: one sealed audit file with
    the added columns dropped, written into an hour no other file uses. A
    copy, so that `verify` and the commands keep reading the collector's own
    files; the same session, so that one Spark reads both kinds together."""
    src, root = parent / "audit-data", parent / "mixed-data"
    shutil.copytree(src, root)
    files = sorted((root / "audit").rglob("*.parquet"))
    assert files, "no audit file to copy"
    used = {f.parent.name for f in files}
    hour = next(f"hour={h:02}" for h in range(24) if f"hour={h:02}" not in used)
    # The file whose rows carry the most chains, so dropping them shows.
    def chains(f):
        origin = pq.read_table(f, columns=["origin_id"]).column("origin_id")
        return len(origin) - origin.null_count
    original = max(files, key=chains)
    v2 = pq.read_table(original)
    assert set(AUDIT_ADDED) <= set(v2.column_names), AUDIT_ADDED
    v1_dir = original.parent.parent / hour
    v1_dir.mkdir()
    v1 = v2.drop_columns(AUDIT_ADDED)
    pq.write_table(v1, v1_dir / original.name)
    ddl = next(d for d in DDL if table_name(d) == "audit")
    spark.sql(ddl.replace("CREATE TABLE audit", "CREATE TABLE audit_mixed")
              .replace("s3a://bucket/prefix", root.as_uri()).strip().rstrip(";"))
    spark.sql("MSCK REPAIR TABLE audit_mixed")
    return {"v1_partition": (original.parent.parent.name.split("=", 1)[1], hour.split("=", 1)[1]),
            "v1_ids": sorted(v1.column("event_id").to_pylist()),
            "v1_columns": v1.column_names}


def cli(*args):
    r = subprocess.run([str(BIN), *args], capture_output=True, text=True,
                       env={**os.environ, "RUST_LOG": "warn"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def spark_rows(data, sql):
    return [r.asDict(recursive=True) for r in data["spark"].sql(sql).collect()]


RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def ns(rfc3339):
    """The command's RFC 3339 time (nanoseconds) as ns since the epoch."""
    m = RFC3339.match(rfc3339)
    assert m, rfc3339
    base = dt.datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return calendar.timegm(base.utctimetuple()) * 10**9 + int((m.group(2) or "").ljust(9, "0"))


def same(spark, ours, where):
    """Spark's value equals the command's, across the two engines' ways of
    showing a type: BIGINT ns against RFC 3339, DECIMAL against a number,
    DATE against ISO text; lists, maps and structs element by element."""
    if isinstance(spark, Row):
        spark = spark.asDict(recursive=True)
    if isinstance(spark, dict) and isinstance(ours, dict):
        assert spark.keys() == ours.keys(), (where, spark, ours)
        for k in spark:
            same(spark[k], ours[k], f"{where}.{k}")
    elif isinstance(spark, list) and isinstance(ours, list):
        assert len(spark) == len(ours), (where, spark, ours)
        for i, (s, o) in enumerate(zip(spark, ours)):
            same(s, o, f"{where}[{i}]")
    elif isinstance(spark, int) and isinstance(ours, str) and RFC3339.match(ours):
        assert spark == ns(ours), (where, spark, ours)
    elif isinstance(spark, decimal.Decimal):
        assert spark == decimal.Decimal(ours), (where, spark, ours)
    elif isinstance(spark, dt.date):
        assert spark.isoformat() == ours, (where, spark, ours)
    else:
        assert spark == ours, (where, spark, ours)


def same_rows(spark, ours, columns=None):
    assert [r["event_id"] for r in spark] == [r["event_id"] for r in ours]
    for s, o in zip(spark, ours):
        for k in columns or s.keys():
            same(s[k], o[k], f"{s['event_id']}.{k}")


def test_doc_has_the_spark_tables():
    assert [table_name(d) for d in DDL] == ["audit", "violations"]
    assert SETTING == ("spark.sql.legacy.parquet.nanosAsLong", "true")


@pytest.mark.parametrize("table", ["audit", "violations"])
def test_spark_tables_hold_what_the_command_reads(data, table):
    assert table in data["tables"]
    sql = f"SELECT * FROM {table} ORDER BY event_id"
    spark, ours = spark_rows(data, sql), cli("query", "--data-dir", data["dir"], "--format", "json", sql)
    assert spark, f"no rows in {table}"
    # Every column the DDL declares, in the command's order, no more, no less.
    assert list(spark[0].keys()) == list(ours[0].keys())
    same_rows(spark, ours)


def test_activity_in_spark_equals_the_command(data):
    frm, to = ns(data["from"]), ns(data["to"])
    for flag, column, who in [("--agent", "agent_id", "agt_ledger"), ("--owner", "owner_id", "usr_alice")]:
        spark = spark_rows(data, f"""SELECT * FROM audit WHERE {column} = '{who}'
            AND start_time >= {frm} AND start_time < {to} ORDER BY start_time, seq""")
        ours = cli("activity", "--data-dir", data["dir"], "--format", "json", flag, who,
                   "--from", data["from"], "--to", data["to"])
        assert ours, (flag, who)
        same_rows(spark, ours, [k for k in ours[0] if k in spark[0]])
    agent = spark_rows(data, f"""SELECT event_id, agent_credential_id FROM audit
        WHERE agent_id = 'agt_ledger' AND start_time >= {frm} AND start_time < {to}
        ORDER BY start_time, seq""")
    assert [(r["event_id"], r["agent_credential_id"]) for r in agent] == \
        list(zip(data["ledger"], ["key_A", "key_A", "key_B"]))


def test_who_in_spark_equals_the_command(data):
    for eid in [data["human_ok"], *data["ledger"], data["other_agent"]]:
        spark = spark_rows(data, f"SELECT *, {TO_TIMESTAMP} AS at FROM audit WHERE event_id = '{eid}'")
        ours = cli("who", "--data-dir", data["dir"], "--format", "json", eid)
        assert len(spark) == len(ours) == 1, eid
        same_rows(spark, ours, [k for k in ours[0] if k in spark[0]])
        # The doc's conversion keeps the time to the microsecond.
        # (PySpark hands a naive datetime in the local zone; timestamp() reads it so.)
        at = spark[0]["at"]
        assert int(at.timestamp()) * 10**6 + at.microsecond == spark[0]["start_time"] // 1000


def test_violations_in_spark(data):
    v = spark_rows(data, "SELECT service_name, agent_id, kind FROM violations")
    assert [(r["service_name"], r["agent_id"]) for r in v] == [("billing", "agt_rogue")]


def test_spark_reads_first_schema_files_beside_v2(data):
    """One query over both kinds of file: the first schema's rows hold null in
    the added columns, every other column as the collector's file holds it,
    and the v2 rows are the audit table's, unchanged."""
    date, hour = data["v1_partition"]
    in_v1 = f"(date = DATE'{date}' AND hour = '{hour}')"
    v1 = spark_rows(data, f"SELECT * FROM audit_mixed WHERE {in_v1} ORDER BY event_id")
    assert [r["event_id"] for r in v1] == data["v1_ids"] and v1
    for r in v1:
        assert all(r[c] is None for c in AUDIT_ADDED), r
    ids = ", ".join(f"'{e}'" for e in data["v1_ids"])
    before = spark_rows(data, f"SELECT * FROM audit WHERE event_id IN ({ids}) ORDER BY event_id")
    assert any(r[c] is not None for r in before for c in AUDIT_ADDED), "the copied rows hold no v2 value"
    kept = [c for c in data["v1_columns"] if c in before[0]] + ["date"]
    assert [{c: r[c] for c in kept} for r in v1] == [{c: r[c] for c in kept} for r in before]
    v2 = spark_rows(data, f"SELECT * FROM audit_mixed WHERE NOT {in_v1} ORDER BY event_id, hour")
    assert v2 == spark_rows(data, "SELECT * FROM audit ORDER BY event_id, hour")
    # An answer over both: each copied row counted twice, every other once.
    counts = spark_rows(data, """SELECT event_id, count(*) AS n, count(origin_id) AS with_origin
        FROM audit_mixed GROUP BY event_id ORDER BY event_id""")
    assert {r["event_id"]: r["n"] for r in counts} == \
        {r["event_id"]: 1 + (r["event_id"] in data["v1_ids"])
         for r in spark_rows(data, "SELECT event_id FROM audit")}
    origins = {r["event_id"]: r["origin_id"] for r in before}
    for r in counts:
        if r["event_id"] in origins:
            assert r["with_origin"] == (origins[r["event_id"]] is not None), r
