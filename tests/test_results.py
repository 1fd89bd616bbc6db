"""Result files: what one runner hands to the join, boot record included, read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import results
from pipeline.arch import Arch
from pipeline.digest import Blob
from pipeline.errors import UsageError
from pipeline.mediatypes import OCI_MANIFEST
from pipeline.plan import Document
from pipeline.published import ArchRelease

BOOT = {
    "booted": True,
    "ok": True,
    "firmware": "AAVMF",
    "accelerator": "tcg",
    "secondsToSsh": 312.5,
    "checks": [{"name": "cloud-init", "ok": True, "required": True, "detail": "status: done"}],
}


def _result(boot: dict[str, object] | None) -> results.ArchResult:
    manifest = Document(OCI_MANIFEST, b'{"schemaVersion":2}')
    release = ArchRelease(
        Arch.ARM64, Blob("sha256:" + "a" * 64, 10), Blob("sha256:" + "b" * 64, 20), 19, manifest, 10
    )
    annotations = {"org.opencontainers.image.version": "40.1.0"}
    return results.ArchResult("fedora-40", "ghcr.io/o/r", annotations, release, {"boot": 1.0}, boot)


def test_the_boot_record_travels_to_the_join(tmp_path: Path) -> None:
    path = tmp_path / results.file_name(Arch.ARM64)
    results.write(path, _result(BOOT))
    assert json.loads(path.read_text())["boot"] == BOOT
    assert results.load(path) == _result(BOOT)


def test_a_result_without_a_boot_record_still_loads(tmp_path: Path) -> None:
    """Result files written before the record existed (or from an up-to-date run) have none."""
    path = tmp_path / results.file_name(Arch.ARM64)
    results.write(path, _result(None))
    assert "boot" not in json.loads(path.read_text())
    assert results.load(path).boot is None


def test_a_boot_record_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / results.file_name(Arch.ARM64)
    results.write(path, _result(BOOT))
    data = json.loads(path.read_text())
    data["boot"] = "passed"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=f"^{path}: .*boot"):
        results.load(path)
