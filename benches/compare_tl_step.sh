#!/usr/bin/env bash
# One training step of a 2-layer attention-only model: TransformerLens + PyTorch against toylens,
# side by side on this machine.
#
#   benches/compare_tl_step.sh              # 3 rounds, release binary built first
#   ROUNDS=5 THREADS=2 TOYLENS_THREADS=1 benches/compare_tl_step.sh
#
# Each round runs `python benches/tl_step.py` (TransformerLens 3.9, torch on $THREADS threads,
# default 2) and `toylens bench --lm-step` (candle on $TOYLENS_THREADS threads, default 1,
# toylens's own default: at these sizes a second candle thread costs more than it brings): the
# same model (d_model 64, 4 heads
# of 16, learned positions, vocabulary 32, 20 positions), batch 64, loss at every position, Adam
# lr 1e-3, 200 timed steps after 20 warm-up steps each. Prints the median ms per step of each,
# the ratio, toylens's GFLOP/s and both processes' peak RSS.
# Needs python3 with torch and transformer_lens<4, and /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
TOYLENS_THREADS=${TOYLENS_THREADS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/toylens
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    python3 benches/tl_step.py --threads "$THREADS" | tail -1 >>"$TMP/tl.jsonl"
    RAYON_NUM_THREADS=$TOYLENS_THREADS /usr/bin/time -f "%M" -o "$TMP/rss" "$BIN" bench --lm-step --device cpu \
        >>"$TMP/toylens.jsonl"
    cat "$TMP/rss" >>"$TMP/toylens.rss"
done
python3 - "$TMP" <<'PY'
import json, statistics, sys
tmp = sys.argv[1]
tl = [json.loads(l) for l in open(f"{tmp}/tl.jsonl")]
toy = [json.loads(l) for l in open(f"{tmp}/toylens.jsonl")]
rss = [int(l) / 1024 for l in open(f"{tmp}/toylens.rss")]
tl_ms = statistics.median(r["ms_per_step"] for r in tl)
toy_ms = statistics.median(r["ms_per_step"] for r in toy)
gflops = statistics.median(r["gflops"] for r in toy)
print(f"{'program':<18}{'median ms/step':>16}{'peak RSS':>12}   ({len(tl)} rounds)")
print(f"{'transformer_lens':<18}{tl_ms:>16.3f}{statistics.median(r['peak_rss_mb'] for r in tl):>9.0f} MB")
print(f"{'toylens':<18}{toy_ms:>16.3f}{statistics.median(rss):>9.0f} MB")
print(f"\ntoylens takes {toy_ms / tl_ms:.2f}x TransformerLens's time per step "
      f"({tl_ms / toy_ms:.2f}x as fast), {gflops:.1f} GFLOP/s "
      f"({toy[0]['flops_per_step'] / 1e9:.2f} GFLOP per step)")
PY
