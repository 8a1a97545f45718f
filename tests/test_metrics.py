"""Tests for nanobiggan/metrics.py: FID, KID and IS against closed forms, scipy and explicit sums."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from nanobiggan import metrics


def random_spd(rng, d, rank=None, jitter=0.1):
    a = rng.standard_normal((d, rank or 2 * d))
    return a @ a.T / a.shape[1] + jitter * np.eye(d)


# ----------------------------------------------------------------------------- Fréchet distance


@given(st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_frechet_zero_for_identical_and_symmetric(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    assert metrics.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        metrics.frechet_distance(mu2, s2, mu1, s1), rel=1e-9, abs=1e-12)


@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5), st.floats(0, 10), st.floats(0, 10)),
                min_size=1, max_size=10))
def test_frechet_closed_form_for_diagonal_gaussians(rows):
    mu1, mu2, a, b = map(np.array, zip(*rows))
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)  # includes zero (singular) variances


@given(st.integers(2, 24), st.integers(0, 2**32 - 1))
def test_frechet_matches_scipy_sqrtm_formula(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real  # the classic (unstable in general) reference
    expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * covmean)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


@given(st.integers(3, 40), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_frechet_never_nan_on_singular_covariances(d, rank, seed):
    rng = np.random.default_rng(seed)
    s1, s2 = random_spd(rng, d, rank, 0), random_spd(rng, d, rank, 0)  # rank < d: singular
    mu = rng.standard_normal(d)
    fid = metrics.frechet_distance(mu, s1, mu + 1, s2)
    assert np.isfinite(fid) and fid >= d - 1e-6  # ≥ ‖Δμ‖² = d since the trace term is ≥ 0
    # Equal singular covariances: only the mean term remains.
    assert metrics.frechet_distance(mu, s1, mu + 1, s1) == pytest.approx(d, rel=1e-6)
    # Against zero covariance, (Σ1·0)^{1/2} = 0, so FID = ‖Δμ‖² + Tr Σ1.
    assert metrics.frechet_distance(mu, s1, mu, 0 * s1) == pytest.approx(np.trace(s1), rel=1e-9)


def test_frechet_rejects_bad_statistics():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="need mu"):
        metrics.frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        metrics.frechet_distance(mu, s, mu, np.full((3, 3), np.nan))


def test_feature_stats_refuses_too_few_samples():
    feats = np.random.default_rng(0).standard_normal((100, 2048))
    with pytest.raises(ValueError, match=r"at least 2048 samples, got 100 .*min_samples=100"):
        metrics.feature_stats(feats)
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        metrics.feature_stats(feats[:1], min_samples=0)  # a covariance needs 2 whatever the override
    mu, sigma = metrics.feature_stats(feats, min_samples=100)
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (2048, 2048)
    np.testing.assert_allclose(sigma, torch.from_numpy(feats).T.cov().numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- KID


def mmd2_explicit(x, y):
    """Binkowski 2018 Eq. for the unbiased MMD², written as the plain double sums."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    return xx + yy - 2 * xy


@given(st.integers(2, 8), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_kid_matches_explicit_unbiased_mmd(m, d, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((m, d)), rng.standard_normal((m, d)) + rng.uniform(0, 2)
    mean, std = metrics.kid(x, y, num_subsets=1, subset_size=1000)  # one subset = all samples
    assert mean == pytest.approx(mmd2_explicit(x, y), rel=1e-9, abs=1e-12) and std == 0


def test_kid_near_zero_for_same_distribution_and_large_for_shifted():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 16)), rng.standard_normal((300, 16))
    same, same_std = metrics.kid(x, y, num_subsets=20, subset_size=100)
    shifted, _ = metrics.kid(x, y + 1.0, num_subsets=20, subset_size=100)
    assert abs(same) < 3 * same_std / np.sqrt(20) + 1e-3  # unbiased: mean is 0 up to noise
    assert shifted > 20 * (abs(same) + same_std)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.kid(x[:1], y)


# ----------------------------------------------------------------------------- Inception Score


@given(st.integers(1, 50), st.integers(2, 30), st.integers(1, 5))
def test_inception_score_uniform_predictions_is_one(n_per_split, classes, splits):
    mean, std = metrics.inception_score(torch.zeros(n_per_split * splits, classes), splits=splits)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0, abs=1e-12)


@given(st.integers(1, 40), st.integers(1, 4), st.integers(1, 5), st.booleans())
def test_inception_score_confident_distinct_classes_gives_n(n, repeats, splits, from_logits):
    # Each split holds every one of the n classes `repeats` times, each predicted with certainty.
    labels = torch.arange(n).repeat(repeats * splits)
    onehot = F.one_hot(labels, n + 3).double()  # 3 never-predicted classes must not count
    preds = onehot * 100.0 if from_logits else onehot  # softmax(100·onehot) ≈ onehot
    mean, std = metrics.inception_score(preds, splits=splits, from_logits=from_logits)
    assert mean == pytest.approx(n, rel=1e-6) and std == pytest.approx(0, abs=1e-6)


def test_inception_score_splits_and_validation():
    # Splits at i·n // splits as in Salimans' code: rows [0, 2) and [2, 5). Split 1 sees two
    # certain classes (IS 2), split 2 only one (IS 1): mean 1.5, std 0.5.
    probs = F.one_hot(torch.tensor([0, 1, 2, 2, 2]), 3).double()
    assert metrics.inception_score(probs, splits=2, from_logits=False) == pytest.approx((1.5, 0.5))
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score(probs, splits=6, from_logits=False)
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.inception_score(probs * 2, splits=2, from_logits=False)
