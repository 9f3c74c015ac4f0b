#!/usr/bin/env bash
# Runs every test on a fresh machine: installs the Python side (an OTLP
# client and Parquet readers that are not ours), builds, runs the Rust
# tests (which start the real collector on loopback), fuzzes each fuzz
# target briefly, then runs the Python tests.
set -euo pipefail
cd "$(dirname "$0")"
# A clean checkout is built once, so incremental state (about 1.5 GiB of
# target/ here) only costs disk and time. A full disk shows up as a linker
# killed by SIGBUS, not as "no space left", so say how much there is.
export CARGO_INCREMENTAL=0
echo "test.sh: $(df -h --output=avail . | tail -1 | tr -d ' ') free on the build disk at the start"

python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
# The console's browser test (tests/python/test_console.py): Debian's
# Chromium, headless, and its WebDriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
# Spark's JVM for the Spark DDL test (tests/python/test_spark.py).
if ! command -v java >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless
fi
# The lean sidecar: the binary without the query crate. Neither it nor the
# collector library may pull in DataFusion.
lean_start=$(date +%s)
cargo build --bin audit-collector --no-default-features
# Its build time here is the cold one on a clean checkout (nothing built yet);
# the size is of the debug binary (BENCHMARKS.md has the release figures).
echo "test.sh: lean sidecar built in $(( $(date +%s) - lean_start )) s," \
    "$(( $(stat -c %s target/debug/audit-collector) / 1048576 )) MiB (debug)"
for spec in "-p audit-collector" "-p audit-trail --no-default-features"; do
    # shellcheck disable=SC2086
    tree=$(cargo tree -e normal $spec)
    if grep -q datafusion <<<"$tree"; then
        echo "test.sh: cargo tree $spec depends on datafusion" >&2
        exit 1
    fi
done
# Then everything, the full binary (with the query crate) last.
cargo build --workspace --all-targets
cargo test --workspace
# Each cargo-fuzz target for a short, bounded run (installs cargo-fuzz if needed).
FUZZ_SECONDS="${FUZZ_SECONDS:-30}" fuzz/run.sh
python3 -m pytest -q tests/python
echo "test.sh: $(du -sh target fuzz/target 2>/dev/null | awk '{print $2 " " $1}' | paste -sd, -) on disk at the end"
