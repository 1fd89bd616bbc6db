"""The disk stage's pure parts: qcow2 recognition, mount detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.errors import PipelineError
from pipeline.publishing.stages.disk import check_qcow2, is_mountpoint


def test_mountinfo_sees_same_filesystem_binds_and_escapes(tmp_path: Path) -> None:
    spaced = tmp_path / "work dir" / "overlay"
    spaced.mkdir(parents=True)
    escaped = str(spaced).replace(" ", "\\040")
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"46 22 254:0 {escaped} {escaped} rw,relatime - ext4 /dev/vda rw\n"
    )
    assert is_mountpoint(spaced, info)
    assert not is_mountpoint(tmp_path, info)


def test_qcow2_is_recognised(tmp_path: Path) -> None:
    good = tmp_path / "disk.qcow2"
    good.write_bytes(b"QFI\xfb\x00\x00\x00\x03" + bytes(100))
    check_qcow2(good)
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(512))
    with pytest.raises(PipelineError, match="is not a qcow2 image"):
        check_qcow2(raw)
    with pytest.raises(PipelineError, match="wrote no"):
        check_qcow2(tmp_path / "absent.qcow2")
