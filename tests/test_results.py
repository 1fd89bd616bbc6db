"""Result files: what one runner hands to the join, boot record included, read back exactly."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import UsageError
from pipeline.core.mediatypes import OCI_MANIFEST
from pipeline.model import plan, results
from pipeline.model.plan import Document
from pipeline.model.published import ArchRelease
from tests.factories import fedora

BOOT = {
    "booted": True,
    "ok": True,
    "firmware": "AAVMF",
    "accelerator": "tcg",
    "secondsToSsh": 312.5,
    "checks": [{"name": "cloud-init", "ok": True, "required": True, "detail": "status: done"}],
}


LAYER = Blob("sha256:" + "a" * 64, 10)
UNCOMPRESSED = Blob("sha256:" + "b" * 64, 20)
PROVENANCE = plan.Provenance("2026-11-28T05:00:00Z", "0123456789abcdef0123456789abcdef01234567")


def _result(boot: dict[str, object] | None) -> results.ArchResult:
    """A result as publish writes it: the manifest is the one planned for its layer (the join
    checks the file's fields against those bytes, so an unrelated manifest would not load)."""
    disk = plan.DiskArtifact(Arch.ARM64, LAYER, UNCOMPRESSED, "sha256:" + "c" * 64)
    manifest = plan.artifact_manifest(fedora(), disk, PROVENANCE)
    release = ArchRelease(Arch.ARM64, LAYER, UNCOMPRESSED, 19, manifest, 10)
    annotations = plan.release_annotations(fedora(), PROVENANCE)
    return results.ArchResult("fedora-40", "ghcr.io/o/r", annotations, release, {"boot": 1.0}, boot)


def _tampered(tmp_path: Path, change: dict[str, object]) -> Path:
    path = tmp_path / results.file_name(Arch.ARM64)
    results.write(path, _result(BOOT))
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    return path


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


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # arch sets the index's platform: the layer title in the manifest says arm64
        ({"arch": "amd64"}, r"titled 'fedora-bootc-lima-40\.1\.0-arm64\.qcow2\.zst' \(an arm64"),
        # layer is what the index's manifest is said to reference
        ({"layer": {"digest": "sha256:" + "d" * 64, "size": 10}}, "layer says sha256:d"),
        ({"layer": {"digest": LAYER.digest, "size": 11}}, r"layer says .* \(11 bytes\)"),
        # uncompressed is the digest the Lima template gives Lima to check
        ({"uncompressed": {"digest": "sha256:" + "e" * 64, "size": 20}}, "uncompressed says"),
    ],
    ids=["arch", "layer-digest", "layer-size", "uncompressed"],
)
def test_fields_the_manifest_does_not_say_are_refused(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    path = _tampered(tmp_path, change)
    with pytest.raises(UsageError, match=f"^{path}: .*{expected}"):
        results.load(path)


def test_a_manifest_unrelated_to_its_layer_is_refused(tmp_path: Path) -> None:
    """The bytes hash to what the file claims, but describe no disk of this project."""
    body = b'{"schemaVersion":2}'
    manifest = Document(OCI_MANIFEST, body)
    path = _tampered(
        tmp_path,
        {
            "manifest": {
                "mediaType": OCI_MANIFEST,
                "digest": manifest.digest,
                "size": manifest.size,
                "data": base64.b64encode(body).decode(),
            }
        },
    )
    with pytest.raises(UsageError, match=f"^{path}: manifest.data: layers is not an array"):
        results.load(path)
