"""nanobiggan/collapse.py: σ0 read from every SN layer, and the collapse detector's two §4 rules against explicit
references, its warm-up, its resume."""
import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobiggan import Generator, get_config
from nanobiggan.collapse import CollapseDetector, sigma0
from nanobiggan.spectral_norm import spectral_modules


# ---- sigma0

def test_sigma0_reads_the_sv_buffers():
    torch.manual_seed(0)
    cfg = get_config("cifar10-tiny", g_ch=2)
    G = Generator(cfg).train()
    G(torch.randn(4, cfg.z_dim), torch.randint(cfg.n_classes, (4,)))  # a training forward fills sv
    layers = spectral_modules(G)
    with torch.no_grad():
        for i, m in enumerate(layers.values()):
            m.sv[0] = 0.5 + i  # distinct known values: the keys cannot be mixed up unnoticed
    s = sigma0(G)
    assert list(s) == list(layers) and "blocks.0.conv1" in s and "linear" in s
    assert s == {name: 0.5 + i for i, name in enumerate(layers)}
    assert all(type(v) is float for v in s.values())


# ---- CollapseDetector

def feed(det, d_losses=(), sigmas=(), start=0):
    """Run det over parallel series; returns {step: warnings} for the steps that warned."""
    fired = {}
    n = max(len(d_losses), len(sigmas))
    for i in range(n):
        losses = {"d_loss": d_losses[i]} if i < len(d_losses) else {}
        sig = {"G.blocks.2.conv1": sigmas[i]} if i < len(sigmas) else {}
        w = det.update(start + i, losses, sig)
        if w:
            fired[start + i] = w
    return fired


def stable(n, level, noise, seed=0):
    rng = random.Random(seed)
    return [level + rng.uniform(-noise, noise) for _ in range(n)]


def test_sigma0_explosion_fires_once_per_excursion():
    det = CollapseDetector(window=20)
    sig = stable(40, 2.0, 0.1) + [9.0, 12.0, 15.0]
    fired = feed(det, sigmas=sig)
    assert list(fired) == [40] and det.collapsed
    (msg,) = fired[40]
    assert "step 40" in msg and "G.blocks.2.conv1" in msg and "9" in msg and "20 logs" in msg


def test_d_loss_spike_and_drop_fire_but_a_single_blip_does_not():
    base = stable(30, 1.0, 0.1)
    blip = CollapseDetector(window=20)
    assert feed(blip, base + [6.0] + stable(10, 1.0, 0.1, seed=1)) == {} and not blip.collapsed
    spike = CollapseDetector(window=20)
    fired = feed(spike, base + [6.0, 5.5, 5.0])
    assert list(fired) == [31] and "spiked" in fired[31][0] and spike.collapsed
    drop = CollapseDetector(window=20)
    fired = feed(drop, base + [0.01] * 10)
    assert list(fired) == [31] and "dropped" in fired[31][0]


def test_persist_one_is_the_single_value_rule():
    det = CollapseDetector(window=20, persist=1)
    assert list(feed(det, stable(30, 1.0, 0.1) + [6.0])) == [30]


@settings(max_examples=50)
@given(hist=st.lists(st.floats(0.01, 100), min_size=5, max_size=5), value=st.floats(0.01, 1000),
       factor=st.floats(1.5, 5))
def test_sigma_rule_matches_numpy_reference(hist, value, factor):
    det = CollapseDetector(window=5, sigma_factor=factor)
    fired = feed(det, sigmas=hist + [value])
    assert bool(fired) == (value > factor * np.median(hist))


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=10))
def test_no_warnings_during_warm_up(values):
    det = CollapseDetector(window=10)
    assert feed(det, [d for d, _ in values], [s for _, s in values]) == {} and not det.collapsed


@given(level=st.floats(0.1, 10), sign=st.sampled_from([1, -1]), frac=st.floats(0, 0.1),
       noise=st.lists(st.floats(-1, 1), min_size=30, max_size=80), window=st.integers(3, 25))
def test_stable_series_with_bounded_noise_never_fire(level, sign, frac, noise, window):
    # Noise within ±10% of the level: 3x the median for σ0, and 3 x (≥ 10% of |median|) for the loss,
    # are out of its reach whatever the pattern (see _median_and_spread's floor).
    series = [level * (1 + frac * e) for e in noise]
    det = CollapseDetector(window=window)
    assert feed(det, [sign * v for v in series], series) == {} and not det.collapsed


def test_realistic_gaussian_noise_stays_quiet():
    rng = random.Random(0)
    det = CollapseDetector()
    for step in range(2000):
        sig = {f"G.l{i}": (1 + i) * (1 + 0.05 * rng.gauss(0, 1)) for i in range(10)}
        assert det.update(step, {"d_loss": 1.0 + 0.15 * rng.gauss(0, 1), "g_loss": rng.gauss(0, 5)}, sig) == []


def test_non_finite_values_warn_at_once():
    det = CollapseDetector()
    assert len(det.update(0, {"d_loss": float("nan")}, {"D.linear": float("inf")})) == 2 and det.collapsed


@settings(max_examples=10)
@given(split=st.integers(0, 60))
def test_state_dict_resume_gives_the_same_warnings(split):
    d = stable(40, 1.0, 0.1) + [7.0] * 5 + stable(15, 1.0, 0.1, seed=2)
    s = stable(35, 2.0, 0.1, seed=3) + [20.0] * 25
    whole = CollapseDetector(window=10)
    ref = feed(whole, d, s)
    first = CollapseDetector(window=10)
    got = feed(first, d[:split], s[:split])
    resumed = CollapseDetector()  # other defaults: the state carries the settings
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # survives a JSON/checkpoint trip
    got.update(feed(resumed, d[split:], s[split:], start=split))
    assert got == ref and resumed.warnings == whole.warnings and len(ref) == 2


def test_bad_settings():
    for kw in ({"window": 1}, {"sigma_factor": 1.0}, {"loss_factor": 0}, {"persist": 0}):
        with pytest.raises(ValueError):
            CollapseDetector(**kw)
