"""cosign's tag-based signature, planned as exact bytes (nothing here talks to a registry).

A signature of manifest `sha256:HEX` lives in the same repository under the tag
`sha256-HEX.sig`: an OCI image manifest whose layers are "simple signing" payloads
(`application/vnd.dev.cosign.simplesigning.v1+json`, the JSON naming the repository and the
signed digest), each with its signature in the annotation `dev.cosignproject.cosign/signature`
(base64 ECDSA over the payload's bytes). That is what `cosign verify --key` reads (cosign
`pkg/oci/remote`, `pkg/cosign/verify.go`) and what containers/image reads for a `policy.json`
`sigstoreSigned` requirement with `use-sigstore-attachments: true` in `registries.d` (podman,
skopeo, `bootc upgrade`). The config is the image config go-containerregistry writes for
cosign (`rootfs.diff_ids` = the payload digests: the layers are not compressed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.digest import Blob, of_bytes
from pipeline.core.errors import PipelineError
from pipeline.model.plan import Document

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
_EPOCH = "0001-01-01T00:00:00Z"  # go-containerregistry's zero time, as cosign's config has


def signature_tag(digest: str) -> str:
    """`sha256:HEX` -> `sha256-HEX.sig` (cosign's tag for the signatures of that manifest)."""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}.sig"


def payload(docker_reference: str, digest: str) -> bytes:
    """The simple-signing payload, keys in cosign's order (`payload.Cosign.MarshalJSON`)."""
    body = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Signature:
    """One layer of a signature manifest: the payload blob and its base64 signature."""

    payload: bytes
    signature: str

    @property
    def blob(self) -> Blob:
        return of_bytes(self.payload)

    def descriptor(self) -> dict[str, Any]:
        blob = self.blob
        return {
            "mediaType": PAYLOAD_TYPE,
            "size": blob.size,
            "digest": blob.digest,
            "annotations": {SIGNATURE_ANNOTATION: self.signature},
        }


def config(layers: Sequence[Blob]) -> bytes:
    body = {
        "architecture": "",
        "created": _EPOCH,
        "history": [{"created": _EPOCH} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
        "config": {},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def signature_manifest(signatures: Sequence[Signature]) -> tuple[Document, bytes]:
    """The manifest for the `.sig` tag, and its config blob's bytes."""
    config_bytes = config([s.blob for s in signatures])
    config_blob = of_bytes(config_bytes)
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.OCI_IMAGE_CONFIG,
            "size": config_blob.size,
            "digest": config_blob.digest,
        },
        "layers": [s.descriptor() for s in signatures],
    }
    return Document(mt.OCI_MANIFEST, json.dumps(body, separators=(",", ":")).encode()), config_bytes


@dataclass(frozen=True)
class Claim:
    """What a payload says: the repository and the digest it was signed for."""

    docker_reference: str
    digest: str


def read_payload(data: bytes, where: str) -> Claim:
    """Parse a simple-signing payload; a PipelineError names what is wrong with it."""
    try:
        body = json.loads(data)
        critical = body["critical"]
        claim = Claim(
            str(critical["identity"]["docker-reference"]),
            str(critical["image"]["docker-manifest-digest"]),
        )
        kind = critical["type"]
    except (ValueError, KeyError, TypeError):
        raise PipelineError(f"{where}: not a simple-signing payload") from None
    if kind != SIGNATURE_TYPE:
        raise PipelineError(f"{where}: payload type is {kind!r}, not {SIGNATURE_TYPE!r}")
    return claim


def layers_of(manifest: dict[str, Any]) -> list[tuple[Blob, str]]:
    """The (payload blob, base64 signature) pairs a signature manifest lists."""
    found = []
    for layer in manifest.get("layers") or []:
        if not isinstance(layer, dict) or layer.get("mediaType") != PAYLOAD_TYPE:
            continue
        signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if isinstance(signature, str) and isinstance(layer.get("digest"), str):
            found.append((Blob(layer["digest"], int(layer.get("size", -1))), signature))
    return found
