"""Collapse, BigGAN §4: what to watch (σ0 of every layer, D's loss) and a detector for its two first signs.

BigGAN §4 finds that large-scale training eventually collapses, and that it shows up in two places first:
σ0 (the top singular value) of a few G layers explodes, and D's loss jumps. A slow decline of D's loss
toward 0 is normal (§4.2: D memorises the training set), and App. G finds no σ0 threshold that predicts
collapse; what marks one is an abrupt change. Logging σ0 of every layer next to the losses (train.py does,
lab/bookkeeping.py) and raising a flag when either moves abruptly lets a run say "this is where it went wrong"
and keep the checkpoint from before it.

Tutorial: tutorials/06_training_cifar10.md, tutorials/12_instability.md
"""
from __future__ import annotations

import math
import statistics
from collections import deque

from nanobiggan.spectral_norm import spectral_modules


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
