"""What the command lines share: a parser whose errors are one line, `error: ...` exits for everything a user can
get wrong, a flag for every config field, checks of counts and seeds, and the device they run on.

Tutorial: tutorials/10_scaling_up.md
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import sys

import torch

from nanobiggan.config import MAX_SEED, Config


class Parser(argparse.ArgumentParser):
    """argparse, with a mistyped flag or value said in one line (`error: ...`, exit status 2), not usage + error."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)  # a typo such as --sample-ever must fail, not match a prefix

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def one_line_errors(main):
    """Wrap a command line's main: a ValueError or OSError (a bad value, a missing or unwritable file, a full disk)
    and Ctrl-C become one line, `error: ...`, and a non-zero exit instead of a traceback."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ValueError, OSError) as e:
            sys.exit("error: " + " ".join(line.strip() for line in str(e).splitlines() if line.strip()))
        except KeyboardInterrupt:
            sys.exit("error: interrupted (Ctrl-C); every file written so far is complete (atomic writes)")
    return wrapped


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
        bare = {"nargs": "?", "const": True} if kind is parse_bool else {}  # `--hflip` alone means true
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                           metavar=str(f.type).upper(), help=f.metadata["help"], **bare)


def config_overrides(args: argparse.Namespace) -> dict:
    """{field: value} for the config flags given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
            if f.name != "name" and getattr(args, f.name) is not None}


def check_counts(args: argparse.Namespace, *flags: str) -> None:
    """Each of these flags, when given, is an int >= 1 (a count of images or batches); --seed in 0..MAX_SEED."""
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "seed", None) is not None and not 0 <= args.seed <= MAX_SEED:
        raise ValueError(f"--seed must be in 0..{MAX_SEED}, got {args.seed}")


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' (CUDA, then Apple's MPS, then the CPU), 'cpu', 'cuda' (this process's GPU under torchrun: its
    LOCAL_RANK), 'cuda:N', 'mps' or 'tpu' / 'tpu:N' (tpu_device); a ValueError that says what to pass instead for
    anything unavailable or unknown. 'auto' never picks a TPU: ask for it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind == "cuda" and (not index or index.isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is visible to torch; use --device cpu")
        gpu = int(index) if index else local_rank
        if gpu >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
        torch.cuda.set_device(gpu)
        return torch.device("cuda", gpu)
    if kind == "tpu" and (not index or index.isdigit()):
        return tpu_device(int(index) if index else local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: Apple's MPS is not available to this torch; use --device cpu")
    if name not in ("cpu", "mps"):
        raise ValueError(f"--device {name!r}: choose auto, cpu, cuda, cuda:N, mps or tpu")
    return torch.device(name)


def tpu_device(index: int = 0) -> torch.device:
    """A Cloud TPU chip through TorchTPU (`pip install torch-tpu` on a TPU VM, with libtpu): importing torch_tpu
    registers the "tpu" device and torch.tpu. Under torchrun each process takes chip LOCAL_RANK, and train.py
    joins the "tpu_dist" process group (distributed.process_group_backend). This project's tests check the
    selection and its messages; its code has not run on TPU hardware."""
    try:
        import torch_tpu  # noqa: F401
    except Exception as e:  # ImportError, or libtpu missing / no TPU attached when it initialises
        raise ValueError(f"--device tpu: TorchTPU is not usable here ({type(e).__name__}: {str(e)[:120]}); on a "
                         f"Cloud TPU VM run pip install torch-tpu (it needs libtpu), elsewhere use --device cpu or "
                         f"cuda") from None
    count = torch.tpu.device_count()
    if index >= count:
        raise ValueError(f"--device tpu:{index}: this machine has {count} TPU chip(s), tpu:0..tpu:{count - 1}")
    return torch.device("tpu", index)
