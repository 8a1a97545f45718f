import pytest
import torch
from hypothesis import given, settings, strategies as st

from nanobiggan import Generator, get_config
from nanobiggan.cbn import ConditionalBatchNorm2d
from nanobiggan.config import PRESETS

TINY = dict(g_ch=8, d_ch=8)


@pytest.mark.parametrize("name", list(PRESETS))
def test_output_shape_every_preset_on_meta(name):
    """Full-size architectures, shapes only: the meta device runs no arithmetic and allocates nothing."""
    cfg = get_config(name)
    with torch.device("meta"):
        G = Generator(cfg)
        x = G(torch.empty(2, cfg.z_dim), torch.zeros(2, dtype=torch.long))
    assert x.shape == (2, 3, cfg.resolution, cfg.resolution)


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("resolution", [32, 64])
def test_real_forward_in_range(deep, resolution):
    cfg = get_config("cifar10-tiny", resolution=resolution, deep=deep, g_attn=16, z_dim=128 if deep else 20 * (len(get_config("cifar10-tiny", resolution=resolution).g_widths)), **TINY)
    G = Generator(cfg)
    x = G(torch.randn(3, cfg.z_dim), torch.tensor([0, 1, 2]))
    assert x.shape == (3, 3, resolution, resolution)
    assert x.abs().max() <= 1 and torch.isfinite(x).all()


def _captured_conditions(G, z, y):
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: seen.__setitem__(n, a[1].clone()))
             for n, m in G.named_modules() if isinstance(m, ConditionalBatchNorm2d)]
    G(z, y)
    for h in hooks:
        h.remove()
    return seen


def test_hierarchical_z_chunks_feed_their_block():
    """§3 skip-z: block i is conditioned on [z chunk i+1, shared(y)]; chunk 0 goes to the linear layer."""
    cfg = get_config("cifar10-tiny", **TINY)
    G = Generator(cfg)
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([3, 7])
    conds = _captured_conditions(G, z, y)
    chunks, e = z.split(cfg.z_chunk_size, 1), G.shared(y)
    for name, c in conds.items():
        i = int(name.split(".")[1])  # blocks.<i>.bnK
        block_index = sum(1 for b in list(G.blocks)[:i] if hasattr(b, "bn1"))
        torch.testing.assert_close(c, torch.cat([chunks[block_index + 1], e], 1))


def test_deep_every_block_gets_whole_z_and_embedding():
    cfg = get_config("cifar10-tiny", deep=True, z_dim=128, **TINY)
    G = Generator(cfg)
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([1, 2])
    conds = _captured_conditions(G, z, y)
    assert len(conds) == 4 * 2 * cfg.n_g_stages  # two bottleneck blocks per stage, four CBNs each
    for c in conds.values():
        torch.testing.assert_close(c, torch.cat([z, G.shared(y)], 1))


def test_deep_block_skip_drops_channels():
    """BigGAN-deep: the skip keeps x[:, :out] (upsampled) — with the residual branch zeroed, output = skip."""
    from nanobiggan.generator import DeepGBlock
    cfg = get_config("cifar10-tiny", deep=True, z_dim=128, **TINY)
    block = DeepGBlock(32, 16, up=True, cfg=cfg).eval()
    torch.nn.init.zeros_(block.conv4.weight), torch.nn.init.zeros_(block.conv4.bias)
    x = torch.randn(2, 32, 4, 4)
    out = block(x, torch.randn(2, cfg.cond_dim))
    torch.testing.assert_close(out, torch.nn.functional.interpolate(x[:, :16], scale_factor=2))


@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1))
def test_orthogonal_init(seed):
    torch.manual_seed(seed)
    G = Generator(get_config("cifar10-tiny", **TINY))
    W = G.blocks[0].conv1.weight.flatten(1)  # (out, in*k*k), out <= in*k*k: orthonormal rows
    torch.testing.assert_close(W @ W.T, torch.eye(W.shape[0]), atol=1e-5, rtol=0)


def test_synthesize_from_embedding_equals_forward():
    cfg = get_config("cifar10-tiny", **TINY)
    G = Generator(cfg).eval()
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([0, 5])
    torch.testing.assert_close(G(z, y), G.synthesize(z, G.shared(y)))


