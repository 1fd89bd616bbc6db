"""What a publish leaves behind: the JSON release report and a Lima template for the release."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.arch import Arch
from pipeline.core.files import atomic_write
from pipeline.model import lima_settings
from pipeline.model.plan import Provenance
from pipeline.model.published import Published
from pipeline.model.release import Release

REPORT_VERSION = 1


def blob_url(registry: str, repository: str, digest: str, *, plain_http: bool) -> str:
    """The distribution-spec URL of a blob: what Lima's HTTP downloader can fetch directly."""
    scheme = "http" if plain_http else "https"
    return f"{scheme}://{registry}/v2/{repository}/blobs/{digest}"


def release_report(
    release: Release,
    published: Published,
    provenance: Provenance,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Per architecture: manifest and layer digests and sizes, uncompressed sha256/size, timings."""
    return {
        "reportVersion": REPORT_VERSION,
        "variant": release.variant,
        "name": release.name,
        "version": release.version,
        "base": release.base,
        "created": provenance.created,
        "revision": provenance.revision,
        "repository": published.repository,
        "index": {
            "digest": published.index.digest,
            "size": published.index.size,
            "mediaType": published.index.media_type,
            "tags": list(published.tags),
        },
        "architectures": {
            r.arch.value: {
                "manifest": {"digest": r.manifest.digest, "size": r.manifest.size},
                "layer": {
                    "digest": r.layer.digest,
                    "size": r.layer.size,
                    "title": release.layer_title(r.arch),
                    "zstdLevel": r.level,
                    "bytesSent": r.bytes_sent,
                },
                "uncompressed": asdict(r.uncompressed),
                "referrers": list(r.referrers),
                "timings": {
                    stage: seconds
                    for key, seconds in timings.items()
                    for stage in [key.split(":", 1)[0]]
                    if key.endswith(f":{r.arch.value}")
                },
            }
            for r in published.archs
        },
        "timings": {k: v for k, v in timings.items() if ":" not in k},
    }


def lima_template(release: Release, published: Published, *, plain_http: bool) -> dict[str, Any]:
    """A Lima template whose images are this release's layers, checked by digest.

    Lima downloads over HTTP(S) without registry token auth and checks the digest against the
    bytes as downloaded (the .zst), which it recognises by its magic and decompresses itself.
    """
    registry, _, repository = published.repository.partition("/")
    images = [
        {
            "location": blob_url(registry, repository, r.layer.digest, plain_http=plain_http),
            "arch": Arch(r.arch).lima,
            "digest": r.layer.digest,
        }
        for r in published.archs
    ]
    return lima_settings.template(
        images,
        lima_settings.Settings.of(release),
    )


def write_report(path: Path, report: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(report, indent=2).encode() + b"\n")


def write_lima_template(path: Path, template: dict[str, Any], *, header: str) -> None:
    body = yaml.safe_dump(template, sort_keys=False, default_flow_style=False)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write(path, (comment + body).encode())
