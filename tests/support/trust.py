"""pytest plugin: a release published with `push --signing-key` on each registry (`signed`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.keys import KeyPair, make_key_pair
from tests.support.registry import RunningRegistry
from tests.support.workdirs import (
    DiskCache,
    Workdir,
    cli_env,
    make_workdir,
    manifest_for,
    push_argv,
    run_push,
)

TIMEOUT = 120


@dataclass
class Signed:
    """A release pushed with `--signing-key` (the key encrypted with a password)."""

    registry: RunningRegistry
    repo: str
    key: KeyPair
    work: Workdir
    report: dict[str, Any]
    home: Path
    push_seconds: float

    @property
    def name(self) -> str:
        return f"{self.registry.host}/{self.repo}"

    @property
    def index(self) -> str:
        return str(self.report["index"]["digest"])

    def manifest(self, arch: str) -> str:
        return str(self.report["architectures"][arch]["manifest"]["digest"])


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> DiskCache:
    return DiskCache(tmp_path_factory.mktemp("disks"))


def publish(
    registry: RunningRegistry, repo: str, tmp: Path, disks: DiskCache, *extra: str, **env: str
) -> subprocess.CompletedProcess[str]:
    work = make_workdir(tmp / "work", disks)
    argv = push_argv(work, registry.host, *extra, manifest=manifest_for(tmp, repo))
    return run_push(argv, cli_env(tmp / "home", chunk_size=1 << 20, extra=env))


@pytest.fixture
def signed(
    any_registry: RunningRegistry, repository_name: str, tmp_path: Path, disks: DiskCache
) -> Iterator[Signed]:
    key = make_key_pair(tmp_path / "keys", password="correct horse")
    work = make_workdir(tmp_path / "work", disks)
    argv = push_argv(
        work, any_registry.host, "--signing-key", str(key.private),
        manifest=manifest_for(tmp_path, repository_name),
    )  # fmt: skip
    env = {"BOOTC_PIPELINE_SIGNING_PASSWORD": "correct horse"}
    proc = run_push(argv, cli_env(tmp_path / "home", chunk_size=1 << 20, extra=env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "correct horse" not in proc.stdout + proc.stderr
    assert key.private_pem().splitlines()[1] not in proc.stdout + proc.stderr
    for kept in work.root.rglob("*.json"):  # the report, results, stamps
        assert "correct horse" not in kept.read_text(errors="replace"), kept
    report = json.loads(work.report_path.read_text())
    seconds = float(report.get("timings", {}).get("sign", 0.0))
    yield Signed(any_registry, repository_name, key, work, report, tmp_path / "home", seconds)
