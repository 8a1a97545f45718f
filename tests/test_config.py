import dataclasses
import subprocess
import sys

import pytest

from nanobiggan.config import PRESETS, from_saved, get_config
from nanobiggan.lab.presets import count_params


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


def test_refused_values_name_the_field_and_what_is_valid():
    """A negative strength is not 'off', and an attention resolution that no stage has is not 'none'."""
    for field in ("ortho_beta", "r1_gamma", "sigma_clamp", "sigma_clamp_ratio", "shared_init_std"):
        with pytest.raises(ValueError, match=f"'{field}': must be >= 0 \\(0: off\\)"):
            get_config("cifar10", **{field: -1e-4})
    with pytest.raises(ValueError, match="'g_attn': 4 is the resolution of none of G's stages at 32px: choose one "
                                         "of 8, 16, 32, or 0"):
        get_config("cifar10", g_attn=4)
    with pytest.raises(ValueError, match="'d_attn': 32 is the resolution of none of D's stages at 32px: choose one "
                                         "of 16, 8, or 0"):
        get_config("cifar10", d_attn=32)
    assert (get_config("cifar10", g_attn=0, d_attn=0).g_attn, get_config("cifar10", g_attn=32).g_attn) == (0, 32)
    assert get_config("biggan-deep-128", d_attn=128).d_attn == 128  # BigGAN-deep's input conv runs at 128


def test_attention_resolutions_are_where_the_models_put_attention():
    """Every resolution validate() accepts gives exactly one attention block (built on the meta device)."""
    import torch

    from nanobiggan import Discriminator, Generator
    from nanobiggan.attention import SelfAttention
    for name in ("cifar10", "biggan-128", "biggan-deep-128"):
        cfg = get_config(name)
        for field, build, valid in (("g_attn", Generator, cfg.g_attn_resolutions),
                                    ("d_attn", Discriminator, cfg.d_attn_resolutions)):
            for res in valid:
                with torch.device("meta"):
                    net = build(get_config(name, **{field: res}))
                assert sum(isinstance(m, SelfAttention) for m in net.modules()) == 1, (name, field, res)


def test_every_field_is_a_flag_with_its_meaning_in_train_help():
    out = subprocess.run([sys.executable, "train.py", "--help"], capture_output=True, text=True, check=True).stdout
    text = " ".join(out.split())  # argparse wraps lines
    for f in dataclasses.fields(get_config("cifar10")):
        if f.name != "name":
            assert "--" + f.name.replace("_", "-") in text and " ".join(f.metadata["help"].split())[:40] in text, f.name


def test_param_count_command_prints_every_preset():
    out = subprocess.run([sys.executable, "train.py", "--presets"], capture_output=True, text=True, check=True).stdout
    for name in PRESETS:
        assert name in out
    assert "70.4M/88.0M" in out and "50.4M/34.6M" in out


def test_cifar10_cpu_is_the_swept_shape_run_longer():
    """README command 1's preset is the configuration the CPU sweep measured (cifar10-tiny's architecture and
    optimiser, plus flips), every checkpoint of its run is kept for the learning curve, and its G fits the
    shipped-checkpoint budget (two shipped G_ema files <= 5 MB together; Fashion-MNIST's takes 1.6 MB)."""
    cpu, tiny = get_config("cifar10-cpu"), get_config("cifar10-tiny")
    arch = ("g_ch", "d_ch", "z_dim", "shared_dim", "shared_init_std", "g_attn", "d_attn", "batch_size", "d_steps",
            "g_lr", "d_lr", "beta1", "beta2", "loss", "ortho_beta")
    assert {f: getattr(cpu, f) for f in arch} == {f: getattr(tiny, f) for f in arch}
    assert cpu.hflip and not tiny.hflip
    assert cpu.steps // cpu.ckpt_every <= cpu.keep_last
    g_params, _ = count_params(cpu)
    assert 4 * g_params < 3.4e6