@pytest.mark.parametrize("std", [0.0, 1.0, 0.3])
def test_shared_embedding_init(std):
    """0: orthogonal (App. C), unit-norm rows for 10 classes; std > 0: N(0, std^2) entries, rows of norm
    ~ std * sqrt(shared_dim). Every other weight keeps its orthogonal init either way."""
    cfg = get_config("cifar10-tiny", shared_init_std=std)
    torch.manual_seed(0)
    E = Generator(cfg).shared.weight.detach()
    if std == 0:
        torch.testing.assert_close(E @ E.T, torch.eye(cfg.n_classes), atol=1e-5, rtol=0)
    else:
        assert abs(E.std().item() / std - 1) < 0.1 and abs(E.mean().item()) < 0.1 * std
    with pytest.raises(ValueError, match="shared_init_std"):
        get_config("cifar10-tiny", shared_init_std=-1.0)


# ---- Table 1's ablation switches: hier=False (z at the bottom only), shared=False (SA-GAN's per-class tables)

def test_without_hier_z_feeds_the_linear_layer_only_and_blocks_see_the_class_alone():
    """hier=False (Table 1 before '+Hier.'): the first layer takes all of z; every CBN is conditioned on the
    shared embedding alone, so a change of z reaches the blocks only through the first layer's features."""
    cfg = get_config("cifar10-tiny", hier=False, **TINY)
    G = Generator(cfg)
    assert cfg.z_chunks == 1 and G.linear.in_features == cfg.z_dim and cfg.cond_dim == cfg.shared_dim
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([3, 7])
    conds = _captured_conditions(G, z, y)
    assert conds and all(torch.equal(c, G.shared(y)) for c in conds.values())
    assert all(torch.equal(c, G.shared(y)) for c in _captured_conditions(G, torch.randn(2, cfg.z_dim), y).values())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), y=st.lists(st.integers(0, 9), min_size=2, max_size=5))
def test_without_shared_each_cbn_reads_its_own_class_row(seed, y):
    """shared=False (SA-GAN; Table 1's first rows): no shared embedding; every CBN has its own per-class gain and
    bias tables, and sample i gets BN(x)·(1 + gain[:, y_i]) + bias[:, y_i] (an explicit lookup)."""
    torch.manual_seed(seed)
    cfg = get_config("cifar10-tiny", shared=False, hier=False, **TINY)
    G = Generator(cfg)
    assert G.shared is None and cfg.cond_dim == cfg.n_classes
    cbns = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert all(m.gain.table.shape == (m.bn.num_features, 10) and not m.gain.table.any() for m in cbns)  # 0 at init
    cbn, y = cbns[0], torch.tensor(y)
    with torch.no_grad():
        cbn.gain.table.normal_(), cbn.bias.table.normal_()
    x = torch.randn(len(y), cbn.bn.num_features, 4, 4)
    out = cbn.eval()(x, G.embed(y))
    expected = cbn.bn(x) * (1 + cbn.gain.table.T[y])[:, :, None, None] + cbn.bias.table.T[y][:, :, None, None]
    torch.testing.assert_close(out, expected)


def test_without_shared_the_untrained_g_ignores_the_class_and_interpolates_one_hots():
    """Zero tables at init: G(z, y) does not depend on y (SA-GAN's gain 1, bias 0). The class enters as a one-hot
    vector, so class interpolation (Fig. 8) moves linearly between two classes' table rows."""
    from nanobiggan.sampling import generate, interpolation_inputs, prepare_for_sampling
    cfg = get_config("cifar10-tiny", shared=False, hier=False, **TINY)
    G = prepare_for_sampling(Generator(cfg), n_batches=2, batch_size=8)
    z = torch.randn(1, cfg.z_dim).repeat(3, 1)
    images = G(z, torch.tensor([0, 4, 9]))
    torch.testing.assert_close(images[0], images[1]) and torch.testing.assert_close(images[0], images[2])
    zz, e = interpolation_inputs(G, "class", n_rows=1, steps=3, classes=[2, 5])
    torch.testing.assert_close(e[1], (G.embed(torch.tensor(2)) + G.embed(torch.tensor(5))).float() / 2)
    torch.testing.assert_close(generate(G, zz[:1], e[:1]), generate(G, zz[:1], torch.tensor([2])))


def test_ablation_switches_refused_where_they_make_no_sense():
    with pytest.raises(ValueError, match="set hier=false too"):
        get_config("cifar10-tiny", shared=False)
    with pytest.raises(ValueError, match="BigGAN-deep always conditions"):
        get_config("cifar10-tiny", deep=True, z_dim=128, hier=False)
