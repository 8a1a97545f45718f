"""A run directory is the user's work: one writer at a time, and no run replaced by accident.

`RunDir(path, resuming_from, overwrite)` guards train.py's --out-dir:
- `check()`, before any work: the directory can be written (lab/files.py), no live process holds its lock, and it
  holds no run (last.pt, step_*.pt, best.pt, log.jsonl) unless this one resumes from it or --overwrite starts over;
- `with run_dir:` takes the lock for the whole run: `.lock` in the directory, an flock with the holder's PID in it.
  The OS drops it when the process ends, however it ends (kill -9 too), so a stale file never blocks a run; a second
  train.py is refused with the first one's PID. Under it the check is made again (nothing started in between),
  and --overwrite deletes the old run's files (RUN_FILES) before the first step.
Checkpoints are atomic and fall back to the newest readable one (lab/checkpoint.py); a resumed log drops the
records past its checkpoint (lab/monitor.py). On Windows (no fcntl) the directory is not locked.
"""
from __future__ import annotations

import os
from pathlib import Path

from nanobiggan.lab.files import check_writable

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = ".lock"
# What train.py writes into a run directory; --overwrite deletes these, and nothing else.
RUN_FILES = ("last.pt", "best.pt", "best.json", "pre_collapse.pt", "step_*.pt", "keep_step_*.pt", "log.jsonl",
             "samples/step_*.png", "plots/*.png")


class RunDirError(ValueError):
    """The run directory cannot be used as asked (in use, or holds another run)."""


class RunDir:
    """train.py's --out-dir: `check()` before the work, `with` around the training loop."""

    def __init__(self, path, resuming_from=None, overwrite: bool = False):
        self.path = Path(path).expanduser()
        self.resuming = resuming_from is not None and Path(resuming_from).parent.resolve() == self.path.resolve()
        self.overwrite, self._fd = overwrite, None

    def check(self) -> None:
        """Refuse, without writing anything, a directory that cannot be written, is in use, or holds another run."""
        check_writable(self.path, "--out-dir", directory=True)
        if (pid := self._holder()) is not None:
            raise self._in_use(pid)
        self._refuse_a_run()

    def __enter__(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._in_use(_pid(self.path / LOCK)) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
        try:
            self._refuse_a_run()
            if self.overwrite:
                for pattern in RUN_FILES:
                    for old in self.path.glob(pattern):
                        old.unlink()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (removing it would race with a new holder)
            self._fd = None

    def _holder(self) -> str | None:
        """The PID in .lock if a live process holds the lock; found without taking it or changing the file."""
        lock = self.path / LOCK
        if fcntl is None or not lock.is_file():
            return None
        with open(lock, "rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when fh closes
            except BlockingIOError:
                return _pid(lock)
        return None

    def _in_use(self, pid: str) -> RunDirError:
        return RunDirError(f"{self.path} is in use by another train.py (PID {pid}): wait for it to finish or stop it "
                           f"(kill {pid}), or choose another --out-dir")

    def _refuse_a_run(self) -> None:
        if self.resuming or self.overwrite or not self.path.is_dir():
            return
        found = [n for n in ("last.pt", "best.pt", "log.jsonl") if (self.path / n).is_file()]
        steps = sorted(p.name for p in self.path.glob("step_*.pt"))
        found += [f"{len(steps)} step file(s), the newest {steps[-1]}"] if steps else []
        if found:
            raise RunDirError(f"--out-dir {self.path} already holds a run ({', '.join(found)}): continue it with "
                              f"--resume {self.path}, start over with --overwrite (deletes its checkpoints, log, "
                              f"samples and plots), or choose another --out-dir")


def _pid(lock: Path) -> str:
    text = lock.read_text(errors="replace").strip()
    return text if text.isdigit() else "unknown"
