"""Docker Engine works too: its image store is not a containers-storage, so the disk stage copies
the image into one (skopeo) before bootc-image-builder reads it. Real dockerd, real skopeo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.model import release
from pipeline.publishing.stages.disk import is_mountpoint, release_storage_mount
from tests.support import judges
from tests.support.docker import DockerService
from tests.support.images import FakeBases
from tests.support.podman import PodmanService

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
CAP_SYS_RESOURCE = 24
_RELEASE = release.load(ROOT / "manifests" / "fedora-40.yaml")
# what the disk stage hands the builder: the OS image by its origin tag (the bootc origin),
# not the local build name (README "Where the OS image lives")
IMAGE = f"{_RELEASE.os_repository}:{_RELEASE.os_origin_tag}"


def _bounding_set_has(cap: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    raise AssertionError("no CapBnd in /proc/self/status")


def _podman_to_docker(podman: PodmanService, engine: DockerService, image: str, tmp: Path) -> None:
    archive = tmp / "image.tar"
    podman.cli("save", "--format", "docker-archive", "-o", str(archive), image)
    engine.cli("load", "-i", str(archive))
    archive.unlink()


def _stage(stage: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", stage, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _judge_disk(disk: Path, tmp: Path) -> None:
    assert judges.qemu_img_check(disk)["format"] == "qcow2"
    raw = judges.qcow2_to_raw(disk, tmp / "disk.raw")
    assert b"d /var/usrlocal" in judges.debugfs(raw, "cat /usr/lib/tmpfiles.d/lima-guest.conf")
    assert judges.elf_machine(judges.debugfs(raw, "cat /bin/busybox")) == 62


def test_build_and_disk_through_docker_engine(
    docker_engine: DockerService,
    podman: PodmanService,
    fake_bases: FakeBases,
    bib_standin: str,
    tmp_path: Path,
) -> None:
    base = fake_bases.instance("fedora", "amd64")
    _podman_to_docker(podman, docker_engine, base, tmp_path)
    _podman_to_docker(podman, docker_engine, bib_standin, tmp_path)
    work = tmp_path / "w"
    args = [
        "--variant", "fedora-40", "--arch", "amd64", "--engine", docker_engine.url,
        "--workdir", str(work), "--base-image", base, "--builder-image", bib_standin,
    ]  # fmt: skip
    built = _stage("build", args)
    assert built.returncode == 0, built.stderr[-4000:]
    assert "Docker Engine" in built.stderr
    disk = _stage("disk", args)
    assert f"copying {IMAGE} from Docker Engine" in disk.stderr
    storage = work / "fedora-40" / "amd64" / "containers-storage"
    assert not is_mountpoint(storage / "overlay")  # the work dir keeps no mount behind
    inspected = subprocess.run(
        ["skopeo", "inspect", f"containers-storage:[overlay@{storage}+{tmp_path / 'run'}]{IMAGE}"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    release_storage_mount(storage)  # skopeo's own mount, as in the product
    facts = json.loads(inspected.stdout)
    assert (facts["Labels"]["containers.bootc"], facts["Architecture"]) == ("1", "amd64")
    # A second hand-off (the stamp dropped so the disk is redone wherever the first succeeded)
    # replaces the image: the storage does not grow.
    (work / "fedora-40" / "amd64" / "disk.json").unlink(missing_ok=True)
    again = _stage("disk", args)
    assert f"copying {IMAGE} from Docker Engine" in again.stderr
    images = json.loads((storage / "overlay-images" / "images.json").read_text())
    assert [image["names"] for image in images] == [[IMAGE]]
    output = work / "fedora-40" / "amd64" / "disk"
    if _bounding_set_has(CAP_SYS_RESOURCE):
        assert disk.returncode == 0, disk.stderr[-4000:]
        _judge_disk(output / "qcow2" / "disk.qcow2", tmp_path)
        return
    # This sandbox's bounding set lacks CAP_SYS_RESOURCE: Docker's --privileged asks for every
    # capability and cannot start, where Podman clamps to what the host has. The failure must be
    # one clear line; then bib (under Podman) must read the storage Docker's image was put in.
    assert disk.returncode == 1
    assert "bootc-pipeline: error: cannot start" in disk.stderr
    assert "needs a privileged container" in disk.stderr
    assert "Traceback" not in disk.stderr
    out = tmp_path / "out"
    out.mkdir()
    podman.cli(
        "run", "--rm", "--privileged", "--network=none",
        "--security-opt", "label=type:unconfined_t",
        "-v", f"{storage}:/var/lib/containers/storage", "-v", f"{out}:/output",
        bib_standin, "--type", "qcow2", "--rootfs", "ext4", IMAGE,
    )  # fmt: skip
    release_storage_mount(storage)
    assert not is_mountpoint(storage / "overlay")
    _judge_disk(out / "qcow2" / "disk.qcow2", tmp_path)
