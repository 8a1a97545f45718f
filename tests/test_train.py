"""train.py end to end on a fake CIFAR-10: a bit-exact resume in a fresh process, a real 2-process DDP run
(torchrun, gloo, CPU), the offline message and the fashion-mnist preset. Bad input: tests/test_bad_input.py."""
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train  # noqa: E402

from nanobiggan import Generator  # noqa: E402
from nanobiggan.config import from_saved  # noqa: E402
from nanobiggan.lab.checkpoint import load_checkpoint  # noqa: E402




def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def cifar(fake_cifar10):
    return fake_cifar10


def tiny_args(cifar, out, *extra):
    return ["--dataset", "cifar10", "--data-dir", str(cifar), "--preset", "cifar10-tiny", "--g-ch", "8",
            "--d-ch", "8", "--batch-size", "8", "--d-steps", "1", "--precision", "fp32", "--device", "cpu",
            "--log-every", "1", "--out-dir", str(out), *extra]


def assert_same(a, b, path="state"):
    """Recursive torch.equal over nested dicts/lists of tensors and plain values."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


# ---------------------------------------------------------------- resume

def test_interrupted_then_resumed_run_is_bit_exact(cifar, tmp_path):
    """4 steps straight vs 2 steps, then `python train.py --resume` in a fresh process to 4: G, D, G_ema, both
    optimizers, the RNG and the logged losses are equal. Sheets must not disturb the random stream: the cut run
    draws one at step 2 (its last step) that the straight run does not draw (it draws at 3 and 4). EMA averages
    from step 1, and random flips draw from the global RNG."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["--ckpt-every", "2", "--sample-every", "3", "--ema-start", "1", "--hflip", "true"]
    train.main(tiny_args(cifar, full, "--steps", "4", *common))
    train.main(tiny_args(cifar, cut, "--steps", "2", *common))
    assert sorted(p.name for p in cut.glob("*.pt")) == ["last.pt", "step_00000002.pt"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "train.py", "--resume", str(cut), "--steps", "4", "--device", "cpu"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    resumed_for = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resumed from" in proc.stdout and "at step 2" in proc.stdout

    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["step"] == b["step"] == 4 and a["batches_drawn"] == b["batches_drawn"] == 4
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "scaler", "rng"):
        assert_same(a[key], b[key], key)
    assert_same(load_checkpoint(full / "step_00000002.pt")["G"], load_checkpoint(cut / "step_00000002.pt")["G"])
    assert (full / "samples" / "step_00000004.png").read_bytes() == (cut / "samples" / "step_00000004.png").read_bytes()
    # the resumed run appended to the same log; every logged number but the throughput matches
    logs = [[json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()] for d in (full, cut)]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4]
    timing = ("img_per_s", "wall_s")  # wall-clock: differs between runs; wall_s counts from each process's start
    for ra, rb in zip(*logs):
        assert {k: v for k, v in ra.items() if k not in timing} == {k: v for k, v in rb.items() if k not in timing}
    walls = [r["wall_s"] for r in logs[0]]
    assert 0 < walls[0] and walls == sorted(walls)
    # the resumed process's clock starts again: its steps' wall_s fit in its own lifetime (comparing with the cut
    # run's wall_s instead would be a race on a loaded machine)
    assert 0 < logs[1][2]["wall_s"] < logs[1][3]["wall_s"] <= resumed_for
    # what a run directory holds
    assert sorted(p.name for p in (full / "samples").iterdir()) == ["step_00000003.png", "step_00000004.png"]
    assert (cut / "samples" / "step_00000002.png").is_file()
    assert {"losses.png", "sigma0_G.png", "sigma0_D.png"} <= {p.name for p in (full / "plots").iterdir()}
    assert any(k.startswith("sigma0/G.") for k in logs[0][0]) and any(k.startswith("sigma0/D.") for k in logs[0][0])
    assert a["classes"][:2] == ["airplane", "automobile"]


# ---------------------------------------------------------------- DDP: torchrun, gloo, 2 CPU processes

DDP_HELPER = """
    # train.py's main() under torchrun, keeping a handle on each rank's trainer to dump its final state
    import os, sys, torch
    import train
    seen, run = {}, train.run
    train.run = lambda trainer, *a, **k: (seen.setdefault("t", trainer), run(trainer, *a, **k))
    train.main(sys.argv[1:])
    t = seen["t"]
    bns = [m for m in t.G.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    torch.save({"G": t.G.state_dict(), "bn": sorted({type(m).__name__ for m in bns}),
                "ddp": type(t.G_fwd).__name__, "world": t.world, "rng": torch.get_rng_state()},
               os.path.join(os.environ["DUMP_DIR"], "rank%s.pt" % os.environ["RANK"]))
"""


