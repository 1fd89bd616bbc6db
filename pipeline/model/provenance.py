"""When and from what a release is made: fixed by its inputs, so a re-run yields equal digests."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path

from pipeline.core.errors import PipelineError, UsageError
from pipeline.model.plan import Provenance

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _git(root: Path, *args: str) -> str | None:
    """git's output, None if git says no (not a checkout, no such revision); a PipelineError
    if git itself cannot be run: that is no answer about the checkout."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError:
        raise PipelineError(
            "cannot tell the source revision: git is not installed",
            hint="install git (apt-get install git), or pass --revision REV and --created",
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PipelineError(f"cannot tell the source revision: running git failed: {exc}") from None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve(root: Path, *, revision: str | None, created: str | None) -> Provenance:
    """--revision, else the git HEAD of `root`; --created, else SOURCE_DATE_EPOCH, else that
    commit's time. Wall-clock time is never used: it would change every digest on a re-run."""
    rev = revision or _git(root, "rev-parse", "HEAD")
    if not rev:
        raise UsageError(
            f"cannot tell the source revision: {root} is not a git checkout",
            hint="pass --revision REV (and --created or SOURCE_DATE_EPOCH)",
        )
    if created:
        if not _RFC3339.match(created):
            raise UsageError(
                f"--created {created!r} is not an RFC 3339 time (2024-01-31T12:57:14Z)"
            )
        return Provenance(created, rev)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        if not epoch.isdigit():
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a whole number of seconds")
        return Provenance(_rfc3339(int(epoch)), rev)
    commit_time = _git(root, "log", "-1", "--format=%ct", rev)
    if not commit_time:
        raise UsageError(
            f"cannot read the time of revision {rev} in {root}",
            hint="pass --created or set SOURCE_DATE_EPOCH",
        )
    return Provenance(_rfc3339(int(commit_time)), rev)


def uncommitted_changes(root: Path) -> bool:
    """Whether the checkout holding the release inputs has changes HEAD does not describe."""
    try:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
    except PipelineError:
        return False  # only a warning depends on it
    return bool(status)
