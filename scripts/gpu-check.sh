#!/usr/bin/env bash
# Checks a CUDA build of toylens on a machine with an NVIDIA GPU and prints one JSON summary:
#   1. parity: every case of the TransformerLens fixture through `inspect --device cuda:0`,
#      max |difference| against the fixture's values (must be <= 1e-5);
#   2. the notebook preset trained on cuda:0 and on the CPU, max |difference| of the per-epoch
#      losses (expected ~1e-4 or less) and both wall times;
#   3. `bench` at a large config (vocabulary 1000, length 64, batch 100 000) on both devices.
#
#   scripts/gpu-check.sh [BIN] [FIXTURE_DIR] [LIB_DIR]
#
# BIN is a release binary built elsewhere with `--features cuda` (the GPU machine needs no Rust;
# `strip` it and `gzip` it to carry it: BIN may end in .gz),
# LIB_DIR holds the CUDA libraries it loads (libcudart, libcublas, libcurand, libnvrtc) when the
# machine has none on its library path. Needs python3 for the comparisons.
set -euo pipefail
BIN=${1:-target/release/toylens}
FIX=${2:-tests/fixtures/skip_trigram_tl}
LIB=${3:-}
# Without a LIB_DIR, use the CUDA 13 libraries of a pip-installed PyTorch if there is one.
if [ -z "$LIB" ]; then
    LIB=$(python3 -c 'import nvidia, os; print(os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu13", "lib"))' 2>/dev/null || true)
fi
[ -n "$LIB" ] && [ -d "$LIB" ] && export LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# A stripped CUDA build is ~74 MB; gzipped (~22 MB) it fits the device tool's carry limit.
if [[ "$BIN" == *.gz ]]; then
    gunzip -c "$BIN" >"$TMP/toylens" && chmod +x "$TMP/toylens" && BIN="$TMP/toylens"
fi

# 1. Parity on the GPU. A fallback to the CPU is reported, not hidden.
"$BIN" inspect "$FIX/model.safetensors" 0 --json --device cuda:0 >/dev/null 2>"$TMP/device.txt" || true
python3 - "$BIN" "$FIX" >"$TMP/parity.json" <<'PY'
import json, subprocess, sys
binary, fix = sys.argv[1], sys.argv[2]
cases = json.load(open(f"{fix}/cases.json"))["cases"]
def flat(v):
    return [x for item in v for x in flat(item)] if isinstance(v, list) else [v]
worst = 0.0
for case in cases:
    tokens = " ".join(map(str, case["tokens"]))
    out = subprocess.run([binary, "inspect", f"{fix}/model.safetensors", tokens, "--json",
                          "--device", "cuda:0"], check=True, capture_output=True, text=True)
    got = json.loads(out.stdout)
    for key in ["logits", "logits_last", "pattern", "z", "head_out_last", "head_logits_last",
                "direct_logits_last"]:
        a, b = flat(case[key]), flat(got[key])
        assert len(a) == len(b), key
        worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
print(json.dumps({"cases": len(cases), "max_abs_diff": worst, "within_1e-5": worst <= 1e-5}))
PY

# 2. The notebook preset on both devices.
for dev in cuda:0 cpu; do
    start=$(date +%s.%N)
    "$BIN" train --preset notebook --seed 0 --device "$dev" --json \
        --out "$TMP/nb-${dev%%:*}.safetensors" >"$TMP/nb-${dev%%:*}.jsonl" 2>>"$TMP/device.txt"
    echo "$(date +%s.%N) - $start" | bc >"$TMP/nb-${dev%%:*}.wall"
done
python3 - "$TMP" >"$TMP/train.json" <<'PY'
import json, sys
d = sys.argv[1]
rows = {dev: [json.loads(l) for l in open(f"{d}/nb-{dev}.jsonl")] for dev in ("cuda", "cpu")}
keys = ["train_loss", "val_loss", "val_acc", "val_acc_signal"]
diff = max(abs(a[k] - b[k]) for a, b in zip(rows["cuda"], rows["cpu"]) for k in keys)
print(json.dumps({
    "epochs": len(rows["cuda"]),
    "max_abs_diff_of_metrics": diff,
    "final_val_loss": {dev: r[-1]["val_loss"] for dev, r in rows.items()},
    "wall_s": {dev: float(open(f"{d}/nb-{dev}.wall").read()) for dev in ("cuda", "cpu")},
}))
PY

# 3. A large config, where a GPU should win.
"$BIN" bench --batch 100000 --seq-len 64 --vocab 1000 --quick --device cuda:0 >"$TMP/bench-cuda.json" 2>>"$TMP/device.txt"
"$BIN" bench --batch 100000 --seq-len 64 --vocab 1000 --quick --device cpu >"$TMP/bench-cpu.json"

python3 - "$TMP" <<'PY'
import json, sys
d = sys.argv[1]
notes = sorted(set(l.strip() for l in open(f"{d}/device.txt") if "warning" in l or "error" in l))
print(json.dumps({
    "device_notes": notes,
    "parity": json.load(open(f"{d}/parity.json")),
    "notebook_preset": json.load(open(f"{d}/train.json")),
    "bench_vocab1000_len64_batch100k": {
        "cuda": json.load(open(f"{d}/bench-cuda.json")),
        "cpu": json.load(open(f"{d}/bench-cpu.json")),
    },
}, indent=1))
PY
