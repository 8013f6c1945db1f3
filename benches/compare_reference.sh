#!/usr/bin/env bash
# toylens against the PyTorch reference scripts, run back to back on this machine.
#
#   benches/compare_reference.sh            # 3 rounds, release binary built first
#   ROUNDS=5 benches/compare_reference.sh
#
# Each round runs, one after the other:
#   1. python seed_baseline.py                              (the notebook as a script, bugs kept)
#   2. python fixed_reference.py --seeds 0 --epochs 60      (bugs fixed, last-position fast path)
#   3. toylens train --preset notebook --seed 0             (same experiment: data, 60 epochs,
#                                                            per-epoch validation and snapshots)
# and prints the median wall time and peak RSS of each, and toylens's speed-up over both.
# Needs python3 with torch, einops, fancy_einsum, tqdm and numpy, and /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
REF=${REF:-../shared/reference}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/toylens
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# measure NAME CMD...: appends "wall_s max_rss_kb" to $TMP/NAME
measure() {
    local name=$1
    shift
    /usr/bin/time -f "%e %M" -o "$TMP/one" "$@" >"$TMP/$name.log" 2>&1 || {
        echo "$name failed:" >&2
        tail -5 "$TMP/$name.log" >&2
        exit 1
    }
    cat "$TMP/one" >>"$TMP/$name"
}

for round in $(seq "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    measure seed_baseline python3 "$REF/seed_baseline.py"
    measure fixed_reference python3 "$REF/fixed_reference.py" --seeds 0 --epochs 60 --threads 2
    measure toylens "$BIN" train --preset notebook --seed 0 --out "$TMP/notebook.safetensors"
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-18s %12s %14s\n' "program" "median wall" "median peak RSS"
for name in seed_baseline fixed_reference toylens; do
    wall=$(cut -d' ' -f1 "$TMP/$name" | median)
    rss=$(cut -d' ' -f2 "$TMP/$name" | median)
    printf '%-18s %10.3f s %11.0f MB\n' "$name" "$wall" "$(echo "$rss / 1024" | bc -l)"
    eval "wall_$name=$wall"
done
printf '\ntoylens speed-up: %.1fx over seed_baseline.py, %.1fx over fixed_reference.py (%s rounds)\n' \
    "$(echo "$wall_seed_baseline / $wall_toylens" | bc -l)" \
    "$(echo "$wall_fixed_reference / $wall_toylens" | bc -l)" "$ROUNDS"
