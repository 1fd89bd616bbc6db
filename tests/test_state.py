"""Stage stamps: re-runs skip unchanged work; a later stage never consumes a stale earlier one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.core.arch import Arch
from pipeline.shared.state import arch_dir, inputs_key
from tests.factories import ROOT


def test_inputs_key_is_order_independent() -> None:
    assert inputs_key({"a": 1, "b": [1, 2]}) == inputs_key({"b": [1, 2], "a": 1})
    assert inputs_key({"a": 1}) != inputs_key({"a": 2})


def test_chain_detects_a_rerun_earlier_stage(tmp_path: Path) -> None:
    d = arch_dir(tmp_path, "v", Arch.AMD64)
    d.save_stamp("build", "image-1", {"id": "image-1"})
    d.save_stamp("disk", "disk-1", {}, after="image-1")
    d.save_stamp("compress", "zst-1", {}, after="disk-1")
    assert d.stale_link(["build", "disk", "compress"]) is None
    d.save_stamp("disk", "disk-2", {}, after="image-1")  # disk re-run, compress not
    assert d.stale_link(["build", "disk", "compress"]) == "compress"
    d.save_stamp("build", "image-2", {"id": "image-2"})  # and then a new build
    assert d.stale_link(["build", "disk", "compress"]) == "disk"
    d.stamp_path("disk").unlink()
    assert d.stale_link(["build", "disk"]) == "disk"
    assert d.load_stamp("build", "image-2") == {"id": "image-2"}
    assert d.load_stamp("build", "image-1") is None


def test_stamps_are_private(tmp_path: Path) -> None:
    d = arch_dir(tmp_path, "v", Arch.ARM64)
    d.save_stamp("disk", "k", {})
    assert os.stat(d.stamp_path("disk")).st_mode & 0o777 == 0o600


def _stamp(path: Path, **changes: object) -> None:
    body = json.loads(path.read_text())
    body.update(changes)
    path.write_text(json.dumps(body))


def test_push_refuses_outputs_of_different_runs(tmp_path: Path) -> None:
    """After a re-built disk without a re-compress, push names the stage to re-run (no network)."""
    d = arch_dir(tmp_path, "fedora-40", Arch.AMD64)
    d.save_stamp(
        "build", "image-1", {"tag": "t", "id": "image-1", "base_digest": "sha256:" + "a" * 64}
    )
    d.save_stamp("disk", "disk-2", {"path": "x", "size": 1}, after="image-1")
    zst = d.root / "x.zst"
    zst.write_bytes(b"z")
    blob = {"digest": "sha256:" + "b" * 64, "size": 1}
    outputs = {"path": str(zst), "level": 10, "uncompressed": blob, "compressed": blob}
    d.save_stamp("compress", "zst-1", outputs, after="disk-1")
    argv = [
        sys.executable, "-m", "pipeline", "push", "--arch", "amd64", "--workdir", str(tmp_path),
        "--registry", "127.0.0.1:9", "--plain-http", "--revision", "r",
        "--created", "2026-01-01T00:00:00Z",
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "the compress stage is older than the one before it" in proc.stderr
    assert "run `bootc-pipeline compress` again" in proc.stderr
    _stamp(d.stamp_path("compress"), after="disk-2")
    _stamp(d.stamp_path("compress"), outputs=outputs | {"level": 3})
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "compressed at level 3, the release manifest says 10" in proc.stderr
