"""nanobiggan/lab/export.py: `sample.py --export` writes the evaluation protocol's exact pixels as a PNG folder and an
.npz, and `evaluate --images` scores them to the same FID, KID, IS and class accuracy as the in-memory protocol."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import sample  # noqa: E402
from test_evaluate import QUICK, env  # noqa: E402,F401  (the tiny checkpoint, fake CIFAR-10 and fake nets)

from nanobiggan.lab import evaluate, export, protocol  # noqa: E402
from nanobiggan.lab.dataset_files import CIFAR10_CLASSES  # noqa: E402
from nanobiggan.lab.generators import load_generator  # noqa: E402

N = 40
SAMPLE = ["--n", str(N), "--standing-batches", "2", "--batch-size", "16", "--truncation", "0.7", "--seed", "3"]


@pytest.fixture(scope="module")
def exported(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    sample.main(["--checkpoint", str(env["ckpt"]), *SAMPLE, "--export", str(out / "pngs"), str(out / "s.npz")])
    return out


def test_export_holds_the_protocols_pixels(env, exported):
    """The folder and the .npz hold exactly protocol_images' uint8 pixels, class-balanced, in order."""
    G, _, _ = load_generator(env["ckpt"])
    x, y = (torch.cat(t) for t in zip(*protocol.protocol_images(G, N, 0.7, seed=3, batch_size=7, standing_batches=2)))
    with np.load(exported / "s.npz") as f:
        assert sorted(f.files) == ["arr_0", "arr_1"]
        assert f["arr_0"].dtype == np.uint8 and f["arr_0"].shape == (N, 32, 32, 3)
        np.testing.assert_array_equal(f["arr_0"], rearrange(x, "n c h w -> n h w c").numpy())
        np.testing.assert_array_equal(f["arr_1"], (np.arange(N) % 10))
    files = sorted((exported / "pngs").iterdir())
    assert [p.name for p in files[:3]] == ["000000_0_airplane.png", "000001_1_automobile.png", "000002_2_bird.png"]
    assert len(files) == N and files[-1].name == f"{N - 1:06d}_9_{CIFAR10_CLASSES[9]}.png"
    pixels = np.stack([np.asarray(Image.open(p)) for p in files])
    np.testing.assert_array_equal(pixels, rearrange(x, "n c h w -> n h w c").numpy())
    assert export.count_images(exported / "pngs") == export.count_images(exported / "s.npz") == N
    assert not list(exported.glob(".*"))  # no temporary folder or file left behind


def scores(env, tmp_path, capsys, *extra):
    path = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json"
    evaluate.main(["--checkpoint", str(env["ckpt"]), "--inception", str(env["nets"]["logits"]),
                   "--cache-dir", str(tmp_path / "cache"), *QUICK, "--json", str(path), *extra])
    capsys.readouterr()
    (r,) = json.loads(path.read_text())["results"]
    return r


def test_scores_of_exported_files_equal_the_in_memory_scores(env, exported, tmp_path, capsys):
    memory = scores(env, tmp_path, capsys, "--truncation", "0.7", "--seed", "3")
    for images in ("pngs", "s.npz"):
        files = scores(env, tmp_path, capsys, "--images", str(exported / images))
        assert files["n"] == memory["n"] == N and files["images"] == str(exported / images)
        for key in ("fid", "kid", "is", "class_acc"):
            assert files[key] == pytest.approx(memory[key], rel=1e-9, abs=1e-12), (images, key)
        assert files["class_acc_per_class"] == pytest.approx(memory["class_acc_per_class"], nan_ok=True)
    # ... and the scores do see the images: another seed's export scores differently (this test can fail)
    other = scores(env, tmp_path, capsys, "--truncation", "0.7", "--seed", "4")
    assert other["fid"] != pytest.approx(memory["fid"])


def test_a_foreign_folder_is_scored_without_class_accuracy(env, exported, tmp_path, capsys):
    folder = tmp_path / "foreign"
    folder.mkdir()
    for i, p in enumerate(sorted((exported / "pngs").iterdir())):
        (folder / f"img{i:03d}.png").write_bytes(p.read_bytes())
    r = scores(env, tmp_path, capsys, "--images", str(folder))
    assert r["n"] == N and "fid" in r and "class_acc" not in r


def test_a_failed_export_leaves_nothing(env, tmp_path, monkeypatch):
    """Whole or not at all: an error after the first batch leaves no folder, no .npz and no temporary file."""
    real = protocol.protocol_images

    def broken(*a, **k):
        for i, batch in enumerate(real(*a, **k)):
            if i == 1:
                raise RuntimeError("disk full")
            yield batch
    monkeypatch.setattr(protocol, "protocol_images", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        sample.main(["--checkpoint", str(env["ckpt"]), *SAMPLE, "--export", str(tmp_path / "d"),
                     str(tmp_path / "s.npz")])
    assert list(tmp_path.iterdir()) == []


def test_bad_exports_and_images_are_refused(env, exported, tmp_path, cli_error):
    base = ["--checkpoint", str(env["ckpt"]), *SAMPLE]
    assert "already holds files" in cli_error(sample.main, [*base, "--export", str(exported / "pngs")])
    assert "two .npz files" in cli_error(sample.main, [*base, "--export", str(tmp_path / "a.npz"),
                                                       str(tmp_path / "b.npz")])
    assert "drop --interp" in cli_error(sample.main, [*base, "--export", str(tmp_path / "x"), "--interp", "z"])
    ev = ["--checkpoint", str(env["ckpt"]), "--inception", "none"]
    assert "apply only when sampling" in cli_error(evaluate.main, [*ev, "--images", str(exported / "pngs"),
                                                                   "--truncation", "0.5"])
    assert "does not exist" in cli_error(evaluate.main, [*ev, "--images", str(tmp_path / "nothing")])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert "not a readable .npz" in cli_error(evaluate.main, [*ev, "--images", str(tmp_path / "bad.npz")])
    (tmp_path / "empty").mkdir()
    assert "holds no images" in cli_error(evaluate.main, [*ev, "--images", str(tmp_path / "empty")])
