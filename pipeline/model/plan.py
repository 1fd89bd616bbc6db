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
    os_image: OsImageRef | None = None  # the bootc image this disk was made from, as pushed


@dataclass(frozen=True)
class OsImageRef:
    """Where one architecture's bootc image was pushed, and the disk's origin naming it."""

    repository: str  # registry/path of the OS image's repository
    digest: str  # its image manifest's digest
    origin: str  # the bootc origin the disk carries: ostree-unverified-registry:REG/REPO:TAG

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def annotations(self) -> dict[str, str]:
        """What the disk manifest says (mediatypes: by path on the disks' registry)."""
        path = self.repository.split("/", 1)[1]
        return {
            mt.ANN_OS_IMAGE: f"{path}@{self.digest}",
            mt.ANN_OS_IMAGE_ORIGIN_TAG: self.origin.rpartition(":")[2],
        }


@dataclass(frozen=True)
class ImageLayer:
    """One layer of a bootc image as pushed (zstd) and its uncompressed digest (diff_id)."""

    blob: Blob
    diff_id: str


def origin_of(name: str) -> str:
    """The origin bootc writes for a deployment installed with `--target-imgref NAME` and the
    default (registry) transport and unverified signature policy (bootc
    crates/ostree-ext/src/container/mod.rs; what osbuild's install-to-filesystem stage gets)."""
    return f"{mt.ORIGIN_PREFIX}{name}"


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
    return _sized(Document(media_type, encode(document)), schema)


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
        | ({mt.ANN_BOOT_CHECK: disk.boot_check} if disk.boot_check else {})
        | (disk.os_image.annotations() if disk.os_image else {}),
    }
    return _checked(schemas.ARTIFACT_MANIFEST, manifest, mt.OCI_MANIFEST)


def os_image_manifest(
    release: Release,
    config: Blob,
    layers: Sequence[ImageLayer],
    base_digest: str,
    provenance: Provenance,
) -> Document:
    """One architecture's bootc image as an OCI image manifest, with the release's annotations."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_IMAGE_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [
            {"mediaType": mt.OCI_LAYER_ZSTD, "digest": layer.blob.digest, "size": layer.blob.size}
            for layer in layers
        ],
        "annotations": release_annotations(release, provenance) | {mt.ANN_BASE_DIGEST: base_digest},
    }
    return _sized(Document(mt.OCI_MANIFEST, encode(manifest)), "OS image manifest")


def os_image_index(
    release: Release, manifests: Sequence[tuple[Arch, Document]], provenance: Provenance
) -> Document:
    """The OS image's multi-architecture index: images only (no disk), in release order."""
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": _index_entries(manifests, None),
        "annotations": release_annotations(release, provenance),
    }
    return _sized(Document(mt.OCI_INDEX, encode(index)), "OS image index")


def _index_entries(
    manifests: Sequence[tuple[Arch, Document]], artifact_type: str | None
) -> list[dict[str, Any]]:
    """An index's entries: one per architecture, with its platform (and artifactType)."""
    archs = [arch for arch, _ in manifests]
    if len(set(archs)) != len(archs):
        raise PipelineError(f"two manifests for one architecture in {archs}")
    typed = {"artifactType": artifact_type} if artifact_type else {}
    return [
        {"mediaType": doc.media_type}
        | typed
        | {
            "digest": doc.digest,
            "size": doc.size,
            "platform": {"architecture": arch.value, "os": "linux"},
        }
        for arch, doc in manifests
    ]


def _sized(doc: Document, what: str) -> Document:
    if doc.size > mt.MAX_MANIFEST_BYTES:
        raise PipelineError(
            f"the planned {what} is {doc.size} bytes, over the {mt.MAX_MANIFEST_BYTES} bytes "
            "registries must accept"
        )
    return doc


def artifact_index(
    release: Release,
    manifests: Sequence[tuple[Arch, Document]],
    provenance: Provenance,
    os_index: str | None = None,
) -> Document:
    """The multi-architecture index over the per-architecture manifests, in release order."""
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "artifactType": mt.ARTIFACT_TYPE,
        "manifests": _index_entries(manifests, mt.ARTIFACT_TYPE),
        "annotations": release_annotations(release, provenance)
        | ({mt.ANN_OS_IMAGE_INDEX: os_index} if os_index else {}),
    }
    return _checked(schemas.ARTIFACT_INDEX, index, mt.OCI_INDEX)
