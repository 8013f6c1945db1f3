"""Two toylens binaries side by side: alternating runs of the same benches, medians and ratios.

usage: python3 benches/ab_binaries.py OLD_BINARY NEW_BINARY [PAIRS]

Each pair runs every case once with each binary, the order swapped every other pair, so a slow
minute of a shared machine falls on both. Prints the median of each binary's `bench` figures (ms
per step) and of a whole `train --preset notebook` process (s), and new/old.
"""
import json
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "bench --preset induction --steps 200": ["bench", "--preset", "induction", "--steps", "200"],
    "bench --preset grokking --steps 30": ["bench", "--preset", "grokking", "--steps", "30"],
    "bench --preset grokking-fast --steps 40": ["bench", "--preset", "grokking-fast", "--steps", "40"],
    "bench --preset notebook --steps 100": ["bench", "--preset", "notebook", "--steps", "100"],
    "bench --lm-step": ["bench", "--lm-step"],
}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binaries = {"old": sys.argv[1], "new": sys.argv[2]}
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    ms = {case: {"old": [], "new": []} for case in CASES}
    wall = {"old": [], "new": []}
    out_dir = tempfile.mkdtemp()
    for i in range(pairs):
        order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
        for case, args in CASES.items():
            for tag in order:
                lines = subprocess.run(
                    [binaries[tag]] + args, capture_output=True, text=True, check=True
                ).stdout.strip().splitlines()
                ms[case][tag].append(json.loads(lines[-1])["ms_per_step"])
        for tag in order:
            start = time.perf_counter()
            subprocess.run(
                [binaries[tag], "train", "--preset", "notebook", "--out", f"{out_dir}/{tag}.safetensors"],
                capture_output=True,
                check=True,
            )
            wall[tag].append(time.perf_counter() - start)
    print(f"{'case':44} {'old':>9} {'new':>9} {'new/old':>8}   ({pairs} pairs, medians)")
    rows = [(case, ms[case]) for case in CASES] + [("train --preset notebook (s)", wall)]
    for case, runs in rows:
        old, new = statistics.median(runs["old"]), statistics.median(runs["new"])
        print(f"{case:44} {old:9.3f} {new:9.3f} {new / old:8.3f}")


if __name__ == "__main__":
    main()
