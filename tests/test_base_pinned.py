"""The base that was recorded is the base that was built: a build names its base by the digest the
inputs recorded for its architecture (pulled when the engine lacks it), never by a tag that may
name an older local copy or another platform's image.

Real Podman and real Docker Engine, a real registry on 127.0.0.1. The Containerfile is a minimal
one (ARG BASE, FROM, the bootc label): the base's own label says which base was built on.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline.core import mediatypes as mt
from tests.factories import ROOT
from tests.support.docker import DockerService
from tests.support.images import FakeBases
from tests.support.judges import sha256
from tests.support.podman import PodmanService
from tests.support.published import Access, skopeo_raw
from tests.support.registry import RunningRegistry
from tests.support.workdirs import CREATED, REVISION

pytestmark = pytest.mark.integration
MARK = "org.bootc-pipeline.test.base-version"
CONTAINERFILE = "ARG BASE\nFROM ${BASE}\nLABEL containers.bootc=1\n"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
NO_BUILDER = "127.0.0.1:9/unused/builder@sha256:" + "0" * 64  # pinned: the build never asks it


def _release(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    containerfile = directory / "context" / "Containerfile"
    containerfile.parent.mkdir()
    containerfile.write_text(CONTAINERFILE)
    manifest = directory / "manifests" / "fedora-40.yaml"
    manifest.parent.mkdir()
    manifest.write_text((ROOT / "manifests" / "fedora-40.yaml").read_text())
    (directory / "containerfiles").symlink_to(ROOT / "containerfiles")


def _build(
    engine: str, registry: RunningRegistry, base: str, workdir: Path, arch: str, release: Path
) -> list[str]:
    """`bootc-pipeline build` of the release in RELEASE (made by _release) for ARCH."""
    return [
        sys.executable, "-m", "pipeline", "build",
        "--manifest", str(release / "manifests" / "fedora-40.yaml"),
        "--containerfile", str(release / "context" / "Containerfile"), "--arch", arch,
        "--engine", engine, "--workdir", str(workdir), "--base-image", base,
        "--builder-image", NO_BUILDER, "--registry", registry.host, "--plain-http",
    ]  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900, check=False
    )


def _stamp(workdir: Path, arch: str) -> dict[str, Any]:
    outputs: dict[str, Any] = json.loads((workdir / "fedora-40" / arch / "build.json").read_text())[
        "outputs"
    ]
    return outputs


def _recorded(workdir: Path) -> dict[str, str]:
    found: dict[str, str] = json.loads((workdir / "fedora-40" / "inputs.json").read_text())[
        "inputs"
    ]["baseDigests"]
    return found


def test_a_stale_local_copy_of_the_base_is_not_built_on(
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
    registry: RunningRegistry,
    tmp_path: Path,
) -> None:
    base = f"{registry.host}/pinned/fedora-bootc:40"
    instance = fake_bases.instance("fedora", "amd64")
    for n in (1, 2):  # two releases of the base, told apart by a label
        context = tmp_path / f"base-{n}"
        context.mkdir()
        (context / "Containerfile").write_text(f"FROM {instance}\nLABEL {MARK}={n}\n")
        podman.cli("build", "-t", f"localhost/pinned-base:{n}", str(context))
    podman.cli("push", "--tls-verify=false", "localhost/pinned-base:1", f"docker://{base}")
    podman.cli("pull", "--tls-verify=false", base)  # the machine's copy: release 1
    podman.cli("push", "--tls-verify=false", "localhost/pinned-base:2", f"docker://{base}")
    assert podman.image_label(base, MARK) == "1"  # the local tag stays stale
    moved_to = sha256(skopeo_raw(Access(registry.host), "pinned/fedora-bootc:40") or b"")

    workdir, release = tmp_path / "work", tmp_path / "release"
    _release(release)
    publish = _build(podman.url, registry, base, workdir, "amd64", release)
    publish[3:4] = ["publish", "--skip-boot"]
    publish[publish.index(NO_BUILDER)] = bib_standin  # publish runs the disk stage too
    publish += ["--revision", REVISION, "--created", CREATED]
    proc = _run(publish)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _recorded(workdir)["amd64"] == moved_to  # the inputs say release 2 ...
    result = json.loads((workdir / "fedora-40" / "result-amd64.json").read_text())
    manifest = json.loads(base64.b64decode(result["manifest"]["data"]))
    assert manifest["annotations"][mt.ANN_BASE_DIGEST] == moved_to  # ... the release too ...
    built = _stamp(workdir, "amd64")
    assert built["base_digest"] == moved_to
    assert podman.image_label(built["tag"], MARK) == "2"  # ... and it is what was built on

    again = _run(_build(podman.url, registry, base, workdir, "amd64", release))
    assert again.returncode == 0, again.stderr[-4000:]
    assert f"{built['tag']} unchanged since the last run" in again.stderr  # nothing new: skipped
    assert _stamp(workdir, "amd64") == built


def test_docker_engine_builds_of_two_platforms_of_one_base_at_once(
    docker_engine: DockerService,
    podman: PodmanService,
    fake_bases: FakeBases,
    registry: RunningRegistry,
    tmp_path: Path,
) -> None:
    """Docker Engine holds one platform per name: two builds of one base for two platforms at
    the same time (what --jobs 2 runs) must each build on, and record, their own platform's."""
    base = f"{registry.host}/pinned/two-platforms:40"
    podman.cli("manifest", "rm", base, check=False)
    podman.cli("manifest", "create", base)
    for arch in ("amd64", "arm64"):
        podman.cli(
            "manifest", "add", base, f"containers-storage:{fake_bases.instance('fedora', arch)}"
        )
    podman.cli("manifest", "push", "--all", "--tls-verify=false", base, f"docker://{base}")
    listing = json.loads(skopeo_raw(Access(registry.host), "pinned/two-platforms:40") or b"{}")
    expected = {m["platform"]["architecture"]: m["digest"] for m in listing["manifests"]}
    assert set(expected) == {"amd64", "arm64"}

    runs = {}
    for arch in ("amd64", "arm64"):  # both at once, one process each
        release = tmp_path / f"release-{arch}"
        _release(release)
        argv = _build(docker_engine.url, registry, base, tmp_path / f"work-{arch}", arch, release)
        runs[arch] = subprocess.Popen(
            argv, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    client = docker.DockerClient(base_url=docker_engine.url, timeout=60)
    for arch, proc in runs.items():
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-4000:]
        built = _stamp(tmp_path / f"work-{arch}", arch)
        assert built["base_digest"] == expected[arch]
        image = client.images.get(built["tag"]).attrs
        assert (image["Os"], image["Architecture"]) == ("linux", arch)
        base_image = client.images.get(f"{base.rsplit(':', 1)[0]}@{expected[arch]}").attrs
        assert base_image["Architecture"] == arch
