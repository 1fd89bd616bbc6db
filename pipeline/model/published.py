"""What a release is made of once its parts are in the registry: per-architecture results (from
this machine's push stage or from result files of other machines) and the release they form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.model.plan import Document


@dataclass(frozen=True)
class ArchRelease:
    """One architecture's pushed artifact: its manifest (by digest) and the layer it names."""

    arch: Arch
    layer: Blob  # the compressed disk, as pushed
    uncompressed: Blob  # the qcow2 before compression
    level: int  # zstd level
    manifest: Document
    bytes_sent: int
    referrers: tuple[dict[str, Any], ...] = ()  # attached by this run (the SBOM)


@dataclass(frozen=True)
class Published:
    """A release: the index over the architectures' manifests, and the tags that name it."""

    repository: str  # registry/path
    index: Document
    tags: tuple[str, ...]
    archs: tuple[ArchRelease, ...]
    signatures: tuple[dict[str, Any], ...] = ()  # what pipeline/publishing/sign.py pushed
