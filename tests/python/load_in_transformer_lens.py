"""Load a toylens checkpoint into TransformerLens and check every hook against toylens.

    python tests/python/load_in_transformer_lens.py run.safetensors [toylens-binary] [tokens]

Needs `pip install torch "transformer_lens<4" safetensors`. Works for every model toylens saves:
the config comes from the file's `tl_config` metadata, the weights load with a strict
`load_state_dict`. Compares the logits and every activation of `run_with_cache` with
`toylens inspect FILE TOKENS --json --cache`; exits non-zero on a difference above
1e-5 + 1.3e-6·|value| (torch.testing's float32 tolerance).
"""
import json
import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

path = sys.argv[1]
binary = sys.argv[2] if len(sys.argv) > 2 else "toylens"

# --- the snippet the README shows -------------------------------------------------------------
with safe_open(path, "pt") as f:
    cfg = json.loads(f.metadata()["tl_config"])
model = HookedTransformer(HookedTransformerConfig(**cfg, use_attn_result=True))
model.load_state_dict(load_file(path))
# ----------------------------------------------------------------------------------------------

n_ctx, d_vocab = cfg["n_ctx"], cfg["d_vocab"]
if len(sys.argv) > 3:
    tokens = [int(t) for t in sys.argv[3].replace(",", " ").split()]
else:
    tokens = [(7 * i + 2) % d_vocab for i in range(n_ctx)]
logits, cache = model.run_with_cache(torch.tensor([tokens]))

ours = json.loads(
    subprocess.run(
        [binary, "inspect", path, " ".join(map(str, tokens)), "--json", "--cache"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)


def as_tensor(nested):
    """toylens writes TL's masked scores (-inf) as null."""
    return torch.tensor(json.loads(json.dumps(nested).replace("null", "-Infinity")))


worst, worst_name = 0.0, ""
checks = {"logits": (logits[0], ours["logits"])}
for name, value in cache.items():
    if name not in ours["cache"]:
        raise SystemExit(f"toylens has no {name}")
    checks[name] = (value[0], ours["cache"][name])
missing = set(ours["cache"]) - set(cache.keys())
if missing:
    raise SystemExit(f"toylens has hooks TL does not: {sorted(missing)}")
for name, (tl, toy) in checks.items():
    tl = tl.detach().float()
    toy = as_tensor(toy)
    assert tl.shape == toy.shape, f"{name}: TL {tuple(tl.shape)}, toylens {tuple(toy.shape)}"
    finite = torch.isfinite(tl)
    assert torch.equal(finite, torch.isfinite(toy)), f"{name}: masked entries differ"
    diff = (tl[finite] - toy[finite]).abs()
    ratio = (diff / (1e-5 + 1.3e-6 * tl[finite].abs())).max().item() if diff.numel() else 0.0
    if ratio >= worst:
        worst, worst_name = ratio, name
    print(f"{name:40s} max |TL - toylens| = {diff.max().item() if diff.numel() else 0.0:.2e}")
print(f"predicted token: TL {logits[0, -1].argmax().item()}, toylens {ours['predicted_token']}")
assert logits[0, -1].argmax().item() == ours["predicted_token"]
assert worst <= 1.0, f"{worst_name} is {worst:.2f}x the tolerance off"
from importlib.metadata import version

print(f"OK: TransformerLens {version('transformer_lens')} agrees on {len(checks)} tensors "
      f"(worst {worst_name}, {worst:.2f} of the tolerance)")
