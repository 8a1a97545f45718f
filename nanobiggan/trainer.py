"""One BigGAN training step, faithful to the paper (Brock et al. 2018, §3, §4, App. C).

Per G step (`train_step`): `d_steps` D steps (`d_step`), each on a fresh real batch, with G's images made
without autograd; then one G step (`g_step`); then the optional σ0 clamp (Eq. 4) and the EMA of G (App. C).
Adam with two time-scales (separate lr per net, App. C), hinge loss (§3), orthogonal regularization on G as a
direct gradient (Eq. 3), opt-in R1 (Eq. 5). `d_step` and `g_step` are the paper; how a loss becomes an
optimizer step (autocast precision, gradient accumulation over `grad_accum` micro-batches, DDP's all-reduce)
is one helper, `_update`.

The networks and how the steps call them:
    G, D              the modules: their weights are trained, averaged (EMA), regularized, logged and saved;
    G_fwd, D_fwd      what the steps call: under torchrun DDP-wrapped with cross-replica BN (distributed.py),
                      with --compile torch.compile'd; otherwise G and D themselves;
    D_frozen_fwd      D as G's step calls it: never DDP-wrapped (no all-reduce for a net that is not updated).

The state (`state_dict`) holds everything needed for a bit-exact resume: models, EMA, optimizers, the
step, how many real batches were drawn, and every RNG (`rng_state`).

Tutorial: tutorials/06_training_cifar10.md, tutorials/10_scaling_up.md
"""
from __future__ import annotations

import contextlib
import dataclasses
import random

import numpy as np
import torch

from nanobiggan.config import Config
from nanobiggan.discriminator import Discriminator
from nanobiggan.distributed import data_parallel
from nanobiggan.ema import EMA
from nanobiggan.generator import Generator
from nanobiggan.losses import get_loss, r1_penalty
from nanobiggan.ortho import ortho_
from nanobiggan.spectral_norm import spectral_modules


