"""nanobiggan/lab/protocol.py: class-balanced labels, and class accuracy against an explicit count (a fake G whose
images encode their class, a fake classifier that decodes them with known mistakes). The protocol end to end, with
fake Inception networks and its command line, is tested in test_evaluate.py."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanobiggan.config import get_config
from nanobiggan.lab import protocol
from nanobiggan.truncation import truncated_normal

WRONG = {3: 5, 7: 0}  # the fake classifier's confusions: class 3 read as 5, class 7 as 0


@given(st.integers(1, 500), st.integers(1, 20))
def test_class_balanced_labels(n, n_classes):
    y = protocol.class_balanced_labels(n, n_classes)
    assert y.tolist() == [i % n_classes for i in range(n)]  # cycling
    counts = torch.bincount(y, minlength=n_classes)
    assert counts.sum() == n and counts.max() - counts.min() <= (1 if n % n_classes else 0)


class CodeG(torch.nn.Module):
    """Image of G(z, y): every pixel holds code(y) = y (or y + 1 mod 10 when z[0] > 1), plus a BatchNorm
    so the standing statistics run; the BN output is scaled by 0 and cannot move the code."""

    def __init__(self):
        super().__init__()
        self.cfg = get_config("cifar10-tiny")
        self.bn = torch.nn.BatchNorm1d(self.cfg.z_dim)

    def forward(self, z, y):
        code = torch.where(z[:, 0] > 1, (y + 1) % 10, y)
        v = (code.float() / 10 - 0.5)[:, None] + 0 * self.bn(z)[:, :1]  # in [-0.5, 0.4]: a uint8 level per class
        return v[:, :, None, None].expand(-1, 3, 32, 32)


class DecodingClassifier:
    """Reads the code back from the uint8 pixel, then makes the WRONG mistakes."""
    meta = {"sha256": "0" * 64}

    def predict(self, images):
        code = ((images[:, 0, 0, 0].float() - 128) / 127.5 + 0.5).mul(10).round().long()
        return torch.tensor([WRONG.get(c, c) for c in code.tolist()])


def expected(n, truncation, seed, z_dim):
    """The explicit count: sample i has class i mod 10 and z from truncated_normal(seed)."""
    z = truncated_normal((n, z_dim), truncation, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n) % 10
    shown = torch.where(z[:, 0] > 1, (y + 1) % 10, y)
    right = [(WRONG.get(s, s) == c) for s, c in zip(shown.tolist(), y.tolist())]
    per_class = [np.mean([r for r, c in zip(right, y.tolist()) if c == k]) if k < n else float("nan")
                 for k in range(10)]
    return sum(right) / n, per_class


@given(n=st.integers(1, 60), batch_size=st.integers(1, 70), truncation=st.sampled_from([None, 2.0, 0.5]),
       seed=st.integers(0, 3))
def test_class_accuracy_is_the_explicit_fraction(n, batch_size, truncation, seed):
    G = CodeG()
    r = protocol.class_accuracy(G, DecodingClassifier(), n, truncation, seed, batch_size, standing_batches=1)
    acc, per_class = expected(n, truncation, seed, G.cfg.z_dim)
    assert r["class_acc_n"] == n and r["class_acc"] == pytest.approx(acc, abs=1e-12)
    np.testing.assert_allclose(r["class_acc_per_class"], per_class, atol=1e-12)  # nan where a class is absent


def test_class_accuracy_sees_balanced_labels_and_known_mistakes():
    G, seen = CodeG(), []
    real = G.forward
    G.forward = lambda z, y: seen.append(y) or real(z, y)
    r = protocol.class_accuracy(G, DecodingClassifier(), 1000, truncation=1.0, seed=0, batch_size=64, standing_batches=1)
    labels = torch.cat(seen[1:])  # seen[0]: the standing-statistics batch
    assert torch.bincount(labels, minlength=10).tolist() == [100] * 10
    # truncation 1.0: z[0] > 1 never happens, so exactly the WRONG classes are missed
    assert r["class_acc"] == 0.8 and [c for c, a in enumerate(r["class_acc_per_class"]) if a != 1.0] == [3, 7]
    assert all(r["class_acc_per_class"][c] == 0.0 for c in WRONG)
