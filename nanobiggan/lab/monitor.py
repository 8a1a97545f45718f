"""Watching a run: an append-only JSONL log that survives kills, and its plots (BigGAN Fig. 3's σ0 curves).

`python train.py --plots RUN_DIR` draws RUN_DIR/log.jsonl to RUN_DIR/plots/*.png. What is logged (losses, σ0
of every layer, collapse warnings, FID) is decided by lab/bookkeeping.py; the collapse signs by
nanobiggan/collapse.py.

Tutorial: tutorials/06_training_cifar10.md
"""
from __future__ import annotations

import json
from pathlib import Path

from nanobiggan.lab.files import atomic_write


def _plain(x):
    """json.dumps fallback: 0-d tensors / numpy scalars become Python numbers."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"RunLog can only write numbers, strings, lists and dicts; got {type(x).__name__}: {x!r}")


class RunLog:
    """Append-only JSON-lines log: one dict per line, flushed (file closed) after every write.

    A run killed mid-write leaves a truncated last line; opening the log again cuts it off, so the next
    record starts on a fresh line, and `RunLog.read` skips it.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # partial record from a killed run: drop it
                with open(self.path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def write(self, record: dict) -> None:
        if not isinstance(record, dict):
            raise TypeError(f"RunLog.write takes a dict such as {{'step': 10, 'd_loss': 1.2}}; got {type(record).__name__}")
        line = json.dumps(record, default=_plain)  # NaN/inf are kept (as NaN/Infinity): a NaN loss is news
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    log = write  # alias

    def drop_after(self, step: int) -> int:
        """Remove, atomically, the records of steps after `step`: a run resumed from its step-`step` checkpoint
        does those steps again, and its log must not hold them twice. Returns how many were dropped."""
        if not self.path.is_file():
            return 0
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = [line for line in lines if _step(line) <= step]
        if len(keep) < len(lines):
            atomic_write(self.path, lambda fh: fh.write("".join(keep).encode("utf-8")))
        return len(lines) - len(keep)

    @staticmethod
    def read(path) -> list[dict]:
        """All records of the log at `path`; a truncated (unparsable) LAST line is skipped."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no run log at {path}: train.py writes RUN_DIR/log.jsonl once it has logged a step")
        lines = path.read_text(encoding="utf-8").splitlines()
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    break  # killed mid-write
                raise ValueError(f"{path}, line {i + 1} is not valid JSON (corrupted log?): {line[:80]!r}") from None
        return records



class TensorBoardLog:
    """train.py --tensorboard: every record written to log.jsonl (losses, σ0 of every layer, learning rates,
    img/s, FID, class accuracy) also as TensorBoard scalars, collapse warnings as text, and the sample sheets as
    images, in OUT_DIR/tensorboard (`tensorboard --logdir runs`). A resumed run purges the events after its
    checkpoint's step, as RunLog.drop_after does for the log."""

    def __init__(self, out_dir, resume_step: int | None = None):
        self.dir = Path(out_dir) / "tensorboard"
        self.writer = self.writer_class()(str(self.dir), purge_step=None if resume_step is None else resume_step + 1)

    @staticmethod
    def writer_class():
        """torch's SummaryWriter, or a ValueError saying what to install (train.py asks before any work)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package (and its protobuf)
            raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard "
                             "(or drop --tensorboard; log.jsonl and the plots are written either way)") from None
        return SummaryWriter

    def write(self, record: dict, classes=None) -> None:
        step = record["step"]
        for key, value in record.items():
            if key == "step" or isinstance(value, (bool, str)):
                continue
            if key == "warnings":
                self.writer.add_text("collapse_warnings", "\n\n".join(value), step)
            elif isinstance(value, list):  # per-class accuracy: one curve per class
                names = classes or [str(c) for c in range(len(value))]
                for name, v in zip(names, value):
                    self.writer.add_scalar(f"{key}/{name}", v, step)
            elif value is not None:
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()

    def image(self, tag: str, png, step: int) -> None:
        import numpy as np
        from PIL import Image
        self.writer.add_image(tag, np.asarray(Image.open(png).convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _step(line: str) -> float:
    """A log line's step; -inf for a line without one (kept by drop_after)."""
    try:
        step = json.loads(line).get("step")
    except (json.JSONDecodeError, AttributeError):
        return float("-inf")
    return step if isinstance(step, int) else float("-inf")


def _series(records, key):
    pts = [(r["step"], r[key]) for r in records if "step" in r and isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _figure(plt, records, keys, title, ylabel, path, logy=False):
    """One axes, one line per key vs step; dashed red lines at logged warnings. Returns path."""
    fig, ax = plt.subplots(figsize=(9, 5))
    cmap = plt.get_cmap("viridis")
    for i, key in enumerate(keys):
        color = cmap(i / max(1, len(keys) - 1)) if len(keys) > 10 else None  # many layers: shade by depth
        ax.plot(*_series(records, key), label=key.split("/", 1)[-1], lw=1, color=color)
    for r in records:
        if r.get("warnings") and "step" in r:
            ax.axvline(r["step"], color="red", ls="--", lw=0.8)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(keys) <= 40:
        ax.legend(fontsize=6, ncol=1 + len(keys) // 20, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_run(log_path, out_dir) -> list[Path]:
    """Draw a run's log: losses.png, sigma0_G.png / sigma0_D.png (σ0 of every layer, log scale, like
    BigGAN Fig. 3), fid.png — each when the log has the data. Records with a non-empty "warnings" entry
    get a dashed red line. Returns the written paths."""
    import matplotlib
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    records = RunLog.read(log_path)
    if not any("step" in r for r in records):
        raise ValueError(f"{log_path} has no records with a 'step': nothing to plot yet (run longer than log_every)")
    keys = sorted({k for r in records for k in r})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [("losses", [k for k in keys if k.endswith("_loss")], "losses", "loss", False)]
    for net in "GD":
        plots.append((f"sigma0_{net}", [k for k in keys if k.startswith(f"sigma0/{net}.")],
                      f"σ0 of every {net} layer (BigGAN §4, Fig. 3)", "σ0", True))
    plots.append(("fid", ["fid"] if "fid" in keys else [], "FID", "FID", False))
    written = [_figure(plt, records, ks, title, ylabel, out_dir / f"{name}.png", logy)
               for name, ks, title, ylabel, logy in plots if ks]
    if not written:
        raise ValueError(f"{log_path} has no *_loss, sigma0/G.*, sigma0/D.* or fid values to plot")
    return written
