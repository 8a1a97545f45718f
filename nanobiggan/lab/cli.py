"""What the command lines share: the device they run on.

Tutorial: tutorials/10_scaling_up.md
"""
from __future__ import annotations

import torch


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' (CUDA, then Apple's MPS, then the CPU), 'cpu', 'cuda' (this process's GPU under torchrun: its
    LOCAL_RANK) or 'mps'; a ValueError that says what to pass instead for anything unavailable or unknown."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name not in ("cpu", "mps"):
        raise ValueError(f"--device {name!r}: choose auto, cpu, cuda or mps")
    return torch.device(name)
