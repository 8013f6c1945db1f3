#!/usr/bin/env python3
"""Does an induction model copy by content or by position? Accuracy on the repeated half when the
repeat starts `shift` positions later than in training (a random prefix of `shift` tokens, then
`half - shift` random tokens, then those again), through `toylens inspect --json`.

usage: induction-shift-test.py TOYLENS CHECKPOINT [--half 10] [--vocab 32] [--trials 30]

A model with real induction heads (previous-token head + induction head) is as accurate at every
shift; one that attends a fixed distance back is right only at shift 0.
"""
import argparse
import json
import random
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("toylens")
    ap.add_argument("checkpoint")
    ap.add_argument("--half", type=int, default=10)
    ap.add_argument("--vocab", type=int, default=32)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    result = {}
    for shift in range(4):
        correct = total = 0
        for _ in range(args.trials):
            n = args.half - shift
            first = [rng.randrange(args.vocab) for _ in range(n)]
            seq = [rng.randrange(args.vocab) for _ in range(shift)] + first + first
            tokens = seq[:-1]
            out = subprocess.run(
                [args.toylens, "inspect", args.checkpoint, " ".join(map(str, tokens)), "--json"],
                capture_output=True, text=True, check=True)
            logits = json.loads(out.stdout)["logits"]
            # Positions whose next token is a repeated one that is not the repeat's first.
            for p in range(shift + n, len(tokens)):
                row = logits[p]
                correct += max(range(len(row)), key=row.__getitem__) == seq[p + 1]
                total += 1
        result[f"shift {shift}"] = round(correct / total, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
