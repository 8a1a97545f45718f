"""sample.py: PNG grids from a checkpoint's EMA generator with standing statistics, so that an image depends on
its own z and class only, never on the batch it was generated in; and one `error: ...` line per bad input."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import sample  # noqa: E402

from nanobiggan.config import get_config  # noqa: E402
from nanobiggan.ema import standing_stats  # noqa: E402
from nanobiggan.lab import generators  # noqa: E402
from nanobiggan.lab.checkpoint import CheckpointManager, load_checkpoint  # noqa: E402
from nanobiggan.lab.datasets import batches_for  # noqa: E402
from nanobiggan.lab.generators import load_generator  # noqa: E402
from nanobiggan.lab.images import save_grid  # noqa: E402
from nanobiggan.sampling import class_sheet_inputs, generate, prepare_for_sampling  # noqa: E402
from nanobiggan.trainer import Trainer  # noqa: E402

FAST = ["--standing-batches", "2", "--standing-batch-size", "8"]




@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with one checkpoint after one training step, EMA averaging (so G_ema != G)."""
    cfg = get_config("cifar10-tiny", g_ch=8, d_ch=8, batch_size=8, d_steps=1, ema_start=0, ema_decay=0.5,
                     precision="fp32")
    tr = Trainer(cfg)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(16, 3, 32, 32, generator=g) * 2 - 1, torch.arange(16) % 10)
    tr.train_step(batches_for(tr, data))
    out = tmp_path_factory.mktemp("run")
    CheckpointManager(out).save({**tr.state_dict(), "classes": ["airplane", "automobile", "bird", "cat", "deer",
                                                                "dog", "frog", "horse", "ship", "truck"]}, 1)
    return out


def png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def grid_shape(rows, cols, res=32, pad=2):
    return rows * (res + pad) + pad, cols * (res + pad) + pad, 3


