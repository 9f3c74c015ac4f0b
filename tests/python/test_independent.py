"""Independent end-to-end checks: the OpenTelemetry Python SDK writes audit
records by following the wire table, the real collector binary stores them,
and DuckDB and pyarrow read the Parquet back."""

import json
import os
import pathlib
import signal
import subprocess
import threading
import time

import duckdb
import pyarrow.parquet as pq
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("AUDIT_COLLECTOR_BIN", ROOT / "target" / "debug" / "audit-collector"))

# DESIGN.md's schema table, written out independently of the Rust code.
AUDIT_TYPES = {
    "event_id": "VARCHAR",
    "start_time": "TIMESTAMPTZ_NS",
    "end_time": "TIMESTAMPTZ_NS",
    "actor_kind": "VARCHAR",
    "agent_id": "VARCHAR",
    "agent_name": "VARCHAR",
    "agent_credential_id": "VARCHAR",
    "owner_id": "VARCHAR",
    "initiator_id": "VARCHAR",
    "task_id": "VARCHAR",
    "action": "VARCHAR",
    "target": "VARCHAR",
    "outcome": "VARCHAR",
    "scopes": "VARCHAR[]",
    "consent_id": "VARCHAR",
    "consent_token": "VARCHAR",
    "consent_verified": "BOOLEAN",
    "consent_key_id": "VARCHAR",
    "consent_approver": "VARCHAR",
    "inputs_sha256": "VARCHAR",
    # Schema v2: the delegation chain (JSON text), its human origin, and the
    # service that sent the chain.
    "delegation": "VARCHAR",
    "origin_id": "VARCHAR",
    "delegation_from": "VARCHAR",
    "service_name": "VARCHAR",
    "service_instance_id": "VARCHAR",
    "trace_id": "VARCHAR",
    "span_id": "VARCHAR",
    "attributes": "MAP(VARCHAR, VARCHAR)",
    "received_time": "TIMESTAMPTZ_NS",
    "collector_id": "VARCHAR",
    "seq": "UBIGINT",
}


