#!/usr/bin/env bash
# Checks a CUDA build of toylens on a machine with an NVIDIA GPU and prints one JSON summary:
#   1. parity: every case of every TransformerLens fixture (skip-trigram and tl_general) through
#      `inspect --json --cache --device cuda:0`, against the fixture's values (must be <= 1e-5);
#   2. `eval` (plain, mean ablation, exhaustive) on cuda:0 against the CPU's (must be <= 1e-5),
#      and `circuits` (computed from the weights on the host, whatever the device); `analyze`
#      (attribution, lens, detectors, patching) on cuda:0 against the CPU's, per key
#      (scripts/gpu-analyze.py);
#   3. each preset (notebook, fast, induction, grokking-fast to its milestone) trained on cuda:0
#      and on the CPU: the largest difference between their metric curves and both wall times;
#   4. `bench` on both devices for the large configurations: the grokking preset (full batch,
#      with a profile of a step's phases), the induction model at batch 1024 and vocabulary 1000,
#      and the skip-trigram task at batch 100 000, length 64, vocabulary 1000; and the PyTorch
#      grokking reference on the same GPU, when REFERENCE points at grokking_reference.py.
#
#   scripts/gpu-check.sh [BIN] [LIB_DIR]
#
# BIN is a release binary built elsewhere with `--features cuda` (the GPU machine needs no Rust;
# `strip` it and `gzip` it to carry it: BIN may end in .gz). LIB_DIR holds the CUDA libraries it
# loads (libcudart, libcublas, libcurand, libnvrtc) when the machine has none on its library path;
# by default those of the machine's pip-installed PyTorch. Needs python3; every step's output and
# errors are kept in $WORK (default: a temporary directory), the summary also in
# $WORK/summary.json; a failed step (or one over STEP_TIMEOUT seconds, default 180) is reported in
# the summary instead of stopping the check. Runs in about 4 minutes on an H100.
set -uo pipefail
BIN=${1:-target/release/toylens}
LIB=${2:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
FIX=$REPO/tests/fixtures
REFERENCE=${REFERENCE:-}
# The device under test; GPU=cpu runs the whole check on the CPU (a dry run of the script).
GPU=${GPU:-cuda:0}
if [ -z "$LIB" ]; then
    LIB=$(python3 -c 'import nvidia, os; print(os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu13", "lib"))' 2>/dev/null || true)
fi
[ -n "$LIB" ] && [ -d "$LIB" ] && export LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK/runs"
if [[ "$BIN" == *.gz ]]; then
    gunzip -c "$BIN" >"$WORK/runs/toylens" && chmod +x "$WORK/runs/toylens" && BIN="$WORK/runs/toylens"
fi
LOG=$WORK/steps.log
: >"$LOG"

# Runs a step, timing it; its stdout goes to $WORK/runs/NAME.out, its stderr to NAME.err.
step() {
    local name=$1
    shift
    local start end
    start=$(date +%s.%N)
    timeout "${STEP_TIMEOUT:-180}" "$@" >"$WORK/runs/$name.out" 2>"$WORK/runs/$name.err"
    local rc=$?
    end=$(date +%s.%N)
    python3 -c "import json,sys; print(json.dumps({'step': sys.argv[1], 'rc': int(sys.argv[2]), 'wall_s': round(float(sys.argv[4]) - float(sys.argv[3]), 3)}))" \
        "$name" "$rc" "$start" "$end" >>"$LOG"
    [ $rc -eq 0 ] || echo "step $name failed ($rc): $(tail -3 "$WORK/runs/$name.err")" >&2
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$WORK/runs/gpu.txt" 2>&1
nproc >"$WORK/runs/cores.txt"

# 1. Parity on the GPU, one process per fixture (every case in it).
python3 - "$BIN" "$FIX" "$GPU" >"$WORK/runs/parity.json" 2>"$WORK/runs/parity.err" <<'PY'
import json, subprocess, sys
binary, fix, gpu = sys.argv[1], sys.argv[2], sys.argv[3]
ATOL, RTOL = 1e-5, 1.3e-6
def flat(v):
    return [x for item in v for x in flat(item)] if isinstance(v, list) else [v]
def inspect(model, tokens, cache):
    args = [binary, "inspect", model, " ".join(map(str, tokens)), "--json", "--device", gpu]
    out = subprocess.run(args + (["--cache"] if cache else []), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1])
    if "using the CPU" in out.stderr:
        raise RuntimeError("fell back to the CPU: " + out.stderr.strip())
    return json.loads(out.stdout)
def compare(want, got, worst, where):
    a, b = flat(want), flat(got)
    assert len(a) == len(b), where
    for x, y in zip(a, b):
        if x is None or y is None:  # TL's masked -inf is null in both
            assert x is None and y is None, where
            continue
        d = abs(x - y)
        worst["abs"] = max(worst["abs"], d)
        ratio = d / (ATOL + RTOL * abs(x))
        if ratio > worst["ratio"]:
            worst.update(ratio=ratio, at=where)
report = {}
cases = json.load(open(f"{fix}/skip_trigram_tl/cases.json"))["cases"]
worst = {"abs": 0.0, "ratio": 0.0, "at": ""}
try:
    for case in cases:
        got = inspect(f"{fix}/skip_trigram_tl/model.safetensors", case["tokens"], True)
        for key in ["logits", "logits_last", "pattern", "z", "head_out_last", "head_logits_last",
                    "direct_logits_last"]:
            compare(case[key], got[key], worst, f"{case['name']} {key}")
    report["skip_trigram_tl"] = dict(cases=len(cases), **worst)
except Exception as e:
    report["skip_trigram_tl"] = {"error": str(e)}
for name in ["attn2_shortformer", "mlp1_relu", "mlp2_ln_gelu"]:
    cases = json.load(open(f"{fix}/tl_general/{name}/cases.json"))["cases"]
    worst = {"abs": 0.0, "ratio": 0.0, "at": ""}
    try:
        for case in cases:
            got = inspect(f"{fix}/tl_general/{name}/model.safetensors", case["tokens"], True)
            for hook, value in case["cache"].items():
                compare(value, got["logits"] if hook == "logits" else got["cache"][hook], worst,
                        f"{case['name']} {hook}")
        report[name] = dict(cases=len(cases), hooks=len(cases[0]["cache"]), **worst)
    except Exception as e:
        report[name] = {"error": str(e)}
ok = all("error" not in r and r["ratio"] <= 1.0 for r in report.values())
print(json.dumps({"within_1e-5": ok, "tolerance": "|cuda - TL| <= 1e-5 + 1.3e-6 |TL|", **report}))
PY

# 3. The presets on both devices (each run's checkpoint feeds step 2).
for dev in cuda cpu; do
    d=$dev
    [ "$dev" = cuda ] && d=$GPU
    step "notebook-$dev" "$BIN" train --preset notebook --seed 0 --device "$d" --json --out "$WORK/runs/notebook-$dev.safetensors"
    step "fast-$dev" "$BIN" train --preset fast --seed 0 --device "$d" --json --out "$WORK/runs/fast-$dev.safetensors"
    step "induction-$dev" "$BIN" train --preset induction --seed 0 --device "$d" --json --out "$WORK/runs/induction-$dev.safetensors"
    # To the milestone (99 % test accuracy, ~1 600 of its 3 000 epochs): the whole run takes
    # two minutes on a CPU.
    step "grokking-fast-$dev" "$BIN" train --preset grokking-fast --seed 0 --device "$d" --json --stop-at-milestone --out "$WORK/runs/grokking-fast-$dev.safetensors"
done

# 2. eval on both devices, of the fixture and of the CPU-trained checkpoints; circuits.
SKIP=$FIX/skip_trigram_tl/model.safetensors
for dev in cuda cpu; do
    d=$dev
    [ "$dev" = cuda ] && d=$GPU
    step "eval-skip-trigram-$dev" "$BIN" eval "$SKIP" --json --device "$d"
    step "eval-mean-ablation-$dev" "$BIN" eval "$SKIP" --json --device "$d" --ablate 0,2 --ablate-mode mean
    step "eval-exhaustive-$dev" "$BIN" eval "$SKIP" --json --device "$d" --exhaustive
    step "eval-induction-$dev" "$BIN" eval "$WORK/runs/induction-cpu.safetensors" --json --device "$d"
    step "eval-grokking-fast-$dev" "$BIN" eval "$WORK/runs/grokking-fast-cpu.safetensors" --json --device "$d"
    step "eval-induction-ablated-$dev" "$BIN" eval "$WORK/runs/induction-cpu.safetensors" --json --device "$d" --ablate L0H1,L1H2 --ablate-mode mean
    step "eval-grokking-fast-ablated-$dev" "$BIN" eval "$WORK/runs/grokking-fast-cpu.safetensors" --json --device "$d" --ablate 0,3 --ablate-mode mean
done
step circuits "$BIN" circuits "$SKIP" --json
G=$FIX/tl_general
step analyze python3 "$REPO/scripts/gpu-analyze.py" "$BIN" "$GPU" \
    "$G/attn2_shortformer/model.safetensors:3 7 11 3 7 11 3 7 19 2:3 7 11 3 7 11 3 8 19 2:11:12" \
    "$G/mlp1_relu/model.safetensors:4 7 13:5 7 13:1:2" \
    "$G/mlp2_ln_gelu/model.safetensors:4 7 9 7 4 2 5:4 7 9 7 3 2 5:9:4" \
    "$SKIP:2 5 3 0:2 5 4 0:7:8" \
    "$WORK/runs/induction-cpu.safetensors:5 17 3 28 11 9 22 14 30 6 5 17 3 28 11 9 22 14 30:5 17 3 28 11 9 22 14 30 7 5 17 3 28 11 9 22 14 30:6:7"

# 4. Benchmarks, side by side on this machine.
for dev in cuda cpu; do
    d=$dev
    [ "$dev" = cuda ] && d=$GPU
    steps=100
    [ "$dev" = cpu ] && steps=20
    step "bench-grokking-$dev" "$BIN" bench --preset grokking --steps $steps --profile --device "$d"
    steps=20
    [ "$dev" = cpu ] && steps=3
    step "bench-induction-b1024-v1000-$dev" "$BIN" bench --preset induction --batch 1024 --vocab 1000 --steps $steps --profile --device "$d"
    step "bench-skip-trigram-b100k-len64-v1000-$dev" "$BIN" bench --batch 100000 --seq-len 64 --vocab 1000 --quick --device "$d"
done
if [ -n "$REFERENCE" ] && [ -f "$REFERENCE" ]; then
    step reference-grokking-cuda env REF_PLAIN=1 python3 "$REFERENCE" --device cuda --epochs 300 --eval-every 1000000
fi

python3 - "$WORK" <<'PY'
import json, os, sys
work = sys.argv[1]
runs = f"{work}/runs"
steps = {s["step"]: s for s in map(json.loads, open(f"{work}/steps.log"))}
def lines(name):
    try:
        return [json.loads(l) for l in open(f"{runs}/{name}.out") if l.startswith("{")]
    except (OSError, ValueError):
        return []
def err(name):
    try:
        return [l.strip() for l in open(f"{runs}/{name}.err") if l.strip()][-3:]
    except OSError:
        return []
def numbers(v, path=""):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from numbers(x, f"{path}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from numbers(x, f"{path}[{i}]")
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        yield path, float(v)
def max_diff(a, b, skip=("elapsed", "key_frequencies", "busy")):
    worst, at = 0.0, ""
    for i, (x, y) in enumerate(zip(a, b)):
        fy = dict(numbers(y))
        for k, v in numbers(x):
            if any(s in k for s in skip) or k not in fy:
                continue
            d = abs(v - fy[k])
            if d > worst:
                worst, at = d, f"line {i}{k}"
    return worst, at
def status(name):
    s = steps.get(name, {})
    return {"rc": s.get("rc"), "wall_s": s.get("wall_s")} | ({"stderr": err(name)} if s.get("rc") else {})
presets = {}
for p in ["notebook", "fast", "induction", "grokking-fast"]:
    a, b = lines(f"{p}-cuda"), lines(f"{p}-cpu")
    d, at = max_diff(a, b)
    last = lambda r: {k: v for k, v in (r[-1] if r else {}).items() if not isinstance(v, (dict, list))}
    presets[p] = {"evaluations": [len(a), len(b)], "max_abs_diff_of_metrics": d, "at": at,
                  "cuda": status(f"{p}-cuda") | {"last": last(a)},
                  "cpu": status(f"{p}-cpu") | {"last": last(b)}}
evals = {}
for e in ["skip-trigram", "mean-ablation", "exhaustive", "induction", "grokking-fast",
          "induction-ablated", "grokking-fast-ablated"]:
    a, b = lines(f"eval-{e}-cuda"), lines(f"eval-{e}-cpu")
    d, at = max_diff(a, b, skip=("elapsed", "wall"))
    evals[e] = {"max_abs_diff": d, "at": at, "cuda": status(f"eval-{e}-cuda"), "cpu": status(f"eval-{e}-cpu")}
bench = {}
for b in ["grokking", "induction-b1024-v1000", "skip-trigram-b100k-len64-v1000"]:
    cu, cp = lines(f"bench-{b}-cuda"), lines(f"bench-{b}-cpu")
    entry = {"cuda": (cu[-1] if cu else status(f"bench-{b}-cuda")), "cpu": (cp[-1] if cp else status(f"bench-{b}-cpu"))}
    if cu and cp:
        entry["cpu_over_cuda"] = round(cp[-1]["ms_per_step"] / cu[-1]["ms_per_step"], 2)
    bench[b] = entry
ref = lines("reference-grokking-cuda")
summary = {
    "gpu": open(f"{runs}/gpu.txt").read().strip(),
    "cpu_cores": int(open(f"{runs}/cores.txt").read()),
    "device_notes": sorted({l for n in os.listdir(runs) if n.endswith(".err") for l in err(n[:-4]) if "warning" in l}),
    "parity_inspect_cache_cuda": json.load(open(f"{runs}/parity.json")) if os.path.getsize(f"{runs}/parity.json") else {"error": err("parity")},
    "eval_cuda_vs_cpu": evals,
    "circuits": status("circuits") | {"note": "computed from the weights on the host for every device"},
    "analyze_cuda_vs_cpu": (lines("analyze") or [status("analyze")])[-1],
    "presets_cuda_vs_cpu": presets,
    "bench": bench,
    "pytorch_grokking_reference_cuda": ref[-1] if ref else None,
}
json.dump(summary, open(f"{work}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
