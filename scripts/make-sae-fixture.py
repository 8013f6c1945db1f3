"""Writes tests/fixtures/sae/sae.safetensors: an SAE's losses and autograd gradients in PyTorch,
for tests/sae.rs.

    python3 scripts/make-sae-fixture.py

The losses are SAELens's (standard: MSE summed over d_in and averaged over the batch, plus
λ Σ f_i ‖W_dec,i‖ averaged over the batch; topk: the MSE plus AuxK over the dead latents),
written out here in plain PyTorch so that the fixture does not depend on SAELens's version.
"""
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
B, D, S, K, LAMBDA = 16, 6, 10, 3, 0.3
x = torch.randn(B, D)
W_enc = torch.randn(D, S) * 0.5
b_enc = torch.randn(S) * 0.1
W_dec = torch.randn(S, D) * 0.5
b_dec = torch.randn(D) * 0.1
dead = torch.zeros(S, dtype=torch.bool)
dead[[1, 4, 7, 8]] = True

out = {"x": x, "W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec,
       "dead": dead.float()}


def params():
    return [t.clone().requires_grad_(True) for t in (W_enc, b_enc, W_dec, b_dec)]


# Standard: ReLU, L1 weighted by decoder norms.
we, be, wd, bd = params()
pre = (x - bd) @ we + be
f = torch.relu(pre)
x_hat = f @ wd + bd
mse = (x_hat - x).pow(2).sum(-1).mean()
l1 = (LAMBDA * (f * wd.norm(dim=1)).norm(p=1, dim=-1)).mean()
(mse + l1).backward()
out.update({"standard_mse": mse.detach().reshape(1), "standard_l1": l1.detach().reshape(1),
            "standard_grad_W_enc": we.grad, "standard_grad_b_enc": be.grad,
            "standard_grad_W_dec": wd.grad, "standard_grad_b_dec": bd.grad})

# TopK with AuxK (coefficient 1, k_aux = D // 2).
we, be, wd, bd = params()
pre = (x - bd) @ we + be
top = pre.topk(K, dim=-1)
f = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
x_hat = f @ wd + bd
mse = (x_hat - x).pow(2).sum(-1).mean()
residual = (x - x_hat).detach()
k_aux = D // 2
scale = min(int(dead.sum()) / k_aux, 1.0)
k_aux = min(k_aux, int(dead.sum()))
masked = torch.where(dead[None], pre, -torch.inf)
aux_top = masked.topk(k_aux, dim=-1)
acts = torch.zeros_like(pre).scatter(-1, aux_top.indices, aux_top.values)
aux = scale * ((acts @ wd) - residual).pow(2).sum(-1).mean()
(mse + aux).backward()
out.update({"topk_mse": mse.detach().reshape(1), "topk_aux": aux.detach().reshape(1),
            "topk_grad_W_enc": we.grad, "topk_grad_b_enc": be.grad,
            "topk_grad_W_dec": wd.grad, "topk_grad_b_dec": bd.grad})

save_file({k: v.contiguous().float() for k, v in out.items()}, "tests/fixtures/sae/sae.safetensors")
print("wrote tests/fixtures/sae/sae.safetensors")