class Collector:
    def __init__(self, data_dir, *extra):
        if not BIN.exists():
            subprocess.run(["cargo", "build", "--bin", "audit-collector"], cwd=ROOT, check=True)
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--data-dir", str(data_dir),
             "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn"},
        )
        line = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(60)
        assert line and line[0].startswith("listening"), f"collector did not start: {line}"
        fields = dict(kv.split("=", 1) for kv in line[0].split()[1:])
        self.http = fields["otlp_http"]

    def terminate(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def emit(logger, event_name, attributes, ts):
    logger.emit(LogRecord(timestamp=ts, observed_timestamp=ts, event_name=event_name,
                          attributes=attributes))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    data = tmp_path_factory.mktemp("audit-data")
    collector = Collector(data)
    provider = LoggerProvider(resource=Resource.create({"service.name": "py-billing"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"http://{collector.http}/v1/logs")))
    logger = provider.get_logger("py-client")
    t0 = 1_764_300_000_000_000_000
    emit(logger, "audit.action", {
        "audit.event.id": "019ac0de-0000-7000-8000-0000000000p1",
        "audit.actor.kind": "agent", "gen_ai.agent.id": "agt_py", "audit.owner.id": "usr_dana",
        "audit.action": "invoices.approve", "audit.target": "inv_7",
        "audit.scopes": ["invoices:write"], "audit.agent.credential.id": "key_a",
    }, t0)
    emit(logger, "audit.action", {
        "audit.event.id": "019ac0de-0000-7000-8000-0000000000p2",
        "audit.actor.kind": "human", "audit.owner.id": "usr_dana",
        "audit.action": "invoices.void", "audit.target": "inv_8",
    }, t0 + 3_600_000_000_000)
    # Schema v2: agt_py (erin's) acting for dana through her planner.
    emit(logger, "audit.action", {
        "audit.event.id": "019ac0de-0000-7000-8000-0000000000p4",
        "audit.actor.kind": "agent", "gen_ai.agent.id": "agt_py", "audit.owner.id": "usr_erin",
        "audit.action": "invoices.send", "audit.target": "inv_9",
        "audit.delegation": json.dumps([
            {"kind": "human", "id": "usr_dana"},
            {"kind": "agent", "id": "agt_planner", "owner_id": "usr_dana"},
            {"kind": "agent", "id": "agt_py", "owner_id": "usr_erin"},
        ]),
        "audit.delegation.from": "py-planner",
    }, t0 + 2 * 3_600_000_000_000)
    # Unattributed: an agent with no accountable human. Must be refused.
    emit(logger, "audit.action", {
        "audit.event.id": "019ac0de-0000-7000-8000-0000000000p3",
        "gen_ai.agent.id": "agt_py", "audit.action": "invoices.approve",
    }, t0 + 1)
    provider.shutdown()
    assert collector.terminate() == 0, "SIGTERM exits 0"
    return data


def test_files_open_in_duckdb_with_hive_partitioning_and_schema_types(dataset):
    con = duckdb.connect()
    cols = con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{dataset}/audit/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    types = {name: ty for name, ty, *_ in cols}
    for name, ty in AUDIT_TYPES.items():
        assert types.get(name) == ty, f"{name}: {types.get(name)} != {ty}"
    # Hive partition columns from the path; `hour` keeps its two digits.
    assert types.get("date") == "DATE" and types.get("hour") == "VARCHAR", types


def test_python_sdk_records_stored_and_unattributed_refused(dataset):
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT event_id, actor_kind, agent_id, owner_id, action, scopes, service_name,
               agent_credential_id, CAST(date AS VARCHAR), hour
        FROM read_parquet('{dataset}/audit/**/*.parquet', hive_partitioning = true)
        ORDER BY start_time""").fetchall()
    assert rows == [
        ("019ac0de-0000-7000-8000-0000000000p1", "agent", "agt_py", "usr_dana", "invoices.approve",
         ["invoices:write"], "py-billing", "key_a", "2025-11-28", "03"),
        ("019ac0de-0000-7000-8000-0000000000p2", "human", None, "usr_dana", "invoices.void",
         [], "py-billing", None, "2025-11-28", "04"),
        ("019ac0de-0000-7000-8000-0000000000p4", "agent", "agt_py", "usr_erin", "invoices.send",
         [], "py-billing", None, "2025-11-28", "05"),
    ]
    violations = con.execute(f"""
        SELECT detected_by, missing, agent_id, attributes['audit.refused_event_id']
        FROM read_parquet('{dataset}/violations/**/*.parquet', hive_partitioning = true)""").fetchall()
    assert violations == [("collector", ["audit.owner.id"], "agt_py",
                           "019ac0de-0000-7000-8000-0000000000p3")]


def test_duckdb_reads_the_delegation_chain_and_its_origin(dataset):
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT event_id, origin_id, delegation_from, json_array_length(delegation),
               json_extract_string(delegation, '$[1].id'),
               json_extract_string(delegation, '$[2].owner_id')
        FROM read_parquet('{dataset}/audit/**/*.parquet', hive_partitioning = true)
        ORDER BY start_time""").fetchall()
    assert rows == [
        ("019ac0de-0000-7000-8000-0000000000p1", None, None, None, None, None),
        ("019ac0de-0000-7000-8000-0000000000p2", None, None, None, None, None),
        # The origin is the chain's first hop, a human, filled by the collector.
        ("019ac0de-0000-7000-8000-0000000000p4", "usr_dana", "py-planner", 3, "agt_planner",
         "usr_erin"),
    ]


def test_pyarrow_reads_the_same_columns(dataset):
    files = sorted(pathlib.Path(dataset, "audit").rglob("part-*.parquet"))
    assert files
    schema = pq.read_schema(files[0])
    assert schema.names == list(AUDIT_TYPES)
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert oct(files[0].stat().st_mode & 0o777) == "0o444", "sealed files are read-only"
