"""Load a toylens checkpoint into TransformerLens and check it against `toylens inspect --json`.

    python tests/python/load_in_transformer_lens.py run.safetensors [toylens-binary]

Needs `pip install torch transformer_lens safetensors`. Exits non-zero on any mismatch > 1e-5.
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
    model_cfg = json.loads(f.metadata()["config"])["model"]
cfg = HookedTransformerConfig(
    n_layers=1,
    d_model=model_cfg["d_model"],
    d_head=model_cfg["d_head"],
    n_heads=model_cfg["n_heads"],
    n_ctx=model_cfg["n_ctx"],
    d_vocab=model_cfg["d_vocab"],
    attn_only=True,
    normalization_type=None,
    use_attn_result=True,
)
model = HookedTransformer(cfg)
model.load_state_dict(load_file(path), strict=False)
logits, cache = model.run_with_cache(torch.tensor([[2, 5, 3, 0]]))
# ----------------------------------------------------------------------------------------------

ours = json.loads(
    subprocess.run([binary, "inspect", path, "2 5 3 0", "--json"], check=True, capture_output=True, text=True).stdout
)
W_U = model.W_U.detach()
checks = {
    "logits": (logits[0], ours["logits"]),
    "pattern": (cache["blocks.0.attn.hook_pattern"][0], ours["pattern"]),
    "z": (cache["blocks.0.attn.hook_z"][0], ours["z"]),
    "head_logits_last": (cache["blocks.0.attn.hook_result"][0, -1] @ W_U, ours["head_logits_last"]),
    "bias_logits": (model.b_O.detach() @ W_U, ours["bias_logits"]),
}
worst = 0.0
for name, (tl, toy) in checks.items():
    diff = (tl.detach().float() - torch.tensor(toy)).abs().max().item()
    worst = max(worst, diff)
    print(f"{name:18s} max |TL - toylens| = {diff:.2e}")
print(f"predicted token: TL {logits[0, -1].argmax().item()}, toylens {ours['predicted_token']}")
assert logits[0, -1].argmax().item() == ours["predicted_token"]
assert worst <= 1e-5, f"mismatch {worst}"
from importlib.metadata import version

print("OK: TransformerLens", version("transformer_lens"), "agrees within 1e-5")
