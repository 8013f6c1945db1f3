"""toylens's SAEs and SAELens 6's, both ways, on the same activations.

    pip install "sae-lens>=6,<7"
    python3 scripts/check-saelens.py [TOYLENS_BINARY]

1. toylens trains a standard and a TopK SAE on a superposition model's hidden layer and on a
   transformer's residual stream (the bundled model's blocks.0.hook_resid_post), and saves them; SAELens's `SAE.load_from_disk` loads each, and its `encode` and `decode` of toylens's
   activations must equal toylens's (`toylens sae eval --dump`) to 1e-5.
2. SAELens saves a standard and a TopK SAE of random weights (`save_model`); toylens opens each
   and its latents and reconstructions must equal SAELens's to 1e-5.
Prints the largest differences and exits non-zero if any passes 1e-5.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from sae_lens import SAE
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/toylens-target/release/toylens")
TOL = 1e-5


def run(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"toylens {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def rel(a, b):
    scale = max(b.abs().max().item(), 1e-12)
    return (a - b).abs().max().item() / scale


def compare(sae, dump, what):
    d = load_file(dump)
    x = d["x"]
    with torch.no_grad():
        f = sae.encode(x)
        out = sae.decode(f)
    errs = {"feature_acts": rel(f, d["feature_acts"]), "sae_out": rel(out, d["sae_out"])}
    print(f"{what}: largest relative differences {errs}")
    return max(errs.values())


def main():
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "tms.json")
        with open(config, "w") as fh:
            json.dump({"model": {"kind": "tms", "n_features": 40, "n_hidden": 10, "n_instances": 1},
                       "task": {"feature_probability": {"constant": 0.05}, "importance": {"decay": 1.0}},
                       "train": {"steps": 3000, "eval_every": 3000}}, fh)
        model = os.path.join(tmp, "tms.safetensors")
        run("train", "--config", config, "--out", model)

        # 1. toylens → SAELens, on a superposition model's hidden layer and on a transformer's
        # residual stream (the bundled skip-trigram model).
        bundled = os.path.join(os.path.dirname(__file__), "..", "assets", "fast-seed0.safetensors")
        for what, source, hook in [("superposition", model, "hook_hidden.0"),
                                   ("transformer", bundled, "blocks.0.hook_resid_post")]:
            for name, flags in [("standard", ["--l1", "0.1"]), ("topk", ["--topk", "4"])]:
                folder = os.path.join(tmp, f"toylens-{what}-{name}")
                run("sae", "train", source, "--hook", hook, "--d-sae", "64", *flags,
                    "--steps", "500", "--batch", "1024", "--out", folder)
                dump = os.path.join(tmp, f"toylens-{what}-{name}.safetensors")
                run("sae", "eval", folder, source, "--batch", "512", "--dump", dump)
                sae = SAE.load_from_disk(folder, device="cpu")
                assert sae.cfg.architecture() == name, sae.cfg.architecture()
                assert sae.cfg.metadata.hook_name == hook, sae.cfg.metadata.hook_name
                worst = max(worst, compare(sae, dump,
                                           f"toylens's {name} SAE on {what} {hook} loaded by SAELens"))

        # 2. SAELens → toylens.
        torch.manual_seed(0)
        meta = {"hook_name": "hook_hidden.0", "model_name": "tms"}
        for name, sae in [
            ("standard", StandardSAE(StandardSAEConfig(d_in=10, d_sae=48))),
            ("topk", TopKSAE(TopKSAEConfig(d_in=10, d_sae=48, k=5, rescale_acts_by_decoder_norm=True))),
        ]:
            sae.cfg.metadata.hook_name = meta["hook_name"]
            sae.cfg.metadata.model_name = meta["model_name"]
            with torch.no_grad():
                for p in sae.parameters():
                    p.copy_(torch.randn_like(p) * 0.3)
            folder = os.path.join(tmp, f"saelens-{name}")
            sae.save_model(folder)
            dump = os.path.join(tmp, f"saelens-{name}.safetensors")
            run("sae", "eval", folder, model, "--batch", "512", "--dump", dump)
            worst = max(worst, compare(sae, dump, f"SAELens's {name} SAE opened by toylens"))
    print(f"largest relative difference {worst:.2e} (tolerance {TOL:.0e})")
    sys.exit(0 if worst <= TOL else 1)


if __name__ == "__main__":
    main()
