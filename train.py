"""Train BigGAN / BigGAN-deep.

    python train.py --dataset fashion-mnist                          # the CPU quick start (fashion-mnist preset)
    python train.py --dataset cifar10 --preset cifar10-tiny          # CPU-sized, minutes
    python train.py --dataset cifar10                                # the cifar10 preset (a GPU job)
    python train.py --dataset folder --data-dir ~/imagenet/train --preset biggan-128
    torchrun --nproc_per_node 8 train.py --preset biggan-deep-128 --dataset folder --data-dir ...
    python train.py --resume runs/cifar10-tiny                       # continue where it stopped
    python train.py --plots runs/cifar10-tiny                        # losses and sigma0 curves to PNG

Every config field (nanobiggan/config.py) is a flag: --g-lr 1e-4 sets g_lr, --ortho-beta 0 turns ortho off.
A run directory holds log.jsonl, samples/, plots/ and checkpoints (step_*.pt, last.pt, best.pt).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def parse_args(argv=None):
    from nanobiggan.config import PRESETS, Config
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
    for f in dataclasses.fields(Config):
        if f.name == "name":
            continue
        kind = {"bool": _bool, "int": int, "float": float}.get(str(f.type), str)
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                       metavar=str(f.type).upper(), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if f.name != "name" and getattr(args, f.name) is not None}
    return args, overrides


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def default_preset(dataset: str) -> str:
    """The preset used without --preset: the dataset's own for cifar10 and fashion-mnist, else biggan-128."""
    return dataset if dataset in ("cifar10", "fashion-mnist") else "biggan-128"


def build_config(args, overrides):
    """Preset + overrides; a resumed run keeps its saved config (flags can still change fields)."""
    from nanobiggan.lab.checkpoint import CheckpointManager, load_checkpoint
    from nanobiggan.config import from_saved, get_config
    state, ckpt = None, None
    if args.resume:
        preset = args.preset or default_preset(overrides.get("dataset", "cifar10"))
        auto = overrides.get("out_dir") or get_config(preset).out_dir
        target = Path(auto if args.resume == "auto" else args.resume)
        ckpt = CheckpointManager(target).latest() if target.is_dir() else target
        if ckpt is None:
            sys.exit(f"error: --resume: no checkpoint in {target} (looked for last.pt and step_*.pt)")
        state = load_checkpoint(ckpt)
        cfg = from_saved(state["config"], **overrides)
    else:
        preset = args.preset or default_preset(overrides.get("dataset", "cifar10"))
        cfg = get_config(preset, **overrides)
    for name in ("log_every", "sample_every", "ckpt_every", "keep_last"):  # the loop divides by them
        if getattr(cfg, name) < 1:
            raise ValueError(f"config field '{name}': must be >= 1, got {getattr(cfg, name)}")
    return cfg, state, ckpt


