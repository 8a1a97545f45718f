"""Datasets: CIFAR-10 (the paper's App. C.2 benchmark) and any class-per-folder image tree (ImageNet).

Both datasets yield the same item, so the trainer never asks which one it got:
    (image, label) with image float32 `(c h w)` = (3, R, R) in [-1, 1] (G ends in tanh, §3) and label int64.

ImageNet preprocessing follows the paper's setup (as in the authors' BigGAN-PyTorch): crop the
centre square of side min(H, W), then resize it to R x R. We resize with PIL's BICUBIC filter, which
is antialiased when shrinking (ImageNet photos are downscaled ~4x to 128 px). Random horizontal flips
are optional (`hflip=True`) and drawn from torch's RNG, which DataLoader seeds per worker.
"""

import hashlib
import os
import pickle
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch.utils.data import Dataset

DEFAULT_DATA_DIR = os.environ.get("NANOBIGGAN_DATA", "./data")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(ValueError):
    """The data exists but cannot be used (corrupt batch file, folder without classes or images)."""


def to_signed_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the range of G's tanh output."""
    return images.float() / 127.5 - 1.0


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


def _download_cifar10(data_dir: Path) -> None:
    """Fetch the official archive, check its md5, extract it into data_dir. Raises OSError/DataError."""
    data_dir.mkdir(parents=True, exist_ok=True)
    archive = data_dir / "cifar-10-python.tar.gz"
    partial = archive.with_name(archive.name + ".part")
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(CIFAR10_URL, timeout=20) as resp, open(partial, "wb") as out:
            while chunk := resp.read(1 << 20):
                md5.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != CIFAR10_MD5:
            raise DataError(f"checksum mismatch for {CIFAR10_URL}: md5 {md5.hexdigest()}, expected {CIFAR10_MD5}")
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    _safe_extract(archive, data_dir)
    archive.unlink()


def _missing_message(folder: Path, data_dir: Path, why: str) -> str:
    return (f"CIFAR-10 not found: expected data_batch_1..5 and test_batch in {folder} ({why}). "
            f"Either download and extract the python-version archive {CIFAR10_URL} (md5 {CIFAR10_MD5}) "
            f"into {data_dir}, or on an offline machine run `python ../shared/data/prepare_cifar10.py {data_dir}` "
            f"(any copy of cifar-10-python.tar.gz extracted there also works). "
            f"Choose another folder with --data-dir DIR or the NANOBIGGAN_DATA environment variable.")


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


class CIFAR10(Dataset):
    """CIFAR-10 held in memory as uint8 (150 MB for the train split); converted to float per item."""

    def __init__(self, data_dir=DEFAULT_DATA_DIR, train: bool = True, hflip: bool = False, download: bool = True):
        self.images, self.labels = load_cifar10(data_dir, train=train, download=download)
        self.hflip, self.classes, self.resolution = hflip, list(CIFAR10_CLASSES), 32
        self.num_classes = len(self.classes)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = to_signed_float(self.images[i])  # (c h w)
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


# --------------------------------------------------------------------------- image folders

def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Crop the centred min(H, W) square, then resize it to resolution x resolution (bicubic)."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((resolution, resolution), Image.Resampling.BICUBIC)


class ImageFolder(Dataset):
    """Any `root/<class>/<...>/<image>` tree (ImageNet layout); classes are the sorted subfolder names."""

    def __init__(self, root, resolution: int, hflip: bool = False):
        root = Path(root).expanduser()
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int (e.g. 128), got {resolution!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist: pass --data-dir DIR with one "
                                    f"subfolder of images per class (DIR/<class>/<image>.jpg)")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise DataError(f"{root} has no class subfolders: put images in DIR/<class>/<image>.jpg "
                            f"(one subfolder per class, even if there is only one class)")
        self.samples = [(p, label) for label, c in enumerate(self.classes) for p in sorted((root / c).rglob("*"))
                        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        if not self.samples:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under the class folders of {root}")
        self.root, self.resolution, self.hflip, self.num_classes = root, resolution, hflip, len(self.classes)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                img = center_crop_resize(img.convert("RGB"), self.resolution)
        except OSError as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        x = to_signed_float(rearrange(torch.from_numpy(np.asarray(img).copy()), "h w c -> c h w"))
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, torch.tensor(label, dtype=torch.int64)


def get_dataset(name: str, data_dir: str | None = None, resolution: int | None = None, train: bool = True,
                hflip: bool = False, download: bool = True) -> Dataset:
    """'cifar10' (data_dir holds cifar-10-batches-py/) or 'folder' (data_dir is the image folder itself;
    a folder is one split, so `train` and `download` only concern CIFAR-10)."""
    if name == "cifar10":
        if resolution not in (None, 32):
            raise ValueError(f"CIFAR-10 images are 32x32, got resolution={resolution}: use a 32-px config "
                             f"or --dataset folder for other sizes")
        return CIFAR10(data_dir or DEFAULT_DATA_DIR, train=train, hflip=hflip, download=download)
    if name == "folder":
        if data_dir is None or resolution is None:
            raise ValueError("dataset 'folder' needs --data-dir DIR (one subfolder per class) and a resolution")
        return ImageFolder(data_dir, resolution, hflip=hflip)
    raise ValueError(f"unknown dataset {name!r}: choose cifar10 or folder (with --data-dir DIR)")
