"""Files on disk: one atomic writer, one check of an output path, one content hash, one cache directory.

A crash (a kill, a full disk, Ctrl-C) in the middle of a write must never leave half a file where a whole one
was: a resumed run would load a truncated checkpoint, a cached statistic would be read half, a PNG would be
cut. Every file this project writes (checkpoints, sample sheets, cached Inception statistics, classifier
weights, downloads, reports) goes through `atomic_write`: a temp file beside the target, fsync, os.replace,
fsync of the directory. A path then always holds either the previous complete file or the new one.

An output path that cannot be written is refused before the work that would fill it (`check_writable`), and a
step that fails halfway removes the directories it created (`undo_new_dirs`): a failed command leaves no trace.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: the directory entry lives in the directory's own data."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open directories; NTFS renames are journaled
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write) -> Path:
    """Call write(fileobj) on a temp file beside `path`, then atomically move it onto `path`. If `write`
    raises, the temp file is removed and `path` is left as it was. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temp file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def link_or_copy(src: Path, dst: Path) -> Path:
    """Atomically make `dst` a copy of `src`: a hard link (no second write), else a byte copy."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except OSError:  # filesystems without hard links
        tmp.unlink(missing_ok=True)
        atomic_write(dst, lambda fh: fh.write(Path(src).read_bytes()))
    return dst


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path, flag: str, directory: bool = False) -> Path:
    """Refuse, before any work, an output `path` (a file, or a directory with directory=True) that cannot be
    made: a directory where a file goes or the reverse, a file among its parents, a place this process cannot
    create anything in (permissions, a read-only disk, /proc). Probes with a temporary directory, removed at once."""
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != directory:
        raise ValueError(f"{flag} {path} is a {'file' if directory else 'directory'}: give "
                         f"{'a directory' if directory else 'a file name'}")
    base = _existing_ancestor(path if directory else path.parent)
    if not base.is_dir():
        raise ValueError(f"{flag} {path}: {base} is a file, so nothing can be created under it; choose another path")
    try:
        os.rmdir(tempfile.mkdtemp(dir=base, prefix=".write-probe-"))
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot create anything in {base} ({e.strerror}); "
                         f"choose a writable place") from None
    return path


@contextlib.contextmanager
def undo_new_dirs(path):
    """Run the block; if it raises, remove the directories on the way to `path` (and `path`) that it created, so
    a failed download into a nonexistent --data-dir leaves nothing behind."""
    path = Path(path).expanduser().absolute()
    new = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        yield
    except BaseException:
        for p in new:
            with contextlib.suppress(OSError):  # not empty (someone else's files) or already gone: leave it
                p.rmdir()
        raise


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime in the key: a changed file is re-hashed
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path) -> str:
    """The sha256 of a file's bytes (hex), computed once per version of the file."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def cache_dir() -> Path:
    """Where downloads and computed statistics are kept: $NANOBIGGAN_CACHE, else ~/.cache/nanobiggan."""
    return Path(os.environ.get("NANOBIGGAN_CACHE") or "~/.cache/nanobiggan").expanduser()
