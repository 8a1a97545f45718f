"""BigGAN and BigGAN-deep projection discriminators (Brock et al. 2018, App. B; Miyato & Koyama 2018).

D(x, y) = linear(h) + <embed(y), h>,   h = sum over space of relu(features(x))     (projection D, global
sum pooling). Every conv, the linear layer and the class embedding are spectrally normalized.

BigGAN: one residual down-block per stage (Fig. 15c), pre-activation everywhere but the first block.
BigGAN-deep: a 3x3 input conv, then two bottleneck blocks per stage (Fig. 16c); the first of each stage
downsamples and widens, its skip *keeps* the input channels and concatenates 1x1-conv channels for the rest.

Tutorial: tutorials/05_building_models.md
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanobiggan.attention import SelfAttention
from nanobiggan.config import Config
from nanobiggan.ortho import init_orthogonal_
from nanobiggan.resample import conv_then_downsample, downsample
from nanobiggan.spectral_norm import SNConv2d, SNEmbedding, SNLinear


class DBlock(nn.Module):
    """BigGAN residual down-block (Fig. 15c): [ReLU]-conv3x3-ReLU-conv3x3-avgpool, + avgpool-conv1x1 skip."""

    def __init__(self, cin: int, cout: int, down: bool, preact: bool, cfg: Config):
        super().__init__()
        self.down, self.preact = down, preact
        self.conv1 = SNConv2d(cin, cout, 3, padding=1, **cfg.sn)
        self.conv2 = SNConv2d(cout, cout, 3, padding=1, **cfg.sn)
        self.conv_sc = SNConv2d(cin, cout, 1, **cfg.sn) if (cin != cout or down) else None

    def forward(self, x):
        h = F.relu(x) if self.preact else x
        h = F.relu(self.conv1(h), inplace=True)
        if self.down:
            h = conv_then_downsample(self.conv2, h)  # fused: 4/9 the FLOPs (resample.py)
            x = downsample(x)  # pooling commutes with the 1x1 skip conv: pool first, 4x cheaper
        else:
            h = self.conv2(h)
        return h + (self.conv_sc(x) if self.conv_sc is not None else x)


class DeepDBlock(nn.Module):
    """BigGAN-deep bottleneck down-block (Fig. 16c): 1x1 reduce by 4, two 3x3, pool, 1x1 expand."""

    def __init__(self, cin: int, cout: int, down: bool, cfg: Config):
        super().__init__()
        hid, self.down = cout // 4, down
        self.conv1 = SNConv2d(cin, hid, 1, **cfg.sn)
        self.conv2 = SNConv2d(hid, hid, 3, padding=1, **cfg.sn)
        self.conv3 = SNConv2d(hid, hid, 3, padding=1, **cfg.sn)
        self.conv4 = SNConv2d(hid, cout, 1, **cfg.sn)
        self.conv_sc = SNConv2d(cin, cout - cin, 1, **cfg.sn) if cout > cin else None

    def forward(self, x):
        h = self.conv1(F.relu(x))
        h = self.conv3(F.relu(self.conv2(F.relu(h, inplace=True)), inplace=True))
        h = F.relu(h, inplace=True)
        if self.down:
            h, x = downsample(h), downsample(x)
        if self.conv_sc is not None:  # identity-preserving skip: keep x, append learned channels
            x = torch.cat([x, self.conv_sc(x)], 1)
        return self.conv4(h) + x


class Discriminator(nn.Module):
    """D(x, y) -> logits (n,); x (n 3 R R) in [-1, 1], y (n,) class ids."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, w, down = cfg, cfg.d_widths, cfg.d_down
        self.blocks = nn.ModuleList()
        res = cfg.resolution
        if cfg.deep:
            self.blocks.append(SNConv2d(3, w[0], 3, padding=1, **cfg.sn))
            if res == cfg.d_attn:
                self.blocks.append(SelfAttention(w[0], sn_eps=cfg.sn_eps, sn_num_svs=cfg.sn_num_svs))
        for i, d in enumerate(down):
            res //= 2 if d else 1
            if cfg.deep:
                self.blocks.append(DeepDBlock(w[i], w[i + 1], down=True, cfg=cfg))
                self.blocks.append(DeepDBlock(w[i + 1], w[i + 1], down=False, cfg=cfg))
            else:
                self.blocks.append(DBlock(3 if i == 0 else w[i - 1], w[i], down=d, preact=i > 0, cfg=cfg))
            if res == cfg.d_attn and not any(isinstance(b, SelfAttention) for b in self.blocks):
                self.blocks.append(SelfAttention(w[i + 1] if cfg.deep else w[i], sn_eps=cfg.sn_eps, sn_num_svs=cfg.sn_num_svs))
        self.linear = SNLinear(w[-1], 1, **cfg.sn)
        self.embed = SNEmbedding(cfg.n_classes, w[-1], **cfg.sn)
        init_orthogonal_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n 3 R R) -> (n c): the pooled representation h that the projection head scores."""
        for block in self.blocks:
            x = block(x)
        return F.relu(x).sum(dim=(2, 3))  # global sum pooling

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)  # projection: <embed(y), h>
