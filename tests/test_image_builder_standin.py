"""The image-builder stand-in, run as the pipeline runs it (Docker SDK, privileged, storage,
output and blueprint mounted): it refuses what image-builder refuses, and its disk passes the
same checks as the bib stand-in's disk of the same image (the partition table, the files)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline.core.arch import Arch
from pipeline.core.mediatypes import DiskFormat
from pipeline.model import bib as pipeline_bib
from pipeline.model.bib import DiskJob
from pipeline.model.builders import Builder
from tests.standins.image_builder import image_builder as standin
from tests.support import judges
from tests.support.containers import run_to_end
from tests.support.images import FakeBases
from tests.support.podman import PodmanService

pytestmark = pytest.mark.integration
TIMEOUT = 300
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI alice@test"
CONFIG = {
    "customizations": {
        "user": [{"name": "alice", "key": KEY, "groups": ["wheel"]}],
        "kernel": {"append": "console=ttyS0"},
    }
}


@pytest.fixture(scope="module")
def client(podman: PodmanService) -> Iterator[Any]:
    c = docker.DockerClient(base_url=podman.url, timeout=TIMEOUT)
    try:
        yield c
    finally:
        c.close()


def run_builder(
    client: Any,
    tool: Builder,
    builder_image: str,
    image: str,
    out: Path,
    config: Path,
    *,
    privileged: bool = True,
    storage: bool = True,
    extra: tuple[str, ...] = (),
) -> tuple[int, str, str]:
    """The pipeline's own invocation of TOOL (pipeline/model/builders.py), run through the SDK."""
    run = tool.run(
        DiskJob(
            builder_image=builder_image,
            bootc_image=image,
            arch=Arch.AMD64,
            disk_format=DiskFormat.QCOW2,
            rootfs="ext4",
            graph_root=Path(client.info()["DockerRootDir"]),
            output_dir=out,
            config_path=config,
        )
    )
    volumes = {
        str(host): {"bind": dest, "mode": mode}
        for host, dest, mode in run.mounts
        if storage or dest != pipeline_bib.STORAGE
    }
    command = list(run.command)
    command[-1:-1] = list(extra)  # before the image type (or bib's image)
    return run_to_end(client, run.image, command, volumes, privileged=privileged)


@pytest.fixture
def blueprint(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    return path


REFUSALS = {
    "unprivileged": "this command requires a privileged container",
    "no-storage": standin.STORAGE_MISSING,
    "not-bootc": "image localhost/test/not-bootc:1 is not a bootc image",
    "unknown-option": "unknown flag: --rootfs",
    "bad-blueprint": 'cannot decode "/blueprint.json"',
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_image_builder_standin_refuses_like_image_builder(
    client: Any,
    image_builder_standin: str,
    fake_bases: FakeBases,
    podman: PodmanService,
    blueprint: Path,
    tmp_path: Path,
    case: str,
) -> None:
    image = fake_bases.instance("fedora", "amd64")
    if case == "not-bootc":
        image = "localhost/test/not-bootc:1"
        tarball = tmp_path / "rootfs.tar"
        subprocess.run(["tar", "-cf", str(tarball), "-C", str(tmp_path), "config.json"], check=True)
        podman.cli("import", "--quiet", str(tarball), image)
    if case == "bad-blueprint":
        blueprint.write_text(json.dumps({"customizations": {"colour": "blue"}}))
    out = tmp_path / "out"
    out.mkdir()
    status, _, stderr = run_builder(
        client, Builder.IMAGE_BUILDER, image_builder_standin, image, out, blueprint,
        privileged=case != "unprivileged", storage=case != "no-storage",
        extra=("--rootfs", "ext4") if case == "unknown-option" else (),
    )  # fmt: skip
    assert status == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert errors and REFUSALS[case] in errors[-1], stderr
    assert list(out.iterdir()) == []  # nothing half done


def _layout(qcow2: Path, tmp: Path) -> tuple[list[tuple[str, int, str]], dict[str, bytes]]:
    """What both builders' disks are judged on: the GPT (name, size, type) and root's files."""
    judges.qemu_img_check(qcow2)
    raw = judges.qcow2_to_raw(qcow2, tmp / f"{qcow2.stem}.raw")
    table = json.loads(subprocess.run(
        ["sfdisk", "--json", str(raw)], capture_output=True, check=True, timeout=60
    ).stdout)["partitiontable"]  # fmt: skip
    assert table["label"] == "gpt"
    parts = [(p["name"], p["size"], p["type"].upper()) for p in table["partitions"]]
    files = {
        path: judges.debugfs(raw, f"cat {path}")
        for path in (
            "/etc/os-release",
            "/var/home/alice/.ssh/authorized_keys",
            "/etc/kernel/cmdline",
        )
    }
    raw.unlink()
    return parts, files


def test_both_builders_write_the_same_disk_layout(
    client: Any,
    bib_standin: str,
    image_builder_standin: str,
    fake_bases: FakeBases,
    blueprint: Path,
    tmp_path: Path,
) -> None:
    image = fake_bases.instance("fedora", "amd64")
    judged = {}
    standins = {Builder.BIB: bib_standin, Builder.IMAGE_BUILDER: image_builder_standin}
    for tool, builder_image in standins.items():
        out = tmp_path / tool.value
        out.mkdir()
        extra = ("--with-manifest", "--with-sbom") if tool is Builder.IMAGE_BUILDER else ()
        status, stdout, stderr = run_builder(
            client, tool, builder_image, image, out, blueprint, extra=extra
        )
        assert status == 0, stderr
        announced = [s for s in map(pipeline_bib.stage_of, stdout.splitlines()) if s]
        assert announced == [*pipeline_bib.qcow2_stages("ext4", users=True), "Build complete!"]
        disk = tool.output_disk(out, DiskFormat.QCOW2)
        judged[tool] = _layout(disk, tmp_path)
        if tool is Builder.IMAGE_BUILDER:  # build.go: the export renamed, the directory gone
            names = sorted(p.name for p in out.iterdir())
            assert names == ["disk.image-os.spdx.json", "disk.osbuild-manifest.json", "disk.qcow2"]
            sbom = json.loads((out / "disk.image-os.spdx.json").read_text())
            assert sbom["spdxVersion"] == "SPDX-2.3"
    parts, files = judged[Builder.BIB]
    assert [name for name, _, _ in parts] == ["bios", "esp", "boot", "root"]
    assert b"ID=fedora" in files["/etc/os-release"]
    assert files["/var/home/alice/.ssh/authorized_keys"] == KEY.encode() + b"\n"
    assert b"console=ttyS0" in files["/etc/kernel/cmdline"]
    assert judged[Builder.IMAGE_BUILDER] == judged[Builder.BIB]
