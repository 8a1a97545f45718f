"""Tests for nanobiggan/spectral_norm.py: power iteration vs SVD, torch parity, gradients, Eq. 4 clamp."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobiggan.spectral_norm import (SNConv2d, SNEmbedding, SNLinear, SpectralNorm,
                                      clamp_top_singular_value, spectral_modules)

KINDS = ("linear", "conv", "embedding")


def make_layer(kind, out, inn, **sn):
    """An SN layer whose matrix W = weight.flatten(1) is (out, inn·k·k) for conv, (out, inn) otherwise."""
    if kind == "linear":
        return SNLinear(inn, out, **sn)
    if kind == "conv":
        return SNConv2d(inn, out, kernel_size=3, padding=1, **sn)
    return SNEmbedding(out, inn, **sn)


def gapped_matrix(rows, cols, top, seed):
    """U diag(s) Vᵀ with s = top·2^-i: a clear spectral gap, so power iteration must converge."""
    g = torch.Generator().manual_seed(seed)
    r = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, r, generator=g))
    V, _ = torch.linalg.qr(torch.randn(cols, r, generator=g))
    s = top * 0.5 ** torch.arange(r, dtype=torch.float32)
    return U @ torch.diag(s) @ V.T


def set_weight(layer, W):
    with torch.no_grad():
        layer.weight.copy_(W.view_as(layer.weight))


def sample_input(kind, layer, n=2):
    if kind == "linear":
        return torch.randn(n, layer.in_features)
    if kind == "conv":
        return torch.randn(n, layer.in_channels, 5, 5)
    return torch.randint(0, layer.num_embeddings, (n, 3))


def torch_sn_twin(kind, layer, out, inn):
    """torch.nn.utils.spectral_norm on the plain layer, with our weight, bias, u0, v0 copied across."""
    plain = {"linear": lambda: nn.Linear(inn, out), "conv": lambda: nn.Conv2d(inn, out, 3, padding=1),
             "embedding": lambda: nn.Embedding(out, inn)}[kind]()
    ref = torch.nn.utils.spectral_norm(plain)
    with torch.no_grad():
        ref.weight_orig.copy_(layer.weight)
        ref.weight_u.copy_(layer.u[0])
        ref.weight_v.copy_(layer.v[0])
        if kind != "embedding":
            ref.bias.copy_(layer.bias)
    return ref


def converge(layer, steps=60):
    layer.train()
    for _ in range(steps):
        layer.sn_weight()


shapes = dict(kind=st.sampled_from(KINDS), out=st.integers(3, 9), inn=st.integers(3, 9),
              seed=st.integers(0, 2**16))


@given(**shapes, num_svs=st.sampled_from([1, 3]), top=st.floats(0.05, 50.0))
def test_power_iteration_finds_top_singular_values(kind, out, inn, seed, num_svs, top):
    torch.manual_seed(seed)
    layer = make_layer(kind, out, inn, num_svs=num_svs)
    W = gapped_matrix(*layer.weight.flatten(1).shape, top, seed)
    set_weight(layer, W)
    converge(layer)
    ref = torch.linalg.svdvals(W)[:num_svs]
    torch.testing.assert_close(layer.singular_values, ref, rtol=1e-3, atol=0)
    # the normalized weight has top singular value 1, whatever the scale of W
    torch.testing.assert_close(torch.linalg.svdvals(layer.sn_weight().flatten(1))[0], torch.tensor(1.0),
                               rtol=1e-3, atol=0)


@given(**shapes)
def test_eval_mode_leaves_buffers_and_matches_torch_spectral_norm(kind, out, inn, seed):
    torch.manual_seed(seed)
    layer = make_layer(kind, out, inn)
    converge(layer, steps=3)  # buffers in some trained, not-yet-converged state
    layer.eval()
    before = {k: b.clone() for k, b in layer.named_buffers()}
    x = sample_input(kind, layer)
    y = layer(x)
    for k, b in layer.named_buffers():
        assert torch.equal(b, before[k]), k
    # torch's own SN with the same weight, u, v: eval output must be bit-identical (checkpoint loading)
    ref = torch_sn_twin(kind, layer, out, inn).eval()
    assert torch.equal(y, ref(x))


@given(**shapes, num_itrs=st.integers(1, 3))
def test_each_training_forward_is_num_itrs_power_iterations(kind, out, inn, seed, num_itrs):
    torch.manual_seed(seed)
    layer = make_layer(kind, out, inn, num_itrs=num_itrs).train()
    W = layer.weight.detach().flatten(1)
    u, v = layer.u[0].clone(), layer.v[0].clone()
    for _ in range(num_itrs):  # Miyato et al. Alg. 1
        v = F.normalize(W.T @ u, dim=0)
        u = F.normalize(W @ v, dim=0)
    sigma = u @ W @ v
    x = sample_input(kind, layer)
    y = layer(x)
    torch.testing.assert_close(layer.u[0], u)
    torch.testing.assert_close(layer.v[0], v)
    torch.testing.assert_close(layer.sv[0], sigma)
    expected = {"linear": lambda w: F.linear(x, w, layer.bias),
                "conv": lambda w: F.conv2d(x, w, layer.bias, padding=1),
                "embedding": lambda w: F.embedding(x, w)}[kind](layer.weight / sigma)
    torch.testing.assert_close(y, expected)


@given(**shapes)
def test_training_forward_matches_torch_spectral_norm(kind, out, inn, seed):
    torch.manual_seed(seed)
    layer = make_layer(kind, out, inn).train()
    ref = torch_sn_twin(kind, layer, out, inn).train()
    x = sample_input(kind, layer)
    for _ in range(3):
        torch.testing.assert_close(layer(x), ref(x))
    torch.testing.assert_close(layer.u[0], ref.weight_u)
    torch.testing.assert_close(layer.v[0], ref.weight_v)


@given(**shapes)
def test_gradient_equals_autograd_through_explicit_formula(kind, out, inn, seed):
    torch.manual_seed(seed)
    layer = make_layer(kind, out, inn).train()
    x = sample_input(kind, layer)
    y = layer(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    # explicit W/σ with the u, v this forward used (after its power iteration), held fixed
    W = layer.weight.detach().clone().requires_grad_()
    u0, v0 = layer.u[0], layer.v[0]
    Wsn = W / (u0 @ W.flatten(1) @ v0)
    ref = {"linear": lambda: F.linear(x, Wsn, layer.bias),
           "conv": lambda: F.conv2d(x, Wsn, layer.bias, padding=1),
           "embedding": lambda: F.embedding(x, Wsn)}[kind]()
    (ref * r).sum().backward()
    torch.testing.assert_close(layer.weight.grad, W.grad)


def test_two_forwards_then_one_backward():
    """D runs on reals and fakes before one backward: the in-place u, v update must not break autograd."""
    layer = SNLinear(4, 3)
    (layer(torch.randn(2, 4)).sum() + layer(torch.randn(2, 4)).sum()).backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_conv_forward_uses_own_stride_padding_groups():
    layer = SNConv2d(4, 6, kernel_size=3, stride=2, padding=1, dilation=1, groups=2).eval()
    x = torch.randn(2, 4, 7, 7)
    W = layer.weight.flatten(1)
    expected = F.conv2d(x, layer.weight / (layer.u[0] @ W @ layer.v[0]), layer.bias, stride=2, padding=1,
                        groups=2)
    torch.testing.assert_close(layer(x), expected)


def test_power_iteration_stays_float32_under_autocast():
    torch.manual_seed(0)
    layer = SNLinear(16, 8)
    twin = copy.deepcopy(layer)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    twin(x)
    assert layer.u.dtype == layer.v.dtype == layer.sv.dtype == torch.float32
    torch.testing.assert_close(layer.u, twin.u)
    torch.testing.assert_close(layer.v, twin.v)


def test_buffers_persist_in_state_dict_and_are_seeded():
    torch.manual_seed(1)
    a = SNConv2d(3, 5, kernel_size=3, num_svs=2)
    torch.manual_seed(1)
    b = SNConv2d(3, 5, kernel_size=3, num_svs=2)
    assert a.u.shape == (2, 5) and a.v.shape == (2, 27) and a.sv.shape == (2,)
    assert {"u", "v", "sv"} <= set(a.state_dict())
    torch.testing.assert_close(a.u.norm(dim=1), torch.ones(2))
    assert torch.equal(a.u, b.u) and torch.equal(a.v, b.v)
    converge(a, steps=2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.sv, b.sv) and torch.equal(a.u, b.u)
    s = a.singular_values
    s += 1  # a copy: logging code cannot corrupt the buffer
    assert not torch.equal(s, a.sv)


def test_num_svs_capped_at_matrix_rank():
    layer = SNLinear(8, 1, num_svs=3)  # D's final (1, 8) linear has a single singular pair
    assert layer.num_svs == 1 and layer.u.shape == (1, 1) and layer.v.shape == (1, 8)


def test_zero_weight_gives_zero_weight_and_recovers():
    layer = SNLinear(5, 4, num_svs=2)
    set_weight(layer, torch.zeros(4, 5))
    converge(layer, steps=3)
    w = layer.sn_weight()
    assert torch.equal(w, torch.zeros_like(w))
    torch.testing.assert_close(layer.u.norm(dim=1), torch.ones(2))  # u, v not wiped out
    torch.testing.assert_close(layer.v.norm(dim=1), torch.ones(2))
    W = gapped_matrix(4, 5, 3.0, seed=0)
    set_weight(layer, W)
    converge(layer)
    torch.testing.assert_close(layer.sv, torch.linalg.svdvals(W)[:2], rtol=1e-3, atol=0)


@pytest.mark.parametrize("bad", [dict(num_svs=0), dict(num_itrs=0), dict(eps=0.0), dict(eps=-1e-3),
                                 dict(eps=float("nan")), dict(num_svs=1.5), dict(num_itrs=True)])
def test_bad_constructor_args_raise(bad):
    with pytest.raises(ValueError):
        SNLinear(3, 3, **bad)


def test_spectral_modules_finds_every_sn_layer():
    model = nn.Sequential(SNLinear(3, 4), nn.ReLU(), nn.Linear(4, 4),
                          nn.Sequential(SNConv2d(1, 2, 1), SNEmbedding(3, 2)))
    found = spectral_modules(model)
    assert list(found) == ["0", "3.0", "3.1"]
    assert all(isinstance(m, SpectralNorm) for m in found.values())


# --- Eq. 4: σ-clamp -----------------------------------------------------------------------------------

@given(rows=st.integers(1, 8), cols=st.integers(1, 8), seed=st.integers(0, 2**16),
       frac=st.floats(0.0, 1.5), scale=st.floats(0.1, 10.0))
def test_clamp_lowers_top_singular_value_only(rows, cols, seed, frac, scale):
    W = scale * torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(W)
    sigma_clamp = frac * S[0].item()
    W2 = clamp_top_singular_value(W, U[:, 0], Vh[0], S[0], sigma_clamp)
    expected = torch.cat([torch.minimum(S[:1], torch.tensor([sigma_clamp], dtype=W.dtype)), S[1:]])
    expected = expected.sort(descending=True).values
    torch.testing.assert_close(torch.linalg.svdvals(W2), expected, rtol=0, atol=1e-9 * scale)
    assert torch.linalg.svdvals(W2)[0] <= max(sigma_clamp, S[1:2].sum().item()) + 1e-9 * scale
    if frac >= 1.0:  # σ0 ≤ σ_clamp: untouched
        assert torch.equal(W2, W)


def load_exact_svd(layer, W):
    """Give the layer W and its exact top singular pairs (as converged buffers would be)."""
    set_weight(layer, W)
    U, S, Vh = torch.linalg.svd(W.flatten(1))
    with torch.no_grad():
        layer.u.copy_(U[:, :layer.num_svs].T)
        layer.v.copy_(Vh[:layer.num_svs])
    return S


@settings(max_examples=15)
@given(kind=st.sampled_from(KINDS), out=st.integers(3, 6), inn=st.integers(3, 6), seed=st.integers(0, 2**16),
       ratio=st.floats(1.0, 3.0))
def test_clamp_method_ratio(kind, out, inn, seed, ratio):
    torch.manual_seed(seed)
    layer = make_layer(kind, out, inn, num_svs=2)
    W = torch.randn(layer.weight.flatten(1).shape)
    S = load_exact_svd(layer, W)
    layer.clamp_(ratio=ratio)
    new = torch.linalg.svdvals(layer.weight.detach().flatten(1))
    # σ0 becomes min(σ0, r·σ1); the rest stay; the new top is max(min(σ0, r·σ1), σ1)
    expected = torch.cat([torch.minimum(S[:1], ratio * S[1:2]), S[1:]]).sort(descending=True).values
    torch.testing.assert_close(new, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(new[0], torch.maximum(torch.minimum(S[0], ratio * S[1]), S[1]),
                               rtol=1e-4, atol=1e-5)


def test_clamp_method_fixed_value_and_untouched():
    torch.manual_seed(0)
    layer = SNConv2d(3, 4, kernel_size=3)
    W = gapped_matrix(4, 27, 5.0, seed=3)
    load_exact_svd(layer, W)
    layer.clamp_(sigma_clamp=7.5)  # above σ0 = 5: nothing to do
    assert torch.equal(layer.weight.detach().flatten(1), W)
    layer.clamp_(sigma_clamp=3.0)
    new = torch.linalg.svdvals(layer.weight.detach().flatten(1))
    torch.testing.assert_close(new[:3], torch.tensor([3.0, 2.5, 1.25]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(), dict(sigma_clamp=1.0, ratio=2.0), dict(sigma_clamp=-1.0),
                                    dict(ratio=0.0), dict(ratio=float("nan"))])
def test_clamp_bad_args_raise(kwargs):
    with pytest.raises(ValueError):
        SNLinear(4, 4, num_svs=2).clamp_(**kwargs)


def test_clamp_ratio_needs_two_singular_values():
    with pytest.raises(ValueError, match="num_svs"):
        SNLinear(4, 4).clamp_(ratio=2.0)


def test_clamp_function_rejects_bad_shapes():
    with pytest.raises(ValueError):
        clamp_top_singular_value(torch.randn(2, 3, 3), torch.randn(2), torch.randn(9), 1.0, 0.5)
    with pytest.raises(ValueError):
        clamp_top_singular_value(torch.randn(2, 3), torch.randn(3), torch.randn(2), 1.0, 0.5)


def test_reset_singular_vectors_converges_for_fresh_weights():
    """A layer built and re-initialised, then used in eval mode before any training step, must divide
    by (nearly) the true σ0, not by u0ᵀWv0 of random vectors."""
    torch.manual_seed(0)
    layer = SNLinear(12, 7)
    U, _ = torch.linalg.qr(torch.randn(7, 7))
    V, _ = torch.linalg.qr(torch.randn(12, 7))
    with torch.no_grad():
        layer.weight.copy_(U @ torch.diag(torch.linspace(3.0, 0.5, 7)) @ V.T)
    layer.reset_singular_vectors_()
    torch.testing.assert_close(layer.sv[0], torch.linalg.svdvals(layer.weight.detach())[0], rtol=1e-3, atol=0)
    layer.eval()
    assert torch.linalg.svdvals(layer.sn_weight().detach())[0].item() == pytest.approx(1.0, rel=1e-3)


@given(**shapes)
def test_freshly_built_layer_divides_by_its_true_sigma(kind, out, inn, seed):
    """No init call, no training step: a new layer used under no_grad (or in eval) already divides by
    ~σ0 of its default-initialised weight. Power iteration's estimate u0ᵀWv0 approaches σ0 from below,
    so it lies in (0.5·σ0, σ0]; random u0, v0 (the old behaviour) give ~0 or negative values and fail."""
    torch.manual_seed(seed)
    layer = make_layer(kind, out, inn)
    sigma = torch.linalg.svdvals(layer.weight.detach().flatten(1))[0].item()
    with torch.no_grad():
        estimate = sigma / torch.linalg.svdvals(layer.sn_weight().flatten(1))[0].item()
    assert 0.5 * sigma < estimate <= sigma * (1 + 1e-5)
