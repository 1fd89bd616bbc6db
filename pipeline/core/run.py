"""The one chokepoint for subprocesses: every external command is logged (`+ cmd`) and checked."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from pipeline.core.errors import PipelineError

log = logging.getLogger("pipeline.core.run")


def require_tool(name: str, *, purpose: str, package: str | None = None) -> str:
    """Find an executable or fail early with the package that provides it."""
    path = shutil.which(name)
    if path is None:
        hint = f"install it (Debian: apt-get install {package or name})"
        raise PipelineError(f"{name} not found on PATH; it is needed to {purpose}", hint=hint)
    return path


def run(
    argv: Sequence[str], *, capture: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a command, raising PipelineError with its last stderr lines when it fails."""
    log.debug("+ %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            check=False,
        )
    except FileNotFoundError:
        raise PipelineError(f"{argv[0]} not found on PATH") from None
    if proc.returncode != 0:
        tail = b""
        if proc.stderr:
            tail = b"\n".join(proc.stderr.strip().splitlines()[-10:])
        detail = f": {tail.decode(errors='replace')}" if tail else ""
        raise PipelineError(
            f"{shlex.join(argv[:2])} failed with exit status {proc.returncode}{detail}"
        )
    return proc
