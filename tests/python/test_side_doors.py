"""Side doors, read back by tools that are not ours: the side-doors example
(examples/side_doors.rs: one store, a gated path and a side door) writes
through the real layer to the real collector binary, and DuckDB finds the `ungated`
violation naming the side door's file and line; an `ungated` violation sent
by the OpenTelemetry Python SDK, following the wire table, is kept with its
kind."""

import json
import os
import pathlib
import subprocess

import duckdb
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from test_independent import Collector, emit

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "side_doors.rs"


def violations(data):
    return duckdb.connect().execute(f"""
        SELECT kind, detected_by, service_name, action, code_file, code_line
        FROM read_parquet('{data}/violations/**/*.parquet', hive_partitioning = true)
        ORDER BY time""").fetchall()


def test_duckdb_finds_the_side_door_of_the_example_app(tmp_path):
    collector = Collector(tmp_path)
    out = subprocess.run(
        ["cargo", "run", "-q", "--example", "side_doors"],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env={**os.environ, "RUST_LOG": "warn",
             "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.http}",
             "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    )
    assert collector.terminate() == 0
    info = json.loads(out.stdout.strip().splitlines()[-1])
    # The side door's line, found in the source independently of the app.
    lines = EXAMPLE.read_text().splitlines()
    door = next(i + 1 for i, line in enumerate(lines) if line.rstrip().endswith("// the side door"))
    assert info["side_door"]["line"] == door

    rows = duckdb.connect().execute(f"""
        SELECT event_id, action
        FROM read_parquet('{tmp_path}/audit/**/*.parquet', hive_partitioning = true)""").fetchall()
    assert rows == [(info["gated_event_id"], "ledger.transfer")], "the side door leaves no row"
    [(kind, by, service, action, file, line)] = violations(tmp_path)
    assert (kind, by, service, action, line) == ("ungated", "layer", "ledger", "ledger.*", door)
    assert file.endswith("examples/side_doors.rs"), file


def test_an_ungated_violation_from_the_python_sdk_keeps_its_kind(tmp_path):
    collector = Collector(tmp_path)
    provider = LoggerProvider(resource=Resource.create({"service.name": "py-payments"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"http://{collector.http}/v1/logs")))
    emit(provider.get_logger("py-client"), "audit.violation", {
        "audit.event.id": "019ac0de-0000-7000-8000-0000000000c1",
        "audit.violation.detected_by": "layer",
        "audit.violation.kind": "ungated",
        "audit.violation.reason": "payments client called outside a gate",
        "audit.action": "payments.*",
        "code.file.path": "app/payments.py",
        "code.line.number": 42,
    }, 1_764_300_000_000_000_000)
    provider.shutdown()
    assert collector.terminate() == 0
    assert violations(tmp_path) == [
        ("ungated", "layer", "py-payments", "payments.*", "app/payments.py", 42)]
