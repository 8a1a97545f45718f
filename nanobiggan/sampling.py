"""Images out of G: the sampling protocol, sample sheets (one row per class) and the interpolation sheets of
BigGAN Fig. 8/9.

Every image this project shows or scores comes from G prepared by ONE function, `prepare_for_sampling`: the
EMA weights (§3), spectral norms converged on them, standing statistics at the sampling truncation (App. C.1),
eval mode. train.py's sheets, sample.py, the evaluation protocol (lab/protocol.py) and the tutorials call it.
After it, an image depends on its own z and class only: never on the batch it was generated in, nor on the seed
that drew the others. Latents come from a seeded torch.Generator through the paper's truncation trick (§3.1,
truncation.py), drawn on the CPU so the same seed gives the same z on any device.

Tutorial: tutorials/07_truncation_ortho.md, tutorials/08_ema_standing_stats.md
"""
from __future__ import annotations

import torch
from einops import rearrange, repeat

from nanobiggan.ema import standing_stats
from nanobiggan.truncation import tfhub_truncated_normal, truncated_normal

STANDING_BATCH_SIZE = 64  # inputs per standing-statistics forward: the statistics depend on it, so it is fixed


@torch.no_grad()
def prepare_for_sampling(G, truncation=None, n_batches: int = 100, seed: int = 0,
                         batch_size: int = STANDING_BATCH_SIZE):
    """Put G in the state every sample and score is drawn from (the sampling protocol); returns G.

    1. Weights: pass the EMA generator (BigGAN §3): `trainer.ema.model`, or lab.generators.load_generator's G
       (EMA by default).
    2. Spectral norm: u, v converged on these very weights (the EMA copy's vectors were iterated on the live G).
    3. Standing statistics (App. C.1), one recipe: every BatchNorm's statistics become the average over
       `n_batches` forwards (cfg.standing_batches, the paper's 100) of `batch_size` = 64 inputs drawn as the
       samples will be: z truncated at `truncation` (None: N(0, I)), classes uniform at random, both from a
       CPU generator seeded `seed + 1`. The protocol keeps seed 0 whatever seed draws the samples: like the
       released BigGAN-deep's per-truncation statistics, they are a property of (G, truncation), so one set
       serves every seed (and the sampler page keeps one per slider position). seed 0's statistics use
       generator seed 1, never the stream that draws seed 0's samples. Tutorial 08 varies `seed` to measure
       how much the statistics themselves vary.
    4. Eval mode.
    """
    cfg, device = G.cfg, next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed + 1)

    def inputs():  # (z (b z_dim), y (b)) on G's device
        z = truncated_normal((batch_size, cfg.z_dim), truncation, generator=gen)
        return z.to(device), torch.randint(0, cfg.n_classes, (batch_size,), generator=gen).to(device)
    return standing_stats(G, inputs, n_batches=n_batches)


