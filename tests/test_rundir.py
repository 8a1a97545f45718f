"""nanobiggan/lab/rundir.py: one writer per run directory, and no run replaced by accident (the same through
train.py, with a live second process and Ctrl-C: tests/test_bad_input.py)."""
import os

import pytest

from nanobiggan.lab.files import check_writable, undo_new_dirs
from nanobiggan.lab.rundir import LOCK, RunDir, RunDirError


def test_the_lock_is_held_for_the_run_and_names_its_holder(tmp_path):
    run = tmp_path / "run"
    with RunDir(run):
        lock = (run / LOCK).read_text()
        assert lock.strip() == str(os.getpid())
        with pytest.raises(RunDirError, match=f"in use by another train.py \\(PID {os.getpid()}\\)"):
            RunDir(run).check()  # finding the holder changes nothing
        assert (run / LOCK).read_text() == lock
        with pytest.raises(RunDirError, match="in use"):
            with RunDir(run):
                pass
    RunDir(run).check()  # released: the stale file blocks nothing
    with RunDir(run):
        pass


def test_a_run_is_refused_unless_resumed_from_or_overwritten(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    for name in ("last.pt", "step_00000005.pt", "log.jsonl", "best.json", "samples/step_00000005.png", "notes.txt"):
        (run / name).write_text("x")
    with pytest.raises(RunDirError, match=r"already holds a run \(last.pt, log.jsonl, 1 step file\(s\)"):
        RunDir(run).check()
    RunDir(run, resuming_from=run / "step_00000005.pt").check()
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir(run, resuming_from=tmp_path / "elsewhere" / "last.pt").check()
    with RunDir(run, overwrite=True):
        assert sorted(p.name for p in run.rglob("*")) == [LOCK, "notes.txt", "samples"]  # the run's files only


def test_output_paths_are_checked_without_writing(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert check_writable(tmp_path / "new" / "deeper" / "a.png", "--out") == tmp_path / "new" / "deeper" / "a.png"
    for path, directory, needle in ((tmp_path / "afile", True, "is a file"), (tmp_path, False, "is a directory"),
                                    (tmp_path / "afile" / "x.png", False, "is a file, so nothing"),
                                    ("/proc/x/y.png", False, "cannot create anything in /proc")):
        with pytest.raises(ValueError, match=needle):
            check_writable(path, "--out", directory=directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # probes leave nothing


def test_undo_new_dirs_removes_only_what_the_failed_block_created(tmp_path):
    target = tmp_path / "a" / "b"
    with pytest.raises(OSError):
        with undo_new_dirs(target):
            target.mkdir(parents=True)
            raise OSError("download failed")
    assert not (tmp_path / "a").exists()
    with undo_new_dirs(target):
        target.mkdir(parents=True)
    assert target.is_dir()  # kept on success
