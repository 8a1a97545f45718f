"""gemm_wgrad.py (tried, not adopted): the same values and gradients as F.conv2d, with the GEMM weight gradient taken exactly where it
should be (stride-1 convs, CPU fp32/fp64 training) and the native path everywhere else."""
import sys
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gemm_wgrad as conv  # noqa: E402

ATOL = 1e-10  # float64


def _ours(output):
    return type(output.grad_fn).__name__ == "_ConvBackward"


@st.composite
def conv_case(draw):
    k, padding = draw(st.sampled_from([(3, 1), (1, 0), (3, 0), (5, 2)]))
    return dict(n=draw(st.integers(1, 4)), c=draw(st.integers(1, 6)), o=draw(st.integers(1, 6)),
                size=draw(st.integers(k, 9)), k=k, padding=padding, bias=draw(st.booleans()),
                channels_last=draw(st.booleans()), rows=draw(st.sampled_from([1, 7, 64, conv.ROWS])),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=60, deadline=None)
@given(case=conv_case())
def test_values_and_gradients_match_native(case):
    """Property: output and dL/dx, dL/dW, dL/db equal F.conv2d's autograd (float64), for odd and even sizes,
    kernels 1/3/5, NCHW and NHWC, and GEMM chunks from 1 row to a whole batch."""
    g = torch.Generator().manual_seed(case["seed"])
    fmt = torch.channels_last if case["channels_last"] else torch.contiguous_format
    x = torch.randn(case["n"], case["c"], case["size"], case["size"], generator=g, dtype=torch.float64)
    x = x.to(memory_format=fmt)
    w = torch.randn(case["o"], case["c"], case["k"], case["k"], generator=g, dtype=torch.float64)
    b = torch.randn(case["o"], generator=g, dtype=torch.float64) if case["bias"] else None
    results = []
    for fn in (conv.conv2d, F.conv2d):
        leaves = [t.detach().clone().requires_grad_() for t in (x, w, b) if t is not None]
        with mock.patch.object(conv, "ROWS", case["rows"]):
            y = fn(leaves[0], leaves[1], leaves[2] if b is not None else None, 1, case["padding"])
            assert _ours(y) == (fn is conv.conv2d)
            (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)).sum().backward()
        results.append([y] + [t.grad for t in leaves])
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_weight_grad_is_the_explicit_sum():
    """dW[o, c, i, j] = Σ_{n,h,w} dy[n, o, h, w] · x_pad[n, c, h + i, w + j], written out as loops."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    k, p = 3, 1
    dy = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64)
    xp = F.pad(x, (p,) * 4)
    expected = torch.zeros(4, 3, k, k, dtype=torch.float64)
    for i in range(k):
        for j in range(k):
            for h in range(5):
                for w in range(5):
                    expected[:, :, i, j] += torch.einsum("no,nc->oc", dy[:, :, h, w], xp[:, :, h + i, w + j])
    torch.testing.assert_close(conv.weight_grad(x, dy, k, p, rows=3), expected, atol=ATOL, rtol=0)


def test_second_order_gradients_match_native():
    """With create_graph (R1's penalty) the backward is differentiated again: gradgradcheck passes, and the
    penalty's gradient w.r.t. W equals the native conv's."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    assert _ours(conv.conv2d(x, w, b, 1, 1))
    assert torch.autograd.gradgradcheck(lambda x, w, b: conv.conv2d(x, w, b, 1, 1), (x, w, b))
    grads = []
    for fn in (conv.conv2d, F.conv2d):
        (dx,) = torch.autograd.grad(fn(x, w, b, 1, 1).square().sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(dx.square().sum(), (w, b)))
    torch.testing.assert_close(*grads, atol=ATOL, rtol=0)


def test_gemm_path_taken_only_for_stride_1_cpu_training():
    x = torch.randn(2, 3, 6, 6)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    assert _ours(conv.conv2d(x, w, None, 1, 1))
    assert _ours(conv.conv2d(x, w, None, (1, 1), (1, 1)))  # as nn.Conv2d stores them
    with torch.no_grad():  # sampling
        assert conv.conv2d(x, w, None, 1, 1).grad_fn is None
    assert not _ours(conv.conv2d(x.requires_grad_(), w.detach(), None, 1, 1))  # frozen D in G's step
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _ours(conv.conv2d(x, w, None, 1, 1))
    for kwargs in (dict(stride=2), dict(padding=(1, 0)), dict(padding="same"), dict(dilation=2)):
        assert not _ours(conv.conv2d(x, w, None, **kwargs))
    assert not _ours(conv.conv2d(torch.randn(2, 4, 6, 6), w[:, :2], None, 1, 1, groups=2))
    assert not _ours(conv.conv2d(x.half(), w.half(), None, 1, 1))


def test_flop_counter_sees_the_same_work_as_native():
    """bench.py counts FLOPs with FlopCounterMode: the GEMM weight gradient must count as the conv's."""
    x = torch.randn(3, 5, 9, 9, requires_grad=True)
    w = torch.randn(4, 5, 3, 3, requires_grad=True)
    counts = []
    for fn in (conv.conv2d, F.conv2d):
        with FlopCounterMode(display=False) as counter:
            fn(x, w, None, 1, 1).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 3 * (2 * 3 * 81 * 4 * 5 * 9), counts  # forward, data grad, weight grad
