"""Reading a release back from a registry: the fetching half of pipeline/model/pullplan.py.

A reference (a tag or digest of an index, or of a plain manifest) is fetched, narrowed to a
platform's manifest (by platform, then this project's artifactType), the manifest fetched by
digest (its bytes checked against the index's size and the digest) and its layer chosen. `pull`,
`lima`, `boot REF` and the up-to-date check all read a release through here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.reference import Reference, parse_reference
from pipeline.model import lima_settings, pullplan
from pipeline.model.plan import Document, OsImageRef, origin_of
from pipeline.model.published import ArchRelease
from pipeline.model.release import default_os_repository
from pipeline.registry.client import FetchedManifest, RegistryClient
from pipeline.registry.errors import RegistryError, where
from pipeline.registry.transport import ConnectionFailed
from pipeline.trust.verify import TrustPolicy

ACCEPT = (*pullplan.INDEX_TYPES, *pullplan.MANIFEST_TYPES)


@dataclass(frozen=True)
class Chosen:
    """What a reference resolves to for one platform."""

    reference: Reference
    manifest: str
    arch: Arch | None  # None: a manifest without an index names no platform
    layer: pullplan.Layer
    # what the release says its Lima template needs (None: a release from before it said)
    lima: lima_settings.Settings | None = field(default=None, compare=False)
    # the OS image its disk was made from, checked present (None: a plain manifest, or a
    # release from before the OS image was published)
    os_image: OsImageRef | None = field(default=None, compare=False)


def top(client: RegistryClient, ref: Reference) -> tuple[FetchedManifest, str]:
    """The document the reference names, and how to name it in a message."""
    target = ref.digest or ref.tag or "latest"
    fetched = client.get_manifest(ref.repository, target, accept=ACCEPT)
    return fetched, f"{where(client.registry, ref.repository)}: {target}"


def child(client: RegistryClient, repo: str, index: Any, arch: Arch, here: str) -> FetchedManifest:
    """`arch`'s manifest of an index already fetched, its size checked against the entry."""
    digest, size = pullplan.choose_manifest(index, arch, here)
    fetched = client.get_manifest(repo, digest, accept=pullplan.MANIFEST_TYPES)
    if size is not None and size != len(fetched.body):
        raise PipelineError(f"{here}: manifest {digest} is {len(fetched.body)} bytes, not {size}")
    return fetched


def resolve(client: RegistryClient, ref: Reference, arch: Arch, *, trust: TrustPolicy) -> Chosen:
    """The manifest and layer `ref` names for linux/`arch` (any manifest, for a plain one),
    its signatures checked under `trust`: the consumer path's one verification point, after
    resolution and before any byte of the disk is streamed (pipeline/trust/verify.py)."""
    fetched, here = top(client, ref)
    named = fetched.digest
    if fetched.media_type in pullplan.INDEX_TYPES:
        index = pullplan.parse(fetched.body, here)
        fetched, chosen_arch = child(client, ref.repository, index, arch, here), arch
        # a release whose OS image is partial is as incomplete as one missing a disk
        disk = Document(fetched.media_type or mt.OCI_MANIFEST, fetched.body)
        images = os_images(client, ref.repository, pullplan.annotations_of(index), {arch: disk})
        os_image = images[arch][0] if images else None
    elif fetched.media_type in pullplan.MANIFEST_TYPES:
        chosen_arch, os_image = None, None
    else:
        raise PipelineError(f"{here} is {fetched.media_type or 'of no media type'}, not a manifest")
    manifest = pullplan.parse(fetched.body, here)
    layer = pullplan.choose_layer(manifest, f"{here} manifest {fetched.digest}")
    settings = lima_settings.from_annotations(
        pullplan.annotations_of(manifest), f"{here} manifest {fetched.digest}"
    )
    trust.check(client, ref.repository, list(dict.fromkeys([named, fetched.digest])))
    return Chosen(ref, fetched.digest, chosen_arch, layer, settings, os_image)


