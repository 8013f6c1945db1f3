"""Writes tests/fixtures/tl_pth/: a real TransformerLens model saved the way its users save one,
torch.save(model.state_dict(), "model.pth"), and the variants toylens must read or refuse.

usage: pip install torch "transformer_lens<4" safetensors numpy
       python3 scripts/make-pth-fixture.py

The model is tests/fixtures/tl_general/mlp2_ln_gelu (2 layers, LayerNorm, GELU MLPs), its weights
loaded from that fixture's safetensors into a HookedTransformer built from its config.json, so the
.pth holds exactly TL's state dict (its bool attention masks and IGNORE buffers included) and the
same numbers as the safetensors file toylens is already checked against.
"""
import json
import pathlib
import shutil

import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests/fixtures/tl_general/mlp2_ln_gelu"
OUT = ROOT / "tests/fixtures/tl_pth"


class NotAStateDict:
    """A pickled object of a class: what toylens must refuse rather than run."""

    def __init__(self):
        self.weights = torch.ones(2)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    config = json.loads((SOURCE / "config.json").read_text())
    model = HookedTransformer(HookedTransformerConfig(**config))
    model.load_state_dict(load_file(SOURCE / "model.safetensors"), strict=True)
    sd = model.state_dict()
    shutil.copy(SOURCE / "config.json", OUT / "config.json")
    torch.save(sd, OUT / "model.pth")
    torch.save({"model_state_dict": sd, "epoch": 3}, OUT / "wrapped.pth")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, OUT / "half.pth")
    torch.save(sd, OUT / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.save(NotAStateDict(), OUT / "object.pth")
    print("wrote", sorted(p.name for p in OUT.iterdir()))
    print("tensors:", {k: (tuple(v.shape), str(v.dtype)) for k, v in list(sd.items())[:6]}, "...")


if __name__ == "__main__":
    main()
