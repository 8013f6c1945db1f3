#!/usr/bin/env bash
# Toy Models of Superposition's feature-geometry experiment, side by side: the PyTorch reference
# (../shared/reference/tms_reference.py, the paper notebook's setup) against
# `toylens train --preset tms-geometry`, on this machine.
#
#   benches/compare_tms.sh                 # 1000 steps each, 3 rounds: speed
#   STEPS=10000 ROUNDS=1 benches/compare_tms.sh   # the whole experiment: speed and statistics
#
# 200 features into 20 hidden dimensions, 20 instances at feature probability 20^(−k/19),
# importance 1, batch 1024, AdamW lr 1e-3 (weight decay 0.01). Prints each one's median ms per
# step, the ratio and FLOP/s (the dense model's 10·B·n·m per instance and step), and with the
# whole run each one's D* per instance and the count of features near each fraction.
# Needs python3 with torch.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-1000}
SEED=${SEED:-0}
THREADS=${THREADS:-2}
REFERENCE=${REFERENCE:-../shared/reference/tms_reference.py}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/toylens
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    python3 "$REFERENCE" --steps "$STEPS" --seed "$SEED" --threads "$THREADS" >"$TMP/ref-$round.txt"
    "$BIN" train --preset tms-geometry --steps "$STEPS" --seed "$SEED" --eval-every "$STEPS" \
        --out "$TMP/tms.safetensors" >"$TMP/toylens-$round.txt"
    grep '^step' "$TMP/toylens-$round.txt" | tail -1 >>"$TMP/toylens-times.txt"
done
python3 - "$TMP" "$ROUNDS" "$STEPS" <<'PY'
import json, re, statistics, sys
tmp, rounds, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ref = []
for r in range(1, rounds + 1):
    text = open(f"{tmp}/ref-{r}.txt").read()
    ref.append(json.loads(text.split("summary ", 1)[1]))
toy_s = [float(re.search(r"([0-9.]+)s$", l.strip()).group(1)) for l in open(f"{tmp}/toylens-times.txt")]
ref_ms = statistics.median(r["ms_per_step"] for r in ref)
toy_ms = statistics.median(1000 * s / steps for s in toy_s)
flops = 10 * 1024 * 200 * 20 * 20
print(f"PyTorch reference: {ref_ms:.1f} ms per step ({flops / ref_ms / 1e6:.1f} GFLOP/s dense-equivalent)")
print(f"toylens:           {toy_ms:.1f} ms per step ({flops / toy_ms / 1e6:.1f} GFLOP/s dense-equivalent)")
print(f"toylens is {ref_ms / toy_ms:.1f}x faster per step ({rounds} rounds of {steps} steps, medians)")
print("reference, last round:", open(f"{tmp}/ref-{rounds}.txt").read().strip().splitlines()[-3:-1])
print("toylens, last round:", open(f"{tmp}/toylens-{rounds}.txt").read().strip().splitlines()[-4:-1])
PY
