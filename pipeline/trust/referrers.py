"""Attach referrers (OCI 1.1 `subject`) and list them, on registries with and without the API.

Where the registry has the referrers API (olareg), the registry indexes `subject` when the
manifest is pushed, but not always safely: olareg v0.2.2 rebuilds a subject's referrers list by
read-modify-write without a lock (`referrerAdd` in its referrer.go), so of two concurrent pushes one
can vanish from the list. So the listing is read back (after a settle delay) until ours is in it,
pushing the manifest again (which makes the registry add it again) a bounded number of times.
Elsewhere (docker-registry 2.8, distribution v3, ghcr.io: it keeps `subject`
but has no API, actions/attest-build-provenance#71) the distribution-spec's fallback applies:
the tag `sha256-HEX` of the subject holds an index listing its referrers, which clients update.
Registries offer no compare-and-swap on tags, so an update is read, merge (every entry ever seen
is kept), write, then read back after a settle delay, again until our entry is there (bounded):
a concurrent attacher whose stale write dropped ours is caught by the read-back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.digest import of_bytes
from pipeline.core.errors import PipelineError
from pipeline.model.plan import Document
from pipeline.registry.client import RegistryClient
from pipeline.trust import attestations
from pipeline.trust.subjects import Subject

MAX_ATTEMPTS = 8
SETTLE_SECONDS = (0.2, 0.5)  # jittered wait before the read-back


def fallback_tag(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}-{hex_}"


def _fallback_entries(client: RegistryClient, repository: str, digest: str) -> list[Any]:
    tag = fallback_tag(digest)
    if client.manifest_digest(repository, tag) is None:
        return []
    return _entries(client.get_manifest(repository, tag, accept=(mt.OCI_INDEX,)).json())


def _entries(index: Any) -> list[Any]:
    return [e for e in index.get("manifests") or [] if isinstance(e, dict)]


def list_referrers(client: RegistryClient, repository: str, digest: str) -> tuple[str, list[Any]]:
    """("api" | "tag", the descriptors) for `digest`."""
    found = client.referrers(repository, digest)
    if found is not None:
        return "api", _entries(found)
    return "tag", _fallback_entries(client, repository, digest)


def _merge(known: list[Any], more: Sequence[Any]) -> list[Any]:
    digests = {e.get("digest") for e in known}
    return known + [e for e in more if e.get("digest") not in digests]


def _listed_by_api(
    client: RegistryClient, repository: str, subject_digest: str, manifest: Document
) -> None:
    """After a settle delay the API lists MANIFEST, else it is PUT again (the registry adds it
    again) and read back again: every PUT is read back, MAX_ATTEMPTS reads in all."""
    for attempt in range(MAX_ATTEMPTS):
        time.sleep(random.uniform(*SETTLE_SECONDS))
        found = client.referrers(repository, subject_digest) or {}
        if manifest.digest in {e.get("digest") for e in _entries(found)}:
            return
        if attempt + 1 < MAX_ATTEMPTS:
            client.push_manifest(repository, manifest.digest, manifest.body, manifest.media_type)
    raise PipelineError(
        f"{client.registry}/{repository}@{subject_digest}: the registry's referrers list kept "
        f"losing {manifest.digest} ({MAX_ATTEMPTS} attempts)"
    )


def attach(
    client: RegistryClient, repository: str, subject_digest: str, manifest: Document, layer: bytes
) -> str:
    """Push `manifest` (its layer first) and make it listed as a referrer of `subject_digest`;
    returns how it is listed: "api" or "tag"."""
    blob = of_bytes(layer)
    client.push_blob(repository, mt.EMPTY_JSON, mt.EMPTY_DIGEST, len(mt.EMPTY_JSON))
    client.push_blob(repository, layer, blob.digest, blob.size)
    client.push_manifest(repository, manifest.digest, manifest.body, manifest.media_type)
    if client.referrers(repository, subject_digest) is not None:
        _listed_by_api(client, repository, subject_digest, manifest)
        return "api"
    ours = attestations.descriptor_of(manifest)
    tag = fallback_tag(subject_digest)
    known: list[Any] = []
    for _ in range(MAX_ATTEMPTS):
        known = _merge(known, _fallback_entries(client, repository, subject_digest))
        known = _merge(known, [ours])
        index = attestations.referrers_index(known)
        client.push_manifest(repository, tag, index.body, index.media_type)
        time.sleep(random.uniform(*SETTLE_SECONDS))
        now = _fallback_entries(client, repository, subject_digest)
        if {e.get("digest") for e in known} <= {e.get("digest") for e in now}:
            return "tag"
    raise PipelineError(
        f"{client.registry}/{repository}:{tag}: the referrers index kept losing entries to "
        f"concurrent writers ({MAX_ATTEMPTS} attempts)"
    )


def attach_document(
    client: RegistryClient,
    subject: Subject,
    artifact_type: str,
    layer_type: str,
    data: bytes,
    annotations: dict[str, str],
) -> dict[str, Any]:
    """`data` as a one-layer artifact whose `subject` is `subject`; what the report records."""
    manifest = attestations.referrer_manifest(subject, artifact_type, layer_type, data, annotations)
    stored = attach(client, subject.repository, subject.digest, manifest, data)
    return {
        "subject": subject.name,
        "digest": subject.digest,
        "artifactType": artifact_type,
        "manifest": manifest.digest,
        "storedAs": stored,
    }
