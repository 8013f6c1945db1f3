#!/usr/bin/env bash
# The README's grokking phase diagram: modular addition (p = 53, half of the pairs trained on,
# the grokking-fast model) over learning rate × weight decay, 5 × 5 points and 2 seeds, each run
# stopped at 99 % test accuracy or after 4000 epochs, then mapped by regime.
#
#   scripts/grokking-phase-diagram.sh runs/grok                      # here: both cores
#   EXECUTOR="--executor slurm --wait" scripts/grokking-phase-diagram.sh runs/grok-slurm
#   toylens runs/grok                                                 # the map, in the app
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR}
TOYLENS=${TOYLENS:-toylens}
# shellcheck disable=SC2086
"$TOYLENS" sweep --preset grokking-fast \
    --grid task.p=53 --grid task.train_frac=0.5 \
    --grid train.epochs=4000 --grid train.eval_every=20 \
    --grid train.lr=3e-4,1e-3,3e-3,1e-2,3e-2 \
    --grid train.weight_decay=0.03,0.3,1,3,10 \
    --seeds 0..2 --stop-at-milestone ${EXECUTOR:-} --out "$OUT"
