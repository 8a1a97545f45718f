"""Loading the released BigGAN-deep layout, checked against the reference implementation itself.

The reference (`pytorch-pretrained-biggan`, a test dependency) is built with random weights and random
BN statistics (nothing is downloaded), saved in its own format, read back by its own `from_pretrained`,
and loaded through `nanobiggan.lab.pretrained.load`; outputs must agree to 1e-4 for the same z, class and
truncation. All three layouts are checked at channel width 16 (every block, channel drop and the
attention position as released, at a fraction of the cost); the released width at 128, and (marked slow)
at 256 and 512.
"""
import importlib
import json
import math
import sys
import types
import urllib.error

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobiggan import Generator, get_config
from nanobiggan.lab import pretrained as P
from nanobiggan.lab.presets import PAPER_PARAMS
from nanobiggan.spectral_norm import SNConv2d
from nanobiggan.truncation import tfhub_truncated_normal

TOL = 1e-4
# 1 and 0.4: stored; 0.333: between 0.32 and 0.34, 65% of the way (the reference's swapped weights show);
# 0.14: stored, but 0.14 / 0.02 = 7.000000000000001 makes the reference interpolate (towards 0.16).
TRUNCATIONS = (1.0, 0.4, 0.333, 0.14)


# ----------------------------------------------------------------------------- a random reference model
def _importable(name):
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def ppb():
    """The reference package. Its file_utils imports boto3/requests for downloads these tests never make;
    where they are absent (CI installs the package with --no-deps) empty stand-ins let it import."""
    stubs = {name: types.ModuleType(name) for name in ("boto3", "botocore", "botocore.exceptions", "requests")}
    stubs["botocore.exceptions"].ClientError = type("ClientError", (Exception,), {})
    added = [name for name in stubs if not _importable(name)]
    sys.modules.update({name: stubs[name] for name in added})
    try:
        return pytest.importorskip("pytorch_pretrained_biggan")
    finally:
        for name in added:
            del sys.modules[name]


@torch.no_grad()
def _randomise_(model, gen):
    """Random everything, so no mapping error can hide behind an identity: SN u, v perturbed off their
    power-iteration values (so σ = uᵀWv is not the true σ0), random BN statistics for all 51 truncations,
    random biases and class embeddings, attention gain γ nonzero."""
    randn = lambda *shape: torch.randn(*shape, generator=gen)
    for m in model.modules():
        if hasattr(m, "weight_orig"):
            W = m.weight_orig.flatten(1)
            u = F.normalize(randn(W.shape[0]), dim=0)
            for _ in range(3):
                v = F.normalize(W.T @ u, dim=0)
                u = F.normalize(W @ v, dim=0)
            m.weight_u.copy_(F.normalize(u + 0.3 * randn(u.numel()) / math.sqrt(u.numel()), dim=0))
            m.weight_v.copy_(F.normalize(v + 0.3 * randn(v.numel()) / math.sqrt(v.numel()), dim=0))
        if hasattr(m, "running_means"):
            m.running_means.copy_(0.3 * randn(*m.running_means.shape))
            m.running_vars.copy_(0.5 + 1.5 * torch.rand(m.running_vars.shape, generator=gen))
        if isinstance(getattr(m, "bias", None), nn.Parameter):
            m.bias.copy_(0.1 * randn(m.bias.numel()))
        if hasattr(m, "gamma"):
            m.gamma.fill_(0.7)
    model.embeddings.weight.copy_(randn(*model.embeddings.weight.shape))
    model.generator.bn.weight.copy_(0.25 + 0.5 * torch.rand(model.generator.bn.weight.shape, generator=gen))


