"""nanobiggan/lab/classifier.py: the accuracy report, augmentation, the sha256 registry, the shipped classifiers, the
CLI. (Class accuracy of a generator, the protocol's, is tested in test_protocol.py.)"""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nanobiggan.lab import classifier as C

DATA = Path(__file__).resolve().parents[1] / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = {"cifar10": 0.80, "fashion-mnist": 0.90}


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
