"""Checkpoints that survive crashes, collapse and restarts (late collapse, lost runs,
irreproducible results).

BigGAN training collapses late (paper §4), so the checkpoints written before a collapse are the
result; losing them to a kill mid-write or to pruning is losing the run. Hence:
- every write is atomic: temp file in the same directory, fsync, os.replace, fsync the directory,
  so a path always holds either the previous complete file or the new complete file;
- loading uses torch.load(weights_only=True): a checkpoint cannot run code, and a file that is not
  ours fails with one clear line instead of a traceback from deep inside pickle;
- the RNG states of torch, CUDA, numpy and `random` are saved, so a resumed run draws the same numbers.

A trainer state is a dict: {"format": FORMAT, "step", "config" (plain primitives), "rng", model and
optimizer state_dicts...}. CheckpointManager writes step_XXXXXXXX.pt, last.pt and best.pt into one run
directory and remembers the best metric in best.json.
"""

import json
import random
import re
from pathlib import Path

import numpy as np
import torch

from nanobiggan.lab.files import atomic_write, link_or_copy

FORMAT = "nanobiggan-1"


class CheckpointError(ValueError):
    """The file exists but is not a loadable nanobiggan checkpoint."""


def save_checkpoint(state: dict, path) -> None:
    """Atomically torch.save `state` (with "format" added if absent) to `path`."""
    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint state must be a dict, got {type(state).__name__}")
    state = {"format": FORMAT, **state}
    atomic_write(Path(path), lambda fh: torch.save(state, fh))


def _why(path: Path, e: Exception) -> str:
    """A short reason for a failed torch.load, from the file's first bytes or the error's first line."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        return "the file is empty"
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip format, or its legacy raw pickle
        return f"it starts with {head!r}, not a torch zip archive"
    if "Weights only load failed" in str(e):
        return "it holds Python objects that safe (weights_only) loading refuses"
    first = str(e).strip().split("\n")[0].split(". ")[0]
    return f"{type(e).__name__}: {first[:160]}"


def load_checkpoint(path, map_location="cpu") -> dict:
    """torch.load(weights_only=True) with one-line errors for missing, damaged and foreign files."""
    path = Path(path)
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(
            f"no checkpoint at {path} ({where}): train.py writes step_00001000.pt, last.pt (newest) and "
            f"best.pt (best metric) into its run directory; pass one of those files")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (PermissionError, MemoryError):
        raise
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... depending on the damage
        raise CheckpointError(f"{path} is not a readable nanobiggan checkpoint "
                              f"(truncated or not a torch file): {_why(path, e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = f"format {state.get('format')!r}" if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} looks like a foreign checkpoint: expected format {FORMAT!r}, "
                              f"found {found}; load it with torch.load and convert its state_dicts")
    return state


def rng_state() -> dict:
    """Every RNG a training step draws from, as tensors/lists/ints that weights_only loading accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": list(random.getstate())}


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() captured; CUDA states only for the devices present on this machine."""
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


class CheckpointManager:
    """One run directory: step_XXXXXXXX.pt (the newest keep_last), last.pt, best.pt + best.json, named copies."""

    STEP = re.compile(r"step_(\d+)\.pt")

    def __init__(self, directory, keep_last: int = 3):
        if not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"keep_last must be an int >= 1 (step files to keep), got {keep_last!r}")
        self.directory, self.keep_last = Path(directory), keep_last  # reading (latest, best) writes nothing

    def _link(self, src: Path, name: str) -> Path:
        """Atomically make directory/name a copy of src: hard link (no second write), else byte copy."""
        return link_or_copy(src, self.directory / name)

    def steps(self) -> list[int]:
        """Steps that have a step_XXXXXXXX.pt file, ascending."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := self.STEP.fullmatch(p.name)))

    @property
    def best_metric(self) -> float | None:
        path = self.directory / "best.json"
        return json.loads(path.read_text())["metric"] if path.is_file() else None

    def save(self, state: dict, step: int, metric: float | None = None, lower_is_better: bool = True) -> Path:
        """Write step_{step:08d}.pt, point last.pt at it, keep best.pt on improvement, prune old steps."""
        path = self.directory / f"step_{int(step):08d}.pt"
        save_checkpoint(state, path)
        for tmp in self.directory.glob(".*.tmp"):  # left by a kill mid-write (we are the only writer here)
            tmp.unlink(missing_ok=True)
        self._link(path, "last.pt")
        if metric is not None and np.isfinite(metric):  # a NaN metric (diverged run) is never the best
            best_file = self.directory / "best.json"
            best = json.loads(best_file.read_text()) if best_file.is_file() else None
            if best is not None and best["lower_is_better"] != lower_is_better:
                raise ValueError(f"{best_file} ranks by lower_is_better={best['lower_is_better']}; "
                                 f"pass the same, or delete it to start a new ranking")
            if best is None or (metric < best["metric"] if lower_is_better else metric > best["metric"]):
                self._link(path, "best.pt")  # checkpoint first: best.json never names a missing best.pt
                record = {"metric": float(metric), "step": int(step), "lower_is_better": lower_is_better}
                atomic_write(best_file, lambda fh: fh.write(json.dumps(record).encode()))
        for old in self.steps()[: -self.keep_last]:
            (self.directory / f"step_{old:08d}.pt").unlink(missing_ok=True)
        return path

    def protect(self, step: int, name: str | None = None) -> Path:
        """Keep step_XXXXXXXX.pt forever as name.pt (default keep_step_XXXXXXXX.pt), e.g. before a collapse."""
        src = self.directory / f"step_{int(step):08d}.pt"
        if not src.is_file():
            raise FileNotFoundError(f"cannot protect step {step}: {src} was never written or already pruned; "
                                    f"steps on disk: {self.steps()}")
        return self._link(src, self._named(name or f"keep_step_{int(step):08d}"))

    def save_named(self, state: dict, name: str) -> Path:
        """Write name.pt, which pruning never touches."""
        path = self.directory / self._named(name)
        save_checkpoint(state, path)
        return path

    def _named(self, name: str) -> str:
        if not re.fullmatch(r"[\w.-]+", name) or name in ("last", "best") or self.STEP.fullmatch(name + ".pt"):
            raise ValueError(f"checkpoint name {name!r} must be letters/digits/._- and not last, best "
                             f"or step_N (those are managed)")
        return name + ".pt"

    def latest(self) -> Path | None:
        """last.pt, or the newest step file if a crash came between the two writes, or None."""
        last = self.directory / "last.pt"
        if last.is_file():
            return last
        steps = self.steps()
        return self.directory / f"step_{steps[-1]:08d}.pt" if steps else None

    def best(self) -> Path | None:
        path = self.directory / "best.pt"
        return path if path.is_file() else None


