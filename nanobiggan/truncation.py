"""The truncation trick, BigGAN §3.1: sample z from a truncated normal to trade variety for fidelity.

The paper's definition: draw z ~ N(0, I) and RESAMPLE every entry whose magnitude exceeds a
threshold t until it falls inside [-t, t]. Each entry is then exactly truncnorm(-t, t), and a
lower t gives less varied but individually better samples.

Three conventions called "truncation" exist in the wild, and they are NOT the same distribution:
1. paper (this file's `truncated_normal`): resampling, z ~ truncnorm(-t, t).
2. BigGAN-PyTorch: z ~ N(0, t²·I), i.e. the variance is scaled and nothing is truncated.
3. TF-Hub / pytorch-pretrained-biggan: z = t · truncnorm(-2, 2). Offered here as
   `tfhub_truncated_normal` only to reproduce sampling with the released BigGAN-deep weights.

Tutorial: tutorials/07_truncation_ortho.md
"""

import math
import numbers

import torch
from torch import Tensor

_EXAMPLE = "such as 0.5"
# Resampling redraws an entry 1 / P(|N(0,1)| <= t) ~ 1.25 / t times on average: ~125 times at 0.01 (50,000
# latents of 128 in ~15 s on one core), 1.25e9 times at 1e-9 (never done). Below this, truncation is refused.
MIN_THRESHOLD = 0.01


def check_threshold(threshold, what: str = "truncation threshold", smallest: float = MIN_THRESHOLD) -> float:
    """`threshold` as a float, or a ValueError saying what a valid one looks like (>= smallest; inf = no
    truncation). `smallest` is MIN_THRESHOLD for resampling, 0 for conventions that only scale z."""
    valid = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    if not valid or math.isnan(threshold) or threshold <= 0:
        raise ValueError(f"{what} must be a positive number {_EXAMPLE}; got {threshold!r}")
    if threshold < smallest:
        raise ValueError(f"{what} {threshold:g} is too small: resampling would redraw every z entry about "
                         f"{1.25 / threshold:.2g} times; the smallest allowed is {smallest:g}")
    return float(threshold)


def _resample_outside(z: Tensor, bound: float, generator) -> Tensor:
    """Redraw, in place, every entry of z with |z| > bound from N(0, 1) until none is left."""
    flat = z.view(-1)
    bad = (flat.abs() > bound).nonzero().squeeze(1)  # indices of the offending entries only
    while bad.numel() > 0:
        fresh = torch.randn(bad.numel(), generator=generator, device=z.device, dtype=z.dtype)
        flat[bad] = fresh
        bad = bad[fresh.abs() > bound]  # an accepted entry is final; retry only the rejects
    return z


def truncated_normal(shape, threshold, generator=None, device=None, dtype=torch.float32) -> Tensor:
    """z ~ N(0, I) truncated to [-threshold, threshold] by resampling (BigGAN §3.1).

    `shape` is an int or a tuple; `generator` an optional torch.Generator (on `device`), which
    makes the result deterministic. `threshold=None` or `inf` means no truncation: plain N(0, I).
    The expected number of redraws per entry is 1 / P(|N(0,1)| <= threshold): ~1.5 at 0.5,
    ~25 at 0.05, so small thresholds are slow but exact; below MIN_THRESHOLD (0.01) they are refused.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if threshold is not None:
        threshold = check_threshold(threshold)
    z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if threshold is None or math.isinf(threshold):
        return z
    return _resample_outside(z, threshold, generator)


def tfhub_truncated_normal(shape, truncation, generator=None, device=None, dtype=torch.float32) -> Tensor:
    """z = truncation · truncnorm(-2, 2), the TF-Hub / pytorch-pretrained-biggan convention.

    Use it only to reproduce the released BigGAN(-deep) weights' sampling; |z| <= 2·truncation.
    This is not the paper's trick: at truncation t it is bounded by 2t and its spread is scaled.
    """
    truncation = check_threshold(truncation, "truncation", smallest=0)  # a scale: no resampling below 2
    if math.isinf(truncation):
        raise ValueError(f"truncation must be a finite positive number {_EXAMPLE} (TF-Hub uses 0.02..1); got inf")
    return truncation * truncated_normal(shape, 2.0, generator=generator, device=device, dtype=dtype)