class Trainer:
    """G, D, the EMA of G, their optimizers and the step count; `train_step(batches)` does one G step."""

    def __init__(self, cfg: Config, device: str | torch.device = "cpu", rank: int = 0, world: int = 1,
                 compile: bool = False, channels_last: bool = True):
        self.cfg, self.device, self.rank, self.world = cfg, torch.device(device), rank, world
        if cfg.batch_size % (world * cfg.grad_accum):
            raise ValueError(f"config field 'batch_size': {cfg.batch_size} must be divisible by "
                             f"world size x grad_accum = {world} x {cfg.grad_accum}")
        self.micro = cfg.batch_size // (world * cfg.grad_accum)  # images per device per micro-batch
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        # NHWC: oneDNN (CPU) and cuDNN (bf16 tensor cores) both run convs faster in it; 1.4x per step on CPU
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.G = Generator(cfg).to(self.device, memory_format=self.memory_format)
        self.D = Discriminator(cfg).to(self.device, memory_format=self.memory_format)
        self._seed_rank(0)  # ...but every rank draws its own z and y
        self.ema = EMA(self.G, decay=cfg.ema_decay, start=cfg.ema_start)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=betas, eps=cfg.adam_eps)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=betas, eps=cfg.adam_eps)
        G_fwd, D_fwd = (data_parallel(self.G, self.device), data_parallel(self.D, self.device)) if world > 1 \
            else (self.G, self.D)
        maybe_compile = torch.compile if compile else (lambda module: module)
        self.G_fwd, self.D_fwd, self.D_frozen_fwd = maybe_compile(G_fwd), maybe_compile(D_fwd), maybe_compile(self.D)
        self.d_loss_fn, self.g_loss_fn = get_loss(cfg.loss)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step = 0

    # ---- the paper: one D step, one G step, one iteration

    def d_step(self, batches) -> dict[str, torch.Tensor]:
        """One D update (§3): D learns to score real (x, y) high and G's (G(z), y_fake) low; G is not updated."""
        cfg = self.cfg

        def micro_batch():
            x, y = self._real(batches)
            z, y_fake = self._zy(len(x))
            with torch.no_grad():  # G's images are D's data here: no autograd graph through G
                fake = self.G_fwd(z, y_fake).to(x.dtype)
            logits = self.D_fwd(torch.cat([x, fake]), torch.cat([y, y_fake])).float()  # one forward: D has no BN
            real, fake_logits = logits.split(len(x))
            loss = self.d_loss_fn(real, fake_logits)  # hinge (§3)
            if cfg.r1_gamma > 0:  # γ/2 · E‖∇ₓ D(x)‖² on the real batch (§4.2, Eq. 5)
                loss = loss + cfg.r1_gamma / 2 * r1_penalty(real, x)
            return loss, {"d_loss": loss, "d_real": real.mean(), "d_fake": fake_logits.mean()}

        self.D.requires_grad_(True)
        return self._update(self.D_fwd, self.opt_d, micro_batch)

    def g_step(self) -> dict[str, torch.Tensor]:
        """One G update (§3): G learns to make D score G(z, y) high. D is frozen (no gradient, and its spectral
        norm does not iterate); orthogonal regularization (§3.1) joins G's gradient before the step."""
        def micro_batch():
            z, y = self._zy(self.micro)
            loss = self.g_loss_fn(self.D_frozen_fwd(self.G_fwd(z, y), y).float())
            return loss, {"g_loss": loss}

        self.D.requires_grad_(False)
        stats = self._update(self.G_fwd, self.opt_g, micro_batch, before_step=self._ortho)
        self.D.requires_grad_(True)
        return stats

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        """One iteration: `d_steps` D steps, one G step, the optional σ0 clamp (§4.1, Eq. 4), the EMA update.
        Returns the last D step's and the G step's statistics (d_loss, d_real, d_fake, g_loss) as 0-d tensors on
        the device, and makes no host sync of its own (tests/test_trainer.py counts them)."""
        self.G.train(), self.D.train()
        stats = {}
        for _ in range(self.cfg.d_steps):
            stats = self.d_step(batches)
        stats.update(self.g_step())
        self.step += 1
        self._clamp_sigma0()
        self.ema.update(self.G, self.step)
        return stats

    # ---- how a step runs: inputs, precision, accumulation, DDP

    def _update(self, net_fwd, opt, micro_batch, before_step=None) -> dict[str, torch.Tensor]:
        """One step of `opt` from cfg.grad_accum micro-batches. `micro_batch()` returns (loss, {name: value});
        each loss is computed under autocast and backpropagated divided by grad_accum (and scaled by the fp16
        GradScaler); under DDP, `net_fwd`'s gradients are all-reduced on the last micro-batch only. Returns the
        values averaged over the micro-batches, as 0-d fp32 tensors on the device: reading one (`.item()`) waits
        for the accelerator, so the step never does; train.py reads them on logging steps only."""
        accum, stats = self.cfg.grad_accum, {}
        opt.zero_grad(set_to_none=True)
        for i in range(accum):
            all_reduce = i == accum - 1 or not hasattr(net_fwd, "no_sync")
            with contextlib.nullcontext() if all_reduce else net_fwd.no_sync():
                with self.autocast():
                    loss, values = micro_batch()
                self.scaler.scale(loss / accum).backward()
            for name, value in values.items():
                stats[name] = stats.get(name, 0.0) + value.detach().float() / accum
        if before_step is not None:
            before_step()
        self.scaler.step(opt)
        self.scaler.update()
        return stats

    def autocast(self):
        """The precision context of forward passes: bf16/fp16 autocast, or nothing for fp32."""
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def _real(self, batches):
        """The next real (x, y) on this device; x in the training memory format, differentiable for R1."""
        x, y = (t.to(self.device, non_blocking=True) for t in next(batches))
        x = x.contiguous(memory_format=self.memory_format)
        return x.requires_grad_(self.cfg.r1_gamma > 0), y

    def _zy(self, n: int):
        """G's inputs: z ~ N(0, I), y uniform over the classes."""
        z = torch.randn(n, self.cfg.z_dim, device=self.device)
        return z, torch.randint(0, self.cfg.n_classes, (n,), device=self.device)

    def _ortho(self) -> None:
        """β·∂R/∂W of Eq. 3 (Eq. 2 with cfg.ortho_full) added to G's gradients, once per step (§3.1)."""
        if self.cfg.ortho_beta > 0:
            self.scaler.unscale_(self.opt_g)
            ortho_(self.G, beta=self.cfg.ortho_beta, full=self.cfg.ortho_full)

    @torch.no_grad()
    def _clamp_sigma0(self) -> None:
        """Eq. 4 on every SN layer of G, when cfg.sigma_clamp or cfg.sigma_clamp_ratio asks for it."""
        if not (self.cfg.sigma_clamp or self.cfg.sigma_clamp_ratio):
            return
        for layer in spectral_modules(self.G).values():
            if self.cfg.sigma_clamp_ratio and layer.num_svs < 2:
                continue  # a layer with a single output has no σ1 to clamp towards
            layer.clamp_(sigma_clamp=self.cfg.sigma_clamp or None, ratio=self.cfg.sigma_clamp_ratio or None)

    def _seed_rank(self, step: int) -> None:
        """Rank r > 0 reseeds from (seed, r, step): ranks must not draw the same z, and a checkpoint holds
        rank 0's RNG only. A single process keeps one unbroken stream (bit-exact resume)."""
        if self.rank:
            torch.manual_seed(self.cfg.seed + 1_000_003 * self.rank + 7_919 * step)

    # ---- checkpoints

    def state_dict(self, batches=None) -> dict:
        return {"config": dataclasses.asdict(self.cfg), "step": self.step,
                "batches_drawn": batches.drawn if batches is not None else 0,
                "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> int:
        """Restore everything; returns how many real batches had been drawn (lab/datasets.py's Batches resumes).
        The optimizers' and the EMA's settings stay this trainer's config's: a resumed run may change them."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.ema.load_state_dict(state["G_ema"])
        self.ema.decay, self.ema.start = self.cfg.ema_decay, self.cfg.ema_start
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for opt, lr in ((self.opt_g, self.cfg.g_lr), (self.opt_d, self.cfg.d_lr)):
            for group in opt.param_groups:
                group.update(lr=lr, betas=(self.cfg.beta1, self.cfg.beta2), eps=self.cfg.adam_eps)
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
    """'auto' = bf16 autocast on a GPU that supports it (fp16 runs of BigGAN are known to collapse or go NaN), else
    fp32 (a TPU's matrix unit rounds fp32 inputs to bf16 by default, without autocast)."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
