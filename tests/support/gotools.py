"""The Go-built ecosystem tools the tests run (scripts/go-tools.sh installs them, pinned).

A missing tool fails the test with the install hint: CI must not go green without the judge.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TOOLS_DIR = Path(os.environ.get("BOOTC_PIPELINE_TOOLS", "/opt/bootc-pipeline-tools")) / "bin"

# name -> (go module / command, pinned version), as scripts/go-tools.sh installs them
MODULES = {
    "cosign": ("github.com/sigstore/cosign/v3/cmd/cosign", "v3.1.2"),
    "oras": ("oras.land/oras/cmd/oras", "v1.3.6"),
    "registry": ("github.com/distribution/distribution/v3/cmd/registry", "v3.1.1"),
    "olareg": ("github.com/olareg/olareg/cmd/olareg", "v0.2.2"),
    "syft": ("github.com/anchore/syft/cmd/syft", "v1.57.1"),
}


def find(name: str) -> str | None:
    """The tool's path (the pinned install first, then PATH), None if it is not installed."""
    pinned = TOOLS_DIR / name
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    return shutil.which(name)


def go_tool(name: str) -> str:
    path = find(name)
    if path is None:
        module, version = MODULES[name]
        pytest.fail(
            f"{name} not found in {TOOLS_DIR} or on PATH: run scripts/go-tools.sh "
            f"(go install {module}@{version})",
            pytrace=False,
        )
    return path
