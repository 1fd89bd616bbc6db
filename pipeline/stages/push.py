"""Push stage: blobs, then per-architecture manifests by digest, then the index, then tags.

Ordered so that no tag ever points at an index whose children are missing: tags move last, and
only after every child manifest and blob was checked to be in the registry.

Re-runs send as little as possible: a blob the repository has is skipped (HEAD), one a sibling
release's repository on the same registry has is mounted, and an upload a killed run left
unfinished is resumed where the registry stopped (the session is recorded in the architecture's
work directory, `upload-journal.json`, and forgotten once the blob is committed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline import mediatypes as mt
from pipeline import plan
from pipeline.arch import Arch
from pipeline.context import Context, Options, apply_overrides
from pipeline.errors import PipelineError, TagRaceError, UsageError
from pipeline.plan import Document, Provenance
from pipeline.reference import parse_reference
from pipeline.registry.client import BlobAction, BlobPushResult, RegistryClient
from pipeline.registry.journal import UploadJournal
from pipeline.release import load as load_release
from pipeline.stages.build import built_image
from pipeline.stages.compress import compressed_disk
from pipeline.zstdfile import Compressed

log = logging.getLogger(__name__)

JOURNAL_NAME = "upload-journal.json"
RELEASE_TAG_HINT = "bump the version in the release manifest, or pass --force to move the tag"
RACE_HINT = "check which release the tag names; re-run with --force to take it over"


@dataclass(frozen=True)
class ArchRelease:
    arch: Arch
    disk: Compressed
    manifest: Document
    bytes_sent: int


@dataclass(frozen=True)
class Published:
    repository: str  # registry/path
    index: Document
    tags: tuple[str, ...]
    archs: tuple[ArchRelease, ...]


def plan_release(ctx: Context, provenance: Provenance) -> tuple[list[ArchRelease], Document]:
    """Every document of the release, from the earlier stages' outputs; nothing is sent."""
    releases = []
    for arch in ctx.archs:
        disk = compressed_disk(ctx, arch)
        base_digest = built_image(ctx, arch, in_engine=False).base_digest
        artifact = plan.DiskArtifact(arch, disk.compressed, disk.uncompressed, base_digest)
        manifest = plan.artifact_manifest(ctx.release, artifact, provenance)
        releases.append(ArchRelease(arch, disk, manifest, 0))
    index = plan.artifact_index(ctx.release, [(r.arch, r.manifest) for r in releases], provenance)
    return releases, index


def check_tags(client: RegistryClient, ctx: Context, index_digest: str) -> None:
    """Release tags are immutable: refuse to move one that names other content (unless --force)."""
    for tag in ctx.release.tags:
        _check_release_tag(client, ctx, tag, index_digest)


def _taken(client: RegistryClient, ctx: Context, tag: str, index_digest: str) -> str | None:
    """The index a release tag names if it is another than ours (and not --force), else None."""
    current = client.manifest_digest(ctx.target.repository, tag)
    if current is None or ctx.options.force or current == index_digest:
        return None
    return current


def _check_release_tag(client: RegistryClient, ctx: Context, tag: str, index_digest: str) -> None:
    """Before anything is sent: a release tag naming another index is bad input (exit 2)."""
    repo = ctx.target.repository
    current = _taken(client, ctx, tag, index_digest)
    if current is None:
        return
    raise UsageError(
        f"{ctx.target.registry}/{repo}:{tag} already names {current}, not this release "
        f"({index_digest}); release tags are immutable",
        hint=RELEASE_TAG_HINT,
    )


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


PROVENANCE_KEYS = (mt.ANN_VERSION, mt.ANN_REVISION, mt.ANN_CREATED)


def plan_tags_check(client: RegistryClient, ctx: Context, provenance: Provenance) -> None:
    """Preflight, before any build: the registry answers, credentials work, and no release tag
    names a release of another version, revision or creation time.

    The index digest is only known after the build, but an index made from other provenance
    cannot have the same digest: refuse it now rather than after a long build. An index with
    the same provenance may be this very release (a re-run); the digest check after planning
    decides that.
    """
    repo = ctx.target.repository
    ours = plan.release_annotations(ctx.release, provenance)
    for tag in ctx.release.tags if ctx.tags_to_move else ():
        current = client.manifest_digest(repo, tag)
        if current is None or ctx.options.force:
            continue
        theirs = client.get_manifest(repo, current).json().get("annotations") or {}
        differ = [key for key in PROVENANCE_KEYS if theirs.get(key) != ours[key]]
        if differ:
            names = ", ".join(k.rsplit(".", 1)[1] for k in differ)
            raise UsageError(
                f"{ctx.target.registry}/{repo}:{tag} already names {current}, a release with "
                f"another {names}; release tags are immutable",
                hint=RELEASE_TAG_HINT,
            )


