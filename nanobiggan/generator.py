"""BigGAN and BigGAN-deep generators (Brock et al. 2018, §3 and App. B, Tables 4-9, Fig. 15-16).

BigGAN: the latent z is split into equal chunks ("skip-z", §3): chunk 0 feeds the first linear layer, and
chunk i is concatenated with the shared class embedding to condition every BatchNorm of block i. Each
stage is one residual up-block (Fig. 15b).

BigGAN-deep: the whole z is concatenated with the shared embedding and the same vector conditions every
block. Each stage has two bottleneck blocks (Fig. 16b: 1x1 reduce by 4, two 3x3, 1x1 expand); skips keep
the identity: channels are dropped (x[:, :out]) rather than mixed by a 1x1 conv.

Both: spectral norm on every conv/linear (§3: SN in G too), conditional BN with a shared embedding,
one self-attention block at `cfg.g_attn`, orthogonal init, tanh output in [-1, 1].

Table 1's ablation switches BigGAN's §3 additions off: cfg.hier=False feeds all of z to the first layer only
and conditions every block on the class alone; cfg.shared=False also replaces the shared embedding by SA-GAN's
per-layer class tables (the class then enters as a one-hot vector, `embed`).

Tutorial: tutorials/03_conditional_bn.md, tutorials/05_building_models.md
"""
from __future__ import annotations

from itertools import repeat

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from nanobiggan.attention import SelfAttention
from nanobiggan.cbn import ConditionalBatchNorm2d
from nanobiggan.config import Config
from nanobiggan.ortho import init_orthogonal_
from nanobiggan.resample import upsample, upsample_then_conv
from nanobiggan.spectral_norm import SNConv2d, SNLinear


class GBlock(nn.Module):
    """BigGAN residual up-block (Fig. 15b): CBN-ReLU-up-conv3x3-CBN-ReLU-conv3x3, + up-conv1x1 skip."""

    def __init__(self, cin: int, cout: int, cfg: Config):
        super().__init__()
        bn = dict(cond_dim=cfg.cond_dim, eps=cfg.bn_eps, sn_eps=cfg.sn_eps, sn_num_svs=cfg.sn_num_svs,
                  per_class=not cfg.shared)
        self.bn1, self.bn2 = ConditionalBatchNorm2d(cin, **bn), ConditionalBatchNorm2d(cout, **bn)
        self.conv1 = SNConv2d(cin, cout, 3, padding=1, **cfg.sn)
        self.conv2 = SNConv2d(cout, cout, 3, padding=1, **cfg.sn)
        self.conv_sc = SNConv2d(cin, cout, 1, **cfg.sn)

    def forward(self, x, c):
        h = upsample_then_conv(self.conv1, F.relu(self.bn1(x, c), inplace=True))  # fused: 4/9 the FLOPs (resample.py)
        h = self.conv2(F.relu(self.bn2(h, c), inplace=True))
        # A 1x1 conv commutes with nearest upsampling: convolve at low resolution, 4x fewer FLOPs.
        return h + upsample(self.conv_sc(x))


class DeepGBlock(nn.Module):
    """BigGAN-deep bottleneck block (Fig. 16b); upsamples only if `up` (the second block of a stage)."""

    def __init__(self, cin: int, cout: int, up: bool, cfg: Config):
        super().__init__()
        hid, self.cout, self.up = cin // 4, cout, up
        bn = dict(cond_dim=cfg.cond_dim, eps=cfg.bn_eps, sn_eps=cfg.sn_eps, sn_num_svs=cfg.sn_num_svs)
        self.bn1, self.bn2 = ConditionalBatchNorm2d(cin, **bn), ConditionalBatchNorm2d(hid, **bn)
        self.bn3, self.bn4 = ConditionalBatchNorm2d(hid, **bn), ConditionalBatchNorm2d(hid, **bn)
        self.conv1 = SNConv2d(cin, hid, 1, **cfg.sn)
        self.conv2 = SNConv2d(hid, hid, 3, padding=1, **cfg.sn)
        self.conv3 = SNConv2d(hid, hid, 3, padding=1, **cfg.sn)
        self.conv4 = SNConv2d(hid, cout, 1, **cfg.sn)

    def forward(self, x, c):
        h = self.conv1(F.relu(self.bn1(x, c), inplace=True))
        h = F.relu(self.bn2(h, c), inplace=True)
        x = x[:, : self.cout]  # identity-preserving skip: drop channels, no 1x1 conv
        if self.up:
            h, x = upsample_then_conv(self.conv2, h), upsample(x)
        else:
            h = self.conv2(h)
        h = self.conv3(F.relu(self.bn3(h, c), inplace=True))
        h = self.conv4(F.relu(self.bn4(h, c), inplace=True))
        return h + x


