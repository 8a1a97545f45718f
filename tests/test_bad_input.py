"""Issue 16's battery: what a user can get wrong, through the four command lines (train.py, sample.py,
python -m nanobiggan.evaluate, python -m nanobiggan.classifier), called in-process so the battery stays fast.

Every battery case (`refused`) asserts four things: a non-zero exit; exactly one line on stderr, starting with
`error:`; no traceback (nothing but SystemExit leaves main, and nothing runs past HANG_S seconds: a hang); no file
created or changed anywhere the case could write (a snapshot of those folders before and after). Groups: paths,
numbers, names, class ids, checkpoints, truncation, devices, resume changes.

Then the run directory's protection, where files are written on purpose: --overwrite, --resume COPY, the fallback
from a corrupt last.pt with a log that keeps one record per step, a run that goes NaN, a full disk; and, in real
processes, the lock held by a live train.py, Ctrl-C, and one end-to-end check that a process prints one line.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import sample  # noqa: E402
import train  # noqa: E402

from nanobiggan.lab import classifier, evaluate, generators, pretrained  # noqa: E402
from nanobiggan.lab.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from nanobiggan.trainer import Trainer  # noqa: E402

HANG_S = 30
MAINS = {"train": train.main, "sample": sample.main, "evaluate": evaluate.main, "classifier": classifier.main}
TINY = ["--dataset", "cifar10", "--data-dir", "{data}", "--preset", "cifar10-tiny", "--g-ch", "8", "--d-ch", "8",
        "--batch-size", "8", "--d-steps", "1", "--precision", "fp32", "--device", "cpu", "--steps", "2"]
FAST = ["--standing-batches", "1", "--standing-batch-size", "4", "--device", "cpu"]  # sample and evaluate


class Hang(BaseException):
    """Raised by SIGALRM in a case that runs past HANG_S (a BaseException: no `except Exception` swallows it)."""


def snapshot(*roots: Path) -> dict:
    """{path: (size, mtime) or 'dir'} for everything under `roots`."""
    return {str(p): "dir" if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for root in roots if root.exists() for p in (root, *root.rglob("*"))}


def call(main, argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of main(argv) run as its process would: sys.exit("text") prints the text, status 1."""
    def hang(signum, frame):
        raise Hang
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG_S)
    status = 0
    try:
        main(argv)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except Hang:
        pytest.fail(f"HANG: still running after {HANG_S} s")
    except Exception as e:  # noqa: BLE001: what a user would see as a traceback
        pytest.fail(f"TRACEBACK: {type(e).__name__}: {e}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return status, capsys.readouterr().err


def refused(cli: str, argv: list[str], capsys, roots) -> str:
    """Run a battery case and assert its four properties; returns the one line."""
    before = snapshot(*roots)
    status, err = call(MAINS[cli], argv, capsys)
    assert status != 0, f"ACCEPTED: exit status 0, stderr {err!r}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one `error:` line: {err!r}"
    assert snapshot(*roots) == before, "files were created or changed"
    return lines[0]


def tiny(out: Path, data: Path, *extra: str) -> list[str]:
    return [a.replace("{data}", str(data)) for a in TINY] + ["--out-dir", str(out), *extra]


# ------------------------------------------------------------------------------------------- shared material

@pytest.fixture(scope="module")
def run(tmp_path_factory, fake_cifar10):
    """A finished 2-step run (checkpoints at steps 1 and 2, a log, a sheet); battery cases must leave it as it is."""
    out = tmp_path_factory.mktemp("battery") / "run"
    shutil.copytree(fake_cifar10, out.parent / "data")
    train.main(tiny(out, out.parent / "data", "--ckpt-every", "1", "--log-every", "1"))
    return out


@pytest.fixture(scope="module")
def bad(run):
    """Checkpoints that are damaged, foreign, or whose contents do not agree; image folders that cannot be used."""
    d = run.parent / "bad"
    d.mkdir()
    real, state = (run / "last.pt").read_bytes(), load_checkpoint(run / "last.pt")
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_text("these are not weights\n")
    (d / "truncated.pt").write_bytes(real[: len(real) // 2])
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"weights": torch.zeros(2)}, d / "foreign.pt")
    torch.save([1, 2], d / "list.pt")
    torch.save({"format": "nanobiggan-1", "path": Path("x")}, d / "object.pt")  # a class weights_only refuses
    with zipfile.ZipFile(d / "zip.pt", "w") as z:
        z.writestr("notes.txt", "a zip, not a torch file")
    save_checkpoint({**state, "config": {**state["config"], "g_ch": 16}}, d / "mismatch.pt")  # weights are g_ch 8
    save_checkpoint({**state, "config": {**state["config"], "name": "nope"}}, d / "badname.pt")
    save_checkpoint({**state, "config": {**state["config"], "g_lr": float("nan")}}, d / "nanconfig.pt")
    save_checkpoint({**state, "config": "cifar10"}, d / "strconfig.pt")
    save_checkpoint({k: v for k, v in state.items() if k != "G_ema"}, d / "no_ema.pt")
    save_checkpoint({**state, "opt_g": {"junk": 1}}, d / "badopt.pt")
    generators.slim(run / "last.pt", d / "slim.pt", made_by="the battery")
    images = run.parent / "images"
    for name, write in {"empty": lambda p: p.write_bytes(b""), "text": lambda p: p.write_text("not an image"),
                        "float": lambda p: Image.fromarray(np.ones((4, 4), np.float32)).save(p, format="TIFF"),
                        "noimages": None, "noclasses": None}.items():
        folder = images / name / ("cls" if name != "noclasses" else "")
        folder.mkdir(parents=True)
        if name == "noimages":
            (folder / "readme.txt").write_text("no images here")
        elif write:
            Image.new("RGB", (8, 8)).save(folder / "fine.png")
            write(folder / "broken.png")
    return d


@pytest.fixture
def where(run, bad, tmp_path, monkeypatch):
    """The places a case's argv names ({run}, {bad}, {data}, {imgs}, {tmp}, {file}) and the folders it must leave
    as they are. Offline: every download fails at once; the cache is a temporary folder; cwd is one too."""
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(pretrained, "_download", offline)
    monkeypatch.setenv("NANOBIGGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NANOBIGGAN_INCEPTION", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "adir.png").mkdir()
    places = {"run": run, "bad": bad, "data": run.parent / "data", "imgs": run.parent / "images", "tmp": tmp_path,
              "file": tmp_path / "afile"}
    return places, [run.parent, tmp_path]


def expand(argv, places) -> list[str]:
    out = []
    for a in argv:
        for key, path in places.items():
            a = a.replace("{" + key + "}", str(path))
        out.append(a)
    return out


def check(cli, argv, needle, where, capsys):
    places, roots = where
    resume = cli == "train" and argv[0] in ("--resume", "--plots")  # the run's own config, not TINY's
    base = {"train": ["--device", "cpu"] if resume else TINY + ["--out-dir", "{tmp}/run"],
            "sample": ["--checkpoint", "{run}", *FAST],
            "evaluate": ["--checkpoint", "{run}", "--n", "20", "--inception", "none", *FAST],
            "classifier": ["--dataset", "cifar10", "--data-dir", "{data}", "--out", "{tmp}/c.pt"]}[cli]
    line = refused(cli, expand(base + argv, places), capsys, roots)
    assert needle.lower() in line.lower(), line


# ------------------------------------------------------------------------------------------- the battery

PATHS = [
    ("train", ["--data-dir", "{tmp}/nowhere"], "CIFAR-10 not found"),  # and no empty --data-dir left behind
    ("train", ["--data-dir", "{file}"], "CIFAR-10 not found"),
    ("train", ["--dataset", "fashion-mnist", "--data-dir", "{tmp}/nowhere"], "Fashion-MNIST not found"),
    ("train", ["--dataset", "folder", "--data-dir", "{tmp}/nowhere"], "does not exist"),
    ("train", ["--dataset", "folder", "--data-dir", "{imgs}/noclasses"], "no class subfolders"),
    ("train", ["--dataset", "folder", "--data-dir", "{imgs}/noimages"], "no images"),
    ("train", ["--dataset", "folder", "--data-dir", "{imgs}/empty"], "broken.png"),
    ("train", ["--dataset", "folder", "--data-dir", "{imgs}/text"], "broken.png"),
    ("train", ["--dataset", "folder", "--data-dir", "{imgs}/float"], "PIL mode F"),
    ("train", ["--out-dir", "{file}"], "is a file"),
    ("train", ["--out-dir", "{file}/run"], "is a file"),
    ("train", ["--out-dir", "/proc/nanobiggan-run"], "cannot create"),
    ("train", ["--out-dir", "{run}"], "already holds a run"),
    ("train", ["--resume", "{tmp}/missing"], "does not exist"),
    ("train", ["--resume", "{tmp}/emptydir"], "no checkpoint in"),
    ("train", ["--resume", "--out-dir", "{tmp}/nothing"], "no checkpoint"),
    ("train", ["--plots", "{tmp}/missing"], "no run log"),
    ("train", ["--plots", "{file}"], "no run log"),
    ("sample", ["--checkpoint", "{tmp}/missing.pt"], "no checkpoint at"),
    ("sample", ["--checkpoint", "{tmp}/emptydir"], "holds no checkpoint"),
    ("sample", ["--out", "{tmp}/sheet.jpg"], "PNG"),
    ("sample", ["--out", "{tmp}/adir.png"], "is a directory"),
    ("sample", ["--out", "{file}/sheet.png"], "is a file"),
    ("sample", ["--out", "/proc/sheet.png"], "cannot create"),
    ("sample", ["--pretrained", "{tmp}/missing"], "neither a directory"),
    ("sample", ["--pretrained", "{tmp}/emptydir"], "lacks"),
    ("sample", ["--pretrained", "biggan-deep-128"], "could not download"),  # and no empty cache folder
    ("sample", ["--pretrained", "biggan-deep-128", "--out", "{file}/x.png"], "is a file"),
    ("evaluate", ["--checkpoint", "{tmp}/missing.pt"], "no checkpoint at"),
    ("evaluate", ["--checkpoint", "{tmp}/emptydir"], "holds no checkpoint"),
    ("evaluate", ["--json", "{file}/r.json"], "is a file"),
    ("evaluate", ["--json", "/proc/r.json"], "cannot create"),
    ("evaluate", ["--json", "{tmp}/emptydir"], "is a directory"),
    ("evaluate", ["--truncation-sweep", "none", "0.5", "--out-dir", "{file}"], "is a file"),
    ("evaluate", ["--truncation-sweep", "none", "0.5", "--out-dir", "/proc/sweep"], "cannot create"),
    ("evaluate", ["--cache-dir", "{file}"], "is a file"),
    ("evaluate", ["--inception", "{tmp}/missing.pt"], "does not exist"),
    ("evaluate", ["--inception", "{bad}/text.pt"], "not TorchScript"),
    ("evaluate", ["--classifier", "{tmp}/missing.pt"], "no classifier"),
    ("evaluate", ["--classifier", "{bad}/text.pt"], "not a nanobiggan classifier"),
    ("classifier", ["--out", "{file}/c.pt"], "is a file"),
    ("classifier", ["--out", "/proc/c.pt"], "cannot create"),
    ("classifier", ["--data-dir", "{tmp}/nowhere"], "CIFAR-10 not found"),
]



FLOATS = ["shared_init_std", "bn_eps", "sn_eps", "ortho_beta", "r1_gamma", "sigma_clamp", "sigma_clamp_ratio",
          "g_lr", "d_lr", "beta1", "beta2", "adam_eps", "ema_decay"]
INVALID_FINITE = {"shared_init_std": "-1", "bn_eps": "0", "sn_eps": "-1", "ortho_beta": "-1", "r1_gamma": "-1",
                  "sigma_clamp": "-1", "sigma_clamp_ratio": "-0.5", "g_lr": "0", "d_lr": "-1", "beta1": "1",
                  "beta2": "-0.5", "adam_eps": "0", "ema_decay": "1"}
AT_LEAST_ONE = ["g_ch", "d_ch", "z_dim", "shared_dim", "batch_size", "grad_accum", "d_steps", "steps", "n_classes",
                "sn_num_svs", "log_every", "sample_every", "ckpt_every", "keep_last", "standing_batches"]


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


NUMBERS = [("train", [flag(f), v], f"'{f}'") for f in FLOATS for v in ("nan", "inf")] + \
    [("train", [flag(f), "-inf"], flag(f)) for f in ("g_lr", "ortho_beta")] + \
    [("train", [flag(f), v], f"'{f}'") for f, v in INVALID_FINITE.items()] + \
    [("train", [flag(f), "0"], f"'{f}'") for f in AT_LEAST_ONE] + [
    ("train", ["--eval-n", "1"], "'eval_n'"), ("train", ["--ema-start", "-1"], "'ema_start'"),
    ("train", ["--eval-every", "-1"], "'eval_every'"), ("train", ["--seed", "-1"], "'seed'"),
    ("train", ["--seed", "4294967296"], "'seed'"), ("train", ["--resolution", "48"], "'resolution'"),
    ("train", ["--z-dim", "81"], "'z_dim'"), ("train", ["--g-attn", "7"], "'g_attn'"),
    ("train", ["--d-attn", "5"], "'d_attn'"), ("train", ["--g-ch", "3"], "divisible by 8"),
    ("train", ["--batch-size", "6", "--grad-accum", "4"], "'batch_size'"),
    ("train", ["--sigma-clamp-ratio", "2"], "sn_num_svs"), ("train", ["--workers", "-1"], "--workers"),
    ("train", ["--batch-size", "abc"], "--batch-size"), ("train", ["--steps", "1.5"], "--steps"),
    ("train", ["--g-lr", "fast"], "--g-lr"), ("train", ["--hflip", "maybe"], "--hflip"),
    ("train", ["--deep", "2"], "--deep"), ("train", ["--batch-size", "64"], "fewer than one batch"),
    ("sample", ["--n", "0"], "--n"), ("sample", ["--n", "-3"], "--n"), ("sample", ["--n", "abc"], "--n"),
    ("sample", ["--batch-size", "0"], "--batch-size"), ("sample", ["--standing-batches", "0"], "--standing-batches"),
    ("sample", ["--standing-batch-size", "0"], "--standing-batch-size"), ("sample", ["--seed", "-1"], "--seed"),
    ("sample", ["--seed", str(2**40)], "--seed"), ("sample", ["--seed", "abc"], "--seed"),
    ("evaluate", ["--n", "0"], "--n"), ("evaluate", ["--n", "abc"], "--n"), ("evaluate", ["--ref-n", "0"], "--ref-n"),
    ("evaluate", ["--min-samples", "1"], "--min-samples"), ("evaluate", ["--batch-size", "0"], "--batch-size"),
    ("evaluate", ["--standing-batches", "0"], "--standing-batches"),
    ("evaluate", ["--standing-batch-size", "-2"], "--standing-batch-size"), ("evaluate", ["--seed", "-1"], "--seed"),
    ("classifier", ["--epochs", "0"], "--epochs"), ("classifier", ["--batch-size", "0"], "--batch-size"),
    ("classifier", ["--widths", "0", "8", "8"], "--widths"), ("classifier", ["--seed", "-1"], "--seed"),
]



NAMES = [
    ("train", ["--dataset", "imagenet"], "'dataset'"), ("train", ["--preset", "nope"], "unknown preset"),
    ("train", ["--loss", "lsgan"], "'loss'"), ("train", ["--precision", "fp8"], "'precision'"),
    ("train", ["--bogus", "1"], "--bogus"), ("train", ["--sample-ever", "10"], "--sample-ever"),
    ("train", ["--resume", "{run}", "--overwrite"], "--overwrite"),
    ("sample", ["--interp", "w"], "--interp"), ("sample", ["--bogus"], "--bogus"),
    ("sample", ["--checkpoint", "cifar100"], "no checkpoint at"),
    ("evaluate", ["--bogus"], "--bogus"),
    ("evaluate", ["--truncation", "0.5", "--truncation-sweep", "1"], "not allowed"),
    ("evaluate", ["--classifier", "none"], "nothing to score"),
    ("classifier", ["--dataset", "imagenet"], "--dataset"),
]
CLASSES = [
    ("sample", ["--class", "10"], "out of range"), ("sample", ["--class", "-1"], "out of range"),
    ("sample", ["--class", "3", "99"], "out of range"), ("sample", ["--class", "unicorn"], "unknown class"),
    ("sample", ["--interp", "class", "--class", "3"], "at least 2 class ids"),
]



UNREADABLE = {"empty": "empty", "text": "not a torch zip", "truncated": "not a readable", "random": "not a",
              "foreign": "foreign", "list": "foreign", "object": "safe (weights_only) loading refuses",
              "zip": "not a readable"}
INCONSISTENT = {"mismatch": "do not fit the config", "badname": "config saved in it is not valid",
                "nanconfig": "config saved in it is not valid", "strconfig": "config saved in it is not valid",
                "no_ema": "has no G_ema"}
CHECKPOINTS = [(cli, [flag, "{bad}/" + name + ".pt"], needle)
               for name, needle in {**UNREADABLE, **INCONSISTENT}.items()
               for cli, flag in (("train", "--resume"), ("sample", "--checkpoint"), ("evaluate", "--checkpoint"))] + [
    ("train", ["--resume", "{bad}/slim.pt"], "has no batches_drawn, G, D, opt_g, opt_d, scaler, rng"),
    ("train", ["--resume", "{bad}/badopt.pt"], "cannot restore a trainer"),
    ("sample", ["--checkpoint", "{bad}/slim.pt", "--no-ema"], "EMA generator only"),
    ("evaluate", ["--checkpoint", "{bad}/slim.pt", "--no-ema"], "EMA generator only"),
]



TRUNCATION = [(cli, ["--truncation", v], needle) for cli in ("sample", "evaluate") for v, needle in (
    ("0", "positive"), ("-1", "positive"), ("nan", "positive"), ("-inf", "truncation"), ("abc", "truncation"),
    ("1e-9", "smallest allowed is 0.01"), ("0.001", "smallest allowed is 0.01"))] + [
    ("evaluate", ["--truncation-sweep", "none", "0.5", "1e-9"], "smallest allowed is 0.01"),
    ("sample", ["--pretrained", "biggan-deep-128", "--truncation", "0"], "positive"),
]



DEVICES = [(cli, ["--device", device], needle) for cli in MAINS for device, needle in (
    ("cuda", "no CUDA GPU"), ("cuda:1", "no CUDA GPU"), ("mps", "MPS is not available"),
    ("tpu", "TorchTPU is not usable here"), ("tpu:1", "pip install torch-tpu"), ("xla", "choose auto"))]



RESUME = [("train", ["--resume", "{run}", *change], needle) for change, needle in (
    (["--g-ch", "16"], "g_ch 8 -> 16"), (["--d-ch", "16"], "d_ch 8 -> 16"), (["--z-dim", "40"], "z_dim 80 -> 40"),
    (["--resolution", "64"], "resolution 32 -> 64"), (["--shared-dim", "64"], "shared_dim 128 -> 64"),
    (["--g-attn", "0"], "g_attn 16 -> 0"), (["--d-attn", "0"], "d_attn 16 -> 0"),
    (["--n-classes", "5"], "n_classes 10 -> 5"), (["--sn-num-svs", "2"], "sn_num_svs 1 -> 2"),
    (["--deep", "true"], "architecture"), (["--preset", "cifar10"], "trained from preset cifar10-tiny"),
    (["--g-lr", "inf"], "'g_lr'"))]



GROUPS = {"paths": PATHS, "numbers": NUMBERS, "names": NAMES, "class ids": CLASSES, "checkpoints": CHECKPOINTS,
          "truncation": TRUNCATION, "devices": DEVICES, "resume": RESUME}
CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(),
                              reason="needs a CPU-only torch")


