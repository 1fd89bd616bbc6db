"""bootc-image-builder's contract, as data: the exact invocation, and reading its output.

Pure: nothing here starts a container (engine.py does), so the argv is unit-testable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.arch import Arch
from pipeline.mediatypes import DiskFormat

DEFAULT_BUILDER_IMAGE = "quay.io/centos-bootc/bootc-image-builder:latest"
STORAGE = "/var/lib/containers/storage"  # where bib reads the bootc image from; it never pulls
OUTPUT = "/output"
CONFIG = "/config.json"

# osbuild stage names bib prints under --progress verbose, in the order a qcow2 build reaches them,
# as the Podman Desktop bootc extension follows them.
STAGE_MARKERS = (
    "org.osbuild.rpm",
    "org.osbuild.selinux",
    "org.osbuild.ostree.config",
    "org.osbuild.qemu",
    "Build complete!",
)
_ERROR_LINE = re.compile(r"(^|\s)error:\s*(?P<msg>.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class BuilderRun:
    """One bib container: its command and mounts (host path → container path, mode)."""

    image: str
    command: tuple[str, ...]
    mounts: tuple[tuple[Path, str, str], ...]


def builder_run(
    *,
    builder_image: str,
    bootc_image: str,
    arch: Arch,
    disk_format: DiskFormat,
    rootfs: str,
    graph_root: Path,
    output_dir: Path,
    config_path: Path,
    chown: tuple[int, int] | None = None,
) -> BuilderRun:
    """The canonical run from bib's README: privileged, the storage mounted, config as JSON."""
    command = [
        "--type",
        disk_format.value,
        "--target-arch",
        arch.uname,
        "--rootfs",
        rootfs,
        "--progress",
        "verbose",
        "--output",
        OUTPUT,
    ]
    if chown is not None:
        command += ["--chown", f"{chown[0]}:{chown[1]}"]
    command.append(bootc_image)
    mounts = (
        (graph_root, STORAGE, "rw"),
        (output_dir, OUTPUT, "rw"),
        (config_path, CONFIG, "ro"),
    )
    return BuilderRun(builder_image, tuple(command), mounts)


def error_lines(log_lines: list[str]) -> list[str]:
    """bib's `<timestamp> error: ...` lines, messages only."""
    found = []
    for line in log_lines:
        match = _ERROR_LINE.search(line.strip())
        if match:
            found.append(match.group("msg").strip())
    return found


def stage_of(line: str) -> str | None:
    """The osbuild stage a progress line announces, if any."""
    for marker in STAGE_MARKERS:
        if marker in line:
            return marker
    return None


def output_disk(output_dir: Path, disk_format: DiskFormat) -> Path:
    return output_dir / disk_format.bib_output