def _reference(ppb, tmp_path_factory, resolution, channel_width=None):
    """(reference model read back by its own from_pretrained, directory in its format) with random weights."""
    from pytorch_pretrained_biggan import convert_tf_to_pytorch as conv
    released = {128: conv.BigGAN128, 256: conv.BigGAN256, 512: conv.BigGAN512}[resolution]
    cfg = ppb.BigGANConfig.from_dict({**released.to_dict(), "channel_width": channel_width or 128})
    torch.manual_seed(resolution)  # the reference's own init uses the global RNG
    model = ppb.BigGAN(cfg)
    _randomise_(model, torch.Generator().manual_seed(resolution + 1))
    folder = tmp_path_factory.mktemp(f"biggan-deep-{resolution}-ch{cfg.channel_width}")
    torch.save(model.state_dict(), folder / P.WEIGHTS_NAME)
    (folder / P.CONFIG_NAME).write_text(cfg.to_json_string())
    return ppb.BigGAN.from_pretrained(str(folder)).eval(), folder


@pytest.fixture(scope="module")
def narrow(ppb, tmp_path_factory):
    """Released layouts at channel width 16: (reference, its directory, our G loaded from it), built once.
    Tests share G and set its truncation themselves."""
    cache = {}

    def get(resolution):
        if resolution not in cache:
            ref, folder = _reference(ppb, tmp_path_factory, resolution, channel_width=16)
            cache[resolution] = ref, folder, P.load(folder, truncation=1.0)[0]
        return cache[resolution]
    return get


@torch.no_grad()
def _max_diff(ref, G, truncation, n, seed=0):
    """max |ours - reference| for n samples of the TF-Hub convention z = t·truncnorm(-2, 2)."""
    gen = torch.Generator().manual_seed(seed)
    z = tfhub_truncated_normal((n, 128), truncation, generator=gen)
    y = torch.randint(0, 1000, (n,), generator=gen)
    theirs = ref(z, F.one_hot(y, 1000).float(), truncation)
    ours = G(z, y)
    assert ours.shape == theirs.shape == (n, 3, G.cfg.resolution, G.cfg.resolution)
    # Not trivially equal: an unsaturated image with real spread (tanh at ±1 would hide errors).
    spread, saturated = theirs.std().item(), (theirs.abs() > 0.99).float().mean().item()
    assert spread > 0.05 and saturated < 0.05, f"degenerate reference output: std {spread}, {saturated:.0%} at ±1"
    return (ours - theirs).abs().max().item(), ours


# ----------------------------------------------------------------------------- equivalence to the reference
def test_matches_reference_at_several_truncations(narrow):
    ref, folder, G = narrow(128)
    assert not G.training and G.cfg.name == "biggan-deep-128"
    outputs = []
    for t in TRUNCATIONS:
        diff, out = _max_diff(ref, P.set_truncation(G, t), t, n=2)
        assert diff <= TOL, f"truncation {t}: max |ours - reference| = {diff:.2e}"
        outputs.append(out)
    assert (outputs[0] - outputs[2]).abs().mean() > 1e-2  # the truncation (z and BN stats) matters


@pytest.mark.parametrize("resolution", [256, 512])
def test_matches_reference_at_256_and_512_layouts(narrow, resolution):
    ref, folder, G = narrow(resolution)
    assert G.cfg.name == f"biggan-deep-{resolution}"
    diff, _ = _max_diff(ref, P.set_truncation(G, 0.333), 0.333, n=1)
    assert diff <= TOL, f"max |ours - reference| = {diff:.2e}"


def test_between_stored_values_the_reference_interpolation_matters(narrow):
    """Plain linear interpolation at 0.333 (= 0.32 + 0.65·0.02) misses the reference by far more than TOL,
    so the equivalence tests do see the statistics."""
    ref, _, G = narrow(128)
    linear = {name: tuple((s[16] * 0.35 + s[17] * 0.65).expand(51, -1) for s in pair)
              for name, pair in G.truncation_stats.items()}
    assert _max_diff(ref, P.set_truncation(G, 0.333, stats=linear), 0.333, n=1)[0] > 100 * TOL


def test_load_at_a_truncation_equals_set_truncation_later(narrow):
    _, folder, G = narrow(128)
    fresh, _ = P.load(folder, truncation=0.333)
    P.set_truncation(G, 0.333)
    for (k, a), b in zip(fresh.state_dict().items(), G.state_dict().values()):
        assert torch.equal(a, b), k


