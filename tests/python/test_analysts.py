"""docs/analysts.md run by engines that are not ours: every SQL block of the
doc runs in DuckDB over a dataset written by the real layer and collector
(examples/answer_dataset.rs), and the answers must equal those of
`audit-collector who/activity/prove-human --format json` on the same files.
pyarrow's snippets are checked the same way."""

import datetime as dt
import json
import os
import pathlib
import re
import subprocess

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

import answer_data

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = answer_data.BIN
DOC = (ROOT / "docs" / "analysts.md").read_text()
BLOCKS = dict(re.findall(r"<!-- sql:([\w-]+) -->\n```sql\n(.*?)```", DOC, re.S))

# The example values the doc's queries carry, replaced by this run's.
DOC_FROM = "2026-11-28T03:00:00.000000000+00:00"
DOC_TO = "2026-11-28T04:00:00.000000000+00:00"
DOC_WHO = "019a0000-0000-7000-8000-000000000003"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    parent = tmp_path_factory.mktemp("analysts")
    info = answer_data.write(parent / "audit-data")
    answer_data.collector()
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{parent}'")
    for stmt in BLOCKS["duckdb-views"].strip().split(";"):
        if stmt.strip():
            con.execute(stmt)
    info["parent"] = parent
    info["dir"] = str(parent / "audit-data")
    info["con"] = con
    return info


