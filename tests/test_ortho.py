import copy
from collections import OrderedDict

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from nanobiggan.ortho import ortho_, ortho_grad, ortho_loss, ortho_parameters, ortho_penalty

seeds = st.integers(0, 2**31 - 1)


def orthogonal_rows(out, n, seed):
    """(out n) float64 matrix with orthonormal rows, out <= n."""
    a = torch.randn(n, out, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(a)  # (n out), orthonormal columns
    return q.T


@given(st.integers(1, 6), st.integers(0, 4), seeds, st.lists(st.floats(0.1, 10), min_size=6, max_size=6))
def test_eq3_zero_for_orthogonal_rows_of_any_norm(out, extra, seed, scales):
    s = torch.tensor(scales[:out], dtype=torch.float64)
    w = s[:, None] * orthogonal_rows(out, out + extra, seed)
    assert ortho_penalty(w, full=False).item() == pytest.approx(0.0, abs=1e-9 * s.max().item() ** 4)
    # Eq. 2 also penalises the norms: ‖diag(s²) − I‖²_F = Σ (s² − 1)².
    expected = (s**2 - 1).pow(2).sum().item()
    assert ortho_penalty(w, full=True).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(st.integers(1, 6), st.integers(0, 4), seeds)
def test_eq2_zero_for_orthonormal_rows(out, extra, seed):
    w = orthogonal_rows(out, out + extra, seed)
    assert ortho_penalty(w, full=True).item() == pytest.approx(0.0, abs=1e-12)


@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), seeds, st.booleans())
def test_penalty_nonnegative_and_matches_explicit_sum(shape, seed, full):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows = w.reshape(shape[0], -1)
    expected = sum(
        (rows[i] @ rows[j] - (1.0 if full and i == j else 0.0)) ** 2
        for i in range(shape[0])
        for j in range(shape[0])
        if full or i != j
    )
    value = ortho_penalty(w, full)
    assert value.item() >= 0
    assert value.item() == pytest.approx(float(expected), rel=1e-9, abs=1e-12)


@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), seeds, st.booleans())
def test_analytic_grad_equals_autograd(shape, seed, full):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(ortho_penalty(w, full), w)
    got = ortho_grad(w.detach(), full)
    assert got.shape == w.shape
    torch.testing.assert_close(got, expected)


def tiny_g():
    """Parameters named like G's: a `shared` embedding, a nested one, 2-D and 4-D weights, BN."""
    block = nn.Module()
    block.conv = nn.Conv2d(3, 4, 3)
    block.shared = nn.Embedding(5, 3)
    return nn.Sequential(
        OrderedDict(shared=nn.Embedding(10, 4), fc=nn.Linear(4, 6), block=block, bn=nn.BatchNorm2d(4))
    ).double()


def test_ortho_parameters_excludes_per_class_tables():
    """SA-GAN's per-class CBN tables (shared=False) are class codes, like the shared embedding: not regularised."""
    from nanobiggan import Generator, get_config
    G = Generator(get_config("cifar10-tiny", g_ch=8, d_ch=8, shared=False, hier=False))
    names = [n for n, _ in ortho_parameters(G)]
    assert names and not any("table" in n for n in names)
    assert any(n.endswith("gain.table") for n, _ in ortho_parameters(G, exclude=()))


def test_ortho_parameters_excludes_shared_and_1d():
    names = [n for n, _ in ortho_parameters(tiny_g())]
    assert names == ["fc.weight", "block.conv.weight"]
    assert [n for n, _ in ortho_parameters(tiny_g(), exclude="shared")] == names
    everything = [n for n, _ in ortho_parameters(tiny_g(), exclude=())]
    assert everything == ["shared.weight", "fc.weight", "block.conv.weight", "block.shared.weight"]
    frozen = tiny_g()
    frozen.fc.requires_grad_(False)
    assert [n for n, _ in ortho_parameters(frozen)] == ["block.conv.weight"]


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("preexisting_grads", [False, True])
def test_direct_grad_form_matches_loss_form(full, preexisting_grads):
    torch.manual_seed(0)
    a = tiny_g()
    b = copy.deepcopy(a)
    if preexisting_grads:  # ortho_ must accumulate into grads from G's loss, as backward does
        for pa, pb in zip(a.parameters(), b.parameters()):
            pa.grad = torch.randn_like(pa)
            pb.grad = pa.grad.clone()
    beta = 0.37
    ortho_loss(a, beta, full).backward()
    ortho_(b, beta, full)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        if pa.grad is None:
            assert pb.grad is None, name
        else:
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-12, atol=1e-12, msg=name)
    if not preexisting_grads:
        assert a.shared.weight.grad is None and a.fc.bias.grad is None and a.bn.weight.grad is None
        assert a.fc.weight.grad.abs().sum() > 0 and a.block.conv.weight.grad.abs().sum() > 0


def test_ortho_loss_is_beta_times_sum_of_penalties():
    g = tiny_g()
    expected = 1e-4 * (ortho_penalty(g.fc.weight) + ortho_penalty(g.block.conv.weight))
    torch.testing.assert_close(ortho_loss(g), expected)


def test_rejects_1d_weights():
    with pytest.raises(ValueError, match="ndim >= 2"):
        ortho_penalty(torch.ones(3))
    with pytest.raises(ValueError, match="ndim >= 2"):
        ortho_grad(torch.ones(3))
