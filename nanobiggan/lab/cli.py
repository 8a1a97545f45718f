"""What the command lines share: a flag for every config field, and the device they run on.

Tutorial: tutorials/10_scaling_up.md
"""
from __future__ import annotations

import argparse
import dataclasses

import torch

from nanobiggan.config import Config


def parse_bool(s: str) -> bool:
    """A boolean flag's value: 1/true/yes/on or 0/false/no/off."""
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, `--g-lr` for g_lr, typed, its help the field's meaning; absent = the preset's."""
    group = parser.add_argument_group("config fields (each overrides the preset's value; nanobiggan/config.py)")
    for f in dataclasses.fields(Config):
        if f.name == "name":
            continue
        kind = {"bool": parse_bool, "int": int, "float": float}.get(str(f.type), str)
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                           metavar=str(f.type).upper(), help=f.metadata["help"])


def config_overrides(args: argparse.Namespace) -> dict:
    """{field: value} for the config flags given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
            if f.name != "name" and getattr(args, f.name) is not None}


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' (CUDA, then Apple's MPS, then the CPU), 'cpu', 'cuda' (this process's GPU under torchrun: its
    LOCAL_RANK) or 'mps'; a ValueError that says what to pass instead for anything unavailable or unknown."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name not in ("cpu", "mps"):
        raise ValueError(f"--device {name!r}: choose auto, cpu, cuda or mps")
    return torch.device(name)
