"""Checkpoints that survive crashes, collapse and restarts (late collapse, lost runs,
irreproducible results).

BigGAN training collapses late (paper §4), so the checkpoints written before a collapse are the
result; losing them to a kill mid-write or to pruning is losing the run. Hence:
- every write is atomic: temp file in the same directory, fsync, os.replace, fsync the directory,
  so a path always holds either the previous complete file or the new complete file;
- loading uses torch.load(weights_only=True): a checkpoint cannot run code, and a file that is not
  ours fails with one clear line instead of a traceback from deep inside pickle;
- a checkpoint is a dict of tensors and plain values (the trainer's state_dict: models, optimizers, the
  config as primitives, every RNG state), so safe loading accepts it.

CheckpointManager writes step_XXXXXXXX.pt, last.pt and best.pt into one run directory and remembers the
best metric in best.json; `load_latest` falls back from a damaged last.pt to the newest readable step file, and
`check_fits` refuses weights that do not fit the config saved with them (one line, not a size-mismatch
traceback). What a trainer state holds is nanobiggan/trainer.py's business; building a generator from a
checkpoint is lab/generators.py's.
"""

import json
import re
from pathlib import Path

import numpy as np
import torch

from nanobiggan.config import Config, from_saved
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


def _siblings_hint(path: Path) -> str:
    """For a damaged last.pt: the newest other step file beside it, which may be intact."""
    steps = CheckpointManager(path.parent).steps() if path.name == "last.pt" else []
    others = [p for p in (path.parent / f"step_{s:08d}.pt" for s in reversed(steps)) if not p.samefile(path)]
    return f"; {others[0]} beside it may be intact: try that one" if others else ""


def load_checkpoint(path, map_location="cpu", need=(), purpose: str = "") -> dict:
    """torch.load(weights_only=True) with one-line errors for missing, damaged and foreign files, and for
    checkpoints that lack a key in `need` (`purpose` says what they are needed for)."""
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
                              f"(truncated or not a torch file): {_why(path, e)}{_siblings_hint(path)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = f"format {state.get('format')!r}" if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} looks like a foreign checkpoint: expected format {FORMAT!r}, "
                              f"found {found}; load it with torch.load and convert its state_dicts")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"{path} has no {', '.join(missing)}: {purpose or 'use a checkpoint train.py wrote'}")
    return state


def saved_config(state: dict, path) -> Config:
    """The config a checkpoint was trained with; a CheckpointError naming the file if it is not a valid one."""
    try:
        return from_saved(state["config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: the config saved in it is not valid ({e}); use a checkpoint train.py wrote")


def check_fits(module: torch.nn.Module, weights, path, what: str) -> None:
    """Refuse `weights` unless their names and shapes are `module`'s: a CheckpointError naming the first difference
    (a checkpoint whose saved config does not describe its weights), never load_state_dict's size-mismatch dump."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: its {what} weights are a {type(weights).__name__}, not a state dict")
    own = module.state_dict()
    wrong = [f"{k} missing" for k in own if k not in weights] + [f"{k} unexpected" for k in weights if k not in own]
    wrong += [f"{k} is {tuple(getattr(weights[k], 'shape', ()))} in the file, {tuple(own[k].shape)} for the config"
              for k in own if k in weights and (not isinstance(weights[k], torch.Tensor)
                                                or weights[k].shape != own[k].shape)]
    if wrong:
        more = f"; {len(wrong) - 1} more" if len(wrong) > 1 else ""
        raise CheckpointError(f"{path}: its {what} weights do not fit the config saved with it ({wrong[0]}{more}): "
                              f"the file was changed after train.py wrote it; use another checkpoint")


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

    def load_latest(self, **kwargs) -> tuple[Path, dict, list[str]]:
        """(path, state, why each newer file was skipped) of the newest readable checkpoint: last.pt, else the
        step files newest first. FileNotFoundError if there is none, CheckpointError if none is readable.
        `kwargs` go to load_checkpoint."""
        candidates = [p for p in (self.directory / "last.pt",) if p.is_file()]
        candidates += [self.directory / f"step_{s:08d}.pt" for s in reversed(self.steps())]
        if not candidates:
            raise FileNotFoundError(f"no checkpoint in {self.directory} (looked for last.pt and step_*.pt)")
        skipped = []
        for path in candidates:
            if skipped and candidates[0].samefile(path):  # last.pt is a hard link to its step file
                continue
            try:
                return path, load_checkpoint(path, **kwargs), skipped
            except CheckpointError as e:
                skipped.append(str(e))
        raise CheckpointError(f"no readable checkpoint in {self.directory} ({len(skipped)} tried; the oldest: "
                              f"{skipped[-1]})")

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