def platforms(client: RegistryClient, ref: Reference) -> list[Arch]:
    """The architectures `ref` has disks for: an index's linux entries; a plain manifest is
    taken to be the host's."""
    fetched, here = top(client, ref)
    if fetched.media_type not in pullplan.INDEX_TYPES:
        return [Arch.host()]
    found = pullplan.linux_archs(pullplan.parse(fetched.body, here), here)
    if not found:
        raise PipelineError(f"{here}: the index lists no linux/amd64 or linux/arm64 manifest")
    return found


@dataclass(frozen=True)
class Index:
    """A published index as fetched: its bytes, its JSON, its annotations."""

    document: Document
    body: Any
    annotations: dict[str, str]
    where: str
    repository: str  # the path it was read from


def index_at(client: RegistryClient, repo: str, reference: str) -> Index | None:
    """The index `reference` names; None when it names something else (a plain manifest)."""
    fetched = client.get_manifest(repo, reference, accept=ACCEPT)
    here = f"{where(client.registry, repo)}: {reference}"
    if fetched.media_type not in pullplan.INDEX_TYPES:
        return None
    body = pullplan.parse(fetched.body, here)
    document = Document(fetched.media_type, fetched.body)
    return Index(document, body, pullplan.annotations_of(body), here, repo)


def arch_releases(
    client: RegistryClient, repo: str, index: Index, archs: tuple[Arch, ...]
) -> tuple[ArchRelease, ...] | None:
    """Each of `archs`' manifests of `index`, read back and verified from their bytes
    (pullplan.arch_release); None when the index lacks one of `archs`."""
    have = pullplan.linux_archs(index.body, index.where)
    if any(arch not in have for arch in archs):
        return None
    found = []
    for arch in archs:
        fetched = child(client, repo, index.body, arch, index.where)
        manifest = Document(fetched.media_type or mt.OCI_MANIFEST, fetched.body)
        where_ = f"{index.where} manifest {fetched.digest}"
        found.append(pullplan.arch_release(manifest, where_, arch=arch))
    return tuple(found)


def os_images(
    client: RegistryClient,
    repo: str,
    index_annotations: dict[str, str],
    disks: dict[Arch, Document],
) -> dict[Arch, tuple[OsImageRef, Document]] | None:
    """The OS image (pipeline/publishing/stages/osimage.py) a disk release in REPO names, read
    back and checked: the disk index names the OS index by digest, which must be there with an
    entry for each of `disks`' architectures whose digest is the one that disk's manifest names;
    each image manifest by digest and every blob it names must be there. A partial OS image is a
    PipelineError (the release is as incomplete as one missing a disk); None: a release from
    before the OS image was published, whose disks name none.

    Where: REPO's own OS repository (`<REPO>-os`, release.default_os_repository) when it holds
    that index, else the path the annotation names. A promoted release keeps its source's bytes,
    so its annotations name the source's OS repository, while promote put the copy beside the
    promoted disks; that copy goes with them, and outlives a prune of the source."""
    named = index_annotations.get(mt.ANN_OS_IMAGE_INDEX)
    if named is None:
        for arch, disk in disks.items():
            claimed = pullplan.annotations_of(disk.json()).get(mt.ANN_OS_IMAGE)
            if claimed is not None:
                raise PipelineError(
                    f"the {arch.value} disk names OS image {claimed}, the index no OS image index"
                )
        return None
    annotated, _, digest = named.rpartition("@")
    if not annotated or not digest.startswith("sha256:"):
        raise PipelineError(f"the OS image index {named!r} is not named as REPO@sha256:...")
    path = os_index_repository(client, repo, annotated, digest)
    # on the disks' registry, as they are read (the same path on a mirror too)
    ref = parse_reference(f"{client.registry}/{path}@{digest}")
    here = f"OS image index {client.registry}/{path}@{digest}"
    try:
        return _os_images(client, ref, annotated, here, disks)
    except PipelineError as exc:
        if "OS image" in exc.message:  # says what it is about already
            raise
        raise PipelineError(f"{here}: {exc.message}") from None


