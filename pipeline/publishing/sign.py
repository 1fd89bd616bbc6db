"""Sign subjects by digest: cosign's `sha256-HEX.sig` tag, pushed before any release tag moves.

A signature manifest that exists already keeps its layers (other signers' signatures, or this
key's from an earlier run): ours is added unless a layer with the same payload already verifies
with this key, so a re-run changes nothing. Every signature is read back and verified with the
public half of the key before the caller moves a tag; any failure raises, and no tag moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.digest import of_bytes
from pipeline.core.errors import PipelineError, UsageError
from pipeline.model.plan import Document, Provenance
from pipeline.model.published import ArchRelease
from pipeline.publishing import inputs
from pipeline.registry.client import RegistryClient
from pipeline.shared.context import Context, Options
from pipeline.trust import attestations, keyless, referrers, subjects, verify
from pipeline.trust import simplesigning as ss
from pipeline.trust.keys import KEY_ENV, SigningKey, load_signing_key
from pipeline.trust.subjects import Subject


@dataclass(frozen=True)
class Signed:
    subject: Subject
    tag: str
    manifest: str  # the signature manifest's digest

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject.name,
            "digest": self.subject.digest,
            "format": "cosign simple signing (tag)",
            "tag": self.tag,
            "signatureManifest": self.manifest,
        }


def _existing(client: RegistryClient, subject: Subject, tag: str) -> list[ss.Signature]:
    digest = client.manifest_digest(subject.repository, tag)
    if digest is None:
        return []
    body = client.get_manifest(subject.repository, digest).json()
    kept = []
    for blob, signature in ss.layers_of(body):
        data = client.fetch_blob(subject.repository, blob.digest, size=blob.size)
        kept.append(ss.Signature(data, signature))
    return kept


def sign_one(client: RegistryClient, subject: Subject, key: SigningKey) -> Signed:
    repo = subject.repository
    tag = ss.signature_tag(subject.digest)
    payload = ss.payload(subject.docker_reference, subject.digest)
    public = key.public()
    kept = _existing(client, subject, tag)
    if not any(s.payload == payload and public.verifies(s.payload, s.signature) for s in kept):
        kept.append(ss.Signature(payload, key.sign(payload)))
    manifest, config = ss.signature_manifest(kept)
    for data in (payload, config):
        blob = of_bytes(data)
        client.push_blob(repo, data, blob.digest, blob.size)
    client.push_manifest(repo, tag, manifest.body, manifest.media_type)
    verify.require_signature(client, subject.repository, subject.digest, public)  # read back
    return Signed(subject, tag, manifest.digest)


def signing_key(options: Options) -> SigningKey | None:
    """The run's key (checked before any build), or None: keyless, or not signed."""
    key = load_signing_key(options.signing_key)
    if options.keyless:
        if key is not None:
            raise UsageError("--keyless and a signing key: choose one")
        keyless.cosign_binary()
    return key


def sign_release(
    ctx: Context, client: RegistryClient, archs: Sequence[ArchRelease], index: Document
) -> tuple[dict[str, Any], ...]:
    """Sign the index and every child with the run's key; without a key, say it once."""
    key = signing_key(ctx.options)
    target = ctx.target
    found = subjects.of_release(target.registry, target.repository, index, list(archs))
    if ctx.options.keyless:
        with ctx.reporter.stage("sign", f"sign {len(found)} manifests keyless (cosign, Sigstore)"):
            try:
                keyless.sign_keyless(
                    found, registry=target.registry, registry_config=ctx.options.registry_config
                )
            except PipelineError as exc:
                raise PipelineError(f"signing failed, no tag was moved: {exc.message}") from None
        return tuple(
            {"subject": s.name, "digest": s.digest, "format": "cosign keyless (tag, Sigstore)"}
            for s in found
        )
    if key is None:
        ctx.reporter.info(
            f"    not signed: no signing key (--signing-key or ${KEY_ENV}); consumers with a "
            "public key will refuse this release"
        )
        return ()
    with ctx.reporter.stage("sign", f"sign {len(found)} manifests with {key.source}"):
        signed = sign_all(client, found, key)
        attached = attach_provenance(ctx, client, found, key)
    for s in signed:
        ctx.reporter.info(f"    signed {s.subject.name} {s.subject.digest[:19]}: {s.tag}")
    ctx.reporter.info(
        f"    provenance {attached['manifest'][:19]} attached to the index "
        f"({'referrers API' if attached['storedAs'] == 'api' else 'fallback tag'})"
    )
    return (*(s.as_json() for s in signed), attached)


def attach_provenance(
    ctx: Context, client: RegistryClient, found: Sequence[Subject], key: SigningKey
) -> dict[str, Any]:
    """The SLSA provenance of the release, in a signed DSSE envelope, as a referrer of the
    index (found[0]); its statement names every subject."""
    index = found[0]
    annotations = index.document.json().get("annotations") or {}
    provenance = Provenance(
        annotations.get(mt.ANN_CREATED, ""),
        annotations.get(mt.ANN_REVISION, ""),
        annotations.get(mt.ANN_INPUTS),
    )
    kept = inputs.saved(ctx)
    record = kept[1] if kept and kept[0] == provenance.inputs else None
    statement = attestations.slsa_statement(found, provenance, record)
    envelope = attestations.dsse_envelope(statement, key)
    try:
        attached = referrers.attach_document(
            client,
            index,
            attestations.PROVENANCE_ARTIFACT_TYPE,
            attestations.DSSE_MEDIA_TYPE,
            envelope,
            {attestations.ANN_PREDICATE: attestations.SLSA_PREDICATE},
        )
    except PipelineError as exc:
        raise PipelineError(
            f"attaching provenance failed, no tag was moved: {exc.message}"
        ) from None
    return attached | {"format": "SLSA v1 provenance in a DSSE envelope (OCI referrer)"}


def sign_all(client: RegistryClient, subjects: Sequence[Subject], key: SigningKey) -> list[Signed]:
    try:
        return [sign_one(client, subject, key) for subject in subjects]
    except PipelineError as exc:
        raise PipelineError(
            f"signing failed, no tag was moved: {exc.message}", hint=exc.hint
        ) from None
