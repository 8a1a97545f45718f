import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobiggan.lab.checkpoint import (FORMAT, CheckpointError, CheckpointManager, check_fits, load_checkpoint,
                                      save_checkpoint)
from nanobiggan.trainer import rng_state

REPO = Path(__file__).resolve().parents[1]


class Arbitrary:  # any class that is not a tensor/primitive: weights_only loading must refuse it
    pass


def tiny_state(step=0):
    return {"step": step, "w": torch.full((3,), float(step))}


def test_round_trip_model_optimizer_config_rng(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.999))
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    config = {"name": "cifar10", "ch": 64, "lr": 2e-4, "attn": [16, 32], "deep": False, "seed": None}
    state = {"step": 7, "config": config, "G": model.state_dict(), "opt_G": opt.state_dict(), "rng": rng_state()}
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["format"] == FORMAT and "format" not in state  # added to the file, not to the caller's dict
    assert loaded["step"] == 7 and loaded["config"] == config
    model2 = torch.nn.Linear(4, 3)
    opt2 = torch.optim.Adam(model2.parameters())
    model2.load_state_dict(loaded["G"])
    opt2.load_state_dict(loaded["opt_G"])
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and torch.equal(s1["exp_avg_sq"], s2["exp_avg_sq"])
    assert opt2.param_groups[0]["betas"] == (0.0, 0.999)


primitives = st.none() | st.booleans() | st.integers(-2**62, 2**62) | st.floats(allow_nan=False) | st.text(max_size=8)
configs = st.dictionaries(st.text(max_size=8), st.recursive(
    primitives, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10), max_size=6)


@settings(max_examples=15)
@given(configs)
def test_any_config_of_primitives_round_trips(config):
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint({"config": config}, Path(d) / "c.pt")
        assert load_checkpoint(Path(d) / "c.pt")["config"] == config


def test_save_is_atomic_when_killed_mid_write(tmp_path):
    """SIGKILL a process that keeps rewriting a 32 MB checkpoint: the path always loads, and is consistent."""
    path = tmp_path / "big.pt"
    script = tmp_path / "writer.py"
    script.write_text(
        "import sys, torch\nfrom nanobiggan.lab.checkpoint import save_checkpoint\n"
        "w = torch.empty(8_000_000)\n"
        "for i in range(1, 10**6):\n"
        "    save_checkpoint({'i': i, 'w': w.fill_(i)}, sys.argv[1])\n"
        "    print(i, flush=True)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rng = random.Random(0)
    killed_mid_write = 0
    for _ in range(5):  # a kill lands inside a write ~97% of the time; each trial costs a torch import
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert proc.stdout.readline().strip() != "", "writer died before its first save"
            time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
            proc.stdout.close()
        leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        killed_mid_write += bool(leftovers)
        state = load_checkpoint(path)
        assert state["i"] >= 1 and torch.all(state["w"] == state["i"])
        for p in leftovers:
            p.unlink()
        if killed_mid_write:
            break
    assert killed_mid_write >= 1, "no kill landed inside a write; the test did not exercise atomicity"


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(tiny_state(1), path)
    with pytest.raises(Exception):
        save_checkpoint({"f": lambda: 0}, path)  # lambdas cannot be pickled
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def write_bytes(tmp_path, data, name="bad.pt"):
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def good_bytes(tmp_path):
    save_checkpoint({"w": torch.randn(1000)}, tmp_path / "good.pt")
    return (tmp_path / "good.pt").read_bytes()


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9, 0.999])
def test_truncated_file_is_a_checkpoint_error(tmp_path, cut):
    data = good_bytes(tmp_path)
    path = write_bytes(tmp_path, data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match="not a readable nanobiggan checkpoint") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("data", [b"step,loss\n1,0.5\n", bytes(range(256)) * 4], ids=["text", "random"])
def test_text_and_random_bytes_are_checkpoint_errors(tmp_path, data):
    with pytest.raises(CheckpointError, match="not a torch zip archive"):
        load_checkpoint(write_bytes(tmp_path, data))


