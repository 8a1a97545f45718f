"""Every scale of BigGAN in one dataclass (Brock et al. 2018, App. B Tables 4-9 and App. C).

A preset is a small `Config` instance; `get_config(name, **overrides)` returns a copy with fields
replaced by name (that is how train.py's CLI flags work). Values that follow from others (z chunks,
per-block channel widths, which blocks get attention) are computed here, never typed twice.

    python -m nanobiggan.config biggan-128      # architecture summary + parameter counts
    python -m nanobiggan.config --all           # every preset

Tutorial: tutorials/05_building_models.md, tutorials/10_scaling_up.md
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import torch

# Channel multipliers of ch per stage (App. B). G: stage i maps G_WIDTHS[i]*ch -> G_WIDTHS[i+1]*ch and
# doubles the resolution, starting from 4x4. D: stage i maps D_WIDTHS[i-1]*ch -> D_WIDTHS[i]*ch (stage 0
# takes RGB in BigGAN; BigGAN-deep first applies a 3x3 conv RGB -> D_WIDTHS[0]*ch and has one stage fewer).
G_WIDTHS = {
    32: (4, 4, 4, 4),
    64: (16, 16, 8, 4, 2),
    128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1),
    512: (16, 16, 8, 8, 4, 2, 1, 1),
}
D_WIDTHS = {
    32: (2, 2, 2, 2),
    64: (1, 2, 4, 8, 16),
    128: (1, 2, 4, 8, 16, 16),
    256: (1, 2, 4, 8, 8, 16, 16),
    512: (1, 1, 2, 4, 8, 8, 16, 16),
}
# BigGAN's D downsamples in every block but the last; at 32x32 it stops at 8x8 (SN-GAN's CIFAR D).
D_DOWN_32 = (True, True, False, False)


@dataclass
class Config:
    """All knobs of a run. Field names are the CLI flag names (`--g-lr 1e-4` sets g_lr)."""

    name: str = "cifar10"
    # --- data
    dataset: str = "cifar10"          # cifar10 | fashion-mnist | folder
    data_dir: str = ""                # "" -> $NANOBIGGAN_DATA or ./data
    resolution: int = 32
    n_classes: int = 10
    hflip: bool = False               # random horizontal flips of real images
    # --- architecture (App. B)
    deep: bool = False                # BigGAN-deep: bottleneck blocks, two per resolution, z concat at every block
    g_ch: int = 96                    # "ch" of G; widths are G_WIDTHS[resolution] * g_ch
    d_ch: int = 96
    z_dim: int = 80                   # BigGAN: split into (n_g_stages + 1) chunks; BigGAN-deep: used whole
    shared_dim: int = 128             # shared class embedding, projected to every CBN's gain and bias
    shared_init_std: float = 0.0      # 0: orthogonal init (App. C); s > 0: N(0, s^2) entries (CPU presets)
    g_attn: int = 16                  # resolution of G's self-attention block (0: none)
    d_attn: int = 16
    bn_eps: float = 1e-4              # App. C: BN and SN eps raised to 1e-4 in the reference runs
    sn_eps: float = 1e-4
    sn_num_svs: int = 1               # singular values tracked per layer (§4): 1 = σ0; 2+ enables ratio clamp
    # --- objective and regularisers
    loss: str = "hinge"               # hinge | ns | wasserstein
    ortho_beta: float = 1e-4          # Eq. 3 strength on G (0: off)
    ortho_full: bool = False          # Eq. 2 (||WW^T - I||^2) instead of Eq. 3
    r1_gamma: float = 0.0             # Eq. 5 (§4.2), 0: off
    sigma_clamp: float = 0.0          # Eq. 4 fixed sigma_clamp for G (0: off)
    sigma_clamp_ratio: float = 0.0    # Eq. 4 with sigma_clamp = r * sg(sigma1) (0: off; needs sn_num_svs >= 2)
    # --- optimisation (App. C)
    batch_size: int = 64              # per optimizer step, summed over devices and accumulation steps
    grad_accum: int = 1               # micro-batches per optimizer step
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    adam_eps: float = 1e-6
    d_steps: int = 2                  # D steps per G step
    ema_decay: float = 0.9999
    ema_start: int = 1000             # EMA starts averaging at this G step (before: a copy)
    precision: str = "auto"           # auto (bf16 on GPUs that support it, else fp32) | fp32 | bf16 | fp16
    # --- run bookkeeping
    steps: int = 100_000              # G steps
    seed: int = 0
    out_dir: str = "runs/cifar10"
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 1000
    keep_last: int = 3
    eval_every: int = 0               # FID during training (0: off)
    eval_n: int = 5000
    standing_batches: int = 100       # App. C.1 standing statistics at sampling time

    # ---- derived values
    @property
    def g_widths(self) -> tuple[int, ...]:
        return tuple(w * self.g_ch for w in G_WIDTHS[self.resolution])

    @property
    def d_widths(self) -> tuple[int, ...]:
        return tuple(w * self.d_ch for w in D_WIDTHS[self.resolution])

    @property
    def d_down(self) -> tuple[bool, ...]:
        n = len(self.d_widths) - (1 if self.deep else 0)
        if self.deep:
            return (True,) * n
        return D_DOWN_32 if self.resolution == 32 else (True,) * (n - 1) + (False,)

    @property
    def n_g_stages(self) -> int:
        return len(self.g_widths) - 1

    @property
    def z_chunks(self) -> int:
        """Hierarchical latent (§3 'skip-z'): one chunk for the first linear layer + one per G stage."""
        return 1 if self.deep else self.n_g_stages + 1

    @property
    def z_chunk_size(self) -> int:
        return self.z_dim // self.z_chunks

    @property
    def cond_dim(self) -> int:
        """Input size of every CBN projection: [z chunk, shared embedding] (deep: [z, embedding])."""
        return self.z_chunk_size + self.shared_dim if not self.deep else self.z_dim + self.shared_dim

    @property
    def sn(self) -> dict:
        """Keyword arguments of every spectrally normalized layer."""
        return dict(eps=self.sn_eps, num_svs=self.sn_num_svs)

    def validate(self) -> "Config":
        def bad(field_name, msg):
            raise ValueError(f"config field '{field_name}': {msg}")

        if self.resolution not in G_WIDTHS:
            bad("resolution", f"{self.resolution} has no architecture table; choose one of {sorted(G_WIDTHS)}")
        if self.z_dim % self.z_chunks:
            bad("z_dim", f"{self.z_dim} must split into {self.z_chunks} equal chunks (one per G stage + 1)")
        for name in ("g_attn", "d_attn"):
            res = getattr(self, name)
            if res and (res < 4 or res > self.resolution or res & (res - 1)):
                bad(name, f"{res} must be 0 (off) or a power of two between 8 and {self.resolution}")
        for name in ("g_ch", "d_ch", "batch_size", "grad_accum", "d_steps", "steps", "n_classes", "sn_num_svs"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            bad("batch_size", f"{self.batch_size} must be divisible by grad_accum={self.grad_accum}")
        if min(self.g_widths + self.d_widths) % 8:
            bad("g_ch/d_ch", "every channel width must be divisible by 8 (attention uses C/8)")
        if self.loss not in ("hinge", "ns", "wasserstein"):
            bad("loss", f"'{self.loss}' is not one of hinge, ns, wasserstein")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            bad("precision", f"'{self.precision}' is not one of auto, fp32, bf16, fp16")
        if self.dataset not in ("cifar10", "fashion-mnist", "folder"):
            bad("dataset", f"'{self.dataset}' is unknown: use cifar10, fashion-mnist, or folder with --data-dir DIR")
        if not 0.0 <= self.ema_decay < 1.0:
            bad("ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        if self.sigma_clamp_ratio and self.sn_num_svs < 2:
            bad("sigma_clamp_ratio", "needs sn_num_svs >= 2 (it clamps sigma0 to r * sigma1)")
        if self.eval_every < 0:
            bad("eval_every", f"must be >= 0 (0: no FID during training), got {self.eval_every}")
        if self.eval_n < 2:
            bad("eval_n", f"FID needs at least 2 samples (2048+ to be unbiased), got {self.eval_n}")
        if not self.shared_init_std >= 0:
            bad("shared_init_std", f"must be >= 0 (0: orthogonal init), got {self.shared_init_std}")
        for name in ("g_lr", "d_lr", "bn_eps", "sn_eps", "adam_eps"):
            if not getattr(self, name) > 0:
                bad(name, f"must be > 0, got {getattr(self, name)}")
        return self


def _imagenet(name: str, resolution: int, deep: bool = False, **kw) -> Config:
    """ImageNet presets: App. B architectures, App. C optimisation (Adam 0/0.999, D 2e-4 / G 5e-5 unless the
    preset says otherwise, 2 D steps)."""
    z_dim = 128 if deep else 20 * len(G_WIDTHS[resolution])      # 20-D chunks: 120 / 140 / 160
    base = dict(name=name, dataset="folder", resolution=resolution, n_classes=1000, deep=deep,
                g_ch=128 if deep else 96, d_ch=128 if deep else 96, z_dim=z_dim, g_attn=64, d_attn=64,
                batch_size=2048, g_lr=5e-5, d_lr=2e-4, d_steps=2, ema_decay=0.9999, ema_start=20_000,
                steps=200_000, hflip=True, out_dir=f"runs/{name}")
    return Config(**{**base, **kw})


PRESETS: dict[str, Config] = {
    # CIFAR-10: the best-proven public BigGAN recipe (PyTorch-StudioGAN's BigGAN CIFAR-10 config, published FID
    # 4.16): G 384 wide, D 192 wide, z 80 = 4 chunks of 20, attention at 16x16, batch 64, lr 2e-4 for both,
    # beta1 0.5, 5 D steps per G step, random horizontal flips, EMA 0.9999 from step 1000. Our one addition:
    # the paper's ortho reg 1e-4 (Eq. 3); --ortho-beta 0 gives StudioGAN's recipe exactly.
    "cifar10": Config(name="cifar10", beta1=0.5, d_steps=5, hflip=True, steps=100_000, out_dir="runs/cifar10"),
    # A CPU-sized model (G 64 wide, D 32 wide) that shows class-dependent samples within ~30 min on 2 cores.
    "cifar10-tiny": Config(name="cifar10-tiny", g_ch=16, d_ch=16, beta1=0.5, d_steps=2, ema_decay=0.999,
                           ema_start=200, steps=5000, sample_every=250, ckpt_every=250, log_every=10,
                           out_dir="runs/cifar10-tiny"),
    # The CPU quick start (Fashion-MNIST padded to 32x32 RGB, lab/datasets.py), tuned by an equal-CPU-time
    # sweep (bench_results/cpu-2026-12-01-sweep): G 64 wide, D 64 wide, batch 32, one D step at lr 4e-4 for both,
    # a N(0, 1) class embedding and a short EMA, so class rows are recognisable within ~15 minutes on 2 cores.
    "fashion-mnist": Config(name="fashion-mnist", dataset="fashion-mnist", g_ch=16, d_ch=32, batch_size=32,
                            d_steps=1, g_lr=4e-4, d_lr=4e-4, beta1=0.5, shared_init_std=1.0, ema_decay=0.99,
                            ema_start=100, steps=2000, sample_every=250, ckpt_every=250, log_every=10,
                            out_dir="runs/fashion-mnist"),
    "biggan-64": _imagenet("biggan-64", 64, g_attn=32, d_attn=32),
    "biggan-128": _imagenet("biggan-128", 128),
    # Table 5 (256): only G's non-local block moves to 128x128; D's stays at 64x64. Table 6 (512): both at 64.
    "biggan-256": _imagenet("biggan-256", 256, g_attn=128, d_attn=64),
    "biggan-512": _imagenet("biggan-512", 512),
    "biggan-deep-128": _imagenet("biggan-deep-128", 128, deep=True),
    # App. C: BigGAN-deep at 256 and 512 trains with lr 2.5e-5 for both D and G.
    "biggan-deep-256": _imagenet("biggan-deep-256", 256, deep=True, g_lr=2.5e-5, d_lr=2.5e-5),
    "biggan-deep-512": _imagenet("biggan-deep-512", 512, deep=True, g_lr=2.5e-5, d_lr=2.5e-5),
}


def get_config(name: str = "cifar10", **overrides) -> Config:
    """A validated copy of preset `name` with fields replaced by keyword (unknown field -> ValueError)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; valid fields: {', '.join(sorted(fields))}")
    return dataclasses.replace(PRESETS[name], **overrides).validate()


