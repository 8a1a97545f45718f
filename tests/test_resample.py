"""The fused resampling convs are the same functions as the unfused ones (values and gradients), at 4/9 the FLOPs."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch.utils.flop_counter import FlopCounterMode

from nanobiggan import get_config
from nanobiggan.discriminator import DBlock
from nanobiggan.generator import DeepGBlock, GBlock
from nanobiggan.resample import box, conv_downsample, downsample, upsample, upsample_conv


def reference_up(x, w, b):
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)


def reference_down(x, w, b):
    return F.avg_pool2d(F.conv2d(x, w, b, padding=1), 2)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=40)
@given(shapes, st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
@pytest.mark.parametrize("fused, reference", [(upsample_conv, reference_up), (conv_downsample, reference_down)])
def test_fused_equals_unfused_values_and_gradients(fused, reference, shape, bias, channels_last, seed):
    """Any batch, channels, odd or even height and width, with or without bias, NCHW or NHWC (float64)."""
    n, cin, cout, h, w = shape
    if reference is reference_down and (h < 2 or w < 2):
        h, w = max(h, 2), max(w, 2)  # a 1-pixel map has nothing to pool
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    wt = torch.randn(cout, cin, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(cout, generator=g, dtype=torch.float64) if bias else None
    params = [t.requires_grad_() for t in (x, wt, b) if t is not None]
    out, ref = fused(x, wt, b), reference(x, wt, b)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(out, params, grad_out), torch.autograd.grad(ref, params, grad_out)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_box_is_the_full_convolution_with_a_2x2_box():
    """box(W) against an explicit 1-D case and against conv2d with ones(2, 2) (a different computation)."""
    w = torch.tensor([[1.0, 2.0, 4.0]]).expand(3, 3) * torch.tensor([[1.0], [0.0], [0.0]])  # only row 0 nonzero
    expected_row = torch.tensor([1.0, 3.0, 6.0, 4.0])  # [w0, w0+w1, w1+w2, w2]
    got = box(w.reshape(1, 1, 3, 3))[0, 0]
    torch.testing.assert_close(got[0], expected_row)
    torch.testing.assert_close(got[1], expected_row)  # rows 0 and 1 of the box both see row 0 of W
    torch.testing.assert_close(got[2:], torch.zeros(2, 4))
    W = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    full = F.conv2d(W.reshape(-1, 1, 3, 3), torch.ones(1, 1, 2, 2, dtype=torch.float64), padding=1).reshape(4, 3, 4, 4)
    torch.testing.assert_close(box(W), full)


def test_box_rejects_other_kernels():
    with pytest.raises(ValueError, match="3x3"):
        box(torch.randn(2, 2, 1, 1))


@pytest.mark.parametrize("fused, reference, size", [(upsample_conv, reference_up, 8), (conv_downsample, reference_down, 16)])
def test_fused_costs_four_ninths_of_the_flops(fused, reference, size):
    x, w, b = torch.randn(2, 8, size, size), torch.randn(16, 8, 3, 3), torch.randn(16)

    def flops(fn):
        with FlopCounterMode(display=False) as counter:
            fn(x, w, b)
        return counter.get_total_flops()
    assert flops(fused) * 9 == flops(reference) * 4


def test_resample_shapes():
    x = torch.randn(2, 3, 5, 6)
    assert upsample(x).shape == (2, 3, 10, 12) and downsample(x).shape == (2, 3, 2, 3)


def test_blocks_compute_the_unfused_figures():
    """GBlock (Fig. 15b), DeepGBlock's up block (Fig. 16b) and DBlock (Fig. 15c) written out with the unfused ops
    from the blocks' own layers: catches a fused call wired to the wrong weight or bias."""
    torch.manual_seed(0)
    cfg = get_config("cifar10-tiny", g_ch=4, d_ch=4)
    x, c = torch.randn(3, 8, 6, 6), torch.randn(3, cfg.cond_dim)
    for blk in (GBlock(8, 4, cfg).eval(), DeepGBlock(8, 4, up=True, cfg=cfg).eval(), DBlock(8, 4, True, True, cfg).eval()):  # eval: no SN power iteration, both paths divide by the same σ
        with torch.no_grad():
            if isinstance(blk, GBlock):
                h = blk.conv2(F.relu(blk.bn2(blk.conv1(upsample(F.relu(blk.bn1(x, c)))), c)))
                want = h + upsample(blk.conv_sc(x))
            elif isinstance(blk, DeepGBlock):
                h = F.relu(blk.bn2(blk.conv1(F.relu(blk.bn1(x, c))), c))
                h = blk.conv3(F.relu(blk.bn3(blk.conv2(upsample(h)), c)))
                want = blk.conv4(F.relu(blk.bn4(h, c))) + upsample(x[:, :4])
            else:
                h = downsample(blk.conv2(F.relu(blk.conv1(F.relu(x)))))
                want = h + blk.conv_sc(downsample(x))
            got = blk(x) if isinstance(blk, DBlock) else blk(x, c)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