# --------------------------------------------------------------------------- using a checkpoint

# Trained generators shipped with the package (EMA weights only, written by `slim`), so a fresh clone can sample.
SHIPPED_DIR = Path(__file__).parent / "checkpoints"
SHIPPED_ORDER = ("cifar10", "fashion-mnist")  # the default when there is no run of your own


def shipped(name: str) -> Path | None:
    """The shipped generator checkpoint of a dataset ('cifar10', 'fashion-mnist'), or None."""
    path = SHIPPED_DIR / f"{name}.pt"
    return path if path.is_file() else None


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
    from nanobiggan import Generator
    from nanobiggan.config import from_saved
    from nanobiggan.data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES
    state = load_checkpoint(ckpt)
    cfg = from_saved(state["config"])
    G = Generator(cfg)
    if not ema and "G" not in state:
        raise CheckpointError(f"{ckpt} holds the EMA generator only (a shipped or slimmed checkpoint): "
                              f"drop --no-ema, or use a checkpoint train.py wrote")
    G.load_state_dict(state["G_ema"]["model"] if ema else state["G"])
    known = {"cifar10": CIFAR10_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES}.get(cfg.dataset)
    classes = list(known) if known else state.get("classes") or [str(i) for i in range(cfg.n_classes)]
    return G.to(device, memory_format=torch.channels_last).eval(), cfg, classes  # NHWC: faster convs


def slim(ckpt, out, made_by: str) -> Path:
    """Write the EMA generator of a training checkpoint alone (no D, optimizers or RNG: ~1/4 of the size),
    with `made_by` (command, steps, minutes, machine) stored beside it, atomically. Returns `out`."""
    state = load_checkpoint(ckpt)
    small = {"config": state["config"], "step": state["step"], "G_ema": state["G_ema"],
             "classes": state.get("classes"), "made_by": made_by}
    save_checkpoint(small, out)
    return Path(out)