def from_saved(saved: dict, **overrides) -> Config:
    """The Config a checkpoint stored (`dataclasses.asdict`, "name" included), fields replaced by keyword."""
    fields = dict(saved)
    return get_config(fields.pop("name"), **{**fields, **overrides})


def count_params(cfg: Config) -> tuple[int, int]:
    """(G, D) parameter counts, built on the meta device: no memory, no time, even at 512x512."""
    from nanobiggan import Discriminator, Generator
    with torch.device("meta"):
        g, d = Generator(cfg), Discriminator(cfg)
    return sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())


# Parameter counts reported by the paper (App. B / Table 4 caption and §5.1), in millions.
PAPER_PARAMS = {"biggan-128": (70.4, 88.0), "biggan-deep-128": (50.4, 34.6)}


def main(argv: list[str]) -> None:
    names = list(PRESETS) if not argv or argv == ["--all"] else argv
    print(f"{'preset':18} {'res':>4} {'G params':>10} {'D params':>10}  paper (G/D)   z  chunks  G widths")
    for name in names:
        cfg = get_config(name)
        g, d = count_params(cfg)
        paper = PAPER_PARAMS.get(name)
        ref = f"{paper[0]:.1f}M/{paper[1]:.1f}M" if paper else "-"
        print(f"{name:18} {cfg.resolution:4} {g / 1e6:9.2f}M {d / 1e6:9.2f}M  {ref:12} {cfg.z_dim:3} "
              f"{cfg.z_chunks:5}   {'-'.join(str(w) for w in cfg.g_widths)}")


if __name__ == "__main__":
    main(sys.argv[1:])
