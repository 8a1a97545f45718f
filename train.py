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
    python train.py --dataset fashion-mnist --tensorboard            # the same log in TensorBoard too
    python train.py --presets                                        # every preset, with parameter counts

Every config field (nanobiggan/config.py) is a flag, listed below with its meaning: --g-lr 1e-4 sets g_lr,
--ortho-beta 0 turns ortho off. A run directory holds log.jsonl, samples/, plots/ and checkpoints (step_*.pt,
last.pt, best.pt). It is protected (lab/rundir.py): one train.py at a time, no run replaced without --overwrite;
a resumed run keeps its architecture, writes where --resume points, and Ctrl-C saves a checkpoint before it exits.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path

import torch.distributed as dist

from nanobiggan.config import PRESETS, changes, from_saved, get_config
from nanobiggan.distributed import process_group_backend
from nanobiggan.lab.bookkeeping import Bookkeeping, RunStopped
from nanobiggan.lab.checkpoint import CheckpointError, CheckpointManager, check_fits, load_checkpoint, saved_config
from nanobiggan.lab.cli import Parser, add_config_flags, config_overrides, one_line_errors, pick_device
from nanobiggan.lab.datasets import batches_for, get_dataset
from nanobiggan.lab.monitor import TensorBoardLog, plot_run
from nanobiggan.lab.presets import presets_table
from nanobiggan.lab.rundir import RunDir
from nanobiggan.trainer import Trainer

# What --resume needs from a checkpoint: Trainer.state_dict's keys (a slimmed or shipped G has only G_ema).
TRAINING_STATE = ("config", "step", "batches_drawn", "G", "D", "G_ema", "opt_g", "opt_d", "scaler", "rng")


def parse_args(argv=None):
    p = Parser(prog="python train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} (default: the dataset's name "
                   "for cifar10 and fashion-mnist, else biggan-128)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="RUN_DIR|CKPT",
                   help="continue from a checkpoint (a run directory: its newest readable one; no value: "
                        "--out-dir's), writing into its directory, or into --out-dir if given")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out-dir that holds one: deletes its checkpoints, log, samples, plots")
    p.add_argument("--device", default="auto",
                   help="auto (cuda, then mps, then cpu) | cpu | cuda | mps | tpu (TorchTPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC memory format (default on: faster convs on CPU and GPU)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (image folders)")
    p.add_argument("--plots", metavar="RUN_DIR", help="draw RUN_DIR/log.jsonl to PNGs and exit")
    p.add_argument("--presets", action="store_true", help="print every preset with its parameter counts and exit")
    add_config_flags(p)
    args = p.parse_args(argv)
    if args.workers < 0:
        p.error(f"argument --workers: must be >= 0 (0: load in this process), got {args.workers}")
    if args.resume and args.overwrite:
        p.error("--resume continues the run in a directory and --overwrite deletes it: give one of them")
    return args, config_overrides(args)


def default_preset(dataset: str) -> str:
    """The preset used without --preset: the dataset's own for cifar10 and fashion-mnist, else biggan-128."""
    return dataset if dataset in ("cifar10", "fashion-mnist") else "biggan-128"


def build_config(args, overrides):
    """Preset + overrides, or for --resume the saved config + overrides, written into the resumed checkpoint's
    directory unless --out-dir says otherwise. A resumed run refuses another preset or architecture (naming the
    fields) and says which other fields it changes. Returns (config, state or None, checkpoint path or None)."""
    preset = args.preset or default_preset(overrides.get("dataset", "cifar10"))
    if not args.resume:
        return get_config(preset, **overrides), None, None
    target = Path(args.resume if args.resume != "auto" else overrides.get("out_dir") or get_config(preset).out_dir)
    need = dict(need=TRAINING_STATE, purpose="--resume needs a checkpoint train.py wrote (step_*.pt, last.pt), not "
                                             "a slimmed or shipped generator")
    if target.is_dir():
        ckpt, state, skipped = CheckpointManager(target).load_latest(**need)
        if skipped:
            print("\n".join(f"note: {why}" for why in skipped) + f"\nresuming from {ckpt}, the newest readable one")
    else:
        ckpt, state = target, load_checkpoint(target, **need)
    saved = saved_config(state, ckpt)  # a damaged saved config is the file's fault, said before any flag's
    if args.preset and args.preset != saved.name:
        raise ValueError(f"--preset {args.preset}: {ckpt} was trained from preset {saved.name}, and a resumed run "
                         f"keeps its architecture; drop --preset (other fields change by their own flags), or start "
                         f"a new run in another --out-dir")
    cfg = from_saved(state["config"], **{"out_dir": str(ckpt.parent), **overrides})
    architecture, other = changes(state["config"], cfg)
    if architecture:
        raise ValueError(f"--resume cannot change a run's architecture ({_listed(architecture)}): its weights would "
                         f"not fit; drop those flags, or train a new run with them in another --out-dir")
    if other:
        print(f"resuming with changed fields: {_listed(other)}")
    return cfg, state, ckpt


