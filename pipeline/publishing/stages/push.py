"""Push stage: each architecture's blobs, then its manifest by digest; the release is then made
by publishing/assemble.py (children checked, index, tags under publishing/tags.py).

Re-runs send as little as possible: a blob the repository has is skipped (HEAD), one a sibling
release's repository on the same registry has is mounted, and an upload a killed run left
unfinished is resumed where the registry stopped (the session is recorded in the architecture's
work directory, `upload-journal.json`, and forgotten once the blob is committed).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.reference import parse_reference
from pipeline.core.zstdfile import Compressed
from pipeline.model import plan
from pipeline.model.plan import Document, Provenance
from pipeline.model.published import ArchRelease, Published
from pipeline.model.release import load as load_release
from pipeline.publishing import assemble
from pipeline.publishing.sign import signing_key
from pipeline.publishing.stages import runner
from pipeline.publishing.stages.boot import recorded
from pipeline.publishing.stages.build import built_image
from pipeline.publishing.stages.compress import compressed_disk
from pipeline.publishing.stages.sbom import made_sbom
from pipeline.publishing.tags import TagPolicy
from pipeline.registry.client import BlobAction, BlobPushResult
from pipeline.registry.journal import UploadJournal
from pipeline.shared.context import Context, Options, apply_overrides
from pipeline.trust import attestations, referrers
from pipeline.trust.subjects import Subject

log = logging.getLogger(__name__)

JOURNAL_NAME = "upload-journal.json"


def gate(ctx: Context, arch: Arch) -> dict[str, Any]:
    """The boot check's record for ARCH's disk about to be sent: a pass, or (`--skip-boot`) the
    skip, recorded now; anything else stops the push before a byte is sent."""
    directory = ctx.arch_dir(arch)
    if ctx.options.skip_boot:
        return runner.record_skip(directory)
    return runner.require_gate(directory)


def plan_arch(ctx: Context, arch: Arch, provenance: Provenance) -> tuple[ArchRelease, Compressed]:
    """One architecture's manifest, from the earlier stages' outputs; nothing is sent."""
    disk = compressed_disk(ctx, arch)
    base_digest = built_image(ctx, arch, in_engine=False).base_digest
    boot = None if ctx.options.skip_boot else recorded(ctx, arch)
    checked = "passed" if boot and boot.get("ok") else "skipped"
    artifact = plan.DiskArtifact(arch, disk.compressed, disk.uncompressed, base_digest, checked)
    manifest = plan.artifact_manifest(ctx.release, artifact, provenance)
    return ArchRelease(arch, disk.compressed, disk.uncompressed, disk.level, manifest, 0), disk


def sibling_repositories(ctx: Context) -> tuple[str, ...]:
    """Repositories of the other release manifests beside this one, on the same registry.

    A layer already pushed for a sibling release (same bytes) is then mounted, not sent again.
    `--registry` moves the siblings exactly as it moves the target (apply_overrides). A sibling
    manifest that does not load is skipped: it only ever saves bytes, never decides anything.
    """
    here = ctx.release.path.resolve()
    target = ctx.target
    found: list[str] = []
    for path in sorted(here.parent.glob("*.yaml")):
        if path.resolve() == here:
            continue
        try:
            sibling = apply_overrides(load_release(path), Options(registry=ctx.options.registry))
            ref = parse_reference(sibling.repository)
        except PipelineError as exc:
            log.debug("no mount source from %s: %s", path, exc)
            continue
        if ref.registry == target.registry and ref.repository != target.repository:
            found.append(ref.repository)
    return tuple(dict.fromkeys(found))


def journal_path(ctx: Context, arch: Arch) -> Path:
    return ctx.arch_dir(arch).root / JOURNAL_NAME


def _describe(result: BlobPushResult) -> str:
    text = f"layer {result.action.value}"
    if result.action is BlobAction.MOUNTED:
        return f"{text} from {result.mounted_from}, 0 bytes sent"
    text += f", {result.bytes_sent} bytes sent"
    if result.resumed_from:
        text += f" (resumed at byte {result.resumed_from} of an earlier run's upload)"
    elif result.resume_lost:
        text += " (the registry no longer had an earlier run's upload: sent from the start)"
    return text


def push_arch(
    ctx: Context, arch: Arch, provenance: Provenance, siblings: tuple[str, ...] = ()
) -> ArchRelease:
    """One architecture's blobs, then its manifest by digest (no index, no tag)."""
    planned, disk = plan_arch(ctx, arch, provenance)
    gate(ctx, arch)
    client = assemble.client_for(ctx)
    repo = ctx.target.repository
    client.push_blob(repo, mt.EMPTY_JSON, mt.EMPTY_DIGEST, len(mt.EMPTY_JSON), mount_from=siblings)
    with ctx.reporter.transfer(
        f"{arch.value}: upload {disk.path.name}", disk.compressed.size
    ) as advance:
        result = client.push_blob(
            repo,
            disk.path,
            disk.compressed.digest,
            disk.compressed.size,
            mount_from=siblings,
            progress=advance,
            journal=UploadJournal(journal_path(ctx, arch)),
        )
    ctx.reporter.info(f"    {arch.value}: {_describe(result)}")
    manifest = planned.manifest
    client.push_manifest(repo, manifest.digest, manifest.body, manifest.media_type)
    attached = attach_sbom(ctx, arch, manifest)
    return dataclasses.replace(planned, bytes_sent=result.bytes_sent, referrers=attached)


def attach_sbom(ctx: Context, arch: Arch, manifest: Document) -> tuple[dict[str, Any], ...]:
    """The SBOM of the image this disk was made from, as a referrer of its manifest."""
    path = made_sbom(ctx, arch)
    if path is None:
        return ()
    target = ctx.target
    subject = Subject(f"disk {arch.value}", target.registry, target.repository, manifest)
    found = referrers.attach_document(
        ctx.registry,
        subject,
        attestations.SBOM_ARTIFACT_TYPE,
        attestations.SBOM_ARTIFACT_TYPE,
        path.read_bytes(),
        {mt.ANN_CREATED: manifest.json().get("annotations", {}).get(mt.ANN_CREATED, "")},
    )
    how = "referrers API" if found["storedAs"] == "api" else "fallback tag"
    ctx.reporter.info(f"    {arch.value}: SBOM {found['manifest'][:19]} attached ({how})")
    return (found | {"format": "SPDX JSON SBOM (syft), OCI referrer"},)


def push(ctx: Context, provenance: Provenance) -> Published:
    """Every architecture of this run, then the release made of them."""
    planned = [plan_arch(ctx, arch, provenance)[0] for arch in ctx.archs]
    for arch in ctx.archs:  # every disk's boot record first: nothing is sent past a failed gate
        gate(ctx, arch)
    index = assemble.plan_index(ctx, planned, provenance)
    client = assemble.client_for(ctx)
    signing_key(ctx.options)  # a bad key fails before anything is sent
    if ctx.tags_to_move:  # fail before sending anything, not after
        policy = TagPolicy.of(ctx, client)
        policy.check(index.digest)
        policy.check_forward(index.json().get("annotations") or {})
    siblings = sibling_repositories(ctx)
    sent = [push_arch(ctx, arch, provenance, siblings) for arch in ctx.archs]
    return assemble.release(ctx, client, sent, index)
