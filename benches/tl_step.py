"""One training step of a 2-layer attention-only TransformerLens model, timed.

    python benches/tl_step.py [--threads 2] [--steps 200] [--warmup 20]

The model and data of the induction-head reference (../shared/reference/induction_reference.py):
d_model 64, 4 heads of 16, learned positions, no LayerNorm, vocabulary 32, sequences of 10 random
tokens repeated once (20 positions), batch 64, next-token loss at every position
(`return_type="loss"`), Adam lr 1e-3. Prints one JSON line with the median ms per step
(forward, loss, backward, update; the batch is drawn outside the timer) and the process's peak
RSS. `benches/compare_tl_step.sh` runs it next to `toylens bench --lm-step`.
"""
import argparse
import json
import resource
import statistics
import time

import torch as t
from transformer_lens import HookedTransformer, HookedTransformerConfig

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--steps", type=int, default=200)
ap.add_argument("--warmup", type=int, default=20)
a = ap.parse_args()
t.set_num_threads(a.threads)
t.manual_seed(0)
cfg = HookedTransformerConfig(n_layers=2, d_model=64, n_heads=4, d_head=16, d_vocab=32, n_ctx=20,
                              attn_only=True, normalization_type=None,
                              positional_embedding_type="standard", device="cpu", seed=0)
model = HookedTransformer(cfg)
opt = t.optim.Adam(model.parameters(), lr=1e-3)
gen = t.Generator().manual_seed(1)
times = []
for step in range(a.warmup + a.steps):
    first = t.randint(0, 32, (64, 10), generator=gen)
    tokens = t.cat([first, first], dim=1)
    s = time.perf_counter()
    loss = model(tokens, return_type="loss")
    opt.zero_grad()
    loss.backward()
    opt.step()
    elapsed = time.perf_counter() - s
    if step >= a.warmup:
        times.append(elapsed)
print(json.dumps({
    "program": "transformer_lens",
    "threads": a.threads,
    "ms_per_step": statistics.median(times) * 1e3,
    "final_loss": loss.item(),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
