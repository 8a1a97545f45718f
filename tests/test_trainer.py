"""Trainer: what one BigGAN step may and may not change, and the optional paths (ortho, EMA, accumulation,
precision, R1, σ-clamp), each against a reference (an explicit formula, autograd, svdvals, a plain BatchNorm).

"D steps do not change G" means: G's parameters and G's spectral-norm vectors u, v, sv are bit-identical
(G's fakes are made under no_grad, and SN iterates only for a weight being trained, spectral_norm.sn_weight)
and no G gradient exists. G's BatchNorm running statistics DO change: G runs in train mode, so its BNs
normalise with batch statistics and update their running averages, as in the paper's code. They are not
trained weights, and sampling replaces them with standing statistics anyway (App. C.1).
"""
import copy
import random

import numpy as np
import pytest
import torch

from nanobiggan.attention import SelfAttention
from nanobiggan.collapse import sigma0
from nanobiggan.config import get_config
from nanobiggan.lab.checkpoint import load_checkpoint, save_checkpoint
from nanobiggan.lab.datasets import batches_for
from nanobiggan.ortho import ortho_grad, ortho_parameters
from nanobiggan.spectral_norm import spectral_modules
from nanobiggan.trainer import Trainer, rng_state, set_rng_state




def tiny(**kw):
    base = dict(g_ch=8, d_ch=8, batch_size=8, d_steps=1, precision="fp32")
    return get_config("cifar10-tiny", **{**base, **kw})


@pytest.fixture(scope="module")
def data():
    """32 random 'real' images in [-1, 1] with labels: what CIFAR10.__getitem__ yields."""
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.rand(32, 3, 32, 32, generator=g) * 2 - 1,
                                          torch.randint(0, 10, (32,), generator=g))


def clones(named):
    return {k: v.detach().clone() for k, v in named}


def changed(before: dict, module_named) -> set[str]:
    return {k for k, v in module_named if not torch.equal(before[k], v)}


def gated_by_gamma(model) -> set[str]:
    """The attention convs: with SA-GAN's γ = 0 at init their first gradient is exactly 0 (γ itself moves)."""
    return {f"{n}.{k}" for n, m in model.named_modules() if isinstance(m, SelfAttention)
            for k, _ in m.named_parameters() if k != "gamma"}


def sn_buffers(model) -> dict:
    return {f"{n}.{b}": getattr(m, b).clone() for n, m in spectral_modules(model).items() for b in ("u", "v", "sv")}


# ---------------------------------------------------------------- what a step changes

HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__")


def host_reads(monkeypatch) -> list[str]:
    """Record every read of a tensor's value on the host made by the project's own code (nanobiggan/, train.py):
    on an accelerator each one waits for all queued work. Torch's internals (e.g. Adam reading its CPU step
    count) are not counted: they do not wait for the device."""
    import sys
    from pathlib import Path
    repo, seen = Path(__file__).resolve().parents[1], []
    ours = lambda f: Path(f).resolve().is_relative_to(repo / "nanobiggan") or Path(f).resolve() == repo / "train.py"
    for name in HOST_READS:
        def spy(self, *a, _real=getattr(torch.Tensor, name), _name=name, **k):
            frame = sys._getframe(1)
            if ours(frame.f_code.co_filename):
                seen.append(f"{_name} in {Path(frame.f_code.co_filename).name}:{frame.f_lineno}")
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)
    return seen


@pytest.mark.parametrize("kw", [{}, {"grad_accum": 2, "sigma_clamp": 1.0, "ortho_beta": 1e-4, "r1_gamma": 0.1}])
def test_a_training_step_reads_nothing_on_the_host(data, monkeypatch, kw):
    """train_step queues its work and returns 0-d device tensors; train.py reads them on logging steps only
    (lab/bookkeeping.py). Counted on the CPU with a spy on every way a tensor's value reaches Python."""
    tr = Trainer(tiny(ema_start=0, **kw))
    stream = batches_for(tr, data)
    tr.train_step(stream)  # first-call work (lazy state) is not the steady state
    batches = iter([next(stream) for _ in range(8)])  # drawn before: the data pipeline is CPU-side by design
    seen = host_reads(monkeypatch)
    stats = [tr.train_step(batches) for _ in range(2)]
    assert seen == [] and all(v.ndim == 0 and v.dtype == torch.float32 for s in stats for v in s.values())
    sigma0(tr.G)  # ... and the spy sees the project's reads (σ0 for the log: one float() per layer): it can fail
    assert seen and all(s.startswith("__float__ in collapse.py") for s in seen)