def test_output_layer_keeps_the_full_matrix_sigma(narrow):
    """conv_to_rgb: the reference divides all ch rows by σ of the full matrix and keeps 3; so must we."""
    ref, _, G = narrow(128)
    rgb = ref.generator.conv_to_rgb
    W = rgb.weight_orig.detach()
    expected = W[:3] / (rgb.weight_u @ W.flatten(1) @ rgb.weight_v)
    torch.testing.assert_close(G.out_conv.sn_weight(), expected, rtol=1e-5, atol=1e-7)


@settings(max_examples=20)
@given(rows=st.integers(3, 9), cin=st.integers(1, 4), k=st.sampled_from([1, 3]), seed=st.integers(0, 2**31 - 1))
def test_rgb_rows_fold_sigma_exactly(rows, cin, k, seed):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, cin, k, k, generator=gen)
    u = F.normalize(W.flatten(1) @ torch.randn(cin * k * k, generator=gen), dim=0)  # σ = uᵀWv > 0
    v = F.normalize(W.flatten(1).T @ u + 0.1 * torch.randn(cin * k * k, generator=gen), dim=0)
    Wp, u0, v0 = P._rgb_rows(W, u, v)
    conv = SNConv2d(cin, 3, k).eval()  # must compute Wp / (u0ᵀ Wp v0) = W[:3] / (uᵀ W v)
    with torch.no_grad():
        conv.weight.copy_(Wp), conv.u.copy_(u0[None]), conv.v.copy_(v0[None])
    torch.testing.assert_close(conv.sn_weight(), W[:3] / (u @ W.flatten(1) @ v), rtol=1e-5, atol=1e-6)


@settings(max_examples=40)
@given(t=st.one_of(st.floats(0, 1, exclude_min=True), st.sampled_from([k / 50 for k in range(1, 51)])),
       seed=st.integers(0, 2**31 - 1))
def test_bn_statistics_equal_the_reference_batchnorm(ppb, t, seed):
    """set_truncation writes exactly the statistics the reference's BigGANBatchNorm uses at t."""
    from pytorch_pretrained_biggan.model import BigGANBatchNorm
    gen = torch.Generator().manual_seed(seed)
    theirs = BigGANBatchNorm(5, n_stats=51, eps=1e-4, conditional=False)
    with torch.no_grad():
        theirs.running_means.copy_(torch.randn(51, 5, generator=gen))
        theirs.running_vars.copy_(0.1 + torch.rand(51, 5, generator=gen))
        theirs.weight.fill_(1.0), theirs.bias.zero_()
    holder = nn.Module()
    holder.bn = nn.BatchNorm2d(5, eps=1e-4, affine=False).eval()
    P.set_truncation(holder, t, stats={"bn": (theirs.running_means, theirs.running_vars)})
    x = torch.randn(2, 5, 3, 3, generator=gen)
    torch.testing.assert_close(holder.bn(x), theirs(x, t), rtol=1e-5, atol=1e-5)


def test_released_width_128_matches_and_has_the_paper_parameter_count(ppb, tmp_path_factory):
    ref, folder = _reference(ppb, tmp_path_factory, 128)
    G, cfg = P.load(str(folder), truncation=0.333)
    n_params = sum(p.numel() for p in G.parameters())
    assert abs(n_params / 1e6 - PAPER_PARAMS["biggan-deep-128"][0]) <= 0.01 * PAPER_PARAMS["biggan-deep-128"][0]
    assert _max_diff(ref, G, 0.333, n=1)[0] <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("resolution", [256, 512])
def test_released_width_256_512_match(ppb, tmp_path_factory, resolution):
    ref, folder = _reference(ppb, tmp_path_factory, resolution)
    G, _ = P.load(folder, truncation=0.333)
    assert _max_diff(ref, G, 0.333, n=1)[0] <= TOL


# ----------------------------------------------------------------------------- the inverse: our G in their format
def _random_stats(G, gen, n_stats=51):
    """Random per-truncation statistics for every BatchNorm of G: (means, vars), each (n_stats C)."""
    return {name: (0.3 * torch.randn(n_stats, G.get_submodule(name).num_features, generator=gen),
                   0.5 + 1.5 * torch.rand(n_stats, G.get_submodule(name).num_features, generator=gen))
            for name in P._bn_names(G)}


