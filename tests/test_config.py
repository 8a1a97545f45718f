import dataclasses
import subprocess
import sys

import pytest

from nanobiggan.config import PRESETS, from_saved, get_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_and_derives_z_chunks(name):
    cfg = get_config(name)
    assert cfg.z_chunks * cfg.z_chunk_size == cfg.z_dim  # the paper's values: tests/test_paper.py
    if not cfg.deep:  # skip-z: one 20-D chunk for the linear layer + one per G stage (§3)
        assert cfg.z_chunk_size == 20 and cfg.z_chunks == cfg.n_g_stages + 1


def test_overrides_and_errors_name_the_field():
    assert get_config("cifar10", g_lr=1e-3).g_lr == 1e-3
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        get_config("nope")
    with pytest.raises(ValueError, match="unknown config field.*'g_learning_rate'"):
        get_config("cifar10", g_learning_rate=1)
    with pytest.raises(ValueError, match="'z_dim'"):
        get_config("cifar10", z_dim=81)
    with pytest.raises(ValueError, match="'loss'"):
        get_config("cifar10", loss="lsgan")
    with pytest.raises(ValueError, match="'sigma_clamp_ratio'"):
        get_config("cifar10", sigma_clamp_ratio=2.0)
    with pytest.raises(ValueError, match="'resolution'"):
        get_config("cifar10", resolution=48)
    with pytest.raises(ValueError, match="'eval_every'"):
        get_config("cifar10", eval_every=-1)
    with pytest.raises(ValueError, match="'eval_n'"):
        get_config("cifar10", eval_n=1)


def test_from_saved_reads_what_a_checkpoint_stores():
    cfg = get_config("fashion-mnist", g_lr=1e-3)
    saved = dataclasses.asdict(cfg)
    assert from_saved(saved) == cfg and from_saved(saved, steps=7) == dataclasses.replace(cfg, steps=7)
    assert saved["name"] == "fashion-mnist"  # the caller's dict is left as it was
    with pytest.raises(ValueError, match="'z_dim'"):
        from_saved({**saved, "z_dim": 81})


def test_param_count_command_prints_every_preset():
    out = subprocess.run([sys.executable, "-m", "nanobiggan.config"], capture_output=True, text=True, check=True).stdout
    for name in PRESETS:
        assert name in out
    assert "70.4M/88.0M" in out and "50.4M/34.6M" in out
