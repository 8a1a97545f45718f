"""Datasets: CIFAR-10 (the paper's App. C.2 benchmark), Fashion-MNIST (a CPU quick start) and any
class-per-folder image tree (ImageNet).

Every dataset yields the same item, so the trainer never asks which one it got:
    (image, label) with image float32 `(c h w)` = (3, R, R) in [-1, 1] (G ends in tanh, §3) and label int64.

Fashion-MNIST's 28x28 grayscale images become 32x32 RGB without resampling a pixel: each is padded by 2
pixels of background on every side (its background is black, 0, so the border is -1 after scaling), and
the gray channel is repeated 3 times. The model's 32-px architecture (G and D are RGB) is used unchanged.

An image folder is checked when it is built: every file's header is read (fast: no pixels), so an unreadable
file is named before training starts, not hours into it. 16-bit grayscale (PIL mode I;16) is scaled to 8 bits
(v * 255 / 65535, rounded), not clipped at 255 as PIL's convert("RGB") would; 32-bit and float images are refused.

ImageNet preprocessing follows the paper's setup (as in the authors' BigGAN-PyTorch): crop the
centre square of side min(H, W), then resize it to R x R. We resize with PIL's BICUBIC filter, which
is antialiased when shrinking (ImageNet photos are downscaled ~4x to 128 px). Random horizontal flips
are optional (`hflip=True`) and drawn from torch's RNG, which DataLoader seeds per worker.

`Batches` is the endless, resumable stream of real batches the trainer draws from. Reading and fetching the
files themselves is lab/dataset_files.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat
from PIL import Image
from torch.utils.data import Dataset

from nanobiggan.lab.dataset_files import (CIFAR10_CLASSES, DEFAULT_DATA_DIR, FASHION_MNIST_CLASSES, DataError,
                                          load_cifar10, load_fashion_mnist)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# PIL modes whose convert("RGB") keeps every value (8 bits per channel), and the 16-bit gray we scale ourselves.
RGB_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_signed_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the range of G's tanh output."""
    return images.float() / 127.5 - 1.0



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


class FashionMNIST(Dataset):
    """Fashion-MNIST held in memory as uint8 (n 1 32 32), already padded (61 MB for the train split);
    converted to float RGB per item. See the module docstring for the 28 -> 32 px conversion."""

    def __init__(self, data_dir=DEFAULT_DATA_DIR, train: bool = True, hflip: bool = False, download: bool = True):
        images, self.labels = load_fashion_mnist(data_dir, train=train, download=download)
        # 2 px of background (0, black) on every side: 28x28 -> 32x32, no pixel resampled
        self.images = torch.nn.functional.pad(rearrange(images, "n h w -> n 1 h w"), (2, 2, 2, 2), value=0)
        self.hflip, self.classes, self.resolution = hflip, list(FASHION_MNIST_CLASSES), 32
        self.num_classes = len(self.classes)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = repeat(to_signed_float(self.images[i]), "1 h w -> c h w", c=3).contiguous()  # gray -> RGB, a copy
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


def to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit RGB image: 16-bit gray scaled to 8 bits (rounded), every other readable mode by PIL."""
    if img.mode in GRAY16_MODES:
        v = np.asarray(img).astype(np.uint32)
        img = Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8))
    return img.convert("RGB")


def _unusable(path: Path) -> str | None:
    """Why an image file cannot be used (from its header alone), or None."""
    try:
        with Image.open(path) as img:  # lazy: reads the header, not the pixels
            mode = img.mode
    except (OSError, ValueError) as e:  # UnidentifiedImageError (not an image, empty) is an OSError
        return f"{path}: {e}"
    if mode not in RGB_MODES + GRAY16_MODES:
        return f"{path}: PIL mode {mode} (32-bit or float pixels) cannot become 8-bit RGB without a choice of scale"
    return None


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
        bad = [why for path, _ in self.samples if (why := _unusable(path))]
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(f"{len(bad)} of {len(self.samples)} image files under {root} cannot be used: {bad[0]}"
                            f"{more}; delete them, or convert them to 8-bit RGB or grayscale")
        self.root, self.resolution, self.hflip, self.num_classes = root, resolution, hflip, len(self.classes)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                img = center_crop_resize(to_rgb(img), self.resolution)
        except OSError as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        x = to_signed_float(rearrange(torch.from_numpy(np.asarray(img).copy()), "h w c -> c h w"))
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, torch.tensor(label, dtype=torch.int64)


def get_dataset(name: str, data_dir: str | None = None, resolution: int | None = None, train: bool = True,
                hflip: bool = False, download: bool = True) -> Dataset:
    """'cifar10' (data_dir holds cifar-10-batches-py/), 'fashion-mnist' (data_dir holds fashion-mnist/) or
    'folder' (data_dir is the image folder itself; a folder is one split, so `train` and `download` only
    concern the other two)."""
    if name in ("cifar10", "fashion-mnist"):
        if resolution not in (None, 32):
            raise ValueError(f"{name} images are used at 32x32, got resolution={resolution}: use a 32-px config "
                             f"or --dataset folder for other sizes")
        cls = CIFAR10 if name == "cifar10" else FashionMNIST
        return cls(data_dir or DEFAULT_DATA_DIR, train=train, hflip=hflip, download=download)
    if name == "folder":
        if data_dir is None or resolution is None:
            raise ValueError("dataset 'folder' needs --data-dir DIR (one subfolder per class) and a resolution")
        return ImageFolder(data_dir, resolution, hflip=hflip)
    raise ValueError(f"unknown dataset {name!r}: choose cifar10, fashion-mnist or folder (with --data-dir DIR)")


class Batches:
    """Endless, resumable stream of real (x, y) batches. Epoch e is a permutation seeded by (seed, e), split
    across ranks as DistributedSampler does, so batch number b is the same whether or not the run was
    interrupted before it (`start` = batches already drawn). A DataLoader with `workers` processes reads
    ahead; with workers=0 (the default for in-memory CIFAR-10) everything stays in this process."""

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0,
                 workers: int = 0, pin_memory: bool = False):
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.per_epoch = len(dataset) // (batch_size * world)
        if self.per_epoch == 0:
            raise ValueError(f"dataset has {len(dataset)} images, fewer than one batch of {batch_size * world}")
        self.drawn = start
        # The loader gets its own generator so making it never consumes the global RNG (bit-exact resume).
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=self._sampler(start), num_workers=workers,
                                             pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
        self._it = iter(loader)

    def _sampler(self, b: int):
        order = None
        while True:
            epoch, i = divmod(b, self.per_epoch)
            if order is None or order[0] != epoch:
                g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                order = (epoch, torch.randperm(len(self.dataset), generator=g)[self.rank::self.world])
            yield order[1][i * self.batch_size:(i + 1) * self.batch_size].tolist()
            b += 1

    def __next__(self):
        x, y = next(self._it)
        self.drawn += 1
        return x, y


def batches_for(trainer, dataset, start: int = 0, workers: int = 0) -> Batches:
    """The real-data stream a nanobiggan.trainer.Trainer consumes: its micro-batch size per device, its rank's shard."""
    return Batches(dataset, trainer.micro, trainer.cfg.seed, trainer.rank, trainer.world, start,
                   workers=workers, pin_memory=trainer.device.type == "cuda")