@pytest.mark.parametrize("cli, argv, needle", [
    pytest.param(cli, argv, needle, id=f"{group}: {cli} {' '.join(argv)}"[:100],
                 marks=[CPU_ONLY] if group == "devices" else [])
    for group, cases in GROUPS.items() for cli, argv, needle in cases])
def test_battery(cli, argv, needle, where, capsys):
    check(cli, argv, needle, where, capsys)


def test_the_battery_has_every_group_and_enough_cases():
    assert all(GROUPS.values()) and sum(map(len, GROUPS.values())) >= 115
    assert {cli for cases in GROUPS.values() for cli, _, _ in cases} == set(MAINS)


# ------------------------------------------------------------------------------------------- the run directory

def steps_in_log(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
            if "d_loss" in json.loads(line)]


def test_overwrite_starts_a_new_run(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    train.main(tiny(out, run.parent / "data", "--steps", "1", "--overwrite"))
    assert steps_in_log(out) == [1]
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt", "step_00000001.pt"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_00000001.png"]


def test_resume_copy_writes_into_the_copy_and_applies_changed_fields(run, tmp_path, capsys):
    copy, before = tmp_path / "copy", snapshot(run)
    shutil.copytree(run, copy)
    train.main(["--resume", str(copy), "--steps", "3", "--g-lr", "1e-3", "--device", "cpu"])
    said = capsys.readouterr().out
    assert "resuming with changed fields: " in said and "g_lr 0.0002 -> 0.001" in said and "steps 2 -> 3" in said
    assert snapshot(run) == before  # the original run is untouched
    state = load_checkpoint(copy / "last.pt")
    assert state["step"] == 3 and state["config"]["out_dir"] == str(copy) and (copy / "step_00000003.pt").is_file()
    assert {g["lr"] for g in state["opt_g"]["param_groups"]} == {1e-3}  # said, and done
    assert steps_in_log(copy) == [1, 2, 3]


