"""nanobiggan/lab/monitor.py: the JSONL run log (a kill mid-write loses one record, never the file) and its plots,
as train.py --plots draws them."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nanobiggan.lab.monitor import RunLog, plot_run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train  # noqa: E402


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


def test_drop_after_keeps_one_record_per_step(tmp_path):
    """A run resumed from step 2 does steps 3.. again: their old records go, lines without a step stay."""
    log = RunLog(tmp_path / "log.jsonl")
    for record in ({"step": 1}, {"note": "no step"}, {"step": 2}, {"step": 3}, {"step": 3, "fid": 9.0}):
        log.write(record)
    before = (tmp_path / "log.jsonl").stat().st_mtime_ns
    assert log.drop_after(3) == 0 and (tmp_path / "log.jsonl").stat().st_mtime_ns == before  # untouched
    assert log.drop_after(2) == 2
    assert RunLog.read(tmp_path / "log.jsonl") == [{"step": 1}, {"note": "no step"}, {"step": 2}]
    assert RunLog(tmp_path / "absent.jsonl").drop_after(0) == 0


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


# ---- plot_run, and train.py --plots

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


def test_train_plots_a_run_dir(tmp_path, capsys, cli_error):
    synthetic_log(tmp_path / "log.jsonl", n=5)
    assert train.main(["--plots", str(tmp_path)]) is None
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4 and all((tmp_path / "plots").joinpath(p.split("/")[-1]).is_file() for p in printed)
    assert "no run log" in cli_error(train.main, ["--plots", str(tmp_path / "nope")])


# ---- TensorBoard (train.py --tensorboard)

def test_tensorboard_holds_the_logs_scalars_and_the_sheets(tmp_path, fake_cifar10):
    """Read the event files back: every scalar of log.jsonl at its step (TensorBoard stores float32), the
    collapse watch's σ0 of every layer among them, and the sample sheets as images."""
    pytest.importorskip("tensorboard", reason="pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "run"
    train.main(["--dataset", "cifar10", "--data-dir", str(fake_cifar10), "--preset", "cifar10-tiny", "--g-ch", "8",
                "--d-ch", "8", "--batch-size", "8", "--d-steps", "1", "--precision", "fp32", "--device", "cpu",
                "--steps", "4", "--log-every", "2", "--sample-every", "2", "--ckpt-every", "4",
                "--standing-batches", "1", "--out-dir", str(out), "--tensorboard"])
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    records = RunLog.read(out / "log.jsonl")
    numeric = {k for r in records for k, v in r.items() if k != "step" and isinstance(v, (int, float))}
    assert {"d_loss", "g_loss", "img_per_s", "g_lr"} <= numeric and any(k.startswith("sigma0/G.") for k in numeric)
    assert set(events.Tags()["scalars"]) == numeric
    for key in numeric:
        logged = [(r["step"], r[key]) for r in records if key in r]
        stored = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in stored] == [s for s, _ in logged], key
        np.testing.assert_allclose([v for _, v in stored], [v for _, v in logged], rtol=1e-6, err_msg=key)
    sheets = events.Images("samples")
    assert [e.step for e in sheets] == [2, 4]
    png = np.asarray(Image.open(out / "samples" / "step_00000004.png").convert("RGB"))
    assert (sheets[-1].height, sheets[-1].width) == png.shape[:2]


def test_tensorboard_missing_is_said_before_any_work(tmp_path, monkeypatch, cli_error):
    from nanobiggan.lab.monitor import TensorBoardLog

    def absent():
        raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard")
    monkeypatch.setattr(TensorBoardLog, "writer_class", staticmethod(absent))
    msg = cli_error(train.main, ["--dataset", "cifar10", "--data-dir", str(tmp_path / "no-data"), "--preset",
                                 "cifar10-tiny", "--out-dir", str(tmp_path / "run"), "--tensorboard"])
    assert "pip install tensorboard" in msg and not (tmp_path / "run" / "log.jsonl").exists()
