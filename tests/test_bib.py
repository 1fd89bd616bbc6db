"""bootc-image-builder's invocation, as its README states the contract."""

from __future__ import annotations

from pathlib import Path

from pipeline import bib
from pipeline.arch import Arch
from pipeline.mediatypes import DiskFormat


def test_invocation_follows_the_contract() -> None:
    run = bib.builder_run(
        builder_image="quay.io/centos-bootc/bootc-image-builder:latest",
        bootc_image="localhost/bootc-pipeline/fedora-40:1-arm64",
        arch=Arch.ARM64,
        disk_format=DiskFormat.QCOW2,
        rootfs="ext4",
        graph_root=Path("/srv/storage"),
        output_dir=Path("/w/disk"),
        config_path=Path("/w/bib-config.json"),
        chown=(1000, 1000),
    )
    assert run.command == (
        "--type", "qcow2", "--target-arch", "aarch64", "--rootfs", "ext4",
        "--progress", "verbose", "--output", "/output", "--chown", "1000:1000",
        "localhost/bootc-pipeline/fedora-40:1-arm64",
    )  # fmt: skip
    assert run.command[-1] == "localhost/bootc-pipeline/fedora-40:1-arm64"  # image last
    assert "--local" not in run.command  # deprecated
    assert set(run.mounts) == {
        (Path("/srv/storage"), "/var/lib/containers/storage", "rw"),
        (Path("/w/disk"), "/output", "rw"),
        (Path("/w/bib-config.json"), "/config.json", "ro"),
    }


def test_error_lines_and_stages() -> None:
    log = [
        "org.osbuild.rpm: installing",
        "2024/06/01 10:00:00 error: image localhost/x is not a bootc image",
        "Build complete!",
    ]
    assert bib.error_lines(log) == ["image localhost/x is not a bootc image"]
    assert [bib.stage_of(line) for line in log] == ["org.osbuild.rpm", None, "Build complete!"]
    assert bib.output_disk(Path("/o"), DiskFormat.QCOW2) == Path("/o/qcow2/disk.qcow2")
