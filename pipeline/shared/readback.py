"""Reading a release back from a registry: the fetching half of pipeline/model/pullplan.py.

A reference (a tag or digest of an index, or of a plain manifest) is fetched, narrowed to a
platform's manifest (by platform, then this project's artifactType), the manifest fetched by
digest (its bytes checked against the index's size and the digest) and its layer chosen. `pull`,
`lima`, `boot REF` and the up-to-date check all read a release through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.core.reference import Reference
from pipeline.model import lima_settings, pullplan
from pipeline.model.plan import Document
from pipeline.model.published import ArchRelease
from pipeline.registry.client import FetchedManifest, RegistryClient
from pipeline.registry.errors import where
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
    elif fetched.media_type in pullplan.MANIFEST_TYPES:
        chosen_arch = None
    else:
        raise PipelineError(f"{here} is {fetched.media_type or 'of no media type'}, not a manifest")
    manifest = pullplan.parse(fetched.body, here)
    layer = pullplan.choose_layer(manifest, f"{here} manifest {fetched.digest}")
    settings = lima_settings.from_annotations(
        pullplan.annotations_of(manifest), f"{here} manifest {fetched.digest}"
    )
    trust.check(client, ref.repository, list(dict.fromkeys([named, fetched.digest])))
    return Chosen(ref, fetched.digest, chosen_arch, layer, settings)


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


def index_at(client: RegistryClient, repo: str, reference: str) -> Index | None:
    """The index `reference` names; None when it names something else (a plain manifest)."""
    fetched = client.get_manifest(repo, reference, accept=ACCEPT)
    here = f"{where(client.registry, repo)}: {reference}"
    if fetched.media_type not in pullplan.INDEX_TYPES:
        return None
    body = pullplan.parse(fetched.body, here)
    document = Document(fetched.media_type, fetched.body)
    return Index(document, body, pullplan.annotations_of(body), here)


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
