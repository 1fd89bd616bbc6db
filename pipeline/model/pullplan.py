"""Reading a release back from its documents, already fetched: no I/O here.

One place for index → platform → artifactType → manifest → layer → a verified per-architecture
release, used by pull and lima (pull.resolve), the up-to-date check, the join's result files,
and wherever else a published index is read.

An index (OCI, or a Docker manifest list) is narrowed to the entries for the wanted platform,
then by this project's artifactType when several remain; a manifest is narrowed to its one
`application/x-qemu-qcow2+zstd` layer. Artifacts this project did not publish are accepted as
long as they have that shape: the seed's (lima-vm/lima#2405: a single-arch manifest with
artifactType `application/vnd.unknown.artifact.v1` and no uncompressed annotations), and a plain
manifest pushed without an index. Every document is remote input: anything unexpected in it is
one PipelineError naming what is wrong, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.core.reference import is_digest
from pipeline.model.plan import Document
from pipeline.model.published import ArchRelease

LAYER_MEDIA_TYPE = mt.Compression.ZSTD.media_type(mt.DiskFormat.QCOW2)
INDEX_TYPES = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)


@dataclass(frozen=True)
class Layer:
    """The disk layer: what the registry serves, and what it holds once decompressed."""

    blob: Blob
    title: str | None
    uncompressed: Blob | None  # from this project's annotations, when present
    uncompressed_digest: str | None  # the digest annotation alone (size may be absent)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PipelineError(f"{what} is not a JSON object")
    return value


def _size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PipelineError(f"{what}: size {value!r} is not a byte count")
    return value


def _digest(value: Any, what: str) -> str:
    if not isinstance(value, str) or not is_digest(value):
        raise PipelineError(f"{what}: digest {str(value)[:80]!r} is not a sha256 digest")
    return value


def annotations_of(document: Any) -> dict[str, str]:
    """A document's string annotations (none when it has no such object)."""
    found = document.get("annotations") if isinstance(document, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def _platform(entry: dict[str, Any]) -> str:
    platform = entry.get("platform")
    if not isinstance(platform, dict):
        return "(no platform)"
    text = f"{platform.get('os')}/{platform.get('architecture')}"
    return text + (f"/{platform['variant']}" if platform.get("variant") else "")


def parse(body: bytes, where: str) -> Any:
    """A fetched document's JSON, or one error naming where it came from."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PipelineError(f"{where}: not valid JSON") from None


def _entries(index: Any, where: str) -> list[dict[str, Any]]:
    entries = _object(index, where).get("manifests")
    if not isinstance(entries, list):
        raise PipelineError(f"{where}: manifests is not an array")
    return [e for e in entries if isinstance(e, dict)]


def linux_digests(index: Any, where: str) -> dict[str, str]:
    """Per architecture, the digest of an index's first linux entry for it (an image's index:
    attestations and other OSes left out, as a runtime would pick)."""
    found: dict[str, str] = {}
    for entry in _entries(index, where):
        platform = entry.get("platform")
        if not isinstance(platform, dict) or platform.get("os") != "linux":
            continue
        arch = platform.get("architecture")
        if isinstance(arch, str) and arch not in found:
            found[arch] = _digest(entry.get("digest"), f"{where}: linux/{arch} entry")
    return found


def linux_archs(index: Any, where: str) -> list[Arch]:
    """The architectures an index has linux manifests for (those this project knows), in order."""
    found: list[Arch] = []
    for entry in _entries(index, where):
        platform = entry.get("platform")
        if isinstance(platform, dict) and platform.get("os") == "linux":
            try:
                found.append(Arch.parse(str(platform.get("architecture"))))
            except PipelineError:
                continue  # an architecture this project has no disks for
    return list(dict.fromkeys(found))


def choose_manifest(index: Any, arch: Arch, where: str) -> tuple[str, int | None]:
    """The digest (and size) of the index entry for linux/`arch`."""
    entries = _entries(index, where)
    matching = [
        e
        for e in entries
        if isinstance(e.get("platform"), dict)
        and e["platform"].get("os") == "linux"
        and e["platform"].get("architecture") == arch.value
    ]
    if not matching:
        found = ", ".join(sorted({_platform(e) for e in entries})) or "no entries"
        raise PipelineError(f"{where} has no {arch.platform} manifest (it has {found})")
    if len(matching) > 1:
        ours = [e for e in matching if e.get("artifactType") == mt.ARTIFACT_TYPE]
        if len(ours) != 1:
            raise PipelineError(
                f"{where} has {len(matching)} {arch.platform} manifests and "
                f"{len(ours)} of them of type {mt.ARTIFACT_TYPE}: pull one by digest"
            )
        matching = ours
    entry = matching[0]
    digest = _digest(entry.get("digest"), f"{where}: {arch.platform} entry")
    size = entry.get("size")
    return digest, size if isinstance(size, int) and not isinstance(size, bool) else None


def choose_layer(manifest: Any, where: str) -> Layer:
    """The manifest's one qcow2+zstd layer, with the annotations that describe it."""
    layers = _object(manifest, where).get("layers")
    if not isinstance(layers, list):
        raise PipelineError(f"{where}: layers is not an array")
    disks = [
        layer
        for layer in layers
        if isinstance(layer, dict) and layer.get("mediaType") == LAYER_MEDIA_TYPE
    ]
    if len(disks) != 1:
        types = sorted({str(x.get("mediaType")) for x in layers if isinstance(x, dict)})
        raise PipelineError(
            f"{where} has {len(disks)} layers of type {LAYER_MEDIA_TYPE}, not one "
            f"(layer types: {', '.join(types) or 'none'})"
        )
    layer = disks[0]
    what = f"{where}: layer"
    blob = Blob(_digest(layer.get("digest"), what), _size(layer.get("size"), what))
    annotations = layer.get("annotations")
    annotations = {} if annotations is None else _object(annotations, f"{what}: annotations")
    title = annotations.get(mt.ANN_TITLE)
    # this project writes what the disk is once decompressed on the manifest (plan.py); others
    # may write it on the layer: the manifest's word first, the layer's otherwise
    outer = _object(manifest, where).get("annotations")
    if isinstance(outer, dict) and mt.ANN_UNCOMPRESSED_DIGEST in outer:
        annotations = annotations | {
            key: outer[key]
            for key in (mt.ANN_UNCOMPRESSED_DIGEST, mt.ANN_UNCOMPRESSED_SIZE)
            if key in outer
        }
    if title is not None and not isinstance(title, str):
        raise PipelineError(f"{what}: title {title!r} is not a string")
    plain_digest = annotations.get(mt.ANN_UNCOMPRESSED_DIGEST)
    if plain_digest is not None:
        plain_digest = _digest(plain_digest, f"{what}: {mt.ANN_UNCOMPRESSED_DIGEST}")
    plain_size = annotations.get(mt.ANN_UNCOMPRESSED_SIZE)
    uncompressed = None
    if plain_digest is not None and plain_size is not None:
        if not (isinstance(plain_size, str) and plain_size.isdigit()):
            raise PipelineError(f"{what}: {mt.ANN_UNCOMPRESSED_SIZE} {plain_size!r} is not a size")
        uncompressed = Blob(plain_digest, int(plain_size))
    return Layer(blob, title, uncompressed, plain_digest)


