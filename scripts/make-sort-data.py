"""Writes a sorting data set as JSON Lines, as a researcher's own notebook would: independent of
toylens (its own random numbers), for `benches/sequences_reference.py` and `toylens train --data`.

    python3 scripts/make-sort-data.py OUT_DIR [--samples 20000] [--digits 5] [--seed 0]

Each line is five digits, "|", then the digits sorted: {"tokens": ["3","1",...], "loss_mask":
[0,0,0,0,0,1,1,1,1,1,0]} (the separator and each answer digit but the last predict the next answer
digit). `vocab.json` beside it lists the digits and the separator.
"""
import argparse
import json
import os
import random

ap = argparse.ArgumentParser()
ap.add_argument("out_dir")
ap.add_argument("--samples", type=int, default=20000)
ap.add_argument("--digits", type=int, default=5)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
rng = random.Random(a.seed)
os.makedirs(a.out_dir, exist_ok=True)
vocab = [str(d) for d in range(10)] + ["|"]
with open(os.path.join(a.out_dir, "vocab.json"), "w") as f:
    json.dump(vocab, f)
with open(os.path.join(a.out_dir, "sort.jsonl"), "w") as f:
    for _ in range(a.samples):
        digits = [rng.randrange(10) for _ in range(a.digits)]
        tokens = [str(d) for d in digits] + ["|"] + [str(d) for d in sorted(digits)]
        n = len(tokens)
        mask = [1 if a.digits <= i < n - 1 else 0 for i in range(n)]
        f.write(json.dumps({"tokens": tokens, "loss_mask": mask}) + "\n")
print(f"wrote {a.samples} sequences to {a.out_dir}/sort.jsonl")
