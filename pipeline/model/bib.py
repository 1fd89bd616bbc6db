"""bootc-image-builder's contract, as data: the exact invocation, and reading its output.

Pure: nothing here starts a container (engine.py does), so the argv is unit-testable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.arch import Arch
from pipeline.core.mediatypes import DiskFormat

DEFAULT_BUILDER_IMAGE = "quay.io/centos-bootc/bootc-image-builder:latest"
STORAGE = "/var/lib/containers/storage"  # where bib reads the bootc image from; it never pulls
OUTPUT = "/output"
CONFIG = "/config.json"


def qcow2_stages(rootfs: str, *, users: bool = False) -> tuple[str, ...]:
    """The osbuild stages of a bootc qcow2 build, in the order bib runs them (ext4 or xfs root).

    From osbuild/images at commit 1146ec23cd9c5d4b8d161bde7f0827f8da7c8ded: the build pipeline
    (pkg/manifest/build.go BuildrootFromContainer: container-deploy, selinux); the image pipeline
    (pkg/manifest/raw_bootc.go: GenImagePrepareStages = truncate, sfdisk, one mkfs per filesystem
    of data/distrodefs/bootc-generic/imagetypes.yaml's table: ESP vfat, /boot and / with the
    rootfs type; bootc.install-to-filesystem; mount units for /, /boot/efi, /boot (pkg/image/
    bootc_disk.go defaults to MOUNT_CONFIGURATION_UNITS) and the systemd stage enabling them;
    mkdir and users with user customizations; selinux relabels of /etc and /var); then the qcow2
    pipeline's qemu stage. pkg/distro/generic/bootc_test.go TestManifestSerialization checks that
    there is no org.osbuild.rpm in a bootc build.
    """
    stages = [
        "org.osbuild.container-deploy",
        "org.osbuild.selinux",
        "org.osbuild.truncate",
        "org.osbuild.sfdisk",
        "org.osbuild.mkfs.fat",
        f"org.osbuild.mkfs.{rootfs}",
        f"org.osbuild.mkfs.{rootfs}",
        "org.osbuild.bootc.install-to-filesystem",
        *["org.osbuild.systemd.unit.create"] * 3,
        "org.osbuild.systemd",
    ]
    if users:
        stages += ["org.osbuild.mkdir", "org.osbuild.users"]
    return (*stages, "org.osbuild.selinux", "org.osbuild.selinux", "org.osbuild.qemu")


# Every stage name a bootc qcow2 build can announce (btrfs adds subvolumes, customizations add
# groups, files and directories); progress reports the ones a log line starts with.
KNOWN_STAGES = frozenset(
    {
        *qcow2_stages("ext4", users=True),
        *qcow2_stages("xfs"),
        "org.osbuild.mkfs.btrfs",
        "org.osbuild.btrfs.subvol",
        "org.osbuild.groups",
        "org.osbuild.copy",
    }
)
BUILD_COMPLETE = "Build complete!"
_STAGE_LINE = re.compile(r"^(?P<stage>org\.osbuild\.[a-z0-9._-]+):")
_ERROR_LINE = re.compile(r"(^|\s)error:\s*(?P<msg>.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class BuilderRun:
    """One builder container: its command and mounts (host path → container path, mode)."""

    image: str
    command: tuple[str, ...]
    mounts: tuple[tuple[Path, str, str], ...]
    name: str = "bootc-image-builder"  # which builder, for messages


@dataclass(frozen=True)
class DiskJob:
    """What a disk builder is asked to do, whichever builder it is (pipeline/model/builders.py)."""

    builder_image: str
    bootc_image: str
    arch: Arch
    disk_format: DiskFormat
    rootfs: str
    graph_root: Path
    output_dir: Path
    config_path: Path
    chown: tuple[int, int] | None = None  # only bib has the option


def builder_run(job: DiskJob) -> BuilderRun:
    """The canonical run from bib's README: privileged, the storage mounted, config as JSON."""
    command = [
        "--type",
        job.disk_format.value,
        "--target-arch",
        job.arch.uname,
        "--rootfs",
        job.rootfs,
        "--progress",
        "verbose",
        "--output",
        OUTPUT,
    ]
    if job.chown is not None:
        command += ["--chown", f"{job.chown[0]}:{job.chown[1]}"]
    command.append(job.bootc_image)
    mounts = (
        (job.graph_root, STORAGE, "rw"),
        (job.output_dir, OUTPUT, "rw"),
        (job.config_path, CONFIG, "ro"),
    )
    return BuilderRun(job.builder_image, tuple(command), mounts)


def error_lines(log_lines: list[str]) -> list[str]:
    """bib's `<timestamp> error: ...` lines, messages only."""
    found = []
    for line in log_lines:
        match = _ERROR_LINE.search(line.strip())
        if match:
            found.append(match.group("msg").strip())
    return found


def stage_of(line: str) -> str | None:
    """The osbuild stage a progress line announces (osbuild prints `NAME: ID {options}`), if any."""
    if line.startswith(BUILD_COMPLETE):
        return BUILD_COMPLETE
    match = _STAGE_LINE.match(line)
    stage = match.group("stage") if match else None
    return stage if stage in KNOWN_STAGES else None


def output_disk(output_dir: Path, disk_format: DiskFormat) -> Path:
    return output_dir / disk_format.bib_output
