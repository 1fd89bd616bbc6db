"""One architecture's disk of a published release, fetched for a boot check.

Kept minimal and in one place: a full `bootc-pipeline pull` (resume, anonymous tokens) can take
this over. The layer is verified against its digest by the registry client as it downloads; the
decompressed disk is then checked against the uncompressed digest the manifest annotates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import mediatypes as mt
from pipeline.arch import Arch
from pipeline.context import Options
from pipeline.digest import Blob
from pipeline.errors import PipelineError
from pipeline.progress import Reporter
from pipeline.reference import parse_reference


@dataclass(frozen=True)
class PublishedDisk:
    path: Path  # the .zst as downloaded
    compressed: Blob
    uncompressed: Blob | None


def _platform_manifest(index: dict[str, Any], arch: Arch, ref: str) -> str:
    for entry in index.get("manifests", []):
        platform = entry.get("platform", {})
        if platform.get("os") == "linux" and platform.get("architecture") == arch.value:
            return str(entry["digest"])
    found = [
        f"{m.get('platform', {}).get('os')}/{m.get('platform', {}).get('architecture')}"
        for m in index.get("manifests", [])
    ]
    raise PipelineError(f"{ref} has no {arch.platform} disk (it has {', '.join(found) or 'none'})")


def disk_layer(manifest: dict[str, Any], ref: str) -> dict[str, Any]:
    """The one zstd-compressed disk layer of an artifact manifest."""
    layers = [
        layer
        for layer in manifest.get("layers", [])
        if str(layer.get("mediaType", "")).endswith("+zstd")
    ]
    if len(layers) != 1:
        raise PipelineError(f"{ref}: expected one zstd disk layer, found {len(layers)}")
    found: dict[str, Any] = layers[0]
    return found


def fetch_disk(
    options: Options, ref: str, arch: Arch, dest_dir: Path, reporter: Reporter
) -> PublishedDisk:
    reference = parse_reference(ref)
    with options.registry_client(reference.registry) as client:
        top = client.get_manifest(reference.repository, reference.target)
        doc = json.loads(top.body)
        if doc.get("mediaType") == mt.OCI_INDEX or top.media_type == mt.OCI_INDEX:
            digest = _platform_manifest(doc, arch, ref)
            doc = json.loads(client.get_manifest(reference.repository, digest).body)
        layer = disk_layer(doc, ref)
        annotations = layer.get("annotations", {})
        compressed = Blob(str(layer["digest"]), int(layer["size"]))
        uncompressed = None
        if mt.ANN_UNCOMPRESSED_DIGEST in annotations:
            uncompressed = Blob(
                annotations[mt.ANN_UNCOMPRESSED_DIGEST],
                int(annotations.get(mt.ANN_UNCOMPRESSED_SIZE, 0)),
            )
        dest = dest_dir / f"published-{arch.value}.qcow2.zst"
        dest_dir.mkdir(parents=True, exist_ok=True)
        with reporter.transfer(f"{arch.value}: {compressed.digest[:19]}", compressed.size) as adv:
            client.fetch_blob(
                reference.repository, compressed.digest, dest, size=compressed.size, progress=adv
            )
    return PublishedDisk(dest, compressed, uncompressed)
