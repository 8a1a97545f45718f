import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from nanobiggan.losses import (
    LOSSES,
    d_hinge,
    d_nonsaturating,
    d_wasserstein,
    g_hinge,
    g_nonsaturating,
    g_wasserstein,
    get_loss,
    r1_penalty,
)

logits = st.lists(st.floats(-20, 20), min_size=1, max_size=16)


def t64(xs):
    return torch.tensor(xs, dtype=torch.float64)


def mean(xs):
    return sum(xs) / len(xs)


def neg_log_sigmoid(x):  # -log σ(x), written out in plain math
    return -math.log(1.0 / (1.0 + math.exp(-x)))


@given(logits, logits)
def test_hinge_matches_formula(real, fake):
    expected_d = mean([max(0.0, 1 - r) for r in real]) + mean([max(0.0, 1 + f) for f in fake])
    assert d_hinge(t64(real), t64(fake)).item() == pytest.approx(expected_d, rel=1e-12, abs=1e-12)
    assert g_hinge(t64(fake)).item() == pytest.approx(-mean(fake), rel=1e-12, abs=1e-12)


@given(st.lists(st.floats(1, 100), min_size=1, max_size=8), st.lists(st.floats(-100, -1), min_size=1, max_size=8))
def test_hinge_d_loss_zero_outside_margin(real, fake):
    assert d_hinge(t64(real), t64(fake)).item() == 0.0


@given(logits, logits)
def test_nonsaturating_matches_log_sigmoid_formulas(real, fake):
    # D: -E log σ(D(x)) - E log(1 - σ(D(G(z)))), and 1 - σ(f) = σ(-f).
    expected_d = mean([neg_log_sigmoid(r) for r in real]) + mean([neg_log_sigmoid(-f) for f in fake])
    expected_g = mean([neg_log_sigmoid(f) for f in fake])
    assert d_nonsaturating(t64(real), t64(fake)).item() == pytest.approx(expected_d, rel=1e-9, abs=1e-12)
    assert g_nonsaturating(t64(fake)).item() == pytest.approx(expected_g, rel=1e-9, abs=1e-12)


def test_nonsaturating_is_finite_for_extreme_logits():
    # A naive log(sigmoid(x)) gives inf here in float32; softplus does not.
    big = torch.tensor([200.0])
    assert g_nonsaturating(-big).item() == pytest.approx(200.0)
    assert d_nonsaturating(big, -big).item() == pytest.approx(0.0, abs=1e-30)
    assert torch.isfinite(d_nonsaturating(-big, big))


@given(logits, logits)
def test_wasserstein_matches_formula(real, fake):
    assert d_wasserstein(t64(real), t64(fake)).item() == pytest.approx(mean(fake) - mean(real), abs=1e-12)
    assert g_wasserstein(t64(fake)).item() == pytest.approx(-mean(fake), abs=1e-12)


def test_get_loss_returns_pairs_and_rejects_unknown_names():
    assert get_loss("hinge") == (d_hinge, g_hinge)
    assert get_loss("ns") == (d_nonsaturating, g_nonsaturating)
    assert get_loss("wasserstein") == (d_wasserstein, g_wasserstein)
    with pytest.raises(ValueError, match="hinge.*ns.*wasserstein|valid names") as err:
        get_loss("lsgan")
    for name in LOSSES:
        assert name in str(err.value)


@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_r1_of_linear_discriminator_is_squared_weight_norm(n, c, hw, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c * hw * hw, generator=g, dtype=torch.float64)
    x = torch.randn(n, c, hw, hw, generator=g, dtype=torch.float64, requires_grad=True)
    logits = x.flatten(1) @ w  # D(x) = <w, x>, so ∇ₓD = w for every sample
    torch.testing.assert_close(r1_penalty(logits, x), w.pow(2).sum())


def test_r1_gradient_flows_to_discriminator_parameters():
    torch.manual_seed(0)
    d = nn.Linear(6, 1, bias=True).double()
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    r1_penalty(d(x).squeeze(1), x).backward()
    # R1 = ‖w‖², so ∂R1/∂w = 2w; the bias does not enter ∇ₓD.
    torch.testing.assert_close(d.weight.grad, 2 * d.weight.detach())
    assert d.bias.grad is None or torch.all(d.bias.grad == 0)


def test_r1_matches_per_sample_gradients_of_a_nonlinear_d():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1)).double()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    norms = []
    for i in range(3):
        xi = x[i : i + 1].detach().requires_grad_(True)
        (gi,) = torch.autograd.grad(d(xi).sum(), xi)
        norms.append(gi.pow(2).sum())
    penalty = r1_penalty(d(x), x)
    torch.testing.assert_close(penalty, torch.stack(norms).mean())
    penalty.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d[0].parameters())


def test_r1_requires_grad_on_images():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="requires_grad_"):
        r1_penalty(nn.Linear(3, 1)(x), x)
