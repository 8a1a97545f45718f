"""Pixels and PNG files: G's [-1, 1] floats to uint8, and image grids written as one PNG.

One quantization for everything that turns G's output into pixels (a saved sheet, the Inception network's
input, the class-accuracy classifier's input): u = clamp(floor(x · 127.5 + 128), 0, 255), i.e. (x + 1) · 127.5
rounded half up, as the TF FID code and StyleGAN's metrics do. So a PNG holds exactly the pixels that were scored.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from PIL import Image, ImageDraw, ImageFont

from nanobiggan.lab.files import atomic_write


def to_uint8(images) -> torch.Tensor:
    """Images (n c h w), c = 1 or 3, float in [-1, 1] (G's tanh output) or uint8 -> uint8 (n 3 h w).

    Floats become floor(x · 127.5 + 128) clamped to [0, 255] ((x + 1) · 127.5 rounded half up); uint8 passes
    through; one gray channel becomes three. NaN/inf is refused: a diverged G has no pixels worth keeping.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, c, h, w) with c = 1 or 3, e.g. G(z, y); got {tuple(x.shape)}")
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN/inf: the generator diverged; no picture or metric is meaningful")
        x = x.detach().cpu().to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16 -> fp32; fp64 stays
        x = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # .to(uint8) truncates: a floor, as x >= 0 here
    elif x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 in [0, 255] or float in [-1, 1], got {x.dtype}")
    return repeat(x, "n 1 h w -> n 3 h w") if x.shape[1] == 1 else x


def check_png_path(path, what: str = "save_grid") -> Path:
    """`path` as a Path if it ends in .png (the only format written here), else a ValueError."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{what} writes PNG files: give a path ending in .png, got {str(path)!r}")
    return path


def grid(images: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """(n 3 h w) images in [-1, 1] (or uint8) as one (H W 3) uint8 sheet: rows of `nrow` images, `padding`
    black pixels around and between them."""
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow (images per row) must be an int >= 1, got {nrow!r}")
    x = rearrange(to_uint8(images), "n c h w -> n h w c")
    n = x.shape[0]
    if n == 0:
        raise ValueError("save_grid got 0 images")
    rows, cols = -(-n // nrow), min(nrow, n)
    x = torch.cat([x, x.new_zeros(rows * cols - n, *x.shape[1:])])  # empty cells of the last row
    x = F.pad(x, (0, 0, 0, padding, 0, padding))  # pad bottom and right of every image: (n h+p w+p 3)
    sheet = rearrange(x, "(r c) h w ch -> (r h) (c w) ch", r=rows, c=cols)
    return F.pad(sheet, (0, 0, padding, 0, padding, 0))  # ... and the top/left border of the sheet


def save_grid(images: torch.Tensor, path, nrow: int, padding: int = 2, scale: int = 1,
              row_labels=None, col_labels=None) -> Path:
    """Write (n 3 h w) images in [-1, 1] as one PNG (`grid`). Atomic (files.atomic_write): a reader never sees
    half a PNG.

    For figures a person reads: `scale` enlarges every pixel to scale×scale (nearest neighbour, so no pixel is
    invented), and `row_labels` / `col_labels` (one string per row / column) are written in a white margin
    left of / above the sheet. Without them the PNG holds exactly the sheet's pixels (what sample.py writes)."""
    path = check_png_path(path)
    sheet = grid(images, nrow, padding)
    image = Image.fromarray(sheet.numpy())
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1 (pixels per image pixel), got {scale!r}")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    if row_labels is not None or col_labels is not None:
        n = len(images)
        image = _labelled(image, row_labels, col_labels, rows=-(-n // nrow), cols=min(nrow, n),
                          cell=(images.shape[-2] + padding) * scale, padding=padding * scale)
    atomic_write(path, lambda fh: image.save(fh, format="PNG"))
    return path


def _labelled(image: Image.Image, row_labels, col_labels, rows: int, cols: int, cell: int, padding: int):
    """The sheet on a white canvas with a left margin of row labels and a top margin of column labels, each
    centred on its row / column of cells (`cell` pixels apart, after a `padding`-pixel border)."""
    for labels, count, name, what in ((row_labels, rows, "row_labels", "row"), (col_labels, cols, "col_labels", "column")):
        if labels is not None and len(labels) != count:
            raise ValueError(f"{name} has {len(labels)} labels for {count} {what}s: give one per {what}")
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(image).textbbox
    left = 6 + max((measure((0, 0), str(t), font=font)[2] for t in row_labels), default=0) if row_labels else 0
    top = 6 + max(measure((0, 0), str(t), font=font)[3] for t in col_labels) if col_labels else 0
    canvas = Image.new("RGB", (image.width + left, image.height + top), "white")
    canvas.paste(image, (left, top))
    draw = ImageDraw.Draw(canvas)
    centre = lambda i: padding + i * cell + (cell - padding) // 2  # noqa: E731  middle of cell i
    for i, text in enumerate(row_labels or ()):
        draw.text((left - 3, top + centre(i)), str(text), fill="black", font=font, anchor="rm")
    for j, text in enumerate(col_labels or ()):
        draw.text((left + centre(j), top - 3), str(text), fill="black", font=font, anchor="md")
    return canvas