@pytest.fixture(scope="module")
def ours_narrow():
    """Our randomly initialised biggan-deep-128 at width 16, with nothing left at an identity: biases, the
    attention gain, the output BN's affine, and SN vectors perturbed off their converged values (σ = uᵀWv is
    then not the true σ0, so u and v must travel exactly)."""
    torch.manual_seed(7)
    G = Generator(get_config("biggan-deep-128", g_ch=16)).eval()
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias") or name == "out_bn.weight":
                p.copy_((0.75 if name == "out_bn.weight" else 0) + 0.1 * torch.randn(p.shape, generator=gen))
        for m in G.modules():
            if hasattr(m, "gamma"):
                m.gamma.fill_(0.7)
            if isinstance(m, P.SpectralNorm):
                m.u.copy_(F.normalize(m.u + 0.3 * torch.randn(m.u.shape, generator=gen) / math.sqrt(m.u.shape[1]), dim=1))
                m.v.copy_(F.normalize(m.v + 0.3 * torch.randn(m.v.shape, generator=gen) / math.sqrt(m.v.shape[1]), dim=1))
    return G


@settings(max_examples=8, deadline=None)
@given(t=st.one_of(st.floats(0.01, 1), st.sampled_from([0.14, 0.4, 1.0])), seed=st.integers(0, 2**31 - 1))
def test_convert_inverts_to_reference(ours_narrow, t, seed):
    """convert(to_reference(G, stats)) computes what G computes with the same statistics, at any truncation
    (the property tutorial 13 relies on to make a released-format folder offline), and G is left unchanged."""
    G, gen = ours_narrow, torch.Generator().manual_seed(seed)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    stats = _random_stats(G, gen)
    back, cfg = P.convert(*P.to_reference(G, stats))
    assert cfg.name == G.cfg.name and cfg.g_ch == G.cfg.g_ch
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())
    z, y = tfhub_truncated_normal((2, 128), t, generator=gen), torch.randint(0, 1000, (2,), generator=gen)
    with torch.no_grad():
        ours = P.set_truncation(G, t, stats)(z, y)
        theirs = P.set_truncation(back, t)(z, y)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    assert ours.std() > 0.05


def test_saved_reference_is_read_by_the_reference_itself(ppb, ours_narrow, tmp_path):
    """save_reference writes files pytorch-pretrained-biggan reads with every tensor in place (its own loader
    is not strict, so names and shapes are checked too) and computes our outputs from."""
    G, gen = ours_narrow, torch.Generator().manual_seed(3)
    stats = _random_stats(G, gen)
    assert P.save_reference(G, tmp_path / "deep", stats) == tmp_path / "deep"
    ref = ppb.BigGAN.from_pretrained(str(tmp_path / "deep")).eval()
    saved = torch.load(tmp_path / "deep" / P.WEIGHTS_NAME, weights_only=True)
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in ref.state_dict().items()}
    for t in (0.333, 1.0):
        assert _max_diff(ref, P.set_truncation(G, t, stats), t, n=2)[0] <= TOL


def test_to_reference_defaults_to_the_loaded_or_current_statistics(narrow, ours_narrow):
    _, _, loaded = narrow(128)
    ref, _ = P.to_reference(loaded)  # the 51 sets load() kept on G
    assert torch.equal(ref["generator.layers.0.bn_0.running_means"], loaded.truncation_stats["blocks.0.bn1.bn"][0])
    ref, config = P.to_reference(ours_narrow)  # no stored sets: the current statistics at every truncation
    assert config["n_stats"] == 51 and torch.equal(ref["generator.bn.running_vars"][17], ours_narrow.out_bn.running_var)


