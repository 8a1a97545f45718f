"""Train BigGAN / BigGAN-deep: the loop around `Trainer.train_step` (nanobiggan/trainer.py, where `d_step` and
`g_step` are the paper), its bookkeeping (log, σ0 and collapse watch, sheets, evaluation, checkpoints) behind one
object (nanobiggan/lab/bookkeeping.py).

    python train.py --dataset fashion-mnist                          # the CPU quick start (fashion-mnist preset)
    python train.py --dataset cifar10 --preset cifar10-tiny          # CPU-sized, minutes
    python train.py --dataset cifar10                                # the cifar10 preset (a GPU job)
    python train.py --dataset folder --data-dir ~/imagenet/train --preset biggan-128
    torchrun --nproc_per_node 8 train.py --preset biggan-deep-128 --dataset folder --data-dir ...
    python train.py --resume runs/cifar10-tiny                       # continue where it stopped
    python train.py --plots runs/cifar10-tiny                        # losses and sigma0 curves to PNG
    python train.py --presets                                        # every preset, with parameter counts

Every config field (nanobiggan/config.py) is a flag, listed below with its meaning: --g-lr 1e-4 sets g_lr,
--ortho-beta 0 turns ortho off. A run directory holds log.jsonl, samples/, plots/ and checkpoints (step_*.pt,
last.pt, best.pt).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch.distributed as dist

from nanobiggan.config import PRESETS, from_saved, get_config
from nanobiggan.lab.bookkeeping import Bookkeeping
from nanobiggan.lab.checkpoint import CheckpointManager, load_checkpoint
from nanobiggan.lab.cli import add_config_flags, config_overrides, pick_device
from nanobiggan.lab.datasets import batches_for, get_dataset
from nanobiggan.lab.monitor import plot_run
from nanobiggan.lab.presets import presets_table
from nanobiggan.trainer import Trainer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # a typo such as --sample-ever must fail, not match a prefix
    p.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} (default: the dataset's name "
                   "for cifar10 and fashion-mnist, else biggan-128)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="RUN_DIR|CKPT",
                   help="continue from a checkpoint (a run directory uses its last.pt; no value: --out-dir's)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu) | cpu | cuda | mps")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC memory format (default on: faster convs on CPU and GPU)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (image folders)")
    p.add_argument("--plots", metavar="RUN_DIR", help="draw RUN_DIR/log.jsonl to PNGs and exit")
    p.add_argument("--presets", action="store_true", help="print every preset with its parameter counts and exit")
    add_config_flags(p)
    args = p.parse_args(argv)
    return args, config_overrides(args)


def default_preset(dataset: str) -> str:
    """The preset used without --preset: the dataset's own for cifar10 and fashion-mnist, else biggan-128."""
    return dataset if dataset in ("cifar10", "fashion-mnist") else "biggan-128"


def build_config(args, overrides):
    """Preset + overrides; a resumed run keeps its saved config (flags can still change fields)."""
    preset = args.preset or default_preset(overrides.get("dataset", "cifar10"))
    if not args.resume:
        return get_config(preset, **overrides), None, None
    target = Path(args.resume if args.resume != "auto" else overrides.get("out_dir") or get_config(preset).out_dir)
    ckpt = CheckpointManager(target).latest() if target.is_dir() else target
    if ckpt is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {target} (looked for last.pt and step_*.pt)")
    state = load_checkpoint(ckpt)
    return from_saved(state["config"], **overrides), state, ckpt


def setup(args, overrides):
    """Config, device, process group, data and trainer (restored when resuming); ValueError or
    FileNotFoundError with one line to show for anything wrong."""
    cfg, state, ckpt = build_config(args, overrides)
    world, rank, local_rank = (int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0),
                                                                      ("LOCAL_RANK", 0)))
    device = pick_device(args.device, local_rank)
    if world > 1:  # launched by torchrun
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    dataset = get_dataset(cfg.dataset, cfg.data_dir or None, cfg.resolution, hflip=cfg.hflip)
    if dataset.num_classes != cfg.n_classes:  # an image folder decides the number of classes
        cfg = dataclasses.replace(cfg, n_classes=dataset.num_classes).validate()
    trainer = Trainer(cfg, device, rank=rank, world=world, compile=args.compile, channels_last=args.channels_last)
    drawn = trainer.load_state_dict(state) if state is not None else 0
    batches = batches_for(trainer, dataset, start=drawn, workers=args.workers)
    if rank == 0:
        n_g, n_d = (sum(p.numel() for p in net.parameters()) for net in (trainer.G, trainer.D))
        print(f"{cfg.name}: G {n_g / 1e6:.2f}M, D {n_d / 1e6:.2f}M params; {len(dataset)} images, "
              f"{dataset.num_classes} classes; device {device}, world {world}, precision {trainer.precision}"
              + (f"; resumed from {ckpt} at step {trainer.step}" if ckpt else ""))
    return trainer, batches, dataset.classes, rank == 0, state


def main(argv=None):
    args, overrides = parse_args(argv)
    try:
        if args.presets or args.plots:  # print, and no training
            print(presets_table() if args.presets else
                  "\n".join(map(str, plot_run(Path(args.plots) / "log.jsonl", Path(args.plots) / "plots"))))
            return
        trainer, batches, classes, main_process, state = setup(args, overrides)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    run(trainer, batches, classes, main_process, state)
    if trainer.world > 1:
        dist.destroy_process_group()


def run(trainer, batches, classes, main_process: bool = True, state: dict | None = None):
    """The loop: the paper's step (`trainer.train_step`), then everything else (`Bookkeeping.after_step`)."""
    books = Bookkeeping(trainer, classes, main_process, state)  # resumes its collapse watch from `state`
    while trainer.step < trainer.cfg.steps:
        stats = trainer.train_step(batches)
        books.after_step(stats, batches)
    books.close()


if __name__ == "__main__":
    main()
