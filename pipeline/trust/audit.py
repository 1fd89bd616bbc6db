"""What `validate REF` says about a release's signatures and referrers, as findings.

For each subject (the index and its children): a `sha256-HEX.sig` must exist and list
simple-signing payloads naming that digest; with a public key, one must verify. Every
subject's referrers (API or fallback tag) must each be a manifest whose `subject` is that
subject, with an `artifactType`, whose layers exist; a DSSE envelope among them must verify
with the key, and with a key the index must have one (the provenance).
Remote input: every failure is a finding (ok=False, the problem), never an exception.

Without a public key, a release that has no signature or no referrers is not invalid (signing
is the publisher's choice): that is said as a note (ok=None). With a key it is a failure.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from pipeline.core.errors import PipelineError
from pipeline.registry.client import RegistryClient
from pipeline.trust import attestations, referrers
from pipeline.trust import simplesigning as ss
from pipeline.trust.keys import PublicKey
from pipeline.trust.verify import require_signature

Finding = tuple[bool | None, str]  # ok, failed, or a note (None)


def _signature(client: RegistryClient, repo: str, digest: str, key: PublicKey | None) -> Finding:
    tag = ss.signature_tag(digest)
    try:
        if key is not None:
            require_signature(client, repo, digest, key)
            return True, f"{digest}: signed, verifies with {key.source}"
        found = client.manifest_digest(repo, tag)
        if found is None:
            return None, f"{digest}: not signed (no {tag})"
        layers = ss.layers_of(client.get_manifest(repo, found).json())
        claims = [
            ss.read_payload(client.fetch_blob(repo, b.digest, size=b.size), f"{tag} {b.digest}")
            for b, _ in layers
        ]
    except PipelineError as exc:
        return False, exc.message
    if not any(c.digest == digest for c in claims):
        return False, f"{digest}: {tag} has no signature naming this digest"
    return True, f"{digest}: {tag} present (not verified: no public key)"


def _envelope(data: bytes, key: PublicKey) -> bool:
    try:
        envelope = json.loads(data)
        payload = base64.b64decode(envelope["payload"], validate=True)
        signed = attestations.pae(str(envelope["payloadType"]), payload)
        return any(key.verifies(signed, str(s["sig"])) for s in envelope["signatures"])
    except (ValueError, KeyError, TypeError):
        return False


def _referrer(
    client: RegistryClient, repo: str, subject: str, entry: dict[str, Any], key: PublicKey | None
) -> list[Finding]:
    digest = str(entry.get("digest"))
    where = f"referrer {digest} of {subject}"
    try:
        body = client.get_manifest(repo, digest).json()
        if not isinstance(body, dict):
            return [(False, f"{where}: not a JSON object")]
        found: list[Finding] = [
            (
                (body.get("subject") or {}).get("digest") == subject,
                f"{where}: subject is {subject}",
            ),
            (bool(body.get("artifactType")), f"{where}: has an artifactType"),
        ]
        for layer in body.get("layers") or []:
            present = client.blob_exists(repo, str(layer.get("digest")))
            found.append((present, f"{where}: layer {layer.get('digest')} present"))
            if key is not None and layer.get("mediaType") == attestations.DSSE_MEDIA_TYPE:
                data = client.fetch_blob(repo, str(layer["digest"]), size=layer.get("size"))
                found.append((_envelope(data, key), f"{where}: DSSE envelope verifies"))
    except PipelineError as exc:
        return [(False, f"{where}: {exc.message}")]
    return [(ok, text if ok else f"FAILED: {text}") for ok, text in found]


def audit(
    client: RegistryClient, repo: str, index: str, children: Sequence[str], key: PublicKey | None
) -> list[Finding]:
    found = [_signature(client, repo, d, key) for d in (index, *children)]
    for subject in (index, *children):
        try:
            how, listed = referrers.list_referrers(client, repo, subject)
        except PipelineError as exc:
            found.append((False, f"referrers of {subject}: {exc.message}"))
            continue
        # the index must carry the signed provenance when a key is given; an SBOM is optional
        required = key is not None and subject == index
        has = bool(listed) or (False if required else None)
        found.append((has, f"{subject}: {len(listed)} referrer(s) ({how})"))
        for entry in listed:
            found += _referrer(client, repo, subject, entry, key)
    return found
