"""EMA of G's weights (BigGAN §3, decay 0.9999) and standing statistics (BigGAN App. C.1).

Both are about how G is *evaluated*, not trained:
- EMA: samples come from an exponential moving average of G's weights, which is smoother than
  the raw weights at any single step. The average starts late (`start`), so it does not drag in
  the random initialisation.
- Standing statistics: G's BatchNorm running stats are replaced by the true average of batch
  statistics over ~100 batches of G's own inputs, so the output of G in eval mode no longer
  depends on the training-time momentum, or on the batch size used for sampling.
- Spectral norm of the average: the EMA copy's u, v come from the live G, whose power iteration
  tracks the live weights W, not their average W_ema; u_liveᵀ W_ema v_live underestimates σ0(W_ema).
  `standing_stats`, which the sampling protocol (sampling.prepare_for_sampling) runs before every image,
  first converges u, v on the model's own weights.

Tutorial: tutorials/08_ema_standing_stats.md
"""

import copy

import torch
from torch import nn

from nanobiggan.spectral_norm import spectral_modules


class EMA:
    """An EMA copy of a model: `p_ema ← decay·p_ema + (1 − decay)·p` after every G step.

    Before step `start` the copy simply tracks the model, so the average begins at the
    weights of step `start`. Buffers (BN running stats, spectral-norm u/v/σ) are copied, not
    averaged. `self.model` is in eval mode with requires_grad False; sample from it.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, start: int = 1000):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1] (BigGAN uses 0.9999); got {decay!r}")
        if start < 0:
            raise ValueError(f"EMA start must be a step number >= 0, e.g. 1000; got {start!r}")
        self.decay, self.start = decay, start
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def _pairs(self, named_ema, named_src, kind: str):
        src = dict(named_src)
        pairs = [(t, src.get(name)) for name, t in named_ema]
        if len(src) != len(pairs) or any(s is None for _, s in pairs):
            raise ValueError(f"EMA.update got a model whose {kind} differ from the EMA copy's; pass the same architecture")
        return pairs

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold `model`'s current weights into the average (or copy them, if step < start)."""
        params = self._pairs(self.model.named_parameters(), model.named_parameters(), "parameters")
        buffers = self._pairs(self.model.named_buffers(), model.named_buffers(), "buffers")
        if step < self.start:  # not averaging yet: track the model exactly
            for t, s in params + buffers:
                t.copy_(s)
            return
        floats = [(t, s) for t, s in params if t.is_floating_point()]
        if floats:
            ema_ps, src_ps = zip(*floats)
            # lerp(a, b, w) = a + w·(b − a) = decay·a + (1 − decay)·b for w = 1 − decay, in one fused call.
            torch._foreach_lerp_(list(ema_ps), list(src_ps), 1.0 - self.decay)
        for t, s in [(t, s) for t, s in params if not t.is_floating_point()] + buffers:
            t.copy_(s)  # integer params cannot be averaged; BN/SN buffers are state, not weights

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "decay": self.decay, "start": self.start}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.decay, self.start = state["decay"], state["start"]


@torch.no_grad()
def converge_spectral_norms_(model: nn.Module, num_itrs: int = 30) -> nn.Module:
    """Run `num_itrs` power iterations on every spectrally normalized layer's own current weight, warm-started
    from its u, v, so the σ0 that eval mode divides by is σ0 of *these* weights (an EMA model's are an average
    its copied u, v were never iterated on). Returns the model."""
    for layer in spectral_modules(model).values():
        layer.reset_singular_vectors_(num_itrs)
    return model


@torch.no_grad()
def standing_stats(model: nn.Module, sample_inputs, n_batches: int = 100) -> nn.Module:
    """Prepare G for sampling: converge its spectral norms on its own weights (`converge_spectral_norms_`),
    then standing statistics, BigGAN App. C.1: recompute every BatchNorm's running mean/var as the
    cumulative average over `n_batches` forwards of `model(*sample_inputs())`.

    Only the BatchNorm modules (any `_BatchNorm`: BatchNorm1d/2d, SyncBatchNorm, the `bn` inside
    conditional BN) run in train mode, with momentum=None so torch keeps a true cumulative average
    (of batch means, and of unbiased batch variances). Every other module stays in eval mode, so
    spectral norm's per-forward power iteration does not run during those forwards. Afterwards the BN
    momenta are restored and the whole model is left in eval mode. Returns the model.
    """
    if not callable(sample_inputs):
        raise TypeError("sample_inputs must be a zero-argument callable returning G's inputs, e.g. lambda: (z, y)")
    if n_batches < 1:
        raise ValueError(f"standing_stats needs n_batches >= 1 (the paper uses 100); got {n_batches!r}")
    converge_spectral_norms_(model)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [bn.momentum for bn in bns]
    model.eval()
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # factor 1/num_batches_tracked: a cumulative, not exponential, average
            bn.train()
        for _ in range(n_batches):
            inputs = sample_inputs()
            model(*((inputs,) if isinstance(inputs, torch.Tensor) else inputs))
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    return model
