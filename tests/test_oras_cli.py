"""The ORAS CLI (oras v1.3.6, the Go binary scripts/go-tools.sh builds) judges what this project
publishes, as the seed's user would use it (lima-vm/lima#2405: `oras pull REF`, then `zstd -d`).

A release of both architectures is pushed by the real CLI to Debian's docker-registry on
127.0.0.1; the ORAS CLI needs `--plain-http` for an address other than `localhost`. The
manifests it fetches are judged by the official OCI v1.1.1 JSON schemas
(tests/support/oci_official.py), not by this project's code. oras-py is not used any more: the
CLI picks a platform out of an index, which oras-py cannot, and judges everything it judged.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from tests.support import oci_official
from tests.support.gotools import go_tool
from tests.support.oci_push import push_manifest, push_seed_artifact
from tests.support.registry import RegistryKind, RunningRegistry, start_registry
from tests.support.workdirs import cli_env, publish_synthetic, zstd_cli_layer

pytestmark = pytest.mark.integration

REPO = "bootc-lima/fedora-bootc-lima"
TAG = "40.1.0"
TIMEOUT = 120.0


@dataclass
class Published:
    registry: RunningRegistry
    report: dict[str, Any]
    home: Path

    @property
    def ref(self) -> str:
        return f"{self.registry.host}/{REPO}:{TAG}"

    def recorded(self, arch: Arch) -> dict[str, Any]:
        entry: dict[str, Any] = self.report["architectures"][arch.value]
        return entry


@pytest.fixture(scope="module", params=list(RegistryKind), ids=str)
def published(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Published]:
    """The release on each registry the tests run (docker-registry, distribution v3, olareg)."""
    directory = tmp_path_factory.mktemp(f"oras-cli-{request.param}")
    registry = start_registry(directory / "registry", kind=request.param)
    try:
        _, report = publish_synthetic(directory, registry.host)
        yield Published(registry, report, directory / "home")
    finally:
        registry.stop()


def oras(
    published: Published, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The ORAS CLI with no inherited login (its own empty HOME and DOCKER_CONFIG)."""
    env = cli_env(published.home / "oras", chunk_size=1 << 20)
    return subprocess.run(
        [go_tool("oras"), *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=TIMEOUT, check=False,
    )  # fmt: skip


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return "sha256:" + out.stdout.split()[0]


def fetch(published: Published, reference: str, *args: str) -> bytes:
    proc = oras(published, "manifest", "fetch", "--plain-http", *args, reference)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.encode()


def test_oras_cli_is_the_pinned_version(published: Published) -> None:
    proc = oras(published, "version")
    assert proc.returncode == 0 and proc.stdout.split()[:2] == ["Version:", "1.3.6"], proc.stdout


@pytest.mark.parametrize("arch", [Arch("amd64"), Arch("arm64")])
def test_oras_pull_by_platform_then_zstd_gives_the_recorded_disk(
    published: Published, tmp_path: Path, arch: Arch
) -> None:
    out = tmp_path / "oras"
    proc = oras(published, "pull", "--plain-http", "--platform", arch.platform, "-o", str(out),
                published.ref)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    want = published.recorded(arch)
    assert f"Pulled [registry] {published.ref}" in proc.stdout
    assert [p.name for p in out.iterdir()] == [want["layer"]["title"]]
    zst = out / want["layer"]["title"]
    assert sha256sum(zst) == want["layer"]["digest"]
    subprocess.run(["zstd", "-d", "-q", str(zst)], check=True)
    assert sha256sum(zst.with_suffix("")) == want["uncompressed"]["digest"]

    # the same bytes `bootc-pipeline pull --keep-compressed` keeps
    ours = tmp_path / "ours.zst"
    pulled = subprocess.run(
        [sys.executable, "-m", "pipeline", "pull", published.ref, "--plain-http",
         "--platform", arch.platform, "-o", str(ours), "--keep-compressed"],
        env=cli_env(published.home / "pull", chunk_size=1 << 20),
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert ours.read_bytes() == zst.read_bytes()


def test_oras_manifest_fetch_of_the_index_and_each_child_meets_the_official_schemas(
    published: Published,
) -> None:
    raw = fetch(published, published.ref)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == published.report["index"]["digest"]
    index = json.loads(raw)
    assert oci_official.errors("index", index) == []
    assert index["mediaType"] == mt.OCI_INDEX
    platforms = {}
    for entry in index["manifests"]:
        child_ref = f"{published.registry.host}/{REPO}@{entry['digest']}"
        child_raw = fetch(published, child_ref)
        assert len(child_raw) == entry["size"]
        assert "sha256:" + hashlib.sha256(child_raw).hexdigest() == entry["digest"]
        child = json.loads(child_raw)
        assert oci_official.errors("manifest", child) == []
        assert child["artifactType"] == entry["artifactType"]
        platforms[entry["platform"]["architecture"]] = entry["digest"]
        # the platform oras picks is this child
        picked = fetch(
            published, published.ref, "--platform", f"linux/{entry['platform']['architecture']}"
        )
        assert picked == child_raw
    assert sorted(platforms) == ["amd64", "arm64"]
    for arch in (Arch("amd64"), Arch("arm64")):
        assert platforms[arch.value] == published.recorded(arch)["manifest"]["digest"]


@pytest.fixture(scope="module")
def seed_layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    return zstd_cli_layer(tmp_path_factory.mktemp("seed"))


def test_oras_pull_of_the_seed_shaped_artifact(
    published: Published, tmp_path: Path, seed_layer: tuple[bytes, bytes]
) -> None:
    """lima-vm/lima#2405's `oras pull ghcr.io/centos/fedora-bootc-cloud-disk:eln`: one artifact
    manifest (unknown artifactType, empty config), then under an index by platform, as the
    thread's index has it."""
    plain, layer = seed_layer
    host = published.registry.host
    repo = "centos/fedora-bootc-cloud-disk"
    title = "fedora-bootc-cloud-eln.qcow2.zst"
    child = push_seed_artifact(host, repo, "eln-amd64", layer, title)
    proc = oras(
        published, "pull", "--plain-http", "-o", str(tmp_path / "a"), f"{host}/{repo}:eln-amd64"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Digest: {child}" in proc.stdout
    zst = tmp_path / "a" / title
    subprocess.run(["zstd", "-d", "-q", str(zst)], check=True)
    assert sha256sum(zst.with_suffix("")) == "sha256:" + hashlib.sha256(plain).hexdigest()

    size = len(fetch(published, f"{host}/{repo}@{child}"))
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "size": size, "digest": child,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }  # fmt: skip
    push_manifest(host, repo, "eln", index)
    assert oci_official.errors("index", json.loads(fetch(published, f"{host}/{repo}:eln"))) == []
    proc = oras(published, "pull", "--plain-http", "--platform", "linux/amd64",
                "-o", str(tmp_path / "b"), f"{host}/{repo}:eln")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / title).read_bytes() == layer
    missing = oras(published, "pull", "--plain-http", "--platform", "linux/arm64",
                   "-o", str(tmp_path / "c"), f"{host}/{repo}:eln")  # fmt: skip
    assert missing.returncode != 0  # the index has no arm64: oras says so, writes nothing
    assert not (tmp_path / "c" / title).exists()
