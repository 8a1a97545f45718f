"""Tests for nanobiggan/attention.py: identity at γ=0, shapes, explicit SA-GAN formula, γ gets gradient."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from nanobiggan.attention import SelfAttention
from nanobiggan.spectral_norm import SNConv2d

sizes = dict(n=st.integers(1, 2), channels=st.sampled_from([8, 16]), h=st.integers(1, 4).map(lambda k: 2 * k),
             w=st.integers(1, 4).map(lambda k: 2 * k), seed=st.integers(0, 2**16))


def conv1x1(layer, x):
    """The eval-mode SN 1×1 conv, written out: (W / u0ᵀWv0) applied at every pixel."""
    W = layer.weight.flatten(1)
    return torch.einsum("oc,nchw->nohw", W / (layer.u[0] @ W @ layer.v[0]), x)


def reference_branch(attn, x):
    """SA-GAN's non-local branch with explicit bmm/softmax: β = softmax_j(θᵀφ), o(g βᵀ)."""
    n, c, h, w = x.shape
    theta = conv1x1(attn.theta, x).reshape(n, c // 8, h * w)
    phi = F.max_pool2d(conv1x1(attn.phi, x), 2).reshape(n, c // 8, h * w // 4)
    g = F.max_pool2d(conv1x1(attn.g, x), 2).reshape(n, c // 2, h * w // 4)
    beta = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)  # (n, hw, hw/4), no 1/√d
    o = torch.bmm(g, beta.transpose(1, 2)).reshape(n, c // 2, h, w)
    return conv1x1(attn.o, o)


def reference(attn, x):
    return x + attn.gamma * reference_branch(attn, x)


@given(**sizes, train=st.booleans())
def test_gamma_zero_is_identity(n, channels, h, w, seed, train):
    torch.manual_seed(seed)
    attn = SelfAttention(channels).train(train)
    x = torch.randn(n, channels, h, w)
    assert torch.equal(attn(x), x)


@given(**sizes)
def test_output_shape_equals_input_shape(n, channels, h, w, seed):
    torch.manual_seed(seed)
    attn = SelfAttention(channels)
    with torch.no_grad():
        attn.gamma.fill_(0.7)
    x = torch.randn(n, channels, h, w)
    y = attn(x)
    assert y.shape == x.shape and not torch.equal(y, x)


@given(**sizes, gamma=st.floats(-2.0, 2.0).filter(lambda g: abs(g) > 0.1))
def test_matches_explicit_formula(n, channels, h, w, seed, gamma):
    torch.manual_seed(seed)
    attn = SelfAttention(channels)
    attn.train()(torch.randn(2, channels, h, w))  # one power iteration: u, v off their random init
    attn.eval()
    with torch.no_grad():
        attn.gamma.fill_(gamma)
        for conv in (attn.theta, attn.phi):  # larger logits, so a wrong scaling would show
            conv.weight.mul_(4.0)
    x = torch.randn(n, channels, h, w)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), reference(attn, x), rtol=1e-4, atol=1e-5)


def test_gamma_receives_gradient_at_init():
    """γ starts at 0 yet must learn: ∂ sum(out) / ∂γ = sum(o(g βᵀ))."""
    torch.manual_seed(0)
    attn = SelfAttention(16)
    x = torch.randn(2, 16, 4, 6)
    attn.train()(x)  # one power iteration: u, v off their random init
    attn.eval()(x).sum().backward()
    with torch.no_grad():
        expected = reference_branch(attn, x).sum()
    assert attn.gamma.grad is not None and attn.gamma.grad != 0
    torch.testing.assert_close(attn.gamma.grad, expected, rtol=1e-4, atol=1e-4)


def test_all_convs_are_spectrally_normalized_1x1_without_bias():
    attn = SelfAttention(32)
    shapes = {name: tuple(getattr(attn, name).weight.shape) for name in ("theta", "phi", "g", "o")}
    assert shapes == {"theta": (4, 32, 1, 1), "phi": (4, 32, 1, 1), "g": (16, 32, 1, 1), "o": (32, 16, 1, 1)}
    for name in ("theta", "phi", "g", "o"):
        assert isinstance(getattr(attn, name), SNConv2d) and getattr(attn, name).bias is None
    assert attn.gamma.shape == () and attn.gamma.item() == 0.0 and attn.gamma.requires_grad


def test_bad_channels_raise():
    with pytest.raises(ValueError, match="divisible by 8"):
        SelfAttention(12)


@pytest.mark.parametrize("shape", [(1, 8, 3, 4), (1, 8, 4, 5), (8, 4, 4)])
def test_odd_spatial_size_raises(shape):
    with pytest.raises(ValueError, match="even"):
        SelfAttention(8)(torch.randn(shape))
