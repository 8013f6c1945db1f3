"""Writes tests/fixtures/tms/: fixed weights and batches of the Toy Models of Superposition
model, and PyTorch's loss and gradients on them, for both outputs (ReLU and linear).

    python3 scripts/make-tms-fixture.py tests/fixtures/tms

3 instances, 8 features, 3 hidden, a batch of 32: instance 0 dense (every feature active),
instance 1 at probability 0.3, instance 2 at 0.05; importance 0.9^i; b drawn, so that some
pre-activations are negative. The loss is the paper notebook's: importance * (|x| - x')^2, mean
over batch and features, summed over instances; the gradients are autograd's.
"""
import os
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
I, n, m, B = 3, 8, 3, 32
W0 = torch.nn.init.xavier_normal_(torch.empty(I, n, m))
b0 = 0.3 * torch.randn(I, n)
p = torch.tensor([1.0, 0.3, 0.05])[None, :, None]
feat = torch.rand(B, I, n)
x = torch.where(torch.rand(B, I, n) <= p, feat, torch.zeros(()))
importance = 0.9 ** torch.arange(n, dtype=torch.float32)
tensors = {"W": W0, "b": b0, "x": x.contiguous(), "importance": importance}
for name, act in [("relu", torch.relu), ("linear", lambda t: t)]:
    W = W0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    hidden = torch.einsum("bif,ifh->bih", x, W)
    outp = act(torch.einsum("bih,ifh->bif", hidden, W) + b)
    per_instance = (importance * (x.abs() - outp) ** 2).mean(dim=(0, 2))
    per_instance.sum().backward()
    tensors[f"loss_{name}"] = per_instance.detach()
    tensors[f"grad_W_{name}"] = W.grad.detach()
    tensors[f"grad_b_{name}"] = b.grad.detach()
save_file(tensors, os.path.join(out, "tms.safetensors"))
print("active share per instance:", (x != 0).float().mean(dim=(0, 2)).tolist())