def test_to_reference_refuses_what_the_reference_cannot_hold(ours_narrow):
    G = ours_narrow
    stats = _random_stats(G, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="BigGAN-deep Generator at 128, 256 or 512"):
        P.to_reference(Generator(get_config("cifar10-tiny")))
    with pytest.raises(ValueError, match="shared_dim == z_dim"):
        with torch.device("meta"):
            P.to_reference(Generator(get_config("biggan-deep-128", g_ch=16, shared_dim=64)))
    with pytest.raises(ValueError, match=r"missing \['out_bn'\]"):
        P.to_reference(G, {k: v for k, v in stats.items() if k != "out_bn"})
    with pytest.raises(ValueError, match=r"shape \(51, 5\): need \(n_stats 16\)"):
        P.to_reference(G, {**stats, "out_bn": (torch.zeros(51, 5), torch.ones(51, 5))})
    with pytest.raises(ValueError, match="> 0"):
        P.to_reference(G, {**stats, "out_bn": (torch.zeros(51, 16), torch.zeros(51, 16))})
    with pytest.raises(ValueError, match="same number of stored truncations"):
        P.to_reference(G, {**stats, "out_bn": (torch.zeros(11, 16), torch.ones(11, 16))})


def test_cached_names_only_complete_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBIGGAN_CACHE", str(tmp_path))
    assert P.cached("biggan-deep-128") is None
    (tmp_path / "biggan-deep-128").mkdir()
    (tmp_path / "biggan-deep-128" / P.CONFIG_NAME).write_text("{}")
    assert P.cached("biggan-deep-128") is None  # half a download is not the weights
    (tmp_path / "biggan-deep-128" / P.WEIGHTS_NAME).write_bytes(b"")
    assert P.cached("biggan-deep-128") == tmp_path / "biggan-deep-128"
    with pytest.raises(ValueError, match="biggan-deep-256"):
        P.cached("biggan-128")