class Generator(nn.Module):
    """G(z, y) -> images (n 3 R R) in [-1, 1]; z (n cfg.z_dim), y (n,) class ids."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, w = cfg, cfg.g_widths
        # no SN, no ortho reg (§3); shared=False: none, the class enters each layer's own tables one-hot
        self.shared = nn.Embedding(cfg.n_classes, cfg.shared_dim) if cfg.shared else None
        lin_in = cfg.z_dim + cfg.shared_dim if cfg.deep else cfg.z_chunk_size
        self.linear = SNLinear(lin_in, 4 * 4 * w[0], **cfg.sn)
        self.blocks = nn.ModuleList()
        res = 4
        for i in range(cfg.n_g_stages):
            res *= 2
            if cfg.deep:
                self.blocks.append(DeepGBlock(w[i], w[i], up=False, cfg=cfg))
                self.blocks.append(DeepGBlock(w[i], w[i + 1], up=True, cfg=cfg))
            else:
                self.blocks.append(GBlock(w[i], w[i + 1], cfg))
            if res == cfg.g_attn:
                self.blocks.append(SelfAttention(w[i + 1], sn_eps=cfg.sn_eps, sn_num_svs=cfg.sn_num_svs))
        self.out_bn = nn.BatchNorm2d(w[-1], eps=cfg.bn_eps)
        self.out_conv = SNConv2d(w[-1], 3, 3, padding=1, **cfg.sn)
        init_orthogonal_(self)
        if cfg.shared and cfg.shared_init_std > 0 and not self.shared.weight.is_meta:
            # An orthogonal (10 x 128) table has unit rows, 4.5x smaller than a 20-D z chunk, so z decides
            # the CBN conditioning until the embedding grows: ~100k steps in the paper, too slow on a CPU.
            nn.init.normal_(self.shared.weight, std=cfg.shared_init_std)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.synthesize(z, self.embed(y))

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """The class code e that conditions G: the shared embedding (n shared_dim), or with shared=False the
        one-hot class (n n_classes), which each layer's per-class tables read."""
        if self.shared is not None:
            return self.shared(y)
        return F.one_hot(y, self.cfg.n_classes).to(self.linear.weight.dtype)

    def synthesize(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """G from a class *embedding* e (`embed`): lets you interpolate between classes (Fig. 8)."""
        if self.cfg.deep:  # BigGAN-deep: the same [z, e] for every block
            c = torch.cat([z, e], 1)
            h, conds = self.linear(c), repeat(c)
        elif self.cfg.hier:  # BigGAN's skip-z: chunk 0 to the linear layer, chunk i+1 (with e) to block i
            zs = z.split(self.cfg.z_chunk_size, 1)
            h, conds = self.linear(zs[0]), iter([torch.cat([zi, e], 1) for zi in zs[1:]])
        else:  # Table 1 before '+Hier.': z enters at the bottom only, every block sees the class alone
            h, conds = self.linear(z), repeat(e)
        h = rearrange(h, "n (c h w) -> n c h w", h=4, w=4)
        for block in self.blocks:
            h = block(h) if isinstance(block, SelfAttention) else block(h, next(conds))
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h), inplace=True)))
