"""The sequences task in TransformerLens and PyTorch: the same data file, model and training as
`toylens train --data FILE --preset sort`, for side-by-side speed and results.

    python3 benches/sequences_reference.py DATA.jsonl [--vocab vocab.json] [--epochs 10]
        [--threads 2] [--seed 0]

A 2-layer attention-only HookedTransformer (d_model 64, 4 heads of 16, learned positions, no
LayerNorm; d_vocab and n_ctx from the data), AdamW lr 1e-3, weight decay 0.01, betas (0.9, 0.999),
batch 128, 10 % of the sequences drawn into validation, each epoch one pass over the training
sequences in a fresh random order. The loss is the mean cross-entropy at the positions the file
scores (`loss_mask`: the token after each marked position). After each epoch it measures
validation loss, accuracy and sequence accuracy (every scored position right) and prints one JSON
line per epoch; the last line has the median seconds per epoch (training only).
"""
import argparse
import json
import os
import statistics
import time

import torch as t
from transformer_lens import HookedTransformer, HookedTransformerConfig

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--vocab")
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--val-frac", type=float, default=0.1)
a = ap.parse_args()
t.set_num_threads(a.threads)
t.manual_seed(a.seed)

vocab_path = a.vocab or os.path.join(os.path.dirname(a.data), "vocab.json")
vocab = json.load(open(vocab_path))
index = {s: i for i, s in enumerate(vocab)}
tokens, masks = [], []
for line in open(a.data):
    if line.strip():
        row = json.loads(line)
        tokens.append([index[s] if isinstance(s, str) else s for s in row["tokens"]])
        masks.append(row.get("loss_mask") or [1] * (len(row["tokens"]) - 1) + [0])
tokens = t.tensor(tokens)
masks = t.tensor(masks, dtype=t.bool)
n, seq_len = tokens.shape
# Each position's target: the next token where the mask scores it.
targets = t.full_like(tokens, -100)
targets[:, :-1] = t.where(masks[:, :-1], tokens[:, 1:], t.full_like(tokens[:, 1:], -100))
gen = t.Generator().manual_seed(a.seed)
is_val = t.rand(n, generator=gen) < a.val_frac
train_ids, val_ids = (~is_val).nonzero().squeeze(1), is_val.nonzero().squeeze(1)

cfg = HookedTransformerConfig(n_layers=2, d_model=64, n_heads=4, d_head=16, d_vocab=len(vocab),
                              n_ctx=seq_len, attn_only=True, normalization_type=None,
                              positional_embedding_type="standard", device="cpu", seed=a.seed)
model = HookedTransformer(cfg)
opt = t.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)


def loss_of(logits, target):
    return t.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                         target.reshape(-1), ignore_index=-100)


@t.no_grad()
def evaluate(ids):
    logits = model(tokens[ids])
    target = targets[ids]
    scored = target != -100
    right = (logits.argmax(-1) == target) | ~scored
    return {
        "loss": loss_of(logits, target).item(),
        "acc": (right & scored).sum().item() / scored.sum().item(),
        "seq_acc": right.all(1).float().mean().item(),
    }


epoch_s = []
for epoch in range(1, a.epochs + 1):
    order = train_ids[t.randperm(len(train_ids), generator=gen)]
    start = time.perf_counter()
    for b in range(0, len(order), a.batch):
        ids = order[b:b + a.batch]
        loss = loss_of(model(tokens[ids]), targets[ids])
        opt.zero_grad()
        loss.backward()
        opt.step()
    epoch_s.append(time.perf_counter() - start)
    val = evaluate(val_ids)
    print(json.dumps({"epoch": epoch, "val_loss": val["loss"], "val_acc": val["acc"],
                      "val_seq_acc": val["seq_acc"], "epoch_s": epoch_s[-1]}), flush=True)
print(json.dumps({"program": "transformer_lens", "threads": a.threads,
                  "train_sequences": len(train_ids), "val_sequences": len(val_ids),
                  "median_epoch_s": statistics.median(epoch_s)}))
