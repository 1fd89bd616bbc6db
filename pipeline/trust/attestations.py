"""SLSA v1 provenance in a signed DSSE envelope, and the OCI 1.1 referrer manifests that attach
it (or an SBOM) to the manifest it describes. Pure: exact bytes, nothing sent.

The statement is in-toto Statement v1 with predicate `https://slsa.dev/provenance/v1`: its
subjects are the signed subjects (pipeline/trust/subjects.py); `buildDefinition` holds the
release's inputs record (base digests per architecture, the Containerfile's build-context hash,
the release manifest's hash, the builder image and its digest: publishing/inputs.py) and, in
GitHub Actions, the workflow run (`runDetails`). The envelope is DSSE v1: the signature is over
PAE("DSSEv1", payloadType, payload), ECDSA P-256 as the cosign signatures are.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.digest import Blob, of_bytes
from pipeline.model.plan import Document, Provenance
from pipeline.trust.keys import SigningKey
from pipeline.trust.subjects import Subject

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/bootc-lima/bootc-pipeline/publish/v1"
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
PROVENANCE_ARTIFACT_TYPE = "application/vnd.in-toto+json"
SBOM_ARTIFACT_TYPE = "application/spdx+json"
ANN_PREDICATE = "in-toto.io/predicate-type"


def _digest_map(digest: str) -> dict[str, str]:
    algorithm, _, hex_ = digest.partition(":")
    return {algorithm: hex_}


def run_details(environ: Mapping[str, str]) -> dict[str, Any]:
    """Who ran the build: the GitHub Actions workflow run when there is one, else this host."""
    if environ.get("GITHUB_ACTIONS") == "true":
        server = environ.get("GITHUB_SERVER_URL", "https://github.com")
        repo = environ.get("GITHUB_REPOSITORY", "")
        run = f"{server}/{repo}/actions/runs/{environ.get('GITHUB_RUN_ID', '')}"
        return {
            "builder": {"id": f"{server}/{environ.get('GITHUB_WORKFLOW_REF', repo)}"},
            "metadata": {
                "invocationId": f"{run}/attempts/{environ.get('GITHUB_RUN_ATTEMPT', '1')}"
            },
        }
    return {"builder": {"id": "local:bootc-pipeline"}, "metadata": {}}


def slsa_statement(
    subjects: Sequence[Subject],
    provenance: Provenance,
    inputs: Mapping[str, Any] | None,
    environ: Mapping[str, str] = os.environ,
) -> bytes:
    record = dict(inputs or {})
    dependencies: list[dict[str, Any]] = []
    for arch, digest in sorted((record.get("baseDigests") or {}).items()):
        dependencies.append(
            {"uri": f"{record.get('base')}", "digest": _digest_map(digest), "name": f"base {arch}"}
        )
    if record.get("builderDigest"):
        dependencies.append(
            {"uri": record.get("builderImage"), "digest": _digest_map(record["builderDigest"])}
        )
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": s.docker_reference, "digest": _digest_map(s.digest)} for s in subjects
        ],
        "predicateType": SLSA_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"revision": provenance.revision},
                "internalParameters": {"created": provenance.created, "inputs": provenance.inputs},
                "resolvedDependencies": dependencies,
            },
            "runDetails": run_details(environ),
        },
    }
    if record:
        statement["predicate"]["buildDefinition"]["externalParameters"]["inputs"] = record  # type: ignore[index]
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def dsse_envelope(payload: bytes, key: SigningKey, payload_type: str = IN_TOTO_PAYLOAD) -> bytes:
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": key.sign(pae(payload_type, payload))}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def referrer_manifest(
    subject: Subject,
    artifact_type: str,
    layer_type: str,
    layer: bytes,
    annotations: Mapping[str, str],
) -> Document:
    """An artifact manifest (empty config, one layer) whose `subject` is `subject`."""
    blob = of_bytes(layer)
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": mt.OCI_EMPTY,
            "digest": mt.EMPTY_DIGEST,
            "size": len(mt.EMPTY_JSON),
            "data": mt.EMPTY_DATA_B64,
        },
        "layers": [{"mediaType": layer_type, "digest": blob.digest, "size": blob.size}],
        "subject": {
            "mediaType": subject.document.media_type,
            "digest": subject.digest,
            "size": subject.document.size,
        },
        "annotations": dict(annotations),
    }
    return Document(mt.OCI_MANIFEST, json.dumps(body, separators=(",", ":")).encode())


def descriptor_of(manifest: Document) -> dict[str, Any]:
    """The entry a referrers index lists for `manifest` (artifactType and annotations too)."""
    body = manifest.json()
    entry: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": manifest.size,
        "artifactType": body.get("artifactType"),
    }
    if body.get("annotations"):
        entry["annotations"] = body["annotations"]
    return entry


def referrers_index(entries: Sequence[Mapping[str, Any]]) -> Document:
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)}
    return Document(mt.OCI_INDEX, json.dumps(body, separators=(",", ":")).encode())


def layer_blob(manifest: Document) -> Blob:
    layer = manifest.json()["layers"][0]
    return Blob(layer["digest"], layer["size"])
