#!/usr/bin/env bash
# The long fuzz campaign: the generators of tests/fuzz.rs with many more iterations, in release.
#   benches/fuzz.sh            # 100 000 checkpoint mutations, 200 000 sequence strings,
#                              # 100 000 config JSONs and 100 000 command lines
#   FUZZ_ITERATIONS=1000000 benches/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
export FUZZ_ITERATIONS=${FUZZ_ITERATIONS:-100000}
exec cargo test --release --test fuzz -- --nocapture
