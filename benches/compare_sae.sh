#!/usr/bin/env bash
# SAE training side by side: a plain PyTorch loop (benches/sae_reference.py) against
# `toylens sae train`, the standard SAE (d_sae 200, λ 0.1, batches of 4096) on the hidden layer of
# a superposition model of 100 features in 20 dimensions at p 0.02 (the issue's ground truth).
# PyTorch trains on a cache of the model's activations written by toylens; toylens makes fresh
# ones each step (its time includes that). Prints each one's median ms per step and the ratio.
#
#   benches/compare_sae.sh                  # 1000 steps each, 3 rounds
#   STEPS=6000 ROUNDS=1 benches/compare_sae.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-1000}
THREADS=${THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/toylens
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat >"$TMP/tms.json" <<JSON
{"seed": 0, "model": {"kind": "tms", "n_features": 100, "n_hidden": 20, "n_instances": 1},
 "task": {"feature_probability": {"constant": 0.02}, "importance": {"decay": 1.0}},
 "train": {"steps": 10000, "eval_every": 10000}}
JSON
"$BIN" train --config "$TMP/tms.json" --out "$TMP/tms.safetensors" >/dev/null
# The cache: 65 536 activations, through an SAE of a few steps whose eval writes them.
"$BIN" sae train "$TMP/tms.safetensors" --d-sae 200 --steps 1 --out "$TMP/seed-sae" >/dev/null
"$BIN" sae eval "$TMP/seed-sae" "$TMP/tms.safetensors" --batch 65536 --dump "$TMP/cache.safetensors" >/dev/null
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    python3 benches/sae_reference.py --activations "$TMP/cache.safetensors" --steps "$STEPS" \
        --threads "$THREADS" >"$TMP/ref-$round.txt"
    "$BIN" sae train "$TMP/tms.safetensors" --d-sae 200 --l1 0.1 --steps "$STEPS" \
        --eval-every "$STEPS" --json --out "$TMP/sae-$round" | tail -1 >"$TMP/toylens-$round.txt"
done
python3 - "$TMP" "$ROUNDS" "$STEPS" <<'PY'
import json, statistics, sys
tmp, rounds, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ref = [json.loads(open(f"{tmp}/ref-{r}.txt").read().split("summary ", 1)[1]) for r in range(1, rounds + 1)]
toy = [json.loads(open(f"{tmp}/toylens-{r}.txt").read()) for r in range(1, rounds + 1)]
ref_ms = statistics.median(r["ms_per_step"] for r in ref)
toy_ms = statistics.median(1000 * t["elapsed_s"] / steps for t in toy)
print(f"PyTorch reference: {ref_ms:.2f} ms per step (explained variance {ref[-1]['explained_variance']:.3f})")
print(f"toylens:           {toy_ms:.2f} ms per step (explained variance {toy[-1]['explained_variance']:.3f}, L0 {toy[-1]['l0']:.1f})")
print(f"toylens is {ref_ms / toy_ms:.2f}x faster per step ({rounds} rounds of {steps} steps, medians)")
PY
