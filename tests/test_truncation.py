import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nanobiggan.truncation import check_threshold, tfhub_truncated_normal, truncated_normal

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3)
seeds = st.integers(0, 2**31 - 1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@settings(max_examples=40)
@given(st.floats(0.05, 3.0), shapes, seeds)
def test_every_sample_within_threshold(threshold, shape, seed):
    z = truncated_normal(shape, threshold, generator=gen(seed))
    assert z.shape == tuple(shape) and z.dtype == torch.float32
    assert (z.abs() <= threshold).all()


@pytest.mark.parametrize("threshold", [0.25, 1.0, 2.0])
def test_distribution_is_truncated_normal(threshold):
    z = truncated_normal(4000, threshold, generator=gen(0), dtype=torch.float64)
    assert stats.kstest(z.numpy(), stats.truncnorm(-threshold, threshold).cdf).pvalue > 1e-3


def test_ks_test_detects_clamping():
    # The KS check above has power: clamping instead of resampling puts atoms at ±t and fails it.
    z = torch.randn(4000, generator=gen(0), dtype=torch.float64).clamp(-0.5, 0.5)
    assert stats.kstest(z.numpy(), stats.truncnorm(-0.5, 0.5).cdf).pvalue < 1e-3


@pytest.mark.parametrize("threshold", [None, math.inf])
def test_no_threshold_is_plain_normal(threshold):
    z = truncated_normal((4000,), threshold, generator=gen(1), dtype=torch.float64)
    assert z.abs().max() > 3  # would be impossible under any truncation at <= 3
    assert stats.kstest(z.numpy(), stats.norm.cdf).pvalue > 1e-3
    torch.testing.assert_close(z, torch.randn(4000, generator=gen(1), dtype=torch.float64), rtol=0, atol=0)


@given(st.floats(0.05, 3.0), seeds)
def test_same_seed_same_tensor(threshold, seed):
    a = truncated_normal((7, 5), threshold, generator=gen(seed))
    b = truncated_normal((7, 5), threshold, generator=gen(seed))
    c = truncated_normal((7, 5), threshold, generator=gen(seed + 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("bad", [-1, 0, 0.0, -0.5, math.nan, -math.inf, "0.5", True, [0.5]])
def test_bad_thresholds_raise(bad):
    with pytest.raises(ValueError, match="truncation threshold must be a positive number such as 0.5; got"):
        truncated_normal(3, bad)
    with pytest.raises(ValueError, match="truncation threshold must be a positive number such as 0.5; got"):
        check_threshold(bad)  # what sample.py and evaluate validate a --truncation with, drawing nothing


def test_check_threshold_accepts_positive_numbers():
    assert check_threshold(0.5) == 0.5 and check_threshold(2) == 2.0 and check_threshold(math.inf) == math.inf
    rng = torch.get_rng_state()
    check_threshold(0.04)
    assert torch.equal(rng, torch.get_rng_state())


@given(st.floats(max_value=0.0))
def test_nonpositive_thresholds_raise(bad):
    with pytest.raises(ValueError, match="positive number"):
        truncated_normal(3, bad)


@given(st.floats(0.02, 1.5), shapes, seeds)
def test_tfhub_bound(truncation, shape, seed):
    z = tfhub_truncated_normal(shape, truncation, generator=gen(seed))
    assert z.shape == tuple(shape)
    assert (z.abs() <= 2 * truncation * (1 + 1e-6)).all()


def test_tfhub_distribution_is_scaled_truncnorm_2():
    t = 0.4
    z = tfhub_truncated_normal(4000, t, generator=gen(2), dtype=torch.float64)
    assert stats.kstest(z.numpy(), stats.truncnorm(-2, 2, scale=t).cdf).pvalue > 1e-3
    # ...and is NOT the paper's truncnorm(-t, t).
    assert stats.kstest(z.numpy(), stats.truncnorm(-t, t).cdf).pvalue < 1e-3


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, None, "1"])
def test_tfhub_bad_truncation_raises(bad):
    with pytest.raises(ValueError, match="truncation must be a"):
        tfhub_truncated_normal(3, bad)
