"""The on-disk kernel cache: atomic writes, a lock that dies with its process, complete builds.

A build is made in a temporary folder and renamed into place, so a folder that exists is
complete and a warm process only reads it. Builders serialize on ``<folder>.lock`` with
``fcntl.flock``: the kernel releases the lock when its process dies, so a killed process never
leaves a lock that blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_TIMEOUT_S", "write_atomic", "file_lock", "build_cached", "disk_usage"]

LOCK_TIMEOUT_S = 900.0


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(
    path: Path, timeout: float = LOCK_TIMEOUT_S, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if needed).

    The kernel drops the lock when the holding process exits or is killed, so a lock file left
    behind never blocks. Raises TimeoutError after ``timeout`` seconds of waiting on a live
    holder; ``on_wait`` is called once if the lock is busy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"waited {timeout:.0f} s for the lock {path}, held by another process "
                        "that is still running; stop it or delete the cache folder"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def build_cached(
    folder: Path,
    build: Callable[[Path], None],
    marker: str = "kernels.json",
    on_build: Callable[[], None] | None = None,
    on_wait: Callable[[], None] | None = None,
    timeout: float = LOCK_TIMEOUT_S,
) -> bool:
    """Make sure ``folder`` holds a complete build; return True if this call built it.

    ``build(tmp)`` fills a fresh temporary folder next to ``folder`` (it must write ``marker``),
    which is then renamed to ``folder``. Processes serialize on ``<folder>.lock``; the ones that
    waited find the folder complete and do not build again.
    """
    if (folder / marker).is_file():
        return False
    with file_lock(folder.with_name(folder.name + ".lock"), timeout, on_wait):
        if (folder / marker).is_file():
            return False
        if on_build is not None:
            on_build()
        if folder.exists():  # an incomplete folder from an interrupted in-place build
            shutil.rmtree(folder)
        for stale in folder.parent.glob(f".{folder.name}.*"):
            if stale.is_dir():  # the temporary folder of a builder that died (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            build(tmp)
            if not (tmp / marker).is_file():
                raise RuntimeError(f"the build did not write {marker}")
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


def disk_usage(path: Path) -> int:
    """Bytes of a file, or of every file below a folder (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