def test_writes_one_row_per_class(run_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    sample.main(["--checkpoint", str(run_dir), "--n", "3", "--truncation", "0.5", "--out", str(out), *FAST])
    assert png(out).shape == grid_shape(10, 3) and str(out) in capsys.readouterr().out
    assert png(out).std() > 0  # not a blank sheet
    sample.main(["--checkpoint", str(run_dir / "last.pt"), "--class", "cat", "1", "--n", "2", *FAST])
    assert png(run_dir / "sample.png").shape == grid_shape(2, 2)  # default --out: beside the checkpoint


def test_same_z_same_image_whatever_the_batch_size(run_dir, tmp_path):
    for b in (4, 32):
        sample.main(["--checkpoint", str(run_dir), "--n", "5", "--seed", "3", "--truncation", "0.7",
                     "--batch-size", str(b), "--out", str(tmp_path / f"b{b}.png"), *FAST])
    a, b = png(tmp_path / "b4.png").astype(int), png(tmp_path / "b32.png").astype(int)
    assert np.abs(a - b).max() <= 1  # equal up to a float rounding across a uint8 boundary


def test_the_seed_draws_the_samples_not_the_standing_statistics(run_dir, tmp_path):
    """sample.py --seed S draws S's z through G prepared at seed 0's statistics (one set per truncation, whatever
    the seed): the sheet equals that, and differs from the one drawn with S's own statistics."""
    out = tmp_path / "s5.png"
    sample.main(["--checkpoint", str(run_dir), "--n", "4", "--seed", "5", "--truncation", "0.7", "--out", str(out),
                 *FAST])
    sheets = {}
    for stats_seed in (0, 5):
        G, cfg, _ = load_generator(run_dir / "last.pt")
        prepare_for_sampling(G, 0.7, n_batches=2, seed=stats_seed, batch_size=8)
        z, y = class_sheet_inputs(cfg.z_dim, cfg.n_classes, per_class=4, threshold=0.7, seed=5)
        save_grid(generate(G, z, y), tmp_path / f"stats{stats_seed}.png", nrow=4)
        sheets[stats_seed] = png(tmp_path / f"stats{stats_seed}.png")
    np.testing.assert_array_equal(png(out), sheets[0])
    assert not np.array_equal(sheets[0], sheets[5])  # the comparison can fail


def test_generate_is_batch_size_independent_after_standing_stats(run_dir):
    G, cfg, classes = load_generator(run_dir / "last.pt")
    gen = torch.Generator().manual_seed(0)
    standing_stats(G, lambda: (torch.randn(8, cfg.z_dim, generator=gen), torch.randint(0, 10, (8,), generator=gen)),
                   n_batches=3)
    z, y = torch.randn(12, cfg.z_dim, generator=gen), torch.randint(0, 10, (12,), generator=gen)
    ref = generate(G, z, y, batch_size=12)
    for b in (1, 5):
        torch.testing.assert_close(generate(G, z, y, batch_size=b), ref, rtol=0, atol=1e-5)
    G.train()  # the failure this prevents: train-mode BN makes an image depend on its batch
    assert not torch.allclose(generate(G, z, y, batch_size=4), generate(G, z, y, batch_size=12), atol=1e-3)


def test_loads_ema_weights_by_default(run_dir):
    state = load_checkpoint(run_dir / "last.pt")
    ema, _, classes = load_generator(run_dir / "last.pt")
    raw, _, _ = load_generator(run_dir / "last.pt", ema=False)
    assert not ema.training and classes[3] == "cat"
    assert all(torch.equal(v, state["G_ema"]["model"][k]) for k, v in ema.state_dict().items())
    assert all(torch.equal(v, state["G"][k]) for k, v in raw.state_dict().items())
    assert not torch.equal(ema.linear.weight, raw.linear.weight)


@pytest.mark.parametrize("mode", ["z", "class"])
def test_interpolation_sheets(run_dir, tmp_path, mode):
    out = tmp_path / f"{mode}.png"
    sample.main(["--checkpoint", str(run_dir), "--interp", mode, "--out", str(out), *FAST])
    assert png(out).shape == grid_shape(4, 8)  # 4 rows of 8 steps (Fig. 8/9)




def test_no_checkpoint_anywhere(tmp_path, monkeypatch, cli_error):
    """No --checkpoint, no runs/*/last.pt and no shipped generator: what to do. (Every other bad input:
    tests/test_bad_input.py.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(generators, "SHIPPED_DIR", tmp_path / "none")
    assert "no checkpoint found" in cli_error(sample.main, [])


def test_slim_checkpoint_samples_exactly_like_the_full_one(run_dir, tmp_path, monkeypatch, cli_error):
    """`slim` keeps the EMA generator alone; a fresh clone (no runs/) samples the shipped one by default and
    writes into the working directory, never into the package."""
    full = run_dir / "last.pt"
    small = generators.slim(full, tmp_path / "pkg" / "fashion-mnist.pt", made_by="a test")
    assert small.stat().st_size < full.stat().st_size / 2 and load_checkpoint(small)["made_by"] == "a test"
    for (k, a), b in zip(load_generator(full)[0].state_dict().items(), load_generator(small)[0].state_dict().values()):
        assert torch.equal(a, b), k
    assert "EMA generator only" in cli_error(sample.main, ["--checkpoint", str(small), "--no-ema", *FAST])
    sample.main(["--checkpoint", str(full), "--out", str(tmp_path / "full.png"), *FAST])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(generators, "SHIPPED_DIR", small.parent)
    sample.main(FAST)  # no runs/ here: the shipped generator
    np.testing.assert_array_equal(png(tmp_path / "sample.png"), png(tmp_path / "full.png"))
    assert sorted(p.name for p in small.parent.iterdir()) == ["fashion-mnist.pt"]
    sample.main(["--checkpoint", "fashion-mnist", "--out", str(tmp_path / "named.png"), *FAST])
    np.testing.assert_array_equal(png(tmp_path / "named.png"), png(tmp_path / "full.png"))


def test_slim_can_keep_raw_G_and_D_bit_for_bit(run_dir, tmp_path):
    """keep=("G", "D") adds the raw weights (what the tutorials compare with the EMA's and ask D with), equal to
    the training checkpoint's; still nothing to resume from; anything else kept is refused."""
    full = load_checkpoint(run_dir / "last.pt")
    small = load_checkpoint(generators.slim(run_dir / "last.pt", tmp_path / "s.pt", made_by="t", keep=("G", "D")))
    assert {"G", "D", "G_ema"} <= small.keys() and not {"opt_g", "opt_d", "rng"} & small.keys()
    for part in ("G", "D"):
        assert full[part].keys() == small[part].keys()
        assert all(torch.equal(full[part][k], small[part][k]) for k in full[part]), part
    sample.main(["--checkpoint", str(tmp_path / "s.pt"), "--no-ema", "--out", str(tmp_path / "raw.png"), *FAST])
    with pytest.raises(ValueError, match="not \\['opt_g'\\]"):
        generators.slim(run_dir / "last.pt", tmp_path / "t.pt", made_by="t", keep=("opt_g",))


def test_slim_half_halves_the_kept_parts_and_keeps_the_ema_bit_for_bit(run_dir, tmp_path):
    """half=True stores the kept raw G and D in float16: each float weight within 2^-11 of itself (relative), the
    integer buffers exact, the EMA generator bit for bit, and the file loads into the float32 models."""
    full = load_checkpoint(run_dir / "last.pt")
    small = load_checkpoint(generators.slim(run_dir / "last.pt", tmp_path / "h.pt", made_by="t", keep=("G", "D"),
                                            half=True))
    same = [torch.equal(a, b) for a, b in zip(full["G_ema"]["model"].values(),
                                                         small["G_ema"]["model"].values())]
    assert all(same) and len(same) == len(full["G_ema"]["model"])
    for part in ("G", "D"):
        for k, v in full[part].items():
            h = small[part][k]
            if v.is_floating_point():
                assert h.dtype == torch.float16
                torch.testing.assert_close(h.float(), v, rtol=2 ** -11, atol=6e-8)  # 6e-8: fp16's smallest step
            else:
                assert torch.equal(h, v)
    sample.main(["--checkpoint", str(tmp_path / "h.pt"), "--no-ema", "--out", str(tmp_path / "raw.png"), *FAST])


@pytest.mark.parametrize("name", generators.SHIPPED_ORDER)
def test_shipped_generator_draws_its_classes(name):
    """The shipped generators are trained: the project's classifier recognises most of their samples (their
    measured accuracy at n = 10,000 is in the README); and each says how it was made."""
    from nanobiggan.lab.classifier import load_classifier
    from nanobiggan.lab.protocol import class_accuracy
    path = generators.shipped(name)
    if path is None:
        pytest.skip(f"no shipped {name} generator")
    state = load_checkpoint(path)
    assert not {"opt_g", "opt_d", "rng"} & state.keys() and state["made_by"]  # weights only (cifar10: G and D too)
    G, cfg, classes = load_generator(path)
    assert cfg.dataset == name and len(classes) == cfg.n_classes == 10
    floor = {"fashion-mnist": 0.75, "cifar10": 0.35}[name]  # chance: 0.1; cifar10 measured 0.436 at this n
    assert class_accuracy(G, load_classifier(name), n=500, standing_batches=20)["class_acc"] >= floor

