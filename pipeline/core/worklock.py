"""One run at a time per work directory: two publishes of one variant in one work directory would
overwrite each other's stamps and delete each other's disk.

The lock is an fcntl lock on WORKDIR/<variant>/.lock, held for the whole command and released
by the kernel when the process ends however it ends (no stale lock after a kill). The file says
who holds it (pid, command, since when), for the one-line error the second run prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.errors import UsageError

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    try:
        found = json.loads(path.read_text())
        return f"pid {found['pid']} ({found['command']}) since {found['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def locked(directory: Path, command: str | None = None) -> Iterator[None]:
    """Hold DIRECTORY's lock, or fail at once naming its holder (exit 2, nothing done)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"the work directory {directory} is in use by {_holder(path)}",
                hint="wait for it to finish, or pass another --workdir",
            ) from None
        me = {
            "pid": os.getpid(),
            "command": command or shlex.join(["bootc-pipeline", *sys.argv[1:]]),
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode() + b"\n", 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
