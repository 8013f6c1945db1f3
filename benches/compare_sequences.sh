#!/usr/bin/env bash
# A data file's task, side by side: toylens against TransformerLens + PyTorch, on the same JSON
# Lines file (written by scripts/make-sort-data.py, not by toylens), the same model and training.
#
#   benches/compare_sequences.sh            # 3 rounds of 10 epochs, release binary built first
#   ROUNDS=5 EPOCHS=10 THREADS=2 benches/compare_sequences.sh
#
# Each round runs `python benches/sequences_reference.py` (torch on $THREADS threads) and
# `toylens train --data sort.jsonl --preset sort --json`: a 2-layer attention-only model (d_model
# 64, 4 heads of 16, learned positions), AdamW lr 1e-3, batch 128, 10 % validation. Prints the
# median seconds per epoch of each (training steps only), the ratio, and each one's validation
# sequence accuracy after the first epoch and the last.
# Needs python3 with torch and transformer_lens<4.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
EPOCHS=${EPOCHS:-10}
THREADS=${THREADS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/toylens
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 scripts/make-sort-data.py "$TMP/data" >&2
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    python3 benches/sequences_reference.py "$TMP/data/sort.jsonl" --epochs "$EPOCHS" \
        --threads "$THREADS" 2>/dev/null >"$TMP/tl-$round.jsonl"
    "$BIN" train --data "$TMP/data/sort.jsonl" --preset sort --epochs "$EPOCHS" --json \
        --out "$TMP/model.safetensors" 2>/dev/null >"$TMP/toylens-$round.jsonl"
done
python3 - "$TMP" "$ROUNDS" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
tl_s, toy_s, tl_acc, toy_acc = [], [], [], []
for r in range(1, rounds + 1):
    tl = [json.loads(l) for l in open(f"{tmp}/tl-{r}.jsonl")]
    toy = [json.loads(l) for l in open(f"{tmp}/toylens-{r}.jsonl")]
    tl_s.append(tl[-1]["median_epoch_s"])
    # elapsed_s counts training steps only: its differences are the epochs' times.
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip([{"elapsed_s": 0}] + toy, toy)]
    toy_s.append(statistics.median(times))
    tl_acc.append((tl[0]["val_seq_acc"], tl[-2]["val_seq_acc"]))
    toy_acc.append((toy[0]["val_seq_acc"], toy[-1]["val_seq_acc"]))
tl_med, toy_med = statistics.median(tl_s), statistics.median(toy_s)
print(f"TransformerLens + PyTorch: {tl_med:.3f} s per epoch (median of {rounds} rounds); "
      f"validation sequence accuracy after epoch 1 / last: "
      + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in tl_acc))
print(f"toylens:                   {toy_med:.3f} s per epoch; validation sequence accuracy: "
      + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in toy_acc))
print(f"toylens is {tl_med / toy_med:.1f}x faster per epoch")
PY
