"""nanobiggan/classifier.py: class accuracy against an explicit count (a fake G whose images encode their class,
a fake classifier that decodes them with known mistakes), the sha256 registry, the shipped classifiers, the CLI."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanobiggan import classifier as C
from nanobiggan.config import get_config
from nanobiggan.truncation import truncated_normal

DATA = Path(__file__).resolve().parents[1] / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = {"cifar10": 0.80, "fashion-mnist": 0.90}
WRONG = {3: 5, 7: 0}  # the fake classifier's confusions: class 3 read as 5, class 7 as 0


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
    r = C.class_accuracy(G, DecodingClassifier(), n, truncation, seed, batch_size, standing_batches=1)
    acc, per_class = expected(n, truncation, seed, G.cfg.z_dim)
    assert r["class_acc_n"] == n and r["class_acc"] == pytest.approx(acc, abs=1e-12)
    np.testing.assert_allclose(r["class_acc_per_class"], per_class, atol=1e-12)  # nan where a class is absent


def test_class_accuracy_sees_balanced_labels_and_known_mistakes():
    G, seen = CodeG(), []
    real = G.forward
    G.forward = lambda z, y: seen.append(y) or real(z, y)
    r = C.class_accuracy(G, DecodingClassifier(), 1000, truncation=1.0, seed=0, batch_size=64, standing_batches=1)
    labels = torch.cat(seen[1:])  # seen[0]: the standing-statistics batch
    assert torch.bincount(labels, minlength=10).tolist() == [100] * 10
    # truncation 1.0: z[0] > 1 never happens, so exactly the WRONG classes are missed
    assert r["class_acc"] == 0.8 and [c for c, a in enumerate(r["class_acc_per_class"]) if a != 1.0] == [3, 7]
    assert all(r["class_acc_per_class"][c] == 0.0 for c in WRONG)


def test_accuracy_report_per_class():
    r = C.accuracy_report(torch.tensor([0, 1, 1, 2, 0]), torch.tensor([0, 1, 2, 2, 1]), n_classes=4)
    assert r["class_acc"] == 0.6 and r["class_acc_n"] == 5
    assert r["class_acc_per_class"][:3] == [1.0, 0.5, 0.5] and np.isnan(r["class_acc_per_class"][3])


def test_augment_crops_and_flips():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).reshape(2, 3, 8, 8)
    assert torch.equal(C.augment(x, 0, False, g), x)  # no padding: no change
    out = C.augment(x, 2, True, g)
    padded = torch.nn.functional.pad(x, (2,) * 4, mode="reflect")
    for i in range(2):  # each image is one window of its padded self, maybe flipped
        windows = [padded[i, :, a:a + 8, b:b + 8] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


def small_classifier_file(path, dataset="cifar10"):
    net = C.Classifier((8, 8, 8))
    meta = {"format": C.FORMAT, "dataset": dataset, "classes": [str(i) for i in range(10)], "widths": [8, 8, 8],
            "test_accuracy": 0.5, "test_n": 1}
    return C.save_classifier(net, meta, path)


def test_changed_shipped_file_is_refused(tmp_path, monkeypatch):
    sha = small_classifier_file(tmp_path / "cifar10.pt")
    assert sha == C.file_sha256(tmp_path / "cifar10.pt") and not list(tmp_path.glob(".*tmp"))
    monkeypatch.setattr(C, "SHIPPED", tmp_path)
    with pytest.raises(ValueError, match=f"has sha256 {sha}, but the shipped cifar10 classifier has "
                                         f"{C.KNOWN_SHA256['cifar10']}: refusing a changed file"):
        C.load_classifier("cifar10")
    net = C.load_classifier(tmp_path / "cifar10.pt")  # the same file by its path: accepted, sha reported
    assert net.meta["sha256"] == sha and net.widths == (8, 8, 8)
    with pytest.raises(FileNotFoundError, match="no classifier 'mnist'"):
        C.load_classifier("mnist")


@pytest.mark.parametrize("dataset", ["cifar10", "fashion-mnist"])
def test_shipped_classifiers(dataset):
    path = C.SHIPPED / f"{dataset}.pt"
    assert path.stat().st_size < 2_000_000
    net = C.load_classifier(dataset)  # checks the registry's sha256
    m = net.meta
    assert m["sha256"] == C.KNOWN_SHA256[dataset] and m["dataset"] == dataset and len(m["classes"]) == 10
    assert m["test_accuracy"] >= TARGETS[dataset] and m["test_n"] == 10_000
    assert m["wall_seconds"] > 0 and m["cpu_seconds"] > 0 and m["epochs"] == C.RECIPES[dataset][0]
    for folder in (DATA, SHARED):  # ./data, else ../shared/data (its Fashion-MNIST idx files are read as they are)
        try:
            images, labels, _ = C.load_split(dataset, folder, train=False, download=False)
            break
        except FileNotFoundError:
            continue
    else:
        pytest.skip(f"{dataset} test split not on this machine: only the stored accuracy was checked")
    if C.data_sha256(images, labels) == m["test_data_sha256"]:  # the split it was measured on: exactly reproduced
        assert C.real_accuracy(net, images, labels) == m["test_accuracy"]
    else:  # other pixels (e.g. the official CIFAR-10 vs a JPEG re-encoding): close, on 2000 random images
        idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:2000]
        assert abs(C.real_accuracy(net, images[idx], labels[idx]) - m["test_accuracy"]) < 0.03


def test_cli_trains_and_writes_a_loadable_file(tmp_path, capsys, fake_cifar10):
    out = tmp_path / "clf" / "c.pt"
    C.main(["--dataset", "cifar10", "--data-dir", str(fake_cifar10), "--epochs", "2", "--batch-size", "16",
            "--widths", "8", "8", "8", "--device", "cpu", "--no-bf16", "--out", str(out)])
    printed = capsys.readouterr().out
    assert re.search(r"epoch 2/2: loss [\d.]+, test accuracy [\d.]+", printed)
    assert f"{out}: sha256 {C.file_sha256(out)}" in printed
    state = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for k, v in state["state_dict"].items() if "num_batches" not in k)
    net = C.load_classifier(out)
    m = net.meta
    assert m["dataset"] == "cifar10" and m["epochs"] == 2 and m["train_n"] == 40 and m["test_n"] == 8
    assert m["widths"] == [8, 8, 8] and not m["bf16"] and m["cpu_seconds"] > 0 and m["sha256"] == C.file_sha256(out)
    x, y, _ = C.load_split("cifar10", fake_cifar10, train=False)
    assert C.real_accuracy(net, x, y) == m["test_accuracy"]  # the stored weights are the measured ones
