"""nanobiggan: BigGAN and BigGAN-deep (Brock et al. 2018, arXiv 1809.11096), one file per concept.

    from nanobiggan import Generator, Discriminator, get_config
    cfg = get_config("cifar10")
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(z, y)            # (n 3 R R) in [-1, 1]
    logits = D(x, y)       # (n,)

The files of this folder are the paper; nanobiggan/lab/ is the bench around it (README: "The files").
"""
from nanobiggan.config import Config, get_config
from nanobiggan.discriminator import Discriminator
from nanobiggan.generator import Generator

__all__ = ["Config", "Discriminator", "Generator", "get_config"]
