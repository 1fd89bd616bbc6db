"""The work directory and its stage stamps: a stage whose inputs hash the same is not redone.

Layout: WORKDIR/<variant>/<arch>/{disk/, <name>.qcow2.zst, <stage>.json}. A stamp is written
(atomically) only after its stage's outputs are complete, so a killed run never leaves a stamp
that claims unfinished work. Each stamp also records the key of the stage it was made from
(`after`), so a later stage never consumes outputs older than its predecessor's: re-running
`disk` without `compress` makes `push` refuse, not publish the previous disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.arch import Arch
from pipeline.core.digest import of_bytes
from pipeline.core.files import atomic_write


def inputs_key(inputs: dict[str, Any]) -> str:
    """A content hash of a stage's inputs (sorted JSON), as osbuild ids its stages."""
    return of_bytes(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hex


@dataclass(frozen=True)
class ArchDir:
    root: Path
    arch: Arch

    @property
    def disk_dir(self) -> Path:
        return self.root / "disk"

    def stamp_path(self, stage: str) -> Path:
        return self.root / f"{stage}.json"

    def _read(self, stage: str) -> dict[str, Any] | None:
        try:
            stamp = json.loads(self.stamp_path(stage).read_text())
        except (OSError, ValueError):
            return None
        return stamp if isinstance(stamp, dict) else None

    def load_stamp(self, stage: str, key: str | None = None) -> dict[str, Any] | None:
        """The stage's recorded outputs (only if its inputs hash to `key`, when given)."""
        stamp = self._read(stage)
        if stamp is None or (key is not None and stamp.get("key") != key):
            return None
        outputs = stamp.get("outputs")
        return outputs if isinstance(outputs, dict) else None

    def save_stamp(
        self, stage: str, key: str, outputs: dict[str, Any], *, after: str | None = None
    ) -> None:
        """Record a finished stage; `after` is the key of the stage its inputs came from."""
        body = json.dumps(
            {"key": key, "after": after, "outputs": outputs}, indent=2, sort_keys=True
        )
        # 0600: keys hash inputs that may include secrets (bib's user passwords)
        atomic_write(self.stamp_path(stage), body.encode() + b"\n", mode=0o600)

    def stale_link(self, chain: Sequence[str]) -> str | None:
        """The first stage of `chain` whose stamp is missing or was made from an older run of
        the stage before it; None when the whole chain is consistent."""
        for earlier, later in zip(chain, chain[1:], strict=False):
            stamp = self._read(later)
            if stamp is None or stamp.get("after") != self.key_of(earlier):
                return later
        return None

    def key_of(self, stage: str) -> str | None:
        """The inputs key a stage last ran with (later stages fold it into theirs)."""
        key = (self._read(stage) or {}).get("key")
        return key if isinstance(key, str) else None


def arch_dir(workdir: Path, variant: str, arch: Arch) -> ArchDir:
    return ArchDir(workdir / variant / arch.value, arch)