@torch.no_grad()
def generate(G, z: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """G's images for latents z (n z_dim) and y, in chunks of `batch_size`: (n 3 R R) float on the CPU.

    y is either class ids (n,) -> G(z, y), or class embeddings (n shared_dim) -> G.synthesize(z, y), as
    returned by `interpolation_inputs`. G's mode is left alone: in eval mode with standing statistics
    the result does not depend on `batch_size`.
    """
    if len(z) != len(y) or len(z) == 0:
        raise ValueError(f"generate needs as many z as y, at least one; got {len(z)} z and {len(y)} y")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    device = next(G.parameters()).device
    embedded = y.is_floating_point() and y.ndim == 2
    forward = G.synthesize if embedded else G
    chunks = [forward(zc.to(device), yc.to(device)).float().cpu()
              for zc, yc in zip(z.split(batch_size), y.split(batch_size))]
    return torch.cat(chunks)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _check_classes(classes, n_classes: int) -> torch.Tensor:
    ids = torch.as_tensor(classes, dtype=torch.long).flatten()
    if ids.numel() == 0:
        raise ValueError("classes is empty: give at least one class id, or None for the default rows")
    bad = ids[(ids < 0) | (ids >= n_classes)]
    if bad.numel():
        raise ValueError(f"class id(s) {bad.tolist()} out of range: this model has classes 0..{n_classes - 1}")
    return ids


def class_sheet_inputs(z_dim: int, n_classes: int, classes=None, per_class: int = 10, threshold=None,
                       seed: int = 0, device="cpu", tfhub: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, y) for a sample sheet: one row per class, `per_class` columns, flattened row by row.

    Column j uses the SAME z in every row, so a column shows what one latent looks like across classes.
    Rows are `classes`, else every class, or 10 evenly spaced ids when there are more than 10 classes.
    z is truncated at `threshold` (§3.1; None: no truncation) from a generator seeded with `seed`; with
    `tfhub`, for the released weights, z = threshold · truncnorm(-2, 2) instead (threshold None: 1).
    """
    if classes is None:
        classes = range(n_classes) if n_classes <= 10 else torch.linspace(0, n_classes - 1, 10).round()
    ids = _check_classes(classes, n_classes)
    if tfhub:
        z = tfhub_truncated_normal((per_class, z_dim), 1.0 if threshold is None else threshold, _seeded(seed))
    else:
        z = truncated_normal((per_class, z_dim), threshold, generator=_seeded(seed))  # (c d)
    z = repeat(z, "c d -> (r c) d", r=len(ids))
    y = repeat(ids, "r -> (r c)", c=per_class)
    return z.to(device), y.to(device)


@torch.no_grad()
def interpolation_inputs(G, mode: str, n_rows: int = 4, steps: int = 8, threshold=None, seed: int = 0,
                         classes=None, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(z, e) for `G.synthesize(z, e)` (or `generate`): `n_rows` rows of `steps` linear interpolations
    (BigGAN Fig. 8/9), flattened row by row; the first and last columns are exactly the endpoints.

    mode "z": z goes from z_a to z_b along the row, class fixed (row r uses classes[r], cycled).
    mode "class": the class embedding goes from shared(c_a) to shared(c_b), z fixed (row r uses
    classes[r] -> classes[r + 1], cycled; needs 2+ classes). Without `classes`, ids are drawn from `seed`.
    """
    if mode not in ("z", "class"):
        raise ValueError(f"interpolation mode must be 'z' (interpolate latents) or 'class' (interpolate "
                         f"class embeddings), got {mode!r}")
    if n_rows < 1 or steps < 2:
        raise ValueError(f"need n_rows >= 1 and steps >= 2 (the two endpoints), got {n_rows}, {steps}")
    n_classes, z_dim, gen = G.cfg.n_classes, G.cfg.z_dim, _seeded(seed)
    if classes is None:
        if mode == "class" and n_classes < 2:
            raise ValueError("class interpolation needs a model with at least 2 classes")
        first = torch.randint(n_classes, (n_rows,), generator=gen)
        # a second, different class per row for mode "class"
        second = (first + torch.randint(1, max(n_classes, 2), (n_rows,), generator=gen)) % n_classes
    else:
        ids = _check_classes(classes, n_classes)
        if mode == "class" and len(ids) < 2:
            raise ValueError("class interpolation needs at least 2 class ids (row r goes classes[r] -> classes[r+1])")
        rows = torch.arange(n_rows)
        first, second = ids[rows % len(ids)], ids[(rows + 1) % len(ids)]

    def embed(ids):  # (r shared_dim), or one-hot (r n_classes) for shared=False: the very e that G(z, y) uses
        return G.embed(ids.to(next(G.parameters()).device)).float().cpu()

    t = rearrange(torch.linspace(0, 1, steps), "s -> 1 s 1")
    if mode == "z":
        ends = truncated_normal((n_rows, 2, z_dim), threshold, generator=gen)
        z = torch.lerp(ends[:, :1], ends[:, 1:], t)  # (r s d); exact endpoints at t = 0 and 1
        e = repeat(embed(first), "r d -> r s d", s=steps)
    else:
        z = repeat(truncated_normal((n_rows, z_dim), threshold, generator=gen), "r d -> r s d", s=steps)
        e = torch.lerp(embed(first)[:, None], embed(second)[:, None], t)
    flat = "r s d -> (r s) d"
    return rearrange(z, flat).to(device), rearrange(e, flat).to(device)
