#!/usr/bin/env python3
"""Compares `toylens analyze --json` and `toylens circuits --json` with TransformerLens itself.

usage: check-analysis-against-tl.py TOYLENS MODEL.safetensors CONFIG.json TOKENS CORRUPT ANSWER WRONG

MODEL is a TL state dict (a toylens checkpoint or a fixture's model.safetensors) and CONFIG its
HookedTransformerConfig fields. TOKENS and CORRUPT are comma-separated. Prints the largest
relative error of every key and exits 1 if one exceeds 1e-4. Needs torch and transformer_lens<4.
"""
import json
import subprocess
import sys

import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching
from transformer_lens import head_detector as hd

TOLERANCE = 1e-4


def main():
    toylens, model_path, config_path, tokens, corrupt, answer, wrong = sys.argv[1:8]
    answer, wrong = int(answer), int(wrong)
    cfg = HookedTransformerConfig(**json.load(open(config_path)))
    model = HookedTransformer(cfg)
    state = load_file(model_path)
    model.load_state_dict(state, strict=False)
    model.eval()
    clean = torch.tensor([[int(t) for t in tokens.split(",")]])
    bad = torch.tensor([[int(t) for t in corrupt.split(",")]])

    ours = json.loads(subprocess.run(
        [toylens, "analyze", model_path, "--tl-config", config_path, tokens, "--json",
         "--corrupt", corrupt, "--answer", str(answer), "--wrong", str(wrong)],
        check=True, capture_output=True, text=True).stdout)
    circuits = json.loads(subprocess.run(
        [toylens, "circuits", model_path, "--tl-config", config_path, "--json"],
        check=True, capture_output=True, text=True).stdout)

    with torch.no_grad():
        logits, cache = model.run_with_cache(clean)
        stack, labels = cache.get_full_resid_decomposition(expand_neurons=False, return_labels=True)
        print(f"TL's own labels: {labels}")
        if cfg.positional_embedding_type == "shortformer":
            # Shortformer positions never enter the residual stream (the convention).
            keep = [i for i, l in enumerate(labels) if l != "pos_embed"]
            stack, labels = stack[keep], [labels[i] for i in keep]
        stack = cache.apply_ln_to_stack(stack)[:, 0, -1]
        w_u = model.W_U
        if cfg.normalization_type == "LN":
            dla = (stack * model.ln_final.w) @ w_u
            constant = model.ln_final.b @ w_u + model.b_U
        else:
            dla = stack @ w_u
            constant = model.b_U
        acc = cache.accumulated_resid(apply_ln=False)[:, 0, -1]
        final = model.ln_final if hasattr(model, "ln_final") else (lambda x: x)
        lens = model.unembed(final(acc[:, None, :]))[:, 0]
        heads = {}
        for name in ["previous_token", "duplicate_token", "induction"]:
            pattern = getattr(hd, f"get_{name}_head_detection_pattern")(clean.cpu())
            heads[name] = [[hd.compute_head_attention_similarity_score(
                cache["pattern", l][0, h], pattern, exclude_bos=False,
                exclude_current_token=False, error_measure="mul")
                for h in range(cfg.n_heads)] for l in range(cfg.n_layers)]

        def metric(lg):
            return lg[0, -1, answer] - lg[0, -1, wrong]

        bad_logits = model(bad)
        resid = patching.get_act_patch_resid_pre(model, bad, cache, metric)
        head_out = patching.get_act_patch_attn_head_out_all_pos(model, bad, cache, metric)
        ov = model.W_E @ model.OV @ model.W_U
        qk = model.W_E @ model.QK @ model.W_E.T
        eig = ov.eigenvalues
        copying = eig.sum(-1).real / eig.abs().sum(-1)
        want = {
            "labels": labels,
            "dla": dla, "dla_constant": constant, "logit_lens": lens,
            "heads.previous_token": heads["previous_token"],
            "heads.duplicate_token": heads["duplicate_token"],
            "heads.induction": heads["induction"],
            "patching.resid_pre": resid, "patching.head_out": head_out,
            "patching.metric_clean": metric(logits), "patching.metric_corrupt": metric(bad_logits),
            "ov_full": ov.AB, "qk_full": qk.AB, "copying_score": copying,
        }
        if cfg.n_layers > 1:
            for mode in "QKV":
                want[f"composition.{mode}"] = model.all_composition_scores(mode)

    got = dict(ours)
    for key, value in list(ours.items()):
        if isinstance(value, dict):
            for k, v in value.items():
                got[f"{key}.{k}"] = v
    for key, value in circuits.items():
        got[key] = value
        if isinstance(value, dict):
            for k, v in value.items():
                got[f"{key}.{k}"] = v
    worst = 0.0
    for key, expected in want.items():
        if key == "labels":
            assert got[key] == expected, f"labels {got[key]} != {expected}"
            print(f"{key:<24} equal: {expected}")
            continue
        expected = torch.as_tensor(expected, dtype=torch.float64)
        actual = torch.tensor(got[key], dtype=torch.float64)
        assert actual.shape == expected.shape, f"{key}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        scale = expected.abs().max().clamp(min=1e-12)
        err = ((actual - expected).abs().max() / scale).item()
        worst = max(worst, err)
        print(f"{key:<24} shape {str(tuple(expected.shape)):<18} max |diff| / max |TL| = {err:.2e}")
    print(f"worst {worst:.2e} (tolerance {TOLERANCE:.0e})")
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
