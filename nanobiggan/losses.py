"""GAN objectives: hinge (BigGAN's default), non-saturating, Wasserstein, and the R1 penalty.

Every loss takes the discriminator's raw logits (no sigmoid), shape `(n)` or `(n 1)`, and
returns a scalar to *minimise*. D's losses take real and fake logits, G's only the fake ones.

- hinge: Lim & Ye 2017 "Geometric GAN"; used by SA-GAN and BigGAN (§3).
- ns: Goodfellow et al. 2014, Eq. 1 for D and the non-saturating G loss of their §3.
- wasserstein: Arjovsky et al. 2017, without a gradient penalty (add one yourself if needed).
- r1_penalty: Mescheder et al. 2018; BigGAN §4.2, Eq. 5.

Tutorial: tutorials/01_gan_game_hinge_loss.md, tutorials/12_instability.md (R1)
"""

import torch
import torch.nn.functional as F
from einops import reduce
from torch import Tensor


def d_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D hinge loss: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))].

    Zero once real logits are >= 1 and fake logits <= -1: D stops pushing samples that are
    already on the right side of the margin, which keeps its logits (and gradients) bounded.
    """
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge(fake_logits: Tensor) -> Tensor:
    """G hinge loss: -E[D(G(z))] (no margin on G's side)."""
    return -fake_logits.mean()


def d_nonsaturating(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Goodfellow 2014 Eq. 1 for D: -E[log σ(D(x))] - E[log(1 - σ(D(G(z))))].

    Uses -log σ(t) = softplus(-t) and -log(1 - σ(t)) = softplus(t), which never take the log
    of a number that rounded to 0.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating G loss (Goodfellow 2014 §3): -E[log σ(D(G(z)))] = E[softplus(-D(G(z)))].

    G maximises log D(G(z)) instead of minimising log(1 - D(G(z))), which has strong
    gradients early, when D rejects every fake confidently.
    """
    return F.softplus(-fake_logits).mean()


def d_wasserstein(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """WGAN critic loss (Arjovsky 2017): E[D(G(z))] - E[D(x)]. Needs a Lipschitz D (SN or a GP)."""
    return fake_logits.mean() - real_logits.mean()


def g_wasserstein(fake_logits: Tensor) -> Tensor:
    """WGAN generator loss: -E[D(G(z))]."""
    return -fake_logits.mean()


LOSSES = {
    "hinge": (d_hinge, g_hinge),
    "ns": (d_nonsaturating, g_nonsaturating),
    "wasserstein": (d_wasserstein, g_wasserstein),
}


def get_loss(name: str):
    """Return `(d_loss_fn, g_loss_fn)` for a loss name in LOSSES."""
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; valid names are {sorted(LOSSES)}")
    return LOSSES[name]


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 penalty, BigGAN §4.2 Eq. 5 (Mescheder 2018): E_x ‖∇ₓ D(x)‖², over the real batch.

    Returned WITHOUT the γ/2 factor: the caller adds `gamma / 2 * r1_penalty(...)` to D's loss.
    `real_images` must have had `requires_grad_(True)` set before D's forward. The graph is
    kept (create_graph=True) so the penalty itself can be backpropagated into D's parameters.
    """
    if not real_images.requires_grad:
        raise ValueError(
            "r1_penalty needs the gradient w.r.t. the real images: call "
            "real_images.requires_grad_(True) before computing real_logits = D(real_images)"
        )
    # Each logit depends only on its own image, so the gradient of the sum gives every
    # per-sample gradient at once.
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return reduce(grad.pow(2), "n ... -> n", "sum").mean()
