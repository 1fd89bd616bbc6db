"""pytest plugin: a release published with `push --signing-key` on each registry (`signed`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.trust import simplesigning as ss
from tests.support.keys import KeyPair, make_key_pair
from tests.support.oci_push import push_blob, push_manifest
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


def publish_signed(registry: RunningRegistry, repo: str, tmp: Path, disks: DiskCache) -> Signed:
    """`push --signing-key` of a release (the key encrypted), checked to leak neither the key
    nor its password."""
    key = make_key_pair(tmp / "keys", password="correct horse")
    work = make_workdir(tmp / "work", disks)
    argv = push_argv(
        work, registry.host, "--signing-key", str(key.private),
        manifest=manifest_for(tmp, repo),
    )  # fmt: skip
    env = {"BOOTC_PIPELINE_SIGNING_PASSWORD": "correct horse"}
    proc = run_push(argv, cli_env(tmp / "home", chunk_size=1 << 20, extra=env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "correct horse" not in proc.stdout + proc.stderr
    assert key.private_pem().splitlines()[1] not in proc.stdout + proc.stderr
    for kept in work.root.rglob("*.json"):  # the report, results, stamps
        assert "correct horse" not in kept.read_text(errors="replace"), kept
    report = json.loads(work.report_path.read_text())
    seconds = float(report.get("timings", {}).get("sign", 0.0))
    return Signed(registry, repo, key, work, report, tmp / "home", seconds)


def publish_unsigned(
    registry: RunningRegistry, repo: str, tmp: Path, disks: DiskCache
) -> tuple[Signed, KeyPair]:
    """A release pushed without a key, and a key a consumer then demands a signature by."""
    done = publish(registry, repo, tmp / "pub", disks)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not signed" in done.stderr
    key = make_key_pair(tmp / "k")
    unsigned = Signed(registry, repo, key, None, {}, tmp / "pub" / "home", 0)  # type: ignore[arg-type]
    return unsigned, key


@pytest.fixture
def signed(
    any_registry: RunningRegistry, repository_name: str, tmp_path: Path, disks: DiskCache
) -> Iterator[Signed]:
    yield publish_signed(any_registry, repository_name, tmp_path, disks)


def signature_manifest(signed: Signed, digest: str) -> dict[str, Any]:
    """The `.sig` manifest of DIGEST, as the registry holds it."""
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false",
         f"docker://{signed.name}:{ss.signature_tag(digest)}"],
        capture_output=True, check=True, timeout=TIMEOUT,
    ).stdout  # fmt: skip
    body: dict[str, Any] = json.loads(raw)
    return body


def forge_another_digest(signed: Signed) -> tuple[str, str]:
    """The arm64 manifest's valid signature, put where the amd64 manifest's should be;
    (amd64, arm64) digests."""
    amd64, arm64 = signed.manifest("amd64"), signed.manifest("arm64")
    push_manifest(
        signed.registry.host, signed.repo, ss.signature_tag(amd64),
        signature_manifest(signed, arm64),
    )  # fmt: skip
    return amd64, arm64


def forge_tampered_payload(signed: Signed) -> dict[str, Any]:
    """The index's payload changed to name another digest, kept with the original signature;
    the forged signature layer."""
    index = signed.index
    body = signature_manifest(signed, index)
    layer: dict[str, Any] = body["layers"][0]
    forged = ss.payload(signed.name, signed.manifest("arm64"))
    layer["digest"] = push_blob(signed.registry.host, signed.repo, forged)
    layer["size"] = len(forged)
    push_manifest(signed.registry.host, signed.repo, ss.signature_tag(index), body)
    return layer
