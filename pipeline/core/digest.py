"""Content digests: the one way this project names bytes (`sha256:<hex>`, with a size)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Blob:
    """What identifies a sequence of bytes: its digest (`sha256:<hex>`) and size."""

    digest: str
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


class Sha256:
    """A digest computed block by block, for bytes that are streamed rather than held whole."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, block: bytes | memoryview) -> None:
        self._hash.update(block)
        self.size += len(block)

    def blob(self) -> Blob:
        return Blob("sha256:" + self._hash.hexdigest(), self.size)


def of_bytes(data: bytes) -> Blob:
    """The digest and size of `data`: the one way bytes held in memory are named."""
    digest = Sha256()
    digest.update(data)
    return digest.blob()
