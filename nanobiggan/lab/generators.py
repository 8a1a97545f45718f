"""Trained generators: from a checkpoint file, a run directory or a shipped generator's name to G.

`find_checkpoint` resolves what the command lines accept (a file, a run directory's last.pt, 'fashion-mnist'
for the generator shipped in nanobiggan/checkpoints/, or nothing: the newest runs/*/last.pt);
`load_generator` builds the Generator of the checkpoint's config and loads its EMA weights (BigGAN §3
samples from the EMA), in eval mode; `slim` writes a training checkpoint's EMA generator alone (the shipped
files). Sampling it is nanobiggan/sampling.py's protocol.
"""
from __future__ import annotations

from pathlib import Path

import torch

from nanobiggan.generator import Generator
from nanobiggan.lab.checkpoint import (CheckpointError, CheckpointManager, check_fits, load_checkpoint,
                                      save_checkpoint, saved_config)
from nanobiggan.lab.dataset_files import CIFAR10_CLASSES, FASHION_MNIST_CLASSES

# Trained generators shipped with the package (EMA weights only, written by `slim`), so a fresh clone can sample.
SHIPPED_DIR = Path(__file__).parents[1] / "checkpoints"  # nanobiggan/checkpoints/{dataset}.pt
SHIPPED_ORDER = ("cifar10", "fashion-mnist")  # the default when there is no run of your own


def shipped(name: str) -> Path | None:
    """The shipped generator checkpoint of a dataset ('cifar10', 'fashion-mnist'), or None."""
    path = SHIPPED_DIR / f"{name}.pt"
    return path if path.is_file() else None


def is_shipped(path) -> bool:
    """Whether `path` is one of the shipped generators (sample.py then writes into the working directory,
    never into the installed package)."""
    return Path(path).resolve().parent == SHIPPED_DIR.resolve()


def find_checkpoint(arg: str | None) -> Path:
    """A checkpoint file, a run directory (its last.pt), a shipped generator's name, or None: the newest
    runs/*/last.pt, else the first shipped generator (with a note saying so)."""
    if arg is None:
        candidates = sorted(Path("runs").glob("*/last.pt"), key=lambda p: p.stat().st_mtime)
        if candidates:
            return candidates[-1]
        for name in SHIPPED_ORDER:
            if shipped(name):
                print(f"note: no runs/*/last.pt here: sampling the shipped {name} generator ({shipped(name)})")
                return shipped(name)
        raise FileNotFoundError("no checkpoint found under runs/*/last.pt: train one first "
                                "(python train.py --dataset cifar10 --preset cifar10-tiny) "
                                "or pass --checkpoint PATH")
    if arg in SHIPPED_ORDER and not Path(arg).exists() and shipped(arg):
        return shipped(arg)
    path = Path(arg)
    if path.is_dir():
        found = CheckpointManager(path).latest()
        if found is None:
            raise FileNotFoundError(f"{path} holds no checkpoint (last.pt or step_*.pt)")
        return found
    return path


def load_generator(ckpt: Path, ema: bool = True, device="cpu"):
    """(G in eval mode, config, class names) from a nanobiggan checkpoint."""
    state = load_checkpoint(ckpt, need=("config", "G_ema"), purpose="sampling needs the EMA generator and its "
                            "config; use a checkpoint train.py wrote")
    cfg = saved_config(state, ckpt)
    G = Generator(cfg)
    if not ema and "G" not in state:
        raise CheckpointError(f"{ckpt} holds the EMA generator only (a shipped or slimmed checkpoint): "
                              f"drop --no-ema, or use a checkpoint train.py wrote")
    weights = state["G"] if not ema else state["G_ema"].get("model") if isinstance(state["G_ema"], dict) else None
    check_fits(G, weights, ckpt, "EMA generator" if ema else "generator")
    G.load_state_dict(weights)
    known = {"cifar10": CIFAR10_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES}.get(cfg.dataset)
    classes = list(known) if known else state.get("classes") or [str(i) for i in range(cfg.n_classes)]
    return G.to(device, memory_format=torch.channels_last).eval(), cfg, classes  # NHWC: faster convs


def slim(ckpt, out, made_by: str, keep: tuple[str, ...] = (), half: bool = False) -> Path:
    """Write the EMA generator of a training checkpoint without D, the optimizers or the RNG (~1/4 of the size),
    with `made_by` (command, steps, minutes, machine) stored beside it, atomically. Returns `out`.

    `keep` adds the raw weights "G" and/or "D" (the shipped cifar10.pt keeps both, so the tutorials can compare
    raw with EMA weights and ask D, on a fresh clone). `half` stores those kept parts' float tensors as float16,
    half their bytes (load_state_dict casts them back into float32 parameters; each weight is then off by at most
    2^-11 of itself); the EMA generator, what sample.py draws, is always kept bit for bit. Nothing here can
    resume training."""
    state = load_checkpoint(ckpt)
    unknown = set(keep) - {"G", "D"}
    if unknown:
        raise ValueError(f"slim keeps 'G' and/or 'D' besides the EMA generator, not {sorted(unknown)}")
    small16 = lambda part: {k: v.half() if v.is_floating_point() else v for k, v in part.items()}  # noqa: E731
    small = {"config": state["config"], "step": state["step"], "G_ema": state["G_ema"],
             "classes": state.get("classes"), "made_by": made_by} | \
        {k: small16(state[k]) if half else state[k] for k in keep}
    save_checkpoint(small, out)
    return Path(out)
