"""Sample-quality metrics of BigGAN's tables: FID, KID and the Inception Score, computed from network outputs.

- FID, Heusel et al. 2017 "GANs Trained by a Two Time-Scale Update Rule", Eq. 6: the Fréchet
  distance between Gaussians fitted to Inception pool features of real and generated images.
- KID, Binkowski et al. 2018 "Demystifying MMD GANs", §4: unbiased MMD² of the same features
  under the cubic polynomial kernel; unbiased, so usable with few samples where FID is not.
- IS, Salimans et al. 2016 "Improved Techniques for Training GANs", §4: exp E_x KL(p(y|x) ‖ p(y)).

This file is the math only: (n d) features or (n classes) predictions in, numbers out. Where the features
come from (the FID Inception-v3 and its pixel convention) is nanobiggan/lab/inception.py; which samples are
scored and against what (the protocol) is nanobiggan/lab/protocol.py.

Tutorial: tutorials/09_evaluation.md
"""

import numpy as np
import torch

MIN_SAMPLES = 2048  # = the feature dimension: below it the covariance is singular and FID biased


def feature_stats(features, min_samples: int = MIN_SAMPLES):
    """Mean and covariance (float64, unbiased 1/(n-1)) of `(n d)` features, the Gaussian of FID.

    Refuses n < min_samples: with n ≤ d the covariance has rank < d and FID is biased upward (and
    a careless sqrtm goes NaN). Lower `min_samples` only for tests and quick looks, and always
    report n next to the score: FIDs are only comparable at equal n.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {f.shape}")
    n, d = f.shape
    if n < max(2, min_samples):
        raise ValueError(f"FID statistics need at least {max(2, min_samples)} samples, got {n} "
                         f"(feature dim {d}; below {d} the covariance is singular and FID biased). "
                         f"Use more samples, or pass min_samples={max(2, n)} for a quick, biased look.")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FID (Heusel 2017 Eq. 6): ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}), in float64.

    Σ1Σ2 is not symmetric, so a general sqrtm of it goes complex and unstable (NaN FIDs). But
    Σ1Σ2 = A·B with A = Σ1^{1/2}, B = Σ1^{1/2}Σ2, and AB and BA have the same eigenvalues, so
    Σ1Σ2 has those of the symmetric PSD M = BA = Σ1^{1/2} Σ2 Σ1^{1/2}, all λ ≥ 0, and
    Tr (Σ1Σ2)^{1/2} = Σ √λ(M): two `eigh`s, no complex numbers, no NaN, singular Σ allowed.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = len(mu1) if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"need mu (d,) and sigma (d, d) for both sides, got {mu1.shape}, "
                         f"{s1.shape}, {mu2.shape}, {s2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        raise ValueError("FID statistics contain NaN/inf: check the features they came from")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2  # remove float asymmetry before eigh
    w, v = np.linalg.eigh(s1)
    sqrt_s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # tiny negative eigenvalues are round-off
    m = sqrt_s1 @ s2 @ sqrt_s1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    fid = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    return max(float(fid), 0.0)  # the true value is ≥ 0; only round-off can make it negative


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² (Gretton 2012 Eq. 3) with KID's kernel k(a, b) = (aᵀb / d + 1)³."""
    m, d = x.shape
    k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off_diag = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))  # drop k(x_i, x_i) terms
    return off_diag(k_xx) + off_diag(k_yy) - 2 * k_xy.mean()


def kid(features_real, features_fake, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0):
    """KID (Binkowski 2018 §4): mean ± std of unbiased MMD² over random subsets of both sets.

    Each subset draws min(subset_size, n_real, n_fake) samples without replacement from each side.
    Papers usually print KID × 10³.
    """
    x, y = np.asarray(features_real, np.float64), np.asarray(features_fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (n, d) features with the same d, got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per side, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    scores = [_mmd2_unbiased(x[rng.choice(len(x), m, replace=False)],
                             y[rng.choice(len(y), m, replace=False)]) for _ in range(num_subsets)]
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(logits_or_probs, splits: int = 10, from_logits: bool = True):
    """IS (Salimans 2016 §4): exp E_x KL(p(y|x) ‖ p(y)) per split; mean ± std over `splits`.

    p(y) is the split's marginal. Bounds: 1 (every image the same prediction) to the number of
    classes (each image certain, classes used equally).
    """
    t = torch.as_tensor(np.asarray(logits_or_probs), dtype=torch.float64)
    if t.ndim != 2 or len(t) < splits or splits < 1:
        raise ValueError(f"need (n, classes) predictions with n ≥ splits ≥ 1, got {tuple(t.shape)} "
                         f"and splits={splits}")
    if from_logits:
        p = t.softmax(dim=1)
    elif (t < 0).any() or not torch.allclose(t.sum(1), torch.ones(len(t), dtype=t.dtype), atol=1e-4):
        raise ValueError("probabilities must be ≥ 0 and sum to 1 per row; pass from_logits=True for logits")
    else:
        p = t
    scores = []
    bounds = [i * len(p) // splits for i in range(splits + 1)]  # contiguous, as the reference code
    for part in (p[a:b] for a, b in zip(bounds, bounds[1:])):
        p_y = part.mean(dim=0, keepdim=True)
        kl = (torch.xlogy(part, part) - torch.xlogy(part, p_y)).sum(dim=1)  # 0·log 0 = 0
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))