def os_index_repository(client: RegistryClient, repo: str, named: str, digest: str) -> str:
    """Where the OS index DIGEST of a disk release in REPO is read: REPO's own OS repository
    (`<REPO>-os`) when it holds it (the copy promote made beside promoted disks), else NAMED,
    the path the disk index's annotation names."""
    own = default_os_repository(repo)
    if named == own:
        return named
    try:
        found = client.manifest_digest(own, digest, accept=pullplan.INDEX_TYPES)
    except ConnectionFailed:
        raise
    except RegistryError:  # no such repository may be 401/403 (ghcr.io, quay.io): not here
        return named
    return own if found == digest else named


def _os_images(
    client: RegistryClient, ref: Reference, named: str, here: str, disks: dict[Arch, Document]
) -> dict[Arch, tuple[OsImageRef, Document]]:
    """The images of the OS index REF; NAMED: the repository path the disks' annotations name
    (and their baked-in origin: promote copies bytes, it cannot rewrite the disk)."""
    assert ref.digest is not None
    fetched = client.get_manifest(ref.repository, ref.digest, accept=pullplan.INDEX_TYPES)
    if fetched.media_type not in pullplan.INDEX_TYPES:
        raise PipelineError(f"{here} is {fetched.media_type or 'of no media type'}, not an index")
    entries = pullplan.linux_digests(pullplan.parse(fetched.body, here), here)
    found: dict[Arch, tuple[OsImageRef, Document]] = {}
    base = f"{ref.registry}/{ref.repository}"
    for arch, disk in disks.items():
        annotations = pullplan.annotations_of(disk.json())
        image = entries.get(arch.value)
        if image is None:
            raise PipelineError(f"{here} has no linux/{arch.value} image")
        if annotations.get(mt.ANN_OS_IMAGE) != f"{named}@{image}":
            raise PipelineError(
                f"the {arch.value} disk names OS image {annotations.get(mt.ANN_OS_IMAGE)}, the "
                f"OS image index {named}@{image}"
            )
        tag = annotations.get(mt.ANN_OS_IMAGE_ORIGIN_TAG, "")
        if not tag:
            raise PipelineError(f"the {arch.value} disk names no origin tag of its OS image")
        origin = origin_of(f"{ref.registry}/{named}:{tag}")
        manifest = client.get_manifest(ref.repository, image, accept=pullplan.MANIFEST_TYPES)
        body = pullplan.parse(manifest.body, f"{base}@{image}")
        blobs = [body.get("config") or {}, *(body.get("layers") or [])]
        for n, descriptor in enumerate(blobs):
            digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
            if not isinstance(digest, str) or not digest.startswith("sha256:"):
                field_ = "config" if n == 0 else f"layers[{n - 1}]"
                raise PipelineError(f"OS image {base}@{image}: {field_} names no sha256 digest")
            if not client.blob_exists(ref.repository, digest):
                raise PipelineError(f"blob {digest} of OS image {base}@{image} is not there")
        document = Document(manifest.media_type or mt.OCI_MANIFEST, manifest.body)
        found[arch] = (OsImageRef(base, image, origin), document)
    return found


def with_os_images(
    client: RegistryClient, index: Index, archs: tuple[ArchRelease, ...]
) -> tuple[ArchRelease, ...]:
    """`archs` read back from `index`, with the OS image each names (checked, os_images)."""
    disks = {r.arch: r.manifest for r in archs}
    images = os_images(client, index.repository, index.annotations, disks)
    if images is None:
        return archs
    out = []
    for r in archs:
        ref, document = images[r.arch]
        out.append(dataclasses.replace(r, os_image=ref, os_manifest=document))
    return tuple(out)