def test_train_step_changes_every_G_and_D_parameter(data):
    tr = Trainer(tiny())
    g0, d0 = clones(tr.G.named_parameters()), clones(tr.D.named_parameters())
    stats = tr.train_step(batches_for(tr, data))
    assert set(stats) == {"d_loss", "d_real", "d_fake", "g_loss"}
    assert all(v.isfinite() for v in stats.values()) and tr.step == 1
    assert changed(g0, tr.G.named_parameters()) == set(g0)  # (ortho moves G's attention convs on step 1)
    assert gated_by_gamma(tr.D) and changed(d0, tr.D.named_parameters()) == set(d0) - gated_by_gamma(tr.D)


def test_d_step_does_not_change_G(data):
    tr = Trainer(tiny())
    g0, d0, g_sn, d_sn = (clones(tr.G.named_parameters()), clones(tr.D.named_parameters()),
                          sn_buffers(tr.G), sn_buffers(tr.D))
    bn0 = {k: v for k, v in clones(tr.G.named_buffers()).items() if "running" in k}
    tr.d_step(batches_for(tr, data))
    assert not changed(g0, tr.G.named_parameters())
    assert all(torch.equal(v, sn_buffers(tr.G)[k]) for k, v in g_sn.items())  # SN did not iterate on G
    assert all(p.grad is None for p in tr.G.parameters())
    # allowed: G's BN running statistics move (train-mode forward), see the module docstring
    assert changed(bn0, ((k, v) for k, v in tr.G.named_buffers() if k in bn0)) == set(bn0)
    assert changed(d0, tr.D.named_parameters()) == set(d0) - gated_by_gamma(tr.D)
    assert any(not torch.equal(v, sn_buffers(tr.D)[k]) for k, v in d_sn.items())  # D's SN did iterate


def test_g_step_does_not_change_D(data):
    tr = Trainer(tiny())
    tr.d_step(batches_for(tr, data))
    tr.opt_d.zero_grad(set_to_none=True)
    g0, d0, d_buf = clones(tr.G.named_parameters()), clones(tr.D.named_parameters()), clones(tr.D.named_buffers())
    tr.g_step()
    assert changed(g0, tr.G.named_parameters()) == set(g0)
    assert not changed(d0, tr.D.named_parameters())
    assert not changed(d_buf, tr.D.named_buffers())  # D's SN u, v, sv: no power iteration for a frozen D
    assert all(p.grad is None for p in tr.D.parameters())
    assert all(p.requires_grad for p in tr.D.parameters())  # D unfrozen again for the next D step


# ---------------------------------------------------------------- ortho, EMA, accumulation

def test_ortho_adds_beta_times_its_gradient_once(data):
    """G's gradient with ortho_beta > 0 minus without = β ∂R/∂W (Eq. 3) on every weight but the shared
    embedding, added once per step."""
    beta, grads, after = 1e-2, {}, {}
    for b in (0.0, beta):
        tr = Trainer(tiny(ortho_beta=b))  # same seed: same weights, and the same z for the G step
        before = clones(tr.G.named_parameters())
        tr.g_step()
        grads[b] = {k: p.grad.clone() for k, p in tr.G.named_parameters()}
        after[b] = clones(tr.G.named_parameters())
    reg = {k for k, _ in ortho_parameters(tr.G)}
    assert reg and "shared.weight" not in reg
    for k, w in before.items():
        expected = beta * ortho_grad(w) if k in reg else torch.zeros_like(w)
        torch.testing.assert_close(grads[beta][k] - grads[0.0][k], expected, rtol=1e-4, atol=1e-6)
    # A different G update (Adam's first step is ~lr·sign(grad): it differs where ortho flips a sign).
    assert changed(after[0.0], after[beta].items())