def test_zip_that_is_not_a_torch_file(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.pt", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="not a readable nanobiggan checkpoint"):
        load_checkpoint(tmp_path / "z.pt")


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    torch.save({"format": FORMAT, "obj": Arbitrary()}, tmp_path / "o.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "o.pt")


@pytest.mark.parametrize("obj", [{"state_dict": {}}, {"format": "other-1"}, [1, 2]])
def test_foreign_checkpoint(tmp_path, obj):
    torch.save(obj, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="foreign checkpoint"):
        load_checkpoint(tmp_path / "f.pt")


def test_missing_path_names_it_and_the_naming_scheme(tmp_path):
    for path in (tmp_path / "nope.pt", tmp_path):
        with pytest.raises(FileNotFoundError) as e:
            load_checkpoint(path)
        assert str(path) in str(e.value) and "last.pt" in str(e.value) and "step_" in str(e.value)


@settings(max_examples=15)
@given(keep_last=st.integers(1, 4), gaps=st.lists(st.integers(1, 500), min_size=1, max_size=7))
def test_manager_keeps_the_newest_step_files(keep_last, gaps):
    steps = np.cumsum(gaps).tolist()
    with tempfile.TemporaryDirectory() as d:
        mgr = CheckpointManager(d, keep_last=keep_last)
        for s in steps:
            assert mgr.save(tiny_state(s), s) == Path(d) / f"step_{s:08d}.pt"
        assert mgr.steps() == steps[-keep_last:]
        assert mgr.latest() == Path(d) / "last.pt" and load_checkpoint(mgr.latest())["step"] == steps[-1]
        assert mgr.best() is None and mgr.best_metric is None  # no metric given: no best.pt


@settings(max_examples=20)
@given(metrics=st.lists(st.floats(-10, 10) | st.just(float("nan")), min_size=1, max_size=7),
       lower=st.booleans())
def test_best_is_updated_only_on_improvement_and_survives_restart(metrics, lower):
    finite = [(m, s) for s, m in enumerate(metrics) if np.isfinite(m)]
    with tempfile.TemporaryDirectory() as d:
        mgr = CheckpointManager(d, keep_last=1)
        for s, m in enumerate(metrics):
            mgr.save(tiny_state(s), s, metric=m, lower_is_better=lower)
        if not finite:
            assert mgr.best() is None
            return
        # first occurrence of the best value wins: a tie is not an improvement
        best_m, best_s = min(finite, key=lambda t: (t[0] if lower else -t[0], t[1]))
        assert load_checkpoint(mgr.best())["step"] == best_s and mgr.best_metric == best_m
        again = CheckpointManager(d, keep_last=1)  # a restarted run remembers the best through best.json
        worse = best_m + (1 if lower else -1)
        again.save(tiny_state(100), 100, metric=worse, lower_is_better=lower)
        assert load_checkpoint(again.best())["step"] == best_s
        again.save(tiny_state(101), 101, metric=best_m - (1 if lower else -1), lower_is_better=lower)
        assert load_checkpoint(again.best())["step"] == 101
        assert json.loads((Path(d) / "best.json").read_text())["step"] == 101


def test_best_direction_must_not_change(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(tiny_state(1), 1, metric=3.0, lower_is_better=True)
    with pytest.raises(ValueError, match="lower_is_better"):
        mgr.save(tiny_state(2), 2, metric=4.0, lower_is_better=False)


def test_protect_and_named_copies_survive_pruning(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(tiny_state(10), 10)
    kept = mgr.protect(10)
    named = mgr.save_named(tiny_state(11), "pre_collapse")
    for s in (20, 30, 40):
        mgr.save(tiny_state(s), s)
    assert mgr.steps() == [40]
    assert load_checkpoint(kept)["step"] == 10 and load_checkpoint(named)["step"] == 11
    with pytest.raises(FileNotFoundError, match="pruned"):
        mgr.protect(10)
    for bad in ("last", "best", "step_5", "../escape", "a/b", ""):
        with pytest.raises(ValueError, match="name"):
            mgr.save_named(tiny_state(0), bad)


def test_latest_falls_back_to_newest_step_and_save_cleans_stale_temps(tmp_path):
    assert CheckpointManager(tmp_path / "absent").latest() is None
    assert not (tmp_path / "absent").exists()  # looking for a checkpoint creates nothing
    save_checkpoint(tiny_state(5), tmp_path / "step_00000005.pt")
    stale = tmp_path / ".step_00000006.pt.abc.tmp"
    stale.write_bytes(b"partial")  # as left by a kill mid-write
    mgr = CheckpointManager(tmp_path)
    assert mgr.latest() == tmp_path / "step_00000005.pt" and stale.exists()  # a reader never deletes
    mgr.save(tiny_state(7), 7)
    assert not stale.exists() and mgr.latest() == tmp_path / "last.pt"


def test_load_latest_skips_damaged_files_newest_first(tmp_path):
    mgr = CheckpointManager(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        mgr.load_latest()
    for step in (1, 2, 3):
        mgr.save(tiny_state(step), step)
    (tmp_path / "step_00000003.pt").write_bytes(b"")  # last.pt is the same file (a hard link): both damaged
    path, state, skipped = mgr.load_latest()
    assert path == tmp_path / "step_00000002.pt" and state["step"] == 2
    assert len(skipped) == 1 and "last.pt" in skipped[0] and "step_00000002.pt beside it may be intact" in skipped[0]
    assert mgr.load_latest(need=("w",))[1]["step"] == 2
    with pytest.raises(CheckpointError, match="no readable checkpoint .*3 tried"):
        mgr.load_latest(need=("G",), purpose="a test needs G")


def test_check_fits_names_the_first_difference(tmp_path):
    net = torch.nn.Linear(3, 2)
    check_fits(net, net.state_dict(), "x.pt", "G")
    for weights, needle in (({**net.state_dict(), "weight": torch.zeros(4, 3)}, r"weight is \(4, 3\) in the file, "
                             r"\(2, 3\) for the config"), ({"weight": net.weight}, "bias missing"),
                            ({**net.state_dict(), "extra": net.bias}, "extra unexpected"), ([1], "not a state dict")):
        with pytest.raises(CheckpointError, match=needle):
            check_fits(net, weights, "x.pt", "G")


def test_manager_works_without_hard_links(tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError("hard links not supported")
    monkeypatch.setattr(os, "link", no_links)
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(tiny_state(1), 1, metric=1.0)
    mgr.save(tiny_state(2), 2, metric=2.0)
    assert load_checkpoint(mgr.latest())["step"] == 2 and load_checkpoint(mgr.best())["step"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("keep_last", [0, -1, 2.5])
def test_bad_keep_last(tmp_path, keep_last):
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=keep_last)
