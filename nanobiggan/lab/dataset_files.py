"""The dataset files on disk: CIFAR-10's python batches and Fashion-MNIST's idx files, read safely, and
downloaded (md5-checked, atomically) when missing.

Each loader returns a split as uint8 images and int64 labels, exactly the files' values; turning them into
the (image, label) items the trainer reads is lab/datasets.py's job. Every failure names the file and says
how to prepare it again, offline included.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
import tarfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from nanobiggan.lab.files import atomic_write, undo_new_dirs

DEFAULT_DATA_DIR = os.environ.get("NANOBIGGAN_DATA", "./data")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The official mirror (http only: it is an S3 website) and the md5s of its .gz files, as torchvision checks them.
# Re-packaged copies (e.g. Debian's) may rewrite the gzip header, which changes the md5 but not one pixel, so
# files already on disk are checked by parsing them; the md5s guard what we download.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_FOLDER = "fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]


class DataError(ValueError):
    """The data exists but cannot be used (corrupt batch file, folder without classes or images)."""



# --------------------------------------------------------------------------- CIFAR-10 files

# The batches are pickles by definition, so unpickle them with an allow-list: a numpy array and
# nothing else. A tampered file can then fail to load but cannot run code.
_SAFE_GLOBALS = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype")} | {
    (f"numpy.{core}.{mod}", fn) for core in ("core", "_core")
    for mod, fn in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (data uint8 (n 3072), labels (n)); DataError naming the file."""
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()  # encoding: the official files are py2 pickles
        data = np.asarray(batch.get(b"data", batch.get("data")))
        labels = np.asarray(batch.get(b"labels", batch.get("labels")), dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError) as e:
        raise DataError(f"{path} is not a CIFAR-10 python batch (corrupt or truncated: {e}); "
                        f"delete {path.parent} and prepare it again") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise DataError(f"{path}: expected b'data' uint8 (n, 3072) and n b'labels', got data "
                        f"{data.dtype} {data.shape} and {labels.shape[0] if labels.ndim else 0} labels")
    return data, labels


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar.gz, refusing members that would land outside `dest` (absolute or '..' paths, links)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            if m.name.startswith(("/", "\\")) or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                raise DataError(f"refusing to extract {archive}: unsafe member {m.name!r}")
        for m in members:
            target = dest / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def _download(url: str, dest: Path, expected_md5: str) -> None:
    """url -> dest, which appears only once its md5 matches: never half a file. Raises OSError/DataError."""
    def fetch(out):
        md5 = hashlib.md5()
        with urllib.request.urlopen(url, timeout=20) as resp:
            while chunk := resp.read(1 << 20):
                md5.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != expected_md5:
            raise DataError(f"checksum mismatch for {url}: md5 {md5.hexdigest()}, expected {expected_md5}")
    atomic_write(dest, fetch)


def _download_cifar10(data_dir: Path) -> None:
    """Fetch the official archive, check its md5, extract it into data_dir. Raises OSError/DataError."""
    archive = data_dir / "cifar-10-python.tar.gz"
    _download(CIFAR10_URL, archive, CIFAR10_MD5)
    _safe_extract(archive, data_dir)
    archive.unlink()


ELSEWHERE = "Choose another folder with --data-dir DIR or the NANOBIGGAN_DATA environment variable"  # both messages end so


def _missing_message(folder: Path, data_dir: Path, why: str) -> str:
    return (f"CIFAR-10 not found: expected data_batch_1..5 and test_batch in {folder} ({why}). "
            f"Either download and extract the python-version archive {CIFAR10_URL} (md5 {CIFAR10_MD5}) "
            f"into {data_dir}, or on an offline machine run `python ../shared/data/prepare_cifar10.py {data_dir}` "
            f"(any copy of cifar-10-python.tar.gz extracted there also works). {ELSEWHERE}.")


