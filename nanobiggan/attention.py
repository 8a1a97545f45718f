"""SA-GAN's non-local (self-attention) block (Zhang et al. 2019, §3), as BigGAN uses it at one resolution.

Each output position attends over all positions, letting G and D model long-range structure that a stack
of 3×3 convs sees only late. Queries θ and keys φ live in C/8 channels, values g in C/2; φ and g are
2×2 max-pooled (4× fewer keys, same receptive field), as in BigGAN. The residual gain γ starts at 0, so
the block begins as the identity and the network learns how much non-local evidence to mix in.

Tutorial: tutorials/04_self_attention.md
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .spectral_norm import SNConv2d


class SelfAttention(nn.Module):
    """out = x + γ · o(g · softmax(θᵀφ)ᵀ); all four 1×1 convs spectrally normalized, no 1/√d scaling."""

    def __init__(self, channels, sn_eps=1e-6, sn_num_svs=1):
        super().__init__()
        if channels % 8 != 0:
            raise ValueError(f"SelfAttention needs channels divisible by 8 (θ, φ use C/8), got {channels}")
        self.theta = SNConv2d(channels, channels // 8, kernel_size=1, bias=False, eps=sn_eps, num_svs=sn_num_svs)
        self.phi = SNConv2d(channels, channels // 8, kernel_size=1, bias=False, eps=sn_eps, num_svs=sn_num_svs)
        self.g = SNConv2d(channels, channels // 2, kernel_size=1, bias=False, eps=sn_eps, num_svs=sn_num_svs)
        self.o = SNConv2d(channels // 2, channels, kernel_size=1, bias=False, eps=sn_eps, num_svs=sn_num_svs)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        if x.ndim != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"SelfAttention needs x (n c h w) with even h and w (φ, g are 2×2 max-pooled), "
                             f"got {tuple(x.shape)}")
        h, w = x.shape[2:]
        q = rearrange(self.theta(x), "n c h w -> n (h w) c")  # queries at full resolution
        k = rearrange(F.max_pool2d(self.phi(x), 2), "n c h w -> n (h w) c")  # keys, (h/2 w/2) positions
        v = rearrange(F.max_pool2d(self.g(x), 2), "n c h w -> n (h w) c")  # values
        # softmax over the pooled positions of θᵀφ (SA-GAN's unscaled logits). Written as two products rather
        # than F.scaled_dot_product_attention: with q/k (C/8) and v (C/2) of different widths SDPA falls back
        # to its math path, which upcasts bf16 to fp32 (measured: 13% of an H100 biggan-128 step); here
        # autocast keeps both products on bf16 tensor cores and the softmax in fp32.
        attn = torch.softmax(torch.einsum("nqc,nkc->nqk", q, k), dim=-1)  # (n (h w) (h/2 w/2))
        out = torch.einsum("nqk,nkc->nqc", attn, v)  # (n (h w) c/2)
        return x + self.gamma * self.o(rearrange(out, "n (h w) c -> n c h w", h=h, w=w))