def cli(*args, ok=True):
    r = subprocess.run([str(BIN), *args], capture_output=True, text=True,
                       env={**os.environ, "RUST_LOG": "warn"})
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def iso_ns(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000+00:00"


def with_range(sql, frm, to):
    """The doc's query with this run's range: timestamps and partition bounds."""
    sql = sql.replace(DOC_FROM, iso_ns(frm)).replace(DOC_TO, iso_ns(to))
    sql = re.sub(r"\(date > DATE '[^']*' OR \(date = DATE '[^']*' AND hour >= '\d\d'\)\)",
                 f"(date > DATE '{frm:%Y-%m-%d}' OR (date = DATE '{frm:%Y-%m-%d}' AND hour >= '{frm:%H}'))", sql)
    sql = re.sub(r"\(date < DATE '[^']*' OR \(date = DATE '[^']*' AND hour <= '\d\d'\)\)",
                 f"(date < DATE '{to:%Y-%m-%d}' OR (date = DATE '{to:%Y-%m-%d}' AND hour <= '{to:%H}'))", sql)
    return sql


def rows(con, sql):
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def parse_ts(s):
    # The command prints RFC 3339 with nanoseconds; Python keeps microseconds.
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", s)
    frac = (m.group(2) or "").ljust(6, "0")[:6]
    return dt.datetime.fromisoformat(f"{m.group(1)}.{frac}+00:00")


def same_row(duck, ours):
    for k, v in duck.items():
        o = ours[k]
        if isinstance(v, dt.datetime):
            assert parse_ts(o) == v.astimezone(dt.timezone.utc), k
        else:
            assert o == v, (k, o, v)


def test_doc_has_every_query():
    assert {"who", "activity-agent", "activity-owner", "prove-row", "prove-file-duckdb",
            "prove-violations", "violations", "duckdb-views"} <= BLOCKS.keys()


def test_who_in_duckdb_equals_the_command(data):
    for eid in [data["human_ok"], *data["ledger"], data["other_agent"]]:
        duck = rows(data["con"], BLOCKS["who"].replace(DOC_WHO, eid))
        ours = json.loads(cli("who", "--data-dir", data["dir"], "--format", "json", eid).stdout)
        assert len(duck) == len(ours) == 1
        same_row(duck[0], ours[0])
    human = rows(data["con"], BLOCKS["who"].replace(DOC_WHO, data["human_ok"]))[0]
    assert (human["actor_kind"], human["agent_id"], human["owner_id"]) == ("human", None, "usr_alice")


def test_activity_in_duckdb_equals_the_command(data):
    frm, to = dt.datetime.fromisoformat(data["from"]), dt.datetime.fromisoformat(data["to"])
    for block, flag, who in [("activity-agent", "--agent", "agt_ledger"),
                             ("activity-owner", "--owner", "usr_alice")]:
        duck = rows(data["con"], with_range(BLOCKS[block], frm, to))
        ours = json.loads(cli("activity", "--data-dir", data["dir"], "--format", "json", flag, who,
                              "--from", data["from"], "--to", data["to"]).stdout)
        assert [r["event_id"] for r in duck] == [r["event_id"] for r in ours]
        for d, o in zip(duck, ours):
            same_row(d, o)
    agent = rows(data["con"], with_range(BLOCKS["activity-agent"], frm, to))
    assert [(r["event_id"], r["agent_credential_id"]) for r in agent] == \
        [(i, k) for i, k in zip(data["ledger"], ["key_A", "key_A", "key_B"])]


def test_prove_human_checks_in_duckdb_agree_with_the_command(data):
    con = data["con"]
    for eid, human in [(data["human_ok"], True), (data["ledger"][0], False),
                       (data["human_near_violation"], True)]:
        row = rows(con, BLOCKS["prove-row"].replace("019a0000-0000-7000-8000-000000000001", eid))
        assert row[0]["human_without_agent"] is human
        proof = json.loads(cli("prove-human", "--data-dir", data["dir"], "--format", "json", eid,
                               ok=False).stdout)
        assert proof["checks"][0]["pass"] is human
        # (c): the same window the command used.
        start, end = row[0]["start_time"], row[0]["end_time"] or row[0]["start_time"]
        frm, to = start - dt.timedelta(minutes=5), end + dt.timedelta(minutes=5)
        sql = BLOCKS["prove-violations"].replace("'hr-portal'", f"'{row[0]['service_name']}'")
        sql = sql.replace("2026-11-28T02:55:00.000000000+00:00", iso_ns(frm)) \
                 .replace("2026-11-28T03:05:00.000000000+00:00", iso_ns(to))
        sql = with_range(sql, frm.astimezone(dt.timezone.utc), to.astimezone(dt.timezone.utc))
        n = rows(con, sql)[0]["violations"]
        # The service's count is information beside the check, which only
        # counts violations that could be this action.
        assert f"{n} violation(s) in service" in proof["checks"][2]["detail"], (eid, n, proof)
        assert proof["checks"][2]["pass"] is True, (eid, proof)
    # (b): the manifest's hash for the file holding the human row is its real hash.
    import hashlib
    f = rows(con, BLOCKS["prove-file-duckdb"])
    assert len(f) == 1
    path = pathlib.Path(f[0]["filename"])
    if not path.is_absolute():
        path = data["parent"] / path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == f[0]["sealed_sha256"]


def test_violations_query(data):
    v = rows(data["con"], BLOCKS["violations"])
    assert [(r["service_name"], r["agent_id"]) for r in v] == [("billing", "agt_rogue")]
    ours = json.loads(cli("query", "--data-dir", data["dir"], "--format", "json",
                          BLOCKS["violations"]).stdout)
    assert [r["reason"] for r in ours] == [r["reason"] for r in v]


def test_pyarrow_snippets(data):
    audit = ds.dataset(f"{data['dir']}/audit", format="parquet", partitioning="hive")
    who = audit.to_table(filter=pc.field("event_id") == data["ledger"][2],
                         columns=["agent_id", "agent_credential_id"]).to_pylist()
    assert [(r["agent_id"], r["agent_credential_id"]) for r in who] == [("agt_ledger", "key_B")]
    t1, t2 = dt.datetime.fromisoformat(data["from"]), dt.datetime.fromisoformat(data["to"])
    act = audit.to_table(filter=(pc.field("agent_id") == "agt_ledger")
                         & (pc.field("start_time") >= t1) & (pc.field("start_time") < t2)
                         ).sort_by([("start_time", "ascending"), ("seq", "ascending")])
    assert act.column("event_id").to_pylist() == data["ledger"]
