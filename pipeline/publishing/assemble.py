"""Per-architecture results into a release: check every child is in the registry, push the
index by digest, sign it and every child (pipeline/publishing/sign.py), then move the tags under the
tag policy (pipeline/publishing/tags.py).

Shared by `publish` (results of this machine's push stage) and the `index` stage (result files
of several machines), so both make the same index from the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.core import mediatypes as mt
from pipeline.core.errors import PipelineError
from pipeline.model import plan
from pipeline.model.plan import Document, Provenance
from pipeline.model.published import ArchRelease, Published
from pipeline.publishing import sign
from pipeline.publishing.tags import TagPolicy
from pipeline.registry.client import FetchedManifest, RegistryClient
from pipeline.shared.context import Context


def client_for(ctx: Context) -> RegistryClient:
    """The run's one client of the target registry (Context.registry)."""
    return ctx.registry


def _ordered(ctx: Context, archs: Sequence[ArchRelease]) -> list[ArchRelease]:
    order = {arch: n for n, arch in enumerate(ctx.release.architectures)}
    return sorted(archs, key=lambda r: order.get(r.arch, len(order)))


def plan_os_index(
    ctx: Context, archs: Sequence[ArchRelease], provenance: Provenance
) -> Document | None:
    """The OS image index over the architectures' bootc images (None: results made before the
    OS image was published name none; a mix is refused)."""
    images = [(r.arch, r.os_manifest) for r in _ordered(ctx, archs) if r.os_manifest is not None]
    if not images:
        return None
    if len(images) != len(archs):
        missing = ", ".join(r.arch.value for r in archs if r.os_manifest is None)
        raise PipelineError(f"no OS image for {missing}: the release's OS image would be partial")
    return plan.os_image_index(ctx.release, images, provenance)


def plan_indexes(
    ctx: Context, archs: Sequence[ArchRelease], provenance: Provenance
) -> tuple[Document, Document | None]:
    """The disk index over `archs` (release order), naming the OS image index it goes with."""
    os_index = plan_os_index(ctx, archs, provenance)
    named = f"{ctx.os_target.repository}@{os_index.digest}" if os_index else None
    manifests = [(r.arch, r.manifest) for r in _ordered(ctx, archs)]
    return plan.artifact_index(ctx.release, manifests, provenance, named), os_index


def plan_index(ctx: Context, archs: Sequence[ArchRelease], provenance: Provenance) -> Document:
    """The disk index over `archs`, in the release manifest's architecture order."""
    return plan_indexes(ctx, archs, provenance)[0]


def verify_os_images(client: RegistryClient, ctx: Context, archs: Sequence[ArchRelease]) -> None:
    """Every OS image manifest the OS index will reference is in the OS repository by digest, as
    is every blob it names, and is the one the disk manifest's annotation names."""
    repo = ctx.os_target.repository
    where = f"{ctx.os_target.registry}/{repo}"
    for r in archs:
        if r.os_manifest is None or r.os_image is None:
            continue
        named = (r.manifest.json().get("annotations") or {}).get(mt.ANN_OS_IMAGE)
        if named != f"{repo}@{r.os_manifest.digest}":
            raise PipelineError(
                f"the {r.arch.value} disk names OS image {named}, not {repo}@"
                f"{r.os_manifest.digest} in {ctx.os_target.registry}"
            )
        _verify_manifest(client, repo, where, r.arch.value, r.os_manifest.digest)


def verify_children(client: RegistryClient, ctx: Context, archs: Sequence[ArchRelease]) -> None:
    """Every manifest the index will reference, and every blob those manifests reference, is in
    the repository: fetched back by digest (so its bytes are checked), blobs by HEAD."""
    repo = ctx.target.repository
    where = f"{ctx.target.registry}/{repo}"
    for r in archs:
        _verify_manifest(client, repo, where, r.arch.value, r.manifest.digest)


def _verify_manifest(
    client: RegistryClient, repo: str, where: str, arch: str, manifest: str
) -> None:
    """MANIFEST is in REPO by digest (its bytes checked) and so is every blob it names."""
    if client.manifest_digest(repo, manifest) != manifest:
        raise PipelineError(f"manifest {manifest} for {arch} is not in {where}")
    body = client.get_manifest(repo, manifest).json()
    blobs = [body.get("config") or {}, *(body.get("layers") or [])]
    for descriptor in blobs:
        digest = str(descriptor.get("digest"))
        if not client.blob_exists(repo, digest):
            raise PipelineError(f"blob {digest} for {arch} is not in {where}")


