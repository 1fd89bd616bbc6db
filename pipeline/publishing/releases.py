"""Release operations against a registry: read a repository's releases, promote one, prune.

Thin: what to do is decided in pipeline/model/releases_plan.py; deletion goes through the registry's
own way (pipeline/publishing/deleters.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.errors import PipelineError
from pipeline.model.releases_plan import REFERRER_TAG, PromotePlan, PrunePlan, Stored, StoredRelease
from pipeline.publishing.deleters import Deleter
from pipeline.registry.client import RegistryClient

ACCEPT = (mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST)


def _annotations(body: dict[str, Any]) -> dict[str, str]:
    found = body.get("annotations")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _platform(entry: dict[str, Any]) -> str:
    found = entry.get("platform")
    platform = found if isinstance(found, dict) else {}
    return f"{platform.get('os', '')}/{platform.get('architecture', '')}"


def _stored(client: RegistryClient, repo: str, digest: str, platform: str = "") -> Stored:
    return _read(client, repo, digest, platform)[0]


def _read(
    client: RegistryClient, repo: str, digest: str, platform: str = ""
) -> tuple[Stored, dict[str, Any]]:
    fetched = client.get_manifest(repo, digest, ACCEPT)
    body: dict[str, Any] = fetched.json()
    blobs = {
        str(d["digest"]): int(d["size"])
        for d in [body.get("config") or {}, *(body.get("layers") or [])]
        if d.get("digest")  # the empty config too: a manifest is refused without its blobs
    }
    return Stored(digest, len(fetched.body), blobs, _annotations(body), platform), body


def read_releases(client: RegistryClient, repo: str) -> tuple[list[StoredRelease], list[str]]:
    """Every release the repository's tags name (an index), with its children and referrers;
    and the tags that name something else (a bare manifest), which are left alone."""
    names: dict[str, list[str]] = {}
    referrer_tags: list[str] = []
    for tag in client.list_tags(repo):
        if REFERRER_TAG.match(tag):
            referrer_tags.append(tag)
            continue
        digest = client.manifest_digest(repo, tag, ACCEPT)
        if digest is not None:
            names.setdefault(digest, []).append(tag)
    releases: list[StoredRelease] = []
    others: list[str] = []
    for digest, tags in names.items():
        release = read_release(client, repo, digest, tuple(sorted(tags)))
        if release is None:
            others.extend(tags)
        else:
            releases.append(release)
    by_digest = {d: r for r in releases for d in (r.digest, *(c.digest for c in r.children))}
    attached: dict[str, list[tuple[str, Stored]]] = {}
    for tag in referrer_tags:
        match = REFERRER_TAG.match(tag)
        assert match is not None
        owner = by_digest.get(f"sha256:{match['hex']}")
        digest = client.manifest_digest(repo, tag, ACCEPT)
        if owner is None or digest is None:
            others.append(tag)  # a referrer of something that is no release here
            continue
        stored, body = _read(client, repo, digest)
        found = attached.setdefault(owner.digest, [])
        found.append((tag, stored))
        # the fallback tag names an index of the referrers: they go with it
        for entry in body.get("manifests") or []:
            found.append((tag, _stored(client, repo, str(entry["digest"]))))
    releases = [
        StoredRelease(r.index, r.children, r.tags, tuple(attached.get(r.digest, ())))
        for r in releases
    ]
    return releases, others


def read_release(
    client: RegistryClient, repo: str, digest: str, tags: tuple[str, ...] = ()
) -> StoredRelease | None:
    """The index DIGEST with its children (None when DIGEST is no index)."""
    fetched = client.get_manifest(repo, digest, ACCEPT)
    body = fetched.json()
    if not isinstance(body, dict) or "manifests" not in body:
        return None
    children = tuple(
        _stored(client, repo, str(entry["digest"]), _platform(entry))
        for entry in body.get("manifests") or []
    )
    return StoredRelease(Stored(digest, len(fetched.body), {}, _annotations(body)), children, tags)


def promote(
    client: RegistryClient, plan: PromotePlan, on_line: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Blobs mounted (uploaded only where the registry cannot mount), manifests by digest,
    checked, then the release tags and last the moving tags. Returns what moved."""
    mounted = copied = present = 0
    for digest, size in plan.blobs.items():
        if client.blob_exists(plan.target, digest):
            present += 1
        elif client.mount_blob(plan.target, plan.source, digest):
            mounted += 1
        else:  # no cross-repository mount here: the bytes go through this machine once
            with tempfile.TemporaryDirectory(prefix="bootc-pipeline-promote-") as tmp:
                path = client.fetch_blob(plan.source, digest, Path(tmp) / "blob", size=size)
                client.push_blob(plan.target, path, digest, size)
            copied += 1
    on_line(f"    blobs: {mounted} mounted, {present} already there, {copied} copied")
    for doc in plan.manifests:
        if client.manifest_digest(plan.target, doc.digest, ACCEPT) != doc.digest:
            fetched = client.get_manifest(plan.source, doc.digest, ACCEPT)
            client.push_manifest(plan.target, doc.digest, fetched.body, fetched.media_type)
    for doc in plan.manifests:  # every one there, by digest, before any tag
        if client.manifest_digest(plan.target, doc.digest, ACCEPT) != doc.digest:
            raise PipelineError(f"{plan.target}@{doc.digest} is missing after promote")
    index = client.get_manifest(plan.target, plan.release.digest, ACCEPT)
    moved: list[dict[str, Any]] = []
    for tag, before in plan.moves:
        if before != plan.release.digest:
            client.push_manifest(plan.target, tag, index.body, index.media_type)
        after = client.manifest_digest(plan.target, tag, ACCEPT)
        if after != plan.release.digest:
            raise PipelineError(f"{plan.target}:{tag} names {after} after tagging, not the release")
        kind = "moving" if tag in plan.moving_tags else "release"
        moved.append({"tag": tag, "kind": kind, "from": before, "to": plan.release.digest})
        state = "unchanged" if before == plan.release.digest else f"{before or 'new'} ->"
        on_line(f"    {kind} tag {plan.target}:{tag}: {state} {plan.release.digest}")
    return moved


def prune(deleter: Deleter, repo: str, plan: PrunePlan, on_line: Callable[[str], None]) -> None:
    """Delete each pruned release through the registry's own way (publishing/deleters.py)."""
    for release in plan.delete:
        for line in deleter.delete_release(repo, release, plan):
            on_line(f"    {line}")
