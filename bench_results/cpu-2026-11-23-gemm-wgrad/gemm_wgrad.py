"""TRIED, NOT ADOPTED (2026-11-23): stride-1 convs whose weight gradient is one GEMM over im2col patches on CPU.

Alone, each of the cifar10 preset's big weight gradients ran 1.1-1.5x faster this way; in the whole training
step (ab_gemm_wgrad.py: 6 pairs in one process, SNConv2d switched between this and F.conv2d) it gained nothing:
median 37.0 vs 37.2 s per iteration, CPU time 71.8 vs 71.2 s. Kept here with its tests
(python -m pytest bench_results/cpu-2026-11-23-gemm-wgrad/test_gemm_wgrad.py) so the experiment can be rerun.

`conv2d` computes exactly what F.conv2d computes, forward and backward; one piece of the backward is done
differently, for stride-1 convs in fp32 training on a CPU.

The weight gradient of y = conv(x; W, stride 1, padding p) is a sum over every output position:

    dW[o, c, i, j] = sum_{n, h, w} dy[n, o, h, w] · x_pad[n, c, h + i, w + j]

i.e. one matrix product, dy as (o, n·h·w) times the "im2col" patches of x as (n·h·w, i·j·c). oneDNN's direct
weight-gradient kernels ran at 55-70% of the machine's matmul rate on the AVX2 CPU we measured, while its
forward and data-gradient convs ran at the matmul rate (bench_results/cpu-2026-11-23-fused/profile.txt).
Here the patches are built ~1024 rows at a time (one strided view of the NHWC input, one copy) and
multiplied with addmm: sgemm does the work, at little extra memory. The forward pass and the data gradient
stay oneDNN's. Stride-2 convs (resample.py's) keep oneDNN's weight gradient: their patches cost more to copy,
and the GEMM was not faster there (bench_results/cpu-2026-11-23-gemm-wgrad).

The native path is used on GPUs (cuDNN), under autocast, under torch.compile (Inductor picks its own
kernels), for convs not of the plain kind (stride, dilation, groups), and when the backward itself is
differentiated (create_graph=True, e.g. R1's gradient penalty): there the gradients come from
aten.convolution_backward, which autograd can differentiate again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ROWS = 1024  # output positions per GEMM: enough for sgemm to run at its rate; a 3x3, 384-channel chunk copies 14 MB


def weight_grad(x: torch.Tensor, dy: torch.Tensor, k: int, padding: int, rows: int | None = None):
    """dW of conv2d(x, W (o c k k), stride 1, padding) given dy = dL/dy: (n c h w), (n o h' w') -> (o c k k)."""
    n, c = x.shape[:2]
    o, h_out, w_out = dy.shape[1:]
    dy = dy.permute(0, 2, 3, 1).contiguous()  # (n h' w' o): a view if dy is channels_last
    grad = x.new_zeros(o, k * k * c)
    per = max(1, (rows or ROWS) // (h_out * w_out))  # images per chunk
    for i in range(0, n, per):
        m = min(per, n - i)
        xp = F.pad(x[i:i + m], (padding,) * 4).permute(0, 2, 3, 1).contiguous()  # (m h+2p w+2p c)
        s_n, s_h, s_w, s_c = xp.stride()
        # patches[m, h, w, a, b, c] = xp[m, h + a, w + b, c]: a strided view, copied by the reshape below
        patches = xp.as_strided((m, h_out, w_out, k, k, c), (s_n, s_h, s_w, s_h, s_w, s_c))
        # grad += dy^T patches: (o, k·k·c). addmm with out= rather than addmm_, which FlopCounterMode skips
        torch.addmm(grad, dy[i:i + m].reshape(-1, o).t(), patches.reshape(-1, k * k * c), out=grad)
    return grad.view(o, k, k, c).permute(0, 3, 1, 2)  # (o c k k), channels_last strides


class _Conv(torch.autograd.Function):
    """conv2d, stride 1, with `weight_grad` in the backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding: int):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        args = [[1, 1], [ctx.padding] * 2, [1, 1], False, [0, 0], 1]  # stride, padding, dilation, ..., groups
        if torch.is_grad_enabled():  # create_graph=True: the native backward, which autograd differentiates
            bias_sizes = [weight.shape[0]] if need_b else None
            dx, dw, db = torch.ops.aten.convolution_backward(dy, x, weight, bias_sizes, *args, [need_x, need_w, need_b])
            return dx, dw, db, None
        dx = dw = db = None
        if need_x:  # data gradient alone: oneDNN computes a bias gradient together with the weight gradient
            dx = torch.ops.aten.convolution_backward(dy, x, weight, None, *args, [True, False, False])[0]
        if need_w:
            dw = weight_grad(x, dy, weight.shape[-1], ctx.padding)
        if need_b:
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """F.conv2d, with the GEMM weight gradient for stride-1 convs when training in fp32 on a CPU."""
    same = isinstance(padding, (tuple, list)) and len(set(padding)) == 1
    pad = padding if isinstance(padding, int) else padding[0] if same else None  # None: "same", uneven padding
    plain = pad is not None and stride in (1, (1, 1)) and dilation in (1, (1, 1)) and groups == 1
    training_on_cpu = (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and weight.requires_grad
                       and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
                       and not torch.compiler.is_compiling())
    if plain and training_on_cpu:
        return _Conv.apply(x, weight, bias, pad)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