def _listed(changed: dict) -> str:
    return ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())


def setup(args, cfg, state=None, ckpt=None):
    """Device, process group, data and trainer (restored when resuming); ValueError or OSError with one line to
    show for anything wrong."""
    world, rank, local_rank = (int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0),
                                                                      ("LOCAL_RANK", 0)))
    device = pick_device(args.device, local_rank)
    if world > 1:  # launched by torchrun
        dist.init_process_group(process_group_backend(device))  # nccl, tpu_dist or gloo
    dataset = get_dataset(cfg.dataset, cfg.data_dir or None, cfg.resolution, hflip=cfg.hflip)
    if dataset.num_classes != cfg.n_classes:  # an image folder decides the number of classes
        if state is not None:
            raise ValueError(f"{cfg.data_dir} now has {dataset.num_classes} class folders, the run in {ckpt} was "
                             f"trained on {cfg.n_classes}: resume it on the same classes, or train a new run")
        cfg = dataclasses.replace(cfg, n_classes=dataset.num_classes).validate()
    trainer = Trainer(cfg, device, rank=rank, world=world, compile=args.compile, channels_last=args.channels_last)
    drawn = restore(trainer, state, ckpt) if state is not None else 0
    batches = batches_for(trainer, dataset, start=drawn, workers=args.workers)
    if rank == 0:
        n_g, n_d = (sum(p.numel() for p in net.parameters()) for net in (trainer.G, trainer.D))
        print(f"{cfg.name}: G {n_g / 1e6:.2f}M, D {n_d / 1e6:.2f}M params; {len(dataset)} images, "
              f"{dataset.num_classes} classes; device {device}, world {world}, precision {trainer.precision}"
              + (f"; resumed from {ckpt} at step {trainer.step}" if ckpt else ""))
    return trainer, batches, dataset.classes


def restore(trainer: Trainer, state: dict, ckpt: Path) -> int:
    """trainer.load_state_dict(state), refusing in one line a checkpoint whose weights its saved config does not
    describe. Returns the number of real batches drawn."""
    check_fits(trainer.G, state["G"], ckpt, "G")
    check_fits(trainer.D, state["D"], ckpt, "D")
    try:
        return trainer.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:  # EMA, optimizer or RNG state damaged in the file
        raise CheckpointError(f"{ckpt} cannot restore a trainer ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160]}); use another checkpoint") from None


@one_line_errors
def main(argv=None):
    args, overrides = parse_args(argv)
    if args.presets or args.plots:  # print, and no training
        print(presets_table() if args.presets else
              "\n".join(map(str, plot_run(Path(args.plots) / "log.jsonl", Path(args.plots) / "plots"))))
        return
    cfg, state, ckpt = build_config(args, overrides)
    run_dir = RunDir(cfg.out_dir, resuming_from=ckpt, overwrite=args.overwrite)
    main_process = int(os.environ.get("RANK", 0)) == 0
    if main_process:
        run_dir.check()  # before any work: writable, not in use, no other run in it
        if cfg.tensorboard:
            TensorBoardLog.writer_class()  # installed, or say so now
    trainer, batches, classes = setup(args, cfg, state, ckpt)
    with run_dir if main_process else contextlib.nullcontext():  # the lock, for the whole run
        try:
            run(trainer, batches, classes, main_process, state)
        except RunStopped as e:  # diverged, disk full, Ctrl-C: one line, the last good checkpoint kept
            print(e, file=sys.stderr)
            sys.exit(e.status)
    if trainer.world > 1:
        dist.destroy_process_group()


def run(trainer, batches, classes, main_process: bool = True, state: dict | None = None):
    """The loop: the paper's step (`trainer.train_step`), then everything else (`Bookkeeping.after_step`)."""
    with Bookkeeping(trainer, classes, main_process, state) as books:  # resumes its collapse watch from `state`
        while trainer.step < trainer.cfg.steps:
            stats = trainer.train_step(batches)
            books.after_step(stats, batches)
    books.close()


if __name__ == "__main__":
    main()
