"""What a release signs and attaches its referrers to, as one list.

Today: the index and every per-architecture disk manifest. The OS image of issue 15 (its index
and per-architecture manifests, possibly in a repository of its own) becomes more entries of
this list, appended in `of_release`: signing, referrers and verification take any subject, each
with its own repository, and need no other change.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.model.plan import Document
from pipeline.model.published import ArchRelease


@dataclass(frozen=True)
class Subject:
    name: str  # what the report calls it: "index", "disk amd64" (later "os-image amd64")
    registry: str
    repository: str
    document: Document

    @property
    def digest(self) -> str:
        return self.document.digest

    @property
    def docker_reference(self) -> str:
        """The identity the signature claims: the repository, as cosign writes it."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.name} {self.docker_reference}@{self.digest}"


def of_release(
    registry: str,
    repository: str,
    index: Document,
    archs: tuple[ArchRelease, ...] | list[ArchRelease],
) -> list[Subject]:
    found = [Subject("index", registry, repository, index)]
    found += [Subject(f"disk {r.arch.value}", registry, repository, r.manifest) for r in archs]
    return found