def load_cifar10(data_dir: str | os.PathLike = DEFAULT_DATA_DIR, train: bool = True,
                 download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 split -> (images uint8 (n 3 32 32), labels int64 (n)); downloads it once if missing."""
    data_dir = Path(data_dir).expanduser()
    folder = data_dir / CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        if not download:
            raise FileNotFoundError(_missing_message(folder, data_dir, "download disabled"))
        try:
            with undo_new_dirs(data_dir):  # a failed download leaves no empty --data-dir behind
                _download_cifar10(data_dir)
        except (OSError, DataError) as e:  # URLError and timeouts are OSErrors
            raise FileNotFoundError(_missing_message(folder, data_dir, f"download failed: {e}")) from None
        if not all((folder / n).is_file() for n in names):
            raise FileNotFoundError(_missing_message(folder, data_dir, "the archive lacked some batches"))
    batches = [_read_batch(folder / n) for n in names]
    data = np.concatenate([d for d, _ in batches])
    labels = np.concatenate([lab for _, lab in batches])
    if labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"labels in {folder} are outside 0..9")
    images = rearrange(torch.from_numpy(data), "n (c h w) -> n c h w", c=3, h=32)
    return images.contiguous(), torch.from_numpy(labels)


# --------------------------------------------------------------------------- Fashion-MNIST files

def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """One gzipped idx file of uint8 -> its array; DataError naming the file.

    The idx format: a big-endian header, magic 0x0000 0x08 (uint8) ndim, then ndim uint32 sizes, then the
    values row-major. Images have ndim 3 (magic 2051: n, 28, 28), labels ndim 1 (magic 2049: n).
    """
    fix = f"delete it and prepare {path.parent} again (the four .gz files from {FASHION_MNIST_URL})"
    try:
        with gzip.open(path, "rb") as fh:
            raw = bytearray(fh.read())  # bytearray: a writable buffer, so torch.from_numpy needs no copy
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut-off stream is an EOFError
        raise DataError(f"{path} is not a readable .gz file (corrupt or truncated: {e}); {fix}") from None
    magic, header = 0x0800 + ndim, 4 * (1 + ndim)
    got = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if got != magic:
        raise DataError(f"{path}: not an idx file of uint8 with {ndim} dimension(s) (magic number {got}, "
                        f"expected {magic}); {fix}")
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header ({len(raw)} bytes, expected {header}); {fix}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != math.prod(shape):
        raise DataError(f"{path}: the header says shape {shape} ({math.prod(shape)} bytes) but "
                        f"{len(raw) - header} bytes follow it (truncated?); {fix}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _fashion_missing_message(folder: Path, names: list[str], why: str) -> str:
    return (f"Fashion-MNIST not found: expected {', '.join(names)} in {folder} ({why}). Either download each "
            f"file from {FASHION_MNIST_URL}<name> (md5s: FASHION_MNIST_MD5 in nanobiggan/lab/dataset_files.py) "
            f"into {folder}, "
            f"or on an offline machine copy the four .gz files there: "
            f"`mkdir -p {folder} && cp ../shared/data/fashion-mnist/*.gz {folder}/`. "
            f"{ELSEWHERE} (it must hold {FASHION_MNIST_FOLDER}/).")


def load_fashion_mnist(data_dir: str | os.PathLike = DEFAULT_DATA_DIR, train: bool = True,
                       download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST split -> (images uint8 (n 28 28), labels int64 (n)), the files' values as they are;
    downloads the split's missing files once."""
    folder = Path(data_dir).expanduser() / FASHION_MNIST_FOLDER
    split = "train" if train else "t10k"
    names = [f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        if not download:
            raise FileNotFoundError(_fashion_missing_message(folder, names, "download disabled"))
        try:
            with undo_new_dirs(folder):  # a failed download leaves no empty --data-dir behind
                for n in missing:
                    _download(FASHION_MNIST_URL + n, folder / n, FASHION_MNIST_MD5[n])
        except (OSError, DataError) as e:  # URLError and timeouts are OSErrors
            raise FileNotFoundError(_fashion_missing_message(folder, names, f"download failed: {e}")) from None
    images, labels = _read_idx(folder / names[0], ndim=3), _read_idx(folder / names[1], ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{folder}: expected n 28x28 images and n labels, got images {images.shape} and "
                        f"{len(labels)} labels; prepare {folder} again from {FASHION_MNIST_URL}")
    if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):  # uint8: never below 0
        raise DataError(f"{folder / names[1]}: labels must be 0..9, found {labels.max()}; "
                        f"prepare {folder} again from {FASHION_MNIST_URL}")
    return torch.from_numpy(images), torch.from_numpy(labels).long()