@pytest.mark.parametrize("start", [0, 5])
def test_ema_after_one_step(data, start):
    tr = Trainer(tiny(ema_decay=0.5, ema_start=start))
    p0 = clones(tr.G.named_parameters())
    tr.train_step(batches_for(tr, data))
    ema = dict(tr.ema.model.named_parameters())
    for k, p1 in tr.G.named_parameters():
        # step 1 >= start = 0: p_ema = 0.5 p0 + 0.5 p1; before `start`, the EMA is a copy of G
        expected = 0.5 * p0[k] + 0.5 * p1 if start == 0 else p1
        torch.testing.assert_close(ema[k], expected.detach(), rtol=1e-6, atol=1e-7)
    ema_buf = dict(tr.ema.model.named_buffers())
    assert all(torch.equal(ema_buf[k], v) for k, v in tr.G.named_buffers())  # BN/SN state copied, not averaged


class FixedInputs:
    """Stands in for a trainer's z, y sampler (and, in D steps, for G): fixed tensors served in call order,
    so that grad_accum=1 and grad_accum=2 see the very same samples."""

    def __init__(self, z_dim: int, n: int):
        g = torch.Generator().manual_seed(1)
        self.z, self.y = torch.randn(n, z_dim, generator=g), torch.randint(0, 10, (n,), generator=g)
        self.fakes = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
        self.pos, self.last = 0, None

    def zy(self, k):
        self.last = torch.arange(self.pos, self.pos + k)
        self.pos += k
        return self.z[self.last], self.y[self.last]

    def G(self, z, y):
        return self.fakes[self.last]


def test_grad_accum_matches_one_big_batch(data):
    """D: same real and fake images in 2 micro-batches of 4 or one of 8 -> the same gradient (hinge is a mean,
    D has no batch statistics; SN iterates once per micro-batch forward, a converged fixed point here).
    G: with its BNs in eval mode (BN makes micro-batches differ by design), the same gradient, ortho included."""
    grads = {}
    for accum in (1, 2):
        tr = Trainer(tiny(grad_accum=accum, ortho_beta=1e-2))
        fixed = FixedInputs(tr.cfg.z_dim, 8)
        tr._zy, tr.G_fwd = fixed.zy, fixed.G
        d_stats = {k: v.item() for k, v in tr.d_step(batches_for(tr, data)).items()}
        d_grad = {k: p.grad.clone() for k, p in tr.D.named_parameters()}
        fixed.pos, tr.G_fwd = 0, tr.G
        tr.G.eval()
        g_stats = {k: v.item() for k, v in tr.g_step().items()}
        grads[accum] = d_stats, d_grad, g_stats, {k: p.grad.clone() for k, p in tr.G.named_parameters()}
    (d1, dg1, g1, gg1), (d2, dg2, g2, gg2) = grads[1], grads[2]
    assert d1 == pytest.approx(d2, rel=1e-5) and g1 == pytest.approx(g2, rel=1e-5)
    for one, two in ((dg1, dg2), (gg1, gg2)):  # float sums in another order: tolerance relative to each tensor
        for k in one:
            torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-4 * one[k].abs().max().item())


def test_grad_accum_full_step_runs(data):
    tr = Trainer(tiny(grad_accum=2, d_steps=2))
    assert tr.micro == 4
    stats = tr.train_step(batches_for(tr, data))
    assert all(v.isfinite() for v in stats.values())


def test_batch_size_must_split_over_accumulation_and_ranks():
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(tiny(batch_size=8, grad_accum=2), world=3)


# ---------------------------------------------------------------- the RNG state a checkpoint holds

def draws():
    return torch.rand(4).tolist(), np.random.rand(4).tolist(), np.random.randn(3).tolist(), \
        [random.random() for _ in range(3)], random.gauss(0, 1)


