"""Per-architecture results into a release: check every child is in the registry, push the
index by digest, sign it and every child (pipeline/publishing/sign.py), then move the tags under the
tag policy (pipeline/publishing/tags.py).

Shared by `publish` (results of this machine's push stage) and the `index` stage (result files
of several machines), so both make the same index from the same results.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.core.errors import PipelineError
from pipeline.model import plan
from pipeline.model.plan import Document, Provenance
from pipeline.model.published import ArchRelease, Published
from pipeline.publishing import sign
from pipeline.publishing.tags import TagPolicy
from pipeline.registry.client import RegistryClient
from pipeline.shared.context import Context


def client_for(ctx: Context) -> RegistryClient:
    """The run's one client of the target registry (Context.registry)."""
    return ctx.registry


def plan_index(ctx: Context, archs: Sequence[ArchRelease], provenance: Provenance) -> Document:
    """The index over `archs`, in the release manifest's architecture order."""
    order = {arch: n for n, arch in enumerate(ctx.release.architectures)}
    ordered = sorted(archs, key=lambda r: order.get(r.arch, len(order)))
    return plan.artifact_index(ctx.release, [(r.arch, r.manifest) for r in ordered], provenance)


def verify_children(client: RegistryClient, ctx: Context, archs: Sequence[ArchRelease]) -> None:
    """Every manifest the index will reference, and every blob those manifests reference, is in
    the repository: fetched back by digest (so its bytes are checked), blobs by HEAD."""
    repo = ctx.target.repository
    where = f"{ctx.target.registry}/{repo}"
    for r in archs:
        if client.manifest_digest(repo, r.manifest.digest) != r.manifest.digest:
            raise PipelineError(
                f"manifest {r.manifest.digest} for {r.arch.value} is not in {where}"
            )
        body = client.get_manifest(repo, r.manifest.digest).json()
        blobs = [body.get("config") or {}, *(body.get("layers") or [])]
        for descriptor in blobs:
            digest = str(descriptor.get("digest"))
            if not client.blob_exists(repo, digest):
                raise PipelineError(f"blob {digest} for {r.arch.value} is not in {where}")


def release(
    ctx: Context,
    client: RegistryClient,
    archs: Sequence[ArchRelease],
    index: Document,
    *,
    sent: bool = True,
) -> Published:
    """Check the children, push the index by digest, then the tags (none for a partial run).

    `sent`: this process uploaded the children, so a release tag taken by now is a race.
    """
    repo = ctx.target.repository
    tags = ctx.tags_to_move
    policy = TagPolicy.of(ctx, client)
    if tags:
        policy.check(index.digest, sent=sent)
        policy.check_forward(index.json().get("annotations") or {})
    verify_children(client, ctx, archs)
    if client.manifest_digest(repo, index.digest) != index.digest:
        client.push_manifest(repo, index.digest, index.body, index.media_type)
    signed = sign.sign_release(ctx, client, archs, index)  # raises: then no tag moves
    if not tags:
        ctx.reporter.info(
            f"    partial release ({', '.join(a.value for a in ctx.archs)} of "
            f"{', '.join(a.value for a in ctx.release.architectures)}): index pushed as "
            f"{ctx.target.registry}/{repo}@{index.digest}, tags left as they are "
            "(--force tags a partial release)"
        )

    def tagged(tag: str) -> None:
        ctx.reporter.info(f"    tagged {ctx.target.registry}/{repo}:{tag}")

    policy.move(index, tags, tagged)
    return Published(f"{ctx.target.registry}/{repo}", index, tags, tuple(archs), signed)
