"""Pure planning of what is published: the exact bytes of every manifest and the index.

Nothing here talks to an engine or a registry; the digest recorded for a document is the sha256
of the very bytes that will be PUT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob, of_bytes
from pipeline.core.errors import PipelineError
from pipeline.model import lima_settings, schemas
from pipeline.model.release import Release


@dataclass(frozen=True)
class Document:
    """A manifest or index as bytes, with the descriptor that points at it."""

    media_type: str
    body: bytes

    @property
    def digest(self) -> str:
        return of_bytes(self.body).digest

    @property
    def size(self) -> int:
        return len(self.body)

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass(frozen=True)
class Provenance:
    """Where and when a release comes from; fixed per release so that re-runs give equal digests."""

    created: str  # RFC 3339, UTC
    revision: str  # VCS revision of the release inputs
    inputs: str | None = None  # digest of the inputs record (publishing/inputs.py), when known


@dataclass(frozen=True)
class DiskArtifact:
    """What the earlier stages produced for one architecture."""

    arch: Arch
    layer: Blob  # the compressed disk, as pushed
    uncompressed: Blob  # the qcow2 before compression
    base_digest: str  # the base image the disk was built from
    boot_check: str | None = None  # "passed" or "skipped" (mediatypes.ANN_BOOT_CHECK)


def encode(document: dict[str, Any]) -> bytes:
    """The one serialisation of published JSON: compact, key order as built, UTF-8."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def release_annotations(release: Release, provenance: Provenance) -> dict[str, str]:
    """The annotations every manifest and the index carry (the Lima settings among them: what a
    consumer of the release needs to write its Lima template, pipeline/model/lima_settings.py)."""
    optional = {
        mt.ANN_INPUTS: provenance.inputs,
        mt.ANN_VENDOR: release.annotations.get("vendor"),
        mt.ANN_URL: release.annotations.get("url"),
        mt.ANN_DOCUMENTATION: release.annotations.get("documentation"),
        mt.ANN_AUTHORS: release.annotations.get("authors"),
    }
    return (
        {
            mt.ANN_CREATED: provenance.created,
            mt.ANN_VERSION: release.version,
            mt.ANN_REVISION: provenance.revision,
            mt.ANN_SOURCE: release.annotations["source"],
            mt.ANN_DESCRIPTION: release.description,
            mt.ANN_LICENSES: release.annotations["licenses"],
            mt.ANN_BASE_NAME: release.base,
        }
        | lima_settings.Settings.of(release).annotations()
        | {key: value for key, value in optional.items() if value}
    )


def _checked(schema: str, document: dict[str, Any], media_type: str) -> Document:
    found = schemas.problems(schema, document)
    if found:
        raise PipelineError(f"the planned {schema} breaks the publish policy: {found[0]}")
    doc = Document(media_type, encode(document))
    if doc.size > mt.MAX_MANIFEST_BYTES:
        raise PipelineError(
            f"the planned {schema} is {doc.size} bytes, over the {mt.MAX_MANIFEST_BYTES} bytes "
            "registries must accept"
        )
    return doc


def artifact_manifest(release: Release, disk: DiskArtifact, provenance: Provenance) -> Document:
    """One architecture's artifact manifest, in the shape of the seed thread's example."""
    compression = mt.Compression.ZSTD
    disk_format = mt.DiskFormat(release.disk_type)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": mt.ARTIFACT_TYPE,
        "config": {
            "mediaType": mt.OCI_EMPTY,
            "digest": mt.EMPTY_DIGEST,
            "size": len(mt.EMPTY_JSON),
            "data": mt.EMPTY_DATA_B64,
        },
        "layers": [
            {
                "mediaType": compression.media_type(disk_format),
                "digest": disk.layer.digest,
                "size": disk.layer.size,
                "annotations": {mt.ANN_TITLE: release.layer_title(disk.arch)},
            }
        ],
        "annotations": release_annotations(release, provenance)
        | {
            mt.ANN_BASE_DIGEST: disk.base_digest,
            mt.ANN_UNCOMPRESSED_DIGEST: disk.uncompressed.digest,
            mt.ANN_UNCOMPRESSED_SIZE: str(disk.uncompressed.size),
        }
        | ({mt.ANN_BOOT_CHECK: disk.boot_check} if disk.boot_check else {}),
    }
    return _checked(schemas.ARTIFACT_MANIFEST, manifest, mt.OCI_MANIFEST)


def artifact_index(
    release: Release, manifests: Sequence[tuple[Arch, Document]], provenance: Provenance
) -> Document:
    """The multi-architecture index over the per-architecture manifests, in release order."""
    archs = [arch for arch, _ in manifests]
    if len(set(archs)) != len(archs):
        raise PipelineError(f"two manifests for one architecture in {archs}")
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "artifactType": mt.ARTIFACT_TYPE,
        "manifests": [
            {
                "mediaType": doc.media_type,
                "artifactType": mt.ARTIFACT_TYPE,
                "digest": doc.digest,
                "size": doc.size,
                "platform": {"architecture": arch.value, "os": "linux"},
            }
            for arch, doc in manifests
        ],
        "annotations": release_annotations(release, provenance),
    }
    return _checked(schemas.ARTIFACT_INDEX, index, mt.OCI_INDEX)
