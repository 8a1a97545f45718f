"""Class-conditional BatchNorm fed by BigGAN's shared embedding (BigGAN §3 and App. B).

Every BN in G normalizes without its own affine parameters; instead a per-sample gain and bias are
linear projections of the conditioning vector c (the shared class embedding, concatenated with a z chunk
in BigGAN or the whole z in BigGAN-deep). The gain is centred at 1: out = BN(x)·(1 + W_g c) + W_b c, so
zero projections reduce to plain BN (a missing "+1" zeroes every activation at init).

For BigGAN's Table 1 ablation, `per_class=True` gives SA-GAN's conditional BN instead: each layer its own
per-class gain and bias tables (`ClassTable`, no SN), read by the one-hot class vector.

Tutorial: tutorials/03_conditional_bn.md, tutorials/11_table1_ablation.md (ClassTable vs the shared embedding)
"""
import torch
import torch.nn as nn
from einops import rearrange

from .spectral_norm import SNLinear


class ClassTable(nn.Module):
    """SA-GAN's per-class table (num_features per class), zero at init (a gain of 1 + 0, a bias of 0). It maps a
    one-hot class vector c (n n_classes) to its row, c @ tableᵀ, so that interpolating between two classes'
    one-hot vectors interpolates their rows. The parameter is named `table`: ortho-reg skips it (class codes,
    not filters, as for the shared embedding)."""

    def __init__(self, n_classes: int, num_features: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_features, n_classes))

    def forward(self, c):  # (n n_classes) -> (n num_features)
        return c @ self.table.T


class ConditionalBatchNorm2d(nn.Module):
    """BN(x) · (1 + gain(c)) + bias(c), with spectrally normalized projections gain, bias: cond_dim -> C.

    `bn` is a plain nn.BatchNorm2d(affine=False), so nn.SyncBatchNorm.convert_sync_batchnorm turns it
    into cross-replica BN under DDP (BigGAN App. C). eps = 1e-4 as in the reference runs.
    """

    def __init__(self, num_features, cond_dim, eps=1e-4, momentum=0.1, sn_eps=1e-6, sn_num_svs=1,
                 per_class=False):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        if per_class:  # SA-GAN: c is the one-hot class (cond_dim = n_classes), a table row per class
            self.gain, self.bias = ClassTable(cond_dim, num_features), ClassTable(cond_dim, num_features)
            return
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
