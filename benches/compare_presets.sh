#!/usr/bin/env bash
# Each task preset's training step, toylens against its PyTorch reference, side by side here.
#
#   benches/compare_presets.sh                 # 3 rounds, release binary built first
#   ROUNDS=5 THREADS=2 benches/compare_presets.sh
#
# induction: ../shared/reference/induction_reference.py (TransformerLens 3.9, 2 layers, batch 64,
#   loss at every position, Adam) for 300 steps, against `toylens bench --preset induction`.
# grokking: ../shared/reference/grokking_reference.py (p = 113, 30 % of pairs, full-batch AdamW,
#   biases frozen) for 100 epochs, against `toylens bench --preset grokking` (one epoch per step);
#   grokking-fast: the same script with --d-mlp 256 --lr 3e-3 --wd 2.
# Both references time training steps only (evaluations excluded), as toylens does; torch runs on
# $THREADS threads (default 2). Prints each median, the ratio, toylens's GFLOP/s and peak RSS.
# Needs python3 with torch and transformer_lens<4, and /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
REF=${REF:-../shared/reference}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/toylens
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    python3 "$REF/induction_reference.py" --threads "$THREADS" --steps 300 --eval-every 100000 \
        | tail -1 >>"$TMP/ref_induction.jsonl"
    /usr/bin/time -f "%M" -a -o "$TMP/rss_induction" "$BIN" bench --preset induction --steps 300 \
        --device cpu >>"$TMP/toy_induction.jsonl"
    python3 "$REF/grokking_reference.py" --threads "$THREADS" --epochs 100 --eval-every 100000 \
        | tail -1 >>"$TMP/ref_grokking.jsonl"
    /usr/bin/time -f "%M" -a -o "$TMP/rss_grokking" "$BIN" bench --preset grokking --steps 100 \
        --device cpu >>"$TMP/toy_grokking.jsonl"
    python3 "$REF/grokking_reference.py" --threads "$THREADS" --epochs 100 --eval-every 100000 \
        --d-mlp 256 --lr 3e-3 --wd 2 | tail -1 >>"$TMP/ref_grokking-fast.jsonl"
    /usr/bin/time -f "%M" -a -o "$TMP/rss_grokking-fast" "$BIN" bench --preset grokking-fast \
        --steps 100 --device cpu >>"$TMP/toy_grokking-fast.jsonl"
done
python3 - "$TMP" <<'PY'
import json, statistics, sys
tmp = sys.argv[1]
load = lambda name: [json.loads(l) for l in open(f"{tmp}/{name}.jsonl")]
rss = lambda name: statistics.median(int(l) / 1024 for l in open(f"{tmp}/rss_{name}"))
print(f"{'preset':<14}{'reference ms':>14}{'toylens ms':>12}{'ratio':>8}{'toylens GFLOP/s':>17}{'peak RSS':>10}")
for name, unit in [("induction", "step"), ("grokking", "epoch"), ("grokking-fast", "epoch")]:
    ref = statistics.median(r.get("ms_per_step") or r["ms_per_epoch"] for r in load(f"ref_{name}"))
    toy = load(f"toy_{name}")
    ms = statistics.median(r["ms_per_step"] for r in toy)
    gf = statistics.median(r["gflops"] for r in toy)
    print(f"{name:<14}{ref:>11.2f}/{unit[0]}{ms:>10.2f}/{unit[0]}{ms / ref:>8.2f}{gf:>17.1f}{rss(name):>7.0f} MB")
print("ratio = toylens time / reference time per step (grokking: per epoch); medians of", len(toy), "rounds")
PY
