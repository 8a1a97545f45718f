"""Orthogonality of the weights: orthogonal initialization of G and D (App. C, Saxe et al. 2014) and
orthogonal regularization of G, BigGAN §3.1 (Eq. 2 and Eq. 3).

A weight is read as a matrix W whose ROWS are the filters: a conv kernel (o i kh kw) becomes
W = (o (i kh kw)), a linear weight (o i) stays as is. This is what BigGAN's code does; the
paper writes WᵀW with columns as filters, i.e. the same Gram matrix over filters.

    Eq. 2 (Brock 2017, strict):   R(W) = ‖W Wᵀ − I‖²_F           rows orthonormal
    Eq. 3 (BigGAN, relaxed):      R(W) = ‖W Wᵀ ⊙ (1 − I)‖²_F     rows orthogonal, any norms

Eq. 3 only decorrelates filters and leaves their norms free, which the paper found keeps the
benefit (amenability to truncation) without limiting the model. β = 1e-4 in the paper.

`full=True` selects Eq. 2, the default Eq. 3 (config field `ortho_full`, the same name in the same sense).

Two equivalent ways to apply it:
- `ortho_loss(G)`: add β·Σ R(W) to G's loss and let autograd differentiate it (simple).
- `ortho_(G)`: after `loss.backward()` and before `opt.step()`, add β·∂R/∂W to each `.grad`
  directly (BigGAN-PyTorch's way): no extra graph, cheaper for large G.

Tutorial: tutorials/07_truncation_ortho.md, tutorials/11_table1_ablation.md (the "+Ortho." row)
"""

import torch
from einops import rearrange
from torch import Tensor, nn

from nanobiggan.spectral_norm import SpectralNorm


def init_orthogonal_(model: nn.Module) -> None:
    """Orthogonal init of every conv/linear/embedding weight (Saxe et al. 2014; BigGAN App. C), zero biases,
    then spectral-norm vectors converged for the new weights."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) and not m.weight.is_meta:
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        if isinstance(m, SpectralNorm):
            m.reset_singular_vectors_()


def _gram_residual(w: Tensor, full: bool) -> Tensor:
    """W Wᵀ ⊙ (1 − I) for Eq. 3, or W Wᵀ − I for Eq. 2 (`full`); w is (o n), the result (o o)."""
    eye = torch.eye(w.shape[0], device=w.device, dtype=w.dtype)
    gram = w @ w.T  # (o o): inner products between filters
    return gram - eye if full else gram * (1 - eye)


def ortho_penalty(weight: Tensor, full: bool = False) -> Tensor:
    """R(W) for one weight, without β: Eq. 3, or Eq. 2 if `full`. Differentiable."""
    if weight.ndim < 2:
        raise ValueError(
            f"ortho_penalty needs a weight with ndim >= 2 (a matrix or conv kernel); got shape {tuple(weight.shape)}"
        )
    w = rearrange(weight, "o ... -> o (...)")
    return _gram_residual(w, full).pow(2).sum()


def ortho_grad(weight: Tensor, full: bool = False) -> Tensor:
    """∂R/∂W, same shape as `weight`: 4·(W Wᵀ ⊙ (1 − I))·W for Eq. 3, 4·(W Wᵀ − I)·W for Eq. 2.

    Derivation: with A the (symmetric) residual, dR = 2⟨A, dW Wᵀ + W dWᵀ⟩ = 4⟨A W, dW⟩.
    BigGAN-PyTorch's `ortho` uses 2·(…)·W, i.e. an effective β half the paper's; we return the
    exact derivative so that `ortho_` and `ortho_loss` agree for the same β.
    """
    if weight.ndim < 2:
        raise ValueError(
            f"ortho_grad needs a weight with ndim >= 2 (a matrix or conv kernel); got shape {tuple(weight.shape)}"
        )
    w = rearrange(weight, "o ... -> o (...)")
    return (4 * _gram_residual(w, full) @ w).view_as(weight)


def ortho_parameters(model: nn.Module, exclude=("shared", "table")) -> list[tuple[str, nn.Parameter]]:
    """The `(name, parameter)` pairs regularised: trainable parameters with ndim >= 2 whose
    dotted name has no component in `exclude`.

    1-D parameters (biases, BN gains) are not matrices and are skipped. G's shared class
    embedding is called `shared` and excluded by default, as in the paper: its rows are
    class codes, not filters; so are SA-GAN's per-class tables (cbn.ClassTable's `table`, the
    Table 1 ablation). Frozen parameters (requires_grad False) are skipped too.
    """
    if isinstance(exclude, str):
        exclude = (exclude,)  # a lone string would otherwise be iterated letter by letter
    return [
        (name, p)
        for name, p in model.named_parameters()
        if p.ndim >= 2 and p.requires_grad and not any(part in exclude for part in name.split("."))
    ]


def ortho_loss(model: nn.Module, beta: float = 1e-4, full: bool = False, exclude=("shared", "table")) -> Tensor:
    """β·Σ_W R(W) over `ortho_parameters(model, exclude)`; add it to G's loss before backward."""
    params = ortho_parameters(model, exclude)
    if not params:
        return torch.zeros(())
    return beta * torch.stack([ortho_penalty(p, full) for _, p in params]).sum()


@torch.no_grad()
def ortho_(model: nn.Module, beta: float = 1e-4, full: bool = False, exclude=("shared", "table")) -> None:
    """Direct-gradient form: `p.grad += β·ortho_grad(p)` for every regularised parameter.

    Call after G's `loss.backward()` and before `optimizer.step()`. Gives the same gradients as
    adding `ortho_loss(model, beta, ...)` to the loss, without building a graph for it.
    """
    for _, p in ortho_parameters(model, exclude):
        g = beta * ortho_grad(p, full)
        if p.grad is None:
            p.grad = g
        else:
            p.grad.add_(g)
