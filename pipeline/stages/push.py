"""Push stage: blobs, then per-architecture manifests by digest, then the index, then tags.

Ordered so that no tag ever points at an index whose children are missing: tags move last, and
only after every child manifest and blob was checked to be in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import mediatypes as mt
from pipeline import plan
from pipeline.arch import Arch
from pipeline.context import Context
from pipeline.errors import PipelineError, UsageError
from pipeline.plan import Document, Provenance
from pipeline.registry.client import RegistryClient
from pipeline.stages.build import built_image
from pipeline.stages.compress import compressed_disk
from pipeline.zstdfile import Compressed


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


def client_for(ctx: Context) -> RegistryClient:
    return ctx.options.registry_client(ctx.target.registry)


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


def check_tags(client: RegistryClient, ctx: Context, index_digest: str | None) -> None:
    """Release tags are immutable: refuse to move one that names other content (unless --force).

    Before anything is built (`index_digest` None) any existing release tag is a conflict unless
    a re-run will produce the same index; that is only known after planning, so then it passes.
    """
    repo = ctx.target.repository
    for tag in ctx.release.tags:
        current = client.manifest_digest(repo, tag)
        if current is None or ctx.options.force or index_digest is None:
            continue
        if current != index_digest:
            raise UsageError(
                f"{ctx.target.registry}/{repo}:{tag} already names {current}, not this release "
                f"({index_digest}); release tags are immutable",
                hint="bump the version in the release manifest, or pass --force to move the tag",
            )


def plan_tags_check(client: RegistryClient, ctx: Context) -> None:
    """Preflight: the registry answers and credentials work (fails fast, before any build)."""
    check_tags(client, ctx, None)


def push(ctx: Context, provenance: Provenance) -> Published:
    releases, index = plan_release(ctx, provenance)
    client = client_for(ctx)
    repo = ctx.target.repository
    check_tags(client, ctx, index.digest)
    sent: list[ArchRelease] = []
    for r in releases:
        client.push_blob(repo, mt.EMPTY_JSON, mt.EMPTY_DIGEST, len(mt.EMPTY_JSON))
        title = f"{r.arch.value}: upload {r.disk.path.name}"
        with ctx.reporter.transfer(title, r.disk.compressed.size) as advance:
            result = client.push_blob(
                repo,
                r.disk.path,
                r.disk.compressed.digest,
                r.disk.compressed.size,
                progress=advance,
            )
        ctx.reporter.info(
            f"    {r.arch.value}: layer {result.action.value}, {result.bytes_sent} bytes sent"
        )
        client.push_manifest(repo, r.manifest.digest, r.manifest.body, r.manifest.media_type)
        sent.append(ArchRelease(r.arch, r.disk, r.manifest, result.bytes_sent))
    for r in sent:  # everything the index will reference must be present before it is pushed
        if client.manifest_digest(repo, r.manifest.digest) != r.manifest.digest:
            raise PipelineError(f"manifest {r.manifest.digest} for {r.arch.value} is not in {repo}")
        if not client.blob_exists(repo, r.disk.compressed.digest):
            raise PipelineError(f"layer {r.disk.compressed.digest} is not in {repo}")
    client.push_manifest(repo, index.digest, index.body, index.media_type)
    for tag in ctx.release.all_tags:
        client.push_manifest(repo, tag, index.body, index.media_type)
        ctx.reporter.info(f"    tagged {ctx.target.registry}/{repo}:{tag}")
    return Published(
        repository=f"{ctx.target.registry}/{repo}",
        index=index,
        tags=ctx.release.all_tags,
        archs=tuple(sent),
    )
