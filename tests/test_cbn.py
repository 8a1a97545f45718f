"""Tests for nanobiggan/cbn.py: reduces to plain BN, gain centred at 1, per-sample conditioning, SyncBN."""
import copy

import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from nanobiggan.cbn import ConditionalBatchNorm2d

dims = dict(n=st.integers(2, 4), c=st.integers(1, 6), h=st.integers(1, 4), w=st.integers(1, 4),
            d=st.integers(1, 5), seed=st.integers(0, 2**16))


def zero_projections(cbn):
    with torch.no_grad():
        for p in list(cbn.gain.parameters()) + list(cbn.bias.parameters()):
            p.zero_()


def sn_matrix(layer):
    """The eval-mode normalized weight, written out: W / (u0ᵀ W v0)."""
    W = layer.weight.detach()
    return W / (layer.u[0] @ W @ layer.v[0])


@given(**dims)
def test_zero_projections_equal_plain_batchnorm(n, c, h, w, d, seed):
    torch.manual_seed(seed)
    cbn = ConditionalBatchNorm2d(c, d, eps=1e-4, momentum=0.1)
    zero_projections(cbn)
    bn = nn.BatchNorm2d(c, eps=1e-4, momentum=0.1, affine=False)
    for _ in range(2):  # train mode: batch statistics, running stats updated identically
        x, cond = torch.randn(n, c, h, w), torch.randn(n, d)
        assert torch.equal(cbn(x, cond), bn(x))
    torch.testing.assert_close(cbn.bn.running_mean, bn.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(cbn.bn.running_var, bn.running_var, rtol=0, atol=0)
    cbn.eval(), bn.eval()
    x, cond = torch.randn(n, c, h, w), torch.randn(n, d)
    assert torch.equal(cbn(x, cond), bn(x))


@given(**dims)
def test_gain_is_centred_at_one(n, c, h, w, d, seed):
    """A gain projection that outputs g must scale BN(x) by 1 + g, not by g (a missing "+1" once broke a
    BigGAN-deep port for a year)."""
    torch.manual_seed(seed)
    cbn = ConditionalBatchNorm2d(c, d).eval()
    with torch.no_grad():
        cbn.bias.weight.zero_()
    x, cond = torch.randn(n, c, h, w), torch.randn(n, d)
    g = cond @ sn_matrix(cbn.gain).T  # (n c)
    torch.testing.assert_close(cbn(x, cond), cbn.bn(x) * (1 + g)[:, :, None, None])


@given(**dims)
def test_projections_are_linear_without_bias(n, c, h, w, d, seed):
    """§3: gain and bias are *linear* projections of the conditioning vector, as in every reference
    implementation: no bias terms, so a zero condition gives plain BN whatever the weights are."""
    torch.manual_seed(seed)
    cbn = ConditionalBatchNorm2d(c, d)
    assert cbn.gain.bias is None and cbn.bias.bias is None
    assert sum(p.numel() for p in cbn.parameters()) == 2 * d * c
    x = torch.randn(n, c, h, w)
    torch.testing.assert_close(cbn(x, torch.zeros(n, d)), nn.BatchNorm2d(c, eps=1e-4, affine=False)(x))


@given(**dims)
def test_per_sample_conditioning_matches_formula(n, c, h, w, d, seed):
    torch.manual_seed(seed)
    cbn = ConditionalBatchNorm2d(c, d)
    cbn.train()(torch.randn(n, c, h, w), torch.randn(n, d))  # move running stats and u, v off their init
    cbn.eval()
    x = torch.randn(1, c, h, w).expand(n, c, h, w)  # the same image for every sample...
    cond = torch.randn(n, d)  # ...with a different condition each
    bn = cbn.bn(x)
    gain = 1 + cond @ sn_matrix(cbn.gain).T  # (n c)
    bias = cond @ sn_matrix(cbn.bias).T
    expected = bn * gain[:, :, None, None] + bias[:, :, None, None]
    out = cbn(x, cond)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out[0], out[1])  # the conditioning really is per sample


def test_sync_batchnorm_conversion():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(8, 4)
    for _ in range(3):
        cbn(torch.randn(4, 8, 3, 3), torch.randn(4, 4))
    cbn.eval()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(cbn)).eval()
    assert isinstance(synced.bn, nn.SyncBatchNorm) and not isinstance(cbn.bn, nn.SyncBatchNorm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in synced.modules())
    x, cond = torch.randn(4, 8, 3, 3), torch.randn(4, 4)
    torch.testing.assert_close(synced(x, cond), cbn(x, cond), rtol=0, atol=0)


def test_eps_and_momentum_reach_batchnorm():
    cbn = ConditionalBatchNorm2d(3, 2, eps=1e-5, momentum=0.3, sn_eps=1e-4)
    assert cbn.bn.eps == 1e-5 and cbn.bn.momentum == 0.3 and not cbn.bn.affine
    assert cbn.gain.eps == cbn.bias.eps == 1e-4


@pytest.mark.parametrize("x_shape, c_shape", [((2, 3, 4), (2, 2)), ((2, 3, 4, 4), (2,)),
                                              ((2, 3, 4, 4), (3, 2))])
def test_bad_shapes_raise(x_shape, c_shape):
    with pytest.raises(ValueError):
        ConditionalBatchNorm2d(3, 2)(torch.randn(x_shape), torch.randn(c_shape))
