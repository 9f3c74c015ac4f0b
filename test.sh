#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the Python side (an OTLP
# client and Parquet readers that are not ours), builds, runs the Rust
# tests (which start the real collector on loopback), then the Python ones.
set -euo pipefail
cd "$(dirname "$0")"

python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
cargo build --workspace --all-targets
cargo test --workspace
python3 -m pytest -q tests/python
