"""Sample a trained BigGAN: a PNG grid, one row per class (or the classes you ask for).

    python sample.py --truncation 0.5                         # newest run's last.pt (none: a shipped G), EMA weights
    python sample.py --checkpoint fashion-mnist --truncation 0.5   # the shipped Fashion-MNIST generator
    python sample.py --checkpoint runs/cifar10-tiny/best.pt --class cat dog --n 16 --out cats_dogs.png
    python sample.py --interp class --truncation 0.7          # the paper's Fig. 8/9 interpolation sheets
    python sample.py --n 50000 --export samples/ samples.npz  # files for torch-fidelity, clean-fid, TF scripts
    python sample.py --serve                                  # a web page: class search, truncation slider, ...

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

from nanobiggan.lab import export, pretrained, protocol, serve
from nanobiggan.lab.checkpoint import load_checkpoint
from nanobiggan.lab.cli import Parser, check_counts, one_line_errors, pick_device
from nanobiggan.lab.files import check_writable
from nanobiggan.lab.generators import find_checkpoint, is_shipped, load_generator
from nanobiggan.lab.images import check_png_path, save_grid
from nanobiggan.sampling import (STANDING_BATCH_SIZE, class_sheet_inputs, generate, interpolation_inputs,
                                 prepare_for_sampling)
from nanobiggan.truncation import MIN_THRESHOLD, check_threshold


def parse_args(argv=None):
    p = Parser(prog="python sample.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a checkpoint file, a run directory, or a shipped generator (cifar10, "
                   "fashion-mnist); default: the newest runs/*/last.pt, else a shipped generator")
    p.add_argument("--truncation", type=float, default=None,
                   help="resample |z| > threshold (the paper's truncation trick); omit for none")
    p.add_argument("--class", dest="classes", nargs="+", default=None, help="class ids or names (default: all)")
    p.add_argument("--n", type=int, default=10, help="images per class (columns); with --export, the total")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output PNG (default: <run dir>/sample.png)")
    p.add_argument("--interp", choices=("z", "class"), default=None, help="write an interpolation sheet")
    p.add_argument("--export", nargs="+", metavar="DIR|FILE.npz", default=None,
                   help="write --n class-balanced samples under the evaluation protocol (lab/export.py): a "
                        "folder of PNGs and/or one .npz (arr_0 NHWC uint8, arr_1 labels)")
    p.add_argument("--serve", action="store_true", help="serve a local web page to explore the generator "
                   "(lab/serve.py): class search, truncation slider, seed, n, interpolation")
    p.add_argument("--port", type=int, default=8000, help="--serve's port on 127.0.0.1 (0: any free port)")
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
    p.add_argument("--device", default="cpu",
                   help="cpu (default) | auto (cuda, then mps, then cpu) | cuda | mps | tpu (TorchTPU)")
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
    if args.serve:
        return sample_serve(args, device)
    if args.pretrained:
        return sample_pretrained(args, device)
    ckpt = find_checkpoint(args.checkpoint)
    if args.export:
        return sample_export(args, ckpt, device)
    name = "interp.png" if args.interp else "sample.png"
    # beside the checkpoint, except for a shipped generator: never write into the installed package
    out = check_writable(Path(args.out) if args.out else Path(name) if is_shipped(ckpt) else ckpt.parent / name,
                         "--out")
    G, cfg, classes = load_generator(ckpt, ema=not args.no_ema, device=device)
    ids = resolve_classes(args.classes, classes)
    prepare_for_sampling(G, args.truncation, args.standing_batches or cfg.standing_batches,
                         batch_size=args.standing_batch_size)  # the sampling protocol, at this truncation
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
    if args.serve and (args.export or args.interp or args.out):
        raise ValueError("--serve draws on request from the page: drop --export, --interp and --out")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535 (0: any free port), got {args.port}")
    if args.export and (args.interp or args.pretrained or args.classes or args.out):
        raise ValueError("--export writes class-balanced samples of every class (the evaluation protocol): "
                         "drop --interp, --pretrained, --class and --out")


def sample_serve(args, device, ready=None) -> None:
    """--serve: the page of lab/serve.py over this checkpoint (or the released weights), until Ctrl-C."""
    if args.pretrained:
        G, cfg = pretrained.load(args.pretrained, truncation=1.0, device=device)
        classes, about = pretrained.imagenet_classes(), f"released BigGAN-deep weights: {args.pretrained}"
    else:
        ckpt = find_checkpoint(args.checkpoint)
        G, cfg, classes = load_generator(ckpt, ema=not args.no_ema, device=device)
        made_by = load_checkpoint(ckpt).get("made_by")
        about = f"{ckpt}" + (f"\n{made_by}" if made_by else "")
    sampler = serve.Sampler(G, cfg, classes, args.standing_batches or cfg.standing_batches, args.standing_batch_size,
                            args.batch_size, pretrained=bool(args.pretrained), about=about)
    serve.serve(sampler, args.port, ready=ready)


def sample_export(args, ckpt, device) -> None:
    """--export: the evaluation protocol's n images (lab/protocol.py), as files for other metric tools."""
    folder, npz = export.check_targets(args.export)  # before any sampling
    G, cfg, classes = load_generator(ckpt, ema=not args.no_ema, device=device)
    batches = protocol.protocol_images(G, args.n, args.truncation, args.seed, args.batch_size,
                                       args.standing_batches or cfg.standing_batches, args.standing_batch_size,
                                       progress=True)
    for path in export.export(batches, args.n, cfg.resolution, classes, folder, npz):
        print(f"{path}: {args.n} images of {ckpt} ({cfg.name}, truncation {args.truncation or 'none'}, seed "
              f"{args.seed}, {'EMA' if not args.no_ema else 'raw G (NOT the protocol)'})")


def sample_pretrained(args, device) -> None:
    """The released BigGAN-deep: its own BN statistics per truncation (no standing stats: they would
    overwrite them) and the TF-Hub convention z = t * truncnorm(-2, 2) it was trained and published with."""
    t = 1.0 if args.truncation is None else args.truncation
    out = check_writable(Path(args.out or "pretrained.png"), "--out")  # before the download and the forward passes
    G, cfg = pretrained.load(args.pretrained, truncation=t, device=device)
    ids = None if args.classes is None else [pretrained.imagenet_class(c) for c in args.classes]
    z, y = class_sheet_inputs(cfg.z_dim, cfg.n_classes, classes=ids, per_class=args.n, threshold=t, seed=args.seed,
                              tfhub=True)
    print(save_grid(generate(G, z, y, batch_size=args.batch_size), out, nrow=args.n))


if __name__ == "__main__":
    main()
