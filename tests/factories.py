"""Small builders of valid inputs for unit tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.arch import Arch
from pipeline.core.mediatypes import DiskFormat
from pipeline.model import release
from pipeline.model.bib import DiskJob

ROOT = Path(__file__).resolve().parent.parent

VALID: dict[str, Any] = yaml.safe_load((ROOT / "manifests" / "fedora-40.yaml").read_text())


def manifest_data(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


def write_manifest(tmp_path: Path, data: Any, name: str = "test-variant") -> Path:
    """A manifest inside a repo-shaped tree (manifests/ beside containerfiles/)."""
    (tmp_path / "manifests").mkdir(exist_ok=True)
    (tmp_path / "containerfiles").mkdir(exist_ok=True)
    (tmp_path / "containerfiles" / "fedora.Containerfile").write_text("FROM scratch\n")
    path = tmp_path / "manifests" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def fedora() -> release.Release:
    return release.load(ROOT / "manifests" / "fedora-40.yaml")


def disk_job(builder_image: str = "quay.io/centos-bootc/bootc-image-builder:latest") -> DiskJob:
    """An arm64 qcow2 of a locally built image, as the disk stage asks a builder for it."""
    return DiskJob(
        builder_image=builder_image,
        bootc_image="localhost/bootc-pipeline/fedora-40:1-arm64",
        arch=Arch.ARM64,
        disk_format=DiskFormat.QCOW2,
        rootfs="ext4",
        graph_root=Path("/srv/storage"),
        output_dir=Path("/w/disk"),
        config_path=Path("/w/bib-config.json"),
        chown=(1000, 1000),
    )
