"""Pushing artifacts with plain HTTP requests (urllib), as a third-party publisher would.

Used to make what this project did not publish: the seed's shape (lima-vm/lima#2405: a
single-arch manifest, artifactType `application/vnd.unknown.artifact.v1`, one layer with only a
title annotation), plain manifests without an index, and hostile titles. Monolithic uploads
(POST, then PUT ?digest=), per the distribution spec.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import urllib.request
from typing import Any

from pipeline.core import mediatypes as mt

TIMEOUT_SECONDS = 30
SEED_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _request(method: str, url: str, data: bytes | None, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)


def push_blob(host: str, repository: str, data: bytes) -> str:
    digest = digest_of(data)
    with _request("POST", f"http://{host}/v2/{repository}/blobs/uploads/", b"", {}) as answer:
        location = answer.headers["Location"]
    url = urllib.parse.urljoin(f"http://{host}/", location)
    url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
    headers = {"Content-Type": "application/octet-stream"}
    with _request("PUT", url, data, headers) as answer:
        assert answer.status == 201, answer.status
    return digest


def push_manifest(host: str, repository: str, reference: str, document: dict[str, Any]) -> str:
    body = json.dumps(document, indent=3).encode()
    media_type = document["mediaType"]
    url = f"http://{host}/v2/{repository}/manifests/{reference}"
    with _request("PUT", url, body, {"Content-Type": media_type}) as answer:
        assert answer.status == 201, answer.status
    return digest_of(body)


def seed_manifest(layer: bytes, layer_digest: str, title: str | None) -> dict[str, Any]:
    """The manifest shape of lima-vm/lima#2405 (`oras push` made it for fedora-bootc-cloud-disk)."""
    annotations = {mt.ANN_TITLE: title} if title is not None else {}
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": SEED_ARTIFACT_TYPE,
        "config": {
            "mediaType": mt.OCI_EMPTY,
            "digest": mt.EMPTY_DIGEST,
            "size": 2,
            "data": mt.EMPTY_DATA_B64,
        },
        "layers": [
            {
                "mediaType": "application/x-qemu-qcow2+zstd",
                "digest": layer_digest,
                "size": len(layer),
                "annotations": annotations,
            }
        ],
        "annotations": {mt.ANN_CREATED: "2024-01-31T12:57:14Z"},
    }


def push_seed_artifact(
    host: str, repository: str, tag: str, layer: bytes, title: str | None
) -> str:
    """Push the seed's shape (empty config, one layer) under `tag`; returns the manifest digest."""
    push_blob(host, repository, mt.EMPTY_JSON)
    digest = push_blob(host, repository, layer)
    return push_manifest(host, repository, tag, seed_manifest(layer, digest, title))
