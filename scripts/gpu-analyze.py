#!/usr/bin/env python3
"""`toylens analyze --json` on a GPU against the CPU, for the checks of scripts/gpu-check.sh.

usage: gpu-analyze.py TOYLENS GPU MODEL:TOKENS:CORRUPT:ANSWER:WRONG ...

Prints one JSON object: for each model, the largest difference between the two devices' outputs
relative to the largest value of its key, per key, and the worst overall.
"""
import json
import subprocess
import sys


def flat(v):
    return [x for item in v for x in flat(item)] if isinstance(v, list) else [v]


def leaves(obj, prefix=""):
    for key, value in obj.items():
        if isinstance(value, dict):
            yield from leaves(value, f"{prefix}{key}.")
        elif key not in ("labels", "lens_labels", "tokens"):
            yield f"{prefix}{key}", flat(value)


def run(binary, device, model, tokens, corrupt, answer, wrong):
    args = [binary, "analyze", model, tokens, "--json", "--device", device,
            "--corrupt", corrupt, "--answer", answer, "--wrong", wrong]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    if device != "cpu" and "using the CPU" in out.stderr:
        raise RuntimeError("fell back to the CPU: " + out.stderr.strip())
    return json.loads(out.stdout)


def main():
    binary, gpu = sys.argv[1], sys.argv[2]
    report, worst = {}, 0.0
    for spec in sys.argv[3:]:
        model, tokens, corrupt, answer, wrong = spec.split(":")
        name = model.split("/")[-2] if model.endswith("model.safetensors") else model.split("/")[-1]
        try:
            cpu = run(binary, "cpu", model, tokens, corrupt, answer, wrong)
            dev = run(binary, gpu, model, tokens, corrupt, answer, wrong)
        except RuntimeError as e:
            report[name] = {"error": str(e)[-400:]}
            worst = float("inf")
            continue
        assert cpu["labels"] == dev["labels"], name
        keys = {}
        cpu_leaves, dev_leaves = dict(leaves(cpu)), dict(leaves(dev))
        for key, a in cpu_leaves.items():
            b = dev_leaves[key]
            scale = max(max(abs(x) for x in a), 1e-12)
            keys[key] = max(abs(x - y) for x, y in zip(a, b)) / scale
        report[name] = {"relative": keys, "worst": max(keys.values())}
        worst = max(worst, report[name]["worst"])
    report["worst"] = worst
    print(json.dumps(report))


if __name__ == "__main__":
    main()
