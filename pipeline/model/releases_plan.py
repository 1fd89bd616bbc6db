"""Release operations as data: what `list` shows, what `promote` copies and tags, what `prune`
deletes and keeps. Pure: the registry is read and written by pipeline/publishing/releases.py.

A release is an index this project published: the index, its per-architecture manifests, the
blobs they name, and its referrers (the `sha256-HEX` fallback tags of registries without a
referrers API and cosign's `sha256-HEX.sig`). Tags that name it split in two: a release tag
holds the release's version (`40.20261129.1`, `{version}` in the manifest's `tags`), every other
tag is a moving tag (`40`, `latest`, `nightly`), which prune never takes from a user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.errors import UsageError
from pipeline.model.plan import origin_of

REFERRER_TAG = re.compile(r"^sha256-(?P<hex>[a-f0-9]{64})(?:\.[a-z]+)?$")
DATED = re.compile(r"(?<![0-9])20[0-9]{6}(?![0-9])")  # a {date} (YYYYMMDD) in the version


@dataclass(frozen=True)
class Stored:
    """A manifest in the repository, with the blobs it names (digest -> size)."""

    digest: str
    size: int
    blobs: dict[str, int] = field(default_factory=dict, hash=False)
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    platform: str = ""


@dataclass(frozen=True)
class StoredRelease:
    index: Stored
    children: tuple[Stored, ...]
    tags: tuple[str, ...]
    referrers: tuple[tuple[str, Stored], ...] = ()  # (tag, manifest)

    @property
    def digest(self) -> str:
        return self.index.digest

    @property
    def version(self) -> str:
        return self.index.annotations.get(mt.ANN_VERSION, "")

    @property
    def created(self) -> str:
        return self.index.annotations.get(mt.ANN_CREATED, "")

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(c.platform.rpartition("/")[2] for c in self.children)

    @property
    def release_tags(self) -> tuple[str, ...]:
        return tuple(t for t in self.tags if self.version and self.version in t)

    @property
    def moving_tags(self) -> tuple[str, ...]:
        return tuple(t for t in self.tags if t not in self.release_tags)

    @property
    def os_image(self) -> str:
        """The OS image index the release names (`REPO-os@sha256:...` on this registry; ""
        for none)."""
        return self.index.annotations.get(mt.ANN_OS_IMAGE_INDEX, "")

    @property
    def os_digest(self) -> str:
        return self.os_image.rpartition("@")[2]

    def origin(self, registry: str) -> str:
        """The bootc origin its disks were built with (annotations: the OS repository and the
        origin tag; "" for a release that names no OS image)."""
        tags = {c.annotations.get(mt.ANN_OS_IMAGE_ORIGIN_TAG, "") for c in self.children}
        if not self.os_image or len(tags) != 1 or "" in tags:
            return ""
        return origin_of(f"{registry}/{self.os_image.rpartition('@')[0]}:{tags.pop()}")

    @property
    def dated(self) -> bool:
        return DATED.search(self.version) is not None

    @property
    def boot(self) -> str:
        """What the manifests record of the boot check: passed when every architecture's did."""
        found = {c.annotations.get(mt.ANN_BOOT_CHECK, "unknown") for c in self.children}
        return found.pop() if len(found) == 1 else "mixed"

    def manifests(self) -> dict[str, int]:
        """Every manifest of the release (index, children, referrers): digest -> size."""
        docs = [self.index, *self.children, *(m for _, m in self.referrers)]
        return {d.digest: d.size for d in docs}

    def blobs(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for doc in (*self.children, *(m for _, m in self.referrers)):
            out |= doc.blobs
        return out


def signature_state(release: StoredRelease) -> str:
    """Whether the release is signed: "no" without a signature referrer, "unknown" with one
    (not verified here). The one place to fill in when signature checks land."""
    return "unknown" if any(tag.endswith(".sig") for tag, _ in release.referrers) else "no"


def newest_first(releases: Iterable[StoredRelease]) -> list[StoredRelease]:
    return sorted(releases, key=lambda r: (r.created, r.version, r.digest), reverse=True)


def list_rows(releases: Iterable[StoredRelease]) -> list[dict[str, Any]]:
    """`list`: one row per release, newest first."""
    return [
        {
            "version": r.version,
            "created": r.created,
            "architectures": list(r.architectures),
            "index": r.digest,
            "tags": sorted(r.tags),
            "boot": r.boot,
            "signed": signature_state(r),
            "osImage": r.os_image,
        }
        for r in newest_first(releases)
    ]


# --- prune --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrunePlan:
    delete: tuple[StoredRelease, ...]
    keep: tuple[StoredRelease, ...]
    reasons: dict[str, str]  # index digest -> why it is kept or deleted
    manifests: dict[str, int]  # to delete (none a kept release has)
    blobs: dict[str, int]  # to delete (none a kept release uses)
    kept_blobs: dict[str, int]

    @property
    def deleted_bytes(self) -> int:
        return sum(self.blobs.values()) + sum(self.manifests.values())

    @property
    def kept_bytes(self) -> int:
        kept_manifests: dict[str, int] = {}
        for r in self.keep:
            kept_manifests |= r.manifests()
        return sum(self.kept_blobs.values()) + sum(kept_manifests.values())

    def rows(self) -> list[dict[str, Any]]:
        """The dry run's table: every release, what happens to it and why."""
        out = []
        for r in newest_first((*self.delete, *self.keep)):
            action = "delete" if r in self.delete else "keep"
            mine = {d: s for d, s in r.blobs().items() if d in self.blobs}
            out.append(
                {
                    "action": action,
                    "version": r.version,
                    "created": r.created,
                    "index": r.digest,
                    "tags": sorted(r.tags),
                    "reason": self.reasons[r.digest],
                    "bytes": sum(mine.values()) if action == "delete" else 0,
                }
            )
        return out


def _created(release: StoredRelease) -> datetime | None:
    try:
        return datetime.fromisoformat(release.created.replace("Z", "+00:00"))
    except ValueError:
        return None


def plan_prune(
    releases: Sequence[StoredRelease],
    *,
    keep: int,
    older_than_days: float | None,
    now: datetime,
) -> PrunePlan:
    """Keep the newest KEEP dated releases (counting those a moving tag names), every release a
    moving tag names and every one that is not dated; of the rest delete those older than
    OLDER_THAN_DAYS (all of them without it).
    Nothing a kept release uses (manifest or blob) is deleted."""
    if keep < 0:
        raise UsageError(f"--keep: {keep} must be 0 or more")
    reasons: dict[str, str] = {}
    dated_seen = 0
    deleting: list[StoredRelease] = []
    keeping: list[StoredRelease] = []
    for r in newest_first(releases):
        newest = r.dated and dated_seen < keep
        dated_seen += r.dated
        if newest:
            reasons[r.digest] = f"one of the newest {keep}"
        elif r.moving_tags:
            reasons[r.digest] = f"named by moving tag {', '.join(sorted(r.moving_tags))}"
        elif not r.dated:
            reasons[r.digest] = "not a dated release"
        elif older_than_days is not None and (
            (created := _created(r)) is None or now - created < timedelta(days=older_than_days)
        ):
            reasons[r.digest] = f"newer than {older_than_days:g} days"
        else:
            reasons[r.digest] = f"older than the newest {keep}" + (
                f" and {older_than_days:g} days" if older_than_days is not None else ""
            )
            deleting.append(r)
            continue
        keeping.append(r)
    return _prune_plan(deleting, keeping, reasons)


def _prune_plan(
    deleting: Sequence[StoredRelease], keeping: Sequence[StoredRelease], reasons: dict[str, str]
) -> PrunePlan:
    """What deleting DELETING takes: every manifest and blob of theirs no kept release has."""
    kept_manifests: dict[str, int] = {}
    kept_blobs: dict[str, int] = {}
    for r in keeping:
        kept_manifests |= r.manifests()
        kept_blobs |= r.blobs()
    manifests: dict[str, int] = {}
    blobs: dict[str, int] = {}
    for r in deleting:
        manifests |= {d: s for d, s in r.manifests().items() if d not in kept_manifests}
        blobs |= {d: s for d, s in r.blobs().items() if d not in kept_blobs}
    return PrunePlan(tuple(deleting), tuple(keeping), reasons, manifests, blobs, kept_blobs)


def plan_os_prune(disks: PrunePlan, os_releases: Sequence[StoredRelease]) -> PrunePlan:
    """The OS image repository's part of a prune: the OS image of each deleted disk release goes
    with it, unless a kept disk release names it or a moving tag names it in the OS repository;
    every other OS image stays (nothing a kept one uses is deleted)."""
    kept = {r.os_digest for r in disks.keep if r.os_digest}
    gone = {r.os_digest: r for r in disks.delete if r.os_digest}
    reasons: dict[str, str] = {}
    deleting: list[StoredRelease] = []
    keeping: list[StoredRelease] = []
    for r in os_releases:
        if r.digest in gone and r.digest not in kept and not r.moving_tags:
            reasons[r.digest] = f"the OS image of deleted release {gone[r.digest].version}"
            deleting.append(r)
        else:
            reasons[r.digest] = "the OS image of a kept release, or of none"
            keeping.append(r)
    return _prune_plan(deleting, keeping, reasons)


# --- promote ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotePlan:
    release: StoredRelease
    source: str  # repository
    target: str  # repository
    blobs: dict[str, int]  # to make present in the target (mounted where the registry allows)
    manifests: tuple[Stored, ...]  # children, then the index: all by digest
    release_tags: tuple[str, ...]  # immutable: set only where absent (or naming this release)
    moving_tags: tuple[str, ...]  # moved last
    moves: tuple[tuple[str, str | None], ...]  # (tag, the digest it named before)


def plan_promote(
    release: StoredRelease,
    *,
    source: str,
    target: str,
    tags: Sequence[str],
    moving: Sequence[str],
    current: dict[str, str | None],
) -> PromotePlan:
    """Copy RELEASE by digest to TARGET and tag it. A release tag (any of TAGS not in MOVING)
    that names another digest in TARGET is refused: release tags are immutable."""
    unknown = [t for t in moving if t not in tags]
    if unknown:
        raise UsageError(f"--moving: {', '.join(unknown)} is not among the tags to set")
    release_tags = tuple(t for t in tags if t not in moving)
    taken = [t for t in release_tags if current.get(t) not in (None, release.digest)]
    if taken:
        raise UsageError(
            f"{target}:{taken[0]} already names {current[taken[0]]}, not {release.digest}; "
            "release tags are immutable",
            hint="promote under a new release tag, or list the tag with --moving",
        )
    ordered = (*release_tags, *(t for t in tags if t in moving))
    blobs: dict[str, int] = {}
    for child in release.children:  # referrers (signatures of the index digest) stay behind
        blobs |= child.blobs
    return PromotePlan(
        release,
        source,
        target,
        blobs,
        (*release.children, release.index),
        release_tags,
        tuple(t for t in tags if t in moving),
        tuple((t, current.get(t)) for t in ordered),
    )
