"""Every preset with its parameter counts beside the paper's (App. B): `python train.py --presets`.

Tutorial: tutorials/05_building_models.md
"""
from __future__ import annotations

import torch

from nanobiggan.config import PRESETS, Config, get_config
from nanobiggan.discriminator import Discriminator
from nanobiggan.generator import Generator

# Parameter counts reported by the paper (App. B / Table 4 caption and §5.1), in millions.
PAPER_PARAMS = {"biggan-128": (70.4, 88.0), "biggan-deep-128": (50.4, 34.6)}


def count_params(cfg: Config) -> tuple[int, int]:
    """(G, D) parameter counts, built on the meta device: no memory, no time, even at 512x512."""
    with torch.device("meta"):
        g, d = Generator(cfg), Discriminator(cfg)
    return sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())


def presets_table(names=None) -> str:
    """One line per preset: resolution, G and D parameters (the paper's where it reports them), z, widths."""
    lines = [f"{'preset':18} {'res':>4} {'G params':>10} {'D params':>10}  paper (G/D)   z  chunks  G widths"]
    for name in names or PRESETS:
        cfg = get_config(name)
        g, d = count_params(cfg)
        paper = PAPER_PARAMS.get(name)
        ref = f"{paper[0]:.1f}M/{paper[1]:.1f}M" if paper else "-"
        lines.append(f"{name:18} {cfg.resolution:4} {g / 1e6:9.2f}M {d / 1e6:9.2f}M  {ref:12} {cfg.z_dim:3} "
                     f"{cfg.z_chunks:5}   {'-'.join(str(w) for w in cfg.g_widths)}")
    return "\n".join(lines)