# ----------------------------------------------------------------------------- strictness and bad input
def test_every_tensor_must_map(narrow):
    ref, folder, G = narrow(128)
    state, config = dict(ref.state_dict()), json.loads((folder / P.CONFIG_NAME).read_text())
    with torch.device("meta"):
        assert set(G.state_dict()) == set(Generator(get_config("biggan-deep-128", g_ch=16)).state_dict())
    with pytest.raises(ValueError, match="generator.layers.3.conv_2.weight_v"):
        P.convert({k: v for k, v in state.items() if k != "generator.layers.3.conv_2.weight_v"}, config)
    with pytest.raises(ValueError, match="generator.extra.weight"):
        P.convert({**state, "generator.extra.weight": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match="shape mismatches .*out_bn.weight"):
        P.convert({**state, "generator.bn.weight": torch.zeros(7)}, config)


def test_config_that_our_presets_cannot_hold_is_refused(narrow):
    ref, folder, _ = narrow(128)
    config = json.loads((folder / P.CONFIG_NAME).read_text())
    with pytest.raises(ValueError, match="128, 256 and 512"):
        P.convert(ref.state_dict(), {**config, "output_dim": 64})
    with pytest.raises(ValueError, match="attention before layer"):
        P.convert(ref.state_dict(), {**config, "attention_layer_position": 6})
    with pytest.raises(ValueError, match="layers"):
        P.convert(ref.state_dict(), {**config, "layers": config["layers"][:-1]})


@pytest.mark.parametrize("t", [0, -0.5, 1.01, float("nan"), True, "0.4"])
def test_bad_truncation(t):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        P.interpolate_stats(torch.zeros(51, 2), t)


def test_set_truncation_needs_stats():
    with pytest.raises(ValueError, match="load"):
        P.set_truncation(nn.Module(), 0.5)


def test_directory_and_name_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        P.load(tmp_path, truncation=0.5)
    with pytest.raises(ValueError, match="biggan-deep-128, biggan-deep-256, biggan-deep-512"):
        P.load("biggan-deep-1024", truncation=0.5)


def test_offline_download_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    def offline(url, dst):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(P, "_download", offline)
    monkeypatch.setenv("NANOBIGGAN_CACHE", str(tmp_path))
    with pytest.raises(ConnectionError) as err:
        P.load("biggan-deep-256", truncation=0.4)
    msg = str(err.value)
    for f in (P.WEIGHTS_NAME, P.CONFIG_NAME):
        assert P.URLS["biggan-deep-256"][f] in msg and str(tmp_path / "biggan-deep-256" / f) in msg
    assert "\n" not in msg and not (tmp_path / "biggan-deep-256").exists()  # one line; no empty folder left


def test_a_cached_name_loads_without_downloading(narrow, tmp_path, monkeypatch):
    _, folder, _ = narrow(128)
    cached = tmp_path / "biggan-deep-128"
    cached.mkdir()
    for f in (P.WEIGHTS_NAME, P.CONFIG_NAME):
        (cached / f).write_bytes((folder / f).read_bytes())
    monkeypatch.setattr(P, "_download", lambda url, dst: pytest.fail(f"downloaded {url}"))
    monkeypatch.setenv("NANOBIGGAN_CACHE", str(tmp_path))
    G, cfg = P.load("biggan-deep-128", truncation=0.5)
    assert cfg.g_ch == 16 and cfg.resolution == 128


# ----------------------------------------------------------------------------- ImageNet class names
def test_class_list_is_ilsvrc2012_in_index_order():
    names, rows = P.imagenet_classes(), P._classes()
    assert len(names) == len(set(names)) == 1000
    wnids = [w for w, _, _ in rows]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000  # ILSVRC-2012 ids are the sorted wnids
    anchors = {0: ("n01440764", "tench"), 1: ("n01443537", "goldfish"), 207: ("n02099601", "golden retriever"),
               933: ("n07697313", "cheeseburger"), 999: ("n15075141", "toilet tissue")}
    for i, (wnid, name) in anchors.items():
        assert rows[i][:2] == (wnid, name)


def test_every_id_name_and_wnid_maps_back():
    for i, (wnid, name, _) in enumerate(P._classes()):
        assert P.imagenet_class(i) == P.imagenet_class(str(i)) == P.imagenet_class(name) == i
        assert P.imagenet_class(wnid) == i


@pytest.mark.parametrize("query, expected", [
    ("golden retriever", 207), ("Golden_Retriever", 207), ("  golden   retriever ", 207), ("golden retr", 207),
    ("Tinca tinca", 0), ("white shark", 2), ("cheeseburg", 933), ("Cardigan", 264), ("cardigan", 474),
    ("crane bird", 134), ("crane", 517), (torch.tensor(5).item(), 5)])
def test_lookup(query, expected):
    assert P.imagenet_class(query) == expected


@settings(max_examples=30)
@given(i=st.integers(0, 999), flips=st.lists(st.booleans(), min_size=40, max_size=40))
def test_lookup_ignores_case_when_unambiguous(i, flips):
    name = P.imagenet_classes()[i]
    mixed = "".join(c.upper() if f else c.lower() for c, f in zip(name, flips + [False] * len(name)))
    owners = [j for j, (w, n, syn) in enumerate(P._classes()) if name.lower() in [s.lower() for s in (w, n, *syn)]]
    if len(owners) == 1:
        assert P.imagenet_class(mixed) == i


@pytest.mark.parametrize("query, match", [
    ("CARDIGAN", r"264 \(Cardigan\).*474 \(cardigan\)"), ("golden retreiver", "golden retriever"),
    ("gold", "matches .* ImageNet classes"), (1000, "out of range"), (-1, "out of range")])
def test_lookup_errors_list_candidates(query, match):
    with pytest.raises(ValueError, match=match):
        P.imagenet_class(query)


@pytest.mark.parametrize("query", [None, 2.5, "", True])
def test_lookup_type_errors(query):
    with pytest.raises(TypeError):
        P.imagenet_class(query)


def test_sample_cli_with_pretrained_dir_and_class_names(ppb, tmp_path_factory, tmp_path):
    """sample.py --pretrained DIR --truncation 0.4 --class 207 goldfish writes a grid from the released layout."""
    import sys
    from pathlib import Path

    from PIL import Image
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import sample
    _, folder = _reference(ppb, tmp_path_factory, 128, channel_width=16)
    out = tmp_path / "grid.png"
    sample.main(["--pretrained", str(folder), "--truncation", "0.4", "--class", "207", "goldfish",
                 "--n", "2", "--out", str(out)])
    assert Image.open(out).size == (2 * 128 + 3 * 2, 2 * 128 + 3 * 2)
