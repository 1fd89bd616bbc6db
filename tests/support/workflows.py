"""The GitHub Actions workflows as data: their steps, and a step's command with its `${{ }}`
expressions filled in, so tests run the very commands the workflows run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.factories import ROOT

WORKFLOWS_DIR = ROOT / ".github" / "workflows"
_EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
_SUDO = re.compile(r"^sudo (--preserve-env=\S+ )?")


def workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS_DIR / name).read_text())
    return data


def steps(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every job's steps (a job that calls a reusable workflow has none of its own)."""
    return [(job, step) for job, body in data["jobs"].items() for step in body.get("steps", [])]


def command(name: str, job: str, step_name: str, values: dict[str, str]) -> str:
    """The `run:` of the step of `job` whose name starts with `step_name`, expressions filled
    in from `values` (an unknown expression is a KeyError: the test must know every one), and
    without a leading `sudo` (the tests already run as root)."""
    (step,) = [s for j, s in steps(workflow(name))
               if j == job and s.get("name", "").startswith(step_name)]  # fmt: skip
    filled = _EXPRESSION.sub(lambda m: values[m.group(1)], step["run"])
    return _SUDO.sub("", filled)


def machine(root: Path) -> Path:
    """An empty directory shaped like a fresh checkout for make: Makefile and manifests only
    (the package itself comes from PYTHONPATH), and no work directory."""
    root.mkdir(parents=True)
    (root / "Makefile").symlink_to(ROOT / "Makefile")
    (root / "manifests").symlink_to(ROOT / "manifests")
    return root
