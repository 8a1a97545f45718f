"""One BigGAN training step, faithful to the paper (Brock et al. 2018, §3, §4, App. C).

Per G step: `d_steps` D steps, each on a fresh real batch, with G's fakes made without autograd; then
one G step. Adam with two time-scales (separate lr per net, App. C), hinge loss (§3), orthogonal
regularisation on G as a direct gradient (Eq. 3), EMA of G (App. C), and opt-in R1 (Eq. 5) and σ-clamp
(Eq. 4). Gradient accumulation splits each step into `grad_accum` micro-batches; under torchrun, G and D are
DDP-wrapped and G's BatchNorms become torch's SyncBatchNorm (the paper's cross-replica BN;
on CPU, where it cannot run, `CrossReplicaBatchNorm` below).

The state (`state_dict`) holds everything needed for a bit-exact resume: models, EMA, optimizers, the
step, how many real batches were drawn, and every RNG.

Tutorial: tutorials/06_training_cifar10.md, tutorials/10_scaling_up.md
"""
from __future__ import annotations

import contextlib
import dataclasses
import random

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from nanobiggan.config import Config
from nanobiggan.discriminator import Discriminator
from nanobiggan.ema import EMA
from nanobiggan.generator import Generator
from nanobiggan.losses import get_loss, r1_penalty
from nanobiggan.ortho import ortho_
from nanobiggan.spectral_norm import spectral_modules