def test_corrupt_last_falls_back_to_the_newest_readable_step_and_the_log_has_no_duplicates(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)  # a copy: last.pt and step_00000002.pt are two files now, no longer one hard link
    (out / "last.pt").write_bytes(b"")
    (out / "step_00000002.pt").write_bytes(b"PK\x03\x04cut")
    train.main(["--resume", str(out), "--steps", "3", "--device", "cpu"])
    said = capsys.readouterr().out
    assert "last.pt is not a readable" in said and f"resuming from {out / 'step_00000001.pt'}" in said
    assert "dropped 1 record(s) past step 1" in said
    assert steps_in_log(out) == [1, 2, 3] and load_checkpoint(out / "last.pt")["step"] == 3


def poison_at(monkeypatch, step: int):
    """After `step`, G's weights are NaN: the run diverges as one with a far too high learning rate would."""
    train_step = Trainer.train_step

    def step_then_poison(self, batches):
        stats = train_step(self, batches)
        if self.step == step:
            with torch.no_grad():
                self.G.linear.weight.fill_(float("nan"))
        return stats
    monkeypatch.setattr(Trainer, "train_step", step_then_poison)


@pytest.mark.parametrize("ckpt_every, found", [(1, "non-finite weights in G"), (2, "d_loss=nan")])
def test_a_run_that_goes_non_finite_stops_and_keeps_the_last_finite_checkpoint(run, tmp_path, monkeypatch, capsys,
                                                                                ckpt_every, found):
    """Poisoned after step 3: saving step 3 finds NaN weights (ckpt_every 1), or step 4's losses are NaN (2)."""
    out = tmp_path / "run"
    poison_at(monkeypatch, 3)
    status, err = call(train.main, tiny(out, run.parent / "data", "--steps", "6", "--ckpt-every", str(ckpt_every)),
                       capsys)
    last = err.strip().splitlines()[-1]
    assert status == 1 and "Traceback" not in err and found in last
    assert last.startswith("error: the run diverged at step") and "last.pt still holds step 2" in last
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 2 and all(v.isfinite().all() for v in state["G"].values() if v.is_floating_point())


