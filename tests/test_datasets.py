"""nanobiggan/lab/datasets.py and lab/dataset_files.py: CIFAR-10, Fashion-MNIST and image folders from their files
(fake and, where a copy beside the clone has them, real) to the items the trainer reads; downloads; every error
names the file; the resumable stream of real batches."""
import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nanobiggan.lab import dataset_files
from nanobiggan.lab.dataset_files import (CIFAR10_CLASSES, FASHION_MNIST_MD5, FASHION_MNIST_URL, DataError,
                                          load_cifar10, load_fashion_mnist)
from nanobiggan.lab.datasets import Batches, ImageFolder, center_crop_resize, get_dataset

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
    for needle in (str(tmp_path / "nowhere" / "cifar-10-batches-py"), "prepare_cifar10.py", dataset_files.CIFAR10_URL,
                   "--data-dir", "NANOBIGGAN_DATA"):
        assert needle in msg


def make_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, src in members:
            tar.add(src, arcname=name)
    return path


def point_download_at(monkeypatch, archive, md5=None):
    """Make the downloader fetch a local archive through urllib (file:// URL): no network in tests."""
    monkeypatch.setattr(dataset_files, "CIFAR10_URL", Path(archive).resolve().as_uri())
    monkeypatch.setattr(dataset_files, "CIFAR10_MD5", md5 or hashlib.md5(Path(archive).read_bytes()).hexdigest())


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
    assert not (tmp_path / "fresh").exists()  # no partial archive, and no folder the failure created
    point_download_at(monkeypatch, archive)
    monkeypatch.setattr(dataset_files, "CIFAR10_URL", (tmp_path / "missing.tar.gz").as_uri())
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
    with pytest.raises(ValueError, match="unknown dataset 'imagenet': choose cifar10, fashion-mnist or folder"):
        get_dataset("imagenet")
    with pytest.raises(ValueError, match="32x32"):
        get_dataset("cifar10", str(cifar_dir[0]), resolution=64, download=False)
    with pytest.raises(ValueError, match="--data-dir"):
        get_dataset("folder", resolution=32)
    with pytest.raises(ValueError, match="resolution"):
        get_dataset("folder", str(cifar_dir[0]))


# --------------------------------------------------------------------------- Fashion-MNIST

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the clone (CI has it)
needs_shared = pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="needs ../shared/data/fashion-mnist")


def write_idx(path, array, magic=None):
    """A gzipped idx file: big-endian magic (0x0800 + ndim for uint8), the sizes, then the bytes."""
    array = np.asarray(array, np.uint8)
    header = np.array([magic or 0x0800 + array.ndim, *array.shape], ">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def write_fashion(root, train_xy, test_xy=None):
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for split, xy in (("train", train_xy), ("t10k", test_xy)):
        if xy is not None:
            write_idx(folder / f"{split}-images-idx3-ubyte.gz", xy[0])
            write_idx(folder / f"{split}-labels-idx1-ubyte.gz", xy[1])
    return folder


@pytest.fixture
def fashion_dir(tmp_path):
    """tmp/fashion-mnist with 12 train and 3 test random 28x28 images; returns (root, train arrays, test arrays)."""
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12, dtype=np.uint8)
    train[0][0, 0, 0], train[0][0, 0, 1] = 0, 255  # both ends of the pixel range
    test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([9, 0, 3], np.uint8)
    write_fashion(tmp_path, train, test)
    return tmp_path, train, test


def expected_item(pixels):
    """Reference conversion, written independently of lab/datasets.py: scale, pad with -1, repeat the gray channel."""
    x = np.full((32, 32), -1.0, np.float32)
    x[2:30, 2:30] = pixels.astype(np.float32) / 127.5 - 1
    return torch.from_numpy(np.stack([x] * 3))


@settings(max_examples=25)
@given(n=st.integers(0, 5), seed=st.integers(0, 2**16), train=st.booleans())
def test_fashion_idx_round_trip(n, seed, train):
    """Any uint8 images and labels written in the idx format read back exactly, and each item is the
    documented conversion of its image."""
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        write_fashion(Path(d), xy if train else None, None if train else xy)
        images, labels = load_fashion_mnist(d, train=train, download=False)
        ds = get_dataset("fashion-mnist", d, train=train, download=False)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(images, torch.from_numpy(xy[0])) and labels.tolist() == xy[1].tolist()
    assert len(ds) == n
    for i in range(n):
        x, y = ds[i]
        assert torch.equal(x, expected_item(xy[0][i])) and y.item() == xy[1][i]


