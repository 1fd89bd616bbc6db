"""The work directory and its stage stamps: a stage whose inputs hash the same is not redone.

Layout: WORKDIR/<variant>/<arch>/{disk/, <name>.qcow2.zst, <stage>.json}. A stamp is written
(atomically) only after its stage's outputs are complete, so a killed run never leaves a stamp
that claims unfinished work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.arch import Arch
from pipeline.files import atomic_write


def inputs_key(inputs: dict[str, Any]) -> str:
    """A content hash of a stage's inputs (sorted JSON), as osbuild ids its stages."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class ArchDir:
    root: Path
    arch: Arch

    @property
    def disk_dir(self) -> Path:
        return self.root / "disk"

    def stamp_path(self, stage: str) -> Path:
        return self.root / f"{stage}.json"

    def load_stamp(self, stage: str, key: str | None = None) -> dict[str, Any] | None:
        """The stage's recorded outputs (only if its inputs hash to `key`, when given)."""
        try:
            stamp = json.loads(self.stamp_path(stage).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(stamp, dict) or (key is not None and stamp.get("key") != key):
            return None
        outputs = stamp.get("outputs")
        return outputs if isinstance(outputs, dict) else None

    def save_stamp(self, stage: str, key: str, outputs: dict[str, Any]) -> None:
        body = json.dumps({"key": key, "outputs": outputs}, indent=2, sort_keys=True)
        atomic_write(self.stamp_path(stage), body.encode() + b"\n")

    def key_of(self, stage: str) -> str | None:
        """The inputs key a stage last ran with (later stages fold it into theirs)."""
        try:
            key = json.loads(self.stamp_path(stage).read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            return None
        return key if isinstance(key, str) else None


def arch_dir(workdir: Path, variant: str, arch: Arch) -> ArchDir:
    return ArchDir(workdir / variant / arch.value, arch)
