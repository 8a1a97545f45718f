"""Watching a run: a JSONL log, σ0 of every layer, collapse detection and plots (BigGAN §4, Fig. 3).

BigGAN §4 finds that large-scale training eventually collapses, and that it shows up in two places first:
σ0 (the top singular value) of a few G layers explodes, and D's loss jumps. A slow decline of D's loss
toward 0 is normal (§4.2: D memorises the training set), and App. G finds no σ0 threshold that predicts
collapse; what marks one is an abrupt change. Logging σ0 of every layer next to the losses, and raising a
flag when either moves abruptly, lets a run say "this is where it went wrong" and keep the checkpoint
from before it.

    python -m nanobiggan.monitor runs/cifar10-tiny     # RUN_DIR/log.jsonl -> RUN_DIR/plots/*.png

Tutorial: tutorials/06_training_cifar10.md
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import deque
from pathlib import Path

from nanobiggan.spectral_norm import spectral_modules


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


def sigma0(model) -> dict[str, float]:
    """{module name: σ0} for every spectrally normalized layer, read from its `sv` buffer (no new power
    iteration: the value is the one the last training forward computed, BigGAN §4)."""
    return {name: float(m.sv[0]) for name, m in spectral_modules(model).items()}


def _median_and_spread(values) -> tuple[float, float]:
    """Median and a robust spread: 1.4826·MAD (= the std for Gaussian noise), floored at 10% of |median|
    (and 0.01) so that a near-constant history does not turn tiny wiggles into "spikes"."""
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return med, max(1.4826 * mad, 0.1 * abs(med), 1e-2)


class CollapseDetector:
    """Flags the two §4 signs of collapse in the logged values; plain Python, deterministic.

    Rules (each compares a new value with the previous `window` values of the same key):
    - σ0 explosion: σ0 of a layer > `sigma_factor` × its median. σ0 moves slowly (the weights do), so one
      such log is already abnormal.
    - D-loss spike: |d_loss − median| > `loss_factor` × spread (see `_median_and_spread`) for `persist`
      consecutive logs on the same side: a jump up (the §4 sign), or an abrupt drop (unusual; a slow decline
      toward 0 is normal, §4.2, and the median follows it). Requiring 2 logs
      ignores a single bad batch; a real collapse does not come back.
    Each excursion warns once (when it starts). No warnings during a key's first `window` updates (no
    history to compare with), except for NaN/inf values, which are always reported and never enter the
    history. Outliers do enter it, so after a lasting level change the median catches up and warnings stop;
    `collapsed` stays True.
    """

    def __init__(self, window: int = 20, sigma_factor: float = 3.0, loss_factor: float = 3.0, persist: int = 2):
        if isinstance(window, bool) or not isinstance(window, int) or window < 3:
            raise ValueError(f"window must be an int >= 3 (logs of history), got {window!r}")
        if not sigma_factor > 1 or not loss_factor > 0:
            raise ValueError(f"need sigma_factor > 1 and loss_factor > 0, got {sigma_factor!r}, {loss_factor!r}")
        if isinstance(persist, bool) or not isinstance(persist, int) or persist < 1:
            raise ValueError(f"persist must be an int >= 1, got {persist!r}")
        self.window, self.sigma_factor, self.loss_factor, self.persist = window, sigma_factor, loss_factor, persist
        self.history: dict[str, deque] = {}
        self.streak = 0            # consecutive d_loss outliers, signed: +k above, -k below
        self.above: set[str] = set()  # layers currently in a σ0 excursion
        self.warnings: list[str] = []

    @property
    def collapsed(self) -> bool:
        return bool(self.warnings)

    def _push(self, key, value):
        self.history.setdefault(key, deque(maxlen=self.window)).append(value)

    def _check_sigma(self, step, name, s, out):
        hist = self.history.get(name, ())
        if len(hist) == self.window:
            med = statistics.median(hist)
            if med > 0 and s > self.sigma_factor * med:
                if name not in self.above:
                    out.append(f"step {step}: σ0 of {name} jumped to {s:.4g}, {s / med:.1f}x its median "
                               f"over the last {self.window} logs (BigGAN §4: σ0 explodes at collapse)")
                self.above.add(name)
            else:
                self.above.discard(name)
        self._push(name, s)

    def _check_d_loss(self, step, d, out):
        hist = self.history.get("d_loss", ())
        if len(hist) == self.window:
            med, spread = _median_and_spread(hist)
            side = (d > med) - (d < med) if abs(d - med) > self.loss_factor * spread else 0
            self.streak = self.streak + side if side and side * self.streak >= 0 else side
            if abs(self.streak) == self.persist:
                what = "spiked" if side > 0 else "dropped abruptly"
                out.append(f"step {step}: d_loss {what} to {d:.4g} for {self.persist} logs, its median over "
                           f"the last {self.window} logs is {med:.4g} (robust spread {spread:.3g}; BigGAN §4)")
        self._push("d_loss", d)

    def update(self, step: int, losses: dict[str, float], sigmas: dict[str, float]) -> list[str]:
        """Feed one log's losses (only 'd_loss' is watched) and σ0s; returns the new warnings."""
        out = []
        for name, s in sorted(sigmas.items()):
            s = float(s)
            if not math.isfinite(s):
                out.append(f"step {step}: σ0 of {name} is {s} (not finite)")
            else:
                self._check_sigma(step, name, s, out)
        if "d_loss" in losses:
            d = float(losses["d_loss"])
            if not math.isfinite(d):
                out.append(f"step {step}: d_loss is {d} (not finite)")
            else:
                self._check_d_loss(step, d, out)
        self.warnings += out
        return out

    def state_dict(self) -> dict:
        return {"window": self.window, "sigma_factor": self.sigma_factor, "loss_factor": self.loss_factor,
                "persist": self.persist, "history": {k: list(v) for k, v in self.history.items()},
                "streak": self.streak, "above": sorted(self.above), "warnings": list(self.warnings)}

    def load_state_dict(self, state: dict) -> None:
        self.__init__(state["window"], state["sigma_factor"], state["loss_factor"], state["persist"])
        self.history = {k: deque(v, maxlen=self.window) for k, v in state["history"].items()}
        self.streak, self.above, self.warnings = state["streak"], set(state["above"]), list(state["warnings"])


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanobiggan.monitor", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run directory holding log.jsonl; plots go to RUN_DIR/plots/")
    args = parser.parse_args(argv)
    try:
        paths = plot_run(Path(args.run_dir) / "log.jsonl", Path(args.run_dir) / "plots")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
