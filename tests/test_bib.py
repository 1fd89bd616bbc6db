"""bootc-image-builder's invocation, as its README states the contract."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.mediatypes import DiskFormat
from pipeline.model import bib
from tests import factories


def test_invocation_follows_the_contract() -> None:
    run = bib.builder_run(factories.disk_job())
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
        "org.osbuild.container-deploy: 5a1c0e {",
        '  "image": "localhost/x"',
        "org.osbuild.rpm: 3c4f {",  # a package-based build's stage: never in a bootc build
        "2024/06/01 10:00:00 error: image localhost/x is not a bootc image",
        "see org.osbuild.qemu: in the middle of a line",
        "org.osbuild.bootc.install-to-filesystem: 9e2d {",
        "Build complete!",
    ]
    assert bib.error_lines(log) == ["image localhost/x is not a bootc image"]
    assert [bib.stage_of(line) for line in log] == [
        "org.osbuild.container-deploy",
        None,
        None,
        None,
        None,
        "org.osbuild.bootc.install-to-filesystem",
        "Build complete!",
    ]


def test_qcow2_stages_are_a_bootc_build() -> None:
    """osbuild/images' bootc qcow2 manifest: deploy the container, partition, install, convert."""
    stages = bib.qcow2_stages("xfs")
    assert stages[:2] == ("org.osbuild.container-deploy", "org.osbuild.selinux")
    assert stages.index("org.osbuild.sfdisk") < stages.index("org.osbuild.mkfs.fat")
    assert stages.count("org.osbuild.mkfs.xfs") == 2  # /boot and /
    assert stages.index("org.osbuild.mkfs.xfs") < stages.index(
        "org.osbuild.bootc.install-to-filesystem"
    )
    assert stages[-1] == "org.osbuild.qemu"
    for package_stage in ("org.osbuild.rpm", "org.osbuild.ostree.config", "org.osbuild.users"):
        assert package_stage not in stages
    with_users = bib.qcow2_stages("ext4", users=True)
    assert with_users.index("org.osbuild.users") > with_users.index(
        "org.osbuild.bootc.install-to-filesystem"
    )
    assert set(with_users) <= bib.KNOWN_STAGES and "org.osbuild.rpm" not in bib.KNOWN_STAGES

    assert bib.output_disk(Path("/o"), DiskFormat.QCOW2) == Path("/o/qcow2/disk.qcow2")
