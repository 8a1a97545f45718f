"""Class-conditional BatchNorm fed by BigGAN's shared embedding (BigGAN §3 and App. B).

Every BN in G normalizes without its own affine parameters; instead a per-sample gain and bias are
linear projections of the conditioning vector c (the shared class embedding, concatenated with a z chunk
in BigGAN or the whole z in BigGAN-deep). The gain is centred at 1: out = BN(x)·(1 + W_g c) + W_b c, so
zero projections reduce to plain BN (a missing "+1" zeroes every activation at init).

Tutorial: tutorials/03_conditional_bn.md
"""
import torch
import torch.nn as nn
from einops import rearrange

from .spectral_norm import SNLinear


class ConditionalBatchNorm2d(nn.Module):
    """BN(x) · (1 + gain(c)) + bias(c), with spectrally normalized projections gain, bias: cond_dim -> C.

    `bn` is a plain nn.BatchNorm2d(affine=False), so nn.SyncBatchNorm.convert_sync_batchnorm turns it
    into cross-replica BN under DDP (BigGAN App. C). eps = 1e-4 as in the reference runs.
    """

    def __init__(self, num_features, cond_dim, eps=1e-4, momentum=0.1, sn_eps=1e-6, sn_num_svs=1):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        # No bias terms: the gain and bias are *linear* projections of c (§3), as in BigGAN-PyTorch and the
        # TF-Hub release; a bias here would be a free class-independent affine that SN and ortho never touch.
        self.gain = SNLinear(cond_dim, num_features, bias=False, eps=sn_eps, num_svs=sn_num_svs)
        self.bias = SNLinear(cond_dim, num_features, bias=False, eps=sn_eps, num_svs=sn_num_svs)

    def forward(self, x, c):
        if x.ndim != 4 or c.ndim != 2 or x.shape[0] != c.shape[0]:
            raise ValueError(f"need x (n c h w) and c (n d) with the same n; got {tuple(x.shape)} and "
                             f"{tuple(c.shape)}")
        gain = rearrange(1 + self.gain(c), "n c -> n c 1 1")  # centred at 1: zero weights = identity
        bias = rearrange(self.bias(c), "n c -> n c 1 1")
        return torch.addcmul(bias, self.bn(x), gain)  # BN(x)·gain + bias in one pass: (n c h w)
