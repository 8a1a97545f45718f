"""Samples as files, for metric tools outside this project, and read back by ours.

    python sample.py --checkpoint runs/cifar10-cpu --n 50000 --export samples/ samples.npz
    python -m nanobiggan.evaluate --checkpoint runs/cifar10-cpu --images samples/     # the same FID as in memory

The images are the evaluation protocol's (lab/protocol.py `protocol_images`: EMA weights, standing statistics
at the truncation, class-balanced labels i mod C, z from the fixed seed), the exact uint8 pixels every score of
ours reads. Two formats, one pass over G:
- a folder of PNGs, `NNNNNN_C_name.png` (index, class id, class name): what torch-fidelity
  (`fidelity --input1 samples/`) and clean-fid (`fid.compute_fid("samples/", ...)`) read;
- one `.npz` with `arr_0` (n R R 3) uint8 images (NHWC) and `arr_1` (n) int64 labels: the layout of the
  TF IS/FID scripts' successors (OpenAI's guided-diffusion evaluator reads `arr_0`).
Both are written whole or not at all: the folder is filled under a temporary name and renamed when complete,
the .npz goes through files.atomic_write, streamed (a 50k x 512² export never sits in memory).
"""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from nanobiggan.lab.files import atomic_write, check_writable, fsync_dir

NAME = re.compile(r"^(\d+)_(\d+)_.*\.png$")  # NNNNNN_C_name.png
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def check_targets(paths) -> tuple[Path | None, Path | None]:
    """(folder, npz file) from --export's paths (a path ending in .npz is the file, any other the folder),
    refused before any sampling: two of a kind, an unwritable place, or a folder that already holds files
    (old images mixed with new ones would change every score computed from the folder)."""
    folder = npz = None
    for p in map(Path, paths):
        if p.suffix.lower() == ".npz":
            if npz is not None:
                raise ValueError(f"--export got two .npz files ({npz}, {p}): give one")
            npz = check_writable(p, "--export")
        else:
            if folder is not None:
                raise ValueError(f"--export got two folders ({folder}, {p}): give one (and/or one .npz file)")
            folder = check_writable(p, "--export", directory=True)
            if folder.is_dir() and any(folder.iterdir()):
                raise ValueError(f"--export {folder} already holds files: old images would mix with the new ones; "
                                 f"give a new or empty folder")
    return folder, npz


def _npy_header(fh, shape, dtype) -> None:
    """The .npy header of an array of `shape` and `dtype` whose C-order bytes follow."""
    np.lib.format.write_array_header_2_0(fh, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                              "shape": tuple(shape)})


def export(batches, n: int, resolution: int, classes: list[str], folder=None, npz=None) -> list[Path]:
    """Write `n` images from (uint8 (b 3 R R), labels (b)) batches into `folder` (PNGs) and/or `npz`.
    Returns the paths written."""
    if folder is None and npz is None:
        raise ValueError("export needs a folder, an .npz file, or both")
    labels = []

    def write(npz_fh=None):
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-")) if folder else None
        try:
            with contextlib.ExitStack() as stack:
                if npz_fh is not None:
                    zf = stack.enter_context(zipfile.ZipFile(npz_fh, "w", zipfile.ZIP_STORED, allowZip64=True))
                    arr = stack.enter_context(zf.open("arr_0.npy", "w", force_zip64=True))
                    _npy_header(arr, (n, resolution, resolution, 3), np.uint8)
                i = 0
                for images, y in batches:
                    x = rearrange(images, "b c h w -> b h w c").contiguous().numpy()  # (b R R 3) uint8
                    if npz_fh is not None:
                        arr.write(x.tobytes())
                    for img, c in zip(x, y.tolist()):
                        if tmp is not None:
                            Image.fromarray(img).save(tmp / f"{i:06d}_{c}_{classes[c]}.png")
                        i += 1
                    labels.append(y)
                if i != n:
                    raise RuntimeError(f"export expected {n} images, got {i}")
                if npz_fh is not None:
                    arr.close()  # arr_0 complete: zipfile writes one member at a time
                    with zf.open("arr_1.npy", "w") as lab:
                        _npy_header(lab, (n,), np.int64)
                        lab.write(torch.cat(labels).to(torch.int64).numpy().tobytes())
            if tmp is not None:
                if folder.is_dir():
                    folder.rmdir()  # empty (check_targets): the complete folder takes its place
                tmp.rename(folder)
                fsync_dir(folder.parent)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    if npz is not None:
        atomic_write(npz, write)
    else:
        write()
    return [p for p in (folder, npz) if p is not None]


def count_images(path) -> int:
    """How many images read_images(path) yields, without decoding them (an .npz: arr_0's header)."""
    path = _check_images_path(path)
    if path.is_dir():
        return len(_image_files(path))
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"--images {path} is not a readable .npz (a zip archive): re-export it") from None
    with zf:
        if "arr_0.npy" not in zf.namelist():
            raise ValueError(f"--images {path} has no arr_0 (sample.py --export writes images as arr_0)")
        with zf.open("arr_0.npy") as fh:
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            return read.get(np.lib.format.read_magic(fh), np.lib.format.read_array_header_2_0)(fh)[0][0]


def _check_images_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--images {path} does not exist: give a folder of images or an .npz "
                                f"(python sample.py --export {path} writes one)")
    if path.is_file() and path.suffix.lower() != ".npz":
        raise ValueError(f"--images {path}: give a folder of images or an .npz file")
    return path


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_images(path, batch_size: int = 50):
    """What `export` wrote (or any folder of images, or an .npz with arr_0 NHWC uint8) as (uint8 (b 3 R R),
    labels (b) or None) batches, in file order. Labels come from `NNNNNN_C_name.png` names or arr_1; a folder
    of other names, or an .npz without arr_1, gives None (no class accuracy)."""
    path = _check_images_path(path)
    if path.is_file():
        with np.load(path) as f:  # each f[key] reads the member again: once each
            x = f["arr_0"] if "arr_0" in f.files else None
            y = torch.from_numpy(f["arr_1"]) if "arr_1" in f.files else None
        if x is None or x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise ValueError(f"--images {path}: expected arr_0 as (n, h, w, 3) uint8 images (sample.py "
                             f"--export writes that layout)")
        for i in range(0, len(x), batch_size):
            yield (rearrange(torch.from_numpy(x[i:i + batch_size]), "b h w c -> b c h w"),
                   None if y is None else y[i:i + batch_size])
        return
    files = _image_files(path)
    labelled = all(NAME.match(p.name) for p in files)
    for i in range(0, len(files), batch_size):
        chunk = files[i:i + batch_size]
        x = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in chunk]))
        y = torch.tensor([int(NAME.match(p.name)[2]) for p in chunk]) if labelled else None
        yield rearrange(x, "b h w c -> b c h w"), y
