"""Content digests: the one way this project names bytes (`sha256:<hex>`, with a size)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Blob:
    """What identifies a sequence of bytes: its digest (`sha256:<hex>`) and size."""

    digest: str
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def of_bytes(data: bytes) -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def of_file(path: Path, *, chunk: int = 1 << 20) -> Blob:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            size += len(block)
    return Blob("sha256:" + digest.hexdigest(), size)
