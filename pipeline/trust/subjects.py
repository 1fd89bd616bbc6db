"""What a release signs and attaches its referrers to, as one list.

The disk index and every per-architecture disk manifest, then the OS image (issue 15: its index
and per-architecture image manifests, in a repository of its own): signing, referrers and
verification take any subject, each with its own repository.
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
    os_image: tuple[str, Document] | None = None,  # (repository path, OS image index)
) -> list[Subject]:
    found = [Subject("index", registry, repository, index)]
    found += [Subject(f"disk {r.arch.value}", registry, repository, r.manifest) for r in archs]
    if os_image is not None:
        os_repo, os_index = os_image
        found.append(Subject("os-image index", registry, os_repo, os_index))
        found += [
            Subject(f"os-image {r.arch.value}", registry, os_repo, r.os_manifest)
            for r in archs
            if r.os_manifest is not None
        ]
    return found
