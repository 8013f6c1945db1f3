"""A plain PyTorch SAE training loop (the standard SAE as toylens and SAELens define it) on cached
activations: the reference for benches/compare_sae.sh.

    python3 benches/sae_reference.py --activations x.safetensors --d-sae 200 --l1 0.1 --steps 1000

The activations are a safetensors file with `x [N, d_in]` (`toylens sae eval --dump` writes one);
each step takes the next `--batch` rows (wrapping around). Prints `summary {json}` with the
median ms per step over blocks of 50 steps and the final explained variance on the whole cache.
"""
import argparse
import json
import statistics
import time

import torch
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--activations", required=True)
    ap.add_argument("--d-sae", type=int, default=200)
    ap.add_argument("--l1", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_all = load_file(args.activations)["x"].float()
    n, d = x_all.shape
    s = args.d_sae
    w_dec = torch.empty(s, d)
    torch.nn.init.kaiming_uniform_(w_dec)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * 0.1
    W_dec = torch.nn.Parameter(w_dec)
    W_enc = torch.nn.Parameter(w_dec.T.clone().contiguous())
    b_enc = torch.nn.Parameter(torch.zeros(s))
    b_dec = torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=args.lr)

    def forward(x):
        f = torch.relu((x - b_dec) @ W_enc + b_enc)
        return f, f @ W_dec + b_dec

    blocks, start, at = [], time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        x = x_all[at:at + args.batch]
        if x.shape[0] < args.batch:
            at = 0
            x = x_all[:args.batch]
        at += args.batch
        f, x_hat = forward(x)
        mse = (x_hat - x).pow(2).sum(-1).mean()
        l1 = (args.l1 * (f * W_dec.norm(dim=1)).sum(-1)).mean()
        opt.zero_grad(set_to_none=True)
        (mse + l1).backward()
        opt.step()
        if step % 50 == 0:
            now = time.perf_counter()
            blocks.append((now - start) * 1000 / 50)
            start = now
    with torch.no_grad():
        _, x_hat = forward(x_all)
        ev = 1 - (x_hat - x_all).pow(2).sum() / (x_all - x_all.mean(0)).pow(2).sum()
    print("summary " + json.dumps({"ms_per_step": statistics.median(blocks),
                                   "explained_variance": ev.item(), "threads": args.threads}))


if __name__ == "__main__":
    main()
