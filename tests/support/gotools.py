"""The ecosystem's Go tools that judge what this project writes: found, or the test fails.

scripts/go-tools.sh builds them at pinned versions into /opt/bootc-pipeline-tools (bin/ for
oras and actionlint, lima/bin/ for limactl with its guest agents in lima/share/lima/). A tool that
is missing fails the test with how to install it; it never skips.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TOOLS = Path(os.environ.get("BOOTC_PIPELINE_TOOLS", "/opt/bootc-pipeline-tools"))
PLACES = {"limactl": TOOLS / "lima" / "bin"}
HINT = "run `bash scripts/go-tools.sh` (part of `make setup`): it builds the pinned Go tools"


def tool(name: str) -> str:
    """The path of `name`: /opt/bootc-pipeline-tools first, then PATH."""
    candidate = PLACES.get(name, TOOLS / "bin") / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed ({candidate} nor on PATH): {HINT}")
    return found
