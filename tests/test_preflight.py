"""Preflight warnings: said before the long work starts, never failed on."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from pipeline.core.progress import Reporter
from pipeline.model import release
from pipeline.model.plan import Provenance
from pipeline.publishing import publish
from pipeline.shared.context import Context, Options
from tests.factories import manifest_data, write_manifest

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def _context(tmp_path: Path, out: io.StringIO) -> Context:
    path = write_manifest(tmp_path, manifest_data())
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run([*GIT, *cmd], cwd=tmp_path, check=True, capture_output=True)
    options = Options(workdir=tmp_path / "w")
    return Context(release.load(path), options, Reporter(stream=out, live=False))


def test_clean_checkout_with_room_says_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    publish.warnings(_context(tmp_path, out), Provenance("2026-01-01T00:00:00Z", "abc"))
    assert out.getvalue() == ""


def test_uncommitted_changes_and_little_space_are_warned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    ctx = _context(tmp_path, out)
    (tmp_path / "containerfiles" / "fedora.Containerfile").write_text("FROM scratch\nRUN x\n")
    monkeypatch.setattr(publish, "MIN_FREE_BYTES", 1 << 62)
    publish.warnings(ctx, Provenance("2026-01-01T00:00:00Z", "0123456789abcdef"))
    text = out.getvalue()
    assert "has uncommitted changes; the release will say revision 0123456789ab" in text
    assert f"free in {tmp_path / 'w'}" in text
