import copy

import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobiggan import Generator, get_config
from nanobiggan.ema import standing_stats
from nanobiggan.sampling import class_sheet_inputs, generate, interpolation_inputs, prepare_for_sampling
from nanobiggan.truncation import truncated_normal


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    cfg = get_config("cifar10-tiny", g_ch=2)  # the tiny CPU preset, narrowed further: tests stay fast
    G = Generator(cfg)
    n = 8
    standing_stats(G, lambda: (torch.randn(n, cfg.z_dim), torch.randint(cfg.n_classes, (n,))), n_batches=2)
    assert not G.training
    return G


# ---- class_sheet_inputs

@given(z_dim=st.integers(1, 8), n_classes=st.integers(1, 30), per_class=st.integers(1, 5),
       threshold=st.one_of(st.none(), st.floats(0.1, 2.0)), seed=st.integers(0, 2**31))
def test_class_sheet_columns_share_z_rows_share_y(z_dim, n_classes, per_class, threshold, seed):
    z, y = class_sheet_inputs(z_dim, n_classes, per_class=per_class, threshold=threshold, seed=seed)
    rows = n_classes if n_classes <= 10 else 10
    z, y = rearrange(z, "(r c) d -> r c d", r=rows), rearrange(y, "(r c) -> r c", r=rows)
    ref = truncated_normal((per_class, z_dim), threshold, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(z, ref.expand(rows, -1, -1))  # column j: one z in every row
    assert (y == y[:, :1]).all()  # row r: one class
    expected = torch.arange(n_classes) if n_classes <= 10 else torch.linspace(0, n_classes - 1, 10).round().long()
    assert torch.equal(y[:, 0], expected) and len(set(y[:, 0].tolist())) == rows
    if threshold is not None:
        assert z.abs().max() <= threshold


@given(per_class=st.integers(1, 5), threshold=st.one_of(st.none(), st.floats(0.02, 1.0)), seed=st.integers(0, 2**31))
def test_class_sheet_tfhub_convention_scales_a_truncnorm_at_2(per_class, threshold, seed):
    """tfhub=True (the released weights): z = t · truncnorm(-2, 2) per column, t = 1 without a threshold."""
    z, _ = class_sheet_inputs(6, 10, classes=[3, 4], per_class=per_class, threshold=threshold, seed=seed, tfhub=True)
    t = 1.0 if threshold is None else threshold
    ref = t * truncated_normal((per_class, 6), 2.0, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(z, ref.repeat(2, 1)) and z.abs().max() <= 2 * t


def test_class_sheet_explicit_classes_seed_and_errors():
    z, y = class_sheet_inputs(4, 10, classes=[7, 2], per_class=3, seed=1)
    assert y.tolist() == [7, 7, 7, 2, 2, 2]
    assert torch.equal(z, class_sheet_inputs(4, 10, classes=[7, 2], per_class=3, seed=1)[0])
    assert not torch.equal(z, class_sheet_inputs(4, 10, classes=[7, 2], per_class=3, seed=2)[0])
    with pytest.raises(ValueError, match="out of range"):
        class_sheet_inputs(4, 10, classes=[10])
    with pytest.raises(ValueError, match="empty"):
        class_sheet_inputs(4, 10, classes=[])
    with pytest.raises(ValueError, match="positive"):
        class_sheet_inputs(4, 10, threshold=0.0)


# ---- interpolation_inputs

@settings(max_examples=15)
@given(mode=st.sampled_from(["z", "class"]), n_rows=st.integers(1, 4), steps=st.integers(2, 6),
       threshold=st.one_of(st.none(), st.floats(0.2, 2.0)), seed=st.integers(0, 2**31),
       classes=st.one_of(st.none(), st.lists(st.integers(0, 9), min_size=2, max_size=4)))
def test_interpolation_endpoints_and_linearity(G, mode, n_rows, steps, threshold, seed, classes):
    z, e = interpolation_inputs(G, mode, n_rows=n_rows, steps=steps, threshold=threshold, seed=seed, classes=classes)
    z, e = (rearrange(a, "(r s) d -> r s d", r=n_rows) for a in (z, e))
    assert z.shape == (n_rows, steps, G.cfg.z_dim) and e.shape == (n_rows, steps, G.cfg.shared_dim)
    moving, fixed = (z, e) if mode == "z" else (e, z)
    assert (fixed == fixed[:, :1]).all()
    t = torch.linspace(0, 1, steps)[None, :, None]
    a, b = moving[:, :1], moving[:, -1:]
    torch.testing.assert_close(moving, (1 - t) * a + t * b)  # every column on the segment a -> b
    with torch.no_grad():
        table = G.shared.weight
        # endpoint embeddings are exactly rows of the shared table (= G.shared(y) of the endpoint classes)
        ends = [e[:, 0]] + ([e[:, -1]] if mode == "class" else [])
        for end in ends:
            assert all((table == row).all(1).any() for row in end)
        if classes is not None:
            r = torch.arange(n_rows)
            ids = torch.tensor(classes)
            assert torch.equal(e[:, 0], G.shared(ids[r % len(ids)]))
            if mode == "class":
                assert torch.equal(e[:, -1], G.shared(ids[(r + 1) % len(ids)]))
        elif mode == "class":  # default pairs are two different classes
            assert not (e[:, 0] == e[:, -1]).all(1).any()
    if threshold is not None:
        assert z.abs().max() <= threshold


def test_interpolation_bad_input(G):
    with pytest.raises(ValueError, match="'z'.*'class'"):
        interpolation_inputs(G, "w")
    with pytest.raises(ValueError, match="at least 2 class"):
        interpolation_inputs(G, "class", classes=[3])
    with pytest.raises(ValueError, match="out of range"):
        interpolation_inputs(G, "z", classes=[12])
    with pytest.raises(ValueError, match="steps"):
        interpolation_inputs(G, "z", steps=1)


# ---- the sampling protocol

def test_prepare_for_sampling_is_the_documented_recipe(G):
    """prepare_for_sampling = standing_stats over n_batches of batch_size inputs: z truncated at the threshold and
    uniform classes, drawn (z first) from a CPU generator seeded seed + 1; G left in eval mode, the global RNG
    untouched."""
    A, B = copy.deepcopy(G).train(), copy.deepcopy(G)
    rng = torch.get_rng_state()
    assert prepare_for_sampling(A, 0.5, n_batches=3, seed=7, batch_size=8) is A and not A.training
    assert torch.equal(rng, torch.get_rng_state())
    gen = torch.Generator().manual_seed(8)
    standing_stats(B, lambda: (truncated_normal((8, G.cfg.z_dim), 0.5, generator=gen),
                               torch.randint(0, G.cfg.n_classes, (8,), generator=gen)), n_batches=3)
    for (k, a), b in zip(A.state_dict().items(), B.state_dict().values()):
        assert torch.equal(a, b), k
    C = prepare_for_sampling(copy.deepcopy(G), 1.0, n_batches=3, seed=7, batch_size=8)  # another threshold
    assert not torch.equal(C.out_bn.running_var, A.out_bn.running_var)


# ---- generate

def test_generate_in_chunks_equals_one_batch(G):
    z, y = class_sheet_inputs(G.cfg.z_dim, G.cfg.n_classes, classes=[0, 9], per_class=3, seed=3)
    with torch.no_grad():
        ref = G(z, y)
    for batch_size in (1, 4, 6, 100):  # single images, uneven chunks, exact fit, one oversized chunk
        out = generate(G, z, y, batch_size=batch_size)
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32 and out.device.type == "cpu"
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not G.training


def test_generate_with_embeddings_and_mode_untouched(G):
    z, y = class_sheet_inputs(G.cfg.z_dim, G.cfg.n_classes, classes=[1, 4], per_class=2)
    with torch.no_grad():
        e = G.shared(y)
    torch.testing.assert_close(generate(G, z, e, batch_size=3), generate(G, z, y, batch_size=3))
    G_train = copy.deepcopy(G).train()  # a copy: training forwards change BN/SN buffers
    generate(G_train, z, y)
    assert G_train.training  # generate leaves the mode to the caller
    with pytest.raises(ValueError, match="as many z as y"):
        generate(G, z, y[:-1])
    with pytest.raises(ValueError, match="batch_size"):
        generate(G, z, y, batch_size=0)
