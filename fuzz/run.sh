#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time, starting from the
# committed seeds (fuzz/corpus/<target>/seed-*). Called by test.sh with a
# short budget; for a long run:
#
#   FUZZ_SECONDS=3600 fuzz/run.sh            # or: cd fuzz && cargo fuzz run -s none <target>
#
# The machine's one toolchain is stable, so the targets are built without
# a sanitizer (`-s none`): coverage-guided, with debug assertions and
# overflow checks; a panic (a broken invariant, an unwrap on bad input) is
# a finding. Our code has no `unsafe`, which is what AddressSanitizer adds.
set -euo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECONDS:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo fuzz build -s none

# New corpus entries go to a scratch dir, not into the checkout.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo fuzz list); do
    mkdir -p "$work/$target"
    log="$work/$target.log"
    if cargo fuzz run -s none "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        echo "fuzz $target: ${secs}s, $runs inputs, no finding"
    else
        tail -n 60 "$log"
        echo "fuzz $target: FINDING (reproducer in fuzz/artifacts/$target/;" \
            "replay with: cd fuzz && cargo fuzz run -s none $target <file>)" >&2
        exit 1
    fi
done