def test_non_finite_statistics_between_logging_steps_are_caught_at_the_next_one(run, tmp_path, monkeypatch, capsys):
    """The step's statistics stay on the device (no host sync per step): a NaN at step 3, a step that neither
    logs nor saves, is remembered there and stops the run at step 4 (the next logging step), naming step 3."""
    train_step, out = Trainer.train_step, tmp_path / "run"

    def nan_loss_at_3(self, batches):
        stats = train_step(self, batches)
        return {**stats, "g_loss": stats["g_loss"] * float("nan")} if self.step == 3 else stats
    monkeypatch.setattr(Trainer, "train_step", nan_loss_at_3)
    status, err = call(train.main, tiny(out, run.parent / "data", "--steps", "8", "--ckpt-every", "2",
                                        "--log-every", "4"), capsys)
    last = err.strip().splitlines()[-1]
    assert status == 1 and last.startswith("error: the run diverged at step 3 (") and "g_loss=nan" in last
    assert "last.pt still holds step 2" in last and load_checkpoint(out / "last.pt")["step"] == 2


def test_a_full_disk_stops_in_one_line_and_keeps_the_last_checkpoint(run, tmp_path, monkeypatch, capsys):
    out, real_save, calls = tmp_path / "run", torch.save, []

    def disk_full_at_the_second(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh, *args, **kwargs)
    monkeypatch.setattr(torch, "save", disk_full_at_the_second)
    status, err = call(train.main, tiny(out, run.parent / "data", "--steps", "3", "--ckpt-every", "1"), capsys)
    last = err.strip().splitlines()[-1]
    assert status == 1 and "Traceback" not in err
    assert last.startswith("error: cannot save step 2's checkpoint") and "No space left on device" in last
    assert "last.pt still holds step 1" in last and f"--resume {out}" in last
    assert load_checkpoint(out / "last.pt")["step"] == 1 and not list(out.glob(".*tmp"))


