"""nanobiggan: BigGAN and BigGAN-deep (Brock et al., 2018), one file per concept."""
