"""SBOMs: syft (SPDX JSON) reads a stand-in OS image the engine saves, and the push stage attaches
each architecture's SBOM to its disk manifest as an OCI 1.1 referrer on all three registries,
judged by `oras discover` and the official OCI schemas."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from pipeline.publishing.stages import runner
from pipeline.publishing.stages import sbom as sbom_stage
from pipeline.shared.engine import Engine
from pipeline.shared.state import arch_dir
from pipeline.trust import attestations
from tests.support import gotools, oci_official
from tests.support.images import FakeBases
from tests.support.podman import PodmanService
from tests.support.registry import RunningRegistry
from tests.support.workdirs import (
    DiskCache,
    cli_env,
    make_workdir,
    manifest_for,
    push_argv,
    run_push,
)

pytestmark = pytest.mark.integration

TIMEOUT = 600


def syft_spdx(source: str) -> bytes:
    done = subprocess.run(
        [gotools.go_tool("syft"), "scan", source, "-o", "spdx-json", "-q"],
        capture_output=True, timeout=TIMEOUT, check=False,
        env={"PATH": "/usr/bin:/bin", "SYFT_CHECK_FOR_APP_UPDATE": "false", "HOME": "/tmp"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout


def test_syft_reads_a_stand_in_image_the_engine_saves(
    podman: PodmanService, fake_bases: FakeBases, tmp_path: Path
) -> None:
    """What the sbom stage runs (publishing/stages/sbom.py), on the fedora stand-in's amd64
    image."""
    engine = Engine.connect(podman.url)
    archive = engine.save_image(fake_bases.instance("fedora", "amd64"), tmp_path / "image.tar")
    argv = sbom_stage.syft_argv(gotools.go_tool("syft"), archive)
    done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    document = json.loads(done.stdout)
    assert document["spdxVersion"].startswith("SPDX-2.")
    names = {p.get("name") for p in document.get("packages") or []}
    assert names, "syft found no packages in the stand-in image"


def test_sbom_is_a_referrer_of_each_disk_manifest(
    any_registry: RunningRegistry, repository_name: str, tmp_path: Path
) -> None:
    (tmp_path / "disks").mkdir()
    work = make_workdir(tmp_path / "work", DiskCache(tmp_path / "disks"))
    tree = tmp_path / "tree" / "usr" / "lib"
    tree.mkdir(parents=True)
    (tree / "os-release").write_text('ID=fedora\nVERSION_ID=40\nNAME="Fedora Linux"\n')
    spdx = syft_spdx(f"dir:{tmp_path / 'tree'}")
    for arch in work.disks:  # as the sbom stage leaves it, for the image the build recorded
        directory = arch_dir(work.root, work.variant, arch)
        image = (directory.load_stamp("build") or {})["id"]
        (directory.root / sbom_stage.SBOM_NAME).write_bytes(spdx)
        stage_id = runner.chained_id(directory, "sbom", {"image": image})
        runner.record(directory, "sbom", stage_id, {"image": image, "path": "sbom.spdx.json"})
    argv = push_argv(work, any_registry.host, manifest=manifest_for(tmp_path, repository_name))
    done = run_push(argv, cli_env(tmp_path / "home", chunk_size=1 << 20))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(work.report_path.read_text())
    for arch in (Arch("amd64"), Arch("arm64")):
        entry = report["architectures"][arch.value]
        (referrer,) = entry["referrers"]
        assert referrer["artifactType"] == attestations.SBOM_ARTIFACT_TYPE
        assert referrer["storedAs"] == ("api" if any_registry.kind.has_referrers_api else "tag")
        subject = entry["manifest"]["digest"]
        found = subprocess.run(
            [gotools.go_tool("oras"), "discover", "--plain-http", "--format", "json",
             f"{any_registry.host}/{repository_name}@{subject}"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        listed = {r["digest"]: r for r in json.loads(found.stdout).get("referrers") or []}
        assert listed[referrer["manifest"]]["artifactType"] == attestations.SBOM_ARTIFACT_TYPE
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false",
             f"docker://{any_registry.host}/{repository_name}@{referrer['manifest']}"],
            capture_output=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        manifest = json.loads(raw)
        assert oci_official.errors("manifest", manifest) == []
        assert manifest["subject"]["digest"] == subject
        blob = subprocess.run(
            ["curl", "-fsS", f"{any_registry.url}/v2/{repository_name}/blobs/"
             f"{manifest['layers'][0]['digest']}"],
            capture_output=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert blob == spdx
