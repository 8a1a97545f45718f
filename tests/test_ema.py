import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from nanobiggan.ema import EMA, standing_stats


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 1, 1))


def perturb(model, seed):
    """New weights and new BN running stats (one train-mode forward), as a training step would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))
        model.train()(torch.randn(4, 2, 5, 5, generator=g))


def assert_same_state(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_ema_model_is_a_frozen_eval_copy():
    model = tiny()
    ema = EMA(model, decay=0.9, start=0)
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    assert_same_state(ema.model, model)
    perturb(model, 1)  # the copy is independent of the live model
    assert not torch.equal(ema.model[0].weight, model[0].weight)


def test_before_start_copies_params_and_buffers():
    model = tiny()
    ema = EMA(model, decay=0.5, start=10)
    perturb(model, 1)
    ema.update(model, step=9)
    assert_same_state(ema.model, model)


def test_decay_zero_is_exact_copy():
    model = tiny()
    ema = EMA(model, decay=0.0, start=0)
    perturb(model, 1)
    ema.update(model, step=5)
    assert_same_state(ema.model, model)


@given(st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_one_update_matches_formula_and_copies_buffers(decay, seed):
    model = tiny()
    ema = EMA(model, decay=decay, start=3)
    before = {k: v.clone() for k, v in ema.model.named_parameters()}
    perturb(model, seed)
    ema.update(model, step=3)
    for name, p in model.named_parameters():
        expected = decay * before[name] + (1 - decay) * p.detach()
        torch.testing.assert_close(dict(ema.model.named_parameters())[name], expected)
    for (name, b), b_ema in zip(model.named_buffers(), ema.model.buffers()):
        assert torch.equal(b, b_ema), name  # BN running stats copied, not averaged


def test_state_dict_round_trip():
    model = tiny()
    ema = EMA(model, decay=0.7, start=2)
    perturb(model, 3)
    ema.update(model, step=2)
    other = EMA(tiny(seed=1), decay=0.1, start=99)
    other.load_state_dict(ema.state_dict())
    assert (other.decay, other.start) == (0.7, 2)
    assert_same_state(other.model, ema.model)


def test_ema_rejects_bad_arguments():
    with pytest.raises(ValueError, match="decay"):
        EMA(tiny(), decay=1.5)
    with pytest.raises(ValueError, match="start"):
        EMA(tiny(), start=-1)
    with pytest.raises(ValueError, match="same architecture"):
        EMA(tiny()).update(nn.Linear(2, 2), step=0)


class ModeRecorder(nn.Module):
    """Identity whose forward has a training-dependent side effect, like SN's power iteration."""

    def __init__(self):
        super().__init__()
        self.register_buffer("train_calls", torch.zeros((), dtype=torch.long))
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        if self.training:
            self.train_calls += 1
        return x


class CondBN(nn.Module):
    """A conditional-BN-like wrapper: only its inner `bn` should be put in train mode."""

    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=False, momentum=0.3)
        self.recorder = ModeRecorder()

    def forward(self, x):
        return self.recorder(self.bn(x))


def test_standing_stats_are_cumulative_means_of_batch_stats():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, momentum=0.25)
    model = nn.Sequential(conv, bn).train()
    model(torch.randn(8, 2, 6, 6))  # stale running stats that must be discarded
    # Batches of different content (shifted/scaled) so the average is not trivially one batch's.
    batches = [torch.randn(4, 2, 6, 6) * (1 + i) + i for i in range(5)]
    it = iter(batches)
    standing_stats(model, lambda: (next(it),), n_batches=len(batches))

    with torch.no_grad():
        hs = [conv(x) for x in batches]  # (n c h w)
    means = torch.stack([h.mean(dim=(0, 2, 3)) for h in hs])
    unbiased_vars = torch.stack([h.var(dim=(0, 2, 3), unbiased=True) for h in hs])
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, unbiased_vars.mean(0))
    assert bn.num_batches_tracked.item() == len(batches)
    assert bn.momentum == 0.25 and not model.training


def test_standing_stats_leave_non_bn_modules_in_eval_mode():
    outer = ModeRecorder()
    model = nn.Sequential(nn.Conv2d(2, 3, 1), CondBN(3), outer).train()
    g = torch.Generator().manual_seed(0)
    standing_stats(model, lambda: torch.randn(2, 2, 4, 4, generator=g), n_batches=3)
    inner = model[1].recorder
    assert inner.modes == [False] * 3 and outer.modes == [False] * 3
    assert inner.train_calls.item() == 0 and outer.train_calls.item() == 0
    assert model[1].bn.num_batches_tracked.item() == 3 and model[1].bn.momentum == 0.3
    assert not any(m.training for m in model.modules())


def test_standing_stats_restores_momentum_on_error():
    model = nn.Sequential(nn.BatchNorm1d(3, momentum=0.2))

    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        standing_stats(model, broken, n_batches=2)
    assert model[0].momentum == 0.2 and not model.training


def test_standing_stats_rejects_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        standing_stats(tiny(), torch.randn(1, 2, 3, 3))
    with pytest.raises(ValueError, match="n_batches"):
        standing_stats(tiny(), lambda: (torch.randn(1, 2, 3, 3),), n_batches=0)


def test_sampling_protocol_divides_ema_weights_by_their_own_sigma():
    """G_ema's u, v are copied from the live G, whose power iteration never saw the averaged weights; the
    sampling protocol (standing_stats) must converge them, so every layer divides W_ema by σ0(W_ema)."""
    from nanobiggan.config import get_config
    from nanobiggan.generator import Generator
    from nanobiggan.spectral_norm import spectral_modules
    cfg = get_config("cifar10-tiny", g_ch=2, d_ch=4)
    torch.manual_seed(0)
    G = Generator(cfg)
    ema = EMA(G, decay=0.5, start=0)
    for step in range(3):  # live weights far from their average, live u, v converged on the live weights
        with torch.no_grad():
            for p in G.parameters():
                p.add_(torch.randn(p.shape) * (p.std() if p.numel() > 1 else 1.0))  # W_ema lags far behind W
            for layer in spectral_modules(G).values():
                layer.reset_singular_vectors_(50)
        ema.update(G, step)

    def rel_errors():
        errs = {}
        for name, layer in spectral_modules(ema.model).items():
            W = layer.weight.detach().flatten(1).double()
            used = layer.u[0].double() @ W @ layer.v[0].double()  # the σ eval mode divides by
            errs[name] = abs(used / torch.linalg.svdvals(W)[0] - 1).item()
        return errs

    assert max(rel_errors().values()) > 1e-2  # the copied vectors really were wrong for W_ema
    standing_stats(ema.model, lambda: (torch.randn(8, cfg.z_dim), torch.randint(0, 10, (8,))), n_batches=2)
    errs = rel_errors()
    assert max(errs.values()) < 1e-3, {k: v for k, v in errs.items() if v >= 1e-3}