def test_rng_state_survives_file_and_restores_every_generator(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn(1), random.gauss(0, 1)  # leave a cached Gaussian in numpy and in `random`
    save_checkpoint({"rng": rng_state()}, tmp_path / "r.pt")
    expected = draws()
    draws()  # move every generator on
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert draws() == expected


# ---------------------------------------------------------------- precision, R1, σ-clamp

@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_step_on_cpu(data, precision):
    tr = Trainer(tiny(precision=precision))
    assert tr.precision == precision and tr.scaler.is_enabled() == (precision == "fp16")
    g0 = clones(tr.G.named_parameters())
    stats = tr.train_step(batches_for(tr, data))
    assert all(v.isfinite() for v in stats.values())
    assert all(torch.isfinite(p).all() for p in tr.G.parameters())
    if precision == "bf16":  # fp16: the GradScaler may skip the first steps (scale 2^16 overflows), by design
        assert changed(g0, tr.G.named_parameters())


class Recorder:
    """Wraps a batch stream and keeps what it yielded."""

    def __init__(self, stream):
        self.stream, self.seen = stream, []

    def __next__(self):
        self.seen.append(next(self.stream))
        return self.seen[-1]


def test_r1_adds_gamma_half_the_gradient_norm(data):
    """d_loss(γ) − d_loss(0) = γ/2 · mean ‖∇ₓ D(x)‖² over the real batch (Eq. 5), ∇ₓ D from autograd."""
    gamma, out = 2.0, {}
    for g in (0.0, gamma):
        tr = Trainer(tiny(r1_gamma=g))
        d_before, stream = copy.deepcopy(tr.D), Recorder(batches_for(tr, data))
        out[g] = tr.d_step(stream), {k: p.grad.clone() for k, p in tr.D.named_parameters()}
    x, y = (t.clone() for t in stream.seen[0])
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(d_before(x, y).sum(), x)  # train mode: SN iterates once, as in d_step
    r1 = grad.pow(2).flatten(1).sum(1).mean().item()
    assert r1 > 0
    assert out[gamma][0]["d_loss"] - out[0.0][0]["d_loss"] == pytest.approx(gamma / 2 * r1, rel=1e-4)
    assert any(not torch.allclose(out[gamma][1][k], v) for k, v in out[0.0][1].items())


def plant_spectrum(model, top=2.0, rest=0.3):
    """Give every SN weight singular values (top, rest, 0.9·rest, ...) and converge its u, v: an isolated σ0."""
    with torch.no_grad():
        for m in spectral_modules(model).values():
            W = m.weight.flatten(1)
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)
            S = rest * 0.9 ** torch.arange(len(S), dtype=S.dtype)
            S[0] = top
            m.weight.copy_((U @ torch.diag(S) @ Vh).view_as(m.weight))
            m.reset_singular_vectors_()


def test_sigma_clamp_eq4(data):
    """Eq. 4 after the G step: W' = W − max(0, σ0 − σ_clamp) u0 v0ᵀ (same run without the clamp as reference),
    and then σ0 of every G layer (torch.linalg.svdvals) is ≤ σ_clamp; σ1 < σ_clamp here, so it is the max."""
    weights = {}
    for clamp in (0.0, 0.5):
        tr = Trainer(tiny(sigma_clamp=clamp))
        plant_spectrum(tr.G)
        tr.train_step(batches_for(tr, data))
        weights[clamp] = {n: (m.weight.detach().clone(), m.u[0].clone(), m.v[0].clone())
                          for n, m in spectral_modules(tr.G).items()}
    assert len(weights[0.5]) > 10
    for name, (W, u0, v0) in weights[0.0].items():
        W, Wc = W.flatten(1), weights[0.5][name][0].flatten(1)
        excess = (u0 @ W @ v0 - 0.5).clamp_min(0)
        torch.testing.assert_close(Wc, W - excess * torch.outer(u0, v0), rtol=1e-5, atol=1e-6)
        assert torch.linalg.svdvals(W)[0] > 1.5  # unclamped: the planted σ0 = 2 (moved a little by one step)
        assert torch.linalg.svdvals(Wc)[0] <= 0.5 + 2e-2, name
