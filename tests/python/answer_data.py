"""The answerability fixture (examples/answer_dataset.rs) written by the
real layer to a real collector, for the tests that read it."""

import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("AUDIT_COLLECTOR_BIN", ROOT / "target" / "debug" / "audit-collector"))


def collector() -> pathlib.Path:
    """The `audit-collector` binary the tests ask, built if missing."""
    if not BIN.exists():
        subprocess.run(["cargo", "build", "--bin", "audit-collector"], cwd=ROOT, check=True)
    return BIN


def write(data_dir: pathlib.Path, witness: pathlib.Path | None = None) -> dict:
    """Writes the dataset to `data_dir` (signing checkpoints to `witness`
    if given); returns the example's JSON line: the known event ids and a
    window (`from`, `to`) holding every action."""
    extra = [str(witness)] if witness else []
    out = subprocess.run(
        ["cargo", "run", "-q", "--example", "answer_dataset", str(data_dir), *extra],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
