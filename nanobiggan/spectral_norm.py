"""Spectral normalization (Miyato et al. 2018) with BigGAN's spectral tracking (§4) and σ-clamp (Eq. 4).

SN divides a weight by its largest singular value σ0, so each layer is 1-Lipschitz (Miyato et al., Eq. 8).
σ0 comes from power iteration with persistent vectors u, v: W changes little per step, so ONE iteration per
training forward keeps the estimate converged (Miyato et al., Alg. 1); eval mode reuses u, v unchanged.
BigGAN §4 watches the top singular values σ0..σ(k-1) of every layer (σ0 of a few G layers explodes at
collapse), so we iterate k vector pairs at once, Gram–Schmidt keeping them orthonormal (subspace iteration):
pair i converges to the i-th singular pair. Throughout, W = weight.flatten(1): (out, in·kh·kw) for a conv,
(out, in) for a linear layer, (num, dim) for an embedding — the same matrix torch.nn.utils.spectral_norm uses.

Tutorial: tutorials/02_spectral_norm.md, tutorials/12_instability.md (the σ0 clamp)
"""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F


def _unit(x, fallback, eps):
    """x / ‖x‖, but keep `fallback` where ‖x‖ ≤ eps: a zero weight must not zero u and v for good."""
    norm = x.norm()
    return torch.where(norm > eps, x / norm.clamp_min(eps), fallback)


def _power_iteration(W, u, v, num_itrs, eps):
    """`num_itrs` steps of subspace iteration on W (o i) from u (k o), v (k i); returns u, v and σ (k)."""
    for _ in range(num_itrs):
        us, vs = [], []
        for i in range(u.shape[0]):
            vi = u[i] @ W  # (i): v ∝ Wᵀu
            for vj in vs:  # Gram–Schmidt: remove the directions of the larger pairs
                vi = vi - (vi @ vj) * vj
            vi = _unit(vi, v[i], eps)
            ui = W @ vi  # (o): u ∝ Wv
            for uj in us:
                ui = ui - (ui @ uj) * uj
            ui = _unit(ui, u[i], eps)
            us.append(ui)
            vs.append(vi)
        u, v = torch.stack(us), torch.stack(vs)
    return u, v, torch.einsum("ko,oi,ki->k", u, W, v)


def clamp_top_singular_value(W, u0, v0, sigma0, sigma_clamp):
    """BigGAN Eq. 4 (§4.1): W' = W − max(0, σ0 − σ_clamp) · u0 v0ᵀ, which lowers σ0 to σ_clamp if above.

    W is (out, in) with left singular vector u0 (out,) and right v0 (in,). The paper writes the update
    as v0 u0ᵀ because its W is (in, out); it is the same rank-1 correction. Every other singular value is
    unchanged (exactly so when u0, v0 are the exact top pair). Pure: returns a new tensor.
    """
    if W.ndim != 2 or u0.shape != W.shape[:1] or v0.shape != W.shape[1:]:
        raise ValueError(f"need W (out, in), u0 (out,), v0 (in,); got {tuple(W.shape)}, "
                         f"{tuple(u0.shape)}, {tuple(v0.shape)} — flatten conv kernels with W.flatten(1)")
    excess = torch.as_tensor(sigma0 - sigma_clamp, dtype=W.dtype, device=W.device).clamp_min(0)
    return W - excess * torch.outer(u0, v0)