def subprocess_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def test_lock_names_the_live_process_and_ctrl_c_saves_a_checkpoint(run, tmp_path, capsys):
    """A real train.py holds the lock: a second run into its directory is refused with its PID. Ctrl-C (SIGINT)
    then finishes the step, saves it atomically and exits 130 with one line naming the file; the lock dies with
    the process, and the run resumes from that checkpoint with one log record per step."""
    out = tmp_path / "run"
    argv = tiny(out, run.parent / "data", "--steps", "100000", "--log-every", "1", "--ckpt-every", "100000",
                "--sample-every", "100000")
    with open(tmp_path / "stderr", "w") as err_file:
        proc = subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, env=subprocess_env(),
                                stdout=subprocess.DEVNULL, stderr=err_file)
        try:
            deadline = time.monotonic() + 120
            while not ((out / "log.jsonl").is_file() and (out / "log.jsonl").read_text().count("\n") >= 1):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()[-2000:]
                time.sleep(0.2)
            status, err = call(train.main, argv, capsys)
            assert status == 1 and err.strip() == f"error: {out} is in use by another train.py (PID {proc.pid}): " \
                f"wait for it to finish or stop it (kill {proc.pid}), or choose another --out-dir"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
    err = (tmp_path / "stderr").read_text()
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("interrupted (Ctrl-C) at step "), err[-2000:]
    step = int(last.split("at step ")[1].split(":")[0])
    assert f"saved {out / f'step_{step:08d}.pt'} (= last.pt)" in last and f"--resume {out}" in last
    assert load_checkpoint(out / "last.pt")["step"] == step and not list(out.glob(".*tmp"))
    train.main(["--resume", str(out), "--steps", str(step + 1), "--device", "cpu"])
    assert steps_in_log(out) == list(range(1, step + 2))


@pytest.mark.parametrize("command", [["sample.py", "--checkpoint", "{run}", "--truncation", "1e-9"],
                                     ["train.py", "--g-lr", "inf", "--out-dir", "{tmp}/run"]], ids=["sample", "train"])
def test_a_real_process_prints_one_line(command, run, tmp_path):
    argv = expand(command, {"run": run, "tmp": tmp_path})
    proc = subprocess.run([sys.executable, str(REPO / argv[0]), *argv[1:]], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
