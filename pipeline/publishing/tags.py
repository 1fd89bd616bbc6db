"""The tag policy, shared by `publish` and the `index` stage.

Release tags (`tags:`) are immutable: one that names other content is refused unless --force.
Moving tags (`moving_tags:`) follow the newest release. Registries have no compare-and-swap on
tags, so a release tag is checked before anything is built, re-checked right before it is
written and read back right after; a publisher that loses a race points the moving tags it set
at the winner's index and fails, so every tag names one complete index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pipeline.core import mediatypes as mt
from pipeline.core.errors import TagRaceError, UsageError
from pipeline.core.reference import Reference
from pipeline.model.plan import Document
from pipeline.registry.client import FetchedManifest, RegistryClient
from pipeline.shared.context import Context

RELEASE_TAG_HINT = "bump the version in the release manifest, or pass --force to move the tag"
RACE_HINT = "check which release the tag names; re-run with --force to take it over"
FORWARD_HINT = "publish from a newer commit, or pass --force to move the tags back"
PROVENANCE_KEYS = (mt.ANN_VERSION, mt.ANN_REVISION, mt.ANN_CREATED)


def _created(annotations: dict[str, str]) -> datetime | None:
    try:
        return datetime.fromisoformat(annotations[mt.ANN_CREATED])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class TagPolicy:
    client: RegistryClient
    registry: str
    repository: str
    release_tags: tuple[str, ...]
    moving_tags: tuple[str, ...]
    force: bool

    @classmethod
    def of(cls, ctx: Context, client: RegistryClient, target: Reference | None = None) -> TagPolicy:
        """The release's tags in TARGET (default: the disks' repository; the OS image's
        repository takes the same tags under the same rules)."""
        where = target or ctx.target
        return cls(
            client,
            where.registry,
            where.repository,
            ctx.release.tags,
            ctx.release.moving_tags,
            ctx.options.force,
        )

    def _where(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}:{tag}"

    def preflight(self, annotations: dict[str, str]) -> None:
        """Before any build: no release tag names a release of another version, revision or
        creation time.

        The index digest is only known after the build, but an index made from other
        provenance cannot have the same digest: refuse it now rather than after a long build.
        An index with the same provenance may be this very release (a re-run); the digest
        check after planning decides that. Then: moving tags must not move backwards.
        """
        for tag in self.release_tags:
            current = self.client.manifest_digest(self.repository, tag)
            if current is None or self.force:
                continue
            found = self.client.get_manifest(self.repository, current).json()
            theirs = found.get("annotations") or {}
            differ = [key for key in PROVENANCE_KEYS if theirs.get(key) != annotations[key]]
            if differ:
                names = ", ".join(k.rsplit(".", 1)[1] for k in differ)
                raise UsageError(
                    f"{self._where(tag)} already names {current}, a release with another "
                    f"{names}; release tags are immutable",
                    hint=RELEASE_TAG_HINT,
                )
        self.check_forward(annotations)

    def check_forward(self, annotations: dict[str, str]) -> None:
        """Moving tags only move forwards: one naming a release created after this one (an
        older commit re-run) is refused, nothing moved, unless --force."""
        ours = _created(annotations)
        if self.force or ours is None:
            return
        for tag in self.moving_tags:
            current = self.client.manifest_digest(self.repository, tag)
            if current is None:
                continue
            theirs = self.client.get_manifest(self.repository, current).json()
            found = theirs.get("annotations") or {}
            created = _created(found)
            if created is not None and created > ours:
                raise UsageError(
                    f"{self._where(tag)} names release {found.get(mt.ANN_VERSION, '?')} created "
                    f"{found[mt.ANN_CREATED]}, newer than this one ("
                    f"{annotations.get(mt.ANN_VERSION, '?')}, created "
                    f"{annotations[mt.ANN_CREATED]}): moving tags do not move backwards",
                    hint=FORWARD_HINT,
                )

    def check(self, index_digest: str, *, sent: bool = False) -> None:
        """Refuse to move a release tag that names other content (unless --force).

        Before this process sent anything that is bad input (exit 2); once it has sent blobs
        or manifests, the tag was taken while it ran: a TagRaceError (exit 3), never exit 2.
        """
        for tag in self.release_tags:
            current = self._taken(tag, index_digest)  # read once: it may change between reads
            if current is None:
                continue
            if sent:
                raise TagRaceError(
                    f"{self._where(tag)} was tagged by another publisher while this one ran "
                    f"({current}); this release ({index_digest}) is left untagged",
                    hint=RACE_HINT,
                )
            raise UsageError(
                f"{self._where(tag)} already names {current}, not this release "
                f"({index_digest}); release tags are immutable",
                hint=RELEASE_TAG_HINT,
            )

    def _taken(self, tag: str, index_digest: str) -> str | None:
        """The index a release tag names if it is another than ours (and not --force)."""
        current = self.client.manifest_digest(self.repository, tag)
        if current is None or self.force or current == index_digest:
            return None
        return current

    def move(
        self,
        index: Document,
        tags: tuple[str, ...],
        on_tag: Callable[[str], None] = lambda tag: None,
        on_lost: Callable[[FetchedManifest], None] = lambda winner: None,
    ) -> None:
        """Put `index` under `tags` (release tags first, moving tags last) with race handling;
        `on_lost(winner)`: what else follows a racing winner (the OS image's tags)."""
        for tag in tags:
            release_tag = tag in self.release_tags
            # Again (another publisher may have tagged since the first check), and read back: a
            # release tag lost either way ends the tagging; _follow_a_racing_winner says so.
            if release_tag and self._taken(tag, index.digest):
                break
            if self.client.manifest_digest(self.repository, tag) == index.digest:
                on_tag(tag)  # already there: nothing to send
                continue
            self.client.push_manifest(self.repository, tag, index.body, index.media_type)
            if release_tag and self.client.manifest_digest(self.repository, tag) != index.digest:
                break
            on_tag(tag)
        if tags:
            self._follow_a_racing_winner(index, on_lost)

    def put(self, index: Document, tags: tuple[str, ...], on_tag: Callable[[str], None]) -> None:
        """Put `index` under `tags` without settling races here: for a repository whose tags
        follow another's (the OS image's follow its disks', whose release tag decides)."""
        for tag in tags:
            if self.client.manifest_digest(self.repository, tag) != index.digest:
                self.client.push_manifest(self.repository, tag, index.body, index.media_type)
            on_tag(tag)

    def current(self, tags: tuple[str, ...]) -> dict[str, str | None]:
        """What each of `tags` names now."""
        return {tag: self.client.manifest_digest(self.repository, tag) for tag in tags}

    def follow(
        self,
        ours: Document,
        winner: Document | FetchedManifest,
        tags: tuple[str, ...] | None = None,
    ) -> None:
        """Point the tags (default: the moving tags) that name OURS at WINNER instead."""
        for tag in self.moving_tags if tags is None else tags:
            if self.client.manifest_digest(self.repository, tag) == ours.digest:
                self.client.push_manifest(self.repository, tag, winner.body, winner.media_type)

    def _follow_a_racing_winner(
        self, index: Document, on_lost: Callable[[FetchedManifest], None]
    ) -> None:
        """After the moving tags: if a racing publisher has taken a release tag meanwhile, point
        the moving tags this run set at its index too (so every tag agrees) and fail.

        The one whose release tag stays wins, and this makes the loser's moving tags follow.
        Every index involved is complete, whichever tag names it.
        """
        repo = self.repository
        for tag in self.release_tags:
            current = self.client.manifest_digest(repo, tag)
            if current is None or current == index.digest:
                continue
            winner = self.client.get_manifest(repo, current)
            self.follow(index, winner)
            on_lost(winner)
            raise TagRaceError(
                f"{self._where(tag)} was tagged by another publisher while this one ran "
                f"({current}); the moving tags follow it, this release ({index.digest}) is "
                "left untagged",
                hint=RACE_HINT,
            )
