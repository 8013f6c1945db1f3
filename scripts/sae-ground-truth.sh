#!/usr/bin/env bash
# SAEs against the true features of a superposition model (the issue's ground-truth check):
# one instance of 100 features into 20 hidden dimensions at feature probability 0.02 (it
# represents all 100: D* ≈ 0.15), then SAEs on its hidden layer. Prints, per run, the features
# the model represents that a decoder direction matches at cosine > 0.9, MMCS, explained
# variance, L0 and dead latents at the end.
#
#   scripts/sae-ground-truth.sh            # 3 seeds at the reference's settings, then the trade-offs
#   JOBS=2 scripts/sae-ground-truth.sh     # two runs at a time (each SAE runs on one core)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/toylens
JOBS=${JOBS:-2}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
model() {  # seed
    cat >"$TMP/tms-$1.json" <<JSON
{"seed": $1, "model": {"kind": "tms", "n_features": 100, "n_hidden": 20, "n_instances": 1},
 "task": {"feature_probability": {"constant": 0.02}, "importance": {"decay": 1.0}},
 "train": {"steps": 10000, "eval_every": 10000}}
JSON
    "$BIN" train --config "$TMP/tms-$1.json" --out "$TMP/tms-$1.safetensors" >/dev/null
}
sae() {  # label seed flags...
    local label=$1 seed=$2
    shift 2
    "$BIN" sae train "$TMP/tms-$seed.safetensors" --seed "$seed" --steps 6000 --batch 4096 \
        --eval-every 6000 --json --out "$TMP/sae-$label-$seed" "$@" | tail -1 |
        python3 -c "import json,sys; m=json.load(sys.stdin); print(f\"$label seed $seed: recovered {m['recovered']}/{m['represented']}  mmcs {m['mmcs']:.3f}  explained variance {m['explained_variance']:.3f}  L0 {m['l0']:.1f}  dead {m['dead']}  {m['elapsed_s']:.0f}s\")"
}
for seed in 0 1 2; do model $seed; done
{
    for seed in 0 1 2; do echo "l1=0.1,d_sae=200 $seed --d-sae 200 --l1 0.1"; done
    for l1 in 0.03 0.3 1.0; do echo "l1=$l1,d_sae=200 0 --d-sae 200 --l1 $l1"; done
    for d in 100 400; do echo "l1=0.1,d_sae=$d 0 --d-sae $d --l1 0.1"; done
    for k in 2 4 8; do echo "topk=$k,d_sae=200 0 --d-sae 200 --topk $k"; done
} | while read -r label seed flags; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
    # shellcheck disable=SC2086
    sae "$label" "$seed" $flags &
done
wait
