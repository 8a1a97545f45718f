"""nanobiggan: BigGAN and BigGAN-deep (Brock et al. 2018, arXiv 1809.11096), one file per concept.

    from nanobiggan import Generator, Discriminator, get_config
    cfg = get_config("cifar10")
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(z, y)            # (n 3 R R) in [-1, 1]
    logits = D(x, y)       # (n,)
"""
import importlib

_PUBLIC = {"Config": "config", "get_config": "config", "Generator": "generator", "Discriminator": "discriminator"}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    # Imported on first use, so `python -m nanobiggan.config` runs the module once, not twice.
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"nanobiggan.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'nanobiggan' has no attribute {name!r}")