def test_fashion_items(fashion_dir):
    root, (x, y), _ = fashion_dir
    ds = get_dataset("fashion-mnist", str(root), resolution=32, download=False)
    assert len(ds) == 12 and ds.num_classes == 10 and ds.resolution == 32
    assert ds.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                          "Ankle boot"]  # the dataset's label order (github.com/zalandoresearch/fashion-mnist)
    img, label = ds[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and label.dtype == torch.int64
    assert img[:, 2, 2].tolist() == [-1, -1, -1] and img[:, 2, 3].tolist() == [1, 1, 1]  # pixels 0 and 255
    assert len(get_dataset("fashion-mnist", str(root), train=False, download=False)) == 3
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 3, 32, 32) and yb.tolist() == y[:8].tolist() and yb.dtype == torch.int64


def test_fashion_hflip(fashion_dir):
    check_hflip(get_dataset("fashion-mnist", str(fashion_dir[0]), hflip=True, download=False), 3)


@pytest.mark.parametrize("which, content, needle", [
    ("images", np.array([2049, 2, 28, 28], ">u4").tobytes(), "magic number 2049, expected 2051"),
    ("labels", np.array([2051, 2], ">u4").tobytes() + b"\0\0", "magic number 2051, expected 2049"),
    ("images", np.array([2051, 2], ">u4").tobytes(), "truncated idx header"),
    ("images", np.array([2051, 2, 28, 28], ">u4").tobytes() + bytes(28 * 28), "truncated"),
    ("labels", np.array([2049, 3], ">u4").tobytes() + b"\1\2", "(3,) (3 bytes) but 2 bytes"),
    ("labels", b"", "magic number None"),
], ids=["images-magic", "labels-magic", "short-header", "short-images", "short-labels", "empty"])
def test_malformed_idx_names_the_file(tmp_path, which, content, needle):
    folder = write_fashion(tmp_path, (np.zeros((2, 28, 28)), np.zeros(2)))
    bad = folder / f"train-{which}-idx{3 if which == 'images' else 1}-ubyte.gz"
    bad.write_bytes(gzip.compress(content))
    with pytest.raises(DataError, match=str(bad)) as e:
        load_fashion_mnist(tmp_path, download=False)
    assert needle in str(e.value) and FASHION_MNIST_URL in str(e.value)


def test_truncated_or_garbage_gzip_names_the_file(tmp_path):
    folder = write_fashion(tmp_path, (np.ones((2, 28, 28)), np.zeros(2)))
    bad = folder / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-20])  # cut inside the deflate stream
    with pytest.raises(DataError, match=f"{bad} is not a readable .gz file"):
        load_fashion_mnist(tmp_path, download=False)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=f"{bad} is not a readable .gz file"):
        load_fashion_mnist(tmp_path, download=False)


def test_fashion_counts_and_labels_are_checked(tmp_path):
    folder = write_fashion(tmp_path, (np.zeros((3, 28, 28)), np.zeros(2)))
    with pytest.raises(DataError, match="3, 28, 28.*2 labels"):
        load_fashion_mnist(tmp_path, download=False)
    write_fashion(tmp_path, (np.zeros((2, 32, 32)), np.zeros(2)))
    with pytest.raises(DataError, match="28x28"):
        load_fashion_mnist(tmp_path, download=False)
    write_fashion(tmp_path, (np.zeros((2, 28, 28)), np.array([3, 10])))
    with pytest.raises(DataError, match=f"{folder / 'train-labels-idx1-ubyte.gz'}: labels must be 0..9, found 10"):
        load_fashion_mnist(tmp_path, download=False)


