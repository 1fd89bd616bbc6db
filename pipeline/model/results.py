"""Per-architecture result files: what one machine's `publish --arch X` hands to the join.

A result names the architecture's manifest (its exact bytes), the layer it references, and the
release annotations it was made with; `bootc-pipeline index` reads several of them (from
different machines), checks them against each other and the registry, and makes the index a
single-machine publish would have made from the same inputs.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError, UsageError
from pipeline.core.files import atomic_write
from pipeline.core.mediatypes import OCI_MANIFEST
from pipeline.model import pullplan, schemas
from pipeline.model.plan import Document, OsImageRef, origin_of
from pipeline.model.published import ArchRelease

RESULT_VERSION = 1


@dataclass(frozen=True)
class ArchResult:
    variant: str
    repository: str  # registry/path
    annotations: dict[str, str]  # the release annotations (as plan.release_annotations)
    release: ArchRelease
    timings: dict[str, float]
    boot: dict[str, Any] | None = None  # the boot check's record (publish's report "boot" entry)


def file_name(arch: Arch) -> str:
    return f"result-{arch.value}.json"


def _document(doc: Document) -> dict[str, Any]:
    return {
        "mediaType": doc.media_type,
        "digest": doc.digest,
        "size": doc.size,
        "data": base64.b64encode(doc.body).decode(),
    }


def _os_image(r: ArchRelease) -> dict[str, Any]:
    if r.os_image is None or r.os_manifest is None:
        return {}
    return {
        "osImage": {
            "repository": r.os_image.repository,
            "origin": r.os_image.origin,
            "manifest": _document(r.os_manifest),
        }
    }


def to_json(result: ArchResult) -> dict[str, Any]:
    r = result.release
    return (
        {
            "resultVersion": RESULT_VERSION,
            "variant": result.variant,
            "repository": result.repository,
            "arch": r.arch.value,
            "annotations": result.annotations,
            "manifest": _document(r.manifest),
            "layer": asdict(r.layer),
            "zstdLevel": r.level,
            "uncompressed": asdict(r.uncompressed),
            "bytesSent": r.bytes_sent,
            "timings": result.timings,
        }
        | _os_image(r)
        | ({"boot": result.boot} if result.boot is not None else {})
    )


def write(path: Path, result: ArchResult) -> None:
    atomic_write(path, json.dumps(to_json(result), indent=2).encode() + b"\n")


def _checked_release(path: Path, data: dict[str, Any], manifest: Document) -> ArchRelease:
    """The release the manifest's bytes describe; the file's own `arch`, `layer` and
    `uncompressed` (which set the index's platform and the Lima template's digest) must say the
    same, or the file is refused."""
    arch = Arch(data["arch"])
    try:
        release = pullplan.arch_release(
            manifest,
            f"{path}: manifest.data",
            arch=arch,
            level=int(data.get("zstdLevel", 0)),
            bytes_sent=data["bytesSent"],
        )
    except PipelineError as exc:
        raise UsageError(exc.message) from None
    for key, claimed, verified in (
        ("layer", Blob(**data["layer"]), release.layer),
        ("uncompressed", Blob(**data["uncompressed"]), release.uncompressed),
    ):
        if claimed != verified:
            raise UsageError(
                f"{path}: {key} says {claimed.digest} ({claimed.size} bytes), but its manifest "
                f"says {verified.digest} ({verified.size} bytes)"
            )
    return release


def load(path: Path) -> ArchResult:
    """Read and check a result file; one UsageError naming the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such result file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable JSON result file ({exc})") from None
    found = schemas.problems(schemas.ARCH_RESULT, data)
    if found:
        raise UsageError(f"{path}: {found[0]}")
    manifest = _loaded_document(path, "manifest", data["manifest"])
    release = _checked_release(path, data, manifest)
    release = _with_os_image(path, data, release)
    return ArchResult(
        data["variant"],
        data["repository"],
        data["annotations"],
        release,
        data["timings"],
        data.get("boot"),
    )


def _loaded_document(path: Path, key: str, m: dict[str, Any]) -> Document:
    try:
        body = base64.b64decode(m["data"], validate=True)
    except binascii.Error:
        raise UsageError(f"{path}: {key}.data is not base64") from None
    doc = Document(OCI_MANIFEST, body)
    if (doc.digest, doc.size) != (m["digest"], m["size"]):
        raise UsageError(
            f"{path}: {key}.data hashes to {doc.digest} ({doc.size} bytes), "
            f"not the {m['digest']} ({m['size']} bytes) it claims"
        )
    return doc


def _with_os_image(path: Path, data: dict[str, Any], release: ArchRelease) -> ArchRelease:
    """The OS image the result names, which must be the one its disk manifest's annotations
    name (a disk naming another OS image, or none, is refused)."""
    annotations = release.manifest.json().get("annotations") or {}
    found = data.get("osImage")
    if found is None:
        if mt.ANN_OS_IMAGE in annotations:
            raise UsageError(
                f"{path}: the disk manifest names OS image {annotations[mt.ANN_OS_IMAGE]}, "
                "the result file none"
            )
        return release
    manifest = _loaded_document(path, "osImage.manifest", found["manifest"])
    image = OsImageRef(found["repository"], manifest.digest, found["origin"])
    tag = image.origin.rpartition(":")[2]
    if image.annotations() != {k: annotations.get(k) for k in image.annotations()} or (
        image.origin != origin_of(f"{image.repository}:{tag}")
    ):
        raise UsageError(
            f"{path}: osImage says {image.reference} (origin {image.origin}), its disk manifest "
            f"{annotations.get(mt.ANN_OS_IMAGE)} (origin tag "
            f"{annotations.get(mt.ANN_OS_IMAGE_ORIGIN_TAG)})"
        )
    return dataclasses.replace(release, os_image=image, os_manifest=manifest)
