import hashlib
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nanobiggan import data
from nanobiggan.data import (CIFAR10_CLASSES, DataError, ImageFolder, center_crop_resize, get_dataset,
                             load_cifar10)

TRAIN_SIZES = [4, 4, 4, 4, 4]  # 20 fake training images over the five batches


def write_batch(path, images, labels, py2_numpy_names=False):
    """A CIFAR-10 python batch; py2_numpy_names mimics the official files' `numpy.core` pickle globals."""
    blob = pickle.dumps({b"batch_label": b"fake", b"data": images, b"labels": list(map(int, labels))}, protocol=2)
    if py2_numpy_names:
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(blob)


@pytest.fixture
def cifar_dir(tmp_path):
    """tmp/cifar-10-batches-py with 20 train and 3 test random images; returns (dir, train arrays, test arrays)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    train_x, train_y = rng.integers(0, 256, (20, 3072), dtype=np.uint8), rng.integers(0, 10, 20)
    train_x[0, 0], train_x[0, 1] = 0, 255  # both ends of the pixel range
    for b in range(5):
        write_batch(folder / f"data_batch_{b + 1}", train_x[4 * b:4 * b + 4], train_y[4 * b:4 * b + 4],
                    py2_numpy_names=b == 0)
    test_x, test_y = rng.integers(0, 256, (3, 3072), dtype=np.uint8), np.array([9, 0, 3])
    write_batch(folder / "test_batch", test_x, test_y)
    return tmp_path, (train_x, train_y), (test_x, test_y)


@pytest.mark.parametrize("train", [True, False])
def test_load_cifar10_layout(cifar_dir, train):
    root, train_xy, test_xy = cifar_dir
    x, y = train_xy if train else test_xy
    images, labels = load_cifar10(root, train=train, download=False)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    # reference: the format stores each image as 1024 R, then 1024 G, then 1024 B values, row-major
    assert torch.equal(images, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
    assert torch.equal(images[1, 1, 2, 5], torch.tensor(x[1, 1024 + 2 * 32 + 5]))
    assert labels.tolist() == y.tolist()


def test_cifar_items(cifar_dir):
    root, (x, y), _ = cifar_dir
    ds = get_dataset("cifar10", str(root), download=False)
    assert len(ds) == 20 and ds.classes == CIFAR10_CLASSES and ds.num_classes == 10
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and label.dtype == torch.int64
        expected = torch.from_numpy(x[i].reshape(3, 32, 32).astype(np.float32)) / 127.5 - 1
        torch.testing.assert_close(img, expected, rtol=0, atol=1e-6)
        assert label.item() == y[i]
    assert ds[0][0].min() == -1 and ds[0][0].max() == 1
    assert len(get_dataset("cifar10", str(root), resolution=32, train=False, download=False)) == 3
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 3, 32, 32) and yb.shape == (8,) and yb.dtype == torch.int64


def check_hflip(ds, i):
    ds.hflip = False
    x = ds[i][0]
    ds.hflip = True
    seen = set()
    for seed in range(32):
        torch.manual_seed(seed)
        y = ds[i][0]
        assert torch.equal(y, x) or torch.equal(y, x.flip(-1))
        seen.add(torch.equal(y, x))
    assert seen == {True, False}, "hflip=True should flip about half of the time"
    assert not torch.equal(x, x.flip(-1))  # the image is not symmetric, so the test can tell


def test_cifar_hflip(cifar_dir):
    check_hflip(get_dataset("cifar10", str(cifar_dir[0]), hflip=True, download=False), 3)


def test_missing_cifar_message(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_cifar10(tmp_path / "nowhere", download=False)
    msg = str(e.value)
    for needle in (str(tmp_path / "nowhere" / "cifar-10-batches-py"), "prepare_cifar10.py", data.CIFAR10_URL,
                   "--data-dir", "NANOBIGGAN_DATA"):
        assert needle in msg


def make_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, src in members:
            tar.add(src, arcname=name)
    return path


def point_download_at(monkeypatch, archive, md5=None):
    """Make the downloader fetch a local archive through urllib (file:// URL): no network in tests."""
    monkeypatch.setattr(data, "CIFAR10_URL", Path(archive).resolve().as_uri())
    monkeypatch.setattr(data, "CIFAR10_MD5", md5 or hashlib.md5(Path(archive).read_bytes()).hexdigest())


def test_download_verifies_and_extracts(cifar_dir, tmp_path, monkeypatch):
    root, (x, _), _ = cifar_dir
    archive = make_archive(tmp_path / "a.tar.gz", [("cifar-10-batches-py", root / "cifar-10-batches-py")])
    point_download_at(monkeypatch, archive)
    images, _ = load_cifar10(tmp_path / "fresh")
    assert torch.equal(images, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["cifar-10-batches-py"]  # archive removed


def test_download_with_bad_checksum_or_no_network(cifar_dir, tmp_path, monkeypatch):
    root = cifar_dir[0]
    archive = make_archive(tmp_path / "a.tar.gz", [("cifar-10-batches-py", root / "cifar-10-batches-py")])
    point_download_at(monkeypatch, archive, md5="0" * 32)
    with pytest.raises(FileNotFoundError, match="checksum mismatch.*prepare_cifar10.py"):
        load_cifar10(tmp_path / "fresh")
    assert not list((tmp_path / "fresh").iterdir())  # no partial archive left behind
    point_download_at(monkeypatch, archive)
    monkeypatch.setattr(data, "CIFAR10_URL", (tmp_path / "missing.tar.gz").as_uri())
    with pytest.raises(FileNotFoundError, match="download failed.*prepare_cifar10.py"):
        load_cifar10(tmp_path / "fresh")


def test_unsafe_archive_member_is_refused(tmp_path, monkeypatch):
    (tmp_path / "payload").write_text("x")
    archive = make_archive(tmp_path / "evil.tar.gz", [("../escaped", tmp_path / "payload")])
    point_download_at(monkeypatch, archive)
    (tmp_path / "deep").mkdir()
    with pytest.raises(FileNotFoundError, match="unsafe member"):
        load_cifar10(tmp_path / "deep" / "data")
    assert not (tmp_path / "deep" / "escaped").exists()


class RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("content", [b"not a pickle", b"", pickle.dumps({b"data": RunsCode()}),
                                     pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}),
                                     pickle.dumps(["a", "list"])],
                         ids=["garbage", "empty", "code", "wrong-shape", "not-a-dict"])