def test_missing_fashion_message(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        get_dataset("fashion-mnist", str(tmp_path / "nowhere"), download=False)
    msg, folder = str(e.value), tmp_path / "nowhere" / "fashion-mnist"
    assert "\n" not in msg
    for needle in (f"in {folder} (download disabled)", f"mkdir -p {folder} && cp ../shared/data/fashion-mnist/*.gz",
                   FASHION_MNIST_URL, "train-images-idx3-ubyte.gz", "--data-dir", "NANOBIGGAN_DATA"):
        assert needle in msg


def point_fashion_download_at(monkeypatch, folder, md5s=None):
    """The downloader fetches FASHION_MNIST_URL + name; point it at a local folder (file:// URL)."""
    monkeypatch.setattr(dataset_files, "FASHION_MNIST_URL", folder.resolve().as_uri() + "/")
    monkeypatch.setattr(dataset_files, "FASHION_MNIST_MD5", md5s or {
        p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.glob("*.gz")})


def test_fashion_download_verifies_md5(fashion_dir, tmp_path, monkeypatch):
    root, (x, _), _ = fashion_dir
    mirror = root / "fashion-mnist"
    point_fashion_download_at(monkeypatch, mirror, {n: "0" * 32 for n in dataset_files.FASHION_MNIST_MD5})
    with pytest.raises(FileNotFoundError, match="download failed: checksum mismatch.*mkdir -p"):
        load_fashion_mnist(tmp_path / "fresh")
    assert not [p for p in (tmp_path / "fresh").rglob("*") if p.is_file()]  # no .part left behind
    point_fashion_download_at(monkeypatch, mirror)
    images, _ = load_fashion_mnist(tmp_path / "fresh")
    assert torch.equal(images, torch.from_numpy(x))
    assert sorted(p.name for p in (tmp_path / "fresh" / "fashion-mnist").iterdir()) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]  # the split asked for, nothing else
    monkeypatch.setattr(dataset_files, "FASHION_MNIST_URL", (tmp_path / "offline").as_uri() + "/")
    with pytest.raises(FileNotFoundError, match="download failed"):
        load_fashion_mnist(tmp_path / "fresh", train=False)


def test_get_dataset_fashion_resolution(fashion_dir):
    with pytest.raises(ValueError, match="32x32.*--dataset folder"):
        get_dataset("fashion-mnist", str(fashion_dir[0]), resolution=28, download=False)


# The real files. ../shared/data holds Debian's package of them, whose build rewrote each gzip header (file
# name dropped, mtime set to 2020) around the mirror's deflate stream. Putting the mirror's header back
# (file name, mtime of 2017-08-31, XFL 0, OS 3 = Unix) must give the mirror's md5, byte for byte.
MIRROR_MTIME = {"train": 1504176606, "t10k": 1504176627}


@needs_shared
@pytest.mark.parametrize("name", sorted(FASHION_MNIST_MD5))
def test_md5_constants_match_the_shared_files(name):
    raw = (SHARED / "fashion-mnist" / name).read_bytes()
    if hashlib.md5(raw).hexdigest() == FASHION_MNIST_MD5[name]:
        return  # a verbatim copy of the mirror's file
    assert raw[:4] == b"\x1f\x8b\x08\x00", "expected a gzip header without optional fields"
    mtime = MIRROR_MTIME[name.split("-")[0]].to_bytes(4, "little")
    mirror = b"\x1f\x8b\x08\x08" + mtime + b"\x00\x03" + name.removesuffix(".gz").encode() + b"\0" + raw[10:]
    assert hashlib.md5(mirror).hexdigest() == FASHION_MNIST_MD5[name]


def read_idx_reference(path):
    """The files' pixels, read with nothing from lab/dataset_files.py: skip the 16-byte header of idx3, the 8 of
    idx1."""
    raw = bytearray(gzip.open(path).read())  # writable, so torch.from_numpy does not warn
    return np.frombuffer(raw, np.uint8, offset=16 if "idx3" in path.name else 8)


@pytest.fixture(scope="module")
def real_fashion():
    if not (SHARED / "fashion-mnist").is_dir():
        pytest.skip("needs ../shared/data/fashion-mnist")
    return {train: get_dataset("fashion-mnist", str(SHARED), train=train, download=False) for train in (True, False)}