class CrossReplicaBatchNorm(nn.BatchNorm2d):
    """Cross-replica BN on CPU (gloo), where torch's SyncBatchNorm cannot run (GPU-only kernels, and DDP refuses
    it on CPU): the batch mean and variance over every replica come from differentiable all-reduces of
    per-channel sums, whose backward all-reduces the gradients as SyncBatchNorm's does. Same state as BatchNorm2d;
    plain BatchNorm2d when not training or not distributed. GPUs use torch's SyncBatchNorm."""

    def forward(self, x):  # (n c h w)
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        xf = x.float()  # statistics in fp32, under autocast too
        local = torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([x.numel() // x.shape[1]])])  # (c+1): sums, count
        sums = dist_nn.all_reduce(local)  # over every replica; its backward all-reduces the gradients
        count = sums[-1].detach()
        mean = sums[:-1] / count  # (c); mean[:, None, None] broadcasts over (n c h w)
        var = dist_nn.all_reduce((xf - mean[:, None, None]).pow(2).sum((0, 2, 3))) / count  # biased, as BN uses
        if self.track_running_stats:
            with torch.no_grad():  # as BatchNorm2d: the unbiased variance goes into the running average
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * count / (count - 1).clamp_min(1), m)
        out = (xf - mean[:, None, None]) * torch.rsqrt(var + self.eps)[:, None, None]
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out.to(x.dtype)


class Trainer:
    """Holds G, D, G_ema, their optimizers and the step; `train_step(batches)` does one G step."""

    def __init__(self, cfg: Config, device: str | torch.device = "cpu", rank: int = 0, world: int = 1,
                 compile: bool = False, channels_last: bool = True):
        self.cfg, self.device, self.rank, self.world = cfg, torch.device(device), rank, world
        if cfg.batch_size % (world * cfg.grad_accum):
            raise ValueError(f"config field 'batch_size': {cfg.batch_size} must be divisible by "
                             f"world size x grad_accum = {world} x {cfg.grad_accum}")
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        G, D = Generator(cfg).to(self.device), Discriminator(cfg).to(self.device)
        self._seed_rank(0)  # ...but every rank draws its own z and y
        # NHWC: oneDNN (CPU) and cuDNN (bf16 tensor cores) both run convs faster in it; 1.4x per step on CPU
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        G, D = G.to(memory_format=self.memory_format), D.to(memory_format=self.memory_format)
        self.ema = EMA(G, decay=cfg.ema_decay, start=cfg.ema_start)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=betas, eps=cfg.adam_eps)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=betas, eps=cfg.adam_eps)
        if world > 1:  # cross-replica BN (App. C) + gradient all-reduce
            if self.device.type != "cpu":
                G = nn.SyncBatchNorm.convert_sync_batchnorm(G)
            else:
                for m in G.modules():
                    if type(m) is nn.BatchNorm2d:
                        m.__class__ = CrossReplicaBatchNorm  # same state, reduced across processes
            G, D = DDP(G), DDP(D)
        self.G, self.D = G, D
        self.g, self.d = getattr(G, "module", G), getattr(D, "module", D)  # the bare modules
        self.G_fwd = torch.compile(G) if compile else G
        self.D_fwd = torch.compile(D) if compile else D
        self.d_frozen_fwd = torch.compile(self.d) if compile else self.d  # G step: no DDP all-reduce for D
        self.d_loss_fn, self.g_loss_fn = get_loss(cfg.loss)
        self.micro = cfg.batch_size // (world * cfg.grad_accum)  # images per device per micro-batch
        self.precision = resolve_precision(cfg.precision, self.device)
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=dtype)) if dtype else contextlib.nullcontext
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step = 0

    def _seed_rank(self, step: int) -> None:
        """Rank r > 0 reseeds from (seed, r, step): ranks must not draw the same z, and a checkpoint holds
        rank 0's RNG only. A single process keeps one unbroken stream (bit-exact resume)."""
        if self.rank:
            torch.manual_seed(self.cfg.seed + 1_000_003 * self.rank + 7_919 * step)

    # ---- sampling the generator's inputs: z ~ N(0, I), y uniform over classes
    def _zy(self, n: int):
        z = torch.randn(n, self.cfg.z_dim, device=self.device)
        return z, torch.randint(0, self.cfg.n_classes, (n,), device=self.device)

    def _syncs(self, model, n: int):
        """Under DDP, all-reduce gradients only on the last of n micro-batches."""
        for i in range(n):
            last = i == n - 1
            yield (contextlib.nullcontext() if last or not isinstance(model, DDP) else model.no_sync())

    def d_step(self, batches) -> dict[str, float]:
        """One D update on `grad_accum` micro-batches: hinge(D(x), D(G(z))) [+ γ/2 R1]; G untouched."""
        cfg, stats = self.cfg, {"d_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
        self.d.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        for ctx in self._syncs(self.D, cfg.grad_accum):
            x, y = (t.to(self.device, non_blocking=True) for t in next(batches))
            x = x.contiguous(memory_format=self.memory_format)
            z, y_fake = self._zy(len(x))
            with torch.no_grad(), self.autocast():
                fake = self.G_fwd(z, y_fake)  # no autograd graph for G in D steps
            x.requires_grad_(cfg.r1_gamma > 0)
            with ctx:
                with self.autocast():  # real and fake in one D forward (D has no batch statistics)
                    logits = self.D_fwd(torch.cat([x, fake.to(x.dtype)]), torch.cat([y, y_fake])).float()
                    real, fake_logits = logits.split([len(x), len(fake)])
                    loss = self.d_loss_fn(real, fake_logits)
                    if cfg.r1_gamma > 0:
                        loss = loss + cfg.r1_gamma / 2 * r1_penalty(real, x)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            stats["d_loss"] += loss.item() / cfg.grad_accum
            stats["d_real"] += real.mean().item() / cfg.grad_accum
            stats["d_fake"] += fake_logits.mean().item() / cfg.grad_accum
        self.scaler.step(self.opt_d)
        self.scaler.update()
        return stats

    def g_step(self) -> dict[str, float]:
        """One G update: g_loss(D(G(z), y)); D is frozen (its weights get no gradient, its SN does not iterate)."""
        cfg, stats = self.cfg, {"g_loss": 0.0}
        self.d.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        for ctx in self._syncs(self.G, cfg.grad_accum):
            z, y = self._zy(self.micro)
            with ctx:
                with self.autocast():  # the bare D: no DDP all-reduce for a net we do not update
                    loss = self.g_loss_fn(self.d_frozen_fwd(self.G_fwd(z, y), y).float())
                self.scaler.scale(loss / cfg.grad_accum).backward()
            stats["g_loss"] += loss.item() / cfg.grad_accum
        if cfg.ortho_beta > 0:  # Eq. 3 (or Eq. 2) as a direct gradient: no extra graph, once per step
            self.scaler.unscale_(self.opt_g)
            ortho_(self.g, beta=cfg.ortho_beta, off_diagonal=not cfg.ortho_full)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.d.requires_grad_(True)
        return stats

    def train_step(self, batches) -> dict[str, float]:
        """`d_steps` D steps then one G step, EMA update and the optional σ0 clamp (§4.1, Eq. 4)."""
        self.G.train(), self.D.train()
        stats = {}
        for _ in range(self.cfg.d_steps):
            stats = self.d_step(batches)
        stats.update(self.g_step())
        self.step += 1
        if self.cfg.sigma_clamp or self.cfg.sigma_clamp_ratio:
            with torch.no_grad():
                for layer in spectral_modules(self.g).values():
                    if self.cfg.sigma_clamp_ratio and layer.num_svs < 2:
                        continue  # a layer with a single output has no σ1 to clamp towards
                    layer.clamp_(sigma_clamp=self.cfg.sigma_clamp or None, ratio=self.cfg.sigma_clamp_ratio or None)
        self.ema.update(self.g, self.step)
        return stats

    # ---- checkpoints
    def state_dict(self, batches=None) -> dict:
        return {"config": dataclasses.asdict(self.cfg), "step": self.step,
                "batches_drawn": batches.drawn if batches is not None else 0,
                "G": self.g.state_dict(), "D": self.d.state_dict(), "G_ema": self.ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> int:
        """Restore everything; returns how many real batches had been drawn (to resume lab/datasets.py's Batches)."""
        self.g.load_state_dict(state["G"])
        self.d.load_state_dict(state["D"])
        self.ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        set_rng_state(state["rng"])
        self._seed_rank(self.step)
        return state["batches_drawn"]


def rng_state() -> dict:
    """Every RNG a training step draws from, as tensors/lists/ints that weights_only loading accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": list(random.getstate())}


def set_rng_state(state: dict) -> None:
    """Restore what rng_state() captured; CUDA states only for the devices present on this machine."""
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' = bf16 autocast on a GPU that supports it (fp16 runs of BigGAN are known to collapse or go NaN), else fp32."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