def _follow_a_racing_winner(client: RegistryClient, ctx: Context, index: Document) -> None:
    """After the moving tags: if a racing publisher has taken a release tag meanwhile, point
    the moving tags this run set at its index too (so every tag agrees) and fail.

    Registries offer no compare-and-swap on tags, so two publishers can both find a release tag
    free; the one whose release tag stays wins, and this makes the loser's moving tags follow.
    Every index involved is complete, whichever tag names it.
    """
    repo = ctx.target.repository
    for tag in ctx.release.tags:
        current = client.manifest_digest(repo, tag)
        if current is None or current == index.digest:
            continue
        winner = client.get_manifest(repo, current)
        for moving in ctx.release.moving_tags:
            if client.manifest_digest(repo, moving) == index.digest:
                client.push_manifest(repo, moving, winner.body, winner.media_type)
        raise TagRaceError(
            f"{ctx.target.registry}/{repo}:{tag} was tagged by another publisher while this one "
            f"ran ({current}); the moving tags follow it, this release ({index.digest}) is "
            "left untagged",
            hint=RACE_HINT,
        )


def push(ctx: Context, provenance: Provenance) -> Published:
    releases, index = plan_release(ctx, provenance)
    client = ctx.registry
    repo = ctx.target.repository
    tags = ctx.tags_to_move
    if tags:
        check_tags(client, ctx, index.digest)
    siblings = sibling_repositories(ctx)
    sent: list[ArchRelease] = []
    for r in releases:
        client.push_blob(
            repo, mt.EMPTY_JSON, mt.EMPTY_DIGEST, len(mt.EMPTY_JSON), mount_from=siblings
        )
        title = f"{r.arch.value}: upload {r.disk.path.name}"
        with ctx.reporter.transfer(title, r.disk.compressed.size) as advance:
            result = client.push_blob(
                repo,
                r.disk.path,
                r.disk.compressed.digest,
                r.disk.compressed.size,
                mount_from=siblings,
                progress=advance,
                journal=UploadJournal(journal_path(ctx, r.arch)),
            )
        ctx.reporter.info(f"    {r.arch.value}: {_describe(result)}")
        client.push_manifest(repo, r.manifest.digest, r.manifest.body, r.manifest.media_type)
        sent.append(ArchRelease(r.arch, r.disk, r.manifest, result.bytes_sent))
    for r in sent:  # everything the index will reference must be present before it is pushed
        if client.manifest_digest(repo, r.manifest.digest) != r.manifest.digest:
            raise PipelineError(f"manifest {r.manifest.digest} for {r.arch.value} is not in {repo}")
        for digest in (r.disk.compressed.digest, mt.EMPTY_DIGEST):
            if not client.blob_exists(repo, digest):
                raise PipelineError(f"blob {digest} for {r.arch.value} is not in {repo}")
    client.push_manifest(repo, index.digest, index.body, index.media_type)
    if not tags:
        ctx.reporter.info(
            f"    partial release ({', '.join(a.value for a in ctx.archs)} of "
            f"{', '.join(a.value for a in ctx.release.architectures)}): index pushed as "
            f"{ctx.target.registry}/{repo}@{index.digest}, tags left as they are "
            "(--force tags a partial release)"
        )
    for tag in tags:
        release_tag = tag in ctx.release.tags
        # Again (another publisher may have tagged since the first check), and read back: a
        # release tag lost either way ends the tagging; _follow_a_racing_winner says so.
        if release_tag and _taken(client, ctx, tag, index.digest):
            break
        client.push_manifest(repo, tag, index.body, index.media_type)
        if release_tag and client.manifest_digest(repo, tag) != index.digest:
            break
        ctx.reporter.info(f"    tagged {ctx.target.registry}/{repo}:{tag}")
    if tags:
        _follow_a_racing_winner(client, ctx, index)
    return Published(
        repository=f"{ctx.target.registry}/{repo}",
        index=index,
        tags=tags,
        archs=tuple(sent),
    )