@needs_shared
@pytest.mark.parametrize("train, n", [(True, 60_000), (False, 10_000)])
def test_real_fashion_sizes_and_classes(real_fashion, train, n):
    ds = real_fashion[train]
    assert len(ds) == n and ds.labels.dtype == torch.int64
    assert torch.bincount(ds.labels, minlength=10).tolist() == [n // 10] * 10  # balanced, labels 0..9 only


@needs_shared
@pytest.mark.parametrize("train", [True, False])
def test_real_fashion_items_are_the_padded_pixels(real_fashion, train):
    ds, split = real_fashion[train], "train" if train else "t10k"
    pixels = read_idx_reference(SHARED / "fashion-mnist" / f"{split}-images-idx3-ubyte.gz").reshape(-1, 28, 28)
    labels = read_idx_reference(SHARED / "fashion-mnist" / f"{split}-labels-idx1-ubyte.gz")
    for i in [0, 1, 2, len(ds) // 2, len(ds) - 1]:
        x, y = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64 and y == labels[i]
        assert -1 <= x.min() and x.max() <= 1
        assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # gray repeated to RGB
        centre = torch.from_numpy(pixels[i].astype(np.float32)) / 127.5 - 1
        assert torch.equal(x[0, 2:30, 2:30], centre)
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert (x[0][border] == -1).all() and border.sum() == 32 * 32 - 28 * 28
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(pixels))  # every image, not only five


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


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    """PIL's convert("RGB") clips I;16 at 255 (a white image); ImageFolder maps 0..65535 onto 0..255, rounded."""
    (tmp_path / "only").mkdir()
    levels = np.tile(np.array([0, 257, 32896, 65535], dtype=np.uint16), (4, 1))  # = 0, 1, 128, 255 in 8 bits
    Image.fromarray(levels).save(tmp_path / "only" / "g16.png")
    assert Image.open(tmp_path / "only" / "g16.png").mode == "I;16"
    x, _ = ImageFolder(tmp_path, resolution=4)[0]  # 4x4 to 4x4: crop and resize change nothing
    expected = torch.tensor([0, 1, 128, 255], dtype=torch.float32) / 127.5 - 1
    torch.testing.assert_close(x, expected.expand(3, 4, 4), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode, array", [("I", np.arange(4, dtype=np.int32).reshape(2, 2) * 70000),
                                         ("F", np.linspace(0, 1, 4, dtype=np.float32).reshape(2, 2))])
def test_wide_pixel_modes_are_refused(tmp_path, mode, array):
    (tmp_path / "only").mkdir()
    Image.fromarray(array).save(tmp_path / "only" / "wide.png", format="TIFF")  # PIL reads content, not names
    assert Image.open(tmp_path / "only" / "wide.png").mode == mode
    with pytest.raises(DataError, match=f"wide.png: PIL mode {mode}"):
        ImageFolder(tmp_path, resolution=2)


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
    Image.new("RGB", (4, 4)).save(tmp_path / "cls" / "fine.png")
    (tmp_path / "cls" / "broken.png").write_bytes(b"not really a png")
    with pytest.raises(DataError, match="1 of 2 image files .* cannot be used: .*broken.png"):
        ImageFolder(tmp_path, resolution=8)  # found when the dataset is built, not when the file is drawn
    (tmp_path / "cls" / "broken.png").unlink()
    ds = ImageFolder(tmp_path, resolution=8)
    (tmp_path / "cls" / "fine.png").write_bytes(b"")  # damaged after the check: still one clear error
    with pytest.raises(DataError, match="fine.png"):
        ds[0]
    for bad in (0, -3, 8.0, None):
        with pytest.raises(ValueError, match="resolution"):
            ImageFolder(tmp_path, resolution=bad)


# --------------------------------------------------------------------------- the real-data stream (Batches)

@settings(max_examples=25)
@given(n=st.integers(4, 40), bs=st.integers(1, 5), world=st.integers(1, 3), start=st.integers(0, 12),
       seed=st.integers(0, 3))
def test_batches_shard_and_resume(n, bs, world, start, seed):
    ds = torch.utils.data.TensorDataset(torch.arange(n), torch.zeros(n, dtype=torch.long))
    if n < bs * world:
        with pytest.raises(ValueError, match="fewer than one batch"):
            Batches(ds, bs, seed, world=world)
        return
    rng = torch.get_rng_state()
    streams = [Batches(ds, bs, seed, rank=r, world=world) for r in range(world)]
    per_epoch = n // (bs * world)
    drawn = [[next(s)[0].tolist() for _ in range(start + 3)] for s in streams]
    assert torch.equal(rng, torch.get_rng_state())  # the loader never touches the global RNG
    assert all(len(b) == bs for rank in drawn for b in rank) and streams[0].drawn == start + 3
    for epoch in range(len(drawn[0]) // per_epoch):  # within an epoch no index is seen twice, on any rank
        seen = [i for rank in drawn for b in rank[epoch * per_epoch:(epoch + 1) * per_epoch] for i in b]
        assert len(seen) == len(set(seen))
    # A stream restarted after `start` batches continues exactly where the uninterrupted one went.
    resumed = [Batches(ds, bs, seed, rank=r, world=world, start=start) for r in range(world)]
    for r in range(world):
        assert [next(resumed[r])[0].tolist() for _ in range(3)] == drawn[r][start:]
