"""Sample a trained BigGAN: a PNG grid, one row per class (or the classes you ask for).

    python sample.py --truncation 0.5                         # newest run's last.pt (none: a shipped G), EMA weights
    python sample.py --checkpoint fashion-mnist --truncation 0.5   # the shipped Fashion-MNIST generator
    python sample.py --checkpoint runs/cifar10-tiny/best.pt --class cat dog --n 16 --out cats_dogs.png
    python sample.py --interp class --truncation 0.7          # the paper's Fig. 8/9 interpolation sheets

The sampling protocol (nanobiggan/sampling.py's prepare_for_sampling, the one the scores use too): the EMA
generator, standing statistics recomputed at the requested truncation (App. C.1), so an image depends only on
its own z and class, never on the batch it came in. The path to the PNG: find and load the generator
(lab/generators.py), prepare it (sampling.py), draw the sheet's inputs and images (sampling.py), write the
grid (lab/images.py).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from nanobiggan.lab import pretrained
from nanobiggan.lab.cli import Parser, check_counts, one_line_errors, pick_device
from nanobiggan.lab.files import check_writable
from nanobiggan.lab.generators import find_checkpoint, is_shipped, load_generator
from nanobiggan.lab.images import check_png_path, save_grid
from nanobiggan.sampling import (STANDING_BATCH_SIZE, class_sheet_inputs, generate, interpolation_inputs,
                                 prepare_for_sampling)
from nanobiggan.truncation import MIN_THRESHOLD, check_threshold, tfhub_truncated_normal


def parse_args(argv=None):
    p = Parser(prog="python sample.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a checkpoint file, a run directory, or a shipped generator (cifar10, "
                   "fashion-mnist); default: the newest runs/*/last.pt, else a shipped generator")
    p.add_argument("--truncation", type=float, default=None,
                   help="resample |z| > threshold (the paper's truncation trick); omit for none")
    p.add_argument("--class", dest="classes", nargs="+", default=None, help="class ids or names (default: all)")
    p.add_argument("--n", type=int, default=10, help="images per class (columns)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output PNG (default: <run dir>/sample.png)")
    p.add_argument("--interp", choices=("z", "class"), default=None, help="write an interpolation sheet")
    p.add_argument("--no-ema", action="store_true", help="use the raw G weights instead of the EMA")
    p.add_argument("--standing-batches", type=int, default=None,
                   help="batches for standing statistics (default: the checkpoint's config, 100)")
    p.add_argument("--standing-batch-size", type=int, default=STANDING_BATCH_SIZE, help="batch size of the "
                   "standing-statistics forwards (App. C.1); the images depend on it, so it is not --batch-size")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward when sampling (memory only: "
                   "the output does not depend on it)")
    p.add_argument("--pretrained", metavar="DIR|NAME", default=None,
                   help="the released BigGAN-deep weights instead of a checkpoint: a directory with "
                        "pytorch_model.bin + config.json, or biggan-deep-128/256/512 (downloaded when online)")
    p.add_argument("--device", default="cpu", help="cpu (default) | auto (cuda, then mps, then cpu) | cuda | mps")
    return p.parse_args(argv)


def resolve_classes(names: list[str] | None, classes: list[str]) -> list[int] | None:
    """Class ids or names -> ids, with a clear error for anything out of range or unknown."""
    if names is None:
        return None
    ids = []
    for name in names:
        if name.lstrip("-").isdigit():
            i = int(name)
            if not 0 <= i < len(classes):
                raise ValueError(f"class id {i} is out of range: this model has classes 0..{len(classes) - 1}")
        elif name in classes:
            i = classes.index(name)
        else:
            raise ValueError(f"unknown class {name!r}: use an id 0..{len(classes) - 1} or one of "
                             f"{', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}")
        ids.append(i)
    return ids


@one_line_errors
def main(argv=None):
    args = parse_args(argv)
    check(args)
    device = pick_device(args.device)
    if args.pretrained:
        return sample_pretrained(args, device)
    ckpt = find_checkpoint(args.checkpoint)
    name = "interp.png" if args.interp else "sample.png"
    # beside the checkpoint, except for a shipped generator: never write into the installed package
    out = check_writable(Path(args.out) if args.out else Path(name) if is_shipped(ckpt) else ckpt.parent / name,
                         "--out")
    G, cfg, classes = load_generator(ckpt, ema=not args.no_ema, device=device)
    ids = resolve_classes(args.classes, classes)
    prepare_for_sampling(G, args.truncation, args.standing_batches or cfg.standing_batches, args.seed,
                         args.standing_batch_size)  # the sampling protocol, at this truncation
    if args.interp:  # (z, class embedding) pairs for G.synthesize, 4 rows of 8 steps
        z, e = interpolation_inputs(G, args.interp, threshold=args.truncation, seed=args.seed, classes=ids)
        images = generate(G, z, e, batch_size=args.batch_size)
        nrow = len(images) // 4 if len(images) % 4 == 0 else int(math.sqrt(len(images)))
    else:  # one row per class, one z per column
        z, y = class_sheet_inputs(cfg.z_dim, cfg.n_classes, classes=ids, per_class=args.n,
                                  threshold=args.truncation, seed=args.seed)
        images, nrow = generate(G, z, y, batch_size=args.batch_size), args.n
    print(save_grid(images, out, nrow=nrow))


def check(args) -> None:
    """The flags' values, before anything is loaded: ValueError naming the flag. The released weights scale z
    (TF-Hub's convention), so only resampling has a smallest threshold."""
    if args.truncation is not None:
        check_threshold(args.truncation, "--truncation", smallest=0 if args.pretrained else MIN_THRESHOLD)
    check_counts(args, "n", "batch_size", "standing_batch_size", "standing_batches")
    if args.out:
        check_png_path(args.out, "--out")


def sample_pretrained(args, device) -> None:
    """The released BigGAN-deep: its own BN statistics per truncation (no standing stats: they would
    overwrite them) and the TF-Hub convention z = t * truncnorm(-2, 2) it was trained and published with."""
    t = 1.0 if args.truncation is None else args.truncation
    out = check_writable(Path(args.out or "pretrained.png"), "--out")  # before the download and the forward passes
    G, cfg = pretrained.load(args.pretrained, truncation=t, device=device)
    ids = None if args.classes is None else [pretrained.imagenet_class(c) for c in args.classes]
    _, y = class_sheet_inputs(cfg.z_dim, cfg.n_classes, classes=ids, per_class=args.n, seed=args.seed)
    columns = tfhub_truncated_normal((args.n, cfg.z_dim), t, generator=torch.Generator().manual_seed(args.seed))
    z = columns.repeat(len(y) // args.n, 1)  # one z per column, shared by every row (class)
    print(save_grid(generate(G, z, y, batch_size=args.batch_size), out, nrow=args.n))


if __name__ == "__main__":
    main()
