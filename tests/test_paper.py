"""The paper's numbers, in one place (Brock et al. 2018, App. B and App. C), asserted against every preset.

Each value below is typed from the paper, not read from nanobiggan/config.py, and every assertion message names
the section it comes from: a future edit that drifts from the paper fails here and says where to look.
The `cifar10` preset is checked against the recipe it claims instead (PyTorch-StudioGAN's BigGAN CIFAR-10).
"""
import pytest

from nanobiggan.config import get_config
from nanobiggan.lab.presets import count_params

# App. B, Tables 4-6 (BigGAN, ch = 96) and 7-9 (BigGAN-deep, ch = 128): channel multipliers of ch per stage.
G_MULT = {128: (16, 16, 8, 4, 2, 1), 256: (16, 16, 8, 8, 4, 2, 1), 512: (16, 16, 8, 8, 4, 2, 1, 1)}
D_MULT = {128: (1, 2, 4, 8, 16, 16), 256: (1, 2, 4, 8, 8, 16, 16), 512: (1, 1, 2, 4, 8, 8, 16, 16)}

# (preset, resolution, deep, z_dim, G attention, D attention, (D lr, G lr), source of the attention placement)
PAPER = [
    ("biggan-128", 128, False, 120, 64, 64, (2e-4, 5e-5), "Table 4"),
    ("biggan-256", 256, False, 140, 128, 64, (2e-4, 5e-5), "Table 5 (only G's non-local block moves to 128)"),
    ("biggan-512", 512, False, 160, 64, 64, (2e-4, 5e-5), "Table 6"),
    ("biggan-deep-128", 128, True, 128, 64, 64, (2e-4, 5e-5), "Table 7"),
    ("biggan-deep-256", 256, True, 128, 64, 64, (2.5e-5, 2.5e-5), "Table 8"),
    ("biggan-deep-512", 512, True, 128, 64, 64, (2.5e-5, 2.5e-5), "Table 9"),
]
IDS = [row[0] for row in PAPER]


@pytest.mark.parametrize("name, res, deep, z_dim, g_attn, d_attn, lrs, table", PAPER, ids=IDS)
def test_architecture_follows_app_b(name, res, deep, z_dim, g_attn, d_attn, lrs, table):
    cfg = get_config(name)
    ch = 128 if deep else 96
    assert (cfg.resolution, cfg.deep) == (res, deep), f"{name}: App. B, {table}"
    assert cfg.g_widths == tuple(m * ch for m in G_MULT[res]), f"{name}: G widths, App. B {table} (ch = {ch})"
    assert cfg.d_widths == tuple(m * ch for m in D_MULT[res]), f"{name}: D widths, App. B {table} (ch = {ch})"
    assert cfg.z_dim == z_dim, f"{name}: z is {z_dim}-D (App. B: 20 per chunk for BigGAN, 128 for BigGAN-deep)"
    if not deep:
        assert (cfg.z_chunks, cfg.z_chunk_size) == (len(G_MULT[res]), 20), \
            f"{name}: hierarchical z, one 20-D chunk for the linear layer and one per G block (§3, App. B)"
    assert cfg.shared_dim == 128, f"{name}: shared class embedding of 128 dimensions (§3, App. B)"
    assert (cfg.g_attn, cfg.d_attn) == (g_attn, d_attn), f"{name}: non-local block resolution, App. B {table}"


@pytest.mark.parametrize("name, res, deep, z_dim, g_attn, d_attn, lrs, table", PAPER, ids=IDS)
def test_optimisation_follows_app_c(name, res, deep, z_dim, g_attn, d_attn, lrs, table):
    cfg = get_config(name)
    assert (cfg.d_lr, cfg.g_lr) == lrs, (f"{name}: App. C, lr D/G 2e-4/5e-5 for BigGAN and BigGAN-deep-128, "
                                         f"2.5e-5 for both in BigGAN-deep-256/512; got {cfg.d_lr}/{cfg.g_lr}")
    assert (cfg.beta1, cfg.beta2) == (0.0, 0.999), f"{name}: Adam with beta1 = 0, beta2 = 0.999 (App. C)"
    assert cfg.d_steps == 2, f"{name}: two D steps per G step (App. C)"
    assert cfg.batch_size == 2048, f"{name}: batch size 2048 (§3, Table 1's final rows)"
    assert cfg.ema_decay == 0.9999, f"{name}: EMA of G's weights with decay 0.9999 (App. C)"
    assert (cfg.bn_eps, cfg.sn_eps) == (1e-4, 1e-4), f"{name}: BN and SN epsilon raised to 1e-4 (App. C)"
    assert cfg.adam_eps == 1e-6, f"{name}: Adam eps 1e-6 (not stated in the paper; the author's port uses it)"
    assert cfg.loss == "hinge", f"{name}: hinge loss, as in the SA-GAN baseline (§3)"
    if not deep:
        assert cfg.ortho_beta == 1e-4, f"{name}: orthogonal regularization with beta = 1e-4 (§3.1, Eq. 3)"
        assert not cfg.ortho_full, f"{name}: Eq. 3 (off-diagonal only), not Eq. 2 (§3.1)"


@pytest.mark.parametrize("name, g_paper, d_paper", [("biggan-128", 70.4, 88.0), ("biggan-deep-128", 50.4, 34.6)])
def test_parameter_counts_match_the_paper(name, g_paper, d_paper):
    """App. B / §5.1: BigGAN-128 G 70.4M, D 88.0M; BigGAN-deep-128 G 50.4M, D 34.6M. Our BigGAN-deep G is
    50.24M: the released model's output conv maps ch -> ch channels and only 3 are used; ours maps ch -> 3,
    144k parameters fewer (128·125·9), which accounts for the difference."""
    g, d = count_params(get_config(name))
    assert abs(g / 1e6 - g_paper) <= 0.01 * g_paper, f"{name}: G {g / 1e6:.2f}M vs the paper's {g_paper}M (App. B)"
    assert abs(d / 1e6 - d_paper) <= 0.01 * d_paper, f"{name}: D {d / 1e6:.2f}M vs the paper's {d_paper}M (App. B)"
    if name == "biggan-deep-128":
        assert abs(g + 128 * 125 * 9 - 50.4e6) < 0.05e6, "the RGB conv's ch -> ch layout explains the gap"


def test_cifar10_preset_is_studiogans_recipe():
    """The recipe with the published BigGAN CIFAR-10 FID 4.16 (PyTorch-StudioGAN): G 4·96 wide, D 2·96 wide,
    z 80 in 4 chunks, attention at 16x16 in G and D, batch 64, Adam 2e-4 for both with betas (0.5, 0.999),
    5 D steps per G step, random horizontal flips, EMA 0.9999 from step 1000. Ortho reg 1e-4 is our documented
    addition (the paper's §3.1 value)."""
    cfg = get_config("cifar10")
    assert cfg.g_widths == (384,) * 4 and cfg.d_widths == (192,) * 4
    assert (cfg.z_dim, cfg.z_chunks, cfg.g_attn, cfg.d_attn, cfg.batch_size) == (80, 4, 16, 16, 64)
    assert (cfg.g_lr, cfg.d_lr, cfg.beta1, cfg.beta2) == (2e-4, 2e-4, 0.5, 0.999)
    assert cfg.d_steps == 5, "StudioGAN's BigGAN CIFAR-10 takes 5 D steps per G step"
    assert cfg.hflip, "StudioGAN's BigGAN CIFAR-10 trains on randomly flipped images"
    assert (cfg.ema_decay, cfg.ema_start, cfg.ortho_beta) == (0.9999, 1000, 1e-4)
