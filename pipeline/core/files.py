"""Files written atomically (temp file in the same directory, fsync, rename, fsync of the
directory), as cosa does, and early write-back for large ones."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.core.errors import PipelineError


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a file that becomes `path` only if the block completes; nothing half-written stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.errno == errno.ENOSPC:
            raise PipelineError(f"no space left on device while writing {path}") from None
        raise PipelineError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    with atomic_output(path, mode=mode) as out:
        out.write(data)


def fsync_directory(directory: Path) -> None:
    """Make the entries just renamed into `directory` durable (the file's own fsync does not)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteBehind:
    """Early write-back of a file being written front to back, so its final fsync has little
    left to do: every `step` bytes, `posix_fadvise(POSIX_FADV_DONTNEED)` over what was written
    before. On Linux that starts write-back of those pages without waiting for it (the kernel
    calls its WB_SYNC_NONE writer, what `sync_file_range(SYNC_FILE_RANGE_WRITE)` does; Python's
    os module has no sync_file_range), and drops the pages a previous call already wrote, so a
    large disk does not crowd the page cache. It waits for nothing and consumes no write-back
    error: the final fsync still reports every one, so durability rests on it alone.
    """

    def __init__(self, fd: int, *, start: int = 0, step: int = 32 * 1024 * 1024) -> None:
        self._fd = fd
        self._step = step
        self._written = start  # the file's length: it is written from `start` on
        self._kicked = start  # write-back was started for [start, _kicked)
        self._dropped = start  # and asked for once more below _dropped, to drop written pages

    def wrote(self, count: int) -> None:
        self._written += count
        if self._written - self._kicked >= self._step:
            start, self._dropped, self._kicked = self._dropped, self._kicked, self._written
            try:
                os.posix_fadvise(self._fd, start, self._written - start, os.POSIX_FADV_DONTNEED)
            except OSError:  # a hint a file system may refuse: the final fsync does the work
                self._step = 1 << 62