def release(
    ctx: Context,
    client: RegistryClient,
    archs: Sequence[ArchRelease],
    index: Document,
    os_index: Document | None = None,
    *,
    sent: bool = True,
) -> Published:
    """Check the children, push the OS image index and the disk index by digest, then the tags
    (none for a partial run): the OS image's first, so a disk visible at a tag has its origin's
    image there already.

    `sent`: this process uploaded the children, so a release tag taken by now is a race.
    """
    repo = ctx.target.repository
    tags = ctx.tags_to_move
    policy = TagPolicy.of(ctx, client)
    os_policy = TagPolicy.of(ctx, client, ctx.os_target) if os_index else None
    if tags:
        policy.check(index.digest, sent=sent)
        policy.check_forward(index.json().get("annotations") or {})
        if os_policy and os_index:
            os_policy.check(os_index.digest, sent=sent)
            os_policy.check_forward(os_index.json().get("annotations") or {})
    verify_children(client, ctx, archs)
    os_repo = ctx.os_target.repository
    if os_index:
        verify_os_images(client, ctx, archs)
        if client.manifest_digest(os_repo, os_index.digest) != os_index.digest:
            client.push_manifest(os_repo, os_index.digest, os_index.body, os_index.media_type)
        if client.manifest_digest(os_repo, os_index.digest) != os_index.digest:
            raise PipelineError(f"the OS image index {os_index.digest} is not in {os_repo}")
    if client.manifest_digest(repo, index.digest) != index.digest:
        client.push_manifest(repo, index.digest, index.body, index.media_type)
    signed = sign.sign_release(ctx, client, archs, index, os_index)  # raises: then no tag moves
    if not tags:
        ctx.reporter.info(
            f"    partial release ({', '.join(a.value for a in ctx.archs)} of "
            f"{', '.join(a.value for a in ctx.release.architectures)}): index pushed as "
            f"{ctx.target.registry}/{repo}@{index.digest}, tags left as they are "
            "(--force tags a partial release)"
        )

    def tagged(where: str) -> Callable[[str], None]:
        return lambda tag: ctx.reporter.info(f"    tagged {where}:{tag}")

    # Release tags, the OS image's first; then moving tags, the OS image's first: a disk
    # visible at a tag has its OS image there, and the OS moving tag (the stream bootc
    # follows) moves only once this release's disk release tags are its own. The disks'
    # release tag alone decides a race: a run that loses it points every tag it set, the OS
    # image's too, at the winner's release (pipeline/publishing/tags.py).
    release_tags = tuple(t for t in tags if t in policy.release_tags)
    moving_tags = tuple(t for t in tags if t not in policy.release_tags)
    on_disk, on_os = tagged(f"{ctx.target.registry}/{repo}"), tagged(ctx.release.os_repository)
    follow_os = _os_follower(client, os_policy, os_index, tags)
    if os_policy and os_index:
        if tags:  # a disk release tag taken meanwhile: the OS image's tags stay as they are
            policy.check(index.digest, sent=sent)
        os_policy.put(os_index, release_tags, on_os)
    policy.move(index, release_tags, on_disk, on_lost=follow_os)
    if os_policy and os_index:
        os_policy.put(os_index, moving_tags, on_os)
    policy.move(index, moving_tags, on_disk, on_lost=follow_os)
    return Published(
        f"{ctx.target.registry}/{repo}", index, tags, tuple(archs), signed,
        os_index=os_index, os_repository=ctx.release.os_repository if os_index else None,
    )  # fmt: skip


def _os_follower(
    client: RegistryClient,
    os_policy: TagPolicy | None,
    os_index: Document | None,
    tags: tuple[str, ...],
) -> Callable[[FetchedManifest], None]:
    """When a racing publisher's disk index keeps a release tag: the OS image's tags this run
    set (release and moving) follow the OS index that winner names, as the disk moving tags
    follow the winner; a winner that names none here gets them back as they were."""
    if os_policy is None or os_index is None or not tags:
        return lambda winner: None
    before = os_policy.current(tags)

    def follow(winner: FetchedManifest) -> None:
        named = (winner.json().get("annotations") or {}).get(mt.ANN_OS_IMAGE_INDEX, "")
        path, _, digest = str(named).rpartition("@")
        if path == os_policy.repository and digest.startswith("sha256:"):
            os_policy.follow(os_index, client.get_manifest(path, digest), tags)
            return
        # an OS image elsewhere, or none: what we set goes back (each earlier index read once)
        for was in {w for w in before.values() if w is not None and w != os_index.digest}:
            back = tuple(tag for tag, w in before.items() if w == was)
            os_policy.follow(os_index, client.get_manifest(os_policy.repository, was), back)

    return follow
