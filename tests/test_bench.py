"""bench.py: runs end to end on a tiny config, and its FLOP counts and fractions are consistent."""
import importlib.util
import json
import os
import statistics
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parents[1] / "bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

TINY = ["--preset", "cifar10-tiny", "--batch-size", "4", "--repeats", "1", "--warmup", "0", "--peak-n", "64"]


def test_bench_reports_consistent_numbers(tmp_path):
    out = tmp_path / "r.json"
    r = bench.main(TINY + ["--repeats", "3", "--sample-batch", "4", "--json", str(out)])  # the last --repeats wins
    assert json.loads(out.read_text()) == r  # floats round-trip exactly through JSON
    assert r["channels_last"] is True  # the trainer's default
    # achieved GFLOP/s = FLOPs / median time; fraction = the median of each repeat's FLOPs / time / its own peak
    assert r["train_gflops"] == pytest.approx(r["train_gflop_per_it"] / r["train_s_median"])
    for part, gflop in (("train", r["train_gflop_per_it"]), ("sample", r["sample_gflop_per_batch"])):
        times, peaks = r["times_s"][part], r["paired_peak_gflops"][part]
        assert len(times) == len(peaks) == 3 and r["train_s_median"] == statistics.median(r["times_s"]["train"])
        fracs = sorted(gflop / t / p for t, p in zip(times, peaks))
        assert [r[f"{part}_frac_peak{k}"] for k in ("_min", "", "_max")] == pytest.approx(fracs)
    assert r["peak_ref"] == "fp32" and r["peak_gflops"]["fp32"] > 0
    assert r["real_img_per_s"] == pytest.approx(4 * 2 * r["train_it_per_s"])  # batch x d_steps
    assert r["peak_rss_gib"] > 0


def test_flops_are_linear_in_batch_size():
    """Every conv, linear and attention product scales with the batch: 2x images, exactly 2x FLOPs."""
    small = bench.main(TINY + ["--sample-batch", "2", "--no-channels-last"])
    large = bench.main(TINY + ["--sample-batch", "4", "--no-channels-last"])
    assert small["channels_last"] is False
    assert large["sample_gflop_per_batch"] == pytest.approx(2 * small["sample_gflop_per_batch"], rel=1e-12)


@given(capacity=st.integers(0, 5000), step=st.sampled_from([1, 8, 16]), limit=st.integers(8, 4096))
def test_largest_batch_finds_the_capacity(capacity, step, limit):
    """Against the explicit answer: the largest multiple of step that is ≤ capacity and ≤ limit."""
    calls = []

    def fits(b):
        calls.append(b)
        assert b % step == 0 and b > 0
        return b <= capacity

    expected = min(capacity, limit) // step * step
    assert bench.largest_batch(fits, step, limit) == expected
    assert len(calls) <= 2 * (limit // step).bit_length() + 2  # doubling + bisection: logarithmic


def test_batch_size_flag_errors():
    with pytest.raises(SystemExit, match="integer or max"):
        bench.main(["--batch-size", "lots"])
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        bench.main(["--batch-size", "max", "--device", "cpu"])


def test_sampler_latencies_end_to_end(tmp_path, monkeypatch):
    """--sampler: a first start warms every truncation the page offers, a second start over the same weights
    begins with all of them ready; requests after the warm-up compute nothing. The cache folder is put back."""
    monkeypatch.setenv("NANOBIGGAN_CACHE", str(tmp_path / "mine"))
    out = tmp_path / "s.json"
    r = bench.main(["--sampler", "fashion-mnist", "--standing-batches", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == r
    n = r["second_start"]["of"]
    assert n == 41 and r["second_start"]["ready"] == n and len(r["after_warm_up"]["every_truncation_new_seed_s"]) == n
    assert r["computed_on_request"] <= 2  # the opening view and the far truncation, if the warm-up had not reached them
    assert all(t > 0 for t in r["while_warming"]["class_change_s"] + r["while_warming"]["seed_change_s"])
    assert r["warm_up_s"] > 0 and Path(os.environ["NANOBIGGAN_CACHE"]) == tmp_path / "mine"