def title_arch(title: str | None) -> Arch | None:
    """The architecture a layer title of this project names (`<name>-<version>-<arch>.qcow2.zst`,
    Release.layer_title), or None for a title of another shape."""
    for arch in Arch:
        if title is not None and title.endswith(f"-{arch.value}.qcow2.zst"):
            return arch
    return None


def arch_release(
    manifest: Document, where: str, *, arch: Arch, level: int = 0, bytes_sent: int = 0
) -> ArchRelease:
    """`arch`'s release, from its manifest's bytes alone: its one disk layer, what that layer is
    once decompressed (this project's annotations, required), and the architecture its layer
    title names, which must be `arch`. What a caller was told otherwise (a result file, an index
    entry) is checked against this, never trusted instead of it."""
    layer = choose_layer(parse(manifest.body, where), where)
    if layer.uncompressed is None:
        raise PipelineError(
            f"{where}: no {mt.ANN_UNCOMPRESSED_DIGEST} and {mt.ANN_UNCOMPRESSED_SIZE} "
            "annotations: not a disk manifest this project published"
        )
    named = title_arch(layer.title)
    if named != arch:
        what = f"an {named.value} disk" if named else "no architecture this project publishes"
        raise PipelineError(
            f"{where}: its layer is titled {str(layer.title)[:80]!r} ({what}), "
            f"not an {arch.value} disk"
        )
    return ArchRelease(arch, layer.blob, layer.uncompressed, level, manifest, bytes_sent)


def safe_title(title: str, where: str) -> str:
    """A layer title usable as a file name: no path, no `..`, nothing hidden or odd.

    Titles are remote input: `../../.bashrc` or `/etc/passwd` must never become a path.
    """
    bad = (
        not title
        or title in (".", "..")
        or title.startswith((".", "-"))
        or any(c in title for c in "/\\\0")
        or any(ord(c) < 32 or ord(c) == 127 for c in title)
        or len(title.encode()) > 255
    )
    if bad:
        raise PipelineError(
            f"{where}: refusing layer title {title[:80]!r}: not a plain file name "
            "(absolute paths, '..', path separators and hidden names are refused)"
        )
    return title


def compressed_name(layer: Layer, repository: str, arch: Arch | None, where: str) -> str:
    """The `.zst` file name: the layer's title, else `<repository>-<arch>.qcow2.zst`."""
    if layer.title is None:
        suffix = f"-{arch.value}" if arch is not None else ""
        return f"{repository.rsplit('/', 1)[-1]}{suffix}.qcow2.zst"
    title = safe_title(layer.title, where)
    return title if title.endswith(".zst") else title + ".zst"


def output_path(output: str | None, name: str) -> Path:
    """`-o`: a directory (existing, or written with a trailing /) gets `name`; else the file."""
    if output is None:
        return Path.cwd() / name
    path = Path(output)
    if path.is_dir() or output.endswith("/"):
        return path / name
    return path
