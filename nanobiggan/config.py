"""Every scale of BigGAN in one dataclass (Brock et al. 2018, App. B Tables 4-9 and App. C).

A preset is a small `Config` instance; `get_config(name, **overrides)` returns a copy with fields
replaced by name (that is how train.py's flags work: every field is a flag, `--g-lr 1e-4` sets g_lr, and
`python train.py --help` lists them with their meaning). Values that follow from others (z chunks,
per-block channel widths, which resolutions can hold attention) are computed here, never typed twice.
`python train.py --presets` prints every preset with its parameter counts.

Tutorial: tutorials/05_building_models.md, tutorials/10_scaling_up.md,
tutorials/11_table1_ablation.md (shared, hier, ortho_beta)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

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
# The fields that decide the networks' shapes: a resumed run cannot change them (its weights would not fit).
ARCHITECTURE = ("resolution", "n_classes", "deep", "g_ch", "d_ch", "z_dim", "shared_dim", "shared", "hier", "g_attn",
                "d_attn", "sn_num_svs")
MAX_SEED = 2**32 - 1  # numpy's limit; the data order multiplies the seed, which must stay within int64


def knob(default, help: str):
    """A Config field with its meaning (and unit): the `--help` text of its train.py flag."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass
class Config:
    """All knobs of a run. Field names are the flag names of train.py (`--g-lr 1e-4` sets g_lr)."""

    name: str = knob("cifar10", "the preset these values started from")
    # --- data
    dataset: str = knob("cifar10", "cifar10 | fashion-mnist | folder (one subfolder of images per class, --data-dir)")
    data_dir: str = knob("", "folder holding cifar-10-batches-py/ or fashion-mnist/, or the image folder itself; "
                             "'' = $NANOBIGGAN_DATA or ./data")
    resolution: int = knob(32, "image side in pixels: 32, 64, 128, 256 or 512 (App. B's architectures)")
    n_classes: int = knob(10, "number of classes (an image folder sets it from its subfolders)")
    hflip: bool = knob(False, "random horizontal flips of the real images (true/false)")
    # --- architecture (App. B)
    deep: bool = knob(False, "BigGAN-deep: bottleneck blocks, two per resolution, [z, class embedding] to every block")
    g_ch: int = knob(96, "G's width ch: the channels of G's stages are App. B's multipliers times ch")
    d_ch: int = knob(96, "D's width ch: the channels of D's stages are App. B's multipliers times ch")
    z_dim: int = knob(80, "latent size; BigGAN splits it into one chunk per G stage + 1 (§3, 'skip-z'), "
                          "BigGAN-deep uses it whole")
    shared_dim: int = knob(128, "size of the shared class embedding every conditional BN projects (§3)")
    shared: bool = knob(True, "one shared class embedding projected by every conditional BN (§3); false: each "
                              "conditional BN has its own per-class gain and bias tables (SA-GAN; Table 1's "
                              "rows before '+Shared')")
    hier: bool = knob(True, "hierarchical latent, 'skip-z' (§3): a chunk of z to the first layer and one to each "
                            "G stage; false: all of z feeds the first layer only (Table 1's rows before '+Hier.')")
    shared_init_std: float = knob(0.0, "0: orthogonal class embedding (App. C); s > 0: N(0, s^2) entries")
    g_attn: int = knob(16, "resolution in pixels of G's self-attention block, one of its stages' (8 ... "
                           "resolution); 0: none")
    d_attn: int = knob(16, "resolution in pixels of D's self-attention block, one of its stages'; 0: none")
    bn_eps: float = knob(1e-4, "BatchNorm epsilon (App. C raises it to 1e-4)")
    sn_eps: float = knob(1e-4, "spectral norm epsilon (App. C raises it to 1e-4)")
    sn_num_svs: int = knob(1, "singular values tracked per SN layer (§4): 1 = σ0; 2+ allows --sigma-clamp-ratio")
    # --- objective and regularisers
    loss: str = knob("hinge", "hinge (§3) | ns (non-saturating) | wasserstein")
    ortho_beta: float = knob(1e-4, "β of orthogonal regularization on G (§3.1, the paper's 1e-4); 0: off")
    ortho_full: bool = knob(False, "orthogonal regularization by Eq. 2, ||W Wᵀ - I||² (rows orthonormal), "
                                   "instead of Eq. 3 (off-diagonal only)")
    r1_gamma: float = knob(0.0, "γ of the R1 penalty γ/2 E||∇D(x)||² on real images (§4.2, Eq. 5); 0: off")
    sigma_clamp: float = knob(0.0, "clamp σ0 of every G layer to this value after each step (§4.1, Eq. 4); 0: off")
    sigma_clamp_ratio: float = knob(0.0, "clamp σ0 of every G layer to r·σ1 (Eq. 4 with σ_clamp = r·sg(σ1)); "
                                         "0: off; needs sn_num_svs >= 2")
    # --- optimisation (App. C)
    batch_size: int = knob(64, "images per optimizer step, summed over devices and accumulation micro-batches")
    grad_accum: int = knob(1, "micro-batches per optimizer step (gradient accumulation)")
    g_lr: float = knob(2e-4, "G's Adam learning rate (App. C: 5e-5 at ImageNet scale)")
    d_lr: float = knob(2e-4, "D's Adam learning rate (App. C: 2e-4)")
    beta1: float = knob(0.0, "Adam β1 of both nets (App. C: 0)")
    beta2: float = knob(0.999, "Adam β2 of both nets (App. C: 0.999)")
    adam_eps: float = knob(1e-6, "Adam epsilon of both nets")
    d_steps: int = knob(2, "D steps per G step (App. C: 2)")
    ema_decay: float = knob(0.9999, "decay of the EMA of G's weights, in [0, 1) (App. C: 0.9999)")
    ema_start: int = knob(1000, "G step at which the EMA starts averaging (before it: a copy of G)")
    precision: str = knob("auto", "auto (bf16 on GPUs that support it, else fp32) | fp32 | bf16 | fp16 (autocast)")
    # --- run bookkeeping
    steps: int = knob(100_000, "G steps to train (each after d_steps D steps)")
    seed: int = knob(0, "random seed of the weights, latents and data order")
    out_dir: str = knob("runs/cifar10", "run directory: log.jsonl, samples/, plots/ and checkpoints")
    log_every: int = knob(50, "G steps between log records (losses, σ0 of every layer, §4)")
    sample_every: int = knob(1000, "G steps between sample sheets (samples/step_N.png)")
    ckpt_every: int = knob(1000, "G steps between checkpoints")
    keep_last: int = knob(3, "step checkpoints kept on disk (last.pt, best.pt and pre_collapse.pt besides)")
    eval_every: int = knob(0, "G steps between FID / class-accuracy evaluations of the EMA G; 0: none")
    eval_n: int = knob(5000, "samples per evaluation during training (FID is biased below 2048)")
    tensorboard: bool = knob(False, "also write the log's scalars and the sample sheets as TensorBoard events in "
                             "OUT_DIR/tensorboard (needs: pip install tensorboard)")
    standing_batches: int = knob(100, "batches of 64 for standing statistics at sampling time (App. C.1: 100)")

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
    def g_attn_resolutions(self) -> tuple[int, ...]:
        """Where G's attention block can go: the resolution after each G stage, 8 ... resolution."""
        return tuple(8 * 2 ** i for i in range(self.n_g_stages))

    @property
    def d_attn_resolutions(self) -> tuple[int, ...]:
        """Where D's attention block can go: the resolution after each stage (BigGAN-deep: also its input conv's)."""
        res, out = self.resolution, [self.resolution] if self.deep else []
        for down in self.d_down:
            res //= 2 if down else 1
            out.append(res)
        return tuple(dict.fromkeys(out))  # unique, in order

    @property
    def z_chunks(self) -> int:
        """Hierarchical latent (§3 'skip-z'): one chunk for the first linear layer + one per G stage (1: z whole,
        BigGAN-deep or hier=False)."""
        return 1 if self.deep or not self.hier else self.n_g_stages + 1

    @property
    def z_chunk_size(self) -> int:
        return self.z_dim // self.z_chunks

    @property
    def cond_dim(self) -> int:
        """Input size of every CBN projection: [z chunk, shared embedding] (deep: [z, embedding]; hier=False:
        the embedding alone; shared=False: the one-hot class, which selects a row of each per-class table)."""
        if self.deep:
            return self.z_dim + self.shared_dim
        if not self.shared:
            return self.n_classes
        return self.z_chunk_size + self.shared_dim if self.hier else self.shared_dim

    @property
    def sn(self) -> dict:
        """Keyword arguments of every spectrally normalized layer."""
        return dict(eps=self.sn_eps, num_svs=self.sn_num_svs)

    def validate(self) -> "Config":
        def bad(field_name, msg):
            raise ValueError(f"config field '{field_name}': {msg}")

        kinds = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, kinds[f.type]) or (isinstance(value, bool) and f.type != "bool"):
                bad(f.name, f"must be of type {f.type}, got {type(value).__name__} {value!r}")
            if f.type == "float" and not math.isfinite(value):  # a NaN or infinite rate ruins a run silently
                bad(f.name, f"must be a finite number, got {value}")
        if self.resolution not in G_WIDTHS:
            bad("resolution", f"{self.resolution} has no architecture table; choose one of {sorted(G_WIDTHS)}")
        if self.z_dim % self.z_chunks:
            bad("z_dim", f"{self.z_dim} must split into {self.z_chunks} equal chunks (one per G stage + 1)")
        for name, net, valid in (("g_attn", "G", self.g_attn_resolutions), ("d_attn", "D", self.d_attn_resolutions)):
            res = getattr(self, name)
            if res and res not in valid:
                bad(name, f"{res} is the resolution of none of {net}'s stages at {self.resolution}px: "
                          f"choose one of {', '.join(map(str, valid))}, or 0 for no attention")
        for name in ("g_ch", "d_ch", "z_dim", "shared_dim", "batch_size", "grad_accum", "d_steps", "steps",
                     "n_classes", "sn_num_svs", "log_every", "sample_every", "ckpt_every", "keep_last",
                     "standing_batches"):
            if getattr(self, name) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            bad("batch_size", f"{self.batch_size} must be divisible by grad_accum={self.grad_accum}")
        if min(self.g_widths + self.d_widths) % 8:
            bad("g_ch/d_ch", "every channel width must be divisible by 8 (attention uses C/8)")
        choices_of = {"loss": ("hinge", "ns", "wasserstein"), "precision": ("auto", "fp32", "bf16", "fp16")}
        for name, choices in choices_of.items():
            if getattr(self, name) not in choices:
                bad(name, f"'{getattr(self, name)}' is not one of {', '.join(choices)}")
        if self.dataset not in ("cifar10", "fashion-mnist", "folder"):
            bad("dataset", f"'{self.dataset}' is unknown: use cifar10, fashion-mnist, or folder with --data-dir DIR")
        for name in ("ema_decay", "beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, f"must be in [0, 1), got {getattr(self, name)}")
        if self.ema_start < 0:
            bad("ema_start", f"must be >= 0 (the G step at which the EMA starts), got {self.ema_start}")
        if not 0 <= self.seed <= MAX_SEED:
            bad("seed", f"must be in 0..{MAX_SEED}, got {self.seed}")
        for name in ("shared_init_std", "ortho_beta", "r1_gamma", "sigma_clamp", "sigma_clamp_ratio"):
            if not getattr(self, name) >= 0:  # a negative strength is not "off": refuse it (NaN too)
                bad(name, f"must be >= 0 (0: off), got {getattr(self, name)}")
        if self.deep and not (self.shared and self.hier):
            bad("shared/hier", "BigGAN-deep always conditions every block on [z, shared embedding]: keep "
                               "shared and hier true (they switch off BigGAN's §3 additions for Table 1's ablation)")
        if self.hier and not self.shared:
            bad("hier", "skip-z concatenates z chunks with the shared embedding: with shared=false set "
                        "hier=false too (Table 1 adds '+Hier.' on top of '+Shared')")
        if self.sigma_clamp_ratio and self.sn_num_svs < 2:
            bad("sigma_clamp_ratio", "needs sn_num_svs >= 2 (it clamps sigma0 to r * sigma1)")
        if self.eval_every < 0:
            bad("eval_every", f"must be >= 0 (0: no FID during training), got {self.eval_every}")
        if self.eval_n < 2:
            bad("eval_n", f"FID needs at least 2 samples (2048+ to be unbiased), got {self.eval_n}")
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
    # README command 1: the two-hour CIFAR-10 run on 2 CPU cores. cifar10-tiny's shape (G 64 wide, D 32 wide,
    # batch 64, 2 D steps, lr 2e-4) won an equal-CPU-time sweep against wider D and G (FID at n=2k,
    # bench_results/cpu-2026-12-01-sweep); here with flips, EMA from step 1000 and 8,000 steps (0.83 s/step on a
    # quiet 2-core x86 machine: ~111 min), every 500-step checkpoint kept (16 x 7 MB) for the learning curve.
    "cifar10-cpu": Config(name="cifar10-cpu", g_ch=16, d_ch=16, beta1=0.5, d_steps=2, hflip=True, ema_decay=0.999,
                          ema_start=1000, steps=8000, sample_every=500, ckpt_every=500, keep_last=16, log_every=10,
                          out_dir="runs/cifar10-cpu"),
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
    if not isinstance(saved, dict) or saved.get("name") not in PRESETS:
        raise ValueError(f"a saved config must be a dict of Config fields whose 'name' is a preset, got "
                         f"{type(saved).__name__} with name {saved.get('name') if isinstance(saved, dict) else None!r}")
    fields = dict(saved)
    return get_config(fields.pop("name"), **{**fields, **overrides})


def changes(saved: dict, cfg: Config) -> tuple[dict, dict]:
    """What a resumed run changes in its saved config: ({architecture field: (old, new)}, {other field: (old, new)})."""
    new = dataclasses.asdict(cfg)
    old = {**dataclasses.asdict(from_saved(saved)), **saved}  # a field newer than the checkpoint: its preset value
    changed = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    return ({k: v for k, v in changed.items() if k in ARCHITECTURE},
            {k: v for k, v in changed.items() if k not in ARCHITECTURE})
