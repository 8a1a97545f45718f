"""Resampling in BigGAN's residual blocks, with the 3x3 conv beside it done at the low resolution.

G's up-block convolves a nearest-upsampled map (Fig. 15b); D's down-block average-pools a conv's output
(Fig. 15c). Both waste FLOPs: upsampling repeats every pixel 4 times before a conv reads it, pooling throws away
3 of every 4 conv outputs after they are computed. Each pair is exactly one stride-2 4x4 conv whose kernel is
the 3x3 kernel W summed over a 2x2 box, box(W) (1-D: box([w0, w1, w2]) = [w0, w0+w1, w1+w2, w2]):

    avgpool2(conv3x3(x; W))    = conv4x4(x; box(W) / 4, stride 2)        pooled output i sums rows 2i-1 .. 2i+2
    conv3x3(upsample2(x); W)   = conv_transpose4x4(x; flip(box(W)), stride 2)

Why the second holds (1-D, padding 1): output 2m reads upsampled pixels 2m-1, 2m, 2m+1 = x[m-1], x[m], x[m],
i.e. w0·x[m-1] + (w1+w2)·x[m]; output 2m+1 reads x[m], x[m], x[m+1]: (w0+w1)·x[m] + w2·x[m+1]. A stride-2
transposed conv writes x[m]·K[k] to output 2m+k-1, so K = [w2, w1+w2, w0+w1, w0] = flip(box(W)).

Either way an output pixel costs 16 multiply-adds on a quarter of the pixels (4 per pixel) instead of 9:
2.25x fewer FLOPs for the same function (up to float rounding) of the same weights, so spectral norm (which
still sees the 3x3 W), ortho reg, checkpoints and official weights are untouched. bench.py measures the gain.
The 1x1 skip convs commute with resampling outright: G convolves before upsampling, D pools before convolving.

The blocks call the layer-level forms, named in the figures' order: `upsample_then_conv(conv, x)` is
conv(upsample(x)) and `conv_then_downsample(conv, x)` is downsample(conv(x)), for a spectrally normalized conv.

Tutorial: tutorials/05_building_models.md
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")  # (n c h w) -> (n c 2h 2w)


def downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)  # (n c h w) -> (n c h/2 w/2)


def box(weight: torch.Tensor) -> torch.Tensor:
    """(o i 3 3) -> (o i 4 4): the kernel summed over every 2x2 shift (a 'full' convolution with ones(2, 2))."""
    if weight.shape[2:] != (3, 3):
        raise ValueError(f"the fused resampling convs need a 3x3 kernel, got {tuple(weight.shape[2:])}")
    return sum(F.pad(weight, (left, 1 - left, top, 1 - top)) for top in (0, 1) for left in (0, 1))


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv2d(upsample(x), weight, bias, padding=1) at 4/9 of its FLOPs: (n i h w) -> (n o 2h 2w)."""
    kernel = box(weight).flip(2, 3).transpose(0, 1)  # conv_transpose2d's weight is (in out kh kw)
    return F.conv_transpose2d(x, kernel, bias, stride=2, padding=1)


def conv_downsample(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """downsample(conv2d(x, weight, bias, padding=1)) at 4/9 of its FLOPs: (n i h w) -> (n o h/2 w/2)."""
    return F.conv2d(x, box(weight) / 4, bias, stride=2, padding=1)


def upsample_then_conv(conv, x: torch.Tensor) -> torch.Tensor:
    """conv(upsample(x)) for a spectrally normalized 3x3 conv layer (Fig. 15b, 16b), computed by `upsample_conv`."""
    return upsample_conv(x, conv.sn_weight(), conv.bias)


def conv_then_downsample(conv, x: torch.Tensor) -> torch.Tensor:
    """downsample(conv(x)) for a spectrally normalized 3x3 conv layer (Fig. 15c), computed by `conv_downsample`."""
    return conv_downsample(x, conv.sn_weight(), conv.bias)
