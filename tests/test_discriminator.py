import pytest
import torch
from hypothesis import given, settings, strategies as st

from nanobiggan import Discriminator, get_config
from nanobiggan.config import PRESETS


@pytest.mark.parametrize("name", list(PRESETS))
def test_output_shape_every_preset_on_meta(name):
    cfg = get_config(name)
    with torch.device("meta"):
        D = Discriminator(cfg)
        out = D(torch.empty(2, 3, cfg.resolution, cfg.resolution), torch.zeros(2, dtype=torch.long))
    assert out.shape == (2,)


@settings(max_examples=10)
@given(st.booleans(), st.integers(0, 2**31 - 1))
def test_projection_term_is_explicit_inner_product(deep, seed):
    """D(x, y) = linear(h) + <embed(y), h> with embed spectrally normalized (Miyato & Koyama 2018)."""
    torch.manual_seed(seed)
    cfg = get_config("cifar10-tiny", deep=deep, z_dim=128 if deep else 80, d_ch=8)
    D = Discriminator(cfg).eval()
    x, y = torch.rand(3, 3, 32, 32) * 2 - 1, torch.randint(0, 10, (3,))
    h = D.features(x)
    w_lin = D.linear.weight / torch.linalg.matrix_norm(D.linear.weight, ord=2)
    expected = h @ w_lin[0] + D.linear.bias[0] + (D.embed.sn_weight()[y] * h).sum(1)
    torch.testing.assert_close(D(x, y), expected, rtol=1e-4, atol=1e-4)


def test_global_sum_pooling():
    cfg = get_config("cifar10-tiny", d_ch=8)
    D = Discriminator(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = x
    for b in D.blocks:
        feats = b(feats)
    torch.testing.assert_close(D.features(x), torch.relu(feats).sum((2, 3)))


def test_deep_skip_concatenates_learned_channels():
    from nanobiggan.discriminator import DeepDBlock
    cfg = get_config("cifar10-tiny", deep=True, z_dim=128)
    block = DeepDBlock(16, 32, down=True, cfg=cfg).eval()
    torch.nn.init.zeros_(block.conv4.weight), torch.nn.init.zeros_(block.conv4.bias)
    x = torch.randn(2, 16, 8, 8)
    out = block(x)
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    torch.testing.assert_close(out[:, :16], pooled)  # identity kept
    torch.testing.assert_close(out[:, 16:], block.conv_sc(pooled))