def test_ddp_two_processes_gloo(cifar, tmp_path):
    """torchrun --nproc_per_node 2: the run completes, rank 0 alone writes the log and checkpoints, G's BNs are
    cross-replica, and after training both ranks hold identical G weights AND identical BN running statistics
    although they drew different z (proof that BN statistics were reduced across the two processes)."""
    helper, out = tmp_path / "ddp_helper.py", tmp_path / "run"
    helper.write_text(textwrap.dedent(DDP_HELPER))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(helper),
           *tiny_args(cifar, out, "--steps", "2")]
    proc = subprocess.run(cmd, cwd=REPO, env={**env(), "DUMP_DIR": str(tmp_path)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.count("done: 2 steps") == 1 and "world 2" in proc.stdout  # only rank 0 prints
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2] and {r["ddp"] for r in ranks} == {"DistributedDataParallel"}
    # torch's SyncBatchNorm is GPU-only (kernels; DDP refuses it on CPU): on CPU, distributed.CrossReplicaBatchNorm
    assert [r["bn"] for r in ranks] == [["CrossReplicaBatchNorm"]] * 2
    assert not torch.equal(ranks[0]["rng"], ranks[1]["rng"])  # each rank draws its own noise
    assert_same(ranks[0]["G"], ranks[1]["G"], "G")  # weights and BN running stats agree across ranks
    assert any("running_mean" in k for k in ranks[0]["G"])
    # rank 0 alone wrote: one record per step (two writers would duplicate them), one set of checkpoints
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt", "step_00000002.pt"]
    ckpt = load_checkpoint(out / "last.pt")
    assert_same(ckpt["G"], ranks[0]["G"])
    Generator(from_saved(ckpt["config"])).load_state_dict(ckpt["G"])  # plain BN keys: sample.py loads it


# ---------------------------------------------------------------- bad input (the rest: tests/test_bad_input.py)

def test_missing_cifar_offline_fails_fast_with_instructions(tmp_path, monkeypatch, cli_error):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    empty = tmp_path / "empty"
    t0 = time.perf_counter()
    msg = cli_error(train.main, ["--device", "cpu", "--data-dir", str(empty), "--out-dir", str(tmp_path / "o")])
    assert time.perf_counter() - t0 < 10
    assert "CIFAR-10 not found" in msg and "download failed" in msg and str(empty) in msg
    assert "--data-dir" in msg and "NANOBIGGAN_DATA" in msg
    assert not empty.exists()  # no partial download, and no empty --data-dir, left behind


def test_fashion_mnist_picks_its_preset(tmp_path, capsys):
    """--dataset fashion-mnist without --preset trains the fashion-mnist preset from the idx files (a fake set)."""
    import gzip
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, array in (("train-images-idx3-ubyte.gz", rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)),
                        ("train-labels-idx1-ubyte.gz", np.arange(8, dtype=np.uint8))):
        with gzip.open(folder / name, "wb") as fh:  # idx: big-endian magic 0x0800 + ndim, sizes, bytes
            fh.write(np.array([0x0800 + array.ndim, *array.shape], ">u4").tobytes() + array.tobytes())
    assert [train.default_preset(d) for d in ("cifar10", "fashion-mnist", "folder")] == \
        ["cifar10", "fashion-mnist", "biggan-128"]
    out = tmp_path / "run"
    train.main(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "data"), "--steps", "1", "--g-ch", "8",
                "--d-ch", "8", "--batch-size", "8", "--d-steps", "1", "--precision", "fp32", "--device", "cpu",
                "--out-dir", str(out)])
    assert capsys.readouterr().out.startswith("fashion-mnist: ")
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["name"] == "fashion-mnist" and ckpt["config"]["dataset"] == "fashion-mnist"
    assert ckpt["classes"][0] == "T-shirt/top"


def test_collapse_right_after_resume_keeps_the_resumed_checkpoint(cifar, tmp_path, monkeypatch):
    """A run resumed with new settings (e.g. raised learning rates) can collapse at its first log; the checkpoint
    it resumed from is then the last one before the collapse and must become pre_collapse.pt."""
    from nanobiggan.lab import bookkeeping

    out = tmp_path / "run"
    train.main(tiny_args(cifar, out, "--steps", "2", "--ckpt-every", "2", "--sample-every", "100"))
    assert not (out / "pre_collapse.pt").exists()
    monkeypatch.setattr(bookkeeping.CollapseDetector, "update",
                        lambda self, step, losses, sigmas: [f"step {step}: a made-up collapse"])
    train.main(tiny_args(cifar, out, "--steps", "3", "--ckpt-every", "100", "--sample-every", "100",
                         "--resume", str(out)))
    kept = load_checkpoint(out / "pre_collapse.pt")
    assert kept["step"] == 2
