"""Two runs in one work directory: the second stops at once naming the first (pid, command, since
when), exit 2, nothing done; the lock goes with the process that held it. Two real processes of
the real CLI; the first holds the lock while it waits on a registry that never answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from pipeline.core import worklock
from tests.support.workdirs import (
    DiskCache,
    cli_env,
    error_lines,
    make_workdir,
    push_argv,
    run_push,
    start_push,
)

WAIT_SECONDS = 60.0


def test_a_second_run_in_the_same_work_directory_names_the_first(tmp_path: Path) -> None:
    (tmp_path / "disks").mkdir()
    workdir = make_workdir(tmp_path / "work", DiskCache(tmp_path / "disks"))
    env = cli_env(tmp_path / "home", chunk_size=1 << 20)
    lock = workdir.variant_dir / worklock.LOCK_NAME
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        argv = push_argv(workdir, host, "--read-timeout", "120", "--retry-attempts", "1")
        first = start_push(argv, env, tmp_path / "logs" / "first")
        try:
            holder = _wait_for_holder(lock, first)
            assert holder["command"].startswith("bootc-pipeline push ")
            stamps = {p: p.read_bytes() for p in workdir.root.rglob("*.json")}
            second = run_push(argv, env)
            assert second.returncode == 2, second.stderr[-2000:]
            [line] = error_lines(second.stderr)
            assert f"is in use by pid {first.pid} (bootc-pipeline push " in line, line
            assert f"since {holder['since']}" in line and str(workdir.variant_dir) in line, line
            assert {p: p.read_bytes() for p in workdir.root.rglob("*.json")} == stamps
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    # the kernel released the killed holder's lock: the next run takes it (and gets as far as
    # the registry, which is gone now)
    third = run_push(push_argv(workdir, host, "--retry-attempts", "1"), env)
    assert "in use by" not in third.stderr, third.stderr[-2000:]


def _wait_for_holder(lock: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first run ended before it held the lock"
        try:
            found: dict[str, Any] = json.loads(lock.read_text())
        except (OSError, ValueError):
            found = {}
        if found.get("pid") == proc.pid:
            return found
        time.sleep(0.2)
    raise AssertionError(f"the first run did not take {lock} within {WAIT_SECONDS:.0f} s")