def main(argv=None):
    args, overrides = parse_args(argv)
    if args.plots:
        from nanobiggan.lab.monitor import plot_run
        try:
            paths = plot_run(Path(args.plots) / "log.jsonl", Path(args.plots) / "plots")
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
        print("\n".join(map(str, paths)))
        return
    try:
        cfg, state, ckpt = build_config(args, overrides)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")

    world, rank, local_rank = (int(os.environ.get(k, d)) for k, d in
                               (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    from nanobiggan.lab.cli import pick_device
    try:
        device = pick_device(args.device, local_rank)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if world > 1:  # launched by torchrun
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_process = rank == 0

    from nanobiggan.lab.datasets import batches_for, get_dataset
    try:
        dataset = get_dataset(cfg.dataset, cfg.data_dir or None, cfg.resolution, hflip=cfg.hflip)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    if dataset.num_classes != cfg.n_classes:  # an image folder decides the number of classes
        cfg = dataclasses.replace(cfg, n_classes=dataset.num_classes).validate()

    from nanobiggan.trainer import Trainer
    try:
        trainer = Trainer(cfg, device, rank=rank, world=world, compile=args.compile, channels_last=args.channels_last)
        drawn = trainer.load_state_dict(state) if state is not None else 0
        batches = batches_for(trainer, dataset, start=drawn, workers=args.workers)
    except ValueError as e:  # batch_size not divisible by world x grad_accum, fewer images than one batch
        sys.exit(f"error: {e}")
    if main_process:
        n_g = sum(p.numel() for p in trainer.G.parameters())
        n_d = sum(p.numel() for p in trainer.D.parameters())
        print(f"{cfg.name}: G {n_g / 1e6:.2f}M, D {n_d / 1e6:.2f}M params; {len(dataset)} images, "
              f"{dataset.num_classes} classes; device {device}, world {world}, precision {trainer.precision}"
              + (f"; resumed from {ckpt} at step {trainer.step}" if ckpt else ""))
    run(trainer, batches, dataset.classes, main_process, (state or {}).get("collapse"))
    if world > 1:
        dist.destroy_process_group()


def run(trainer, batches, classes, main_process: bool, collapse_state: dict | None = None):
    """The loop: steps, logging, sample sheets, checkpoints, collapse watch."""
    from tqdm import tqdm

    from nanobiggan.lab.checkpoint import CheckpointManager
    from nanobiggan.collapse import CollapseDetector, sigma0
    from nanobiggan.lab.monitor import RunLog
    cfg, out = trainer.cfg, Path(trainer.cfg.out_dir)
    manager = CheckpointManager(out, keep_last=cfg.keep_last) if main_process else None
    log = RunLog(out / "log.jsonl") if main_process else None
    detector = CollapseDetector()
    fid_eval = None
    if main_process and cfg.eval_every > 0:  # FID + class accuracy of the EMA G (lab/protocol.py, n = eval_n)
        from nanobiggan.lab.bookkeeping import TrainingEval
        fid_eval = TrainingEval(cfg, trainer.device, log=tqdm.write)
    if collapse_state:
        detector.load_state_dict(collapse_state)
    bar = tqdm(total=cfg.steps, initial=trainer.step, disable=not main_process, dynamic_ncols=True)
    images_per_step = cfg.batch_size * cfg.d_steps
    last_saved, t0, n0 = None, time.perf_counter(), trainer.step
    while trainer.step < cfg.steps:
        stats = trainer.train_step(batches)
        if not main_process:
            continue
        step = trainer.step
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            dt = time.perf_counter() - t0
            record = {"step": step, **stats, "img_per_s": (step - n0) * images_per_step / max(dt, 1e-9),
                      "g_lr": trainer.opt_g.param_groups[0]["lr"], "d_lr": trainer.opt_d.param_groups[0]["lr"]}
            sig = {f"G.{k}": v for k, v in sigma0(trainer.G).items()}
            sig.update({f"D.{k}": v for k, v in sigma0(trainer.D).items()})
            record.update({f"sigma0/{k}": v for k, v in sig.items()})
            for warning in detector.update(step, stats, sig):
                record.setdefault("warnings", []).append(warning)
                tqdm.write("COLLAPSE WARNING: " + warning)
                if last_saved is not None and not (out / "pre_collapse.pt").exists():
                    manager.protect(last_saved, "pre_collapse")
                    tqdm.write(f"kept the last checkpoint before it safe: {out / 'pre_collapse.pt'}")
            log.write(record)
            bar.set_postfix(d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}",
                            img_s=f"{record['img_per_s']:.0f}")
            t0, n0 = time.perf_counter(), step
        if step % cfg.sample_every == 0 or step == cfg.steps:
            write_sheet(trainer, classes, out / "samples" / f"step_{step:08d}.png")
        fid = None
        if fid_eval is not None and step % cfg.eval_every == 0:
            t_eval = time.perf_counter()
            scores = fid_eval(trainer.ema.model)  # fid, class_acc (+ their n); a missing one was warned once
            t0 += time.perf_counter() - t_eval  # img/s counts training time only
            fid = scores.get("fid")
            if scores:
                log.write({"step": step, **scores})
        if step % cfg.ckpt_every == 0 or step == cfg.steps or fid is not None:  # evaluated weights: saved,
            manager.save({**trainer.state_dict(batches), "collapse": detector.state_dict(), "classes": classes},
                         step, metric=fid)  # so best.pt is the best-FID checkpoint
            last_saved = step
    bar.close()
    if main_process:
        from nanobiggan.lab.monitor import plot_run
        plot_run(out / "log.jsonl", out / "plots")
        print(f"done: {trainer.step} steps; checkpoints, samples and plots in {out}")


def write_sheet(trainer, classes, path: Path) -> None:
    """A fixed-z sheet (one row per class) of the EMA generator under the sampling protocol (sampling.py), with
    10 standing-statistics batches (a picture of progress, not a score). It draws from its own generators:
    a sheet never changes the training run's random stream (bit-exact resume)."""
    from nanobiggan.lab.images import save_grid
    from nanobiggan.sampling import class_sheet_inputs, generate, prepare_for_sampling
    cfg, g_ema = trainer.cfg, prepare_for_sampling(trainer.ema.model, n_batches=10, seed=trainer.cfg.seed)
    z, y = class_sheet_inputs(cfg.z_dim, cfg.n_classes, per_class=10, seed=cfg.seed, device=trainer.device)
    save_grid(generate(g_ema, z, y), path, nrow=10)


if __name__ == "__main__":
    main()