class SpectralNorm:
    """Mixin for a torch layer with `.weight`: `sn_weight()` is weight / σ0 (Miyato et al. 2018).

    Buffers (saved in state_dict): u (k out), v (k in_flat) — the singular-vector estimates, and
    sv (k) — the latest σ0..σ(k-1) estimates for logging (BigGAN §4). k = num_svs, capped at
    min(out, in_flat) because a matrix has no more singular pairs than that.
    """

    def _init_spectral_norm(self, num_svs, num_itrs, eps):
        for name, val in (("num_svs", num_svs), ("num_itrs", num_itrs)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {val!r}")
        if not eps > 0:  # also rejects NaN
            raise ValueError(f"eps must be > 0 (it guards the division by σ0), got {eps!r}")
        out, in_flat = self.weight.flatten(1).shape
        self.num_svs, self.num_itrs, self.eps = min(num_svs, out, in_flat), num_itrs, eps
        # Random unit start vectors from the default RNG, so torch.manual_seed makes them reproducible.
        dev = self.weight.device
        self.register_buffer("u", F.normalize(torch.randn(self.num_svs, out, device=dev), dim=1))
        self.register_buffer("v", F.normalize(torch.randn(self.num_svs, in_flat, device=dev), dim=1))
        self.register_buffer("sv", torch.zeros(self.num_svs, device=dev))
        self.reset_singular_vectors_()  # σ of the initial weight, as torch's spectral_norm at registration

    @property
    def singular_values(self):
        """Latest estimates of σ0..σ(k-1) (BigGAN §4 logging), detached."""
        return self.sv.detach().clone()

    def sn_weight(self):
        """weight / σ0; first advances u, v by `num_itrs` power iterations if this weight is being trained.

        "Being trained" = training mode, autograd on, weight.requires_grad: one iteration per weight update
        (Miyato et al., Alg. 1). G's fakes for D steps (made under no_grad) and a frozen D during G's step
        reuse u, v as they are, so no power iteration is wasted on a forward that updates nothing.
        """
        W = self.weight.flatten(1)
        # float32 even under bf16/fp16 autocast: low precision would corrupt u, v across steps.
        no_autocast = torch.autocast(W.device.type, enabled=False) if not W.is_meta else contextlib.nullcontext()
        with no_autocast:  # (the meta device, used to count parameters and check shapes, has no autocast)
            W = W.float()
            if self.training and torch.is_grad_enabled() and self.weight.requires_grad:
                with torch.no_grad():
                    u, v, sv = _power_iteration(W, self.u.float(), self.v.float(), self.num_itrs, self.eps)
                    self.u.copy_(u)
                    self.v.copy_(v)
                    self.sv.copy_(sv)
            # Clones: the buffers change in place at the next forward (D sees reals and fakes before
            # one backward), and autograd must keep the u, v this σ was computed from.
            u0, v0 = self.u[0].float().clone(), self.v[0].float().clone()
            sigma = torch.dot(u0, torch.mv(W, v0))  # = torch's spectral_norm, gradient flows through W
        return self.weight / sigma.clamp_min(self.eps)  # zero weight -> zero, not NaN

    @torch.no_grad()
    def reset_singular_vectors_(self, num_itrs: int = 15):
        """Converge u, v, sv for the current weight (call after (re)initialising it), as torch's
        spectral_norm does at registration: otherwise eval mode before any training step would divide
        by u0ᵀWv0 for random u0, v0 — a meaningless (even negative) σ."""
        if not self.weight.is_meta:
            W = self.weight.float().flatten(1)
            u, v, sv = _power_iteration(W, self.u.float(), self.v.float(), num_itrs, self.eps)
            self.u.copy_(u), self.v.copy_(v), self.sv.copy_(sv)

    @torch.no_grad()
    def clamp_(self, sigma_clamp=None, ratio=None):
        """Opt-in BigGAN Eq. 4 on self.weight in place: σ_clamp = `sigma_clamp`, or `ratio`·sg(σ1).

        Uses the stored u0, v0 and fresh σ0 = u0ᵀWv0, σ1 = u1ᵀWv1, so call it after training forwards
        have converged the buffers (u, v, sv themselves are left as they are).
        """
        if (sigma_clamp is None) == (ratio is None):
            raise ValueError("give exactly one of sigma_clamp=<float> or ratio=<float> to clamp_()")
        if sigma_clamp is not None and not sigma_clamp >= 0:
            raise ValueError(f"sigma_clamp must be ≥ 0, got {sigma_clamp!r}")
        if ratio is not None and not ratio > 0:
            raise ValueError(f"ratio must be > 0, got {ratio!r}")
        if ratio is not None and self.num_svs < 2:
            raise ValueError(f"clamp_(ratio=...) needs σ1: build the layer with num_svs ≥ 2 "
                             f"(this one tracks {self.num_svs}; at most min(out, in_flat) pairs exist)")
        W = self.weight.float().flatten(1)
        sigmas = torch.einsum("ko,oi,ki->k", self.u.float(), W, self.v.float())
        target = sigma_clamp if ratio is None else ratio * sigmas[1]
        W = clamp_top_singular_value(W, self.u[0].float(), self.v[0].float(), sigmas[0], target)
        self.weight.copy_(W.view_as(self.weight))


def spectral_modules(model):
    """{name: layer} for every spectrally normalized layer in `model` (for σ logging and the clamp)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SpectralNorm)}


class SNEmbedding(nn.Embedding, SpectralNorm):
    """nn.Embedding whose (num, dim) table is divided by its σ0."""

    def __init__(self, *args, num_svs: int = 1, num_itrs: int = 1, eps: float = 1e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(num_svs, num_itrs, eps)

    def forward(self, idx):
        return F.embedding(idx, self.sn_weight(), self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)


class SNLinear(nn.Linear, SpectralNorm):
    """nn.Linear with weight / σ0."""

    def __init__(self, *args, num_svs: int = 1, num_itrs: int = 1, eps: float = 1e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(num_svs, num_itrs, eps)

    def forward(self, x):
        return F.linear(x, self.sn_weight(), self.bias)


class SNConv2d(nn.Conv2d, SpectralNorm):
    """nn.Conv2d with weight / σ0, the kernel seen as an (out, in·kh·kw) matrix."""

    def __init__(self, *args, num_svs: int = 1, num_itrs: int = 1, eps: float = 1e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(num_svs, num_itrs, eps)

    def forward(self, x):
        # _conv_forward applies this layer's own stride, padding (and padding_mode), dilation, groups.
        return self._conv_forward(x, self.sn_weight(), self.bias)
