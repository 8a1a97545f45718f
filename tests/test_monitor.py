import json
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nanobiggan import Generator, get_config
from nanobiggan.monitor import CollapseDetector, RunLog, main, plot_run, sigma0
from nanobiggan.spectral_norm import spectral_modules


# ---- RunLog

def test_runlog_round_trip_and_truncated_last_line(tmp_path):
    path = tmp_path / "a" / "b" / "log.jsonl"  # parent dirs are created
    log = RunLog(path)
    recs = [{"step": 0, "d_loss": 1.5, "note": "hi"}, {"step": 10, "g_loss": float("nan"), "lr": [1e-4, 2e-4]}]
    log.write(recs[0])
    log.write({"step": 10, "g_loss": torch.tensor(float("nan")), "lr": [np.float32(1e-4), 2e-4]})
    back = RunLog.read(path)
    assert back[0] == recs[0] and math.isnan(back[1]["g_loss"])
    assert back[1]["lr"] == pytest.approx([1e-4, 2e-4]) and back[1]["step"] == 10
    with open(path, "a") as f:
        f.write('{"step": 20, "d_lo')  # killed mid-write
    assert len(RunLog.read(path)) == 2
    RunLog(path).write({"step": 20, "d_loss": 0.5})  # a resumed run cuts the partial line off first
    assert [r["step"] for r in RunLog.read(path)] == [0, 10, 20]


def test_runlog_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run log"):
        RunLog.read(tmp_path / "missing.jsonl")
    with pytest.raises(TypeError, match="dict"):
        RunLog(tmp_path / "l.jsonl").write([1, 2])
    with pytest.raises(TypeError, match="numbers"):
        RunLog(tmp_path / "l.jsonl").write({"x": object()})
    (tmp_path / "bad.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        RunLog.read(tmp_path / "bad.jsonl")


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


# ---- plot_run and main

def synthetic_log(path, n=30):
    log = RunLog(path)
    for step in range(0, 10 * n, 10):
        rec = {"step": step, "d_loss": 1 + math.sin(step), "g_loss": 0.5 * math.cos(step), "r1_loss": 0.01,
               **{f"sigma0/G.blocks.{i}.conv1": 1 + i + step / 100 for i in range(3)},
               **{f"sigma0/D.blocks.{i}.conv1": 2 + i for i in range(2)}}
        if step % 100 == 0:
            rec["fid"] = 100 - step / 10
        if step == 200:
            rec["warnings"] = ["step 200: σ0 of G.blocks.2.conv1 jumped"]
        log.write(rec)


def test_plot_run_writes_non_empty_pngs(tmp_path):
    synthetic_log(tmp_path / "log.jsonl")
    paths = plot_run(tmp_path / "log.jsonl", tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["fid.png", "losses.png", "sigma0_D.png", "sigma0_G.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) > 100
            lo, hi = im.convert("L").getextrema()
            assert lo < hi  # something was drawn


def test_plot_run_only_draws_what_the_log_has_and_errors(tmp_path):
    RunLog(tmp_path / "l.jsonl").write({"step": 0, "d_loss": 1.0})
    assert [p.name for p in plot_run(tmp_path / "l.jsonl", tmp_path / "p")] == ["losses.png"]
    with pytest.raises(FileNotFoundError, match="no run log"):
        plot_run(tmp_path / "missing.jsonl", tmp_path / "p")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_run(tmp_path / "empty.jsonl", tmp_path / "p")


def test_main_plots_a_run_dir(tmp_path, capsys):
    synthetic_log(tmp_path / "log.jsonl", n=5)
    assert main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4 and all((tmp_path / "plots").joinpath(p.split("/")[-1]).is_file() for p in printed)
    assert main([str(tmp_path / "nope")]) == 1 and "no run log" in capsys.readouterr().err