def test_corrupt_batch_names_the_file(cifar_dir, content):
    root = cifar_dir[0]
    bad = root / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=str(bad)):
        load_cifar10(root, download=False)


def test_get_dataset_argument_errors(cifar_dir):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet': choose cifar10 or folder"):
        get_dataset("imagenet")
    with pytest.raises(ValueError, match="32x32"):
        get_dataset("cifar10", str(cifar_dir[0]), resolution=64, download=False)
    with pytest.raises(ValueError, match="--data-dir"):
        get_dataset("folder", resolution=32)
    with pytest.raises(ValueError, match="resolution"):
        get_dataset("folder", str(cifar_dir[0]))


# --------------------------------------------------------------------------- image folders

def noise_image(rng, w, h):
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "images"
    for rel, (w, h) in {"cat/a.png": (40, 20), "cat/b.JPG": (20, 30), "dog/c.png": (25, 25),
                        "dog/sub/d.jpeg": (17, 50), "dog/e.webp": (9, 8)}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        noise_image(rng, w, h).save(root / rel)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()  # hidden folders are not classes
    return root


def test_image_folder_items(image_dir):
    ds = get_dataset("folder", str(image_dir), resolution=16)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and len(ds) == 5
    assert [label for _, label in ds.samples] == [0, 0, 1, 1, 1]
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert -1 <= x.min() and x.max() <= 1 and y.item() == ds.samples[i][1]
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert xb.shape == (5, 3, 16, 16) and yb.tolist() == [0, 0, 1, 1, 1]


@settings(max_examples=30)
@given(s=st.integers(1, 12), margin=st.integers(0, 6), landscape=st.booleans(), seed=st.integers(0, 2**16))
def test_center_crop_is_the_central_square(s, margin, landscape, seed):
    """Resizing to the short side itself is exact, so the output must equal the central square pixel for pixel."""
    w, h = (s + 2 * margin, s) if landscape else (s, s + 2 * margin)
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = np.asarray(center_crop_resize(Image.fromarray(pixels), s))
    centre = pixels[:, margin:margin + s] if landscape else pixels[margin:margin + s, :]
    np.testing.assert_array_equal(out, centre)


@settings(max_examples=30)
@given(s=st.integers(1, 40), margin=st.integers(1, 30), landscape=st.booleans(), res=st.integers(1, 24))
def test_resize_keeps_only_the_centre_colour(s, margin, landscape, res):
    """Centre square red, margins blue: after crop + resize to any resolution nothing blue may remain."""
    w, h = (s + 2 * margin, s) if landscape else (s, s + 2 * margin)
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[..., 2] = 255
    if landscape:
        pixels[:, margin:margin + s] = (255, 0, 0)
    else:
        pixels[margin:margin + s, :] = (255, 0, 0)
    out = np.asarray(center_crop_resize(Image.fromarray(pixels), res))
    assert out.shape == (res, res, 3) and (out == (255, 0, 0)).all()


def test_image_folder_end_to_end_crop(tmp_path):
    """Through the dataset: grey-level 'L' file converted to RGB, centre cropped, scaled to [-1, 1]."""
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (10, 16), dtype=np.uint8)
    (tmp_path / "only").mkdir()
    Image.fromarray(pixels, mode="L").save(tmp_path / "only" / "g.png")
    x, y = ImageFolder(tmp_path, resolution=10)[0]
    expected = torch.from_numpy(pixels[:, 3:13].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(x, expected.expand(3, 10, 10), rtol=0, atol=1e-6)
    assert y.item() == 0


def test_image_folder_hflip(image_dir):
    check_hflip(ImageFolder(image_dir, resolution=8, hflip=True), 2)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*--data-dir"):
        ImageFolder(tmp_path / "missing", resolution=8)
    with pytest.raises(DataError, match="no class subfolders"):
        ImageFolder(tmp_path, resolution=8)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="no images"):
        ImageFolder(tmp_path, resolution=8)
    (tmp_path / "cls" / "broken.png").write_bytes(b"not really a png")
    ds = ImageFolder(tmp_path, resolution=8)
    with pytest.raises(DataError, match="broken.png"):
        ds[0]
    for bad in (0, -3, 8.0, None):
        with pytest.raises(ValueError, match="resolution"):
            ImageFolder(tmp_path, resolution=bad)
